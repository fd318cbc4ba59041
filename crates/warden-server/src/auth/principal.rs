//! The authenticated caller. Handlers get the tenant only from here.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use ipnet::IpNet;
use warden_core::api_key::Grantor;
use warden_core::org::RateLimit;
use warden_core::scope::ScopeSet;
use warden_core::time::Millis;
use warden_core::{Environment, Tenant};

use crate::http::error::ApiError;

/// Shared behind an `Arc`: the gate stores it in the request and each
/// extractor takes a handle, without copying scopes and ranges.
#[derive(Debug, Clone)]
pub struct Principal(Arc<PrincipalInner>);

#[derive(Debug)]
pub struct PrincipalInner {
    pub org_id: String,
    pub environment: Environment,
    pub key_id: String,
    pub scopes: ScopeSet,
    /// Set when the key may act only as this agent.
    pub agent_id: Option<String>,
    pub expires_at: Option<Millis>,
    pub allowed_cidrs: Vec<IpNet>,
    pub rate_limit: RateLimit,
}

impl std::ops::Deref for Principal {
    type Target = PrincipalInner;
    fn deref(&self) -> &PrincipalInner {
        &self.0
    }
}

impl Principal {
    pub fn new(inner: PrincipalInner) -> Self {
        Principal(Arc::new(inner))
    }

    pub fn tenant(&self) -> Tenant {
        Tenant {
            org_id: self.org_id.clone(),
            environment: self.environment,
        }
    }

    /// `403` unless the key may be used from `ip` (its `allowed_cidrs`).
    pub fn admits(&self, ip: std::net::IpAddr) -> Result<(), ApiError> {
        if self.allowed_cidrs.is_empty() || self.allowed_cidrs.iter().any(|net| net.contains(&ip)) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this key may not be used from {ip}"
            )))
        }
    }

    /// `403` naming the scope unless the caller holds it.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(warden_core::Error::MissingScope {
                scope: scope.to_string(),
            }
            .into())
        }
    }

    /// The caller as the grantor of a new key.
    pub fn grantor(&self) -> Grantor {
        Grantor {
            environment: self.environment,
            scopes: self.scopes.clone(),
            agent_id: self.agent_id.clone(),
            expires_at: self.expires_at,
            allowed_cidrs: self.allowed_cidrs.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}
