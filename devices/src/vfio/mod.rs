//! PCI passthrough of a host function (an SR-IOV virtual function) through
//! VFIO.
//!
//! The device's own registers stay on the device: configuration space,
//! BARs and interrupts are reached through [`VfioOps`], which the `vmm`
//! crate implements over `vfio-ioctls` (and the tests over a fake). What
//! petrel virtualizes is what must not reach the hardware as the guest
//! wrote it:
//! - BAR registers: petrel places the BARs (there is no firmware) and the
//!   guest sizes and reads them from a shadow; the device keeps its host
//!   addresses.
//! - The expansion ROM register reads zero (no option ROM is offered).
//! - MSI and MSI-X: the guest's messages become KVM routes (through
//!   [`crate::pci::MsiVectors`]); the device signals per-vector eventfds that
//!   are KVM irqfds, so an interrupt never passes through a VMM thread. The
//!   MSI-X table and PBA are trapped and emulated; the rest of the BARs can
//!   be mapped straight into the guest ([`VfioPciDevice::mmap_areas`]).
//! - INTx is an eventfd pair: the device's trigger is a KVM irqfd and KVM's
//!   resample eventfd unmasks the line in VFIO after the guest's EOI.

mod device;
mod msi;
mod ops;
mod probe;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use device::{IntxFds, VfioInterrupts, VfioPciDevice};
pub use ops::{IrqIndex, RegionInfo, VfioOps, CONFIG_REGION, ROM_REGION};
pub use probe::{place_bars, BarInfo, MmapArea, MsiInfo, MsixInfo, Probe};

/// Errors of a passthrough device that the VMM reports before the guest
/// starts (a broken device must not be half attached).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VfioError {
    #[error("the device has no configuration space region")]
    NoConfigRegion,
    #[error("BAR {index} has size {size:#x}, which is not usable ({reason})")]
    BadBar {
        index: u8,
        size: u64,
        reason: &'static str,
    },
    #[error(
        "the MSI-X {what} (BAR {bar}, offset {offset:#x}, {len:#x} bytes) lies outside its BAR"
    )]
    MsixOutsideBar {
        what: &'static str,
        bar: u8,
        offset: u64,
        len: u64,
    },
    #[error("no room for BAR {index} ({size:#x} bytes) in the PCI window")]
    NoBarSpace { index: u8, size: u64 },
    #[error("BAR {index}: {source}")]
    Shadow {
        index: u8,
        source: crate::pci::PciError,
    },
    #[error("MSI-X needs {want} vectors, the VMM gave {got}")]
    MsixVectors { want: u16, got: u16 },
    #[error("MSI needs {want} vectors, the VMM gave {got}")]
    MsiVectors { want: u16, got: u16 },
    #[error("MSI-X state: {0}")]
    Msix(String),
}
