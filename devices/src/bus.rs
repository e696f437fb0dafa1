//! Port-I/O and MMIO dispatch: devices register an address range and get
//! accesses relative to its base.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device reachable through a range of guest port-I/O or MMIO addresses.
pub trait BusDevice: Send {
    /// Guest read of `data.len()` bytes at `offset` from the range base.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest write of `data` at `offset` from the range base.
    fn write(&mut self, offset: u64, data: &[u8]);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus range {base:#x}+{len:#x} is empty or wraps around")]
    BadRange { base: u64, len: u64 },
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Range {
    base: u64,
    len: u64,
}

type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// An address space (one for port I/O, one for MMIO) shared by all vCPUs.
#[derive(Clone, Default)]
pub struct Bus {
    devices: BTreeMap<u64, (Range, SharedDevice)>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<_> = self
            .devices
            .values()
            .map(|(r, _)| format!("{:#x}+{:#x}", r.base, r.len))
            .collect();
        f.debug_struct("Bus").field("ranges", &ranges).finish()
    }
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(BusError::BadRange { base, len });
        }
        let end = base + len;
        let overlaps = self
            .devices
            .values()
            .any(|(r, _)| base < r.base + r.len && r.base < end);
        if overlaps {
            return Err(BusError::Overlap { base, len });
        }
        self.devices.insert(base, (Range { base, len }, device));
        Ok(())
    }

    fn resolve(&self, addr: u64) -> Option<(u64, &SharedDevice)> {
        let (_, (range, dev)) = self.devices.range(..=addr).next_back()?;
        let offset = addr - range.base;
        (offset < range.len).then_some((offset, dev))
    }

    /// Dispatches a read; returns false when no device claims `addr`
    /// (the caller then returns all-ones, like an open ISA/PCI bus).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr) {
            Some((offset, dev)) => {
                // A poisoned lock means another vCPU panicked inside the
                // device; the device state is still plain data, keep going.
                let mut d = dev.lock().unwrap_or_else(|e| e.into_inner());
                d.read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write; returns false when no device claims `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr) {
            Some((offset, dev)) => {
                let mut d = dev.lock().unwrap_or_else(|e| e.into_inner());
                d.write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo {
        last: Vec<(u64, Vec<u8>)>,
    }
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatch_by_range() {
        let dev = Arc::new(Mutex::new(Echo { last: vec![] }));
        let mut bus = Bus::new();
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fa, &mut b));
        assert_eq!(b[0], 2);
        assert!(!bus.read(0x400, &mut b));
        assert!(!bus.read(0x3f7, &mut b));
        assert!(bus.write(0x3ff, &[9]));
        assert_eq!(dev.lock().unwrap().last, vec![(7, vec![9])]);
    }

    #[test]
    fn rejects_overlap_and_empty() {
        let mut bus = Bus::new();
        let d = || Arc::new(Mutex::new(Echo { last: vec![] }));
        bus.insert(d(), 0x60, 5).unwrap();
        assert_eq!(
            bus.insert(d(), 0x64, 1),
            Err(BusError::Overlap { base: 0x64, len: 1 })
        );
        assert_eq!(
            bus.insert(d(), 0x5c, 5),
            Err(BusError::Overlap { base: 0x5c, len: 5 })
        );
        assert_eq!(
            bus.insert(d(), 0x10, 0),
            Err(BusError::BadRange { base: 0x10, len: 0 })
        );
        assert_eq!(
            bus.insert(d(), u64::MAX, 2),
            Err(BusError::BadRange {
                base: u64::MAX,
                len: 2
            })
        );
        bus.insert(d(), 0x65, 1).unwrap();
    }
}
