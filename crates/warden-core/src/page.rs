//! Cursor pagination: keyset cursors over (sort value, id), opaque to
//! clients, so pages stay stable while rows are added.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

pub const DEFAULT_LIMIT: u32 = 25;
pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Asc,
    Desc,
}

/// The value of the sort column at the last row of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortValue {
    Int(i64),
    Text(String),
}

/// Where the next page starts, bound to the sort it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub sort: String,
    #[serde(rename = "d")]
    pub direction: Direction,
    #[serde(rename = "v")]
    pub value: SortValue,
    #[serde(rename = "i")]
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        B64.encode(serde_json::to_vec(self).expect("cursor serializes"))
    }

    pub fn decode(text: &str) -> Result<Cursor> {
        B64.decode(text)
            .ok()
            .and_then(|raw| serde_json::from_slice::<Cursor>(&raw).ok())
            .filter(|c| {
                let text_ok = |t: &str| !t.contains('\0');
                text_ok(&c.id)
                    && text_ok(&c.sort)
                    && !matches!(&c.value, SortValue::Text(t) if !text_ok(t))
            })
            .ok_or_else(|| Error::invalid("cursor", "cursor is not one this API issued"))
    }
}

/// A validated page request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u32,
    pub sort: String,
    pub direction: Direction,
    pub after: Option<Cursor>,
}

/// Time fields (`*_at`) and sequence numbers sort by number, all others by
/// text.
pub fn numeric_sort(sort: &str) -> bool {
    sort.ends_with("_at") || sort == "sequence" || sort == "version"
}

impl PageRequest {
    /// The first page of a chain's records by sequence, newest first: what
    /// the server reads for itself, no caller's request to validate.
    pub fn newest_records(limit: u32) -> Self {
        PageRequest {
            limit,
            sort: "sequence".into(),
            direction: Direction::Desc,
            after: None,
        }
    }

    /// Validates limit and cursor; `sorts` lists the allowed sort fields, the
    /// first being the default.
    pub fn new(
        limit: Option<u32>,
        cursor: Option<&str>,
        sort: Option<&str>,
        direction: Option<Direction>,
        sorts: &[&str],
    ) -> Result<Self> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let sort = match sort {
            None => sorts[0].to_string(),
            Some(s) if sorts.contains(&s) => s.to_string(),
            Some(s) => {
                return Err(Error::invalid(
                    "sort",
                    format!("cannot sort by `{s}`; allowed: {}", sorts.join(", ")),
                ))
            }
        };
        let direction = direction.unwrap_or(
            if matches!(sort.as_str(), "created_at" | "sequence" | "version") {
                Direction::Desc
            } else {
                Direction::Asc
            },
        );
        // An empty `cursor=` means the first page, as if absent.
        let after = cursor
            .filter(|c| !c.is_empty())
            .map(Cursor::decode)
            .transpose()?;
        if let Some(c) = &after {
            // Another sort first: a cursor of `sort=name` used without it
            // is a caller's slip, named as such.
            if c.sort != sort || c.direction != direction {
                return Err(Error::invalid(
                    "cursor",
                    "cursor was issued for another sort order; repeat sort and direction",
                ));
            }
            let kind_matches = matches!(c.value, SortValue::Int(_)) == numeric_sort(&sort);
            if !kind_matches {
                return Err(Error::invalid(
                    "cursor",
                    "cursor is not one this API issued",
                ));
            }
        }
        Ok(PageRequest {
            limit,
            sort,
            direction,
            after,
        })
    }
}

/// One page of results and the cursor of the next, if any.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            sort: "name".into(),
            direction: Direction::Asc,
            value: SortValue::Text("a".into()),
            id: "agt_1".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("not-a-cursor").is_err());
        // A cursor of another sort field is named as such.
        let sorts = ["created_at", "name"];
        let err = PageRequest::new(None, Some(&c.encode()), None, None, &sorts).unwrap_err();
        assert!(err.to_string().contains("another sort order"), "{err}");
        let forged = Cursor {
            value: SortValue::Int(5),
            ..c
        };
        let err =
            PageRequest::new(None, Some(&forged.encode()), Some("name"), None, &sorts).unwrap_err();
        assert!(err.to_string().contains("not one this API issued"), "{err}");
    }

    #[test]
    fn limit_and_sort_are_checked() {
        assert!(PageRequest::new(Some(0), None, None, None, &["created_at"]).is_err());
        assert!(PageRequest::new(Some(201), None, None, None, &["created_at"]).is_err());
        let err =
            PageRequest::new(None, None, Some("id"), None, &["created_at", "name"]).unwrap_err();
        assert!(matches!(err, Error::Invalid { field, .. } if field == "sort"));
        let p = PageRequest::new(None, None, None, None, &["created_at"]).unwrap();
        assert_eq!((p.limit, p.direction), (25, Direction::Desc));
    }
}
