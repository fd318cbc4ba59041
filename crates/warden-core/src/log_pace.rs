//! Warnings of a failure that repeats (shared by the store and the
//! server): the first is logged, then at most
//! one a minute with the count since. A loop retrying every second on a
//! damaged store or an unreachable database would otherwise fill the log
//! with the same line.

use std::time::{Duration, Instant};

/// The quiet time between two lines of one repeating failure.
const QUIET: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Paced {
    last: Option<Instant>,
    since: u64,
}

impl Paced {
    pub const fn new() -> Self {
        Paced {
            last: None,
            since: 0,
        }
    }

    /// `Some(count of failures not logged since the last line)` when this
    /// one is to be logged.
    pub fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|at| now < at + QUIET) {
            self.since += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }

    /// The failure ended: the next one is logged at once.
    pub fn reset(&mut self) {
        *self = Paced::default();
    }
}

/// A [`Paced`] shared by every caller of one failing path (a static of
/// the module that logs it).
pub struct SharedPaced(std::sync::Mutex<Paced>);

impl SharedPaced {
    pub const fn new() -> Self {
        SharedPaced(std::sync::Mutex::new(Paced::new()))
    }

    /// As [`Paced::due`].
    pub fn due(&self) -> Option<u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).due()
    }

    /// As [`Paced::reset`].
    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).reset()
    }
}

impl Default for SharedPaced {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_failure_is_logged_once_a_minute_with_its_count() {
        let mut paced = Paced::default();
        assert_eq!(paced.due(), Some(0));
        assert_eq!(paced.due(), None);
        assert_eq!(paced.due(), None);
        paced.last = Some(Instant::now() - QUIET);
        assert_eq!(paced.due(), Some(2));
        paced.reset();
        assert_eq!(paced.due(), Some(0));
    }
}
