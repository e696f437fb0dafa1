//! Virtio transports. petrel has one: modern virtio-pci
//! ([`VirtioPciDevice`]), MSI-X only (no INTx, no legacy interface).

mod common_config;
mod interrupt;
mod pci_device;

pub use interrupt::{ISR_CONFIG, ISR_QUEUE, NO_VECTOR};
pub use pci_device::{
    cfg_type, QueueState, VirtioPciDevice, VirtioPciError, VirtioPciState, BAR0_SIZE,
    COMMON_CONFIG_OFFSET, DEVICE_CONFIG_OFFSET, ISR_OFFSET, MAX_MSIX_VECTORS, MAX_QUEUES,
    MSIX_PBA_OFFSET, MSIX_TABLE_OFFSET, NOTIFY_OFFSET, NOTIFY_OFF_MULTIPLIER,
    VIRTIO_PCI_DEVICE_ID_BASE, VIRTIO_PCI_VENDOR_ID,
};

#[cfg(test)]
mod tests;
