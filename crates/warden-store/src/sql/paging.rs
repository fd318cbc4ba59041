//! Keyset pagination over (sort column, id), shared by every list.

use warden_core::page::{Cursor, Direction, Page, PageRequest, SortValue};

use super::builder::SqlBuilder;
use crate::db::{Db, Row};
use crate::{StoreError, StoreResult};

/// Appends the cursor condition, order and limit to `q` (whose WHERE clause
/// is open) and fetches one row more than the page, to know if another follows.
pub(crate) async fn fetch(
    db: &dyn Db,
    mut q: SqlBuilder,
    page: &PageRequest,
    columns: &[&str],
) -> StoreResult<Vec<Row>> {
    let column = columns
        .iter()
        .find(|c| **c == page.sort)
        .ok_or_else(|| StoreError::Corrupt(format!("cannot sort by {}", page.sort)))?;
    let (cmp, dir) = match page.direction {
        Direction::Asc => (">", "ASC"),
        Direction::Desc => ("<", "DESC"),
    };
    if let Some(after) = &page.after {
        q.push(&format!(" AND ({column}, id) {cmp} ("));
        match &after.value {
            SortValue::Int(i) => q.bind(*i),
            SortValue::Text(s) => q.bind(s),
        };
        q.push(", ").bind(&after.id).push(")");
    }
    q.push(&format!(" ORDER BY {column} {dir}, id {dir} LIMIT "))
        .bind(i64::from(page.limit) + 1);
    db.query(&q.text, q.args).await
}

/// Like [`fetch`] for a numeric column unique within the query (a version
/// or sequence number), which needs no tie-breaker.
pub(crate) async fn fetch_unique(
    db: &dyn Db,
    mut q: SqlBuilder,
    page: &PageRequest,
    column: &str,
) -> StoreResult<Vec<Row>> {
    let (cmp, dir) = match page.direction {
        Direction::Asc => (">", "ASC"),
        Direction::Desc => ("<", "DESC"),
    };
    if let Some(after) = &page.after {
        let SortValue::Int(value) = after.value else {
            return Err(StoreError::Corrupt("cursor holds text".into()));
        };
        q.push(&format!(" AND {column} {cmp} ")).bind(value);
    }
    q.push(&format!(" ORDER BY {column} {dir} LIMIT "))
        .bind(i64::from(page.limit) + 1);
    db.query(&q.text, q.args).await
}

/// Decodes the rows of [`fetch`] into a page with the cursor of the next.
pub(crate) fn finish<T>(
    rows: Vec<Row>,
    page: &PageRequest,
    decode: impl Fn(&Row) -> StoreResult<T>,
    key: impl Fn(&T) -> (SortValue, String),
) -> StoreResult<Page<T>> {
    let more = rows.len() > page.limit as usize;
    let items = rows
        .iter()
        .take(page.limit as usize)
        .map(decode)
        .collect::<StoreResult<Vec<T>>>()?;
    let next_cursor = match (more, items.last()) {
        (true, Some(last)) => {
            let (value, id) = key(last);
            Some(
                Cursor {
                    sort: page.sort.clone(),
                    direction: page.direction,
                    value,
                    id,
                }
                .encode(),
            )
        }
        _ => None,
    };
    Ok(Page { items, next_cursor })
}
