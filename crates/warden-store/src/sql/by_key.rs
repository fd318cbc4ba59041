//! Reads and writes of one row by its unique key, shaped so that no
//! planner can take another way to it.
//!
//! PostgreSQL without statistics on a table (before its first analyze, or
//! with autovacuum off) costs `org_id = $2 AND environment = $3` as one
//! row, as cheap as the unique key, and may walk the tenant's index for
//! the row: one lookup then reads every audit record or hold of the
//! tenant, slower as they grow. The tenant is still required: compared
//! after the read, or written as an expression no index holds.

use warden_core::Tenant;

use crate::db::{Db, Row};
use crate::StoreResult;

/// The row of `table` whose unique `key` column holds `value`, if it is
/// `tenant`'s; `columns` are selected with `org_id` and `environment`.
pub(crate) async fn tenant_row(
    db: &dyn Db,
    table: &str,
    columns: &str,
    key: &str,
    value: &str,
    tenant: &Tenant,
) -> StoreResult<Option<Row>> {
    let sql = format!("SELECT org_id, environment, {columns} FROM {table} WHERE {key} = $1");
    let rows = db.query(&sql, vec![value.into()]).await?;
    for row in rows {
        if row.tenant()? == *tenant {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

/// The tenant's condition for a statement that finds its row by its
/// unique key, given the placeholders of the organization and the
/// environment: compared as expressions, which no index holds, so that
/// the key's index is the only way in.
pub(crate) fn same_tenant(org: usize, environment: usize) -> String {
    format!("org_id || '' = ${org} AND environment || '' = ${environment}")
}
