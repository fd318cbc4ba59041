//! The policy engine: which policies apply to a tool call and what they
//! decide. Pure computation (no IO, no async) so that it can be tested,
//! fuzzed and benchmarked on its own; the server compiles a tenant's
//! policies once per change into a [`PolicySet`] and evaluates every call
//! against it.

mod decision;
mod pattern;
mod set;

pub use decision::{Decision, Mode};
pub use pattern::{PatternError, ToolPattern};
pub use set::{AgentSelector, Call, Condition, ConditionError, Evaluation, Policy, PolicySet};
