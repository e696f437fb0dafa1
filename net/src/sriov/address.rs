//! PCI function addresses as the device plugin, the SR-IOV CNI and sysfs
//! write them.

use std::fmt;
use std::str::FromStr;

/// A PCI function address, `domain:bus:device.function`.
///
/// Kept parsed rather than as a string so that the same VF spelled in
/// upper and lower case by two sources compares equal, and so the sysfs
/// name built from it is always the canonical, lower-case one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

/// A string that is not a `dddd:bb:dd.f` PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a PCI address (expected domain:bus:device.function, e.g. 0000:65:00.2)")]
pub struct ParsePciAddressError {
    pub input: String,
}

impl FromStr for PciAddress {
    type Err = ParsePciAddressError;

    /// Accepts what sysfs, the device plugin and the SR-IOV CNI write: a
    /// 4-digit (or, behind Intel VMD, longer) hex domain, 2-digit bus and
    /// device, 1-digit function. Shorter forms are refused because sysfs
    /// never uses them, so they would only hide a producer's bug.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParsePciAddressError {
            input: s.to_string(),
        };
        let hex = |part: &str, min: usize, max: usize| -> Option<u32> {
            let ok =
                (min..=max).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| u32::from_str_radix(part, 16).ok()).flatten()
        };
        let (domain, rest) = s.split_once(':').ok_or_else(bad)?;
        let (bus, rest) = rest.split_once(':').ok_or_else(bad)?;
        let (device, function) = rest.split_once('.').ok_or_else(bad)?;
        let domain = hex(domain, 4, 8).ok_or_else(bad)?;
        let bus = hex(bus, 2, 2).ok_or_else(bad)?;
        let device = hex(device, 2, 2).filter(|d| *d < 32).ok_or_else(bad)?;
        let function = hex(function, 1, 1).filter(|f| *f < 8).ok_or_else(bad)?;
        Ok(PciAddress {
            domain,
            bus: u8::try_from(bus).map_err(|_| bad())?,
            device: u8::try_from(device).map_err(|_| bad())?,
            function: u8::try_from(function).map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for PciAddress {
    /// The sysfs spelling, so the result can be joined to a sysfs path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sriov::tests::support::addr;

    #[test]
    fn pci_address_parses_and_displays_canonically() {
        let a = addr("0000:65:00.2");
        assert_eq!(
            a,
            PciAddress {
                domain: 0,
                bus: 0x65,
                device: 0,
                function: 2
            }
        );
        assert_eq!(a.to_string(), "0000:65:00.2");
        assert_eq!(addr("0000:AF:1F.7").to_string(), "0000:af:1f.7");
        assert_eq!(addr("10000:01:00.0").to_string(), "10000:01:00.0");
        for bad in [
            "",
            "65:00.2",
            "0000:65:00",
            "0000:65:00.8",
            "0000:65:20.0",
            "000:65:00.2",
            "0000:6:00.2",
            "0000:65:00.2.1",
            "zzzz:65:00.2",
            "0000:65:00.2 ",
            "+000:65:00.2",
        ] {
            let err = bad.parse::<PciAddress>().unwrap_err();
            assert_eq!(err.input, bad);
        }
    }
}
