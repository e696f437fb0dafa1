//! PCI: a single root bus (bus 0) reached through the legacy type-1
//! configuration mechanism at ports 0xcf8/0xcfc, a configuration-space
//! model with BAR sizing and a capability list, MSI-X, and a BAR address
//! allocator.
//!
//! petrel boots Linux without firmware and without ACPI, so it assigns BAR
//! addresses itself (see [`BarAllocator`]) before the guest starts; the
//! guest keeps them. A guest that tries to move a BAR gets a warning in the
//! log and the BAR keeps decoding at its original address (the write is
//! dropped, so the guest reads back the original address).
//!
//! The command register's memory/I/O-space enable bits are stored but not
//! honoured: BARs decode from the moment the VMM inserts their regions.
//!
//! Only function 0 of each device on bus 0 exists; the other buses and
//! functions read all-ones. Devices never see KVM: MSI-X vectors are routed
//! through the [`MsiVectors`] trait the `vmm` crate implements.

mod bar;
mod bus;
mod configuration;
mod intx;
mod msi;
mod msix;
mod state;

pub use bar::{BarAllocator, PciBarRegion};
pub use bus::{PciBus, PciConfigIo, PciHostBridge, PCI_CONFIG_IO_BASE, PCI_CONFIG_IO_LEN};
pub use configuration::{PciConfiguration, PciIds, CAPABILITY_LIST_START, NUM_BARS};
pub use intx::IntxLine;
#[cfg(test)]
pub(crate) use msi::fake::FakeVectors;
pub use msi::{MsiMessage, MsiVectors};
pub use msix::{MsixConfig, MsixTableEntry, MSIX_CAP_LEN, MSIX_ENTRY_SIZE};
pub use state::PciDeviceState;

/// BAR registers in a type-0 header, as an index bound.
pub(crate) const NUM_BARS_USIZE: usize = 6;

/// Highest device number on a PCI bus.
pub const MAX_SLOT: u8 = 31;

/// PCI capability ids used by petrel.
pub mod cap_id {
    /// Vendor-specific capability (virtio uses it).
    pub const VENDOR: u8 = 0x09;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
}

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory BAR (one register).
    Mmio32,
    /// 64-bit memory BAR (this register and the next).
    Mmio64,
    /// Port I/O BAR.
    Io,
}

/// One base address register as assigned by petrel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// BAR register index (0..=5; a 64-bit BAR also uses `index + 1`).
    pub index: u8,
    /// Guest physical (or port) address.
    pub addr: u64,
    /// Size in bytes (a power of two).
    pub size: u64,
    pub kind: BarKind,
}

impl Bar {
    /// True for BARs that belong on the MMIO bus.
    pub fn is_mmio(&self) -> bool {
        matches!(self.kind, BarKind::Mmio32 | BarKind::Mmio64)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    #[error("PCI slot {0} is out of range (0..=31)")]
    SlotOutOfRange(u8),
    #[error("PCI slot {0} is already taken")]
    SlotTaken(u8),
    #[error("BAR {index}: {reason}")]
    BadBar { index: u8, reason: &'static str },
    #[error("no room left in configuration space for a {0}-byte capability")]
    CapabilitySpace(usize),
    #[error("a capability must be 2..=192 bytes long, got {0}")]
    CapabilityLength(usize),
}

/// A PCI function (petrel models only function 0 of each device).
///
/// Configuration accesses arrive as a dword register index plus a byte
/// offset inside it; BAR accesses arrive as the BAR index plus an offset
/// from the BAR's base. Implementations must accept any register, offset
/// and length without panicking.
pub trait PciDevice: Send {
    /// Reads configuration dword `reg` (0..64; others read all-ones).
    fn config_read(&mut self, reg: usize) -> u32;
    /// Writes `data` (1, 2 or 4 bytes) at byte `offset` inside dword `reg`.
    fn config_write(&mut self, reg: usize, offset: u64, data: &[u8]);
    /// The BARs as petrel assigned them (the addresses never change).
    fn bars(&self) -> Vec<Bar>;
    /// Guest read inside BAR `bar` at `offset` from its base.
    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]);
    /// Guest write inside BAR `bar` at `offset` from its base.
    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]);
    /// Machine reset (the guest rebooted in the same process): back to the
    /// power-on state, with workers stopped so nothing writes guest memory,
    /// while host resources (taps, backends, BARs) are kept.
    fn machine_reset(&mut self) {}
    /// The function's snapshot state (queue workers paused); `None` when
    /// it cannot be saved.
    fn save_state(&self) -> Option<PciDeviceState> {
        None
    }
    /// Writes a saved state into this function, built from the same spec
    /// and not started by the guest yet.
    fn restore_state(&mut self, _state: &PciDeviceState) -> Result<(), String> {
        Err("this PCI function cannot be restored".into())
    }
    /// After a restore or received migration: ask the guest to announce
    /// itself on the network (virtio-net GUEST_ANNOUNCE). Whether it did.
    fn announce(&mut self) -> bool {
        false
    }
}

/// Merges a `data` write at byte `offset` into the dword `old`; `None`
/// when the access does not fit inside the dword or is not 1, 2 or 4 bytes.
pub(crate) fn merge_dword(old: u32, offset: u64, data: &[u8]) -> Option<u32> {
    let off = usize::try_from(offset).ok()?;
    if !matches!(data.len(), 1 | 2 | 4) || off.checked_add(data.len())? > 4 {
        return None;
    }
    let mut bytes = old.to_le_bytes();
    bytes[off..off + data.len()].copy_from_slice(data);
    Some(u32::from_le_bytes(bytes))
}

/// Copies the bytes of `value` at byte `offset` into `data` (reads of a
/// sub-dword); bytes beyond the dword read as 0xff.
pub(crate) fn extract_bytes(value: u64, width: usize, offset: u64, data: &mut [u8]) {
    let bytes = value.to_le_bytes();
    for (i, b) in data.iter_mut().enumerate() {
        let idx = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .filter(|&idx| idx < width.min(8));
        *b = idx.map_or(0xff, |idx| bytes[idx]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_extract() {
        assert_eq!(merge_dword(0x1122_3344, 1, &[0xaa]), Some(0x1122_aa44));
        assert_eq!(
            merge_dword(0x1122_3344, 2, &[0xaa, 0xbb]),
            Some(0xbbaa_3344)
        );
        assert_eq!(merge_dword(0, 0, &[1, 2, 3, 4]), Some(0x0403_0201));
        assert_eq!(merge_dword(0, 3, &[1, 2]), None);
        assert_eq!(merge_dword(0, 0, &[1, 2, 3]), None);
        assert_eq!(merge_dword(0, u64::MAX, &[1]), None);
        let mut d = [0u8; 2];
        extract_bytes(0x1122_3344, 4, 1, &mut d);
        assert_eq!(d, [0x33, 0x22]);
        extract_bytes(0x1122_3344, 4, 3, &mut d);
        assert_eq!(d, [0x11, 0xff]);
    }
}
