//! What one activation of a virtio-net device shares between the device
//! model, its control queue and every queue pair's handler (Cloud
//! Hypervisor's `VirtioCommon`): built once by [`super::Net`]'s activate,
//! handed to each as an `Arc`, gone after reset. Nothing here is an
//! `Option`: an inactive device simply has no context.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::GuestMemoryMmap;

use super::{bit, CtrlState, NetMetrics};
use crate::virtio::VirtioInterrupt;

pub struct NetContext {
    /// The device id (`net0`): log field and thread-name stem.
    pub nic: Arc<str>,
    pub mem: GuestMemoryMmap,
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// The device's counters (they outlive the activation).
    pub metrics: Arc<NetMetrics>,
    /// The features the driver accepted.
    pub acked_features: u64,
    /// Queue pairs the device has (VQ_PAIRS_SET may enable up to this).
    pub max_pairs: u16,
    /// Queue pairs the driver enabled with VQ_PAIRS_SET (1 at start).
    pub active_pairs: AtomicU16,
    /// The driver broke a queue: the transport reports DEVICE_NEEDS_RESET.
    pub needs_reset: AtomicBool,
    /// What the driver set through the control queue (kept by the device
    /// across resets, cleared at activation).
    pub ctrl_state: Arc<Mutex<CtrlState>>,
}

impl NetContext {
    /// A fresh activation context: one active pair, no reset needed.
    pub fn new(
        nic: Arc<str>,
        mem: GuestMemoryMmap,
        interrupt: Arc<dyn VirtioInterrupt>,
        metrics: Arc<NetMetrics>,
        acked_features: u64,
        max_pairs: u16,
        ctrl_state: Arc<Mutex<CtrlState>>,
    ) -> Self {
        Self {
            nic,
            mem,
            interrupt,
            metrics,
            acked_features,
            max_pairs,
            active_pairs: AtomicU16::new(1),
            needs_reset: AtomicBool::new(false),
            ctrl_state,
        }
    }

    /// Whether the driver accepted `feature` (a VIRTIO_NET_F_* number).
    pub fn acked(&self, feature: u32) -> bool {
        self.acked_features & bit(feature) != 0
    }

    /// Queue pairs the driver enabled.
    pub fn active_pairs(&self) -> u16 {
        self.active_pairs.load(Ordering::Acquire)
    }

    pub fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::Acquire)
    }

    /// Marks the device as needing a reset (the caller raises the
    /// configuration interrupt).
    pub fn mark_needs_reset(&self) {
        self.needs_reset.store(true, Ordering::Release);
    }
}
