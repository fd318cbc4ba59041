//! Server-wide settings: written once, read by every replica.

use crate::db::{Db, Step};
use crate::StoreResult;

pub(crate) async fn get(db: &dyn Db, name: &str) -> StoreResult<Option<String>> {
    let rows = db
        .query(
            "SELECT value FROM server_settings WHERE name = $1",
            vec![name.into()],
        )
        .await?;
    rows.first().map(|r| r.text("value")).transpose()
}

pub(crate) async fn get_or_insert(db: &dyn Db, name: &str, value: &str) -> StoreResult<String> {
    let outcomes = db
        .transaction(vec![
            Step::execute(
                "INSERT INTO server_settings (name, value, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
                vec![
                    name.into(),
                    value.into(),
                    warden_core::time::now_ms().into(),
                ],
            ),
            Step::query(
                "SELECT value FROM server_settings WHERE name = $1",
                vec![name.into()],
            ),
        ])
        .await?
        .unwrap_or_default();
    let stored = outcomes
        .into_iter()
        .nth(1)
        .map(|o| o.rows())
        .unwrap_or_default();
    match stored.first() {
        Some(row) => row.text("value"),
        None => Ok(value.to_string()),
    }
}
