//! What the unit tests of the condition functions share.

use crate::set::Condition;
use crate::{CallFacts, CelCondition, ConditionInput};

/// Whether `source` holds for a call with these arguments, at a fixed now.
pub fn holds(source: &str, args: serde_json::Value) -> bool {
    let facts = CallFacts {
        args,
        now_ms: 1_800_000_000_000,
        ..Default::default()
    };
    CelCondition::compile(source)
        .unwrap()
        .holds(&ConditionInput::new(facts))
        .unwrap()
}
