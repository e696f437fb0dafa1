//! MAC addresses: parsing, checks, and stable generation.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// An Ethernet MAC address. Displays and serializes as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Example shown in error messages.
pub(crate) const EXAMPLE_MAC: &str = "02:00:00:00:00:01";

/// Why a MAC address was rejected (the texts complete "`<value>` ...").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("is not a MAC address; use six hex byte pairs separated by ':' or '-', such as {EXAMPLE_MAC}")]
    Syntax,
    #[error("is a multicast address; use a unicast MAC such as {EXAMPLE_MAC}")]
    Multicast,
    #[error("is the all-zero address; use a unicast MAC such as {EXAMPLE_MAC}")]
    Zero,
}

impl MacAddr {
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// Parses `aa:bb:cc:dd:ee:ff` or `AA-BB-CC-DD-EE-FF` (one separator kind
    /// throughout) and rejects multicast and all-zero addresses.
    pub fn parse_unicast(text: &str) -> Result<MacAddr, MacError> {
        let mac: MacAddr = text.parse()?;
        if mac.is_multicast() {
            Err(MacError::Multicast)
        } else if mac.0 == [0; 6] {
            Err(MacError::Zero)
        } else {
            Ok(mac)
        }
    }

    /// A stable, locally administered unicast MAC (prefix `02:`) derived from
    /// the VM and interface names. `salt` > 0 picks an alternative value
    /// (used to step around collisions).
    pub fn generate(vm: &str, iface: &str, salt: u32) -> MacAddr {
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

impl FromStr for MacAddr {
    type Err = MacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or(MacError::Syntax)?;
            if part.len() != 2 || !part.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(MacError::Syntax);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacError::Syntax)?;
        }
        if parts.next().is_some() {
            return Err(MacError::Syntax);
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
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
        let a = MacAddr::generate("vm1", "default", 0);
        assert_eq!(a, MacAddr::generate("vm1", "default", 0));
        assert_eq!(a.0[0], 0x02);
        assert!(a.is_locally_administered() && !a.is_multicast());
        assert_ne!(a, MacAddr::generate("vm1", "net1", 0));
        assert_ne!(a, MacAddr::generate("vm2", "default", 0));
        assert_ne!(a, MacAddr::generate("vm1", "default", 1));
        // "vm1"+"0default" must not alias "vm10"+"default".
        assert_ne!(
            MacAddr::generate("vm1", "0default", 0),
            MacAddr::generate("vm10", "default", 0)
        );
        // Pinned value: changing the derivation would change guests' MACs.
        assert_eq!(a.to_string(), "02:98:08:ac:f7:a5");
    }
}
