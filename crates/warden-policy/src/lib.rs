//! The policy engine: which policies apply to a tool call and what they
//! decide, and how far a call drifts from the agent's usual behaviour. Pure computation (no IO, no async) so that it can be tested,
//! fuzzed and benchmarked on its own; the server compiles a tenant's
//! policies once per change into a [`PolicySet`] and evaluates every call
//! against it.

mod allowance;
pub mod condition;
mod constant;
mod decision;
pub mod drift;
pub mod failure;
mod linear_search;
pub mod modify;
pub mod pattern;
mod regex_match;
mod set;
mod signature;
mod strict_equality;
#[cfg(test)]
mod test_support;
pub mod unique_keys;
mod utc_time;

pub use condition::{CallFacts, CelCondition, ConditionCompileError, ConditionInput};
pub use decision::{Decision, Mode};
pub use modify::{ArgChange, ArgPath, ChangeWork, PathError};
pub use pattern::{PatternError, ToolPattern};
pub use set::{AgentSelector, Call, Condition, ConditionError, Evaluation, Policy, PolicySet};
