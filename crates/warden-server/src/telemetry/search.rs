//! A search as the API takes it: time range, query, page and histogram,
//! bounded and checked, then run on the index off the async runtime.

use std::sync::Arc;
use std::time::Instant;

use warden_core::event::input::unseen_in_text;
use warden_core::secret::MasterKey;
use warden_core::time::now_ms;
use warden_core::Tenant;
use warden_search::interval::{self, MAX_BUCKETS};
use warden_search::{EventIndex, Order, Position, SearchError, SearchRequest, SearchResult};

use super::Telemetry;
use crate::http::error::{ApiError, Position as BodyPosition};
use crate::http::sealed_cursor::SealedCursors;

/// Events one page may hold.
pub const MAX_LIMIT: usize = 1_000;
/// The most bytes of events one page carries (at least one event, which
/// is at most 1 MiB): a page of large events ends early, with a cursor,
/// so that an answer, and what a slow reader keeps the server holding,
/// stays near this size.
pub const MAX_PAGE_BYTES: usize = 8 << 20;
/// The range searched when none is given: the last day.
pub const DEFAULT_RANGE_MS: i64 = 86_400_000;

/// What the caller asked, as text where the API takes text.
#[derive(Debug)]
pub struct SearchParams {
    pub query: String,
    /// The agent a bound key is limited to.
    pub agent_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
    pub order: Order,
    pub interval: Option<String>,
    /// Whether to count the histogram (a list of events needs none).
    pub histogram: bool,
    /// Names of the range parameters, for errors (`from_time` or `from`).
    pub from_name: &'static str,
    pub to_name: &'static str,
    /// Seals cursors: a position in the event log is shared by every
    /// tenant, so a readable one would tell how much others ingest.
    pub cursor_key: MasterKey,
}

pub struct SearchOutcome {
    pub result: SearchResult,
    pub from: i64,
    pub to: i64,
    pub interval: i64,
    pub next_cursor: Option<String>,
    pub query_time_ms: f64,
}

/// An empty value is refused, as every list's parameters are: a client
/// that meant to send one would otherwise get another range, silently.
fn present<'a>(name: &str, text: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    match text {
        Some(t) if t.trim().is_empty() => Err(ApiError::invalid(
            name,
            format!("{name} is empty: give a value, or leave {name} out"),
        )),
        other => Ok(other),
    }
}

fn time_param(name: &str, text: Option<&str>, now: i64) -> Result<Option<i64>, ApiError> {
    let Some(text) = present(name, text)? else {
        return Ok(None);
    };
    let at = crate::routes::wire::time_bound(name, text, now)?;
    // Events are stamped from 1970 to 9999: a time past either end means
    // the end, and the range (its histogram too) is what events can fill.
    Ok(Some(at.clamp(0, LATEST_TIME)))
}

/// 9999-12-31T23:59:59.999Z: the last time RFC 3339 can write.
const LATEST_TIME: i64 = 253_402_300_799_999;

/// The order a cursor was issued for: a cursor resumes only the search it
/// came from (API conventions: cursors are bound to their sort).
fn order_tag(order: Order) -> char {
    match order {
        Order::NewestFirst => 'd',
        Order::OldestFirst => 'a',
    }
}

/// The sealer of search cursors, kept apart per tenant.
fn cursors<'a>(key: &'a MasterKey, tenant: &Tenant) -> SealedCursors<'a> {
    SealedCursors::new(key, tenant, "events")
}

/// What binds a cursor to its query: a page resumed under another query
/// (a console whose filter changed between pages) would silently skip
/// the events the new query finds before the cursor's position.
fn query_mark(query: &str) -> String {
    crate::http::sealed_cursor::digest([query.trim()])
}

/// A cursor: the position after the page's last event, sealed (AES-GCM
/// under the master key) with the tenant, order and query it was issued
/// for, so that it reveals nothing of the shared log and resumes only its
/// own search.
fn encode_cursor(
    key: &MasterKey,
    tenant: &Tenant,
    position: Position,
    order: Order,
    query: &str,
) -> String {
    let plain = format!(
        "{}:{}:{}:{}",
        order_tag(order),
        position.timestamp,
        position.seq,
        query_mark(query)
    );
    cursors(key, tenant).seal(&plain)
}

fn decode_cursor(
    key: &MasterKey,
    tenant: &Tenant,
    text: &str,
    order: Order,
    query: &str,
) -> Result<Position, ApiError> {
    let bad = || {
        ApiError::invalid(
            "cursor",
            "cursor is not one this server issued for this search (issued by another version of \
             Warden, or for another query or sort): ask again from the first page",
        )
    };
    let raw = cursors(key, tenant).open(text)?;
    let mut parts = raw.splitn(4, ':');
    let (Some(tag), Some(timestamp), Some(seq), Some(mark)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if tag.len() != 1 || !"ad".contains(tag) {
        return Err(bad());
    }
    if !tag.starts_with(order_tag(order)) {
        return Err(ApiError::invalid(
            "cursor",
            "cursor belongs to a search in the other order: send it with the order it was issued for (`sort` in a search body, `direction` on GET /api/v1/events)",
        ));
    }
    if mark != query_mark(query) {
        return Err(ApiError::invalid(
            "cursor",
            "cursor belongs to a search with another query: send it with the query it was issued for, or start again without a cursor",
        ));
    }
    Ok(Position {
        timestamp: timestamp.parse().map_err(|_| bad())?,
        seq: seq.parse().map_err(|_| bad())?,
    })
}

/// A query error as the envelope shows it: the line and column of the
/// 1-based character `position` in the query (its message names the
/// position in the whole text).
pub fn query_error(query: &str, position: usize, message: String) -> ApiError {
    let before: Vec<char> = query.chars().take(position.saturating_sub(1)).collect();
    let line = 1 + before.iter().filter(|c| **c == '\n').count();
    let column = 1 + before.iter().rev().take_while(|c| **c != '\n').count();
    // A query of several lines: the line and column beside the position.
    let message = if line > 1 {
        message.replacen(
            &format!("at position {position}"),
            &format!("at position {position} (line {line}, column {column})"),
            1,
        )
    } else {
        message
    };
    let mut err = ApiError::malformed(message, BodyPosition { line, column });
    err.field = Some("query".into());
    err
}

impl Telemetry {
    /// The oldest event time the organization's retention keeps, if it
    /// set one: events past it are not served while they wait for the
    /// sweep (an old event ingested after a change, say).
    async fn retention_cutoff(&self, org_id: &str, now: i64) -> Option<i64> {
        let days = self
            .store
            .org_setting(org_id, super::retention::SETTING)
            .await
            .ok()??
            .parse::<i64>()
            .ok()?;
        Some(now - days * 86_400_000)
    }

    pub async fn search(
        &self,
        tenant: &Tenant,
        params: SearchParams,
    ) -> Result<SearchOutcome, ApiError> {
        let started = Instant::now();
        let now = now_ms();
        // A character pasted with the text that nothing indexed holds is
        // refused at the first one, rather than searched: keyword values
        // never hold a control character, an invisible or direction-changing
        // one, or a space other than the plain one (ingest refuses them), so
        // a query with one would find nothing while looking right; in
        // message text a control character only separates words.
        let pasted = params.query.chars().enumerate().find(|(_, c)| {
            (c.is_control() || c.is_whitespace()) && !matches!(c, ' ' | '\t' | '\n' | '\r')
        });
        let first = [pasted, unseen_in_text(&params.query)]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at);
        if let Some((at, c)) = first {
            let position = at + 1;
            let message = if c.is_control() {
                format!(
                    "invalid query at position {position}: a control character (U+{:04X}), \
                     pasted with the text (a NUL, a terminal's escape sequence), is in no \
                     keyword, and in message text only separates words; remove it",
                    c as u32
                )
            } else {
                format!(
                    "invalid query at position {position}: an invisible, direction-changing \
                     or look-alike space character (U+{:04X}), pasted with the text, would make \
                     the query find nothing that looks like it; remove it",
                    c as u32
                )
            };
            return Err(query_error(&params.query, position, message));
        }
        let ast = warden_query::parse(&params.query).map_err(|e| {
            query_error(
                &params.query,
                e.position,
                format!("invalid query at position {}: {}", e.position, e.message),
            )
        })?;
        let to = time_param(params.to_name, params.to.as_deref(), now)?.unwrap_or(now + 1);
        let from = time_param(params.from_name, params.from.as_deref(), now)?
            .unwrap_or((to - DEFAULT_RANGE_MS).max(0));
        let from_given = params.from.is_some();
        if from >= to && !from_given {
            return Err(ApiError::invalid(
                params.to_name,
                format!(
                    "{} must be after 1970-01-01T00:00:00Z, the earliest time an event can carry",
                    params.to_name
                ),
            ));
        }
        // The end is exclusive: at the end of time it takes in the last
        // millisecond too, which events may carry.
        let end = if to == LATEST_TIME { to + 1 } else { to };
        if from >= end {
            return Err(ApiError::invalid(
                params.from_name,
                format!(
                    "{} must be before {} (times count whole milliseconds)",
                    params.from_name, params.to_name
                ),
            ));
        }
        let interval = match present("interval", params.interval.as_deref())? {
            _ if !params.histogram => 0,
            None => interval::choose(from, end),
            Some(text) => {
                let ms = interval::parse(text).ok_or_else(|| {
                    ApiError::invalid("interval", "interval is a width such as 30s, 5m, 1h or 1d")
                })?;
                if interval::bars(from, end, ms) > MAX_BUCKETS {
                    return Err(ApiError::invalid(
                        "interval",
                        format!("interval gives more than {MAX_BUCKETS} buckets for this range"),
                    ));
                }
                ms
            }
        };
        let after = present("cursor", params.cursor.as_deref())?
            .map(|c| decode_cursor(&params.cursor_key, tenant, c, params.order, &params.query))
            .transpose()?;
        let request = SearchRequest {
            org_id: tenant.org_id.clone(),
            environment: tenant.environment.as_str().to_string(),
            query: ast,
            agent_id: params.agent_id.clone(),
            from,
            to: end,
            not_before: self.retention_cutoff(&tenant.org_id, now).await,
            // One more than asked tells whether another page follows.
            limit: params.limit.min(MAX_LIMIT) + 1,
            max_page_bytes: MAX_PAGE_BYTES,
            order: params.order,
            after,
            interval,
            now,
            abandoned: Default::default(),
            time_limit: Some(self.search_time_limit),
        };
        let index = self.index.clone();
        let query_text = params.query.clone();
        // A caller that goes away (its connection closed) stops the search.
        let guard = warden_search::run::Guard::new(&request.abandoned);
        let searched = search_below_requests(index, request).await;
        guard.finish();
        let mut result = searched
            .map_err(ApiError::internal)?
            .map_err(|err| match err {
                SearchError::Query { position, message } => query_error(
                    &query_text,
                    position,
                    format!("invalid query at position {position}: {message}"),
                ),
                SearchError::Damaged(why) => {
                    self.health.mark_damaged();
                    tracing::error!(error = %why, "the search index is damaged; stop the server and run `warden reindex`");
                    ApiError::unavailable(
                        "the search index is damaged on disk: stop the server and run `warden reindex`, \
                         which rebuilds it from the event log (no event is lost)",
                    )
                }
                SearchError::TimedOut { seconds } => ApiError::unprocessable(format!(
                    "the search ran past the server's time limit of {seconds} s and was stopped \
                     (its cost, or a server busy with ingest, which searches give way to): \
                     narrow the time range, or replace a leading wildcard (`*word`), which reads \
                     every word the index holds, by a whole word or a trailing wildcard"
                ))
                .with_field("query"),
                other => ApiError::internal(other),
            })?;
        let limit = params.limit.min(MAX_LIMIT);
        let next_cursor = if result.events.len() > limit || result.cut_short {
            result.events.truncate(limit);
            result.events.last().map(|(p, _)| {
                encode_cursor(&params.cursor_key, tenant, *p, params.order, &params.query)
            })
        } else {
            None
        };
        Ok(SearchOutcome {
            result,
            from,
            to,
            interval,
            next_cursor,
            query_time_ms: started.elapsed().as_secs_f64() * 1_000.0,
        })
    }

    /// One event by its id, as searches see it: within the tenant (and the
    /// agent of a bound key), once indexed.
    pub async fn event(
        &self,
        tenant: &Tenant,
        agent_id: Option<&str>,
        id: &str,
    ) -> Result<Option<String>, ApiError> {
        let request = SearchRequest {
            org_id: tenant.org_id.clone(),
            environment: tenant.environment.as_str().to_string(),
            query: warden_query::Query::Match {
                field: Some("id".into()),
                value: warden_query::MatchValue::Phrase(id.to_string()),
                position: 0,
            },
            agent_id: agent_id.map(str::to_string),
            from: i64::MIN / 2,
            to: i64::MAX / 2,
            not_before: self.retention_cutoff(&tenant.org_id, now_ms()).await,
            limit: 1,
            max_page_bytes: MAX_PAGE_BYTES,
            order: Order::NewestFirst,
            after: None,
            interval: 0,
            now: now_ms(),
            abandoned: Default::default(),
            time_limit: Some(self.search_time_limit),
        };
        let index = self.index.clone();
        let guard = warden_search::run::Guard::new(&request.abandoned);
        let searched = search_below_requests(index, request).await;
        guard.finish();
        let result = searched
            .map_err(ApiError::internal)?
            .map_err(|err| match err {
                // One event by its id is no costly search: only a server
                // busy with ingest keeps it past the limit.
                SearchError::TimedOut { seconds } => ApiError::unavailable(format!(
                    "the search index did not answer within the server's time limit of \
                     {seconds} s (it is busy with ingest); try again"
                )),
                other => ApiError::internal(other),
            })?;
        Ok(result.events.into_iter().next().map(|(_, json)| json))
    }
}

/// Runs a search in the index's scheduling class (`SCHED_IDLE`, see
/// `warden_search::background`): decisions and ingest come first, and the
/// threads that build the index share the rest with searches. At normal
/// priority a run of costly searches took every core from the indexer and
/// left acknowledged events unsearchable for tens of seconds.
async fn search_below_requests(
    index: Arc<EventIndex>,
    request: SearchRequest,
) -> Result<Result<SearchResult, SearchError>, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        warden_search::background::at_indexing_priority(|| index.search(&request))
    })
    .await
}
