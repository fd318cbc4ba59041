//! Step-up holds: a call waiting for a person's approval. A hold covers
//! exactly one call (agent, tool, SHA-256 of the arguments, policy
//! version) and is resolved once.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::time::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Pending => "pending",
            HoldStatus::Approved => "approved",
            HoldStatus::Denied => "denied",
            HoldStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(HoldStatus::Pending),
            "approved" => Some(HoldStatus::Approved),
            "denied" => Some(HoldStatus::Denied),
            "expired" => Some(HoldStatus::Expired),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hold {
    pub id: String,
    /// SHA-256 of the hold token: the token itself is shown once.
    pub token_digest: String,
    pub audit_id: String,
    pub agent_id: String,
    pub tool: String,
    pub args_sha256: String,
    pub policy_id: String,
    pub policy_version: i64,
    pub session_id: Option<String>,
    pub status: HoldStatus,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub decided_by: Option<String>,
    pub decided_at: Option<Millis>,
    pub comment: Option<String>,
    /// When an approved hold was used to run its call; once only.
    pub redeemed_at: Option<Millis>,
    /// The key that made the held call: its revocation ends the approval
    /// (none on holds made before Warden kept it).
    pub key_id: Option<String>,
}

/// Why a pending hold's call could never be approved, whatever its policy:
/// the background sweep denies such holds that a change's own denials
/// missed (a call recorded just after the change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    /// Its agent was suspended or deleted.
    Agent,
    /// The key that made the call was revoked.
    Key,
}

/// What ends an approval before its use or its time, in the words every
/// answer and record that says so shares.
pub const NO_LONGER_STANDS: &str = "its agent was suspended or deleted, the key that made the \
     call was revoked, or the rule that held the call changed";

impl Hold {
    /// An approval lasts as long as the hold could wait for it (its
    /// policy's `step_up_timeout_seconds`), counted from when it was given,
    /// so that an old approval cannot run a call long after the person
    /// looked at it. A used approval has done its work and does not expire.
    pub fn approval_expired(&self, now: Millis) -> bool {
        self.approval_lapsed()
            || self.status == HoldStatus::Approved
                && self.redeemed_at.is_none()
                && self
                    .decided_at
                    .is_some_and(|decided| now > decided + (self.expires_at - self.created_at))
    }

    /// An approval the background sweep found lapsed and audited: stored
    /// as `expired`, keeping who approved it (a hold that expired waiting
    /// has no approver).
    pub fn approval_lapsed(&self) -> bool {
        self.status == HoldStatus::Expired && self.decided_by.is_some()
    }

    /// An approval taken back before its time (its agent was suspended or
    /// deleted, or the rule that held the call changed): stored as a lapse
    /// is, before the time it would have lapsed at.
    pub fn approval_withdrawn(&self, now: Millis) -> bool {
        self.approval_lapsed() && self.approval_expires_at().is_some_and(|end| now <= end)
    }

    /// How an approval that can no longer be used ended, for the answers
    /// that say so ("the approval …").
    pub fn approval_end(&self, now: Millis) -> String {
        if self.approval_withdrawn(now) {
            format!("was withdrawn before it was used ({NO_LONGER_STANDS})")
        } else {
            "expired before it was used".into()
        }
    }

    /// When an approval not yet used stops counting; `None` unless the
    /// hold was approved.
    pub fn approval_expires_at(&self) -> Option<Millis> {
        let approved = self.status == HoldStatus::Approved || self.approval_lapsed();
        match self.decided_at {
            Some(decided) if approved => Some(decided + (self.expires_at - self.created_at)),
            _ => None,
        }
    }

    /// The status a poll reports at `now`: an approval that expired unused
    /// is `expired`, as a hold nobody answered in time is (before the sweep
    /// that audits its expiry has run, too).
    pub fn status_at(&self, now: Millis) -> HoldStatus {
        let overdue = self.status == HoldStatus::Pending && now >= self.expires_at;
        if overdue || self.approval_expired(now) {
            HoldStatus::Expired
        } else {
            self.status
        }
    }
}

/// A new hold token: `hold_` and 256 random bits.
pub fn mint_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("hold_{}", hex::encode(bytes))
}

pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What an approval covers besides the agent and the tool: the call's
/// arguments and context, and the session and user it was made in.
pub struct CoveredCall<'a> {
    pub args: &'a serde_json::Value,
    pub context: &'a serde_json::Value,
    pub session_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

/// SHA-256 of the hold token and the call's arguments, context, session
/// and user, the first two as canonical JSON (object keys sorted at every
/// level), so that the same call sent with its keys in another order is
/// the same call. Conditions read the context and the session, and an
/// approver approves a call made for one user in one session: an approval
/// does not carry to another. The token keys it: whoever reads a hold
/// (its redacted arguments beside it in the audit log) cannot try guesses
/// of a redacted PIN against the digest.
pub fn call_digest(token: &str, call: &CoveredCall<'_>) -> String {
    let mut hash = Sha256::new();
    hash.update(token.as_bytes());
    for part in [call.args, call.context] {
        let mut text = String::new();
        canonical(part, &mut text);
        hash.update([0u8]);
        hash.update(text.as_bytes());
    }
    // Absent and present are told apart, and each text is length-prefixed
    // so that no two pairs run together into the same bytes.
    for part in [call.session_id, call.user_id] {
        match part {
            None => hash.update([0u8]),
            Some(text) => {
                hash.update([1u8]);
                hash.update((text.len() as u64).to_be_bytes());
                hash.update(text.as_bytes());
            }
        }
    }
    hex::encode(hash.finalize())
}

/// Whether `digest` covers this call once its whole numbers are written
/// the other way (`5000` as `5000.0`, or the reverse): the arguments and
/// context then differ only in how numbers were spelt, which a refusal
/// should say, as the digest tells `5000` from `5000.0`.
pub fn differs_only_in_number_form(token: &str, call: &CoveredCall<'_>, digest: &str) -> bool {
    [true, false].into_iter().any(|as_float| {
        let (args, context) = (
            respelt(call.args, as_float),
            respelt(call.context, as_float),
        );
        let respelt = CoveredCall {
            args: &args,
            context: &context,
            ..*call
        };
        call_digest(token, &respelt) == digest
    })
}

/// Every whole number as a float (`as_float`), or every whole-valued
/// float within 64 bits as an integer.
fn respelt(value: &serde_json::Value, as_float: bool) -> serde_json::Value {
    use serde_json::{Number, Value};
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), respelt(v, as_float)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| respelt(v, as_float)).collect()),
        Value::Number(n) if as_float && !n.is_f64() => n
            .as_f64()
            .and_then(Number::from_f64)
            .map_or_else(|| value.clone(), Value::Number),
        Value::Number(n) if !as_float && n.is_f64() => match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Value::Number((x as i64).into()),
            _ => value.clone(),
        },
        other => other.clone(),
    }
}

fn canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(token: &str, args: &serde_json::Value, context: &serde_json::Value) -> String {
        call_digest(
            token,
            &CoveredCall {
                args,
                context,
                session_id: None,
                user_id: None,
            },
        )
    }

    #[test]
    fn a_call_differing_only_in_number_form_is_told_apart() {
        let none = serde_json::json!({});
        let covered = |args: &serde_json::Value| {
            let held = digest("t", &serde_json::json!({"amount": 5000, "fee": 1.5}), &none);
            let call = CoveredCall {
                args,
                context: &none,
                session_id: None,
                user_id: None,
            };
            differs_only_in_number_form("t", &call, &held)
        };
        let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
        assert!(covered(&parse(r#"{"amount": 5000.0, "fee": 1.5}"#)));
        assert!(covered(&parse(r#"{"amount": 5e3, "fee": 1.5}"#)));
        assert!(!covered(&parse(r#"{"amount": 5001, "fee": 1.5}"#)));
        assert!(!covered(&parse(r#"{"amount": 5000.0, "fee": 2.5}"#)));
        // And the other way: held as written with a fraction.
        let held = digest("t", &parse(r#"{"n": [1.0, 2.0]}"#), &none);
        let call = parse(r#"{"n": [1, 2]}"#);
        let call = CoveredCall {
            args: &call,
            context: &none,
            session_id: None,
            user_id: None,
        };
        assert!(differs_only_in_number_form("t", &call, &held));
    }

    #[test]
    fn the_digest_ignores_key_order() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"q":2,"p":3}],"x":null}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"x":null,"y":[1,{"p":3,"q":2}]},"b":1}"#).unwrap();
        let none = serde_json::json!({});
        assert_eq!(digest("t", &a, &none), digest("t", &b, &none));
        assert_ne!(
            digest("t", &a, &none),
            digest("u", &a, &none),
            "the token keys it"
        );
        assert_ne!(
            digest("t", &a, &none),
            digest("t", &a, &serde_json::json!({"risk": 1})),
            "the context is part of the call"
        );
        let c: serde_json::Value =
            serde_json::from_str(r#"{"a":{"x":null,"y":[{"p":3,"q":2},1]},"b":1}"#).unwrap();
        assert_ne!(
            digest("t", &a, &none),
            digest("t", &c, &none),
            "array order matters"
        );
    }

    #[test]
    fn the_digest_covers_the_session_and_the_user() {
        let none = serde_json::json!({});
        let call = |session_id, user_id| {
            call_digest(
                "t",
                &CoveredCall {
                    args: &none,
                    context: &none,
                    session_id,
                    user_id,
                },
            )
        };
        let alice = call(Some("s1"), Some("alice"));
        assert_eq!(alice, call(Some("s1"), Some("alice")));
        assert_ne!(alice, call(Some("s2"), Some("alice")), "another session");
        assert_ne!(alice, call(Some("s1"), Some("mallory")), "another user");
        assert_ne!(alice, call(Some("s1"), None), "no user");
        assert_ne!(
            call(None, Some("")),
            call(Some(""), None),
            "absent is not empty"
        );
        assert_ne!(
            call(Some("ab"), Some("c")),
            call(Some("a"), Some("bc")),
            "no run-together"
        );
    }
}

/// Filters of `GET /api/v1/holds`.
#[derive(Debug, Clone, Default)]
pub struct HoldFilter {
    /// The status as of `now` (see [`Hold::status_at`]).
    pub status: Option<HoldStatus>,
    pub agent_id: Option<String>,
    /// The policy that held the call.
    pub policy_id: Option<String>,
    /// Only approvals not used yet (with `status` approved): what a change
    /// withdraws, read through the index of unused approvals however many
    /// approvals were used.
    pub unused: bool,
    pub now: Millis,
}
