//! Persisted drift profiles: a snapshot per agent and the audit sequence it
//! covers, so that a profile is rebuilt by replaying only what follows.

use warden_core::Tenant;

use crate::db::{Db, Step};
use crate::StoreResult;

pub(crate) async fn get(
    db: &dyn Db,
    tenant: &Tenant,
    agent_id: &str,
) -> StoreResult<Option<(i64, String)>> {
    let rows = db
        .query(
            "SELECT sequence, profile FROM drift_profiles \
             WHERE org_id = $1 AND environment = $2 AND agent_id = $3",
            vec![
                (&tenant.org_id).into(),
                tenant.environment.as_str().into(),
                agent_id.into(),
            ],
        )
        .await?;
    rows.first()
        .map(|r| Ok((r.int("sequence")?, r.text("profile")?)))
        .transpose()
}

/// Saves snapshots; one never replaces a newer one (one of the same
/// sequence does: a profile scrubbed as it loaded is saved over itself).
pub(crate) async fn save(
    db: &dyn Db,
    snapshots: &[(Tenant, String, i64, String)],
    now: i64,
) -> StoreResult<()> {
    let steps = snapshots
        .iter()
        .map(|(tenant, agent_id, sequence, profile)| {
            Step::execute(
                "INSERT INTO drift_profiles (org_id, environment, agent_id, sequence, profile, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (org_id, environment, agent_id) DO UPDATE \
                 SET sequence = $4, profile = $5, updated_at = $6 \
                 WHERE drift_profiles.sequence <= $4",
                vec![
                    (&tenant.org_id).into(),
                    tenant.environment.as_str().into(),
                    agent_id.into(),
                    (*sequence).into(),
                    profile.into(),
                    now.into(),
                ],
            )
        })
        .collect();
    db.transaction(steps).await?;
    Ok(())
}

pub(crate) async fn delete(db: &dyn Db, tenant: &Tenant, agent_id: &str) -> StoreResult<()> {
    db.execute(
        "DELETE FROM drift_profiles WHERE org_id = $1 AND environment = $2 AND agent_id = $3",
        vec![
            (&tenant.org_id).into(),
            tenant.environment.as_str().into(),
            agent_id.into(),
        ],
    )
    .await?;
    Ok(())
}
