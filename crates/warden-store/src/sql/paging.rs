//! Keyset pagination over (sort column, id), shared by every list.

use sqlx::any::AnyRow;
use sqlx::AnyPool;
use warden_core::page::{Cursor, Direction, Page, PageRequest, SortValue};

use super::builder::SqlBuilder;
use crate::{StoreError, StoreResult};

/// Appends the cursor condition, order and limit to `q` (whose WHERE clause
/// is open) and fetches one row more than the page, to know if another follows.
pub(crate) async fn fetch(
    pool: &AnyPool,
    q: &mut SqlBuilder,
    page: &PageRequest,
    columns: &[&str],
) -> StoreResult<Vec<AnyRow>> {
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
            SortValue::Int(i) => q.int(*i),
            SortValue::Text(s) => q.text(s),
        };
        q.push(", ").text(&after.id).push(")");
    }
    q.push(&format!(" ORDER BY {column} {dir}, id {dir} LIMIT "))
        .int(i64::from(page.limit) + 1);
    Ok(q.query().fetch_all(pool).await?)
}

/// Decodes the rows of [`fetch`] into a page with the cursor of the next.
pub(crate) fn finish<T>(
    rows: Vec<AnyRow>,
    page: &PageRequest,
    decode: impl Fn(&AnyRow) -> StoreResult<T>,
    key: impl Fn(&T) -> (SortValue, String),
) -> StoreResult<Page<T>> {
    let more = rows.len() > page.limit as usize;
    let mut items = rows
        .iter()
        .take(page.limit as usize)
        .map(decode)
        .collect::<StoreResult<Vec<T>>>()?;
    let next_cursor = match (more, items.last_mut()) {
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
