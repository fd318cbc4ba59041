//! The services: one module per resource, applying the domain rules of
//! `warden-core` and persisting through the store. No HTTP types here.

pub mod agents;
pub mod api_keys;
pub mod bootstrap;
pub mod secrets;

use warden_store::StoreError;

/// A domain rule refused the request, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] warden_core::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl From<ServiceError> for crate::http::error::ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Domain(e) => e.into(),
            ServiceError::Store(e) => e.into(),
        }
    }
}
