//! Policy conditions in CEL (the Common Expression Language) over the facts
//! of a call: `tool`, `args`, `agent`, `session`, `context`, `drift`, `now`.
//!
//! The `cel` crate parses and evaluates but has no type checker, so a
//! condition is checked here before it is accepted: every identifier must be
//! one of the variables (or a comprehension's own), fields of `agent`,
//! `session` and `drift` must exist, functions must be known, operands whose
//! types are known must suit their operator, and the whole expression must
//! be able to yield a boolean. Each refusal names its line and column.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, OnceLock};

use cel::common::ast::{EntryExpr, Expr, LiteralValue};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::Key;
use cel::{Context, Env, IdedExpr, Program, Value};
use serde_json::Value as Json;

use crate::allowance::Allowance;
use crate::constant;
use crate::drift::DriftScore;
use crate::regex_match::{self, MATCHES_FN};
use crate::set::{Condition, ConditionError};
use crate::signature;

/// Longest condition accepted, in bytes.
pub const MAX_CONDITION_LEN: usize = 4_096;

/// The variables a condition may read.
pub const VARIABLES: &[&str] = &[
    "tool", "args", "agent", "session", "context", "drift", "now",
];
const AGENT_FIELDS: &[&str] = &["id", "name", "external_id", "status", "tags"];
const SESSION_FIELDS: &[&str] = &["id", "user_id", "previous_tool", "tools", "calls"];
const DRIFT_FIELDS: &[&str] = &[
    "score",
    "learning",
    "new_tool",
    "unusual_transition",
    "unusual_rate",
    "unusual_hour",
    "new_argument_keys",
];

/// The standard types' names, which a condition may compare `type(x)` with.
const TYPE_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
];

/// Functions of the CEL standard library and the strings extension.
const FUNCTIONS: &[&str] = &[
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "duration",
    "timestamp",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "getFullYear",
    "getMonth",
    "getDate",
    "getDayOfMonth",
    "getDayOfYear",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "charAt",
    "indexOf",
    "lastIndexOf",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "substring",
    "trim",
    "join",
    "format",
    "reverse",
];

/// The environment every condition compiles and runs in: built once.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("the strings extension registers once");
    regex_match::register(&mut env);
    crate::utc_time::register(&mut env);
    crate::linear_search::register(&mut env);
    crate::strict_equality::register(&mut env);
    Arc::new(env)
});

/// Why a condition was refused, and where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct ConditionCompileError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// A compiled, checked CEL condition.
pub struct CelCondition {
    source: String,
    program: Program,
    /// The program's tree with `==`, `!=` and `in` made strict about
    /// types (`strict_equality`): what runs.
    strict: IdedExpr,
    /// Whether a comprehension ranges over the call's data: its body runs
    /// once per element, so the call's collections are held to
    /// [`MAX_LOOP_ELEMENTS`].
    loops_over_call: bool,
    /// How many times per call the condition's loops over data (not over
    /// literals) start, each counted once per run of the literal loops
    /// around it: with the call's size, a bound on their bodies' runs.
    data_loop_runs: u64,
}

/// Most body runs the loops over the call's data of one condition may
/// make, reckoned as [`CelCondition::data_loop_runs`] times the number of
/// elements in all the call's lists and maps together (a nested loop
/// visits each element at most once per run). Each body's own cost the
/// checker bounds, so this keeps one condition within a fraction of a
/// second; past it the condition fails to evaluate (never loosening the
/// outcome). Without it, 110 loops over 50 lists of 10,000 numbers took
/// 15 s.
pub const MAX_LOOP_WORK: u64 = 1_000_000;

/// Most body runs the loops over the call's data of all the conditions
/// one call meets may make together ([`MAX_LOOP_WORK`] is each one's):
/// without it, 30 policies just within their own bound took 14.5 s over
/// one call. Past it the rest fail to evaluate (never loosening the
/// outcome), as the call's regex search time is shared.
pub const MAX_CALL_LOOP_WORK: u64 = 2 * MAX_LOOP_WORK;

/// Time all the conditions one call meets may take together. Each
/// condition's own cost is bounded, but not the number of policies: 30
/// conditions each splitting a 1 MB argument 16 times took 14.7 s over
/// one call. Once the call's conditions have taken it, the rest fail to
/// evaluate (never loosening the outcome), so a call's conditions take
/// at most this and the one running when it ran out.
pub const CALL_EVALUATION_TIME: std::time::Duration = std::time::Duration::from_millis(500);

/// Most elements a list or map of the call may hold for a condition that
/// loops over the call's data: each runs the loop's body, whose own cost
/// the checker bounds, so the two together stay within a fraction of a
/// second. Past it the condition fails to evaluate (which never loosens
/// the outcome).
pub const MAX_LOOP_ELEMENTS: usize = 10_000;

/// Whether a comprehension in `e` ranges over anything a call supplies.
fn loops_over_call(e: &IdedExpr) -> bool {
    let reads_call = |range: &IdedExpr| {
        let mut stack = vec![range];
        while let Some(x) = stack.pop() {
            if matches!(&x.expr, Expr::Ident(name) if VARIABLES.contains(&name.as_str())) {
                return true;
            }
            stack.extend(constant::children(x));
        }
        false
    };
    let mut stack = vec![e];
    while let Some(x) = stack.pop() {
        if let Expr::Comprehension(c) = &x.expr {
            if reads_call(&c.iter_range) {
                return true;
            }
        }
        stack.extend(constant::children(x));
    }
    false
}

impl std::fmt::Debug for CelCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CelCondition").field(&self.source).finish()
    }
}

impl CelCondition {
    /// Compiles a condition being written: every check, the cost rules too.
    pub fn compile(source: &str) -> Result<Self, ConditionCompileError> {
        Self::compile_with(source, true)
    }

    /// Compiles a stored condition. The cost rules are left out: they came
    /// after some policies were stored, and a policy that stopped loading
    /// would stop enforcing.
    pub fn compile_stored(source: &str) -> Result<Self, ConditionCompileError> {
        Self::compile_with(source, false)
    }

    fn compile_with(source: &str, cost_rules: bool) -> Result<Self, ConditionCompileError> {
        if source.len() > MAX_CONDITION_LEN {
            return Err(ConditionCompileError {
                message: format!("a condition is at most {MAX_CONDITION_LEN} bytes"),
                line: 1,
                column: 1,
            });
        }
        if source.trim().is_empty() {
            return Err(ConditionCompileError {
                message: "the condition is empty".into(),
                line: 1,
                column: 1,
            });
        }
        if cost_rules {
            refuse_hidden_characters(source)?;
        }
        check_nesting(source)?;
        let program = ENV.compile(source).map_err(|errors| {
            let first = errors.errors.first();
            // The parser's columns are 1-based already.
            ConditionCompileError {
                message: first.map_or_else(|| "does not parse".into(), |e| parse_message(&e.msg)),
                line: first.map_or(1, |e| e.pos.0.max(1) as usize),
                column: first.map_or(1, |e| e.pos.1.max(1) as usize),
            }
        })?;
        let checker = Checker {
            source,
            program: &program,
            loop_vars: Default::default(),
            cost_rules,
            constant_locals: Default::default(),
            literal_iterations: std::cell::Cell::new(1),
            literal_runs_total: std::cell::Cell::new(0),
            local_literals: Default::default(),
            local_lengths: Default::default(),
            local_growth: Default::default(),
            copy_work: std::cell::Cell::new(0),
            data_loop_runs: std::cell::Cell::new(0),
            member_kinds: Default::default(),
        };
        if let Some(deep) = too_deep(program.expression()) {
            return Err(checker.error(
                deep,
                format!(
                    "a condition nests at most {MAX_DEPTH} expressions deep (a long chain of \
                     operators or calls counts one level per link): use `in` with a list, \
                     or split the policy"
                ),
            ));
        }
        let kind = checker.check(program.expression(), &mut Vec::new())?;
        if !kind.may_be(Kind::Bool) {
            return Err(checker.error(
                program.expression(),
                format!("a condition must be a boolean expression; this one is {kind}"),
            ));
        }
        if cost_rules {
            if let Some((part, why)) = constant::always_failing(&ENV, program.expression()) {
                return Err(checker.error_at_start(
                    part,
                    format!("this part of the condition fails on every call: {why}"),
                ));
            }
        }
        let mut strict = program.expression().clone();
        crate::strict_equality::rewrite(&mut strict);
        Ok(CelCondition {
            source: source.to_string(),
            strict,
            loops_over_call: loops_over_call(program.expression()),
            data_loop_runs: checker.data_loop_runs.get(),
            program,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Refuses a condition holding a character that shows as nothing or
/// reorders what follows (U+202E inside a string literal makes the
/// condition read otherwise than it evaluates), or a control character
/// other than line breaks and tabs. CEL's escapes (`"\u200b"`) still name
/// such characters in literals. Only for conditions being written: a
/// stored one keeps loading.
fn refuse_hidden_characters(source: &str) -> Result<(), ConditionCompileError> {
    let lines: Vec<&str> = source.split('\n').collect();
    for (line, text) in lines.iter().enumerate() {
        // A carriage return only as the `\r` of a `\r\n`: alone, a terminal
        // goes back over what came before it (`true //\rargs.a > 5` shows
        // as `args.a > 5` and runs as `true`).
        let text = match text.strip_suffix('\r') {
            Some(before) if line + 1 < lines.len() => before,
            _ => text,
        };
        let unfit = |c: char| (c.is_control() && c != '\t') || crate::pattern::unseen(c);
        if let Some((column, c)) = text.chars().enumerate().find(|(_, c)| unfit(*c)) {
            return Err(ConditionCompileError {
                message: format!(
                    "control, invisible or direction-changing character (U+{:04X}): write it as \
                     an escape in a string (\\u{:04x})",
                    c as u32, c as u32
                ),
                line: line + 1,
                column: column + 1,
            });
        }
        // A pasted no-break space, or a decomposed letter, in a literal
        // compared with a tool or agent name would never match (names
        // refuse both); written as an escape, it is meant.
        let pasted = text
            .chars()
            .enumerate()
            .find(|(_, c)| c.is_whitespace() && *c != ' ' && *c != '\t')
            .map(|(column, c)| (column + 1, c, "a space other than the plain one"))
            .or_else(|| {
                crate::pattern::first_decomposed(text)
                    .map(|(column, c)| (column, c, "a letter outside Unicode's composed form"))
            });
        if let Some((column, c, what)) = pasted {
            return Err(ConditionCompileError {
                message: format!(
                    "{what} (U+{:04X}): names never hold one; write it as an escape in a string \
                     (\\u{:04x}) if it is meant",
                    c as u32, c as u32
                ),
                line: line + 1,
                column,
            });
        }
    }
    Ok(())
}

/// Deepest nesting of brackets a condition may use; the parser refuses
/// deeper ones with an internal message and no position.
const MAX_NESTING: usize = 64;

/// Refuses a condition nested deeper than [`MAX_NESTING`], naming where
/// (brackets inside string literals do not count).
fn check_nesting(source: &str) -> Result<(), ConditionCompileError> {
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        if c == '\n' {
            (line, column) = (line + 1, 0);
        } else {
            column += 1;
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(ConditionCompileError {
                        message: format!("a condition nests at most {MAX_NESTING} brackets deep"),
                        line,
                        column,
                    });
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Deepest expression tree a condition may build. Brackets are bounded
/// above, but a chain of operators (`a + b + …`; the parser balances `||`
/// and `&&` chains) or of calls and fields nests one level per link
/// without any, and checking and evaluating a condition recurse once per
/// level on a thread's stack. Stored conditions are held to it too: past
/// it they would overflow a worker's stack and end the process.
const MAX_DEPTH: usize = 128;

/// The first expression nested deeper than [`MAX_DEPTH`], found without
/// recursion.
fn too_deep(root: &IdedExpr) -> Option<&IdedExpr> {
    let mut stack: Vec<(&IdedExpr, usize)> = vec![(root, 1)];
    while let Some((e, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Some(e);
        }
        for child in constant::children(e) {
            stack.push((child, depth + 1));
        }
    }
    None
}

/// The parser's message, without its internal wrapping where it has one.
fn parse_message(raw: &str) -> String {
    if raw.contains("Recursion limit") {
        return "the condition nests too deeply".into();
    }
    raw.to_string()
}

/// What a condition can know of a call.
#[derive(Debug, Clone, Default)]
pub struct CallFacts {
    pub tool: String,
    pub args: Json,
    pub agent_id: String,
    pub agent_name: String,
    pub agent_external_id: Option<String>,
    pub agent_status: String,
    pub agent_tags: Vec<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub previous_tool: Option<String>,
    /// Tools called earlier in the session, oldest first.
    pub session_tools: Vec<String>,
    /// Calls earlier in the session: more than `session_tools` holds once
    /// that list keeps only the latest.
    pub session_calls: u64,
    pub context: Json,
    pub drift: DriftScore,
    /// Milliseconds since the epoch.
    pub now_ms: i64,
}

/// The facts with their CEL form: each variable is converted on its first
/// use by a condition of this call and then borrowed, so a call pays only
/// for the variables its matching conditions read.
pub struct ConditionInput {
    pub facts: CallFacts,
    vars: [OnceLock<Option<Box<dyn Val>>>; 7],
    /// Regex search time left to this call, in nanoseconds, shared by
    /// every condition it meets.
    search_time_left: std::sync::atomic::AtomicU64,
    /// Loop body runs left to this call's conditions (see
    /// [`MAX_CALL_LOOP_WORK`]).
    loop_work_left: Allowance,
    /// Evaluation time left to this call's conditions, in nanoseconds
    /// (see [`CALL_EVALUATION_TIME`]).
    evaluation_time_left: Allowance,
    /// The most elements any list or map of the arguments or context
    /// holds, counted once per call when a condition first asks.
    largest: OnceLock<(usize, usize, usize)>,
}

impl ConditionInput {
    pub fn new(facts: CallFacts) -> Self {
        ConditionInput {
            facts,
            vars: Default::default(),
            search_time_left: std::sync::atomic::AtomicU64::new(
                regex_match::CALL_SEARCH_TIME.as_nanos() as u64,
            ),
            loop_work_left: Allowance::new(MAX_CALL_LOOP_WORK),
            evaluation_time_left: Allowance::new(CALL_EVALUATION_TIME.as_nanos() as u64),
            largest: OnceLock::new(),
        }
    }

    /// The most elements any list or map of the arguments or context
    /// holds, and how many all of them hold together.
    pub fn collection_sizes(&self) -> (usize, usize) {
        let (largest, total, _) = self.sizes();
        (largest, total)
    }

    /// Bytes of text (strings and keys) in the arguments and context.
    pub fn text_bytes(&self) -> usize {
        self.sizes().2
    }

    fn sizes(&self) -> (usize, usize, usize) {
        *self.largest.get_or_init(|| {
            let (mut largest, mut total, mut text) = (0, 0, 0);
            let mut stack = vec![&self.facts.args, &self.facts.context];
            while let Some(v) = stack.pop() {
                match v {
                    Json::Array(items) => {
                        largest = largest.max(items.len());
                        total += items.len();
                        stack.extend(items);
                    }
                    Json::Object(map) => {
                        largest = largest.max(map.len());
                        total += map.len();
                        text += map.keys().map(String::len).sum::<usize>();
                        stack.extend(map.values());
                    }
                    Json::String(s) => text += s.len(),
                    _ => {}
                }
            }
            (largest, total, text)
        })
    }

    /// Uses up the call's evaluation time (for tests of what follows).
    pub fn spend_evaluation_time(&self) {
        self.evaluation_time_left.drain(u64::MAX);
    }

    /// Uses up the call's regex search time (for tests of what follows).
    pub fn spend_search_time(&self) {
        self.search_time_left
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The facts back, once the conditions are done with them.
    pub fn into_facts(self) -> CallFacts {
        self.facts
    }
}

impl VariableResolver for ConditionInput {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let slot = VARIABLES.iter().position(|v| *v == variable)?;
        self.vars[slot]
            .get_or_init(|| build_variable(&self.facts, variable))
            .as_deref()
            .map(CowVal::Borrowed)
    }
}

fn object_or_empty(json: &Json) -> Value {
    match json {
        Json::Null => Value::Map(cel::objects::Map::from(HashMap::<Key, Value>::new())),
        other => json_value(other),
    }
}

/// A JSON value as CEL sees it. Whole numbers are `int` (as CEL's own JSON
/// mapping has them), so that `args.n % 2` and `args.amount * 2` work
/// against literals; only those beyond `int`'s range are `uint`.
fn json_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => text(s),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(json_value).collect())),
        Json::Object(fields) => {
            let map: HashMap<Key, Value> = fields
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_value(v)))
                .collect();
            Value::Map(cel::objects::Map::from(map))
        }
    }
}

fn text(s: &str) -> Value {
    Value::String(Arc::new(s.to_string()))
}

fn optional_text(s: &Option<String>) -> Value {
    s.as_deref().map_or(Value::Null, text)
}

fn texts(list: &[String]) -> Value {
    Value::List(Arc::new(list.iter().map(|s| text(s)).collect()))
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let map: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_string())), v))
        .collect();
    Value::Map(cel::objects::Map::from(map))
}

fn build_variable(facts: &CallFacts, variable: &str) -> Option<Box<dyn Val>> {
    let value = match variable {
        "tool" => text(&facts.tool),
        "args" => object_or_empty(&facts.args),
        "context" => object_or_empty(&facts.context),
        "agent" => map(vec![
            ("id", text(&facts.agent_id)),
            ("name", text(&facts.agent_name)),
            ("external_id", optional_text(&facts.agent_external_id)),
            ("status", text(&facts.agent_status)),
            ("tags", texts(&facts.agent_tags)),
        ]),
        "session" => map(vec![
            ("id", optional_text(&facts.session_id)),
            ("user_id", optional_text(&facts.user_id)),
            ("previous_tool", optional_text(&facts.previous_tool)),
            ("tools", texts(&facts.session_tools)),
            (
                "calls",
                Value::Int(facts.session_calls.max(facts.session_tools.len() as u64) as i64),
            ),
        ]),
        "drift" => {
            let d = &facts.drift;
            map(vec![
                ("score", Value::Float(d.score)),
                ("learning", Value::Bool(d.learning)),
                ("new_tool", Value::Float(d.new_tool)),
                ("unusual_transition", Value::Float(d.unusual_transition)),
                ("unusual_rate", Value::Float(d.unusual_rate)),
                ("unusual_hour", Value::Float(d.unusual_hour)),
                ("new_argument_keys", Value::Float(d.new_argument_keys)),
            ])
        }
        "now" => {
            Value::Timestamp(chrono::DateTime::from_timestamp_millis(facts.now_ms)?.fixed_offset())
        }
        _ => return None,
    };
    value.try_into().ok()
}

impl Condition<ConditionInput> for CelCondition {
    /// Whether the name appears anywhere in the condition (a loop variable
    /// of that name counts too, which errs on the side of reading it).
    fn reads(&self, input: &str) -> bool {
        let mut stack = vec![&self.strict];
        while let Some(x) = stack.pop() {
            if matches!(&x.expr, Expr::Ident(name) if name == input) {
                return true;
            }
            stack.extend(constant::children(x));
        }
        false
    }

    fn holds(&self, input: &ConditionInput) -> Result<bool, ConditionError> {
        if input.evaluation_time_left.is_spent() {
            return Err(ConditionError(format!(
                "this call's conditions took their {} ms; the rest are not evaluated",
                CALL_EVALUATION_TIME.as_millis()
            )));
        }
        let began = std::time::Instant::now();
        let held = self.evaluate(input);
        input
            .evaluation_time_left
            .drain(began.elapsed().as_nanos() as u64);
        held
    }
}

impl CelCondition {
    fn evaluate(&self, input: &ConditionInput) -> Result<bool, ConditionError> {
        if self.loops_over_call {
            let (largest, total) = input.collection_sizes();
            if largest > MAX_LOOP_ELEMENTS {
                return Err(ConditionError(format!(
                    "the call's data holds a list or map of {largest} elements; a condition \
                     that loops over the call's data takes at most {MAX_LOOP_ELEMENTS}"
                )));
            }
            let work = self.data_loop_runs.saturating_mul(total as u64);
            if work > MAX_LOOP_WORK {
                return Err(ConditionError(format!(
                    "the condition's {} loops over data would run over the call's {total} \
                     elements (lists and maps together) past {MAX_LOOP_WORK} times in all",
                    self.data_loop_runs
                )));
            }
            if !input.loop_work_left.take(work) {
                return Err(ConditionError(format!(
                    "the call's conditions would run their loops over the call's data past \
                     {MAX_CALL_LOOP_WORK} times in all; the conditions met before this one \
                     took the call's share"
                )));
            }
        }
        let mut ctx = Context::with_env(ENV.clone());
        ctx.set_variable_resolver(input);
        let outcome = regex_match::with_search_time(&input.search_time_left, || {
            Value::resolve(&self.strict, &ctx)
        });
        match outcome {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError(format!(
                "the condition yielded a {}, not a bool",
                crate::failure::type_name(&other)
            ))),
            Err(e) => Err(ConditionError(crate::failure::describe(&e))),
        }
    }
}

/// What the checker knows of an expression's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int,
    UInt,
    Double,
    String,
    Bytes,
    Null,
    List,
    Map,
    Timestamp,
    Duration,
    /// A type, as `type(x)` gives and `int` names.
    Type,
    /// Not known before the call (arguments, context).
    Dyn,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::UInt => "uint",
            Kind::Double => "double",
            Kind::String => "string",
            Kind::Bytes => "bytes",
            Kind::Null => "null",
            Kind::List => "list",
            Kind::Map => "map",
            Kind::Timestamp => "timestamp",
            Kind::Duration => "duration",
            Kind::Type => "type",
            Kind::Dyn => "dyn",
        };
        f.write_str(name)
    }
}

impl Kind {
    pub(crate) fn may_be(self, other: Kind) -> bool {
        self == Kind::Dyn || other == Kind::Dyn || self == other
    }

    fn numeric(self) -> bool {
        matches!(self, Kind::Int | Kind::UInt | Kind::Double)
    }
}

/// A loop's variable and the string literals it ranges over, each with
/// the id of the literal that wrote it.
type LocalLiterals = (String, Vec<(String, u64)>);

struct Checker<'a> {
    /// The kinds of the members of each list literal (the keys of each map
    /// literal) checked so far, by expression id: what `in` compares with.
    member_kinds: std::cell::RefCell<std::collections::HashMap<u64, Vec<Kind>>>,
    source: &'a str,
    program: &'a Program,
    /// While checking a comprehension's body: the innermost comprehension's
    /// own variables (its element and accumulator).
    loop_vars: std::cell::RefCell<Option<Vec<String>>>,
    /// Whether the rules that came after some policies were stored apply
    /// (those that bound a condition's cost, and the functions' argument
    /// types): when a policy is written, not when a stored one is loaded
    /// (a policy stored under older rules keeps enforcing).
    cost_rules: bool,
    /// The variables of comprehensions that range over literals only: they
    /// hold the policy author's text, never the call's.
    constant_locals: std::cell::RefCell<Vec<String>>,
    /// How many times the expression being checked runs per call because
    /// of the loops over literals around it.
    literal_iterations: std::cell::Cell<u64>,
    /// The body runs of every loop over literals in the condition, added
    /// up: loops one after another cost their sum.
    literal_runs_total: std::cell::Cell<u64>,
    /// The string literals a loop over a list literal binds its variable
    /// to, so that a pattern given as that variable is checked too.
    local_literals: std::cell::RefCell<Vec<LocalLiterals>>,
    /// For the variable of a loop over literals: how many elements the
    /// longest of them holds, for a loop nested over that variable.
    local_lengths: std::cell::RefCell<Vec<(String, u64)>>,
    /// For the variables of every loop around: the growth of the elements
    /// they take, so that a loop over `[args.s.replace(…)]` does not
    /// start its element's growth again from one.
    local_growth: std::cell::RefCell<Vec<(String, u64)>>,
    /// The copying calls' work over the call's data so far (see
    /// [`MAX_COPY_WORK`]).
    copy_work: std::cell::Cell<u64>,
    /// Starts of loops over data so far (see [`MAX_LOOP_WORK`]).
    data_loop_runs: std::cell::Cell<u64>,
}

/// Calls whose cost grows with their operands' size. Inside a
/// comprehension's body they may read only the loop's own element (whose
/// sizes add up to the call's size): over any other data, a call with a
/// large list and a large string would cost their product.
const SIZE_BOUND_CALLS: &[&str] = &[
    "@in",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "split",
    "replace",
    "join",
    "indexOf",
    "lastIndexOf",
    "format",
    // Each of these walks or copies a whole string.
    "size",
    "string",
    "lowerAscii",
    "upperAscii",
    "substring",
    "trim",
    "charAt",
    "quote",
];

/// Calls that copy the text they work on, or cut it into new strings,
/// and what one pass over the call's data weighs: `split` makes a string
/// per piece (`split('')` one per character), several times the cost of
/// one copy.
const COPYING_CALLS: &[(&str, u64)] = &[
    ("split", 16),
    ("replace", 2),
    ("join", 2),
    ("format", 2),
    ("lowerAscii", 1),
    ("upperAscii", 1),
    ("string", 1),
    ("substring", 1),
    ("trim", 1),
    ("quote", 1),
];

/// Calls that read the text they work on once, without copying it.
const SCANNING_CALLS: &[&str] = &[
    "contains",
    "startsWith",
    "endsWith",
    "indexOf",
    "lastIndexOf",
    "matches",
    "size",
    "charAt",
];

/// How many times the condition's own text a string or list built only
/// of its literals may grow: a condition is at most 4 KiB, so 16 MiB.
const MAX_LITERAL_GROWTH: u64 = 4_096;

/// What the copying calls over the call's data may weigh in one condition,
/// counted once per run of the loops over literals around them: about 256
/// copies of the call's data (a `split('')` of 1 MiB costs some 20 ms).
const MAX_COPY_WORK: u64 = 256;

/// Comparisons cost at most their smaller side: linear in a loop when
/// either side is the loop's own or a literal, a product when both sides
/// are other data (two lists or strings of the call).
const COMPARISONS: &[&str] = &["_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_"];

/// Calls that pair their receiver with another text, and that other
/// operand's role: a regex runs its program over the text, `indexOf`
/// compares the needle at every position, a replacement or separator is
/// copied once per piece.
const PAIRING_CALLS: &[(&str, &str)] = &[
    ("matches", "pattern"),
    ("replace", "search and replacement texts"),
    ("join", "separator"),
    ("indexOf", "needle"),
    ("lastIndexOf", "needle"),
];

/// How many times the size of the call's data (with the condition's own
/// text) a built string or list may reach.
const MAX_GROWTH: u64 = 64;

/// How many times loops over literals may run a body per call, nested
/// ones multiplied: each run may walk the whole call.
const MAX_LITERAL_ITERATIONS: u64 = 100;

/// How many body runs all the loops over literals of one condition may add
/// up to: two loops of a hundred, or a hundred nested in a few.
const MAX_LITERAL_RUNS_TOTAL: u64 = 250;

/// What the innermost loop binding `name` recorded of it.
fn innermost<T: Clone>(bound: &std::cell::RefCell<Vec<(String, T)>>, name: &str) -> Option<T> {
    bound
        .borrow()
        .iter()
        .rev()
        .find(|(local, _)| local == name)
        .map(|(_, what)| what.clone())
}

/// How many elements a loop over literals visits: a list or map literal's
/// count, else (a literal split, say) as many as a condition's length.
fn literal_len_of(range: &IdedExpr) -> u64 {
    match &range.expr {
        Expr::List(list) => list.elements.len() as u64,
        Expr::Map(map) => map.entries.len() as u64,
        _ => MAX_CONDITION_LEN as u64,
    }
}

/// Calls whose result can be larger than their operands.
const GROWING_CALLS: &[&str] = &["replace", "join", "quote", "format", "_+_"];

/// The length of a string literal, if `e` is one.
fn literal_len(e: Option<&IdedExpr>) -> Option<u64> {
    match e.map(|e| &e.expr) {
        Some(Expr::Literal(LiteralValue::String(s))) => Some(s.inner().len() as u64),
        _ => None,
    }
}

/// An upper bound on how many times the size of the call's data plus the
/// condition's own text (which bounds every literal) `e` can be: a
/// replacement longer than what it replaces or a separator multiplies it,
/// `+` adds. Unknown operands count as the longest literal there can be.
/// `ident` says what each variable already holds (a loop's element carries
/// the growth of what the loop ranges over).
fn growth_with(e: &IdedExpr, ident: &dyn Fn(&str) -> u64) -> u64 {
    let growth = |e: &IdedExpr| growth_with(e, ident);
    let longest = MAX_CONDITION_LEN as u64;
    match &e.expr {
        Expr::Call(call) => {
            let target = call.target.as_deref().map_or(1, growth);
            let each = || call.args.iter().map(growth);
            match call.func_name.as_str() {
                "replace" if call.target.is_some() => {
                    let from = literal_len(call.args.first()).unwrap_or(0);
                    let to = literal_len(call.args.get(1)).unwrap_or(longest);
                    let factor = match (from, to) {
                        (_, 0) => 1,
                        (0, to) => to + 1,
                        (from, to) => to.div_ceil(from).max(1),
                    };
                    target.saturating_mul(factor)
                }
                "join" if call.target.is_some() => {
                    let separator = match call.args.first() {
                        None => 0,
                        some => literal_len(some).unwrap_or(longest),
                    };
                    target.saturating_mul(separator + 1)
                }
                "quote" => each().fold(1, u64::max).saturating_mul(4),
                "_+_" | "format" => {
                    let base = call.target.as_deref().map_or(0, growth);
                    each().fold(base, u64::saturating_add)
                }
                "_?_:_" => each().skip(1).fold(1, u64::max),
                _ => each().fold(target, u64::max),
            }
        }
        Expr::List(list) => list
            .elements
            .iter()
            .map(growth)
            .fold(1, u64::saturating_add),
        Expr::Map(map) => map
            .entries
            .iter()
            .map(|entry| match &entry.expr {
                EntryExpr::MapEntry(m) => growth(&m.key).saturating_add(growth(&m.value)),
                _ => 1,
            })
            .fold(1, u64::saturating_add),
        Expr::Comprehension(c) => {
            // Each element may be as small as a byte of the call, and the
            // transform adds its literals to every one of them: they weigh
            // their length, not once.
            // The element itself counts one: the range's growth is its.
            let own = |name: &str| {
                if name == c.iter_var || c.iter_var2.as_deref() == Some(name) {
                    1
                } else {
                    ident(name)
                }
            };
            let per_element = map_transform(&c.loop_step, &c.accu_var)
                .map_or(1, |t| growth_with(t, &own).saturating_add(literal_bytes(t)));
            growth(&c.iter_range).saturating_mul(per_element)
        }
        Expr::Ident(name) => ident(name),
        _ => 1,
    }
}

/// The bytes of the string literals in `e`: what a map's transform adds
/// to each element at most.
fn literal_bytes(e: &IdedExpr) -> u64 {
    let own = match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => s.inner().len() as u64,
        _ => 0,
    };
    constant::children(e)
        .into_iter()
        .map(literal_bytes)
        .fold(own, u64::saturating_add)
}

/// The transform of a `map` (the `[x]` its step appends to the result),
/// found in the expansion the parser gives the macro.
fn map_transform<'e>(step: &'e IdedExpr, accu: &str) -> Option<&'e IdedExpr> {
    let Expr::Call(call) = &step.expr else {
        return None;
    };
    match (call.func_name.as_str(), &call.args[..]) {
        ("_+_", [first, second]) if matches!(&first.expr, Expr::Ident(a) if a == accu) => {
            match &second.expr {
                Expr::List(list) if list.elements.len() == 1 => Some(&list.elements[0]),
                _ => None,
            }
        }
        // map(x, predicate, transform): the append behind a condition.
        ("_?_:_", [_, then, _]) => map_transform(then, accu),
        _ => None,
    }
}

/// Whether `e` reads any variable other than `own` (literals read none).
fn reads_beyond(e: &IdedExpr, own: &[String]) -> bool {
    match &e.expr {
        Expr::Ident(name) => !own.contains(name),
        Expr::Select(select) => reads_beyond(&select.operand, own),
        Expr::Call(call) => {
            call.target.as_ref().is_some_and(|t| reads_beyond(t, own))
                || call.args.iter().any(|a| reads_beyond(a, own))
        }
        Expr::List(list) => list.elements.iter().any(|x| reads_beyond(x, own)),
        Expr::Map(map) => map.entries.iter().any(|entry| match &entry.expr {
            EntryExpr::MapEntry(m) => reads_beyond(&m.key, own) || reads_beyond(&m.value, own),
            _ => true,
        }),
        Expr::Literal(_) | Expr::Unspecified => false,
        Expr::Comprehension(_) | Expr::Struct(_) => true,
    }
}

impl Checker<'_> {
    /// Where an expression's text begins: a selection or a member call is
    /// placed at its dot, so its receiver is looked at too.
    fn start_of(&self, expr: &IdedExpr) -> usize {
        let own = self
            .program
            .source_info()
            .offset_for(expr.id)
            .map_or(usize::MAX, |(start, _)| start as usize);
        // A global call is placed at its parenthesis: its name comes first
        // (as written: some are renamed once parsed).
        let own = match (&expr.expr, self.source.get(..own)) {
            (Expr::Call(call), Some(before))
                if call.target.is_none() && self.source[own..].starts_with('(') =>
            {
                let name = before
                    .bytes()
                    .rev()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                own - name
            }
            _ => own,
        };
        let receiver = match &expr.expr {
            Expr::Select(select) => Some(&*select.operand),
            Expr::Call(call) => call.target.as_deref().or(call.args.first()),
            // A macro (`all`, `map`, …) begins with what it ranges over.
            Expr::Comprehension(c) => Some(&c.iter_range),
            _ => None,
        };
        receiver.map_or(own, |r| own.min(self.start_of(r)))
    }

    /// Where a call's function name begins: the parser places a global
    /// call at its parenthesis and a member call at its dot.
    fn name_start(&self, expr: &IdedExpr) -> usize {
        let at = self
            .program
            .source_info()
            .offset_for(expr.id)
            .map_or(0, |(start, _)| start as usize);
        let rest = self.source.get(at..).unwrap_or("");
        if rest.starts_with('.') {
            return at + 1;
        }
        let before = self.source.get(..at).unwrap_or("");
        if rest.starts_with('(') {
            // The name, and any space between it and its parenthesis.
            let spaces = before.len() - before.trim_end().len();
            let name = before[..before.len() - spaces]
                .bytes()
                .rev()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            return if name == 0 { at } else { at - spaces - name };
        }
        at
    }

    /// An error placed where the expression's text begins.
    fn error_at_start(&self, expr: &IdedExpr, message: String) -> ConditionCompileError {
        self.error_at(self.start_of(expr), message)
    }

    fn error(&self, expr: &IdedExpr, message: String) -> ConditionCompileError {
        let start = self
            .program
            .source_info()
            .offset_for(expr.id)
            .map_or(0, |(start, _)| start as usize);
        self.error_at(start, message)
    }

    /// [`growth_with`] of `e`, the loops' variables as they are bound.
    fn grown(&self, e: &IdedExpr) -> u64 {
        growth_with(e, &|name| innermost(&self.local_growth, name).unwrap_or(1))
    }

    /// Refuses `e` when what it builds could be more than [`MAX_GROWTH`]
    /// times the size of the call's data.
    fn within_growth(&self, e: &IdedExpr, factor: u64) -> Result<(), ConditionCompileError> {
        if factor <= MAX_GROWTH {
            return Ok(());
        }
        Err(self.error(
            e,
            format!(
                "this expression could build a string or list {} times the size of the \
                 call's data (at most {MAX_GROWTH}): shorten its replacements and \
                 separators, or chain fewer of them",
                if factor == u64::MAX {
                    "unbounded".to_string()
                } else {
                    factor.to_string()
                }
            ),
        ))
    }

    fn error_at(&self, start: usize, message: String) -> ConditionCompileError {
        let start = start.min(self.source.len());
        let before = &self.source[..floor_boundary(self.source, start)];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        ConditionCompileError {
            message,
            line,
            column,
        }
    }

    /// The kinds of what a literal list holds (a literal map's keys), or of
    /// two such lists joined with `+`; empty where they are not written out.
    fn members(&self, container: &IdedExpr) -> Vec<Kind> {
        if let Expr::Call(call) = &container.expr {
            if call.func_name == "_+_" {
                return call.args.iter().flat_map(|a| self.members(a)).collect();
            }
        }
        self.member_kinds
            .borrow()
            .get(&container.id)
            .cloned()
            .unwrap_or_default()
    }

    fn check(&self, e: &IdedExpr, locals: &mut Vec<String>) -> Result<Kind, ConditionCompileError> {
        match &e.expr {
            Expr::Unspecified => Ok(Kind::Dyn),
            Expr::Literal(lit) => Ok(match lit {
                LiteralValue::Boolean(_) => Kind::Bool,
                LiteralValue::Bytes(_) => Kind::Bytes,
                LiteralValue::Double(_) => Kind::Double,
                LiteralValue::Int(_) => Kind::Int,
                LiteralValue::Null => Kind::Null,
                LiteralValue::String(_) => Kind::String,
                LiteralValue::UInt(_) => Kind::UInt,
            }),
            Expr::Ident(name) => {
                if locals.iter().any(|l| l == name) {
                    return Ok(Kind::Dyn);
                }
                match name.as_str() {
                    "tool" => Ok(Kind::String),
                    "now" => Ok(Kind::Timestamp),
                    // Type names, for `type(args.limit) == int`.
                    n if TYPE_NAMES.contains(&n) => Ok(Kind::Type),
                    "args" | "context" | "agent" | "session" | "drift" => Ok(Kind::Map),
                    _ => Err(self.error(
                        e,
                        format!(
                            "undeclared reference to `{name}`; a condition reads {}",
                            VARIABLES.join(", ")
                        ),
                    )),
                }
            }
            Expr::Select(select) => {
                let operand = self.check(&select.operand, locals)?;
                if let Expr::Ident(root) = &select.operand.expr {
                    if !locals.iter().any(|l| l == root) {
                        let fields = match root.as_str() {
                            "agent" => Some(AGENT_FIELDS),
                            "session" => Some(SESSION_FIELDS),
                            "drift" => Some(DRIFT_FIELDS),
                            _ => None,
                        };
                        if let Some(fields) = fields {
                            if !fields.contains(&select.field.as_str()) {
                                return Err(self.error(
                                    e,
                                    format!(
                                        "`{root}` has no field `{}`; it has {}",
                                        select.field,
                                        fields.join(", ")
                                    ),
                                ));
                            }
                            if select.test {
                                return Ok(Kind::Bool);
                            }
                            return Ok(field_kind(root, &select.field));
                        }
                    }
                }
                if !operand.may_be(Kind::Map) {
                    return Err(self.error(e, format!("cannot select a field of {operand}")));
                }
                Ok(if select.test { Kind::Bool } else { Kind::Dyn })
            }
            Expr::List(list) => {
                let mut members = Vec::with_capacity(list.elements.len());
                for element in &list.elements {
                    members.push(self.check(element, locals)?);
                }
                self.member_kinds.borrow_mut().insert(e.id, members);
                // A list of the call's data holds each element whole: a
                // list of grown strings is as large as all of them.
                let over_the_call = reads_beyond(e, &self.constant_locals.borrow());
                if self.cost_rules && list.elements.len() > 1 && over_the_call {
                    let all = list
                        .elements
                        .iter()
                        .map(|x| self.grown(x))
                        .fold(0, u64::saturating_add);
                    self.within_growth(e, all.saturating_mul(self.literal_iterations.get()))?;
                }
                Ok(Kind::List)
            }
            Expr::Map(map) => {
                let mut keys = Vec::with_capacity(map.entries.len());
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        keys.push(self.check(&entry.key, locals)?);
                        self.check(&entry.value, locals)?;
                    }
                }
                self.member_kinds.borrow_mut().insert(e.id, keys);
                Ok(Kind::Map)
            }
            Expr::Struct(_) => Err(self.error(e, "message literals are not supported".into())),
            Expr::Comprehension(c) => {
                // Inside another comprehension's body, a comprehension runs
                // once per outer element: over a part of that element or
                // literals the total stays linear, over other data (the
                // call's arguments again) it is a product of two sizes.
                let enclosing = self.loop_vars.borrow().clone();
                if let Some(own) = enclosing.as_deref().filter(|_| self.cost_rules) {
                    if reads_beyond(&c.iter_range, own) {
                        return Err(self.error(
                            e,
                            "a comprehension (all, exists, exists_one, map, filter) inside \
                             another's body may range only over the outer loop's element or \
                             literals: over other data its cost would grow with the product \
                             of two sizes of the call"
                                .into(),
                        ));
                    }
                }
                self.check(&c.iter_range, locals)?;
                self.check(&c.accu_init, locals)?;
                let pushed = 2 + usize::from(c.iter_var2.is_some());
                locals.push(c.iter_var.clone());
                locals.push(c.accu_var.clone());
                if let Some(v) = &c.iter_var2 {
                    locals.push(v.clone());
                }
                let own = locals[locals.len() - pushed..].to_vec();
                // What the loop's element may have grown to already.
                let element_growth = match &c.iter_range.expr {
                    Expr::List(list) => list
                        .elements
                        .iter()
                        .map(|x| self.grown(x))
                        .max()
                        .unwrap_or(1),
                    _ => self.grown(&c.iter_range),
                };
                let growth_before = self.local_growth.borrow().len();
                {
                    let mut bound = self.local_growth.borrow_mut();
                    bound.push((c.iter_var.clone(), element_growth));
                    if let Some(v) = &c.iter_var2 {
                        bound.push((v.clone(), element_growth));
                    }
                }
                let constant_range = !reads_beyond(&c.iter_range, &self.constant_locals.borrow());
                let constants_before = self.constant_locals.borrow().len();
                let literals_before = self.local_literals.borrow().len();
                let lengths_before = self.local_lengths.borrow().len();
                let iterations_before = self.literal_iterations.get();
                if !constant_range {
                    self.data_loop_runs.set(
                        self.data_loop_runs
                            .get()
                            .saturating_add(iterations_before.max(1)),
                    );
                }
                if constant_range {
                    let visits = match &c.iter_range.expr {
                        Expr::Ident(name) => innermost(&self.local_lengths, name),
                        _ => None,
                    }
                    .unwrap_or_else(|| literal_len_of(&c.iter_range));
                    let runs = iterations_before.saturating_mul(visits);
                    if self.cost_rules && runs > MAX_LITERAL_ITERATIONS {
                        return Err(self.error(
                            e,
                            format!(
                                "a loop over literals here (nested ones multiply) would run its body {runs} \
                                 times per call (at most {MAX_LITERAL_ITERATIONS}): use fewer \
                                 or shorter lists, or one regex alternation"
                            ),
                        ));
                    }
                    let total = self.literal_runs_total.get().saturating_add(runs);
                    self.literal_runs_total.set(total);
                    if self.cost_rules && total > MAX_LITERAL_RUNS_TOTAL {
                        return Err(self.error(
                            e,
                            format!(
                                "the loops over literals of this condition would run their \
                                 bodies {total} times per call in all (at most \
                                 {MAX_LITERAL_RUNS_TOTAL}): use fewer or shorter lists, or one \
                                 regex alternation"
                            ),
                        ));
                    }
                    self.literal_iterations.set(runs);
                    if let Expr::List(list) = &c.iter_range.expr {
                        let longest = list.elements.iter().map(literal_len_of).max().unwrap_or(0);
                        self.local_lengths
                            .borrow_mut()
                            .push((c.iter_var.clone(), longest));
                        let texts = list
                            .elements
                            .iter()
                            .filter_map(|x| match &x.expr {
                                Expr::Literal(LiteralValue::String(t)) => {
                                    Some((t.inner().to_string(), x.id))
                                }
                                _ => None,
                            })
                            .collect();
                        self.local_literals
                            .borrow_mut()
                            .push((c.iter_var.clone(), texts));
                    }
                    let mut constants = self.constant_locals.borrow_mut();
                    constants.push(c.iter_var.clone());
                    constants.extend(c.iter_var2.iter().cloned());
                }
                // A loop over literals runs a bounded number of times: in
                // its body the rules are those of the enclosing loop over
                // the call's data, if any, this loop's variables counted
                // as that loop's own.
                let scope = if constant_range {
                    enclosing.clone().map(|mut vars| {
                        vars.extend(own.iter().cloned());
                        vars
                    })
                } else {
                    Some(own.clone())
                };
                *self.loop_vars.borrow_mut() = scope.clone();
                let result = (|| {
                    self.check(&c.loop_cond, locals)?;
                    self.check(&c.loop_step, locals)?;
                    // A map whose every result carries other data of the
                    // call (a list, a string) hands the next loop over it
                    // a product of two sizes.
                    if let Some(t) = map_transform(&c.loop_step, &c.accu_var) {
                        let scope = scope.as_deref().filter(|_| self.cost_rules);
                        if scope.is_some_and(|scope| reads_beyond(t, scope)) {
                            let kind = self.check(t, locals)?;
                            if !matches!(
                                kind,
                                Kind::Bool | Kind::Int | Kind::UInt | Kind::Double | Kind::Null
                            ) {
                                return Err(self.error(
                                    t,
                                    "a map's result may carry data other than its own element \
                                     only as a number or boolean (convert it: double(…), int(…)): \
                                     each result would hold a copy of that data"
                                        .into(),
                                ));
                            }
                        }
                    }
                    self.check(&c.result, locals)
                })();
                // Maps chained on the call's data multiply its size by each
                // one's growth (`map(x, x + x)` doubles it), as a chain of
                // replacements does.
                let grows = self.cost_rules
                    && !constant_range
                    && map_transform(&c.loop_step, &c.accu_var).is_some();
                if result.is_ok() && grows {
                    self.within_growth(e, self.grown(e).saturating_mul(iterations_before))?;
                }
                *self.loop_vars.borrow_mut() = enclosing;
                self.constant_locals.borrow_mut().truncate(constants_before);
                self.literal_iterations.set(iterations_before);
                self.local_literals.borrow_mut().truncate(literals_before);
                self.local_lengths.borrow_mut().truncate(lengths_before);
                self.local_growth.borrow_mut().truncate(growth_before);
                locals.truncate(locals.len() - pushed);
                result
            }
            Expr::Call(call) => self.check_call(e, call, locals),
        }
    }

    /// The operand rule: a call that pairs its receiver with another text
    /// (a pattern, a needle, a replacement, a separator) costs their
    /// product, so only the receiver may be the call's data; the others
    /// are the author's literals. A literal pattern is compiled here, so a
    /// bad or oversized one is refused when written.
    fn check_operands(
        &self,
        call: &cel::common::ast::CallExpr,
        name: &str,
    ) -> Result<(), ConditionCompileError> {
        let Some(&(_, role)) = PAIRING_CALLS.iter().find(|(n, _)| *n == name) else {
            return Ok(());
        };
        // `matches` reaches here as the global call it is parsed into:
        // the text, then the pattern.
        let skip = usize::from(call.target.is_none() && name == "matches");
        let operands = match name {
            "replace" => 2,
            _ => 1,
        };
        let constants = self.constant_locals.borrow();
        for operand in call.args.iter().skip(skip).take(operands) {
            if reads_beyond(operand, &constants) {
                return Err(self.error_at_start(
                    operand,
                    format!(
                        "`{name}` may take the call's data only as the text it works on, \
                         not as its {role}: write the {role} as a literal (over the call's \
                         data its cost would grow with the product of two sizes of the call)"
                    ),
                ));
            }
            if name == "matches" {
                // Each pattern with the literal that wrote it.
                let patterns: Vec<(String, u64)> = match &operand.expr {
                    Expr::Literal(LiteralValue::String(pattern)) => {
                        vec![(pattern.inner().into(), operand.id)]
                    }
                    // The variable of a loop over a list of patterns.
                    Expr::Ident(local) => {
                        innermost(&self.local_literals, local).unwrap_or_default()
                    }
                    _ => Vec::new(),
                };
                let listed = matches!(operand.expr, Expr::Ident(_));
                for (pattern, written) in patterns {
                    if let Err(why) = regex_match::compile(&pattern) {
                        let why = regex_match::describe(&why);
                        let at = self
                            .program
                            .source_info()
                            .offset_for(written)
                            .map_or(0, |(start, _)| start as usize);
                        return Err(self.error_at(
                            at,
                            if listed {
                                format!("`{pattern}`: {why}")
                            } else {
                                why
                            },
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_call(
        &self,
        e: &IdedExpr,
        call: &cel::common::ast::CallExpr,
        locals: &mut Vec<String>,
    ) -> Result<Kind, ConditionCompileError> {
        let target = match &call.target {
            Some(t) => Some(self.check(t, locals)?),
            None => None,
        };
        let mut args = Vec::with_capacity(call.args.len());
        for a in &call.args {
            args.push(self.check(a, locals)?);
        }
        // `matches` is parsed into the function that caches its patterns.
        let name = match call.func_name.as_str() {
            MATCHES_FN => "matches",
            crate::utc_time::TIMESTAMP_FN => "timestamp",
            crate::linear_search::INDEX_OF_FN => "indexOf",
            crate::linear_search::LAST_INDEX_OF_FN => "lastIndexOf",
            other => other,
        };
        // A whole-number division by a literal zero fails whatever the
        // dividend (a double divides by 0.0 into infinity).
        let by_zero = match (name, call.args.get(1).map(|d| &d.expr)) {
            ("_/_" | "_%_", Some(Expr::Literal(LiteralValue::Int(d)))) => *d.inner() == 0,
            ("_/_" | "_%_", Some(Expr::Literal(LiteralValue::UInt(d)))) => *d.inner() == 0,
            _ => false,
        };
        if by_zero && self.cost_rules {
            return Err(self.error_at_start(
                e,
                "this part of the condition fails on every call: a whole number divided by \
                 zero"
                    .into(),
            ));
        }
        if self.cost_rules {
            if let Some(own) = self.loop_vars.borrow().as_deref() {
                // The variables of loops over literals hold the author's
                // text, not the call's data.
                let own: Vec<String> = own
                    .iter()
                    .chain(self.constant_locals.borrow().iter())
                    .cloned()
                    .collect();
                let beyond: Vec<bool> = call.args.iter().map(|a| reads_beyond(a, &own)).collect();
                // The loop's variables: its element, its result so far.
                let accumulator = own.get(1);
                let accumulates = call
                    .args
                    .first()
                    .is_some_and(|a| matches!(&a.expr, Expr::Ident(v) if Some(v) == accumulator));
                // Joining other data once per element copies it each time;
                // adding numbers is cheap, and `+` with a number on either
                // side adds numbers or fails (the macros' own appends to
                // their result are checked where the loop is).
                let joins = name == "_+_"
                    && !accumulates
                    && beyond.iter().any(|b| *b)
                    && !args.iter().any(|k| k.numeric());
                let compares = COMPARISONS.contains(&name) && beyond.iter().all(|b| *b);
                if joins || compares {
                    return Err(self.error(
                        e,
                        format!(
                            "inside a comprehension's body, `{}` may not {} data of the call \
                             other than the loop's own element: its cost would grow with the \
                             square of the call's size",
                            name.trim_matches('_'),
                            if joins {
                                "join"
                            } else {
                                "compare two pieces of"
                            }
                        ),
                    ));
                }
            }
        }
        // A scan weighs nothing over the call's data as sent (it is
        // linear and fast), but a quarter of each multiple once that data
        // has grown (150 `contains` over a 64-fold string took 3.4 s).
        let scanned = SCANNING_CALLS.contains(&name).then(|| {
            call.target
                .as_deref()
                .or(call.args.first())
                .map_or(0, |text| self.grown(text) / 4)
        });
        let weight = COPYING_CALLS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, w)| *w)
            .or(scanned)
            .filter(|w| *w > 0);
        if let Some(weight) = weight {
            let constants = self.constant_locals.borrow();
            let over_the_call = call
                .target
                .iter()
                .map(|t| &**t)
                .chain(call.args.iter())
                .any(|a| reads_beyond(a, &constants));
            drop(constants);
            if self.cost_rules && over_the_call {
                let work = self
                    .copy_work
                    .get()
                    .saturating_add(weight.saturating_mul(self.literal_iterations.get()));
                self.copy_work.set(work);
                if work > MAX_COPY_WORK {
                    return Err(self.error_at_start(
                        e,
                        format!(
                            "the calls that copy or cut the call's data (split, replace, \
                             lowerAscii, …), or scan it once grown, would do {work} units of \
                             work per call here, \
                             a `split` counting {}, each counted once per run of the loops \
                             over literals around it (at most {MAX_COPY_WORK}): copy or \
                             split once, outside the loop, or use contains/startsWith",
                            COPYING_CALLS[0].1
                        ),
                    ));
                }
            }
        }
        if self.cost_rules && SIZE_BOUND_CALLS.contains(&name) {
            if let Some(own) = self.loop_vars.borrow().as_deref() {
                let target = call.target.as_ref().is_some_and(|t| reads_beyond(t, own));
                let arg = call.args.iter().any(|a| reads_beyond(a, own));
                // A prefix or suffix test compares at most the shorter
                // side: linear when either side is the loop's own.
                let beyond = if matches!(name, "startsWith" | "endsWith") {
                    target && arg
                } else {
                    target || arg
                };
                if beyond {
                    let shown = if name == "@in" { "in" } else { name };
                    return Err(self.error(
                        e,
                        format!(
                            "inside a comprehension's body, `{shown}` may read only the loop's \
                             own element and literals: over other data its cost would grow with \
                             the square of the call's size"
                        ),
                    ));
                }
            }
        }
        if self.cost_rules {
            self.check_operands(call, name)?;
            // `+` with a number on either side adds numbers (or fails);
            // the other calls take counts beside the text they grow.
            let adds_numbers = name == "_+_" && args.iter().any(|k| k.numeric());
            // Built only of the author's literals and the variables of
            // loops over them: bounded by the condition, not the call.
            let from_literals = {
                let constants = self.constant_locals.borrow();
                call.target
                    .iter()
                    .map(|t| &**t)
                    .chain(call.args.iter())
                    .all(|a| !reads_beyond(a, &constants))
            };
            // A macro's own step (`@result + [x]`) grows its result by
            // one element: the loop's growth is counted where it is.
            let macro_step = name == "_+_"
                && call
                    .args
                    .first()
                    .is_some_and(|a| matches!(&a.expr, Expr::Ident(v) if v.starts_with('@')));
            if GROWING_CALLS.contains(&name)
                && !adds_numbers
                && !macro_step
                && !args.iter().all(|k| k.numeric())
            {
                if !from_literals {
                    // Built once per run of the loops over literals around it.
                    self.within_growth(
                        e,
                        self.grown(e).saturating_mul(self.literal_iterations.get()),
                    )?;
                } else {
                    // The author's own text, multiplied: replacements of
                    // replacements can still reach gigabytes.
                    let factor = self.grown(e);
                    if factor > MAX_LITERAL_GROWTH {
                        return Err(self.error(
                            e,
                            format!(
                                "this expression could build a string or list {factor} times \
                                 the condition's own text (at most {MAX_LITERAL_GROWTH}): \
                                 shorten its replacements and separators, or chain fewer of them"
                            ),
                        ));
                    }
                }
            }
        }
        let mismatch = |kinds: &[Kind]| {
            let shown: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
            self.error(
                e,
                format!(
                    "no operator `{}` for ({})",
                    name.trim_matches('_').replace("_", " "),
                    shown.join(", ")
                ),
            )
        };
        match name {
            "_&&_" | "_||_" | "!_" => {
                if args.iter().any(|k| !k.may_be(Kind::Bool)) {
                    return Err(mismatch(&args));
                }
                Ok(Kind::Bool)
            }
            "@not_strictly_false" => Ok(Kind::Bool),
            "_==_" | "_!=_" => {
                if let [a, b] = args[..] {
                    if !comparable_by_equality(a, b) {
                        return Err(mismatch(&args));
                    }
                }
                Ok(Kind::Bool)
            }
            "_<_" | "_<=_" | "_>_" | "_>=_" => {
                if let [a, b] = args[..] {
                    let comparable = a.may_be(b) || (a.numeric() && b.numeric());
                    // CEL orders booleans too (false < true).
                    let orderable = |k: Kind| !matches!(k, Kind::Null | Kind::List | Kind::Map);
                    if !comparable || !orderable(a) || !orderable(b) {
                        return Err(mismatch(&args));
                    }
                }
                Ok(Kind::Bool)
            }
            "_+_" | "_-_" | "_*_" | "_/_" | "_%_" => {
                if let [a, b] = args[..] {
                    // Time arithmetic: a timestamp moves by a duration, and
                    // two timestamps are a duration apart.
                    use Kind::{Duration, Timestamp};
                    match (name, a, b) {
                        ("_+_", Timestamp, Duration) | ("_+_", Duration, Timestamp) => {
                            return Ok(Timestamp)
                        }
                        ("_-_", Timestamp, Duration) => return Ok(Timestamp),
                        ("_-_", Timestamp, Timestamp) => return Ok(Duration),
                        // With a side unknown, a time or a length of it.
                        ("_+_" | "_-_", Timestamp | Duration, Kind::Dyn)
                        | ("_+_" | "_-_", Kind::Dyn, Timestamp | Duration) => return Ok(Kind::Dyn),
                        _ => {}
                    }
                    let fits = match name {
                        // Two times do not add (a stored condition that
                        // does keeps loading, and fails at run time).
                        "_+_" => {
                            a.may_be(b)
                                && !matches!(a, Kind::Bool | Kind::Null | Kind::Map)
                                && !(self.cost_rules && a == Timestamp && b == Timestamp)
                        }
                        "_-_" => {
                            a.may_be(b) && (a.numeric() || a == Kind::Dyn || a == Kind::Duration)
                        }
                        _ => a.may_be(b) && (a.numeric() || a == Kind::Dyn),
                    };
                    if !fits {
                        return Err(mismatch(&args));
                    }
                    return Ok(if a == Kind::Dyn { b } else { a });
                }
                Ok(Kind::Dyn)
            }
            "-_" => {
                // The engine cannot negate a duration (stored conditions
                // that do keep loading, and fail at run time as before).
                let negatable = |k: Kind| {
                    k.numeric() || k == Kind::Dyn || (k == Kind::Duration && !self.cost_rules)
                };
                if args.iter().any(|k| !negatable(*k)) {
                    return Err(mismatch(&args));
                }
                Ok(args.first().copied().unwrap_or(Kind::Dyn))
            }
            "_?_:_" => {
                if let [c, a, b] = args[..] {
                    if !c.may_be(Kind::Bool) {
                        return Err(mismatch(&args));
                    }
                    return Ok(if a == b { a } else { Kind::Dyn });
                }
                Ok(Kind::Dyn)
            }
            "@in" => {
                if let [item, container] = args[..] {
                    if !(container.may_be(Kind::List) || container == Kind::Map) {
                        return Err(mismatch(&args));
                    }
                    // `in` compares as `==` does: a literal member of a kind
                    // the item can never equal fails every call that reaches
                    // it (`tool in [1, 2]`). Checked for new conditions only.
                    let members: Vec<Kind> = call
                        .args
                        .get(1)
                        .map(|c| self.members(c))
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|k| *k != Kind::Dyn)
                        .collect();
                    // An item of unknown kind fails on the members of
                    // every kind but its own: members of two kinds that
                    // never compare fail whatever the item is.
                    let item = match item {
                        Kind::Dyn => members.first().copied().unwrap_or(Kind::Dyn),
                        known => known,
                    };
                    let unfit = members
                        .into_iter()
                        .find(|k| item != Kind::Dyn && !comparable_by_equality(item, *k));
                    if let (true, Some(member)) = (self.cost_rules, unfit) {
                        return Err(self.error(
                            e,
                            format!(
                                "`in` compares {item} with the {member} in this literal, which \
                                 fails whenever the call gets that far: write the members as \
                                 {item}s"
                            ),
                        ));
                    }
                }
                Ok(Kind::Bool)
            }
            "_[_]" | "_[?_]" => {
                if let [container, _] = args[..] {
                    if !(container.may_be(Kind::List) || container == Kind::Map) {
                        return Err(mismatch(&args));
                    }
                }
                Ok(Kind::Dyn)
            }
            _ => {
                if !FUNCTIONS.contains(&name) {
                    return Err(
                        self.error_at(self.name_start(e), format!("undeclared function `{name}`"))
                    );
                }
                // Like the cost rules, these came after some policies were
                // stored: a stored condition that fails them keeps loading
                // (and keeps failing its calls as it did).
                if self.cost_rules {
                    if let Some(why) = signature::mismatch(name, target, &args)
                        .or_else(|| signature::bad_literal(name, call))
                    {
                        return Err(self.error(e, why));
                    }
                }
                Ok(match name {
                    "contains" | "startsWith" | "endsWith" | "matches" | "bool" | "all"
                    | "exists" | "exists_one" | "has" => {
                        if let Some(t) = target {
                            if matches!(name, "contains" | "startsWith" | "endsWith" | "matches")
                                && !t.may_be(Kind::String)
                            {
                                return Err(
                                    self.error(e, format!("`{name}` applies to a string, not {t}"))
                                );
                            }
                        }
                        Kind::Bool
                    }
                    "size" | "int" | "getFullYear" | "getMonth" | "getDate" | "getDayOfMonth"
                    | "getDayOfYear" | "getDayOfWeek" | "getHours" | "getMinutes"
                    | "getSeconds" | "getMilliseconds" | "indexOf" | "lastIndexOf" => Kind::Int,
                    "string" | "lowerAscii" | "upperAscii" | "replace" | "substring" | "trim"
                    | "charAt" | "join" | "format" => Kind::String,
                    "double" => Kind::Double,
                    "uint" => Kind::UInt,
                    "timestamp" => Kind::Timestamp,
                    "duration" => Kind::Duration,
                    "bytes" => Kind::Bytes,
                    "type" => Kind::Type,
                    "split" | "map" | "filter" => Kind::List,
                    _ => Kind::Dyn,
                })
            }
        }
    }
}

fn field_kind(root: &str, field: &str) -> Kind {
    match (root, field) {
        ("agent", "id" | "name" | "status") => Kind::String,
        ("agent", "tags") | ("session", "tools") => Kind::List,
        ("session", "calls") => Kind::Int,
        ("drift", "learning") => Kind::Bool,
        ("drift", _) => Kind::Double,
        // Optional text: a string or null.
        _ => Kind::Dyn,
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Names of the variables an expression reads, for documentation and tests.
pub fn variables_read(condition: &CelCondition) -> HashSet<String> {
    condition
        .program
        .references()
        .variables()
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// Whether `==` can compare values of these kinds (numbers of every kind
/// compare by value; null with anything).
fn comparable_by_equality(a: Kind, b: Kind) -> bool {
    a.may_be(b) || (a.numeric() && b.numeric()) || a == Kind::Null || b == Kind::Null
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn says_which_inputs_it_reads() {
        let c = CelCondition::compile("'crm.read' in session.tools && args.amount > 5").unwrap();
        assert!(c.reads("session") && c.reads("args"));
        assert!(!c.reads("now") && !c.reads("context") && !c.reads("drift"));
        let c = CelCondition::compile("args.items.exists(i, i.price > 0)").unwrap();
        assert!(c.reads("args") && !c.reads("session"));
        let c = CelCondition::compile("now.getHours() > 18 || has(context.x)").unwrap();
        assert!(c.reads("now") && c.reads("context") && !c.reads("args"));
    }

    #[test]
    fn hidden_characters_are_refused_where_they_stand() {
        for (source, line, column) in [
            ("args.user == 'admin\u{202e}' && true", 1, 20),
            ("args.a == 1 &&\n args.b == 'x\u{200b}y'", 2, 14),
            ("args.a == '\u{1b}[2J'", 1, 12),
            ("true //\rargs.a > 5", 1, 8),
            ("args.a == '\u{2800}'", 1, 12),
        ] {
            let e = CelCondition::compile(source).unwrap_err();
            assert_eq!(
                (e.line, e.column),
                (line, column),
                "{source:?}: {}",
                e.message
            );
            assert!(e.message.contains("invisible"), "{}", e.message);
        }
        // Spaces other than the plain one and decomposed letters, which
        // no name holds, likewise.
        for (source, column) in [
            ("tool == 'send\u{a0}email'", 14),
            ("'p\u{3000}ci' in agent.tags", 3),
            ("tool == 'sende\u{301}mail'", 15),
        ] {
            let e = CelCondition::compile(source).unwrap_err();
            assert_eq!((e.line, e.column), (1, column), "{source:?}: {}", e.message);
            assert!(e.message.contains("write it as an escape"), "{}", e.message);
        }
        assert!(CelCondition::compile("tool == 'send\\u00a0email'").is_ok());
        // Escapes name them; tabs and line breaks are layout.
        assert!(holds("'\\u200b' != 'x' &&\r\n\targs.amount > 1"));
        // A stored condition keeps loading.
        assert!(CelCondition::compile_stored("args.user == 'admin\u{202e}'").is_ok());
    }

    fn input() -> ConditionInput {
        ConditionInput::new(CallFacts {
            tool: "payments.transfer".into(),
            args: json!({"amount": 5000, "currency": "EUR", "to": {"iban": "DE00"}}),
            agent_id: "agt_1".into(),
            agent_name: "billing-bot".into(),
            agent_status: "active".into(),
            agent_tags: vec!["finance".into()],
            session_tools: vec!["crm.lookup".into()],
            previous_tool: Some("crm.lookup".into()),
            drift: DriftScore {
                score: 0.7,
                ..Default::default()
            },
            now_ms: 1_700_000_000_000,
            ..Default::default()
        })
    }

    fn holds(src: &str) -> bool {
        CelCondition::compile(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .holds(&input())
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn evaluates_over_the_call_facts() {
        assert!(holds("args.amount > 1000 && args.currency == 'EUR'"));
        assert!(holds("'finance' in agent.tags"));
        assert!(holds("drift.score >= 0.5 && !drift.learning"));
        assert!(holds(
            "session.previous_tool == 'crm.lookup' && session.calls == 1"
        ));
        assert!(holds("tool.startsWith('payments.') && has(args.to.iban)"));
        assert!(holds("now.getHours() >= 0"));
        assert!(!holds("args.amount < 10"));
        assert!(holds("args.to.iban.lowerAscii() == 'de00'"));
        assert!(holds("type(args.amount) == int && type(tool) == string"));
        assert!(holds("type(args.to) == map && type(agent.tags) == list"));
        assert!(!holds("type(args.amount) == string"));
    }

    #[test]
    fn refuses_with_line_and_column() {
        let e = CelCondition::compile("args.amount >").unwrap_err();
        assert_eq!((e.line, e.column), (1, 14), "{e}");
        let e = CelCondition::compile(") tool").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1), "{e}");
        let e = CelCondition::compile("tool == 'a' )").unwrap_err();
        assert_eq!((e.line, e.column), (1, 13), "{e}");
        let e = CelCondition::compile("tool == 'a' &&\n  )").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3), "{e}");
        let deep = format!("{}true{}", "(".repeat(500), ")".repeat(500));
        let e = CelCondition::compile(&deep).unwrap_err();
        assert_eq!((e.line, e.column), (1, 65), "{e}");
        assert!(e.message.contains("64 brackets"), "{e}");
        assert!(CelCondition::compile(
            "tool == '((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((('"
        )
        .is_ok());
        let e = CelCondition::compile("amount > 5").unwrap_err();
        assert!(
            e.message.contains("undeclared reference to `amount`"),
            "{e}"
        );
        assert_eq!((e.line, e.column), (1, 1));
        let e = CelCondition::compile("args.x == 1 && agent.nmae == 'a'").unwrap_err();
        assert!(e.message.contains("no field `nmae`"), "{e}");
        assert_eq!(e.column, 21);
        let e = CelCondition::compile("tool > 5").unwrap_err();
        assert!(e.message.contains("no operator"), "{e}");
        let e = CelCondition::compile("1 + 2").unwrap_err();
        assert!(e.message.contains("boolean"), "{e}");
        let e = CelCondition::compile("frobnicate(args)").unwrap_err();
        assert!(e.message.contains("undeclared function"), "{e}");
        assert_eq!((e.line, e.column), (1, 1), "{e}");
        let e = CelCondition::compile("args.x == 1 ||\n   nosuch(args)").unwrap_err();
        assert_eq!((e.line, e.column), (2, 4), "{e}");
        let e = CelCondition::compile("  foo  (1)").unwrap_err();
        assert_eq!(e.column, 3, "{e}");
        let e = CelCondition::compile("foo\n(1)").unwrap_err();
        assert_eq!((e.line, e.column), (1, 1), "{e}");
        let e = CelCondition::compile("tool.frob()").unwrap_err();
        assert!(e.message.contains("undeclared function"), "{e}");
        assert_eq!(e.column, 6, "{e}");
        assert!(CelCondition::compile("args.items.exists(i, i.price > 10)").is_ok());
        // `in` a literal holding a member the item can never equal.
        for (text, column) in [
            ("tool in [1, 2]", 6),
            ("agent.status in ['active', 1]", 14),
            ("drift.score in ['a']", 13),
            ("tool in {1: 'a'}", 6),
            ("tool in ['zz.bad', ['zz.worse']]", 6),
            ("tool in ['zz.bad', duration('1h')]", 6),
            ("tool in [int('1')]", 6),
            ("tool in ['zz.bad'] + [1]", 6),
            ("tool in [{'a': 1}]", 6),
            ("tool in ['zz', bytes('x')]", 6),
            ("agent.external_id in ['x', 1]", 19),
            ("args.kind in ['a', true]", 11),
            ("args.x in [1, 'a']", 8),
        ] {
            let e = CelCondition::compile(text).unwrap_err();
            assert!(e.message.contains("`in` compares"), "{text}: {e}");
            assert_eq!(e.column, column, "{text}: {e}");
        }
        for text in [
            "tool in ['a', 'b']",
            "args.n in [1, 2.5, 3u]",
            "drift.score in [1, 0.5]",
            "tool in args.allowed",
            "tool in [args.name, 'b']",
        ] {
            assert!(CelCondition::compile(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn whole_json_numbers_are_ints_so_arithmetic_works() {
        // args.amount is 5000.
        assert!(holds("args.amount % 2 == 0"));
        assert!(holds("args.amount * 2 > 9000"));
        assert!(holds("args.amount + 1 == 5001 && args.amount - 1 == 4999"));
        assert!(holds("-args.amount < 0"));
        assert!(holds("double(args.amount) * 1.5 == 7500.0"));
        let c = CelCondition::compile("args.n > 1.0 && args.big > 1").unwrap();
        let mut facts = input().into_facts();
        facts.args = json!({"n": 1.5, "big": u64::MAX});
        assert_eq!(c.holds(&ConditionInput::new(facts)), Ok(true));
    }

    #[test]
    fn a_loop_body_costs_at_most_its_own_element() {
        // Each of these would cost the product of two sizes of the call.
        for (source, column) in [
            ("args.items.all(a, args.items.all(b, a == b))", 33),
            ("args.items.all(a, a in args.allowed)", 21),
            ("args.items.exists(a, args.text.contains(a))", 40),
            (
                "args.items.filter(a, a.name.matches(args.pattern)).size() > 0",
                36,
            ),
        ] {
            let e = CelCondition::compile(source).unwrap_err();
            assert_eq!((e.line, e.column), (1, column), "{source}: {e}");
            assert!(
                e.message.contains("product") || e.message.contains("square"),
                "{e}"
            );
        }
        // Over the element itself, or literals, the cost is linear.
        for source in [
            "args.items.all(a, a.currency in ['EUR', 'USD'])",
            "args.items.exists(a, 'admin' in a.roles && a.name.startsWith('x'))",
            "args.items.map(a, a.price).exists(p, p > 100)",
            "args.items.all(a, a.amount < args.limit)",
            "'x' in args.allowed",
            // A nested loop over a part of the outer element, or literals.
            "args.items.exists(i, i.tags.exists(t, t == 'pii'))",
            "args.to.exists(r, ['a.com', 'b.com'].exists(d, r.endsWith(d)))",
            // A prefix or suffix test costs at most the element's length.
            "args.paths.exists(p, p.startsWith(context.root))",
            "args.paths.all(p, context.suffix.endsWith(p))",
        ] {
            assert!(CelCondition::compile(source).is_ok(), "{source}");
        }
        // A nested loop over the call's data again, or a prefix test with
        // neither side the loop's own, is still a product.
        for source in [
            "args.items.exists(i, args.tags.exists(t, t == i))",
            "args.items.exists(i, context.a.startsWith(context.b))",
            "args.items.exists(i, i.tags.exists(t, args.text.contains(t)))",
            // A map whose results carry other data, walked again.
            "args.a.map(i, args.b).exists(l, l.exists(t, t == 1))",
            "args.a.map(i, args.s).exists(l, l.matches('x+$'))",
            // Copies of other data, or two pieces of it compared, per element.
            "args.l.map(x, args.s + args.s).size() > 0",
            "args.l.exists(x, x + args.s == 'a')",
            "args.l.exists(x, args.a == args.b)",
            "args.l.all(x, args.s.lowerAscii() != '')",
            "args.l.all(x, size(args.s) > 0)",
            // A loop over literals inside one over the call's data keeps
            // the outer loop's rules.
            "args.l.exists(x, ['a', 'b'].exists(p, args.s.contains(p)))",
            "args.l.exists(x, ['a', 'b'].map(p, args.s).size() > 0)",
        ] {
            assert!(CelCondition::compile(source).is_err(), "{source}");
        }
        // Numbers and booleans from other data, and the element's own parts.
        for source in [
            "args.items.map(a, double(a.price) * double(args.rate)).exists(p, p > 100.0)",
            "args.items.map(a, a.tags).exists(t, t.exists(x, x == 'pii'))",
            "args.items.filter(a, a.price > args.limit).size() > 0",
            "args.items.map(a, a.name + '-x').exists(n, n == args.wanted)",
            "args.items.all(a, a.amount + 1 < args.limit)",
        ] {
            assert!(CelCondition::compile(source).is_ok(), "{source}");
        }
    }

    #[test]
    fn the_calls_data_is_only_ever_the_text_a_pairing_call_works_on() {
        // A pattern, needle, replacement or separator from the call would
        // cost the product of two of its sizes (or an agent's regex).
        for (source, column) in [
            ("args.s.matches(args.p)", 16),
            ("matches(args.s, args.p)", 17),
            ("args.s.replace(args.a, 'b') == ''", 16),
            ("args.s.replace('a', args.b) == ''", 21),
            ("'a'.replace('a', args.s) == ''", 18),
            ("args.s.split('').join(args.s) == ''", 23),
            ("args.s.indexOf(args.t) > 0", 16),
            ("args.s.lastIndexOf(args.t) > 0", 20),
            ("args.l.exists(x, x.matches(x))", 28),
            ("args.l.exists(x, x.replace('a', x) == '')", 33),
        ] {
            let e = CelCondition::compile(source).unwrap_err();
            assert_eq!((e.line, e.column), (1, column), "{source}: {e}");
            assert!(e.message.contains("product"), "{source}: {e}");
        }
        // Literals, and loop variables over literals, are the author's.
        for source in [
            r"args.s.matches('^rm\\s+-rf')",
            // Realistic patterns stay well within the program bound.
            r"args.email.matches(r'^[\w.+-]+@[\w-]+\.[\w.]+$')",
            r"args.text.matches(r'(?i)\b(password|secret|api[_-]?key|token)\b\s*[:=]')",
            r"args.text.matches(r'\b(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14})\b')",
            r"args.ssn.matches(r'^\d{3}-\d{2}-\d{4}$')",
            "matches(args.s, 'a+')",
            "args.s.replace('a', 'bb').size() > 2",
            "args.l.join(', ') == 'a, b'",
            "args.s.indexOf('x') > 0",
            "['^a', 'b$'].exists(p, args.s.matches(p))",
            "['rm', 'sudo'].exists(w, args.cmd.contains(w))",
            "args.l.exists(x, ['a', 'b'].exists(p, x.matches(p)))",
            "args.s.contains(args.t) && args.s.startsWith(args.t)",
        ] {
            assert!(CelCondition::compile(source).is_ok(), "{source}");
        }
    }

    #[test]
    fn a_literal_pattern_is_compiled_when_written() {
        let e = CelCondition::compile("args.s.matches('(foo')").unwrap_err();
        assert_eq!((e.line, e.column), (1, 16), "{e}");
        assert!(
            e.message.contains("not a valid regex: unclosed group"),
            "{e}"
        );
        assert!(!e.message.contains('\n'), "{e}");
        let e = CelCondition::compile("args.s.matches('(?:a|aa){0,3000}b')").unwrap_err();
        assert!(e.message.contains("compiles to a program over"), "{e}");
        // A Unicode class repeated is large; the message names the way out.
        if let Err(e) = CelCondition::compile(r"args.s.matches('\\w{8}')") {
            assert!(e.message.contains("(?-u:"), "{e}");
        }
        assert!(CelCondition::compile(r"args.s.matches('(?-u:\\w){8}')").is_ok());
    }

    #[test]
    fn patterns_listed_for_a_loop_are_compiled_when_written() {
        // Refused where the bad pattern is written, in the list.
        for (source, column) in [
            ("['[a-', 'b'].exists(p, args.cmd.matches(p))", 2),
            (
                "['x', '(?:a|aa){0,3000}b'].exists(p, args.cmd.matches(p))",
                7,
            ),
        ] {
            let e = CelCondition::compile(source).unwrap_err();
            assert!(
                e.message.contains("regex") || e.message.contains("program"),
                "{e}"
            );
            assert_eq!((e.line, e.column), (1, column), "{source}: {e}");
        }
    }

    #[test]
    fn loops_over_literals_run_a_bounded_number_of_times() {
        let ten = "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]";
        let two_deep = format!("{ten}.exists(a, {ten}.exists(b, tool == 'q'))");
        assert!(CelCondition::compile(&two_deep).is_ok(), "{two_deep}");
        let three_deep = format!("{ten}.exists(a, {ten}.exists(b, {ten}.exists(c, tool == 'q')))");
        let e = CelCondition::compile(&three_deep).unwrap_err();
        assert!(e.message.contains("1000 times"), "{e}");
        // Loops one after another add up.
        let side_by_side = [two_deep.as_str(); 3].join(" || ");
        let e = CelCondition::compile(&side_by_side).unwrap_err();
        assert!(e.message.contains("in all"), "{e}");
        // What a body builds counts once per run.
        let grown = "args.s.replace('a', 'aa').replace('a', 'aa').replace('a', 'aa')\
                     .replace('a', 'aa').replace('a', 'aa').replace('a', 'aa')";
        assert!(CelCondition::compile(&format!("{grown} != ''")).is_ok());
        let e =
            CelCondition::compile(&format!("['q', 'r', 's'].exists(x, {grown} == x)")).unwrap_err();
        assert!(e.message.contains("times the size"), "{e}");
    }

    #[test]
    fn built_strings_stay_within_a_bounded_multiple_of_the_call() {
        for source in [
            // An empty search text inserts the replacement at every character.
            "args.s.replace('', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa') != ''",
            // Each doubling replacement doubles what the next one gets.
            "args.s.replace('a', 'aa').replace('a', 'aa').replace('a', 'aa').replace('a', 'aa').replace('a', 'aa').replace('a', 'aa').replace('a', 'aa') != ''",
            "args.s.split('').join('--------------------------------------------------------------------------') != ''",
        ] {
            let e = CelCondition::compile(source).unwrap_err();
            assert!(e.message.contains("times the size"), "{source}: {e}");
        }
        // Maps chained on the call's data multiply its size too: seven
        // doublings are refused, at the map that passes the bound.
        let doubling = |n: usize| {
            format!(
                "args.l{}.exists(y, y.size() == 0)",
                ".map(x, x + x)".repeat(n)
            )
        };
        let e = CelCondition::compile(&doubling(40)).unwrap_err();
        assert!(e.message.contains("128 times the size"), "{e}");
        assert!(CelCondition::compile(&doubling(7)).is_err());
        assert!(CelCondition::compile(&doubling(6)).is_ok());
        assert!(CelCondition::compile("args.l.map(x, [x, x]).map(y, [y, y]).size() > 0").is_ok());
        // A literal appended to every element counts once per element.
        let appended = format!("args.l.map(x, x + '{}').size() == 0", "a".repeat(3_000));
        let e = CelCondition::compile(&appended).unwrap_err();
        assert!(e.message.contains("times the size"), "{e}");
        assert!(CelCondition::compile("args.l.map(x, x + ', ').size() == 0").is_ok());
        // A loop over a list literal keeps its element's growth, and a
        // list of grown strings is as large as all of them.
        let r = format!("'{}'", "ab".repeat(64));
        for source in [
            format!("[args.s.replace('ab', {r})].exists(x, x.replace('ab', {r}).size() == 0)"),
            format!("[args.s.replace('ab', {r})].exists(x, (x + x + x + x).size() == 0)"),
            format!(
                "[{}].exists(x, x.contains('bb'))",
                vec![format!("args.s.replace('ab', {r})"); 16].join(", ")
            ),
        ] {
            let e = CelCondition::compile(&source).unwrap_err();
            assert!(e.message.contains("times the size"), "{source}: {e}");
        }
        assert!(CelCondition::compile("[args.a, args.b].exists(x, x.lowerAscii() == 'y')").is_ok());
        for source in [
            "args.s.replace(\"'\", \"\\\\'\").size() < 100",
            "args.s.replace('a', 'aa').replace('b', 'bb') != ''",
            "args.a + args.b + args.c == 'x'",
            "args.l.join(' OR ') != ''",
        ] {
            assert!(CelCondition::compile(source).is_ok(), "{source}");
        }
    }

    #[test]
    fn literals_multiplied_by_replacements_are_bounded() {
        let (a, b, c) = ("a".repeat(1_300), "b".repeat(1_300), "c".repeat(1_300));
        let twice = format!("'{a}'.replace('a', '{b}').replace('b', '{c}') == tool");
        let e = CelCondition::compile(&twice).unwrap_err();
        assert!(e.message.contains("condition's own text"), "{e}");
        let once = format!("'{a}'.replace('a', '{b}') != tool");
        assert!(CelCondition::compile(&once).is_ok());
    }

    #[test]
    fn copying_the_calls_data_is_bounded_in_all() {
        let hundred = (0..100)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let split_in_loop = format!("[{hundred}].exists(i, size(args.s.split('')) == i)");
        let e = CelCondition::compile(&split_in_loop).unwrap_err();
        assert!(e.message.contains("copy or cut"), "{e}");
        let many_splits = vec!["size(args.s.split('')) == 0"; 20].join(" || ");
        assert!(CelCondition::compile(&many_splits).is_err());
        // A keyword list over one copy, and a few splits, stay accepted.
        let words = (0..100)
            .map(|i| format!("'w{i}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let keywords = format!("[{words}].exists(w, args.s.lowerAscii().contains(w))");
        assert!(CelCondition::compile(&keywords).is_ok(), "{keywords}");
        let few = ["size(args.s.split(',')) > 3"; 10].join(" || ");
        assert!(CelCondition::compile(&few).is_ok());
        // Splitting the author's own text costs nothing of the call.
        let own = format!("[{words}].exists(w, w.split('').size() > 1)");
        assert!(CelCondition::compile(&own).is_ok());
        // Scans are free over the call as sent, not over what grew of it.
        let scans = vec!["args.s.contains('aa')"; 150].join(" || ");
        assert!(CelCondition::compile(&scans).is_ok());
        let r = format!("'{}'", "ab".repeat(64));
        let grown = format!(
            "[args.s.replace('ab', {r})].exists(x, {})",
            vec!["x.contains('aa')"; 40].join(" || ")
        );
        let e = CelCondition::compile(&grown).unwrap_err();
        assert!(e.message.contains("scan it once grown"), "{e}");
    }

    #[test]
    fn loops_over_the_calls_data_take_a_bounded_number_of_elements() {
        let c = CelCondition::compile("args.l.exists(x, x == 'kw')").unwrap();
        let with = |n: usize| {
            let mut facts = input().into_facts();
            facts.args = json!({"l": vec!["a"; n]});
            c.holds(&ConditionInput::new(facts))
        };
        assert_eq!(with(MAX_LOOP_ELEMENTS), Ok(false));
        let e = with(MAX_LOOP_ELEMENTS + 1).unwrap_err();
        assert!(e.0.contains("at most 10000"), "{e:?}");
        // Many loops over many lists, each list within the bound: their
        // work together is bounded (it took 15 s per call over 50 lists of
        // 10,000 numbers).
        let many = vec!["args.ll.exists(i, i.exists(x, x == 7))"; 90].join(" || ");
        let many = CelCondition::compile(&many).unwrap();
        let with_lists = |lists: usize, each: usize| {
            let mut facts = input().into_facts();
            facts.args = json!({"ll": vec![vec![0; each]; lists]});
            many.holds(&ConditionInput::new(facts))
        };
        assert_eq!(with_lists(5, 100), Ok(false));
        let e = with_lists(50, 10_000).unwrap_err();
        assert!(e.0.contains("180 loops over data"), "{e:?}");
        // A loop inside a loop over literals starts once per literal.
        let keywords: Vec<String> = (0..100).map(|i| format!("'kw{i}'")).collect();
        let nested = CelCondition::compile(&format!(
            "[{}].exists(k, args.items.exists(i, i.tags.exists(t, t == k)))",
            keywords.join(", ")
        ))
        .unwrap();
        assert_eq!(nested.data_loop_runs, 200);
        // The conditions one call meets share a bound: two within their
        // own bound run, the third fails, the first again on another call.
        // (Each is reckoned by its loops and the call's elements, whether
        // or not a loop stops at its first element, as these do.)
        let near = vec!["args.l.exists(x, x == 0)"; 99].join(" || ");
        let near = CelCondition::compile(&near).unwrap();
        let mut facts = input().into_facts();
        facts.args = json!({"l": vec![0; 9_900]});
        let call = ConditionInput::new(facts.clone());
        assert_eq!(near.holds(&call), Ok(true));
        assert_eq!(near.holds(&call), Ok(true));
        let e = near.holds(&call).unwrap_err();
        assert!(e.0.contains("past 2000000 times in all"), "{e:?}");
        assert_eq!(near.holds(&ConditionInput::new(facts.clone())), Ok(true));
        // And a time: once the call's conditions have taken it, the rest
        // fail without running.
        let spent = ConditionInput::new(facts);
        spent.spend_evaluation_time();
        let plain = CelCondition::compile("args.amount > 5").unwrap();
        let e = plain.holds(&spent).unwrap_err();
        assert!(e.0.contains("took their 500 ms"), "{e:?}");
        // A condition without such a loop reads any size.
        let plain = CelCondition::compile("size(args.l) > 3").unwrap();
        let mut facts = input().into_facts();
        facts.args = json!({"l": vec!["a"; 50_000]});
        assert_eq!(plain.holds(&ConditionInput::new(facts)), Ok(true));
    }

    #[test]
    fn a_long_chain_of_operators_or_calls_is_refused_before_it_overflows_a_stack() {
        let deep = [
            format!("{} > 0", vec!["1"; 1300].join("+")),
            format!("{}false", "tool=='a' ? true : ".repeat(190)),
            format!("args.a{} == 1", "[0]".repeat(1300)),
            format!("tool{} == 'a'", ".lowerAscii()".repeat(300)),
            format!("args{} == 1", ".a".repeat(1300)),
        ];
        for source in deep {
            for compile in [CelCondition::compile, CelCondition::compile_stored] {
                let e = std::thread::Builder::new()
                    .stack_size(2 << 20)
                    .spawn({
                        let source = source.clone();
                        move || compile(&source).map(|_| ()).unwrap_err()
                    })
                    .unwrap()
                    .join()
                    .expect("no overflow");
                assert!(e.message.contains("deep"), "{e}");
                assert!(e.column > 1, "names where: {e}");
            }
        }
        // A chain within the bound checks and evaluates on a 2 MiB stack
        // (`||` and `&&` chains are balanced by the parser).
        let source = format!("{} == 60", vec!["args.n"; 60].join(" + "));
        let met = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let c = CelCondition::compile(&source).unwrap();
                let mut facts = input().into_facts();
                facts.args = json!({"n": 1});
                c.holds(&ConditionInput::new(facts))
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(met, Ok(true));
    }

    #[test]
    fn a_stored_condition_loads_without_the_cost_rules() {
        // Stored before the cost rules: it must keep enforcing.
        let source = "args.items.exists(a, args.text.contains(a))";
        assert!(CelCondition::compile(source).is_err());
        let c = CelCondition::compile_stored(source).unwrap();
        let mut facts = input().into_facts();
        facts.args = json!({"items": ["zz", "b"], "text": "abc"});
        assert_eq!(c.holds(&ConditionInput::new(facts)), Ok(true));
        // Every other check still applies to a stored condition.
        assert!(CelCondition::compile_stored("args.x +").is_err());
        assert!(CelCondition::compile_stored("frobnicate(args)").is_err());
    }

    #[test]
    fn an_error_at_run_time_is_reported_not_a_panic() {
        let c = CelCondition::compile("args.missing > 3").unwrap();
        assert!(c.holds(&input()).is_err());
    }

    #[test]
    fn literals_that_fail_on_every_call_are_refused_where_they_are() {
        for (source, column, reason) in [
            ("args.n > int('abc')", 10, "not a whole number"),
            ("args.n > 1 / 0", 10, "divid"),
            ("args.n > 0 || 1 % 0 == 1", 15, "divid"),
            ("tool in {'a': 1, 'a': 2}", 9, ""),
            ("[1, 2][5] == args.n", 1, ""),
            ("{'a': 1}.b == args.n", 1, ""),
            ("args.n > 0 && [1, 2].all(x, x / 0 == 1)", 29, "divid"),
            ("args.x / 0 > 1", 1, "divided by zero"),
            ("args.x % 0u > 1", 1, "divided by zero"),
            ("args.n > 0 && ['a'].exists(x, x > 5)", 15, ""),
            ("args.n > 0 && [1.5, 2.5].exists(y, y + 1 > 2)", 15, ""),
            ("args.n > 0 && [1, 2].map(x, x * 1.5).size() > 0", 15, ""),
            ("now.getHours('Mars/Olympus') > 1", 1, "mars/olympus"),
            ("now.getDayOfWeek('Europe/Pariss') < 6", 1, "europe/pariss"),
            (
                "now.getHours('Mars/Olympus') > timestamp('2026-01-01T00:00:00Z').getHours('Mars/Olympus')",
                1,
                "",
            ),
        ] {
            let e = CelCondition::compile(source).unwrap_err();
            assert!(
                e.message.starts_with("this part of the condition fails on every call"),
                "{source}: {e}"
            );
            assert!(
                e.message.to_lowercase().contains(reason),
                "{source}: {e}"
            );
            assert_eq!((e.line, e.column), (1, column), "{source}: {e}");
        }
        // Literals that work, and parts that read the call, are left alone.
        for source in [
            "args.n > int('12') && tool in {'a': 1, 'b': 2}",
            "double(args.n) / 0.0 > 1.0",
            "[1, 2, 3].all(x, x > 0) && 'abc'.matches('^a')",
            "timestamp('2026-01-01T00:00:00Z').getHours('Europe/Paris') == 1",
            "has({'a': 1}.b) || now > timestamp('2026-01-01T00:00:00Z')",
            "type(args.n) == int",
            "now.getHours('Europe/Paris') > 8 && now.getDayOfWeek('+02:00') < 6",
            "[['a', 'b'], ['c']].exists(g, g.exists(x, x == tool))",
            "[1, 2, 3].all(x, x > 0) && ['^a', '^b'].exists(p, args.s.matches(p))",
        ] {
            assert!(CelCondition::compile(source).is_ok(), "{source}");
        }
        // A stored condition keeps loading, and fails at run time as before.
        let stored = CelCondition::compile_stored("args.n > 1 / 0").unwrap();
        assert!(stored.holds(&input()).is_err());
    }
}
