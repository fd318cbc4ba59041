//! The HTTP conventions every route shares: request ids, the envelope,
//! errors, extractors that answer bad input in the envelope, and the
//! refusal of query parameters a route does not declare.

pub mod envelope;
pub mod error;
pub mod exact_numbers;
pub mod extract;
pub mod json_depth;
pub mod query_params;
pub mod request_id;
pub mod unique_keys;
