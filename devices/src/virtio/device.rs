//! The contract between a virtio device model and its transport. A device
//! never sees PCI registers or KVM: the transport negotiates features,
//! collects queue configuration from the guest and calls `activate` once
//! the driver sets DRIVER_OK; the device signals the guest only through
//! [`VirtioInterrupt`].

use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Which interrupt a device raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioInterruptType {
    /// Configuration change (e.g. link status).
    Config,
    /// Used-buffer notification for queue `n`.
    Queue(u16),
}

/// Interrupt delivery the transport gives to an activated device. With
/// MSI-X each queue's vector is an irqfd routed by KVM to the vCPU the guest
/// chose, so workers write it directly and no VMM thread is involved.
pub trait VirtioInterrupt: Send + Sync {
    /// Raises the interrupt (sets the ISR bit first for INTx transports).
    fn trigger(&self, int_type: VirtioInterruptType) -> std::io::Result<()>;
    /// The eventfd behind the interrupt, when there is one (MSI-X vector
    /// assigned); `None` means "call trigger".
    fn notifier(&self, int_type: VirtioInterruptType) -> Option<&EventFd>;
}

/// One virtqueue as the driver configured it, with its kick eventfd
/// (an ioeventfd on the notify address, registered by the VMM).
pub struct QueueConfig {
    pub index: u16,
    pub queue: Queue,
    pub kick: EventFd,
}

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("queue {index} is not valid: {reason}")]
    BadQueue { index: u16, reason: String },
    #[error("the driver configured {got} queues, the device needs {want}")]
    QueueCount { got: usize, want: usize },
    #[error("cannot start the device's worker")]
    Worker(#[source] std::io::Error),
    #[error("cannot set the backend's offloads")]
    Offloads(#[source] std::io::Error),
    #[error("cannot duplicate a queue eventfd")]
    EventFd(#[source] std::io::Error),
    #[error("the device is already active")]
    AlreadyActive,
    #[error("the device refuses to reset, so it cannot be activated again")]
    ResetRefused,
    #[error("the device's backend is gone (lost with a crashed worker)")]
    NoBackend,
    #[error("{0}")]
    Other(String),
}

pub trait VirtioDevice: Send {
    /// Virtio device type (e.g. [`super::TYPE_NET`]).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; its length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits offered to the driver (including VIRTIO_F_VERSION_1).
    fn features(&self) -> u64;
    /// The driver's accepted features (a subset of `features`; the
    /// transport masks it).
    fn ack_features(&mut self, features: u64);
    /// Reads the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration space; refused writes are
    /// ignored (and counted by the device).
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts the device with the driver's queues. Must not block.
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<QueueConfig>,
    ) -> Result<(), ActivateError>;
    /// Stops the workers and returns to the inactive state with backends
    /// kept, so the driver can renegotiate. Returns false if the device
    /// cannot be reset (the transport then sets DEVICE_NEEDS_RESET).
    fn reset(&mut self) -> bool;
    /// Set by the device when the guest broke the protocol (bad
    /// descriptors); the transport reports DEVICE_NEEDS_RESET.
    fn needs_reset(&self) -> bool {
        false
    }
    /// The device's own snapshot state (beyond the transport's), taken
    /// with its workers paused; `None` when it has none.
    fn save_device_state(&self) -> Option<VirtioDeviceState> {
        None
    }
    /// Puts saved device state back before the restore activates the
    /// device (which then starts from it instead of the power-on state).
    fn restore_device_state(&mut self, state: &VirtioDeviceState) -> Result<(), String> {
        Err(format!(
            "this virtio device has no state to restore: {state:?}"
        ))
    }
    /// The VM moved (restore or migration): ask the driver to announce
    /// itself to the network, where the device can. Returns whether it did.
    fn announce(&mut self) -> bool {
        false
    }
}

/// Device-specific snapshot state, per device type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VirtioDeviceState {
    /// virtio-net: the control-queue state (queue pairs, rx mode, MAC,
    /// pending announcement).
    Net(super::net::CtrlState),
}
