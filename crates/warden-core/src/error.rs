//! Domain errors. The HTTP layer maps each variant to the API envelope once.

/// What can go wrong in a domain rule; never carries a secret.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A field of the request breaks a rule; `field` names it for the client.
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// Text inside a field does not parse or check (a glob, a CEL
    /// condition); `line` and `column` are 1-based within the field's text.
    #[error("{message}")]
    InvalidAt {
        field: String,
        message: String,
        line: usize,
        column: usize,
    },
    /// The caller lacks the scope an operation needs.
    #[error("this operation needs the `{scope}` scope")]
    MissingScope { scope: String },
    /// The caller is authenticated but may not do this for another reason.
    #[error("{0}")]
    Forbidden(String),
    /// Forbidden because of what one field of the request asks for.
    #[error("{field}: {message}")]
    ForbiddenField { field: String, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// Well-formed, but not allowed in the current state.
    #[error("{0}")]
    Unprocessable(String),
}

impl Error {
    pub fn forbidden_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::ForbiddenField {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
