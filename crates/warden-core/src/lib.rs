//! Warden's domain: the types and rules every surface shares, with no IO so
//! that they can be tested and reused without a server or a database.

pub mod agent;
pub mod api_key;
pub mod audit;
pub mod audit_chain;
pub mod error;
pub mod event;
pub mod hold;
pub mod id;
pub mod log_pace;
pub mod org;
pub mod page;
pub mod policy;
pub mod scope;
pub mod secret;
pub mod tenant;
pub mod time;

pub use error::{Error, Result};
pub use tenant::{Environment, Tenant};
