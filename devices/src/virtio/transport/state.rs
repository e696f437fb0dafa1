//! Snapshot state of a virtio-pci function: configuration space, MSI-X,
//! the common configuration (features, status, queue setup and vectors).
//! Queue positions are not kept apart: with the workers stopped, a
//! restore sets each queue's next available and next used index to the
//! used ring's index in guest memory (which moves with the VM), so a
//! descriptor the source popped but never returned is processed again on
//! the target (an RX buffer refilled, at worst a TX frame sent twice).
//! After the restore every queue is kicked and signalled once, so neither
//! a notification nor an interrupt lost in the move leaves a queue stuck.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use virtio_queue::QueueT;

use super::VirtioPciDevice;
use crate::pci::{MSIX_ENTRY_SIZE, NUM_BARS};
use crate::virtio::{
    status, QueueConfig, VirtioDeviceState, VirtioInterrupt, VirtioInterruptType,
    VIRTIO_RING_F_EVENT_IDX,
};

/// Dwords of configuration space.
const CONFIG_DWORDS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    pub size: u16,
    pub enabled: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
    pub vector: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtioPciState {
    pub id: String,
    pub config: Vec<u32>,
    pub msix_control: u16,
    /// (address low, address high, data, vector control) per vector.
    pub msix_table: Vec<[u32; 4]>,
    pub device_feature_select: u32,
    pub driver_feature_select: u32,
    pub driver_features: u64,
    pub queue_select: u16,
    pub status: u8,
    pub config_vector: u16,
    pub queues: Vec<QueueState>,
    pub activated: bool,
    /// The device model's own state (virtio-net: its control-queue state).
    #[serde(default)]
    pub device: Option<VirtioDeviceState>,
}

fn lock<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl VirtioPciDevice {
    /// The transport's state (take it with the queue workers paused).
    pub fn save_state(&self) -> VirtioPciState {
        let msix = lock(&self.msix);
        let msix_table = (0..msix.num_vectors())
            .map(|v| {
                let mut e = [0u32; 4];
                for (i, d) in e.iter_mut().enumerate() {
                    let mut b = [0u8; 4];
                    msix.read_table(u64::from(v) * MSIX_ENTRY_SIZE + i as u64 * 4, &mut b);
                    *d = u32::from_le_bytes(b);
                }
                e
            })
            .collect();
        VirtioPciState {
            id: self.id.clone(),
            config: (0..CONFIG_DWORDS)
                .map(|r| self.config.read_reg(r))
                .collect(),
            msix_control: msix.message_control(),
            msix_table,
            device_feature_select: self.common.device_feature_select,
            driver_feature_select: self.common.driver_feature_select,
            driver_features: self.common.driver_features,
            queue_select: self.common.queue_select,
            status: self.common.status,
            config_vector: self.interrupt.config_vector(),
            queues: self
                .common
                .queues
                .iter()
                .enumerate()
                .map(|(i, q)| QueueState {
                    size: q.size,
                    enabled: q.enabled,
                    desc: q.desc,
                    driver: q.driver,
                    device: q.device,
                    vector: self.interrupt.queue_vector(i as u16),
                })
                .collect(),
            activated: self.activated,
            device: self.device.save_device_state(),
        }
    }

    /// Writes `state` into this function, built from the same spec and not
    /// activated yet; an activated source device is activated here too.
    pub fn restore_state(&mut self, state: &VirtioPciState) -> Result<(), String> {
        if state.id != self.id || state.queues.len() != self.common.queues.len() {
            return Err(format!(
                "saved device {} with {} queues does not match {} with {}",
                state.id,
                state.queues.len(),
                self.id,
                self.common.queues.len()
            ));
        }
        if self.activated {
            return Err(format!("{} is already running", self.id));
        }
        for (reg, v) in state.config.iter().enumerate().take(CONFIG_DWORDS) {
            // The BARs stay where this VM placed them (the same spec places
            // them at the same addresses).
            if (4..4 + usize::from(NUM_BARS)).contains(&reg) {
                continue;
            }
            self.config.write_raw(reg * 4, &v.to_le_bytes());
        }
        {
            let mut msix = lock(&self.msix);
            for (v, e) in state.msix_table.iter().enumerate() {
                for (i, d) in e.iter().enumerate() {
                    msix.write_table(v as u64 * MSIX_ENTRY_SIZE + i as u64 * 4, &d.to_le_bytes());
                }
            }
            msix.set_message_control(state.msix_control);
        }
        self.common.device_feature_select = state.device_feature_select;
        self.common.driver_feature_select = state.driver_feature_select;
        self.common.driver_features = state.driver_features;
        self.common.queue_select = state.queue_select;
        for (i, (q, s)) in self.common.queues.iter_mut().zip(&state.queues).enumerate() {
            q.size = s.size;
            q.enabled = s.enabled;
            q.desc = s.desc;
            q.driver = s.driver;
            q.device = s.device;
            self.interrupt.set_queue_vector(i as u16, s.vector);
        }
        self.interrupt.set_config_vector(state.config_vector);
        self.common.status = state.status;
        if state.activated && state.status & status::DRIVER_OK != 0 {
            self.device.ack_features(state.driver_features);
            if let Some(d) = &state.device {
                self.device.restore_device_state(d)?;
            }
            self.activate_at_used_index()?;
        }
        Ok(())
    }

    /// [`Self::activate`] with every queue resuming at its used index; then
    /// one kick and one interrupt per queue.
    fn activate_at_used_index(&mut self) -> Result<(), String> {
        let event_idx = self.common.driver_features & VIRTIO_RING_F_EVENT_IDX != 0;
        let mut queues = Vec::new();
        for (i, setup) in self.common.queues.iter().enumerate() {
            if !setup.enabled {
                continue;
            }
            let mut queue = self.build_queue(i, setup, event_idx)?;
            let used = queue
                .used_idx(&self.mem, Ordering::Acquire)
                .map_err(|e| format!("queue {i}: cannot read the used index: {e}"))?;
            queue.set_next_avail(used.0);
            queue.set_next_used(used.0);
            let kick = self
                .kicks
                .get(i)
                .ok_or_else(|| format!("queue {i}: no notification eventfd"))?
                .try_clone()
                .map_err(|e| format!("queue {i}: {e}"))?;
            queues.push(QueueConfig {
                index: i as u16,
                queue,
                kick,
            });
        }
        let indices: Vec<u16> = queues.iter().map(|q| q.index).collect();
        let interrupt: std::sync::Arc<dyn VirtioInterrupt> = self.interrupt.clone();
        self.device
            .activate(self.mem.clone(), interrupt, queues)
            .map_err(|e| format!("{}: activation failed: {e}", self.id))?;
        self.activated = true;
        for i in indices {
            if let Some(k) = self.kicks.get(usize::from(i)) {
                let _ = k.write(1);
            }
            let _ = self.interrupt.trigger(VirtioInterruptType::Queue(i));
        }
        Ok(())
    }
}
