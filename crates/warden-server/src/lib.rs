//! Warden's HTTP API: the axum router for every surface, authentication,
//! the API conventions (envelope, errors, pagination, idempotency), rate
//! limits, metrics and the OpenAPI document. The domain rules live in
//! `warden-core`, persistence in `warden-store`.

pub mod auth;
pub mod governance;
pub mod heavy_work;
pub mod http;
pub mod http_listener;
pub mod idempotency;
pub mod metrics;
pub mod open_files;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod services;
pub mod state;
pub mod telemetry;

pub use server::{Server, ServerConfig, SyslogConfig};

/// The commit this build was made from (`unknown` outside a git checkout).
pub const COMMIT: &str = env!("WARDEN_COMMIT");
