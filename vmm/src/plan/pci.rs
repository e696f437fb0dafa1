//! PCI addresses: parsing and automatic slot assignment.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// A PCI address; displays (and serializes) as `dddd:bb:dd.f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

/// First slot handed out automatically (slot 0 is the host bridge).
pub const FIRST_AUTO_DEVICE: u8 = 2;
/// Highest device number on a bus.
pub const MAX_DEVICE: u8 = 0x1f;

/// Why a PCI address was rejected (the texts complete "`<value>` ...").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PciError {
    #[error("is not a PCI address; use dddd:bb:dd.f in hex with device <= 1f and function <= 7, e.g. 0000:00:03.0")]
    Syntax,
    #[error("is the host bridge slot; use a device number from 01 to 1f")]
    HostBridge,
    #[error("is not on petrel's PCI bus; petrel has one bus and puts each NIC at function 0: use 0000:00:dd.0 with dd from 01 to 1f")]
    NotOnRootBus,
}

impl PciAddress {
    pub const fn new(domain: u16, bus: u8, device: u8, function: u8) -> Self {
        PciAddress {
            domain,
            bus,
            device,
            function,
        }
    }

    /// True if both addresses are on the same slot (any function).
    pub fn same_slot(&self, other: &PciAddress) -> bool {
        (self.domain, self.bus, self.device) == (other.domain, other.bus, other.device)
    }

    /// Parses an address a NIC can have in petrel's machine: bus 0000:00,
    /// function 0, not the host bridge slot.
    pub fn parse_for_device(text: &str) -> Result<PciAddress, PciError> {
        let a: PciAddress = text.parse()?;
        if a.domain != 0 || a.bus != 0 || a.function != 0 {
            return Err(PciError::NotOnRootBus);
        }
        if a.device == 0 {
            return Err(PciError::HostBridge);
        }
        Ok(a)
    }
}

fn hex_field(s: &str, len: usize) -> Result<u32, PciError> {
    if s.len() != len || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(PciError::Syntax);
    }
    u32::from_str_radix(s, 16).map_err(|_| PciError::Syntax)
}

impl FromStr for PciAddress {
    type Err = PciError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (domain, rest) = s.split_once(':').ok_or(PciError::Syntax)?;
        let (bus, rest) = rest.split_once(':').ok_or(PciError::Syntax)?;
        let (device, function) = rest.split_once('.').ok_or(PciError::Syntax)?;
        let domain = hex_field(domain, 4)?;
        let bus = hex_field(bus, 2)?;
        let device = hex_field(device, 2)?;
        let function = hex_field(function, 1)?;
        if device > u32::from(MAX_DEVICE) || function > 7 {
            return Err(PciError::Syntax);
        }
        Ok(PciAddress {
            domain: u16::try_from(domain).map_err(|_| PciError::Syntax)?,
            bus: u8::try_from(bus).map_err(|_| PciError::Syntax)?,
            device: u8::try_from(device).map_err(|_| PciError::Syntax)?,
            function: u8::try_from(function).map_err(|_| PciError::Syntax)?,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl Serialize for PciAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Hands out free slots on bus `0000:00`, in order, from slot 2 up,
/// skipping slots used by explicit addresses.
pub(crate) struct SlotAllocator {
    taken: Vec<PciAddress>,
    next: u8,
}

impl SlotAllocator {
    pub fn new(explicit: impl IntoIterator<Item = PciAddress>) -> Self {
        SlotAllocator {
            taken: explicit.into_iter().collect(),
            next: FIRST_AUTO_DEVICE,
        }
    }

    pub fn allocate(&mut self) -> Option<PciAddress> {
        while self.next <= MAX_DEVICE {
            let candidate = PciAddress::new(0, 0, self.next, 0);
            self.next += 1;
            if !self.taken.iter().any(|t| t.same_slot(&candidate)) {
                return Some(candidate);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let a: PciAddress = "0000:81:00.1".parse().unwrap();
        assert_eq!(a, PciAddress::new(0, 0x81, 0, 1));
        assert_eq!(a.to_string(), "0000:81:00.1");
        let b: PciAddress = "000A:0f:1F.7".parse().unwrap();
        assert_eq!(b.to_string(), "000a:0f:1f.7");
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "0000:00:20.0",
            "0000:00:03.8",
            "00:03.0",
            "0000:00:3.0",
            "0000-00-03.0",
            "0000:00:03",
            "000g:00:03.0",
            "",
        ] {
            assert_eq!(bad.parse::<PciAddress>(), Err(PciError::Syntax), "{bad}");
        }
        assert_eq!(
            PciAddress::parse_for_device("0000:00:00.0"),
            Err(PciError::HostBridge)
        );
        assert_eq!(
            PciAddress::parse_for_device("0000:01:00.0"),
            Err(PciError::NotOnRootBus)
        );
        assert!(PciAddress::parse_for_device("0000:00:1f.0").is_ok());
    }

    #[test]
    fn allocator_skips_explicit_slots() {
        let mut alloc = SlotAllocator::new([
            PciAddress::new(0, 0, 2, 1),
            PciAddress::new(0, 0, 4, 0),
            PciAddress::new(0, 1, 3, 0),
        ]);
        assert_eq!(alloc.allocate(), Some(PciAddress::new(0, 0, 3, 0)));
        assert_eq!(alloc.allocate(), Some(PciAddress::new(0, 0, 5, 0)));
        let mut n = 2;
        while alloc.allocate().is_some() {
            n += 1;
        }
        // slots 2..=0x1f minus 2 and 4.
        assert_eq!(n, 0x1f - 2 + 1 - 2);
    }
}
