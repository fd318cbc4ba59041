//! Behavioural drift: how far a call is from the agent's own learned
//! behaviour, as a score in 0..=1 with its parts explained. The method is
//! written down in `docs/drift.md`.
//!
//! A profile learns from every call it scores ([`Profile::observe`]); it is
//! plain data so that the server can persist it and rebuild it from the
//! audit log by replaying calls in order.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

/// Calls a profile needs before its scores count; until then it is
/// `learning` and scores 0.
pub const LEARNING_CALLS: u64 = 50;
/// How many of the latest calls the current rate is measured over (the
/// call being scored and the ones before it): few, so that a burst shows
/// within a handful of calls.
const RATE_WINDOW: usize = 8;
/// A pause between two calls ends a run of activity. A window that holds
/// one says how long the agent was away (thinking, waiting for its user),
/// not how fast it calls: it gives no rate, to score or to learn. A pause
/// is a gap over this many times the agent's usual interval between
/// calls, ...
const PAUSE_INTERVALS: f64 = 10.0;
/// ... and at least this long ...
const SHORTEST_PAUSE_MS: f64 = 1_000.0;
/// ... and any gap over a minute (before a usual interval is known, too).
const LONGEST_GAP_MS: f64 = 60_000.0;
/// Smoothing of the long-run rate, per call, in log space.
const RATE_SMOOTHING: f64 = 0.02;
/// The same while the agent is `learning`: its first windows set its
/// usual pace, before scores count, rather than the first one alone.
const LEARNING_RATE_SMOOTHING: f64 = 0.2;
/// Most one sample moves the long-run rate towards itself, as a factor
/// (before smoothing): a burst, however fast, cannot drag the baseline up
/// with it and make the agent's usual pace look unusual afterwards.
const RATE_STEP_LIMIT: f64 = 2.0;
/// Most distinct tools a profile learns. An agent's calls choose the names,
/// so without a bound a caller could grow the profile (its memory, and the
/// snapshot saved in the background) without end. Past the bound a new
/// name is not learned: it keeps scoring as a tool never seen.
pub const MAX_TOOLS: usize = 4_096;
/// Most distinct (previous tool, tool) pairs learned; past it an unseen
/// pair keeps scoring as an unusual step.
pub const MAX_TRANSITIONS: usize = 16_384;
/// Most argument names learned per tool.
pub const MAX_ARGUMENT_KEYS: usize = 64;

/// One call as drift sees it.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub tool: &'a str,
    /// The tool called just before in the same session, if any.
    pub previous_tool: Option<&'a str>,
    pub arg_keys: &'a [String],
    /// Milliseconds since the epoch.
    pub at_ms: i64,
}

/// The score and the parts it is made of, each in 0..=1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DriftScore {
    pub score: f64,
    pub learning: bool,
    pub new_tool: f64,
    pub unusual_transition: f64,
    pub unusual_rate: f64,
    pub unusual_hour: f64,
    pub new_argument_keys: f64,
}

/// Weights of the parts: a part at 1 raises the score by this much on its
/// own, and parts combine like independent signals (1 - Π(1 - wᵢ·partᵢ)).
const WEIGHTS: [f64; 5] = [0.6, 0.4, 0.4, 0.2, 0.4];

/// A score or part to four decimal places: finer is noise of the
/// arithmetic (`0.5800000000000001`), not a difference in behaviour, and
/// conditions and filters compare what is shown.
fn shown(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// What an agent usually does.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    pub calls: u64,
    pub tools: HashMap<String, u64>,
    /// (previous tool, tool) → count, and the count of calls after each
    /// previous tool.
    #[serde(with = "transition_list")]
    pub transitions: HashMap<(String, String), u64>,
    pub after: HashMap<String, u64>,
    pub hours: [u64; 24],
    pub argument_keys: HashMap<String, HashSet<String>>,
    /// Latest call times, for the current rate.
    pub recent: VecDeque<i64>,
    /// Long-run calls per minute.
    pub baseline_per_minute: Option<f64>,
}

/// Transitions as `[previous, tool, count]` triples: JSON keys are strings.
mod transition_list {
    use std::collections::HashMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Transitions = HashMap<(String, String), u64>;

    pub fn serialize<S: Serializer>(map: &Transitions, s: S) -> Result<S::Ok, S::Error> {
        let list: Vec<(&str, &str, u64)> = map
            .iter()
            .map(|((a, b), n)| (a.as_str(), b.as_str(), *n))
            .collect();
        list.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Transitions, D::Error> {
        let list = Vec::<(String, String, u64)>::deserialize(d)?;
        Ok(list.into_iter().map(|(a, b, n)| ((a, b), n)).collect())
    }
}

/// Counts `name` in `counts` unless it is new and `counts` is full; true
/// when the name is (now) learned.
fn bounded_count(counts: &mut HashMap<String, u64>, name: &str, bound: usize) -> bool {
    if let Some(n) = counts.get_mut(name) {
        *n += 1;
        true
    } else if counts.len() < bound {
        counts.insert(name.to_string(), 1);
        true
    } else {
        false
    }
}

fn hour_of(at_ms: i64) -> usize {
    (at_ms.div_euclid(3_600_000).rem_euclid(24)) as usize
}

impl Profile {
    /// The longest gap between two calls that is not a pause, for this
    /// agent: ten usual intervals, within a second and a minute.
    fn longest_gap_ms(&self) -> f64 {
        match self.baseline_per_minute {
            Some(per_minute) if per_minute > 0.0 => {
                (PAUSE_INTERVALS * 60_000.0 / per_minute).clamp(SHORTEST_PAUSE_MS, LONGEST_GAP_MS)
            }
            _ => LONGEST_GAP_MS,
        }
    }

    /// Calls per minute over the latest window, counting `at_ms` as its
    /// newest call; `None` until the window is full or when a pause lies
    /// inside it.
    fn current_rate(&self, at_ms: i64) -> Option<f64> {
        let before = RATE_WINDOW - 1;
        if self.recent.len() < before {
            return None;
        }
        let times: Vec<i64> = self
            .recent
            .iter()
            .skip(self.recent.len() - before)
            .copied()
            .chain(std::iter::once(at_ms))
            .collect();
        let longest = self.longest_gap_ms();
        if times.windows(2).any(|w| (w[1] - w[0]) as f64 > longest) {
            return None;
        }
        let span_ms = (at_ms - times[0]).max(1) as f64;
        Some(before as f64 * 60_000.0 / span_ms)
    }

    /// Scores a call against what the profile has learned so far.
    pub fn score(&self, call: &Observation<'_>) -> DriftScore {
        let learning = self.calls < LEARNING_CALLS;
        let seen = self.tools.get(call.tool).copied().unwrap_or(0);
        // Unseen: 1; seen once or twice: fading; then familiar.
        let new_tool = match seen {
            0 => 1.0,
            n if n < 3 => 0.5 / n as f64,
            _ => 0.0,
        };
        let unusual_transition = match call.previous_tool {
            Some(prev) => {
                let total = self.after.get(prev).copied().unwrap_or(0);
                if total < 5 {
                    0.0
                } else {
                    let key = (prev.to_string(), call.tool.to_string());
                    let count = self.transitions.get(&key).copied().unwrap_or(0);
                    1.0 - count as f64 / total as f64
                }
            }
            None => 0.0,
        };
        let unusual_rate = match (self.baseline_per_minute, self.current_rate(call.at_ms)) {
            // Faster than usual only (tenfold scores 1): a slower pace is
            // an agent at rest, not one misused.
            (Some(baseline), Some(current)) => {
                ((current / baseline.max(1e-9)).ln() / 10f64.ln()).clamp(0.0, 1.0)
            }
            _ => 0.0,
        };
        let in_hour = self.hours[hour_of(call.at_ms)];
        let unusual_hour = if self.calls == 0 {
            0.0
        } else {
            // A uniform spread over the day scores 0; an hour never used, 1.
            (1.0 - 24.0 * in_hour as f64 / self.calls as f64).clamp(0.0, 1.0)
        };
        // Every key of a tool never called before is a key never seen for it.
        let new_argument_keys = if call.arg_keys.is_empty() {
            0.0
        } else {
            let known = self.argument_keys.get(call.tool);
            let unseen = call
                .arg_keys
                .iter()
                .filter(|k| !known.is_some_and(|known| known.contains(*k)))
                .count();
            unseen as f64 / call.arg_keys.len() as f64
        };
        let parts = [
            new_tool,
            unusual_transition,
            unusual_rate,
            unusual_hour,
            new_argument_keys,
        ];
        let combined = 1.0
            - parts
                .iter()
                .zip(WEIGHTS)
                .map(|(part, weight)| 1.0 - weight * part)
                .product::<f64>();
        DriftScore {
            score: if learning {
                0.0
            } else {
                shown(combined.clamp(0.0, 1.0))
            },
            learning,
            new_tool: shown(new_tool),
            unusual_transition: shown(unusual_transition),
            unusual_rate: shown(unusual_rate),
            unusual_hour: shown(unusual_hour),
            new_argument_keys: shown(new_argument_keys),
        }
    }

    /// Learns from a call (after it was scored).
    pub fn observe(&mut self, call: &Observation<'_>) {
        if let Some(rate) = self.current_rate(call.at_ms) {
            self.baseline_per_minute = Some(match self.baseline_per_minute {
                None => rate,
                Some(b) if self.calls < LEARNING_CALLS => {
                    let b = b.max(1e-9);
                    b * (LEARNING_RATE_SMOOTHING * (rate / b).ln()).exp()
                }
                Some(b) => {
                    let b = b.max(1e-9);
                    let step = (rate / b)
                        .ln()
                        .clamp(-RATE_STEP_LIMIT.ln(), RATE_STEP_LIMIT.ln());
                    b * (RATE_SMOOTHING * step).exp()
                }
            });
        }
        self.calls += 1;
        let known_tool = bounded_count(&mut self.tools, call.tool, MAX_TOOLS);
        if let Some(prev) = call.previous_tool {
            // `after` counts successors of tools already learned, so it
            // stays within the tool bound.
            if let Some(n) = self.after.get_mut(prev) {
                *n += 1;
            } else if self.tools.contains_key(prev) {
                self.after.insert(prev.to_string(), 1);
            }
            let pair = (prev.to_string(), call.tool.to_string());
            if let Some(n) = self.transitions.get_mut(&pair) {
                *n += 1;
            } else if self.transitions.len() < MAX_TRANSITIONS {
                self.transitions.insert(pair, 1);
            }
        }
        self.hours[hour_of(call.at_ms)] += 1;
        if known_tool {
            let keys = self.argument_keys.entry(call.tool.to_string()).or_default();
            for key in call.arg_keys {
                if keys.len() >= MAX_ARGUMENT_KEYS {
                    break;
                }
                if !keys.contains(key) {
                    keys.insert(key.clone());
                }
            }
        }
        self.recent.push_back(call.at_ms);
        while self.recent.len() > RATE_WINDOW {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(
        tool: &'a str,
        previous: Option<&'a str>,
        keys: &'a [String],
        at_ms: i64,
    ) -> Observation<'a> {
        Observation {
            tool,
            previous_tool: previous,
            arg_keys: keys,
            at_ms,
        }
    }

    /// A steady agent: read, then write, every five seconds, in office
    /// hours; then a burst of tools it never used, fast; then back to normal.
    #[test]
    fn a_burst_of_unseen_tools_raises_the_score_and_it_falls_back() {
        let keys = vec!["path".to_string()];
        let mut profile = Profile::default();
        let mut at = 9 * 3_600_000; // 09:00
        let mut previous: Option<&str> = None;
        let steady = ["fs.read", "fs.write"];
        let mut last_steady = 0.0;
        for i in 0..400 {
            let tool = steady[i % 2];
            let c = call(tool, previous, &keys, at);
            last_steady = profile.score(&c).score;
            profile.observe(&c);
            previous = Some(tool);
            at += 5_000;
        }
        assert!(
            !profile
                .score(&call("fs.read", previous, &keys, at))
                .learning
        );
        assert!(
            last_steady < 0.1,
            "steady behaviour scores low: {last_steady}"
        );

        let unseen = [
            "shell.exec",
            "net.upload",
            "db.drop",
            "secrets.read",
            "mail.send",
        ];
        let mut burst_scores = Vec::new();
        for tool in unseen {
            let c = call(tool, previous, &keys, at);
            let s = profile.score(&c);
            assert_eq!(s.new_tool, 1.0);
            burst_scores.push(s.score);
            profile.observe(&c);
            previous = Some(tool);
            at += 200;
        }
        let peak = burst_scores.iter().cloned().fold(0.0, f64::max);
        assert!(
            peak > 0.6,
            "unseen tools, fast, score high: {burst_scores:?}"
        );

        let mut after = 1.0;
        for i in 0..200 {
            let tool = steady[i % 2];
            let c = call(tool, previous, &keys, at);
            after = profile.score(&c).score;
            profile.observe(&c);
            previous = Some(tool);
            at += 5_000;
        }
        assert!(
            after < 0.15,
            "back to the usual pattern, the score falls back: {after}"
        );
    }

    #[test]
    fn scores_and_parts_are_shown_to_four_decimals() {
        let keys = ["path".to_string(), "mode".to_string(), "owner".to_string()];
        let mut profile = Profile::default();
        let (mut at, _) = steady(&mut profile, 120, 9 * 3_600_000, 5_000);
        let mut previous = Some("fs.read");
        let tools = ["fs.read", "fs.write", "shell.exec", "net.upload", "db.drop"];
        let mut seen = 0;
        for i in 0..300 {
            let tool = tools[(i * 7 + i / 3) % tools.len()];
            let c = call(tool, previous, &keys[..1 + i % 3], at);
            let s = profile.score(&c);
            for value in [
                s.score,
                s.new_tool,
                s.unusual_transition,
                s.unusual_rate,
                s.unusual_hour,
                s.new_argument_keys,
            ] {
                let decimals = value.to_string().split('.').nth(1).map_or(0, str::len);
                assert!(decimals <= 4, "{value} at call {i}");
                seen += usize::from(value > 0.0 && value < 1.0);
            }
            profile.observe(&c);
            previous = Some(tool);
            at += 300 + (i as i64 % 7) * 1_100;
        }
        assert!(seen > 100, "fractional values were checked: {seen}");
    }

    /// A steady agent: one call every `gap_ms`, `n` times from `at`.
    fn steady(profile: &mut Profile, n: usize, mut at: i64, gap_ms: i64) -> (i64, Vec<f64>) {
        let mut rates = Vec::new();
        for _ in 0..n {
            let c = call("fs.read", None, &[], at);
            rates.push(profile.score(&c).unusual_rate);
            profile.observe(&c);
            at += gap_ms;
        }
        (at, rates)
    }

    /// An agent back from a pause at its usual pace is not unusual; a
    /// burst right after a pause shows within one window; a burst does not
    /// drag the long-run rate up after it.
    #[test]
    fn the_rate_part_flags_bursts_not_pauses_and_a_burst_does_not_become_the_baseline() {
        let mut profile = Profile::default();
        let (at, _) = steady(&mut profile, 200, 9 * 3_600_000, 5_000);
        let usual = profile.baseline_per_minute.unwrap();
        assert!((usual - 12.0).abs() < 0.5, "{usual}");

        // Three minutes away, then the usual pace: never unusual.
        let (at, rates) = steady(&mut profile, 20, at + 180_000, 5_000);
        assert!(rates.iter().all(|r| *r == 0.0), "{rates:?}");

        // Forty seconds away, then a burst (4 ms apart): at full strength
        // once the window holds only the burst.
        let (at, rates) = steady(&mut profile, 60, at + 40_000, 4);
        assert!(
            rates[RATE_WINDOW - 1..].iter().all(|r| *r == 1.0),
            "{rates:?}"
        );
        // The burst moved the long-run rate by at most 2% of a doubling
        // per call.
        let after_burst = profile.baseline_per_minute.unwrap();
        let most = usual * (60.0 * RATE_SMOOTHING * RATE_STEP_LIMIT.ln()).exp();
        assert!(after_burst <= most, "{usual} -> {after_burst}");

        // Back to the usual pace: slower than the baseline is not unusual,
        // and the baseline comes back down.
        let (_, rates) = steady(&mut profile, 200, at + 5_000, 5_000);
        assert!(rates[RATE_WINDOW..].iter().all(|r| *r == 0.0), "{rates:?}");
        let settled = profile.baseline_per_minute.unwrap();
        assert!(settled < after_burst && settled < usual * 1.5, "{settled}");
    }

    /// An agent that works in runs (ten calls 50 ms apart, then five
    /// seconds of thinking) is not flagged at its own pace; nor is one
    /// whose first calls happened to hold a short gap.
    #[test]
    fn runs_with_short_pauses_are_the_agents_usual_pace() {
        let mut profile = Profile::default();
        let mut at = 9 * 3_600_000;
        let mut last_of_run = Vec::new();
        for _ in 0..40 {
            let (next, rates) = steady(&mut profile, 10, at, 50);
            last_of_run.push(*rates.last().unwrap());
            at = next + 5_000;
        }
        assert!(
            last_of_run[10..].iter().all(|r| *r < 0.1),
            "{last_of_run:?}"
        );
        let usual = profile.baseline_per_minute.unwrap();
        assert!((usual - 1_200.0).abs() < 60.0, "{usual}");

        let mut profile = Profile::default();
        let (at, _) = steady(&mut profile, 4, 0, 50);
        let (_, rates) = steady(&mut profile, 60, at + 5_000, 50);
        assert!(rates[50..].iter().all(|r| *r < 0.1), "{rates:?}");
    }

    #[test]
    fn new_agents_are_learning_and_parts_are_explained() {
        let mut profile = Profile::default();
        let keys = vec!["to".to_string(), "cc".to_string()];
        let first = call("mail.send", None, &keys, 0);
        let s = profile.score(&first);
        assert!(s.learning);
        assert_eq!(s.score, 0.0);
        assert_eq!(
            s.new_tool, 1.0,
            "the parts are reported even while learning"
        );
        assert_eq!(s.new_argument_keys, 1.0, "a new tool's keys are all new");
        assert_eq!(
            profile
                .score(&call("mail.send", None, &[], 0))
                .new_argument_keys,
            0.0
        );
        profile.observe(&first);
        let more = vec!["to".to_string(), "bcc".to_string()];
        let s = profile.score(&call("mail.send", None, &more, 1000));
        assert_eq!(s.new_argument_keys, 0.5);
    }

    /// An agent whose calls name endless new tools and arguments: the
    /// profile stops growing at its bounds, what it learned still counts,
    /// and names past the bound keep scoring as unseen.
    #[test]
    fn a_profile_stays_bounded_however_many_names_an_agent_invents() {
        let mut profile = Profile::default();
        let keys: Vec<String> = (0..100).map(|k| format!("k{k}")).collect();
        let names: Vec<String> = (0..MAX_TOOLS + 500).map(|i| format!("t{i}")).collect();
        let mut previous: Option<&str> = None;
        for (i, name) in names.iter().enumerate() {
            profile.observe(&call(name, previous, &keys, i as i64 * 1000));
            previous = Some(name);
        }
        for i in 0..MAX_TRANSITIONS {
            // Pairs distinct from each other and from the ones above.
            let (a, b) = (&names[i / 128], &names[200 + i % 128]);
            profile.observe(&call(b, Some(a), &[], 0));
        }
        assert_eq!(profile.tools.len(), MAX_TOOLS);
        assert!(profile.after.len() <= MAX_TOOLS);
        assert_eq!(profile.transitions.len(), MAX_TRANSITIONS);
        assert!(profile
            .argument_keys
            .values()
            .all(|k| k.len() == MAX_ARGUMENT_KEYS));
        let unlearned = names.last().unwrap();
        assert!(!profile.tools.contains_key(unlearned));
        let s = profile.score(&call(unlearned, None, &[], 0));
        assert_eq!(s.new_tool, 1.0, "a name past the bound still scores as new");
        let learned = profile.tools["t0"];
        profile.observe(&call("t0", None, &[], 0));
        assert_eq!(
            profile.tools["t0"],
            learned + 1,
            "learned tools still count"
        );
    }
}
