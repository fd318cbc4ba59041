//! Changes to a call's arguments: redacting or setting fields by path.
//!
//! A path is dot-separated: `card.number`, `items.0.token` (a number
//! indexes an array), `*.password` (`*` is any key or index at that level).
//! The same paths name the fields kept out of the audit log.

use serde_json::{Map, Value};

use crate::allowance::Allowance;

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

/// Most work the redactions and assignments of one call may do over its
/// arguments, counting one for each value a path visits and its bytes for
/// each JSON text read into or written back: 20 `modify` policies of 100
/// `*` paths each over 40 entries sent as JSON strings took 14 s a call,
/// since every path read and rewrote every string. Past it a change
/// fails (the call is denied) and a redaction withholds the whole value
/// it was given.
pub const MAX_CHANGE_WORK: usize = 32 << 20;

/// Work left to one call's redactions and assignments
/// ([`MAX_CHANGE_WORK`]), shared by all the paths that meet it.
#[derive(Debug)]
pub struct ChangeWork(Allowance);

impl Default for ChangeWork {
    fn default() -> Self {
        ChangeWork(Allowance::new(MAX_CHANGE_WORK as u64))
    }
}

impl ChangeWork {
    /// Takes `n` from what is left; false (and nothing left) past it, so
    /// that a redaction cut short knows to withhold.
    fn spend(&self, n: usize) -> bool {
        let taken = self.0.take(n as u64);
        if !taken {
            self.0.drain(u64::MAX);
        }
        taken
    }

    pub fn exhausted(&self) -> bool {
        self.0.is_spent()
    }

    #[cfg(test)]
    fn with(left: usize) -> Self {
        ChangeWork(Allowance::new(left as u64))
    }
}
/// Longest path, and most paths per policy.
pub const MAX_PATH_LEN: usize = 256;
pub const MAX_PATHS: usize = 100;
/// Most segments in a path: a `set` builds the levels its path names, and
/// the changed arguments must stay shallow enough for their audit record
/// to be read back (request bodies nest at most 64 levels).
pub const MAX_PATH_SEGMENTS: usize = 32;

/// A validated argument path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgPath {
    text: String,
    segments: Vec<String>,
}

/// Why a path was refused; `position` is the 1-based character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {position})")]
pub struct PathError {
    pub message: String,
    pub position: usize,
}

impl ArgPath {
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if text.is_empty() {
            return Err(PathError {
                message: "a path must not be empty".into(),
                position: 1,
            });
        }
        if text.len() > MAX_PATH_LEN {
            return Err(PathError {
                message: format!("a path is at most {MAX_PATH_LEN} bytes"),
                position: 1,
            });
        }
        let mut segments = Vec::new();
        let mut position = 1;
        for (i, segment) in text.split('.').enumerate() {
            if i == MAX_PATH_SEGMENTS {
                return Err(PathError {
                    message: format!("a path has at most {MAX_PATH_SEGMENTS} segments"),
                    position,
                });
            }
            if segment.is_empty() {
                return Err(PathError {
                    message: "empty segment in the path".into(),
                    position,
                });
            }
            // A key with an invisible character is another key than the
            // one it looks like: a redaction of it would redact nothing.
            let unfit = |c: char| c.is_control() || crate::pattern::unseen(c);
            if let Some((i, c)) = segment.chars().enumerate().find(|(_, c)| unfit(*c)) {
                return Err(PathError {
                    message: format!(
                        "control, invisible or direction-changing character (U+{:04X}) in the path",
                        c as u32
                    ),
                    position: position + i,
                });
            }
            // `pass*` or `**` would read as a pattern but name a literal
            // key, leaving the fields it seems to cover in the clear.
            if segment != "*" {
                if let Some(i) = segment.chars().position(|c| c == '*') {
                    return Err(PathError {
                        message: "`*` must be a whole segment (any key or index at that level): \
                                  there is no partial or recursive wildcard"
                            .into(),
                        position: position + i,
                    });
                }
            }
            position += segment.chars().count() + 1;
            segments.push(segment.to_string());
        }
        Ok(ArgPath {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Replaces every value the path reaches with [`REDACTED`]; returns
    /// whether any was.
    pub fn redact(&self, args: &mut Value) -> bool {
        self.redact_within(args, &ChangeWork::default())
    }

    /// As [`Self::redact`], spending `work`: when it runs out, the whole
    /// of `args` is withheld, since what is left of it may hold the value.
    pub fn redact_within(&self, args: &mut Value, work: &ChangeWork) -> bool {
        let mut hit = false;
        visit(args, &self.segments, work, &mut |v| {
            *v = Value::String(REDACTED.into());
            hit = true;
        });
        if work.exhausted() {
            *args = Value::String(REDACTED.into());
            return true;
        }
        hit
    }

    /// Sets the value at the path, creating objects on the way (replacing
    /// whatever else stands there, an array included, unless the segment
    /// is one of its indexes); a `*` segment sets every existing entry.
    /// Each copy of `value` spends `size` bytes of `budget`; a copy that
    /// does not fit stops the change.
    fn set(
        &self,
        args: &mut Value,
        value: &Value,
        size: usize,
        budget: &mut usize,
        work: &ChangeWork,
    ) -> Result<(), ChangeFailed> {
        set_at(args, &self.segments, work, &mut |target| {
            *budget = budget.checked_sub(size).ok_or(ChangeFailed::TooLarge)?;
            *target = value.clone();
            Ok(())
        })
    }
}

/// Most bytes a change's assignments may write into one call's arguments:
/// a `*` path copies its value into every entry the agent sends, so the
/// output would otherwise grow with the product of the two.
pub const MAX_SET_BYTES: usize = 1 << 20;

/// A change that cannot be made as written; the call must not run unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChangeFailed {
    /// Its assignments would write more than [`MAX_SET_BYTES`].
    #[error("the change would write more than {MAX_SET_BYTES} bytes into the arguments")]
    TooLarge,
    /// A `*` assignment reaches JSON sent as a string that is not strict
    /// JSON (a trailing comma, `NaN`, a repeated key, a whole number past
    /// 64 bits): its entries cannot be found to set, yet a lenient parser
    /// in the tool may read them.
    #[error("a `*` assignment reaches JSON text in the arguments that is not strict JSON")]
    UnreadableJson,
    /// The call's redactions and assignments would do more than
    /// [`MAX_CHANGE_WORK`] over its arguments.
    #[error(
        "the call's redactions and assignments would take more than their bound over its arguments"
    )]
    TooCostly,
}

/// The path left after `key`, when the key's dot-separated parts match
/// the path's first segments (a `*` matches any one part): `user` and
/// `user.password` both lie on the path `*.password`, as a tool may read
/// either spelling.
fn covered<'s>(key: &str, segments: &'s [String]) -> Option<&'s [String]> {
    let mut taken = 0;
    for part in key.split('.') {
        let segment = segments.get(taken)?;
        if segment != "*" && segment != part {
            return None;
        }
        taken += 1;
    }
    Some(&segments[taken..])
}

/// Calls `f` on every value the path names. Redaction reaches the shapes
/// agents send that a dotted path cannot spell: a key holding a dot
/// (`"a.b"` is named by the path `a.b` too), and an object or array sent
/// as a JSON string (`"payload": "{\"card\": …}"`), changed inside and
/// written back as a string.
fn visit(value: &mut Value, segments: &[String], work: &ChangeWork, f: &mut dyn FnMut(&mut Value)) {
    if !work.spend(1) {
        return;
    }
    let Some((first, rest)) = segments.split_first() else {
        f(value);
        return;
    };
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if let Some(after) = covered(key, segments) {
                    visit(child, after, work, f);
                }
            }
        }
        Value::Array(items) => {
            if first == "*" {
                for child in items.iter_mut() {
                    visit(child, rest, work, f);
                }
            } else if let Some(child) = first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                visit(child, rest, work, f);
            }
        }
        // Invisible characters in front (a byte-order mark, a zero-width
        // space) do not hide JSON from the path: some parsers skip them.
        Value::String(text) if looks_like_json(text) => {
            // Text that is not strict JSON (a trailing comma, Python's
            // `NaN`) may hold the value, and no path can be found in it:
            // withheld whole, as the Thoth events' arguments are.
            // A repeated key too: the tool may read the value the
            // record would not show.
            if !work.spend(text.len()) {
                return;
            }
            let Ok(crate::unique_keys::UniqueKeys(mut inner)) = serde_json::from_str(text) else {
                f(value);
                return;
            };
            let mut hit = false;
            visit(&mut inner, segments, work, &mut |v| {
                hit = true;
                f(v)
            });
            if !hit {
                return;
            }
            if holds_inexact_number(&inner) {
                // A whole number past 64 bits was read as a double: written
                // back it would be another number, so nothing of it is.
                f(value);
            } else {
                *text = inner.to_string();
                work.spend(text.len());
            }
        }
        // JSON encoded twice (`"\"{\\\"card\\\": …}\""`): a tool that decodes
        // it twice reads the object, so the path reaches into it too.
        Value::String(text) if looks_like_encoded_text(text) => {
            if !work.spend(text.len()) {
                return;
            }
            let Ok(Value::String(decoded)) = serde_json::from_str::<Value>(text) else {
                return;
            };
            if !looks_like_json(&decoded) && !looks_like_encoded_text(&decoded) {
                return;
            }
            let mut inner = Value::String(decoded);
            let mut hit = false;
            visit(&mut inner, segments, work, &mut |v| {
                hit = true;
                f(v)
            });
            if hit {
                *text = inner.to_string();
                work.spend(text.len());
            }
        }
        _ => {}
    }
}

/// Whether a string starts like JSON text that is itself a string, past
/// spaces and invisible characters: JSON encoded once more.
fn looks_like_encoded_text(text: &str) -> bool {
    text.trim_start_matches(|c: char| c.is_whitespace() || crate::pattern::invisible(c))
        .starts_with('"')
}

/// Whether a string starts like a JSON object or array, past any spaces
/// and invisible characters in front (a byte-order mark, a zero-width
/// space), which some parsers skip.
fn looks_like_json(text: &str) -> bool {
    text.trim_start_matches(|c: char| c.is_whitespace() || crate::pattern::invisible(c))
        .starts_with(['{', '['])
}

/// A JSON string argument's value, when it can be changed and written
/// back exactly: strict JSON, no key named twice, no whole number past
/// 64 bits.
fn json_inside(text: &str) -> Option<Value> {
    let crate::unique_keys::UniqueKeys(inner) = serde_json::from_str(text).ok()?;
    (!holds_inexact_number(&inner)).then_some(inner)
}

/// Whether a parsed value holds a number that writing it back could
/// change: a whole number past 64 bits, read as the nearest double (an
/// integer within 64 bits is read exactly, and any other double is
/// written back as the same double).
fn holds_inexact_number(value: &Value) -> bool {
    // The ends of what 64 bits hold: a whole number read as a double at
    // or past them did not fit an i64 or u64 (-2^63 itself reads as an
    // i64, so a double there stands for a number below it).
    let (low, high) = (-(2f64.powi(63)), 2f64.powi(64));
    match value {
        Value::Number(n) => n
            .as_f64()
            .is_some_and(|x| n.is_f64() && x.fract() == 0.0 && (x <= low || x >= high)),
        Value::Array(items) => items.iter().any(holds_inexact_number),
        Value::Object(map) => map.values().any(holds_inexact_number),
        _ => false,
    }
}

type Assign<'a> = dyn FnMut(&mut Value) -> Result<(), ChangeFailed> + 'a;

fn set_at(
    target: &mut Value,
    segments: &[String],
    work: &ChangeWork,
    assign: &mut Assign,
) -> Result<(), ChangeFailed> {
    if !work.spend(1) {
        return Err(ChangeFailed::TooCostly);
    }
    let Some((first, rest)) = segments.split_first() else {
        return assign(target);
    };
    // An object or array sent as a JSON string is changed inside and
    // written back as a string, as redaction reaches into it: sending the
    // argument as text does not dodge the assignment.
    // Text that looks like JSON but is not strict JSON has no entries a
    // `*` can find, while the tool's parser may still read some: such an
    // assignment fails rather than set nothing. (Without a `*`, the text
    // is replaced by an object holding the value, as any scalar is.)
    // (Warden's own `[REDACTED]` marker holds nothing and is not such text.)
    if let Value::String(text) = target {
        if looks_like_json(text) && text != REDACTED {
            if !work.spend(text.len()) {
                return Err(ChangeFailed::TooCostly);
            }
            match json_inside(text) {
                Some(mut inner) => {
                    set_at(&mut inner, segments, work, assign)?;
                    *text = inner.to_string();
                    if !work.spend(text.len()) {
                        return Err(ChangeFailed::TooCostly);
                    }
                    return Ok(());
                }
                None if segments.iter().any(|s| s == "*") => {
                    return Err(ChangeFailed::UnreadableJson)
                }
                None => {}
            }
        }
    }
    if first == "*" {
        match target {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if let Some(after) = covered(key, segments) {
                        set_at(child, after, work, assign)?;
                    }
                }
            }
            Value::Array(items) => items
                .iter_mut()
                .try_for_each(|c| set_at(c, rest, work, assign))?,
            _ => {}
        }
        return Ok(());
    }
    // An index into an array that has it goes on into that entry; any
    // other parent (an array without that index, a scalar, null) becomes an
    // object, so that an agent cannot dodge an assignment by sending an
    // argument of another shape.
    if let Value::Array(items) = target {
        if let Some(child) = first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
            return set_at(child, rest, work, assign);
        }
    }
    // Under a `*` further down, a level that is not there has no entries
    // to set: nothing is created on the way to it.
    let wild_below = rest.iter().any(|s| s == "*");
    if !target.is_object() {
        if wild_below {
            return Ok(());
        }
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        return Ok(());
    };
    // Every key on the path is set, one holding a dot (`limits.max`, as
    // redaction reads it) too: a tool may read either spelling.
    let mut direct = false;
    for (key, child) in map.iter_mut() {
        if let Some(after) = covered(key, segments) {
            direct |= key == first;
            set_at(child, after, work, assign)?;
        }
    }
    if direct || wild_below {
        return Ok(());
    }
    set_at(
        map.entry(first.clone()).or_insert(Value::Null),
        rest,
        work,
        assign,
    )
}

/// A `modify` policy's change: redactions first, then assignments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArgChange {
    pub redact: Vec<ArgPath>,
    pub set: Vec<(ArgPath, Value)>,
}

impl ArgChange {
    pub fn is_empty(&self) -> bool {
        self.redact.is_empty() && self.set.is_empty()
    }

    /// The arguments after the change, or [`ChangeFailed`] when its
    /// assignments would write more than [`MAX_SET_BYTES`] into them or a
    /// `*` assignment meets JSON text it cannot read.
    pub fn apply(&self, args: &Value) -> Result<Value, ChangeFailed> {
        self.apply_within(args, &ChangeWork::default())
    }

    /// As [`Self::apply`], spending `work` ([`ChangeFailed::TooCostly`]
    /// when it runs out).
    pub fn apply_within(&self, args: &Value, work: &ChangeWork) -> Result<Value, ChangeFailed> {
        let mut out = if args.is_null() {
            Value::Object(Map::new())
        } else {
            args.clone()
        };
        for path in &self.redact {
            path.redact_within(&mut out, work);
        }
        if work.exhausted() {
            return Err(ChangeFailed::TooCostly);
        }
        let mut budget = MAX_SET_BYTES;
        for (path, value) in &self.set {
            // A path without `*` writes its value once, and a policy's
            // values are bounded when it is written: only a `*` path, whose
            // copies the call's entries multiply, is measured.
            let size = if path.segments.iter().any(|s| s == "*") {
                serde_json::to_vec(value).map_or(MAX_SET_BYTES, |v| v.len())
            } else {
                0
            };
            path.set(&mut out, value, size, &mut budget, work)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> ArgPath {
        ArgPath::parse(s).unwrap()
    }

    #[test]
    fn redacts_nested_indexed_and_wildcard_paths() {
        let mut v = json!({"card": {"number": "4111", "exp": "12/30"},
            "items": [{"token": "a"}, {"token": "b"}], "u": {"password": "x"}, "k": {"password": "y"}});
        assert!(p("card.number").redact(&mut v));
        assert!(p("items.1.token").redact(&mut v));
        assert!(p("*.password").redact(&mut v));
        assert!(!p("missing.field").redact(&mut v));
        assert_eq!(v["card"]["number"], REDACTED);
        assert_eq!(v["card"]["exp"], "12/30");
        assert_eq!(v["items"][0]["token"], "a");
        assert_eq!(v["items"][1]["token"], REDACTED);
        assert_eq!(v["u"]["password"], REDACTED);
        assert_eq!(v["k"]["password"], REDACTED);
    }

    #[test]
    fn redaction_reaches_dotted_keys_and_json_sent_as_strings() {
        let mut args = json!({
            "a.b": "dot secret",
            "a": {"b": "nested secret", "c": "kept"},
            "payload": "{\"card\": \"4111\", \"note\": \"kept\"}",
            "items": "[{\"card\": \"5500\"}]",
            "text": "{not json",
            "python": "{\"card\": \"S14\", }",
            "wide": "{\"card\": \"4111\", \"acct\": 12345678901234567890123}",
            "other": "{\"x\": 1}",
            "twice": "{\"cmd\": \"rm -rf /\", \"cmd\": \"ls\", \"card\": \"4111\"}",
            "exp": "{\"card\": \"4111\", \"n\": 1e18}",
            "bom": "\u{feff}{\"card\": \"4111\"}",
            "zwsp": "\u{200b}[{\"card\": \"4111\"}]"
        });
        for path in [
            "a.b",
            "payload.card",
            "items.*.card",
            "text.x",
            "python.card",
            "wide.card",
            "other.card",
            "twice.card",
            "exp.card",
            "bom.card",
            "zwsp.*.card",
        ] {
            p(path).redact(&mut args);
        }
        assert_eq!(args["a.b"], REDACTED);
        assert_eq!(args["a"], json!({"b": REDACTED, "c": "kept"}));
        let payload: Value = serde_json::from_str(args["payload"].as_str().unwrap()).unwrap();
        assert_eq!(payload, json!({"card": REDACTED, "note": "kept"}));
        let items: Value = serde_json::from_str(args["items"].as_str().unwrap()).unwrap();
        assert_eq!(items, json!([{"card": REDACTED}]));
        // Not strict JSON, or holding a number that could not be written
        // back exactly: withheld whole. A string the path finds nothing
        // in is left exactly as sent.
        assert_eq!(args["text"], REDACTED);
        assert_eq!(args["python"], REDACTED);
        assert_eq!(args["wide"], REDACTED);
        assert_eq!(args["other"], "{\"x\": 1}");
        // A repeated key would hide from the record the value a tool may read.
        assert_eq!(args["twice"], REDACTED);
        // Invisible characters in front do not hide the JSON.
        assert_eq!(args["bom"], REDACTED);
        assert_eq!(args["zwsp"], REDACTED);
        // A double within 64 bits is written back as the same number.
        let exp: Value = serde_json::from_str(args["exp"].as_str().unwrap()).unwrap();
        assert_eq!(exp, json!({"card": REDACTED, "n": 1e18}));
        // JSON encoded twice, or three times, is reached too; a quoted
        // string with no JSON inside is left as sent; encoded loose text
        // is withheld whole.
        let once = json!({"card": "4111", "note": "kept"}).to_string();
        let twice = Value::String(once.clone()).to_string();
        let mut args = json!({
            "double": twice,
            "triple": Value::String(twice.clone()).to_string(),
            "quoted": "\"hello\"",
            "loose": Value::String("{\"card\": \"4111\", }".into()).to_string(),
        });
        for path in ["double.card", "triple.card", "quoted.card", "loose.card"] {
            p(path).redact(&mut args);
        }
        let decode = |v: &Value| -> Value { serde_json::from_str(v.as_str().unwrap()).unwrap() };
        let double = decode(&decode(&args["double"]));
        assert_eq!(double, json!({"card": REDACTED, "note": "kept"}));
        let triple = decode(&decode(&decode(&args["triple"])));
        assert_eq!(triple, json!({"card": REDACTED, "note": "kept"}));
        assert_eq!(args["quoted"], "\"hello\"");
        assert_eq!(decode(&args["loose"]), REDACTED);
    }

    #[test]
    fn a_calls_changes_share_a_bound_on_their_work() {
        // Entries sent as JSON strings, each read and rewritten by every
        // `*` path: the work grows with paths times entries times size.
        let entries: Map<String, Value> = (0..40)
            .map(|k| (format!("k{k}"), Value::String("{\"z\": 1}".into())))
            .collect();
        let args = json!({"m": entries, "card": "4111"});
        let change = ArgChange {
            redact: vec![p("card")],
            set: (0..100)
                .map(|i| (p(&format!("m.*.s{i}")), json!(1)))
                .collect(),
        };
        let out = change.apply(&args).unwrap();
        assert_eq!(out["card"], REDACTED);
        assert_eq!(
            change.apply_within(&args, &ChangeWork::with(20_000)),
            Err(ChangeFailed::TooCostly)
        );
        // Every rewrite of a grown string counts: one change does over a
        // million units of work here.
        let work = ChangeWork::default();
        assert!(change.apply_within(&args, &work).is_ok());
        let used = MAX_CHANGE_WORK - work.0.left() as usize;
        assert!(used > 1_000_000, "{used}");
        // Shared: a second change meets what the first left.
        let work = ChangeWork::with(used + used / 2);
        assert!(change.apply_within(&args, &work).is_ok());
        assert_eq!(
            change.apply_within(&args, &work),
            Err(ChangeFailed::TooCostly)
        );
        // A redaction that runs out withholds the whole value it was given.
        let mut v = json!({"m": {"a": "{\"password\": \"x\"}"}, "b": 1});
        assert!(p("m.*.password").redact_within(&mut v, &ChangeWork::with(3)));
        assert_eq!(v, json!(REDACTED));
        let mut v = json!({"m": {"a": "{\"password\": \"x\"}"}, "b": 1});
        assert!(p("m.*.password").redact_within(&mut v, &ChangeWork::default()));
        assert_eq!(v["b"], 1);
    }

    #[test]
    fn sets_fields_creating_objects() {
        let change = ArgChange {
            redact: vec![p("to")],
            set: vec![(p("limits.max"), json!(10)), (p("mode"), json!("dry_run"))],
        };
        let out = change
            .apply(&json!({"to": "a@b.c", "mode": "live"}))
            .unwrap();
        assert_eq!(
            out,
            json!({"to": REDACTED, "mode": "dry_run", "limits": {"max": 10}})
        );
    }

    #[test]
    fn an_assignment_lands_whatever_shape_the_agent_sends() {
        let change = ArgChange {
            redact: vec![],
            set: vec![
                (p("opts.dry_run"), json!(true)),
                (p("items.1.qty"), json!(1)),
            ],
        };
        for opts in [
            json!([{"dry_run": false}]),
            json!("x"),
            json!(5),
            json!(null),
        ] {
            let out = change
                .apply(&json!({"opts": opts, "items": [{"qty": 9}, {"qty": 9}]}))
                .unwrap();
            assert_eq!(out["opts"], json!({"dry_run": true}), "from {opts}");
            assert_eq!(out["items"], json!([{"qty": 9}, {"qty": 1}]));
        }
        // An index the array does not have replaces the array too.
        let out = change.apply(&json!({"items": [{"qty": 9}]})).unwrap();
        assert_eq!(out["items"], json!({"1": {"qty": 1}}));
    }

    #[test]
    fn a_wildcard_assignment_cannot_multiply_the_arguments_without_bound() {
        let change = ArgChange {
            redact: vec![],
            set: vec![(p("*.x"), json!("y".repeat(10_000)))],
        };
        let few: Map<String, Value> = (0..50).map(|i| (format!("k{i}"), json!({}))).collect();
        let out = change.apply(&Value::Object(few)).unwrap();
        assert_eq!(out["k49"]["x"].as_str().unwrap().len(), 10_000);
        let many: Map<String, Value> = (0..20_000).map(|i| (format!("k{i}"), json!({}))).collect();
        assert_eq!(
            change.apply(&Value::Object(many)),
            Err(ChangeFailed::TooLarge)
        );
    }

    #[test]
    fn a_wildcard_assignment_into_loose_json_text_fails() {
        let change = ArgChange {
            redact: vec![],
            set: vec![(p("items.*.price"), json!(0))],
        };
        for loose in [
            r#"[{"price":5000,"note":NaN}]"#,
            r#"[{"price":5000,"n":123456789012345678901234567890}]"#,
            r#"[{"price":0,"price":5000}]"#,
            r#"[{"price":5000},]"#,
        ] {
            assert_eq!(
                change.apply(&json!({ "items": loose })),
                Err(ChangeFailed::UnreadableJson),
                "{loose}"
            );
        }
        // Strict text is changed inside; text that is not JSON at all has
        // no entries, and a path without `*` replaces loose text whole.
        assert_eq!(
            change.apply(&json!({"items": r#"[{"price":5000}]"#})),
            Ok(json!({"items": r#"[{"price":0}]"#}))
        );
        assert_eq!(
            change.apply(&json!({"items": "five thousand"})),
            Ok(json!({"items": "five thousand"}))
        );
        // A level this change's own redaction replaced holds no entries.
        let both = ArgChange {
            redact: vec![p("items")],
            set: vec![(p("items.*.price"), json!(0))],
        };
        assert_eq!(
            both.apply(&json!({"items": [{"price": 5}]})),
            Ok(json!({"items": REDACTED}))
        );
        let plain = ArgChange {
            redact: vec![],
            set: vec![(p("cfg.limit"), json!(1))],
        };
        assert_eq!(
            plain.apply(&json!({"cfg": r#"{"limit": NaN}"#})),
            Ok(json!({"cfg": {"limit": 1}}))
        );
    }

    #[test]
    fn a_wildcard_over_nothing_creates_nothing() {
        let change = ArgChange {
            redact: vec![],
            set: vec![
                (p("items.*.price"), json!(0)),
                (p("a.b.*"), json!(0)),
                (p("n.*.x"), json!(0)),
            ],
        };
        let out = change.apply(&json!({"other": 1, "n": 5})).unwrap();
        assert_eq!(out, json!({"other": 1, "n": 5}));
        let out = change
            .apply(&json!({"items": [{"price": 9}], "a": {"b": {"c": 1}}}))
            .unwrap();
        assert_eq!(out["items"], json!([{"price": 0}]));
        assert_eq!(out["a"], json!({"b": {"c": 0}}));
    }

    #[test]
    fn an_assignment_reaches_into_json_sent_as_a_string() {
        let change = ArgChange {
            redact: vec![p("items.*.card")],
            set: vec![
                (p("items.*.price"), json!(0)),
                (p("opts.dry_run"), json!(true)),
            ],
        };
        let out = change
            .apply(&json!({
                "items": "[{\"price\": 5, \"card\": \"4111\"}]",
                "opts": "{\"dry_run\": false}"
            }))
            .unwrap();
        let items: Value = serde_json::from_str(out["items"].as_str().unwrap()).unwrap();
        assert_eq!(items, json!([{"price": 0, "card": REDACTED}]));
        let opts: Value = serde_json::from_str(out["opts"].as_str().unwrap()).unwrap();
        assert_eq!(opts, json!({"dry_run": true}));
    }

    #[test]
    fn an_assignment_reaches_keys_that_hold_a_dot() {
        let change = ArgChange {
            redact: vec![],
            set: vec![(p("limits.max"), json!(10))],
        };
        let out = change.apply(&json!({"limits.max": 99999})).unwrap();
        assert_eq!(out, json!({"limits.max": 10, "limits": {"max": 10}}));
    }

    #[test]
    fn a_wildcard_reaches_keys_that_hold_a_dot() {
        let mut args = json!({
            "user.password": "hunter2",
            "card.number": "4111",
            "items": {"x.price": 5},
            "headers": {"a.token": "s"}
        });
        for path in ["*.password", "card.*", "items.*.price", "headers.*.token"] {
            p(path).redact(&mut args);
        }
        assert_eq!(
            args,
            json!({
                "user.password": REDACTED,
                "card.number": REDACTED,
                "items": {"x.price": REDACTED},
                "headers": {"a.token": REDACTED}
            })
        );
        let change = ArgChange {
            redact: vec![],
            set: vec![(p("items.*.price"), json!(0)), (p("card.*"), json!("x"))],
        };
        let out = change
            .apply(&json!({"items": {"x.price": 5, "y": {"price": 7}}, "card.number": 4111}))
            .unwrap();
        assert_eq!(
            out,
            json!({"items": {"x.price": 0, "y": {"price": 0}}, "card.number": "x"})
        );
    }

    #[test]
    fn a_negative_number_past_64_bits_in_a_json_string_is_not_rewritten() {
        let mut args = json!({"payload": "{\"limit\": 5, \"k\": -9223372036854775809}"});
        p("payload.limit").redact(&mut args);
        assert_eq!(args["payload"], REDACTED);
        let change = ArgChange {
            redact: vec![],
            set: vec![(p("payload.limit"), json!(1))],
        };
        let out = change
            .apply(&json!({"payload": "{\"limit\": 5, \"k\": -9223372036854775809}"}))
            .unwrap();
        assert!(!out.to_string().contains("e+18"), "{out}");
    }

    #[test]
    fn a_star_is_a_whole_segment_or_refused() {
        for (path, position) in [("**.password", 1), ("user.pass*", 10), ("a.*b", 3)] {
            let e = ArgPath::parse(path).unwrap_err();
            assert_eq!(e.position, position, "{path}");
            assert!(e.message.contains("whole segment"), "{path}");
        }
        assert!(ArgPath::parse("*.password").is_ok());
        assert!(ArgPath::parse("a.*.b").is_ok());
    }

    #[test]
    fn refuses_empty_segments_with_position() {
        let e = ArgPath::parse("a..b").unwrap_err();
        assert_eq!(e.position, 3);
        assert!(ArgPath::parse("").is_err());
        let deep = vec!["a"; MAX_PATH_SEGMENTS + 1].join(".");
        let e = ArgPath::parse(&deep).unwrap_err();
        assert_eq!(e.position, 2 * MAX_PATH_SEGMENTS + 1);
        assert!(ArgPath::parse(&deep[2..]).is_ok());
    }
}
