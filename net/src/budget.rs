//! Caps on the work one guest action causes on the control thread: each
//! wakeup of a DHCPv4, DHCPv6 or router-solicitation socket serves at most
//! [`MAX_DATAGRAMS_PER_WAKEUP`] datagrams (the sockets are level-triggered,
//! so the rest wake the loop again after the other sources had their
//! turn), and multicast router advertisements keep RFC 4861's
//! MIN_DELAY_BETWEEN_RAS ([`RaRateLimit`]).

use std::time::{Duration, Instant};

/// Datagrams one readable event serves before the loop moves on.
pub const MAX_DATAGRAMS_PER_WAKEUP: usize = 16;

/// RFC 4861 §10: MIN_DELAY_BETWEEN_RAS.
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);

/// RFC 4861 §6.2.6: advertisements to the all-nodes address are sent at
/// most once per [`MIN_DELAY_BETWEEN_RAS`]; a solicitation inside that
/// window is answered when it ends.
#[derive(Debug, Clone, Default)]
pub struct RaRateLimit {
    last: Option<Instant>,
}

impl RaRateLimit {
    /// `Ok` when an advertisement may go out at `now`, else how long until
    /// it may.
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.last {
            Some(last) => {
                let since = now.saturating_duration_since(last);
                if since >= MIN_DELAY_BETWEEN_RAS {
                    Ok(())
                } else {
                    Err(MIN_DELAY_BETWEEN_RAS - since)
                }
            }
            None => Ok(()),
        }
    }

    /// Records an advertisement sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertisements_are_three_seconds_apart() {
        let t0 = Instant::now();
        let mut limit = RaRateLimit::default();
        assert_eq!(limit.check(t0), Ok(()));
        limit.sent(t0);
        assert_eq!(limit.check(t0), Err(MIN_DELAY_BETWEEN_RAS));
        assert_eq!(
            limit.check(t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(2))
        );
        assert_eq!(limit.check(t0 + MIN_DELAY_BETWEEN_RAS), Ok(()));
    }

    #[test]
    fn a_solicitation_flood_gets_one_advertisement_per_window() {
        // 1000 solicitations over 10 s, one every 10 ms: the answers a
        // limited sender gives are the ones 3 s apart.
        let t0 = Instant::now();
        let mut limit = RaRateLimit::default();
        let mut sent = 0;
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(10 * i);
            if limit.check(now).is_ok() {
                limit.sent(now);
                sent += 1;
            }
        }
        assert_eq!(sent, 4, "at 0, 3, 6 and 9 s");
    }
}
