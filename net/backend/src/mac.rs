//! Ethernet MAC addresses: the one parser and formatter every crate uses.

use std::fmt;
use std::str::FromStr;

/// An Ethernet MAC address. Displays as `aa:bb:cc:dd:ee:ff`; parses that
/// form or `AA-BB-CC-DD-EE-FF` (one separator kind throughout, two hex
/// digits per byte).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Example shown in error messages.
const EXAMPLE_MAC: &str = "02:00:00:00:00:01";

/// Why a MAC address was rejected (the texts complete "`<value>` ...").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// Not six hex byte pairs with one kind of separator.
    #[error(
        "is not a MAC address; use six hex byte pairs separated by ':' or '-', such as {EXAMPLE_MAC}"
    )]
    Syntax,
    /// The group bit is set.
    #[error("is a multicast address; use a unicast MAC such as {EXAMPLE_MAC}")]
    Multicast,
    /// `00:00:00:00:00:00`.
    #[error("is the all-zero address; use a unicast MAC such as {EXAMPLE_MAC}")]
    Zero,
}

impl MacAddr {
    /// The bytes.
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Whether the group (multicast) bit is set.
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether the locally administered bit is set.
    pub const fn is_locally_administered(self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// Parses like [`FromStr`] and rejects multicast and all-zero
    /// addresses.
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
}

impl From<[u8; 6]> for MacAddr {
    fn from(bytes: [u8; 6]) -> Self {
        MacAddr(bytes)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(mac: MacAddr) -> Self {
        mac.0
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
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_both_separators() {
        let mac = MacAddr([0x02, 0x00, 0xab, 0xcd, 0xef, 0x01]);
        assert_eq!(mac.to_string(), "02:00:ab:cd:ef:01");
        assert_eq!("02:00:ab:cd:ef:01".parse(), Ok(mac));
        assert_eq!("02-00-AB-CD-EF-01".parse(), Ok(mac));
        assert_eq!(<[u8; 6]>::from(mac), mac.octets());
        assert_eq!(MacAddr::from(mac.0), mac);
    }

    #[test]
    fn rejects_bad_syntax_multicast_and_zero() {
        for bad in [
            "02:00:ab:cd:ef",
            "02:00:ab:cd:ef:01:02",
            "2:00:ab:cd:ef:01",
            "zz:00:ab:cd:ef:01",
            "+f:00:ab:cd:ef:01",
            "de:ad-00:00:be:af",
            "dead.0000.beaf",
            "",
        ] {
            assert_eq!(bad.parse::<MacAddr>(), Err(MacError::Syntax), "{bad}");
        }
        assert_eq!(
            MacAddr::parse_unicast("01:00:5e:00:00:01"),
            Err(MacError::Multicast)
        );
        assert_eq!(
            MacAddr::parse_unicast("00:00:00:00:00:00"),
            Err(MacError::Zero)
        );
        let local = MacAddr::parse_unicast("02:00:00:00:00:01").unwrap();
        assert!(local.is_locally_administered() && !local.is_multicast());
    }
}
