//! `POST /api/v1/siem/search`: the analyst's search, with the exact total
//! and a histogram broken down by severity.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use warden_core::event::Severity;
use warden_core::time::to_rfc3339;
use warden_search::Order;

use super::events::EventView;
use crate::auth::Principal;
use crate::http::envelope::{ok, ApiData, DataEnvelope};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::ApiJson;
use crate::state::AppState;
use crate::telemetry::search::SearchParams;

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SearchSort {
    /// Newest first.
    #[default]
    Desc,
    /// Oldest first.
    Asc,
}

/// A search over the organization's events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchBody {
    /// The search language (docs/query-language.md); empty, null or
    /// left out finds everything.
    #[schema(example = "program:sshd AND user:root")]
    #[serde(default)]
    pub query: Option<String>,
    /// Start of the event-time range (inclusive): RFC 3339, a date,
    /// a number since 1970 (seconds, milliseconds, microseconds or
    /// nanoseconds, by magnitude), or `now-24h`; default: a day before `to_time`.
    #[schema(example = "now-24h", value_type = Option<super::wire::TimeValue>)]
    #[serde(default, deserialize_with = "text_or_number")]
    pub from_time: Option<String>,
    /// End of the range (exclusive); default: now.
    #[schema(value_type = Option<super::wire::TimeValue>)]
    #[serde(default, deserialize_with = "text_or_number")]
    pub to_time: Option<String>,
    /// Events per page, 0 to 1,000 (default 100); 0 gives only counts.
    #[schema(minimum = 0, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[schema(min_length = 1)]
    pub cursor: Option<String>,
    pub sort: Option<SearchSort>,
    /// Histogram bucket width (`30s`, `5m`, `1h`, `1d` or milliseconds);
    /// chosen from the range when absent.
    #[schema(example = "1h", value_type = Option<super::wire::IntervalValue>)]
    pub interval: Option<Value>,
}

/// A time given as text or, for a number since 1970, as a JSON number.
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        // A fraction (`time.time()`) too: read by magnitude, as ingest does.
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(serde::de::Error::custom(
            "expected a time: RFC 3339 text, a date, now-24h or a number since 1970",
        )),
    }
}

/// One histogram bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    /// The bucket's start.
    #[schema(format = DateTime)]
    pub time: String,
    pub count: u64,
    /// Events per severity.
    pub breakdown: Breakdown,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Breakdown {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub info: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    /// The page of events, in the requested order.
    #[schema(value_type = Vec<EventView>)]
    pub events: Vec<Value>,
    /// Exactly how many events match in the range.
    pub total: u64,
    pub histogram: Vec<Bucket>,
    /// The histogram's bucket width in milliseconds.
    pub interval_ms: i64,
    #[schema(format = DateTime)]
    pub from_time: String,
    #[schema(format = DateTime)]
    pub to_time: String,
    pub query_time_ms: f64,
    /// Null on the last page.
    pub next_cursor: Option<String>,
}

/// Search events.
///
/// Runs the query over the event-time range; answers the page of events,
/// the exact total and a histogram broken down by severity.
#[utoipa::path(post, path = "/api/v1/siem/search", tag = "events", request_body = SearchBody,
    responses(
        (status = 200, description = "The result", body = DataEnvelope<SearchResponse>),
        (status = 400, description = "The query is malformed: `position` says where", body = crate::http::error::ErrorEnvelope),
        (status = 422, description = "The search ran past the server's time limit and was stopped (`field` is `query`)", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["events.read"])))]
pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<SearchBody>,
) -> ApiResult<ApiData<SearchResponse>> {
    principal.require("events.read")?;
    let limit = body.limit.unwrap_or(100);
    if !(0..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "limit must be between 0 and 1000",
        ));
    }
    let interval = match body.interval {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(ApiError::invalid(
                "interval",
                "interval is a width such as 30s, 5m, 1h or 1d",
            ))
        }
    };
    let outcome = state
        .telemetry
        .search(
            &principal.tenant(),
            SearchParams {
                query: body.query.unwrap_or_default(),
                agent_id: principal.agent_id.clone(),
                from: body.from_time,
                to: body.to_time,
                limit: limit as usize,
                cursor: body.cursor,
                order: match body.sort.unwrap_or_default() {
                    SearchSort::Desc => Order::NewestFirst,
                    SearchSort::Asc => Order::OldestFirst,
                },
                interval,
                histogram: true,
                from_name: "from_time",
                to_name: "to_time",
                cursor_key: state.master.clone(),
            },
        )
        .await?;
    let histogram = outcome
        .result
        .histogram
        .iter()
        .map(|(start, counts)| Bucket {
            time: to_rfc3339(*start),
            count: counts.iter().sum(),
            breakdown: Breakdown {
                critical: counts[Severity::Critical.rank() as usize],
                high: counts[Severity::High.rank() as usize],
                medium: counts[Severity::Medium.rank() as usize],
                low: counts[Severity::Low.rank() as usize],
                info: counts[Severity::Info.rank() as usize],
            },
        })
        .collect();
    Ok(ok(SearchResponse {
        events: outcome
            .result
            .events
            .into_iter()
            .map(|(_, json)| serde_json::from_str(&json).unwrap_or(Value::Null))
            .collect(),
        total: outcome.result.total,
        histogram,
        interval_ms: outcome.interval,
        from_time: to_rfc3339(outcome.from),
        to_time: to_rfc3339(outcome.to),
        query_time_ms: (outcome.query_time_ms * 1000.0).round() / 1000.0,
        next_cursor: outcome.next_cursor,
    }))
}
