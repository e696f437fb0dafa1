//! The root bus (bus 0), its host bridge and the type-1 configuration
//! mechanism at ports 0xcf8 (address) / 0xcfc..0xcff (data).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{
    extract_bytes, merge_dword, Bar, PciConfiguration, PciDevice, PciError, PciIds, MAX_SLOT,
};
use crate::bus::BusDevice;

/// Port of the configuration address register.
pub const PCI_CONFIG_IO_BASE: u64 = 0xcf8;
/// Ports 0xcf8..=0xcff.
pub const PCI_CONFIG_IO_LEN: u64 = 8;

const CONFIG_ENABLE: u32 = 1 << 31;

/// Device 0 of bus 0: an Intel host bridge with no BARs. Linux's type-1
/// sanity check looks for a host bridge (class 0x0600) on bus 0.
pub struct PciHostBridge {
    config: PciConfiguration,
}

impl Default for PciHostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciHostBridge {
    pub fn new() -> Self {
        Self {
            config: PciConfiguration::new(PciIds {
                vendor_id: 0x8086,
                device_id: 0x0d57,
                revision: 0,
                class_code: 0x06_00_00,
                subsystem_vendor_id: 0,
                subsystem_id: 0,
            }),
        }
    }
}

impl PciDevice for PciHostBridge {
    fn config_read(&mut self, reg: usize) -> u32 {
        self.config.read_reg(reg)
    }
    fn config_write(&mut self, reg: usize, offset: u64, data: &[u8]) {
        self.config.write_reg(reg, offset, data);
    }
    fn bars(&self) -> Vec<Bar> {
        vec![]
    }
    fn bar_read(&mut self, _bar: u8, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn bar_write(&mut self, _bar: u8, _offset: u64, _data: &[u8]) {}
}

type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// PCI bus 0 with the host bridge in slot 0.
pub struct PciBus {
    devices: BTreeMap<u8, SharedPciDevice>,
}

impl Default for PciBus {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PciBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slots: Vec<_> = self.devices.keys().collect();
        f.debug_struct("PciBus").field("slots", &slots).finish()
    }
}

impl PciBus {
    /// A bus holding only the host bridge (slot 0).
    pub fn new() -> Self {
        let mut devices: BTreeMap<u8, SharedPciDevice> = BTreeMap::new();
        devices.insert(0, Arc::new(Mutex::new(PciHostBridge::new())));
        Self { devices }
    }

    /// Puts `device` at device number `slot` (1..=31; 0 is the host
    /// bridge).
    pub fn add_device(&mut self, slot: u8, device: SharedPciDevice) -> Result<(), PciError> {
        if slot > MAX_SLOT {
            return Err(PciError::SlotOutOfRange(slot));
        }
        if self.devices.contains_key(&slot) {
            return Err(PciError::SlotTaken(slot));
        }
        self.devices.insert(slot, device);
        Ok(())
    }

    /// Resets every device for a machine reset ([`PciDevice::machine_reset`]).
    pub fn reset_devices(&self) {
        for dev in self.devices.values() {
            dev.lock()
                .unwrap_or_else(|e| e.into_inner())
                .machine_reset();
        }
    }

    /// The lowest free slot, if any.
    pub fn next_free_slot(&self) -> Option<u8> {
        (0..=MAX_SLOT).find(|s| !self.devices.contains_key(s))
    }

    /// The device at `slot`.
    pub fn device(&self, slot: u8) -> Option<&SharedPciDevice> {
        self.devices.get(&slot)
    }

    fn function(&self, bus: u8, slot: u8, func: u8) -> Option<&SharedPciDevice> {
        if bus != 0 || func != 0 {
            return None;
        }
        self.devices.get(&slot)
    }

    /// Reads configuration dword `reg` of bus/slot/function; absent
    /// functions read all-ones.
    pub fn config_read(&self, bus: u8, slot: u8, func: u8, reg: usize) -> u32 {
        match self.function(bus, slot, func) {
            Some(d) => d.lock().unwrap_or_else(|e| e.into_inner()).config_read(reg),
            None => u32::MAX,
        }
    }

    /// Writes configuration space of bus/slot/function; writes to absent
    /// functions are dropped.
    pub fn config_write(&self, bus: u8, slot: u8, func: u8, reg: usize, offset: u64, data: &[u8]) {
        if let Some(d) = self.function(bus, slot, func) {
            d.lock()
                .unwrap_or_else(|e| e.into_inner())
                .config_write(reg, offset, data);
        }
    }
}

/// The type-1 configuration mechanism; insert it on the port I/O bus at
/// [`PCI_CONFIG_IO_BASE`] with length [`PCI_CONFIG_IO_LEN`].
///
/// Only 32-bit accesses to 0xcf8 reach the address register (as on real
/// chipsets; Linux's probe does a byte write to 0xcfb first, which must
/// not disturb it). 0xcf9 is not a reset register here. The data window
/// 0xcfc..=0xcff takes 1-, 2- and 4-byte accesses that stay inside the
/// dword.
pub struct PciConfigIo {
    bus: Arc<Mutex<PciBus>>,
    address: u32,
}

impl PciConfigIo {
    pub fn new(bus: Arc<Mutex<PciBus>>) -> Self {
        Self { bus, address: 0 }
    }

    /// (bus, device, function, register) selected by the address register,
    /// when enabled.
    fn target(&self) -> Option<(u8, u8, u8, usize)> {
        if self.address & CONFIG_ENABLE == 0 {
            return None;
        }
        let a = self.address;
        Some((
            (a >> 16) as u8,
            ((a >> 11) & 0x1f) as u8,
            ((a >> 8) & 0x7) as u8,
            ((a >> 2) & 0x3f) as usize,
        ))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            0..=3 => extract_bytes(u64::from(self.address), 4, offset, data),
            4..=7 => {
                let within = offset - 4;
                let fits = matches!(data.len(), 1 | 2 | 4) && within + data.len() as u64 <= 4;
                let value = match self.target() {
                    Some((bus, dev, func, reg)) if fits => {
                        let b = self.bus.lock().unwrap_or_else(|e| e.into_inner());
                        b.config_read(bus, dev, func, reg)
                    }
                    _ => u32::MAX,
                };
                extract_bytes(u64::from(value), 4, within, data);
            }
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                if let Some(v) = merge_dword(0, 0, data) {
                    // Bits 1:0 and 30:24 are reserved and read as zero.
                    self.address = v & 0x80ff_fffc;
                }
            }
            4..=7 => {
                if let Some((bus, dev, func, reg)) = self.target() {
                    let b = self.bus.lock().unwrap_or_else(|e| e.into_inner());
                    // The device checks that the access fits the dword.
                    b.config_write(bus, dev, func, reg, offset - 4, data);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(dev: u8, reg: u8) -> u32 {
        CONFIG_ENABLE | u32::from(dev) << 11 | u32::from(reg) << 2
    }

    fn read32(io: &mut PciConfigIo, dev: u8, reg: u8) -> u32 {
        io.write(0, &addr(dev, reg).to_le_bytes());
        let mut b = [0u8; 4];
        io.read(4, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn slots() {
        let mut bus = PciBus::new();
        let d = || Arc::new(Mutex::new(PciHostBridge::new())) as SharedPciDevice;
        assert_eq!(bus.next_free_slot(), Some(1));
        assert_eq!(bus.add_device(0, d()), Err(PciError::SlotTaken(0)));
        assert_eq!(bus.add_device(32, d()), Err(PciError::SlotOutOfRange(32)));
        bus.add_device(5, d()).unwrap();
        assert_eq!(bus.add_device(5, d()), Err(PciError::SlotTaken(5)));
        assert!(bus.device(5).is_some());
        assert_eq!(bus.next_free_slot(), Some(1));
    }

    #[test]
    fn linux_type1_probe() {
        let mut io = PciConfigIo::new(Arc::new(Mutex::new(PciBus::new())));
        // pci_check_type1(): outb(0x01, 0xcfb); tmp = inl(0xcf8);
        // outl(0x80000000, 0xcf8); inl(0xcf8) == 0x80000000; outl(tmp, 0xcf8)
        io.write(3, &[0x01]);
        let mut b = [0u8; 4];
        io.read(0, &mut b);
        let tmp = u32::from_le_bytes(b);
        io.write(0, &0x8000_0000u32.to_le_bytes());
        io.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x8000_0000);
        io.write(0, &tmp.to_le_bytes());
        // pci_sanity_check(): a host bridge on bus 0.
        io.write(0, &addr(0, 2).to_le_bytes());
        let mut w = [0u8; 2];
        io.read(6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x0600);
        assert_eq!(read32(&mut io, 0, 0), 0x0d57_8086);
    }

    #[test]
    fn sub_dword_and_absent() {
        let bus = Arc::new(Mutex::new(PciBus::new()));
        let mut io = PciConfigIo::new(bus.clone());
        io.write(0, &addr(0, 0).to_le_bytes());
        let mut b1 = [0u8; 1];
        io.read(5, &mut b1);
        assert_eq!(b1[0], 0x80);
        let mut b2 = [0u8; 2];
        io.read(6, &mut b2);
        assert_eq!(u16::from_le_bytes(b2), 0x0d57);
        // Crossing the dword: all-ones.
        io.read(7, &mut b2);
        assert_eq!(b2, [0xff, 0xff]);
        // Absent slot, other function, other bus, disabled: all-ones.
        assert_eq!(read32(&mut io, 3, 0), u32::MAX);
        io.write(0, &(addr(0, 0) | 1 << 8).to_le_bytes());
        let mut b = [0u8; 4];
        io.read(4, &mut b);
        assert_eq!(u32::from_le_bytes(b), u32::MAX);
        io.write(0, &(addr(0, 0) | 1 << 16).to_le_bytes());
        io.read(4, &mut b);
        assert_eq!(u32::from_le_bytes(b), u32::MAX);
        io.write(0, &0u32.to_le_bytes());
        io.read(4, &mut b);
        assert_eq!(u32::from_le_bytes(b), u32::MAX);
        // Writes through the data port: interrupt line byte.
        io.write(0, &addr(0, 15).to_le_bytes());
        io.write(4, &[0x0a]);
        assert_eq!(read32(&mut io, 0, 15) & 0xff, 0x0a);
        io.write(0, &addr(3, 15).to_le_bytes());
        io.write(4, &[1, 2, 3, 4]);
        // Odd sizes and offsets do not panic.
        io.read(8, &mut b);
        io.write(2, &[1, 2]);
        io.read(4, &mut [0u8; 3]);
        io.write(6, &[1, 2, 3, 4]);
    }
}
