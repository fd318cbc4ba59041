//! Resolves presented keys and tokens to principals.
//!
//! Looked-up keys are cached in memory for under a second: the hot path does
//! no database read for a busy key, and a revocation made on any replica
//! takes effect on every replica within one second, with no message bus.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use warden_core::api_key::{ApiKey, KeyStatus};
use warden_core::org::Organization;
use warden_core::scope::ScopeSet;
use warden_core::secret::{mint_key, parse_key_shape, KeyPepper, NewKeySecret};
use warden_core::time::{now_ms, Millis};
use warden_core::Environment;
use warden_store::Store;

use super::middleware::presented_credential;
use super::principal::{Principal, PrincipalInner};
use super::token::TokenIssuer;
use crate::http::error::ApiError;

/// How long a looked-up key is trusted without asking the store again.
pub const FRESH_FOR: Duration = Duration::from_millis(900);
const CACHE_CAP: usize = 50_000;

#[derive(Clone)]
struct Cached {
    key: Arc<ApiKey>,
    org: Arc<Organization>,
    /// The principal a request with this key acts as, built once per load.
    principal: Principal,
    fetched: Instant,
}

fn principal_of(key: &ApiKey, org: &Organization, scopes: ScopeSet) -> Principal {
    Principal::new(PrincipalInner {
        org_id: key.org_id.clone(),
        environment: key.environment,
        key_id: key.id.clone(),
        scopes,
        agent_id: key.agent_id.clone(),
        expires_at: key.expires_at,
        allowed_cidrs: key.allowed_cidrs.clone(),
        rate_limit: org.rate_limit,
    })
}

pub struct KeyRing {
    store: Arc<dyn Store>,
    pepper: KeyPepper,
    tokens: TokenIssuer,
    by_digest: Mutex<HashMap<String, Cached>>,
    by_id: Mutex<HashMap<String, Cached>>,
    usage: Mutex<HashMap<String, Millis>>,
    /// Bumped by every eviction: a lookup that began before one must not
    /// cache what it read, or a just-revoked key could come back.
    evictions: AtomicU64,
}

fn fresh(map: &Mutex<HashMap<String, Cached>>, k: &str) -> Option<Cached> {
    let map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.get(k)
        .filter(|c| c.fetched.elapsed() < FRESH_FOR)
        .cloned()
}

fn remember(map: &Mutex<HashMap<String, Cached>>, k: String, entry: Cached) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= CACHE_CAP {
        map.clear();
    }
    map.insert(k, entry);
}

impl KeyRing {
    pub fn new(store: Arc<dyn Store>, pepper: KeyPepper, tokens: TokenIssuer) -> Self {
        KeyRing {
            store,
            pepper,
            tokens,
            by_digest: Mutex::default(),
            by_id: Mutex::default(),
            usage: Mutex::default(),
            evictions: AtomicU64::new(0),
        }
    }

    pub fn tokens(&self) -> &TokenIssuer {
        &self.tokens
    }

    /// A new key secret for `environment`, hashed under this server's pepper.
    pub fn mint(&self, environment: Environment) -> NewKeySecret {
        mint_key(environment, &self.pepper)
    }

    async fn load(&self, key: Option<ApiKey>) -> Result<Option<Cached>, ApiError> {
        let Some(key) = key else { return Ok(None) };
        let Some(org) = self.store.get_organization(&key.org_id).await? else {
            return Ok(None);
        };
        Ok(Some(Cached {
            principal: principal_of(&key, &org, key.scopes.clone()),
            key: Arc::new(key),
            org: Arc::new(org),
            fetched: Instant::now(),
        }))
    }

    /// The active key a presented secret belongs to.
    /// The key a secret belongs to, its organization, and the digest of
    /// the secret (the key's current secret or, during a grace period,
    /// its previous one).
    pub async fn resolve_key(
        &self,
        presented: &str,
    ) -> Result<(Arc<ApiKey>, Arc<Organization>, String), ApiError> {
        let entry = self.resolve(presented).await?;
        Ok((entry.key, entry.org, self.pepper.digest(presented)))
    }

    async fn resolve(&self, presented: &str) -> Result<Cached, ApiError> {
        if parse_key_shape(presented).is_none() {
            return Err(ApiError::unauthorized("invalid API key"));
        }
        let digest = self.pepper.digest(presented);
        let entry = match fresh(&self.by_digest, &digest) {
            Some(entry) => entry,
            None => {
                let evictions = self.evictions.load(Ordering::Acquire);
                let found = self.store.find_api_key_by_digest(&digest).await?;
                let entry = self
                    .load(found)
                    .await?
                    .ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
                if self.evictions.load(Ordering::Acquire) == evictions {
                    remember(&self.by_digest, digest.clone(), entry.clone());
                }
                entry
            }
        };
        let now = now_ms();
        if !entry.key.accepts_digest(&digest, now) {
            return Err(ApiError::unauthorized("invalid API key"));
        }
        check_status(&entry.key, now)?;
        Ok(entry)
    }

    async fn key_by_id(&self, id: &str) -> Result<Cached, ApiError> {
        if let Some(entry) = fresh(&self.by_id, id) {
            return Ok(entry);
        }
        let evictions = self.evictions.load(Ordering::Acquire);
        let found = self.store.find_api_key(id).await?;
        let entry = self
            .load(found)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid token"))?;
        if self.evictions.load(Ordering::Acquire) == evictions {
            remember(&self.by_id, id.to_string(), entry.clone());
        }
        Ok(entry)
    }

    /// The principal behind a bearer credential (key or token). Where it may
    /// be used from is checked by the caller ([`Principal::admits`]), after
    /// the rate limit, so that the refusal carries the limit headers; the
    /// caller then notes the use ([`KeyRing::note_use`]).
    pub async fn principal(&self, credential: &str) -> Result<Principal, ApiError> {
        if let Some(refused) = misplaced_key(credential) {
            return Err(refused);
        }
        let principal = if credential.starts_with("wdn_") {
            self.resolve(credential).await?.principal
        } else {
            let claims = self
                .tokens
                .verify(credential)
                .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))?;
            let entry = self.key_by_id(&claims.sub).await?;
            let now = now_ms();
            check_status(&entry.key, now)?;
            if !entry.key.accepts_token(&claims.sec, claims.iat * 1000, now) {
                return Err(ApiError::unauthorized(
                    "the key was rotated since this token was issued: exchange the new secret",
                ));
            }
            if entry.key.org_id != claims.org || entry.key.environment.as_str() != claims.env {
                return Err(ApiError::unauthorized("invalid token"));
            }
            let scopes = ScopeSet::parse(&claims.scopes)
                .map_err(|_| ApiError::unauthorized("invalid token"))?;
            principal_of(&entry.key, &entry.org, scopes)
        };
        Ok(principal)
    }

    /// `401` unless the credential a request was admitted with still names
    /// its key, active: a request that waited (a hold's long poll, up to 30
    /// seconds) answers only if its key was not revoked, expired or rotated
    /// away meanwhile, else a revoked key's waiting poll could still take an
    /// approval.
    pub async fn still_admits(
        &self,
        headers: &HeaderMap,
        principal: &Principal,
    ) -> Result<(), ApiError> {
        let credential = presented_credential(headers)
            .ok_or_else(|| ApiError::unauthorized("missing API key"))?;
        let again = self.principal(credential).await?;
        if again.key_id != principal.key_id {
            return Err(ApiError::unauthorized("invalid API key"));
        }
        Ok(())
    }

    /// Forgets a key here at once (the other replicas forget within [`FRESH_FOR`]).
    pub fn evict(&self, key_id: &str) {
        self.evict_where(|key| key.id == key_id);
    }

    /// Forgets every key bound to `agent_id` here at once: deleting the
    /// agent revoked them in the store.
    pub fn evict_bound_to(&self, agent_id: &str) {
        self.evict_where(|key| key.agent_id.as_deref() == Some(agent_id));
    }

    fn evict_where(&self, gone: impl Fn(&ApiKey) -> bool) {
        self.evictions.fetch_add(1, Ordering::AcqRel);
        for map in [&self.by_digest, &self.by_id] {
            map.lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, c| !gone(&c.key));
        }
    }

    /// Notes a key used, for its `last_used_at`: only once the key was
    /// admitted from where it was presented, so a refused attempt does not
    /// make a key look in use.
    pub fn note_use(&self, key_id: &str) {
        let now = now_ms();
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        match usage.get_mut(key_id) {
            Some(at) => *at = now,
            None => {
                usage.insert(key_id.to_string(), now);
            }
        }
    }

    /// Writes `last_used_at` for keys used since the last flush; batched so
    /// the hot path never writes.
    pub async fn flush_usage(&self) {
        let uses: Vec<(String, Millis)> = {
            let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
            usage.drain().collect()
        };
        match self.store.record_key_use(&uses).await {
            Err(err) => {
                if let Some(unlogged) = UNRECORDED.due() {
                    tracing::warn!(error = %err, unlogged, "could not record key use");
                }
                // Kept for the next flush (a later use of a key wins), so
                // a failed write does not leave a used key looking idle.
                let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
                for (key, at) in uses {
                    let kept = usage.entry(key).or_insert(at);
                    *kept = (*kept).max(at);
                }
            }
            Ok(_) => UNRECORDED.reset(),
        }
    }
}

/// Failures to record keys' use, logged at a pace (a store refusing
/// writes would fail every flush).
static UNRECORDED: warden_core::log_pace::SharedPaced = warden_core::log_pace::SharedPaced::new();

fn check_status(key: &ApiKey, now: Millis) -> Result<(), ApiError> {
    match key.status(now) {
        KeyStatus::Active => Ok(()),
        KeyStatus::Expired => Err(ApiError::unauthorized("API key has expired")),
        KeyStatus::Revoked => Err(ApiError::unauthorized("API key has been revoked")),
    }
}

/// A credential with something before its key or token (`Bearer ` in
/// `X-Api-Key`, another scheme, quotes): refused naming the mistake, not
/// as an unknown token.
pub fn misplaced_key(credential: &str) -> Option<ApiError> {
    let bearer = credential
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("bearer "));
    let buried = !credential.starts_with("wdn_") && credential.contains("wdn_");
    (bearer || buried).then(|| {
        ApiError::unauthorized(
            "the key is not alone in the credential: X-Api-Key and the api_key of a token \
             exchange take the key itself (no scheme, quotes or spaces), and Authorization \
             takes `Bearer` once before it",
        )
    })
}
