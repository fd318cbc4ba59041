//! `/api/v1/events`: ingest (a JSON batch, NDJSON logs), quick search, and
//! the organization's event retention.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use warden_core::audit::{AuditKind, AuditRecord};
use warden_core::event::input::{parse_event, Dialect, FieldError};
use warden_core::event::limits::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES};
use warden_core::event::Event;
use warden_core::id::{new_time_ordered_id, prefix};
use warden_core::time::now_ms;
use warden_search::Order;
use warden_store::Companion;

use super::wire::SortDirection;
use crate::auth::Principal;
use crate::governance::holds::append_error;
use crate::heavy_work::off_workers_if;
use crate::http::envelope::{ok, ApiData, ApiList, DataEnvelope, ListEnvelope};
use crate::http::error::{ApiError, ApiResult, ItemError};
use crate::http::extract::{
    body_failure, declares_other_charset, is_json, media_type, parse_json, refuse_declared_over,
    without_bom, ApiJson, ApiQuery, ResourceId, JSON_MEDIA_TYPE,
};
use crate::http::unique_keys::UniqueKeys;
use crate::idempotency::Claim;
use crate::state::AppState;
use crate::telemetry::ingest::bind_to_agent;
use crate::telemetry::ndjson::{NdjsonError, NdjsonReader};
use crate::telemetry::retention::{MAX_DAYS, SETTING};
use crate::telemetry::search::SearchParams;

/// What an ingest acknowledged: every event is on disk.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accepted {
    pub accepted: usize,
    /// The ids Warden gave the events, in the order sent.
    pub ids: Vec<String>,
}

/// A batch as the body may carry it (for the document; the handler reads
/// the body itself, to name each bad event).
#[allow(dead_code)]
#[derive(ToSchema, Deserialize)]
#[serde(untagged)]
pub enum EventBatch {
    Events(Vec<EventInput>),
    Wrapped(WrappedEvents),
}

/// `{"events": […]}`.
#[allow(dead_code)]
#[derive(ToSchema, Deserialize)]
pub struct WrappedEvents {
    events: Vec<EventInput>,
}

/// One event, as ingested. Names other than these are kept in `fields`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct EventInput {
    /// RFC 3339, or seconds/milliseconds since 1970; default: arrival.
    #[schema(example = "2026-11-24T10:00:00Z", value_type = Option<super::wire::TimeValue>)]
    pub timestamp: Option<Value>,
    /// `agent`, `syslog`, `json` or `api` (default).
    pub source: Option<String>,
    pub host: Option<String>,
    pub program: Option<String>,
    /// `critical`, `high`, `medium`, `low` or `info` (default); common level
    /// names (`error`, `warning`, `debug`) are accepted.
    #[schema(min_length = 1)]
    pub severity: Option<String>,
    pub message: Option<String>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Any further JSON, searchable by dotted name.
    pub fields: Option<serde_json::Map<String, Value>>,
}

/// An event as stored and searched.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: String,
    #[schema(format = DateTime)]
    pub timestamp: String,
    #[schema(format = DateTime)]
    pub received_at: String,
    pub source: String,
    pub host: Option<String>,
    pub program: Option<String>,
    pub severity: String,
    pub message: String,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub tags: Vec<String>,
    pub fields: serde_json::Map<String, Value>,
}

/// How much of a body past its limit is read and dropped before the 413:
/// a client still sending when the connection closes sees a broken pipe
/// instead of the answer, so a body a little too large is read to its end.
const DRAINED_PAST_LIMIT: usize = 4 * 1024 * 1024;

/// Reads a body of at most `limit` bytes, holding its share of
/// [`UPLOAD_MEMORY`] in `held` as it arrives.
async fn read_limited(
    body: Body,
    limit: usize,
    held: &mut Option<tokio::sync::SemaphorePermit<'static>>,
) -> Result<Vec<u8>, ApiError> {
    let mut body = body;
    let mut out = Vec::new();
    let mut past = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::invalid("body", body_failure(&e.to_string())))?;
        if let Ok(data) = frame.into_data() {
            if past > 0 || out.len() + data.len() > limit {
                out = Vec::new();
                past += data.len();
                if past > DRAINED_PAST_LIMIT {
                    break;
                }
                continue;
            }
            hold_upload_memory(held, out.len() + data.len())?;
            out.extend_from_slice(&data);
        }
    }
    if past > 0 {
        return Err(ApiError::payload_too_large(limit));
    }
    Ok(out)
}

/// Inflates a gzip body (concatenated members too), refusing one that
/// inflates past `limit`: the batch limit applies to the JSON itself.
fn gunzip_limited(gzip: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(gzip)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::invalid("body", format!("the gzip body is not valid gzip: {e}")))?;
    if out.len() > limit {
        let mut err = ApiError::payload_too_large(limit);
        err.message = format!(
            "the events are larger than {limit} bytes (after inflating); send them in several requests"
        );
        return Err(err);
    }
    Ok(out)
}

/// Maps a batch's JSON to events, refusing the whole batch if any is bad.
///
/// `body_bytes` is the request's size: no event can pass the per-event limit
/// in a smaller body, so only larger ones have each event measured.
pub(crate) fn batch_events(
    value: Value,
    received_at: i64,
    body_bytes: usize,
) -> Result<Vec<Event>, ApiError> {
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut object) => match object.remove("events") {
            Some(Value::Array(items)) if object.is_empty() => items,
            _ => {
                return Err(ApiError::invalid(
                    "events",
                    "the body is a JSON array of events or {\"events\": [...]}",
                ))
            }
        },
        _ => {
            return Err(ApiError::invalid(
                "events",
                "the body is a JSON array of events or {\"events\": [...]}",
            ))
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid("events", "the batch holds no events"));
    }
    if items.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::invalid(
            "events",
            format!(
                "a batch holds at most {MAX_BATCH_EVENTS} events; this one holds {}",
                items.len()
            ),
        ));
    }
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut bad = 0usize;
    let measure = body_bytes > MAX_EVENT_BYTES;
    for (index, item) in items.into_iter().enumerate() {
        let parsed = if measure && json_len(&item) > MAX_EVENT_BYTES {
            Err(FieldError {
                field: String::new(),
                message: format!("the event's JSON is longer than {MAX_EVENT_BYTES} bytes"),
            })
        } else {
            parse_event(
                item,
                Dialect::Api,
                new_time_ordered_id(prefix::EVENT),
                received_at,
            )
        };
        match parsed {
            Ok(event) => events.push(event),
            Err(err) => {
                bad += 1;
                if errors.len() < 100 {
                    errors.push(ItemError {
                        index: Some(index),
                        line: None,
                        field: err.field,
                        message: err.message,
                    });
                }
            }
        }
    }
    if bad > 0 {
        return Err(ApiError::invalid_items(
            format!("{bad} of the batch's events are invalid; nothing was stored"),
            bad,
            errors,
        ));
    }
    Ok(events)
}

/// The length of `value` as compact JSON, without writing it out.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Ingest a batch of events.
///
/// A JSON array (or `{"events": [...]}`) of up to 10,000 events and 10 MiB
/// (gzip allowed, `Content-Encoding: gzip`; 10 MiB before and after
/// inflating). Answered once every event is durably committed; a batch with an invalid
/// event is refused whole, naming each bad event's index and field.
#[utoipa::path(post, path = "/api/v1/events/batch", tag = "events",
    request_body(content = EventBatch, description = "The events: an array, or an object whose `events` is one"),
    responses(
        (status = 202, description = "Every event is stored", body = DataEnvelope<Accepted>),
        (status = 400, description = "An event is invalid; nothing was stored", body = crate::http::error::ErrorEnvelope),
        (status = 413, description = "The body is larger than 10 MiB", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["events.ingest"])))]
pub async fn ingest_batch(
    State(state): State<AppState>,
    principal: Principal,
    request: Request,
) -> ApiResult<ApiData<Accepted>> {
    principal.require(warden_core::scope::INGEST)?;
    let claim = request.extensions().get::<Claim>().cloned();
    if !is_json(request.headers()) {
        return Err(ApiError::unsupported_media_type(JSON_MEDIA_TYPE));
    }
    let gzip = is_gzip(request.headers())?;
    refuse_declared_over(request.headers(), MAX_BATCH_BYTES)?;
    let received_at = now_ms();
    // What this batch holds of the process's upload memory, in KiB, until
    // it is answered.
    let mut held = None;
    let mut bytes = read_limited(request.into_body(), MAX_BATCH_BYTES, &mut held).await?;
    if gzip {
        bytes = gunzip_limited(&bytes, MAX_BATCH_BYTES)?;
        hold_upload_memory(&mut held, bytes.len())?;
    }
    let (events, values) = off_workers_if(bytes.len() >= HEAVY_CHUNK, || {
        let value = match parse_json(&bytes) {
            Ok(UniqueKeys(value)) => value,
            Err(err) => {
                return Err(
                    every_bad_event(&bytes, received_at).unwrap_or_else(|| in_the_batch(err))
                )
            }
        };
        let values = crate::telemetry::ndjson::values_in(&value);
        Ok((batch_events(value, received_at, bytes.len())?, values))
    })?;
    hold_upload_memory(
        &mut held,
        crate::telemetry::ndjson::held_bytes(bytes.len(), values),
    )?;
    let mut events = events;
    bind_to_agent(&principal, &mut events);
    store_events(&state, &principal, events, claim.as_ref()).await
}

/// An event whose `agent_id` is a registered agent's external id names
/// that agent by its Warden id, as decisions and the Thoth SDK's events
/// do, so that `agent_id:agt_…` and a key bound to the agent find all of
/// its events; `fields.external_agent_id` is the agent's external id
/// (whatever the event gave that field), for an event named by either id
/// or stamped by a bound key. Other values stay as sent (logs may name
/// agents Warden has not met).
async fn name_known_agents(
    state: &AppState,
    principal: &Principal,
    events: &mut [Event],
) -> ApiResult<()> {
    let tenant = principal.tenant();
    let g = &state.governance;
    // Reference → the agent's Warden id and external id.
    type Known = Option<(String, Option<String>)>;
    let mut known: std::collections::HashMap<String, Known> = Default::default();
    for event in events.iter_mut() {
        let Some(reference) = event.agent_id.clone() else {
            continue;
        };
        if !known.contains_key(&reference) {
            let found = g.agents.find(g.store.as_ref(), &tenant, &reference).await?;
            known.insert(reference.clone(), found.map(|a| (a.id, a.external_id)));
        }
        if let Some(Some((id, external_id))) = known.get(&reference) {
            crate::telemetry::ingest::stamp_agent(event, id, external_id.as_deref());
        }
    }
    Ok(())
}

/// A batch refused for a key named twice, naming every bad event as
/// validation does: each event with a repeated key, and each that
/// validation refuses besides. `None` when the body is not well-formed
/// JSON with a repeated key in an event.
fn every_bad_event(bytes: &[u8], received_at: i64) -> Option<ApiError> {
    let bytes = without_bom(bytes);
    let (value, repeated) = warden_policy::unique_keys::repeated_keys(bytes).ok()?;
    let mut errors: Vec<ItemError> = repeated
        .iter()
        .filter_map(|place| {
            // `[3].fields.user`, or `events[3].fields.user` in the object form.
            let place = place.strip_prefix("events").unwrap_or(place);
            let (index, field) = place.strip_prefix('[')?.split_once(']')?;
            let field = field.strip_prefix('.').unwrap_or(field);
            // A credential sent as a key is not quoted, nor any piece of
            // it: taken out of the whole path first, since a token's own
            // dots would otherwise make its signature the last part.
            let field = crate::http::error::without_credentials(field.to_string());
            let field = field.as_str();
            // The name repeated: the path's last part (`m[1]` at its end
            // names `m`; a `[REDACTED]` is a name).
            let mut key = field.rsplit('.').next().unwrap_or(field);
            while let Some(open) = key.rfind('[').filter(|&at| at > 0) {
                let index = &key[open + 1..];
                match index.strip_suffix(']') {
                    Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                        key = &key[..open];
                    }
                    _ => break,
                }
            }
            Some(ItemError {
                index: Some(index.parse().ok()?),
                line: None,
                field: warden_core::event::input::model_path(
                    warden_core::event::input::Dialect::Api,
                    field,
                ),
                message: format!("duplicate field `{key}`"),
            })
        })
        .collect();
    if errors.is_empty() {
        return None;
    }
    if let Err(refused) = batch_events(value, received_at, bytes.len()) {
        errors.extend(refused.errors.unwrap_or_default());
    }
    errors.sort_by_key(|e| e.index);
    let mut bad: Vec<Option<usize>> = errors.iter().map(|e| e.index).collect();
    bad.dedup();
    errors.truncate(100);
    Some(ApiError::invalid_items(
        format!(
            "{} of the batch's events are invalid; nothing was stored",
            bad.len()
        ),
        bad.len(),
        errors,
    ))
}

/// A batch's parse error names its event as validation does
/// (`events[3].fields.user`), whichever form the batch took.
fn in_the_batch(mut e: ApiError) -> ApiError {
    if let Some(field) = e.field.as_mut().filter(|f| f.starts_with('[')) {
        field.insert_str(0, "events");
    }
    e
}

/// Appends validated events and answers with their ids; with a claimed
/// `Idempotency-Key`, the answer commits with the events.
pub(crate) async fn store_events(
    state: &AppState,
    principal: &Principal,
    mut events: Vec<Event>,
    claim: Option<&Claim>,
) -> ApiResult<ApiData<Accepted>> {
    name_known_agents(state, principal, &mut events).await?;
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let accepted = Accepted {
        accepted: ids.len(),
        ids,
    };
    let answer = claim.and_then(|c| c.answer(state, StatusCode::ACCEPTED, accepted.clone()));
    state
        .telemetry
        .append(&principal.tenant(), events, answer.as_ref())
        .await?;
    Ok(ApiData(StatusCode::ACCEPTED, accepted))
}

fn is_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    match headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase())
    {
        None => Ok(false),
        Some(e) if e.is_empty() || e == "identity" => Ok(false),
        Some(e) if e == "gzip" || e == "x-gzip" => Ok(true),
        Some(other) => Err(ApiError::unsupported_encoding(
            &other,
            "gzip or no encoding",
        )),
    }
}

/// Ingest newline-delimited JSON logs.
///
/// One JSON object per line, gzip allowed (`Content-Encoding: gzip`),
/// read as it streams in. Common names are mapped (`@timestamp`, `time`,
/// `level`, `msg`, `message`, `host`); the rest is kept in `fields`. Up to
/// 100,000 lines and 64 MiB after inflating; a bad line refuses the whole
/// request, naming each bad line.
#[utoipa::path(post, path = "/api/v1/events/ndjson", tag = "events",
    request_body(content((String = "application/x-ndjson"), (String = "application/ndjson"), (String = "application/jsonl"), (String = "text/plain")), description = "One JSON log per line, sent as raw text (not a JSON string). `application/json` is taken too, as a label some shippers put on such lines, but is left out here: in this document it would mean one JSON-encoded string."),
    responses(
        (status = 202, description = "Every line is stored", body = DataEnvelope<Accepted>),
        (status = 400, description = "A line is invalid; nothing was stored", body = crate::http::error::ErrorEnvelope),
        (status = 413, description = "More than 100,000 lines or 64 MiB", body = crate::http::error::ErrorEnvelope),
        (status = 415, description = "A Content-Type other than those listed, a charset other than UTF-8, or a Content-Encoding other than gzip", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["events.ingest"])))]
pub async fn ingest_ndjson(
    State(state): State<AppState>,
    principal: Principal,
    request: Request,
) -> ApiResult<ApiData<Accepted>> {
    principal.require(warden_core::scope::INGEST)?;
    let claim = request.extensions().get::<Claim>().cloned();
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let mime = content_type.map(media_type);
    if !matches!(
        mime.as_deref(),
        None | Some("application/x-ndjson")
            | Some("application/ndjson")
            | Some("application/jsonl")
            | Some("application/json")
            | Some("text/plain")
    ) || content_type.is_some_and(declares_other_charset)
    {
        return Err(ApiError::unsupported_media_type(
            "application/x-ndjson (or application/ndjson, application/jsonl, application/json, text/plain, or none), in UTF-8",
        ));
    }
    let gzip = is_gzip(request.headers())?;
    if !gzip {
        refuse_declared_over(
            request.headers(),
            crate::telemetry::ndjson::MAX_NDJSON_BYTES,
        )?;
    }
    let mut reader = NdjsonReader::new(gzip, now_ms());
    let mut body = request.into_body();
    // What this upload holds of the process's ingest memory, in KiB.
    let mut held: Option<tokio::sync::SemaphorePermit<'static>> = None;
    let too_large = |e: NdjsonError| match e {
        NdjsonError::TooLarge(message) => {
            let mut err = ApiError::payload_too_large(crate::telemetry::ndjson::MAX_NDJSON_BYTES);
            err.message = message;
            err
        }
        NdjsonError::Gzip(message) => ApiError::invalid(
            "body",
            format!("the gzip stream is broken, or followed by bytes that are not gzip: {message}"),
        ),
        NdjsonError::NotGzip => ApiError::invalid(
            "body",
            "the body is not gzip (it does not begin with gzip's bytes 1f 8b), though \
             `Content-Encoding: gzip` says it is: send it as it is without that header, or gzip it",
        ),
    };
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::invalid("body", body_failure(&e.to_string())))?;
        if let Ok(data) = frame.into_data() {
            // A gzip chunk inflates to megabytes of lines to parse.
            let heavy = gzip || data.len() >= HEAVY_CHUNK;
            off_workers_if(heavy, || reader.push(&data)).map_err(too_large)?;
            hold_upload_memory(&mut held, reader.held_bytes())?;
        }
    }
    let heavy = gzip || reader.pending_bytes() >= HEAVY_CHUNK;
    off_workers_if(heavy, || reader.finish()).map_err(too_large)?;
    hold_upload_memory(&mut held, reader.held_bytes())?;
    if reader.bad_lines > 0 {
        return Err(ApiError::invalid_items(
            match reader.bad_lines {
                1 => "1 line is invalid; nothing was stored".to_string(),
                n => format!("{n} of the lines are invalid; nothing was stored"),
            },
            reader.bad_lines,
            reader.errors,
        ));
    }
    if reader.events.is_empty() {
        return Err(ApiError::invalid("body", "the body holds no log lines"));
    }
    let mut events = reader.events;
    bind_to_agent(&principal, &mut events);
    store_events(&state, &principal, events, claim.as_ref()).await
}

/// The bytes of event uploads in progress, counted in KiB, that the
/// process holds at once: a log upload holds its mapped events until they
/// are stored, a batch its body, so uploads that stream in slowly could
/// otherwise pin memory without bound. Past it an upload is answered 503
/// at once and holds nothing.
static UPLOAD_MEMORY: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(UPLOAD_MEMORY_KIB);
const UPLOAD_MEMORY_KIB: usize = 256 * 1024;

/// A chunk of an upload this large is parsed off the request workers.
const HEAVY_CHUNK: usize = 64 * 1024;

/// Grows an upload's share of [`UPLOAD_MEMORY`] to what it holds: the
/// bytes it has read and its events as parsed
/// ([`crate::telemetry::ndjson::held_bytes`]). An upload that alone holds
/// more than the whole budget can never be taken: 413, not 503.
fn hold_upload_memory(
    held: &mut Option<tokio::sync::SemaphorePermit<'static>>,
    bytes: usize,
) -> Result<(), ApiError> {
    let want = bytes.div_ceil(1024);
    let have = held.as_ref().map_or(0, |p| p.num_permits());
    if want <= have {
        return Ok(());
    }
    if want > UPLOAD_MEMORY_KIB {
        let mut err = ApiError::payload_too_large(crate::telemetry::ndjson::MAX_NDJSON_BYTES);
        err.message = format!(
            "these events hold more memory once parsed (about {} MiB, counting {} bytes for each \
             value) than the server gives all uploads together (256 MiB); send them in several \
             requests",
            bytes >> 20,
            crate::telemetry::ndjson::VALUE_BYTES
        );
        return Err(err);
    }
    let more = u32::try_from(want - have).unwrap_or(u32::MAX);
    let Ok(more) = UPLOAD_MEMORY.try_acquire_many(more) else {
        let mut err = ApiError::unavailable(
            "event uploads in progress hold all the memory the server gives them (256 MiB); retry shortly",
        );
        err.retry_after = Some(1);
        return Err(err);
    };
    match held {
        Some(permit) => permit.merge(more),
        None => *held = Some(more),
    }
    Ok(())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListEvents {
    /// The search language (docs/query-language.md); empty finds everything.
    pub query: Option<String>,
    /// Start of the event-time range (inclusive); default: a day before `to`.
    #[param(min_length = 1)]
    pub from: Option<String>,
    /// End of the range (exclusive); default: now.
    #[param(min_length = 1)]
    pub to: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// `desc` (newest first, default) or `asc`.
    pub direction: Option<SortDirection>,
}

/// Search events, quickly.
///
/// The same search as `POST /api/v1/siem/search`, as a list of events.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(ListEvents),
    responses((status = 200, description = "A page of events", body = ListEnvelope<EventView>),
        (status = 400, description = "The query is malformed", body = crate::http::error::ErrorEnvelope),
        (status = 422, description = "The search ran past the server's time limit and was stopped (`field` is `query`)", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["events.read"])))]
pub async fn list_events(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListEvents>,
) -> ApiResult<ApiList<Value>> {
    principal.require("events.read")?;
    let limit = q.limit.unwrap_or(25);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "limit must be between 1 and 200",
        ));
    }
    let outcome = state
        .telemetry
        .search(
            &principal.tenant(),
            SearchParams {
                query: q.query.unwrap_or_default(),
                agent_id: principal.agent_id.clone(),
                from: q.from,
                to: q.to,
                limit: limit as usize,
                cursor: q.cursor,
                order: match q.direction {
                    Some(SortDirection::Asc) => Order::OldestFirst,
                    _ => Order::NewestFirst,
                },
                interval: Some("1d".into()),
                histogram: false,
                from_name: "from",
                to_name: "to",
                cursor_key: state.master.clone(),
            },
        )
        .await?;
    Ok(ApiList(
        outcome
            .result
            .events
            .into_iter()
            .map(|(_, json)| serde_json::from_str(&json).unwrap_or(Value::Null))
            .collect(),
        outcome.next_cursor,
    ))
}

/// One event.
///
/// Found as a search finds it: within a second of its `202`, and for a key
/// bound to an agent only that agent's events.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "The event", body = DataEnvelope<EventView>),
        (status = 404, description = "No such event", body = crate::http::error::ErrorEnvelope)),
    security(("bearer" = ["events.read"])))]
pub async fn get_event(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
) -> ApiResult<ApiData<Value>> {
    principal.require("events.read")?;
    let json = state
        .telemetry
        .event(&principal.tenant(), principal.agent_id.as_deref(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("event"))?;
    Ok(ok(serde_json::from_str(&json).map_err(ApiError::internal)?))
}

/// How long an organization keeps its events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Events whose time is older than this many days are removed; `null`
    /// keeps them forever.
    #[schema(minimum = 1, maximum = 3650)]
    pub retention_days: Option<i64>,
}

/// A new retention: `retention_days` must be given, `null` to keep events
/// forever, so that a body that forgot it is not read as "forever".
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRetention {
    #[serde(default, deserialize_with = "super::wire::nullable")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 3650, required = true)]
    pub retention_days: Option<Option<i64>>,
}

/// Get the organization's event retention.
#[utoipa::path(get, path = "/api/v1/events/retention", tag = "events",
    responses((status = 200, description = "The retention", body = DataEnvelope<Retention>)),
    security(("bearer" = ["events.read"])))]
pub async fn get_retention(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<ApiData<Retention>> {
    principal.require("events.read")?;
    let days = state
        .store
        .org_setting(&principal.org_id, SETTING)
        .await?
        .and_then(|v| v.parse().ok());
    Ok(ok(Retention {
        retention_days: days,
    }))
}

/// Set the organization's event retention (both environments).
///
/// Expired events leave the store and the index within a minute. Only a
/// live admin key not bound to an agent may set it (a test key is refused
/// with 403 naming `environment`: retention removes live events too).
#[utoipa::path(put, path = "/api/v1/events/retention", tag = "events", request_body = SetRetention,
    responses((status = 200, description = "The new retention", body = DataEnvelope<Retention>)),
    security(("bearer" = ["admin"])))]
pub async fn set_retention(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<SetRetention>,
) -> ApiResult<ApiData<Retention>> {
    principal.require("admin")?;
    // Retention removes events of the whole organization, in both
    // environments: neither a key bound to one agent nor a test key may
    // delete live events.
    if principal.agent_id.is_some() {
        return Err(ApiError::forbidden(
            "a key bound to an agent cannot change the organization's retention",
        ));
    }
    if principal.environment != warden_core::Environment::Live {
        return Err(ApiError::forbidden(
            "retention removes live events too: set it with a live key",
        ));
    }
    let Some(days) = body.retention_days else {
        return Err(ApiError::invalid(
            "retention_days",
            "retention_days is required: a number of days, or null to keep events forever",
        ));
    };
    let body = Retention {
        retention_days: days,
    };
    if let Some(days) = body.retention_days {
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(ApiError::invalid(
                "retention_days",
                format!("retention_days must be between 1 and {MAX_DAYS}, or null"),
            ));
        }
    }
    let value = body.retention_days.map(|d| d.to_string());
    let was = state.store.org_setting(&principal.org_id, SETTING).await?;
    if was != value {
        // Audited in the organization's live chain, in the same
        // transaction: a shorter retention deletes evidence.
        let shown = |v: &Option<String>| match v {
            Some(days) => format!("{days} days"),
            None => "forever".to_string(),
        };
        let record = AuditRecord {
            reason: Some(format!(
                "event retention changed from {} to {}",
                shown(&was),
                shown(&value)
            )),
            detail: serde_json::json!({
                "change": "event_retention_days",
                "from": was.as_deref().and_then(|v| v.parse::<i64>().ok()),
                "to": body.retention_days,
            }),
            ..AuditRecord::change(AuditKind::SettingChange, &principal.key_id, now_ms())
        };
        let companion = Companion::SetOrgSetting {
            name: SETTING.into(),
            value: value.clone(),
            at: record.at,
        };
        state
            .governance
            .audit
            .append(principal.tenant(), record, Some(companion))
            .await
            .map_err(|e| ApiError::from(append_error(e)))?;
    }
    // This replica's index has the expired events out before the answer;
    // every replica's sweep sees the changed setting within seconds (and
    // retries here if this failed).
    if let Some(days) = body.retention_days {
        if let Err(err) = state.telemetry.expire_org(&principal.org_id, days).await {
            tracing::warn!(error = %err, "retention not applied at once; the sweep retries");
        }
    }
    Ok(ok(body))
}

#[cfg(test)]
mod upload_memory_tests {
    use super::*;

    #[test]
    fn an_upload_past_the_shared_budget_is_refused_and_a_finished_one_gives_its_share_back() {
        let mut first = None;
        hold_upload_memory(&mut first, 200 << 20).unwrap();
        hold_upload_memory(&mut first, 250 << 20).unwrap();
        let mut second = None;
        let refused = hold_upload_memory(&mut second, 10 << 20).unwrap_err();
        assert_eq!(refused.status.as_u16(), 503);
        assert!(second.is_none());
        drop(first);
        hold_upload_memory(&mut second, 10 << 20).unwrap();
        // One upload that alone holds more than the whole budget can never
        // be taken: 413, whatever else is running.
        let mut alone = None;
        let refused = hold_upload_memory(&mut alone, 300 << 20).unwrap_err();
        assert_eq!(refused.status.as_u16(), 413);
        assert!(
            refused.message.contains("once parsed"),
            "{}",
            refused.message
        );
    }

    #[test]
    fn an_upload_counts_its_parsed_values_not_only_its_text() {
        use crate::telemetry::ndjson::{NdjsonReader, VALUE_BYTES};
        let fields: Vec<String> = (0..60).map(|i| format!("\"f{i}\":\"{i}\"")).collect();
        let line = format!("{{\"message\":\"x\",{}}}\n", fields.join(","));
        let mut reader = NdjsonReader::new(false, 1);
        reader.push(line.repeat(100).as_bytes()).unwrap();
        reader.finish().unwrap();
        assert_eq!(reader.events.len(), 100);
        // Each line's 60 fields (and its object), beyond its text.
        assert!(
            reader.held_bytes() >= reader.bytes_read() + 100 * 61 * VALUE_BYTES,
            "{} for {} bytes of text",
            reader.held_bytes(),
            reader.bytes_read()
        );
    }
}
