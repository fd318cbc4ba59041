//! The HTTP conventions every route shares: request ids, the envelope,
//! errors, extractors that answer bad input in the envelope, and the
//! refusal of query parameters a route does not declare.

pub mod body_deadline;
pub mod decision_body;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod framing;
pub mod peer;
pub mod query_params;
pub mod request_id;
pub mod sealed_cursor;
pub mod security_headers;
pub mod turn_away;
pub mod unread_body;
pub use warden_policy::unique_keys;
