//! When unsolicited router advertisements go out (RFC 4861 §6.2.4, §10).

use std::time::Duration;

/// RFC 4861 §6.2.4/§10: the first unsolicited advertisements go out at most
/// 16 s apart (3 of them), then every MinRtrAdvInterval..MaxRtrAdvInterval
/// (200..600 s by default), randomized so routers on a link do not
/// synchronize. `sent` counts the unsolicited ones so far; `unit` is a
/// random number in [0, 1).
pub(crate) fn ra_interval(sent: u32, unit: f64) -> Duration {
    const MAX_INITIAL_INTERVAL: u64 = 16;
    const MAX_INITIAL_ADVERTISEMENTS: u32 = 3;
    const MIN_INTERVAL: u64 = 200;
    const MAX_INTERVAL: u64 = 600;
    if sent < MAX_INITIAL_ADVERTISEMENTS {
        return Duration::from_secs(MAX_INITIAL_INTERVAL);
    }
    let spread = (MAX_INTERVAL - MIN_INTERVAL) as f64 * unit.clamp(0.0, 1.0);
    Duration::from_secs(MIN_INTERVAL) + Duration::from_secs_f64(spread)
}

/// A number in [0, 1) that differs between petrel processes (for the RA
/// jitter; nothing secret depends on it).
pub(crate) fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ra_schedule_follows_rfc4861() {
        for sent in 0..3 {
            assert_eq!(ra_interval(sent, 0.9), Duration::from_secs(16));
        }
        assert_eq!(ra_interval(3, 0.0), Duration::from_secs(200));
        assert_eq!(ra_interval(9, 0.5), Duration::from_secs(400));
        assert!(ra_interval(9, 0.999_999) <= Duration::from_secs(600));
        // Out-of-range randomness is clamped.
        assert_eq!(ra_interval(5, 7.0), Duration::from_secs(600));
        assert_eq!(ra_interval(5, -1.0), Duration::from_secs(200));
    }

    #[test]
    fn jitter_is_a_unit_fraction() {
        for _ in 0..100 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
