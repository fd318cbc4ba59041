//! API keys: what a key may do, and the rules that stop a key from minting a
//! key stronger than itself.

use ipnet::IpNet;
use std::net::IpAddr;

use crate::scope::ScopeSet;
use crate::time::Millis;
use crate::{Environment, Error, Result};

/// A stored key. The secret itself is never here: only its digest.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub org_id: String,
    pub environment: Environment,
    pub name: String,
    pub last_four: String,
    pub secret_digest: String,
    /// The digest before the last rotation, accepted until `previous_valid_until`.
    pub previous_digest: Option<String>,
    pub previous_valid_until: Option<Millis>,
    pub scopes: ScopeSet,
    pub agent_id: Option<String>,
    pub allowed_cidrs: Vec<IpNet>,
    pub expires_at: Option<Millis>,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
    pub rotated_at: Option<Millis>,
}

/// How many characters of a secret's digest a token carries to name the
/// secret it was exchanged with.
pub const SECRET_TAG_LEN: usize = 16;

/// The name a token gives the secret it was exchanged with: the start of
/// that secret's digest (a keyed hash, which tells nothing of the secret).
pub fn secret_tag(digest: &str) -> String {
    digest.chars().take(SECRET_TAG_LEN).collect()
}

/// Where a key stands, as shown in listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Expired,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Expired => "expired",
            KeyStatus::Revoked => "revoked",
        }
    }
}

impl ApiKey {
    pub fn status(&self, now: Millis) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|t| t <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// Whether a request from `ip` may use this key.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.allowed_cidrs.is_empty() || self.allowed_cidrs.iter().any(|net| net.contains(&ip))
    }

    /// Whether `digest` is this key's current secret, or its previous one
    /// still inside the rotation grace period.
    /// Whether a token exchanged with the secret `tag` names (see
    /// [`secret_tag`]) still stands: one exchanged with the current secret
    /// does, one exchanged with the previous secret only during its grace
    /// period, so that a rotation also ends the tokens of a leaked secret.
    /// A token that names no secret (issued before tokens did) stands
    /// while the key was not rotated after it was issued.
    pub fn accepts_token(&self, tag: &str, issued_at: Millis, now: Millis) -> bool {
        use crate::secret::digests_match;
        if tag.is_empty() {
            return self.rotated_at.is_none_or(|r| issued_at >= r);
        }
        if digests_match(&secret_tag(&self.secret_digest), tag) {
            return true;
        }
        match (&self.previous_digest, self.previous_valid_until) {
            (Some(prev), Some(until)) => now < until && digests_match(&secret_tag(prev), tag),
            _ => false,
        }
    }

    /// When a token exchanged with the secret of `digest` must end at the
    /// latest: the key's expiry, and for the previous secret the end of
    /// its grace period.
    pub fn secret_ends_at(&self, digest: &str) -> Option<Millis> {
        let previous = !crate::secret::digests_match(&self.secret_digest, digest);
        let grace = self.previous_valid_until.filter(|_| previous);
        match (self.expires_at, grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Until when the secret before the last rotation still works, while
    /// it does: what an operator waits for before retiring it everywhere.
    pub fn previous_secret_until(&self, now: Millis) -> Option<Millis> {
        self.previous_valid_until
            .filter(|until| *until > now && self.previous_digest.is_some())
            .filter(|_| self.status(now) == KeyStatus::Active)
    }

    pub fn accepts_digest(&self, digest: &str, now: Millis) -> bool {
        if crate::secret::digests_match(&self.secret_digest, digest) {
            return true;
        }
        match (&self.previous_digest, self.previous_valid_until) {
            (Some(prev), Some(until)) => now < until && crate::secret::digests_match(prev, digest),
            _ => false,
        }
    }
}

/// The credential asking for a new key.
#[derive(Debug, Clone)]
pub struct Grantor {
    pub environment: Environment,
    pub scopes: ScopeSet,
    pub agent_id: Option<String>,
    pub expires_at: Option<Millis>,
    pub allowed_cidrs: Vec<IpNet>,
}

/// What the grantor asked for, already parsed.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    pub name: String,
    pub scopes: Vec<String>,
    pub environment: Option<Environment>,
    pub expires_at: Option<Millis>,
    pub allowed_cidrs: Option<Vec<String>>,
    pub agent_id: Option<String>,
}

/// A key the grantor is allowed to create.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub name: String,
    pub scopes: ScopeSet,
    pub environment: Environment,
    pub expires_at: Option<Millis>,
    pub allowed_cidrs: Vec<IpNet>,
    pub agent_id: Option<String>,
}

/// Checks a key request against its grantor. A new key never has a scope,
/// a lifetime, a network reach or an agent binding wider than its grantor's;
/// only an `admin` key may mint keys for the other environment.
/// Scopes a key bound to an agent could never use: an agent neither sees
/// nor writes the rules over it, nor approves its own calls. Asked for by
/// name they are refused, so that no one believes such a key holds them
/// (`admin` still covers everything the key may do).
pub const NEVER_BOUND: &[&str] = &["policies.read", "policies.write", "holds.write"];

pub fn authorize_grant(grantor: &Grantor, req: KeyRequest, now: Millis) -> Result<KeyGrant> {
    if req.name.chars().count() > 200 || req.name.trim().is_empty() {
        return Err(Error::invalid(
            "name",
            "name must be 1 to 200 characters, not only blanks",
        ));
    }
    crate::agent::refuse_control(&req.name, "name")?;
    // Shown beside the key in every listing and audit record, as an
    // agent's name is.
    crate::agent::visible(&req.name, "name")?;
    let name = req.name.trim().to_string();
    if req.scopes.is_empty() {
        return Err(Error::invalid("scopes", "at least one scope is required"));
    }
    let scopes = ScopeSet::parse(&req.scopes)?;
    if let Some(missing) = grantor.scopes.covers(&scopes) {
        return Err(Error::forbidden_field(
            "scopes",
            format!("a key cannot grant the `{missing}` scope, which it does not hold"),
        ));
    }
    let environment = req.environment.unwrap_or(grantor.environment);
    // A live admin may make test keys; nothing made in the test
    // environment reaches live data (retention, say) through a live key.
    if environment != grantor.environment
        && !(grantor.scopes.is_admin() && grantor.environment == Environment::Live)
    {
        return Err(Error::forbidden_field(
            "environment",
            "only a live admin key may create keys for the other environment; a test key never creates live keys",
        ));
    }
    if let Some(at) = req.expires_at {
        if at <= now {
            return Err(Error::invalid(
                "expires_at",
                "expires_at must be in the future",
            ));
        }
    }
    let expires_at = match (grantor.expires_at, req.expires_at) {
        (Some(limit), Some(at)) if at > limit => {
            return Err(Error::forbidden_field(
                "expires_at",
                "expires_at cannot be later than the expiry of the key creating it",
            ))
        }
        (Some(limit), None) => Some(limit),
        (_, at) => at,
    };
    let allowed_cidrs = match req.allowed_cidrs {
        None => grantor.allowed_cidrs.clone(),
        Some(list) => {
            let mut nets = Vec::with_capacity(list.len());
            for (i, text) in list.iter().enumerate() {
                let field = format!("allowed_cidrs[{i}]");
                let net = parse_cidr(text).ok_or_else(|| {
                    Error::invalid(&field, format!("`{text}` is not a CIDR range"))
                })?;
                let inside = grantor.allowed_cidrs.is_empty()
                    || grantor
                        .allowed_cidrs
                        .iter()
                        .any(|outer| outer.contains(&net));
                if !inside {
                    return Err(Error::forbidden_field(
                        field,
                        "the range is wider than the creating key's allowed_cidrs",
                    ));
                }
                // `10.0.0.1/8` is kept as the range it names, `10.0.0.0/8`;
                // a range named twice is kept once, as scopes are.
                if !nets.contains(&net) {
                    nets.push(net);
                }
            }
            if nets.is_empty() && !grantor.allowed_cidrs.is_empty() {
                return Err(Error::forbidden_field(
                    "allowed_cidrs",
                    "a key limited to CIDR ranges cannot create an unlimited key",
                ));
            }
            nets
        }
    };
    let agent_id = match (&grantor.agent_id, req.agent_id) {
        (Some(bound), Some(asked)) if *bound != asked => {
            return Err(Error::forbidden_field(
                "agent_id",
                "a key bound to an agent can only create keys bound to the same agent",
            ))
        }
        (Some(bound), _) => Some(bound.clone()),
        (None, asked) => asked,
    };
    if agent_id.is_some() {
        if let Some(dead) = scopes
            .names()
            .into_iter()
            .find(|s| NEVER_BOUND.contains(&s.as_str()))
        {
            return Err(Error::invalid(
                "scopes",
                format!(
                    "a key bound to an agent can never use `{dead}` (it cannot read or change \
                     policies, nor resolve holds); leave it out"
                ),
            ));
        }
    }
    Ok(KeyGrant {
        name,
        scopes,
        environment,
        expires_at,
        allowed_cidrs,
        agent_id,
    })
}

impl ApiKey {
    /// A new key record for a checked grant; `secret` is the freshly minted
    /// secret whose digest and last characters it keeps.
    pub fn issue(
        org_id: &str,
        grant: KeyGrant,
        secret: &crate::secret::NewKeySecret,
        now: Millis,
    ) -> ApiKey {
        ApiKey {
            id: crate::id::new_id(crate::id::prefix::API_KEY),
            org_id: org_id.to_string(),
            environment: grant.environment,
            name: grant.name,
            last_four: secret.last_four.clone(),
            secret_digest: secret.digest.clone(),
            previous_digest: None,
            previous_valid_until: None,
            scopes: grant.scopes,
            agent_id: grant.agent_id,
            allowed_cidrs: grant.allowed_cidrs,
            expires_at: grant.expires_at,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
            rotated_at: None,
        }
    }
}

/// Whether `grantor` may revoke or rotate `key`: only a key it could have
/// minted itself, so that managing keys never reaches a stronger key (a
/// rotation hands out the new secret).
pub fn authorize_management(grantor: &Grantor, key: &ApiKey) -> Result<()> {
    if let Some(bound) = &grantor.agent_id {
        if key.agent_id.as_ref() != Some(bound) {
            return Err(Error::NotFound("API key"));
        }
    }
    if let Some(missing) = grantor.scopes.covers(&key.scopes) {
        return Err(Error::forbidden_field(
            "scopes",
            format!("this key holds the `{missing}` scope, which the calling key does not"),
        ));
    }
    if !grantor.allowed_cidrs.is_empty() {
        let inside = !key.allowed_cidrs.is_empty()
            && key.allowed_cidrs.iter().all(|net| {
                grantor
                    .allowed_cidrs
                    .iter()
                    .any(|outer| outer.contains(net))
            });
        if !inside {
            return Err(Error::forbidden_field(
                "allowed_cidrs",
                "this key reaches networks outside the calling key's allowed_cidrs",
            ));
        }
    }
    if let Some(limit) = grantor.expires_at {
        if key.expires_at.is_none_or(|at| at > limit) {
            return Err(Error::forbidden_field(
                "expires_at",
                "this key outlives the calling key",
            ));
        }
    }
    Ok(())
}

/// Parses `10.0.0.0/8`, or a bare address as a single-host range.
/// An IPv4-mapped IPv6 range (`::ffff:10.0.0.0/104`) is kept as the IPv4
/// range it names (`10.0.0.0/8`): a client's mapped address counts as its
/// IPv4 address, so the mapped form would match nobody.
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    let net = text
        .parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))?;
    if let IpNet::V6(v6) = net {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                return ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .ok()
                    .map(IpNet::V4);
            }
        }
    }
    Some(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grantor(scopes: &[&str]) -> Grantor {
        Grantor {
            environment: Environment::Live,
            scopes: ScopeSet::parse(scopes).unwrap(),
            agent_id: None,
            expires_at: None,
            allowed_cidrs: vec![],
        }
    }

    fn request(scopes: &[&str]) -> KeyRequest {
        KeyRequest {
            name: "ci".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            environment: None,
            expires_at: None,
            allowed_cidrs: None,
            agent_id: None,
        }
    }

    #[test]
    fn cannot_grant_a_scope_it_lacks() {
        let g = grantor(&["keys.write", "agents.read"]);
        assert!(authorize_grant(&g, request(&["agents.read"]), 0).is_ok());
        let err = authorize_grant(&g, request(&["agents.write"]), 0).unwrap_err();
        assert!(
            matches!(err, Error::ForbiddenField { field, message } if field == "scopes" && message.contains("agents.write"))
        );
        let err = authorize_grant(&g, request(&["admin"]), 0).unwrap_err();
        assert!(matches!(err, Error::ForbiddenField { .. }));
    }

    #[test]
    fn mapped_ranges_are_their_ipv4_ranges() {
        assert_eq!(
            parse_cidr("::ffff:127.0.0.1/128"),
            parse_cidr("127.0.0.1/32")
        );
        assert_eq!(parse_cidr("::ffff:10.1.2.3/104"), parse_cidr("10.0.0.0/8"));
        assert_eq!(parse_cidr("::ffff:10.0.0.1"), parse_cidr("10.0.0.1"));
        assert!(matches!(parse_cidr("2001:db8::/32"), Some(IpNet::V6(_))));
    }

    #[test]
    fn inherits_expiry_cidrs_and_agent_binding() {
        let mut g = grantor(&["admin"]);
        g.expires_at = Some(1_000);
        g.allowed_cidrs = vec![parse_cidr("10.0.0.0/8").unwrap()];
        g.agent_id = Some("agt_1".into());
        let grant = authorize_grant(&g, request(&["agents.read"]), 0).unwrap();
        assert_eq!(grant.expires_at, Some(1_000));
        assert_eq!(grant.allowed_cidrs, g.allowed_cidrs);
        assert_eq!(grant.agent_id.as_deref(), Some("agt_1"));

        let mut wider = request(&["agents.read"]);
        wider.allowed_cidrs = Some(vec!["0.0.0.0/0".into()]);
        let err = authorize_grant(&g, wider, 0).unwrap_err();
        assert!(matches!(err, Error::ForbiddenField { field, .. } if field == "allowed_cidrs[0]"));

        // Host bits are dropped, and a range named twice is kept once.
        let mut twice = request(&["agents.read"]);
        twice.allowed_cidrs = Some(vec!["10.0.0.0/8".into(), "10.0.0.1/8".into()]);
        let grant = authorize_grant(&g, twice, 0).unwrap();
        assert_eq!(grant.allowed_cidrs, g.allowed_cidrs);

        let mut later = request(&["agents.read"]);
        later.expires_at = Some(2_000);
        let err = authorize_grant(&g, later, 0).unwrap_err();
        assert!(matches!(err, Error::ForbiddenField { field, .. } if field == "expires_at"));
    }

    #[test]
    fn only_admin_crosses_environments() {
        let mut req = request(&["agents.read"]);
        req.environment = Some(Environment::Test);
        assert!(authorize_grant(&grantor(&["keys.write", "agents.read"]), req.clone(), 0).is_err());
        let grant = authorize_grant(&grantor(&["admin"]), req, 0).unwrap();
        assert_eq!(grant.environment, Environment::Test);
    }

    #[test]
    fn management_never_reaches_a_stronger_key() {
        let admin_key = |scopes: &[&str]| ApiKey {
            scopes: ScopeSet::parse(scopes).unwrap(),
            ..sample_key()
        };
        let g = grantor(&["keys.write", "agents.read"]);
        assert!(authorize_management(&g, &admin_key(&["agents.read"])).is_ok());
        assert!(matches!(
            authorize_management(&g, &admin_key(&["admin"])),
            Err(Error::ForbiddenField { field, .. }) if field == "scopes"
        ));
        let mut bound = grantor(&["admin"]);
        bound.agent_id = Some("agt_1".into());
        assert_eq!(
            authorize_management(&bound, &admin_key(&["agents.read"])),
            Err(Error::NotFound("API key"))
        );
        let mut limited = grantor(&["admin"]);
        limited.allowed_cidrs = vec![parse_cidr("10.0.0.0/8").unwrap()];
        assert!(authorize_management(&limited, &admin_key(&["agents.read"])).is_err());
        let mut expiring = grantor(&["admin"]);
        expiring.expires_at = Some(10);
        assert!(authorize_management(&expiring, &admin_key(&["agents.read"])).is_err());
    }

    fn sample_key() -> ApiKey {
        ApiKey {
            id: "key_1".into(),
            org_id: "org_1".into(),
            environment: Environment::Live,
            name: "k".into(),
            last_four: "abcd".into(),
            secret_digest: "new".into(),
            previous_digest: None,
            previous_valid_until: None,
            scopes: ScopeSet::admin(),
            agent_id: None,
            allowed_cidrs: vec![],
            expires_at: None,
            created_at: 0,
            last_used_at: None,
            revoked_at: None,
            rotated_at: None,
        }
    }

    #[test]
    fn key_checks_ip_and_rotation_grace() {
        let key = ApiKey {
            previous_digest: Some("old".into()),
            previous_valid_until: Some(100),
            allowed_cidrs: vec![parse_cidr("127.0.0.1").unwrap()],
            expires_at: Some(500),
            ..sample_key()
        };
        assert!(key.admits("127.0.0.1".parse().unwrap()));
        assert!(!key.admits("10.1.1.1".parse().unwrap()));
        assert!(key.accepts_digest("old", 99));
        assert!(!key.accepts_digest("old", 100));
        assert!(key.accepts_digest("new", 1_000));
        assert_eq!(key.status(499), KeyStatus::Active);
        assert_eq!(key.status(500), KeyStatus::Expired);
    }
}
