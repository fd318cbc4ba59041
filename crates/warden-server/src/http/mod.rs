//! The HTTP conventions every route shares: request ids, the envelope,
//! errors, and extractors that answer bad input in the envelope.

pub mod envelope;
pub mod error;
pub mod extract;
pub mod request_id;
