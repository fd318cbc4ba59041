//! What one call may spend of a bounded resource (evaluation time, loop
//! runs, the work of its redactions), shared by everything that works on
//! the call, whichever thread it runs on.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug)]
pub struct Allowance(AtomicU64);

impl Allowance {
    pub const fn new(amount: u64) -> Self {
        Allowance(AtomicU64::new(amount))
    }

    /// Takes `n` if that much is left; otherwise takes nothing.
    pub fn take(&self, n: u64) -> bool {
        self.0
            .fetch_update(Relaxed, Relaxed, |left| left.checked_sub(n))
            .is_ok()
    }

    /// Takes `n`, or all that is left.
    pub fn drain(&self, n: u64) {
        let _ = self
            .0
            .fetch_update(Relaxed, Relaxed, |left| Some(left.saturating_sub(n)));
    }

    pub fn left(&self) -> u64 {
        self.0.load(Relaxed)
    }

    pub fn is_spent(&self) -> bool {
        self.left() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_what_is_left_and_drains_to_nothing() {
        let a = Allowance::new(10);
        assert!(a.take(4));
        assert!(!a.take(7));
        assert_eq!(a.left(), 6);
        a.drain(100);
        assert!(a.is_spent());
    }
}
