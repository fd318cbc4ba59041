//! Cursors as the API hands them out: what the store needs to find the
//! next page, sealed (AES-GCM under the master key) with the tenant and
//! the list it was issued for. A cursor cannot be read (it would tell
//! positions in shared tables), forged, or carried to another tenant or
//! another list, where it would start a page at a wrong place. A list's
//! cursors are also bound to the filters of the request that issued them
//! ([`filtered`]): resumed under other filters, a page would start past
//! records they find and skip them without a word.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use warden_core::secret::MasterKey;
use warden_core::Tenant;

use super::error::ApiError;

/// Query parameters that are not filters: the cursor itself, the page's
/// size (which may change between pages), and the order, which the
/// cursor's position carries and checks itself (so a default given
/// outright on a later page is the same order).
const NOT_FILTERS: [&str; 4] = ["cursor", "limit", "sort", "direction"];

/// A list's name bound to a request's filters: every query parameter but
/// [`NOT_FILTERS`], in order of name, as a short digest.
pub fn filtered(list: &str, query: Option<&str>) -> String {
    let mut filters: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(name, _)| !NOT_FILTERS.contains(&name.as_ref()))
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    if filters.is_empty() {
        return list.to_string();
    }
    filters.sort();
    let parts = filters
        .iter()
        .flat_map(|(name, value)| [name.as_str(), value.as_str()]);
    format!("{list}?{}", digest(parts))
}

/// A short digest of what a cursor was issued for (a list's filters, a
/// search's query), sealed inside it: it binds the cursor without
/// showing what it binds it to.
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    hex::encode(&digest.finalize()[..8])
}

/// Seals and opens the cursors of one list of one tenant.
pub struct SealedCursors<'a> {
    key: &'a MasterKey,
    /// `org/environment/list:`, the prefix of every sealed text.
    owner: String,
}

impl<'a> SealedCursors<'a> {
    /// `list` names the list (`agents`, `policy_versions/pol_…`).
    pub fn new(key: &'a MasterKey, tenant: &Tenant, list: &str) -> Self {
        SealedCursors {
            key,
            owner: format!("{}/{}/{list}:", tenant.org_id, tenant.environment),
        }
    }

    /// A position as the API shows it.
    pub fn seal(&self, position: &str) -> String {
        let plain = format!("{}{position}", self.owner);
        let sealed = STANDARD
            .decode(self.key.seal(plain.as_bytes()))
            .expect("a sealed value is base64");
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The position a cursor of this list holds; a 400 naming `cursor`
    /// for any other text.
    pub fn open(&self, cursor: &str) -> Result<String, ApiError> {
        let bad = || {
            ApiError::invalid(
                "cursor",
                "cursor is not one this server issued for this list and these filters: send the `next_cursor` of the page before, unchanged, with the same filters",
            )
        };
        let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
        let raw = self.key.open(&STANDARD.encode(raw)).ok_or_else(bad)?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        raw.strip_prefix(&self.owner)
            .map(str::to_string)
            .ok_or_else(bad)
    }

    /// [`Self::open`] for an optional cursor.
    pub fn open_opt(&self, cursor: Option<&str>) -> Result<Option<String>, ApiError> {
        cursor.map(|c| self.open(c)).transpose()
    }

    /// [`Self::seal`] for the next page's position, if any.
    pub fn seal_opt(&self, position: Option<String>) -> Option<String> {
        position.map(|p| self.seal(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::Environment;

    #[test]
    fn a_cursor_opens_only_for_its_tenant_and_list() {
        let key = MasterKey::parse(&"07".repeat(32)).unwrap();
        let tenant = |org: &str, environment| Tenant {
            org_id: org.into(),
            environment,
        };
        let live = tenant("org_a", Environment::Live);
        let agents = SealedCursors::new(&key, &live, "agents");
        let sealed = agents.seal("eyJzIjoiY3JlYXRlZF9hdCJ9");
        assert_eq!(agents.open(&sealed).unwrap(), "eyJzIjoiY3JlYXRlZF9hdCJ9");
        for other in [
            SealedCursors::new(&key, &live, "holds"),
            SealedCursors::new(&key, &tenant("org_b", Environment::Live), "agents"),
            SealedCursors::new(&key, &tenant("org_a", Environment::Test), "agents"),
            SealedCursors::new(
                &MasterKey::parse(&"08".repeat(32)).unwrap(),
                &live,
                "agents",
            ),
        ] {
            assert!(other.open(&sealed).is_err());
        }
        assert!(agents.open("eyJzIjoiY3JlYXRlZF9hdCJ9").is_err());
    }

    #[test]
    fn a_cursor_opens_only_under_its_filters() {
        let key = MasterKey::parse(&"07".repeat(32)).unwrap();
        let live = Tenant {
            org_id: "org_a".into(),
            environment: Environment::Live,
        };
        let list = |query| SealedCursors::new(&key, &live, &filtered("audit", query));
        let sealed = list(Some("agent_id=a&min_drift=0.3&limit=5")).seal("7");
        // The page's size, the cursor itself, the sort (which the cursor
        // checks itself) and the order of parameters are not filters.
        for same in [
            "min_drift=0.3&agent_id=a",
            "agent_id=a&min_drift=0.3&limit=50&cursor=x",
            "agent_id=a&min_drift=0.3&direction=desc&sort=created_at",
            "agent_id=%61&min_drift=0.3",
        ] {
            assert_eq!(list(Some(same)).open(&sealed).unwrap(), "7", "{same}");
        }
        for other in [
            "agent_id=b&min_drift=0.3",
            "agent_id=a",
            "agent_id=a&min_drift=0.3&kind=decision",
            "",
        ] {
            assert!(list(Some(other)).open(&sealed).is_err(), "{other}");
        }
        assert_eq!(filtered("audit", None), "audit");
        assert_eq!(filtered("audit", Some("limit=5")), "audit");
    }
}
