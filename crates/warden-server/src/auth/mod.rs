//! Authentication: who is calling, for which tenant, with which scopes.
//! Keys and tokens both resolve to a [`Principal`].

mod client_ip;
mod keyring;
mod middleware;
mod principal;
pub mod scope_gate;
mod token;

pub use client_ip::client_ip;
pub use keyring::{misplaced_key, KeyRing};
pub use middleware::authenticate;

/// Pieces of the gate that routes authenticating by other means reuse.
pub mod middleware_support {
    pub use super::middleware::{
        presented_credential, request_ip, set_limit_headers, take_from_bucket,
    };
}
pub use principal::Principal;
pub use token::{IssuedToken, TokenIssuer};
