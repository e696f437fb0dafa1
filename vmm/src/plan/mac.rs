//! MAC addresses: the type and its checks are net_backend's (one parser
//! and formatter for every crate); the plan adds the stable generation.

pub use net_backend::{MacAddr, MacError};

/// A stable, locally administered unicast MAC (prefix `02:`) derived from
/// the VM (`namespace/name`, or the name when the spec has no namespace)
/// and interface names. `salt` > 0 picks an alternative value
/// (used to step around collisions).
pub fn generate_mac(vm: &str, iface: &str, salt: u32) -> MacAddr {
    let mut h = Fnv1a::default();
    h.write(vm.as_bytes());
    h.write(&[0]);
    h.write(iface.as_bytes());
    if salt > 0 {
        h.write(&[0]);
        h.write(&salt.to_le_bytes());
    }
    let b = h.0.to_be_bytes();
    MacAddr([0x02, b[3] ^ b[0], b[4], b[5] ^ b[1], b[6], b[7] ^ b[2]])
}

/// 64-bit FNV-1a: tiny, and unlike `DefaultHasher` stable across Rust releases.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_separators() {
        let a = MacAddr::parse_unicast("de:ad:00:00:be:af").unwrap();
        let b = MacAddr::parse_unicast("DE-AD-00-00-BE-AF").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "de:ad:00:00:be:af");
    }

    #[test]
    fn rejects_bad_syntax_multicast_and_zero() {
        for bad in [
            "de:ad:00:00:be",
            "de:ad:00:00:be:af:00",
            "de:ad-00:00:be:af",
            "dead.0000.beaf",
            "g0:00:00:00:00:01",
            "0:00:00:00:00:01",
            "",
        ] {
            assert_eq!(MacAddr::parse_unicast(bad), Err(MacError::Syntax), "{bad}");
        }
        assert_eq!(
            MacAddr::parse_unicast("01:00:5e:00:00:01"),
            Err(MacError::Multicast)
        );
        assert_eq!(
            MacAddr::parse_unicast("ff:ff:ff:ff:ff:ff"),
            Err(MacError::Multicast)
        );
        assert_eq!(
            MacAddr::parse_unicast("00:00:00:00:00:00"),
            Err(MacError::Zero)
        );
    }

    #[test]
    fn generated_macs_are_stable_local_unicast() {
        let a = generate_mac("vm1", "default", 0);
        assert_eq!(a, generate_mac("vm1", "default", 0));
        assert_eq!(a.0[0], 0x02);
        assert!(a.is_locally_administered() && !a.is_multicast());
        assert_ne!(a, generate_mac("vm1", "net1", 0));
        assert_ne!(a, generate_mac("vm2", "default", 0));
        assert_ne!(a, generate_mac("vm1", "default", 1));
        // "vm1"+"0default" must not alias "vm10"+"default".
        assert_ne!(
            generate_mac("vm1", "0default", 0),
            generate_mac("vm10", "default", 0)
        );
        // Pinned value: changing the derivation would change guests' MACs.
        assert_eq!(a.to_string(), "02:98:08:ac:f7:a5");
    }
}
