//! Tenancy: every row belongs to one organization and one environment, and
//! both come only from the caller's credential.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `live` for production traffic, `test` for integration work; the two never
/// see each other's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Live,
    Test,
}

impl Environment {
    pub const ALL: [Environment; 2] = [Environment::Live, Environment::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Environment::Live),
            "test" => Ok(Environment::Test),
            _ => Err(crate::Error::invalid(
                "environment",
                "environment must be one of: live, test",
            )),
        }
    }
}

/// The (organization, environment) pair that scopes every query.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant {
    pub org_id: String,
    pub environment: Environment,
}
