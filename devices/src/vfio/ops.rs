//! The contract between the passthrough model and the host's VFIO device.

use std::io;

use vmm_sys_util::eventfd::EventFd;

/// Region index of the expansion ROM (VFIO_PCI_ROM_REGION_INDEX); BARs are
/// regions 0..=5.
pub const ROM_REGION: u32 = 6;
/// Region index of configuration space (VFIO_PCI_CONFIG_REGION_INDEX).
pub const CONFIG_REGION: u32 = 7;

/// Interrupt indices of a VFIO PCI device (VFIO_PCI_*_IRQ_INDEX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqIndex {
    Intx = 0,
    Msi = 1,
    Msix = 2,
}

/// What VFIO says of one region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionInfo {
    /// Bytes (for a BAR: the BAR's size).
    pub size: u64,
    /// The region may be mmap'ed (VFIO_REGION_INFO_FLAG_MMAP).
    pub mmap: bool,
    /// When the kernel restricts mmap to parts of the region (sparse mmap
    /// capability): those (offset, size) parts.
    pub sparse: Option<Vec<(u64, u64)>>,
}

/// A host VFIO PCI device. Accesses must never panic, whatever the offset
/// or length: region reads that fail leave `data` as it was (the model fills
/// it with all-ones first, like a master abort).
pub trait VfioOps: Send + Sync {
    /// Region `index`, or `None` when the device has no such region.
    fn region(&self, index: u32) -> Option<RegionInfo>;
    fn read(&self, index: u32, offset: u64, data: &mut [u8]);
    fn write(&self, index: u32, offset: u64, data: &[u8]);
    /// Interrupts the device offers at `index` (0 when it has none).
    fn irq_count(&self, index: IrqIndex) -> u32;
    /// Makes the device signal `fds[i]` for interrupt `i` of `index`.
    fn enable_irq(&self, index: IrqIndex, fds: &[&EventFd]) -> io::Result<()>;
    fn disable_irq(&self, index: IrqIndex) -> io::Result<()>;
    /// An eventfd whose signal unmasks INTx (KVM's resample eventfd).
    fn set_intx_unmask_fd(&self, fd: &EventFd) -> io::Result<()>;
    /// Function-level (or bus) reset of the device.
    fn reset(&self) -> io::Result<()>;
}
