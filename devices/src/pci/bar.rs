//! BAR placement (petrel assigns BARs itself; there is no firmware) and the
//! bus adapter that makes one BAR reachable on the MMIO (or port I/O) bus.

use std::sync::{Arc, Mutex};

use super::{Bar, PciDevice};
use crate::bus::BusDevice;

/// Hands out naturally aligned ranges from a window (e.g. the PCI MMIO32
/// hole 0xC000_0000..0xFEC0_0000). Allocation bumps upwards (alignment
/// gaps are skipped, not reused) and ranges are
/// never freed (no hotplug).
#[derive(Debug, Clone)]
pub struct BarAllocator {
    next: u64,
    end: u64,
}

impl BarAllocator {
    /// A window of `size` bytes at `base`.
    pub fn new(base: u64, size: u64) -> Self {
        Self {
            next: base,
            end: base.saturating_add(size),
        }
    }

    /// Allocates `size` bytes (a non-zero power of two) aligned to
    /// `max(size, align)`; `None` when the size is invalid or the window is
    /// full.
    pub fn allocate(&mut self, size: u64, align: u64) -> Option<u64> {
        if !size.is_power_of_two() || (align != 0 && !align.is_power_of_two()) {
            return None;
        }
        let align = size.max(align);
        let addr = self.next.checked_next_multiple_of(align)?;
        let end = addr.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(addr)
    }
}

/// One BAR of a PCI device as a [`BusDevice`]: insert it on the MMIO bus at
/// `bar.addr` with length `bar.size` (or on the I/O bus for I/O BARs).
/// Accesses are forwarded to [`PciDevice::bar_read`]/[`PciDevice::bar_write`]
/// with the offset from the BAR's base.
pub struct PciBarRegion {
    device: Arc<Mutex<dyn PciDevice>>,
    bar: u8,
}

impl PciBarRegion {
    pub fn new(device: Arc<Mutex<dyn PciDevice>>, bar: u8) -> Self {
        Self { device, bar }
    }

    /// One region per BAR of `device`, with the BAR describing where it
    /// goes: `bus.insert(Arc::new(Mutex::new(region)), bar.addr, bar.size)`.
    pub fn for_device(device: &Arc<Mutex<dyn PciDevice>>) -> Vec<(Bar, PciBarRegion)> {
        let bars = device.lock().unwrap_or_else(|e| e.into_inner()).bars();
        bars.into_iter()
            .map(|bar| (bar, PciBarRegion::new(device.clone(), bar.index)))
            .collect()
    }
}

impl BusDevice for PciBarRegion {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut dev = self.device.lock().unwrap_or_else(|e| e.into_inner());
        dev.bar_read(self.bar, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut dev = self.device.lock().unwrap_or_else(|e| e.into_inner());
        dev.bar_write(self.bar, offset, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::BarKind;

    #[test]
    fn allocator_aligns_and_fills() {
        let mut a = BarAllocator::new(0xc000_0000, 0x3ec0_0000);
        assert_eq!(a.allocate(0x1000, 0), Some(0xc000_0000));
        assert_eq!(a.allocate(0x8000, 0x1000), Some(0xc000_8000));
        assert_eq!(a.allocate(0x10, 0x1000), Some(0xc001_0000));
        assert_eq!(a.allocate(0x3000, 0), None);
        assert_eq!(a.allocate(0x1000, 3), None);
        assert_eq!(a.allocate(0x1000_0000, 0), Some(0xd000_0000));
        assert_eq!(a.allocate(0x4000_0000, 0), None);
        let mut small = BarAllocator::new(0x1000, 0x3000);
        assert_eq!(small.allocate(0x2000, 0), Some(0x2000));
        assert_eq!(small.allocate(0x10, 0), None);
        let mut top = BarAllocator::new(u64::MAX - 0xfff, 0x1000);
        assert_eq!(top.allocate(0x2000, 0), None);
    }

    struct Recorder {
        log: Vec<(u8, u64, Vec<u8>)>,
    }
    impl PciDevice for Recorder {
        fn config_read(&mut self, _reg: usize) -> u32 {
            0
        }
        fn config_write(&mut self, _reg: usize, _offset: u64, _data: &[u8]) {}
        fn bars(&self) -> Vec<Bar> {
            vec![Bar {
                index: 2,
                addr: 0xc000_0000,
                size: 0x1000,
                kind: BarKind::Mmio32,
            }]
        }
        fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
            data.fill(bar + offset as u8);
        }
        fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
            self.log.push((bar, offset, data.to_vec()));
        }
    }

    #[test]
    fn region_forwards_to_device() {
        let rec = Arc::new(Mutex::new(Recorder { log: vec![] }));
        let dev: Arc<Mutex<dyn PciDevice>> = rec.clone();
        let regions = PciBarRegion::for_device(&dev);
        assert_eq!(regions.len(), 1);
        let (bar, region) = regions.into_iter().next().unwrap();
        assert_eq!(bar.addr, 0xc000_0000);
        let mut bus = crate::Bus::new();
        bus.insert(Arc::new(Mutex::new(region)), bar.addr, bar.size)
            .unwrap();
        let mut b = [0u8; 2];
        assert!(bus.read(0xc000_0010, &mut b));
        assert_eq!(b, [0x12, 0x12]);
        assert!(bus.write(0xc000_0ffc, &[1, 2, 3, 4]));
        assert_eq!(rec.lock().unwrap().log, vec![(2, 0xffc, vec![1, 2, 3, 4])]);
    }
}
