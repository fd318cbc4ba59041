//! Wire types shared by several routes: enumerations as the API spells
//! them, and helpers for optional and nullable fields.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use warden_core::page::Direction;
use warden_core::time::{parse_rfc3339, Millis};
use warden_core::Environment;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EnvironmentName {
    Live,
    Test,
}

impl From<EnvironmentName> for Environment {
    fn from(e: EnvironmentName) -> Self {
        match e {
            EnvironmentName::Live => Environment::Live,
            EnvironmentName::Test => Environment::Test,
        }
    }
}

impl From<Environment> for EnvironmentName {
    fn from(e: Environment) -> Self {
        match e {
            Environment::Live => EnvironmentName::Live,
            Environment::Test => EnvironmentName::Test,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SortDirection {
    Asc,
    Desc,
}

impl From<SortDirection> for Direction {
    fn from(d: SortDirection) -> Self {
        match d {
            SortDirection::Asc => Direction::Asc,
            SortDirection::Desc => Direction::Desc,
        }
    }
}

/// A nested request object whose fields serde's derive would also take as
/// an array in field order (`"agents": [["bot"], []]`), which no client
/// means and the API does not document: such a type derives its fields'
/// reading with `#[serde(remote = "Self")]` and is read through
/// [`object_only`], which takes a JSON object alone.
pub trait FromObject<'de>: Sized {
    fn from_fields<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error>;
}

/// Reads `T` from a JSON object only ("expected an object" otherwise).
pub fn object_only<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromObject<'de>,
{
    struct ObjectOnly<T>(std::marker::PhantomData<T>);
    impl<'de, T: FromObject<'de>> serde::de::Visitor<'de> for ObjectOnly<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::from_fields(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    de.deserialize_map(ObjectOnly(std::marker::PhantomData))
}

/// Distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`), so that PATCH can clear a field.
pub fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// For a field that may be left out but not set to `null` (it has no
/// empty value): `null` is refused, naming the field, instead of being
/// read as "unchanged".
pub fn not_null<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(de)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom("may be left out, but not null")),
    }
}

/// Parses an optional RFC 3339 time, naming `field` when it is not one.
pub fn parse_time(field: &str, value: Option<&str>) -> Result<Option<Millis>, warden_core::Error> {
    value
        .map(|text| {
            parse_rfc3339(text).ok_or_else(|| {
                warden_core::Error::invalid(
                    field,
                    format!("{field} must be an RFC 3339 time, e.g. 2026-03-01T12:00:00.000Z"),
                )
            })
        })
        .transpose()
}

/// A time bound as search and the audit log take one (RFC 3339, a date,
/// a number since 1970, `now-1h`): its first instant; one written past the
/// millisecond, in any form, is the next millisecond (the events of its
/// own lie before it, whether it opens a range or closes one). An analyst
/// writes one window the same way for both.
pub fn time_bound(field: &str, text: &str, now: Millis) -> Result<Millis, warden_core::Error> {
    if text.trim().is_empty() {
        return Err(warden_core::Error::invalid(
            field,
            format!("{field} is empty: give a value, or leave {field} out"),
        ));
    }
    warden_search::parse_time_value(text, now)
        .map(|(from, _)| from)
        .ok_or_else(|| {
            warden_core::Error::invalid(
                field,
                format!(
                    "`{text}` is not a time; use RFC 3339 (2026-11-24T10:00:00Z), a date, a number \
                     since 1970 (seconds to nanoseconds; no earlier time), or now-24h"
                ),
            )
        })
}

/// An optional [`time_bound`], read at the current time.
pub fn parse_time_bound(
    field: &str,
    value: Option<&str>,
) -> Result<Option<Millis>, warden_core::Error> {
    value
        .map(|text| time_bound(field, text, warden_core::time::now_ms()))
        .transpose()
}

pub fn time(ms: Millis) -> String {
    warden_core::time::to_rfc3339(ms)
}

pub fn opt_time(ms: Option<Millis>) -> Option<String> {
    ms.map(time)
}

/// An `agent_id` filter as the caller gave it (a Warden id or the agent's
/// `external_id`, as `POST /api/v1/enforce` takes) turned into the Warden
/// id records carry; an unknown one stays as given and matches nothing.
/// A key bound to an agent sees only that agent: no filter means its own
/// agent, and a filter naming any other is a 403, as enforcing as another
/// agent is.
pub async fn agent_filter(
    state: &crate::state::AppState,
    principal: &crate::auth::Principal,
    requested: Option<String>,
) -> Result<Option<String>, crate::http::error::ApiError> {
    let resolved = match requested {
        Some(reference) if reference.trim().is_empty() => {
            return Err(crate::http::error::ApiError::invalid(
                "agent_id",
                "agent_id must name an agent (its id or external_id); leave it out to list every agent's",
            ))
        }
        Some(reference) => {
            // As agents are registered: plain spaces around a name trimmed.
            let reference = reference.trim_matches(' ').to_string();
            warden_core::agent::refuse_control(&reference, "agent_id")?;
            let found = state
                .store
                .find_agent(&principal.tenant(), &reference)
                .await?
                .map(|agent| agent.id);
            match found {
                Some(id) => Some(id),
                // A Warden id finds the records of a deleted agent too.
                None if warden_core::agent::looks_like_agent_id(&reference) => {
                    Some(reference.to_ascii_lowercase())
                }
                // A key bound to an agent is told the same of every other
                // name, so that it cannot learn which agents exist.
                None if principal.agent_id.is_some() => return Err(bound_elsewhere()),
                // An external id no agent has: an empty answer would read
                // as "no activity" where the name is mistyped, or belonged
                // to an agent since deleted.
                None => {
                    // A name no agent may have is said to be one, first.
                    warden_core::agent::visible(&reference, "agent_id")?;
                    return Err(crate::http::error::ApiError::invalid(
                        "agent_id",
                        format!(
                            "no agent has the external id {reference:?}: a deleted agent's records are found by its Warden id (agt_…), which its `agent_change` deletion record names"
                        ),
                    ))
                }
            }
        }
        None => None,
    };
    match (&principal.agent_id, resolved) {
        (Some(bound), Some(other)) if *bound != other => Err(bound_elsewhere()),
        (Some(bound), _) => Ok(Some(bound.clone())),
        (None, resolved) => Ok(resolved),
    }
}

fn bound_elsewhere() -> crate::http::error::ApiError {
    crate::http::error::ApiError::forbidden(
        "a key bound to an agent sees only that agent's records",
    )
    .with_field("agent_id")
}

#[cfg(test)]
mod tests {
    use super::time_bound;

    #[test]
    fn a_bound_past_the_millisecond_is_rounded_up() {
        let at = |text: &str| time_bound("to", text, 0).unwrap();
        let ms = at("2026-11-22T23:59:59.999Z");
        assert_eq!(at("2026-11-22T23:59:59.9999999Z"), ms + 1);
        assert_eq!(at("2026-11-22T23:59:59.999000Z"), ms);
        assert_eq!(at("2026-11-22T23:59:59.999Z"), ms);
        assert_eq!(at("2026-11-22T23:59:59.9990001+00:00"), ms + 1);
        assert_eq!(at("2026-11-22"), at("2026-11-22T00:00:00Z"));
        // The same instant in every form rounds the same way.
        let second = at("2026-11-22T23:59:59Z");
        for text in [
            "2026-11-22T23:59:59.0005Z",
            "1795391999.0005",
            "1795391999000.5",
            "1795391999000500",
            "1795391999000000001",
            "2026-11-22 23:59:59.0005",
            "2026-11-22T23:59:59.0005+0000",
        ] {
            assert_eq!(at(text), second + 1, "{text}");
        }
        for text in [
            "1795391999",
            "1795391999.000",
            "1795391999000",
            "1795391999000000",
        ] {
            assert_eq!(at(text), second, "{text}");
        }
    }
}

/// A time as the OpenAPI document describes it: text (RFC 3339, a date,
/// `now-24h`) or a JSON number since 1970, read by its size. Routes read
/// the value themselves; this type only names both forms for generated
/// clients.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum TimeValue {
    Text(String),
    Number(f64),
}

/// A search interval for the OpenAPI document: a width (`30s`, `5m`,
/// `1h`, `1d`) or milliseconds.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum IntervalValue {
    Width(String),
    Milliseconds(u64),
}
