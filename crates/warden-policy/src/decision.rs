//! What a policy decides, and how decisions rank when policies tie.

use std::fmt;
use std::str::FromStr;

/// The outcome for a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    Audit,
    Modify,
    StepUp,
    Deny,
}

impl Decision {
    pub const ALL: [Decision; 5] = [
        Decision::Allow,
        Decision::Audit,
        Decision::Modify,
        Decision::StepUp,
        Decision::Deny,
    ];

    /// How restrictive a decision is; on a priority tie the most
    /// restrictive wins: deny > step_up > modify > audit > allow.
    pub fn restrictiveness(self) -> u8 {
        match self {
            Decision::Allow => 0,
            Decision::Audit => 1,
            Decision::Modify => 2,
            Decision::StepUp => 3,
            Decision::Deny => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Audit => "audit",
            Decision::Modify => "modify",
            Decision::StepUp => "step_up",
            Decision::Deny => "deny",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decision::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| "decision must be one of: allow, deny, step_up, audit, modify".into())
    }
}

/// `enforce` policies decide; `monitor` policies only record what they
/// would have decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Enforce,
    Monitor,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "enforce" => Ok(Mode::Enforce),
            "monitor" => Ok(Mode::Monitor),
            _ => Err("mode must be one of: enforce, monitor".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrictiveness_orders_deny_first() {
        let mut all = Decision::ALL.to_vec();
        all.sort_by_key(|d| std::cmp::Reverse(d.restrictiveness()));
        assert_eq!(
            all,
            [
                Decision::Deny,
                Decision::StepUp,
                Decision::Modify,
                Decision::Audit,
                Decision::Allow
            ]
        );
        assert_eq!("step_up".parse::<Decision>(), Ok(Decision::StepUp));
        assert!("block".parse::<Decision>().is_err());
    }
}
