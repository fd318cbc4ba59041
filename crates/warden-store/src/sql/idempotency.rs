//! Idempotency records: the first response to a keyed POST, replayed to
//! retries for 24 hours.

use warden_core::time::Millis;
use warden_core::Tenant;

use crate::db::{Db, Step, Value};
use crate::{IdempotencyState, StoreResult};

fn key_args(tenant: &Tenant, key: &str) -> Vec<Value> {
    vec![
        (&tenant.org_id).into(),
        tenant.environment.as_str().into(),
        key.into(),
    ]
}

/// A claim that never finished (the client went away mid-request and the
/// handler was dropped) stops blocking retries after a minute.
const ABANDONED_AFTER_MS: Millis = 60_000;

pub(crate) async fn begin(
    db: &dyn Db,
    tenant: &Tenant,
    key: &str,
    fingerprint: &str,
    now: Millis,
    expired_before: Millis,
) -> StoreResult<IdempotencyState> {
    let mut expired = key_args(tenant, key);
    expired.extend([expired_before.into(), (now - ABANDONED_AFTER_MS).into()]);
    let mut claim = key_args(tenant, key);
    claim.extend([fingerprint.into(), now.into()]);
    let outcomes = db
        .transaction(vec![
            Step::execute(
                "DELETE FROM idempotency_keys WHERE org_id = $1 AND environment = $2 \
                 AND idempotency_key = $3 \
                 AND (created_at < $4 OR (status_code IS NULL AND created_at < $5))",
                expired,
            ),
            Step::execute(
                "INSERT INTO idempotency_keys (org_id, environment, idempotency_key, fingerprint, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, environment, idempotency_key) DO NOTHING",
                claim,
            ),
            Step::query(
                "SELECT fingerprint, status_code, response_body FROM idempotency_keys \
                 WHERE org_id = $1 AND environment = $2 AND idempotency_key = $3",
                key_args(tenant, key),
            ),
        ])
        .await?
        .unwrap_or_default();
    let mut outcomes = outcomes.into_iter();
    let claimed = outcomes.nth(1).map(|o| o.changed()).unwrap_or(0);
    if claimed == 1 {
        return Ok(IdempotencyState::Fresh);
    }
    let rows = outcomes.next().map(|o| o.rows()).unwrap_or_default();
    let Some(row) = rows.first() else {
        return Ok(IdempotencyState::InProgress);
    };
    Ok(
        match (
            row.text("fingerprint")? == fingerprint,
            row.opt_int("status_code")?,
            row.opt_text("response_body")?,
        ) {
            (false, _, _) => IdempotencyState::Mismatch,
            (true, Some(status), Some(body)) => IdempotencyState::Completed {
                status: status as u16,
                body,
            },
            _ => IdempotencyState::InProgress,
        },
    )
}

pub(crate) async fn finish(
    db: &dyn Db,
    tenant: &Tenant,
    key: &str,
    status: u16,
    body: &str,
) -> StoreResult<()> {
    db.execute(FINISH, finish_args(tenant, key, status, body))
        .await?;
    Ok(())
}

const FINISH: &str = "UPDATE idempotency_keys SET status_code = $1, response_body = $2 \
     WHERE org_id = $3 AND environment = $4 AND idempotency_key = $5";

fn finish_args(tenant: &Tenant, key: &str, status: u16, body: &str) -> Vec<Value> {
    let mut args: Vec<Value> = vec![i64::from(status).into(), body.into()];
    args.extend(key_args(tenant, key));
    args
}

/// Records a claimed key's answer in the transaction of the change it
/// answers.
pub(crate) fn finish_step(tenant: &Tenant, key: &str, status: u16, body: &str) -> Step {
    Step::execute(FINISH, finish_args(tenant, key, status, body))
}

pub(crate) async fn abandon(db: &dyn Db, tenant: &Tenant, key: &str) -> StoreResult<()> {
    db.execute(
        "DELETE FROM idempotency_keys WHERE org_id = $1 AND environment = $2 \
         AND idempotency_key = $3 AND status_code IS NULL",
        key_args(tenant, key),
    )
    .await?;
    Ok(())
}

pub(crate) async fn purge(db: &dyn Db, before: Millis) -> StoreResult<u64> {
    db.execute(
        "DELETE FROM idempotency_keys WHERE created_at < $1",
        vec![before.into()],
    )
    .await
}

#[cfg(test)]
mod tests {
    use warden_core::Environment;

    use crate::sql::SqlStore;
    use crate::{EventAppend, IdempotencyState, IdempotentAnswer, Store};

    #[tokio::test]
    async fn an_answer_recorded_with_its_events_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_sqlite(dir.path()).await.unwrap();
        let tenant = warden_core::Tenant {
            org_id: "org_a".into(),
            environment: Environment::Live,
        };
        let claim = |now| store.begin_idempotent(&tenant, "key_1:k", "fp", now, 0);
        assert!(matches!(
            claim(1_000).await.unwrap(),
            IdempotencyState::Fresh
        ));
        let event = EventAppend {
            tenant: tenant.clone(),
            id: "evt_1".into(),
            occurred_at: 1_000,
            body: "{}".into(),
        };
        // Events appended without their answer leave the claim running:
        // a crash before the answer was recorded would leave it so.
        store
            .append_events(std::slice::from_ref(&event), None)
            .await
            .unwrap();
        assert!(matches!(
            claim(2_000).await.unwrap(),
            IdempotencyState::InProgress
        ));
        let answer = IdempotentAnswer {
            tenant: tenant.clone(),
            key: "key_1:k".into(),
            status: 202,
            sealed_body: "sealed answer".into(),
        };
        store.append_events(&[event], Some(&answer)).await.unwrap();
        match claim(3_000).await.unwrap() {
            IdempotencyState::Completed { status, body } => {
                assert_eq!((status, body.as_str()), (202, "sealed answer"))
            }
            other => panic!("{other:?}"),
        }
    }
}
