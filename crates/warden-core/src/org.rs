//! Organizations (tenants) and the plans that set their rate limits.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A commercial plan; `custom` carries its own limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Starter,
    Professional,
    Enterprise,
    Custom,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Starter => "starter",
            Plan::Professional => "professional",
            Plan::Enterprise => "enterprise",
            Plan::Custom => "custom",
        }
    }

    /// The plan's published limit; `None` for `custom`, which is set per
    /// organization.
    pub fn default_limit(self) -> Option<RateLimit> {
        let (per_minute, burst) = match self {
            Plan::Starter => (60, 10),
            Plan::Professional => (600, 50),
            Plan::Enterprise => (6_000, 200),
            Plan::Custom => return None,
        };
        Some(RateLimit { per_minute, burst })
    }
}

impl FromStr for Plan {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "starter" => Ok(Plan::Starter),
            "professional" => Ok(Plan::Professional),
            "enterprise" => Ok(Plan::Enterprise),
            "custom" => Ok(Plan::Custom),
            _ => Err(crate::Error::invalid(
                "plan",
                "plan must be one of: starter, professional, enterprise, custom",
            )),
        }
    }
}

/// The highest rate a plan may set: one request per microsecond, the
/// resolution of the rate limiter.
pub const MAX_PER_MINUTE: u32 = 60_000_000;

/// Requests per minute with a burst allowance, enforced by GCRA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateLimit {
    pub fn validate(self) -> crate::Result<Self> {
        if !(1..=MAX_PER_MINUTE).contains(&self.per_minute) {
            return Err(crate::Error::invalid(
                "rate_limit_per_minute",
                "rate_limit_per_minute must be between 1 and 60000000",
            ));
        }
        if !(1..=10_000_000).contains(&self.burst) {
            return Err(crate::Error::invalid(
                "burst",
                "burst must be between 1 and 10000000",
            ));
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub plan: Plan,
    pub rate_limit: RateLimit,
    pub created_at: crate::time::Millis,
}

impl Organization {
    /// Validates the name and resolves the plan's limit.
    pub fn new(name: &str, plan: Plan, custom: Option<RateLimit>) -> crate::Result<Self> {
        let name = name.trim_matches(' ');
        if name.is_empty() || name.chars().count() > 200 {
            return Err(crate::Error::invalid(
                "name",
                "name must be 1 to 200 characters, not only blanks",
            ));
        }
        // Printed by the console (`org list`, the start-up banner) and
        // shown beside the organization's keys: a line break or a
        // terminal's escape would forge what an operator reads there.
        crate::agent::refuse_control(name, "name")?;
        crate::agent::visible(name, "name")?;
        let rate_limit = match (plan, custom) {
            (Plan::Custom, Some(limit)) => limit.validate()?,
            (Plan::Custom, None) => {
                return Err(crate::Error::invalid(
                    "rate_limit_per_minute",
                    "the custom plan needs a rate limit per minute and a burst \
                     (`rate_limit_per_minute` and `burst`; on the command line \
                     --rate-limit-per-minute and --burst)",
                ))
            }
            (_, Some(_)) => {
                return Err(crate::Error::invalid(
                    "plan",
                    "explicit limits need the `custom` plan",
                ))
            }
            (plan, None) => plan
                .default_limit()
                .ok_or_else(|| crate::Error::invalid("plan", "the plan has no published limit"))?,
        };
        Ok(Organization {
            id: crate::id::new_id(crate::id::prefix::ORGANIZATION),
            name: name.to_string(),
            plan,
            rate_limit,
            created_at: crate::time::now_ms(),
        })
    }
}
