//! Cursors as the API hands them out: what the store needs to find the
//! next page, sealed (AES-GCM under the master key) with the tenant and
//! the list it was issued for. A cursor cannot be read (it would tell
//! positions in shared tables), forged, or carried to another tenant or
//! another list, where it would start a page at a wrong place.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use warden_core::secret::MasterKey;
use warden_core::Tenant;

use super::error::ApiError;

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
                "cursor is not one this server issued for this list: send the `next_cursor` of the page before, unchanged",
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
}
