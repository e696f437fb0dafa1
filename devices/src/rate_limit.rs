//! One policy for guest-triggerable log sites: log the 1st, 2nd, 4th, 8th…
//! occurrence of an event, so a hostile guest cannot flood the log while
//! the first few (and the growing count) stay visible.
//!
//! Counters that already exist (metrics atomics) use [`should_log`] on the
//! value they just reached; sites without one keep a [`LogRateLimiter`].

/// True for occurrence 1, 2, 4, 8, …: whether the `occurrences`-th event
/// of a kind is logged.
pub fn should_log(occurrences: u64) -> bool {
    occurrences.is_power_of_two()
}

/// Counts the occurrences of one kind of event and says which to log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogRateLimiter {
    occurrences: u64,
}

impl LogRateLimiter {
    pub const fn new() -> Self {
        Self { occurrences: 0 }
    }

    /// Counts one occurrence; `Some(count)` when this one is to be logged.
    pub fn hit(&mut self) -> Option<u64> {
        self.occurrences = self.occurrences.saturating_add(1);
        should_log(self.occurrences).then_some(self.occurrences)
    }

    /// Occurrences counted so far.
    pub fn occurrences(&self) -> u64 {
        self.occurrences
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_powers_of_two() {
        let mut l = LogRateLimiter::new();
        let logged: Vec<u64> = (0..20).filter_map(|_| l.hit()).collect();
        assert_eq!(logged, [1, 2, 4, 8, 16]);
        assert_eq!(l.occurrences(), 20);
        assert!(!should_log(0));
        assert!(should_log(1024));
    }
}
