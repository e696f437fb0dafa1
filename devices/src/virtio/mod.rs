//! Virtio: the device trait every virtio model implements, the interrupt
//! trait the transport hands to devices, and (in submodules) the PCI
//! transport and the device models.

mod device;
pub(crate) mod iovec;
pub mod net;
#[cfg(any(test, feature = "test-driver"))]
pub mod test_driver;
pub mod transport;

pub use device::{
    ActivateError, QueueConfig, VirtioDevice, VirtioDeviceState, VirtioInterrupt,
    VirtioInterruptType,
};

/// Virtio device type ids (virtio 1.x, 5 "Device Types").
pub const TYPE_NET: u32 = 1;

/// Device status bits (virtio 1.x, 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// VIRTIO_F_VERSION_1: the modern interface; petrel offers no legacy one.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// VIRTIO_RING_F_EVENT_IDX.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// VIRTIO_F_ACCESS_PLATFORM is not offered; VIRTIO_F_IN_ORDER neither.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
