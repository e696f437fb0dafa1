//! The virtio-pci common configuration structure (virtio 1.x, 4.1.4.3):
//! feature selection, device status, and per-queue setup through
//! queue_select. Accesses must consist of whole fields (a 64-bit access to
//! queue_desc is two 32-bit fields); anything else reads zero and is
//! dropped on write.

use super::interrupt::{VirtioPciInterrupt, NO_VECTOR};
use crate::virtio::status;

/// Length of the structure (without the optional queue_notif_config_data
/// and queue_reset fields, which petrel does not offer).
pub const COMMON_CONFIG_LEN: u64 = 0x38;

const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0c;
const MSIX_CONFIG: u64 = 0x10;
const NUM_QUEUES: u64 = 0x12;
const DEVICE_STATUS: u64 = 0x14;
const CONFIG_GENERATION: u64 = 0x15;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE: u64 = 0x18;
const QUEUE_MSIX_VECTOR: u64 = 0x1a;
const QUEUE_ENABLE: u64 = 0x1c;
const QUEUE_NOTIFY_OFF: u64 = 0x1e;
const QUEUE_DESC_LO: u64 = 0x20;
const QUEUE_DESC_HI: u64 = 0x24;
const QUEUE_DRIVER_LO: u64 = 0x28;
const QUEUE_DRIVER_HI: u64 = 0x2c;
const QUEUE_DEVICE_LO: u64 = 0x30;
const QUEUE_DEVICE_HI: u64 = 0x34;

/// Width of the field starting at `offset`.
fn field_width(offset: u64) -> Option<u64> {
    match offset {
        DEVICE_FEATURE_SELECT | DEVICE_FEATURE | DRIVER_FEATURE_SELECT | DRIVER_FEATURE => Some(4),
        MSIX_CONFIG | NUM_QUEUES => Some(2),
        DEVICE_STATUS | CONFIG_GENERATION => Some(1),
        QUEUE_SELECT | QUEUE_SIZE | QUEUE_MSIX_VECTOR | QUEUE_ENABLE | QUEUE_NOTIFY_OFF => Some(2),
        QUEUE_DESC_LO..COMMON_CONFIG_LEN if offset & 3 == 0 => Some(4),
        _ => None,
    }
}

/// Splits an access into whole fields: (field offset, width, shift into
/// the access value).
fn split_fields(offset: u64, len: usize) -> Option<Vec<(u64, u64, u32)>> {
    if len > 8 {
        return None;
    }
    let end = offset.checked_add(len as u64)?;
    let mut pos = offset;
    let mut fields = Vec::new();
    while pos < end {
        let w = field_width(pos)?;
        if pos + w > end {
            return None;
        }
        fields.push((pos, w, ((pos - offset) * 8) as u32));
        pos += w;
    }
    (!fields.is_empty()).then_some(fields)
}

/// The driver's view of one queue before activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSetup {
    pub max_size: u16,
    /// As written by the driver (validated at DRIVER_OK).
    pub size: u16,
    pub enabled: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
}

impl QueueSetup {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

fn set_lo(v: &mut u64, lo: u64) {
    *v = (*v & !0xffff_ffff) | (lo & 0xffff_ffff);
}

fn set_hi(v: &mut u64, hi: u64) {
    *v = (*v & 0xffff_ffff) | (hi << 32);
}

/// Transport-side state behind the common configuration structure.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub device_feature_select: u32,
    pub driver_feature_select: u32,
    pub driver_features: u64,
    pub queue_select: u16,
    /// Status as written by the driver (DEVICE_NEEDS_RESET is added on
    /// reads by the transport).
    pub status: u8,
    pub queues: Vec<QueueSetup>,
}

impl CommonConfig {
    pub fn new(queue_max_sizes: &[u16]) -> Self {
        Self {
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            queue_select: 0,
            status: 0,
            queues: queue_max_sizes
                .iter()
                .map(|&m| QueueSetup::new(m))
                .collect(),
        }
    }

    /// Back to the state after power-on (the device reset).
    pub fn reset(&mut self) {
        let sizes: Vec<u16> = self.queues.iter().map(|q| q.max_size).collect();
        *self = Self::new(&sizes);
    }

    fn selected(&self) -> Option<&QueueSetup> {
        self.queues.get(usize::from(self.queue_select))
    }

    /// The selected queue when the driver may still change its setup.
    fn selected_mut(&mut self) -> Option<&mut QueueSetup> {
        if self.status & status::DRIVER_OK != 0 {
            return None;
        }
        self.queues.get_mut(usize::from(self.queue_select))
    }

    /// A guest read of `len` bytes at `offset`. `features` is what the
    /// device offers, `status` the value device_status reads as.
    pub fn read(
        &self,
        offset: u64,
        len: usize,
        features: u64,
        status: u8,
        irq: &VirtioPciInterrupt,
    ) -> u64 {
        let Some(fields) = split_fields(offset, len) else {
            tracing::debug!(offset, len, "malformed virtio common config read");
            return 0;
        };
        let mut value = 0u64;
        for (pos, _, shift) in fields {
            value |= self.read_field(pos, features, status, irq) << shift;
        }
        value
    }

    fn read_field(&self, pos: u64, features: u64, status: u8, irq: &VirtioPciInterrupt) -> u64 {
        let q = self.selected();
        let qf = |f: fn(&QueueSetup) -> u64| q.map_or(0, f);
        match pos {
            DEVICE_FEATURE_SELECT => u64::from(self.device_feature_select),
            DEVICE_FEATURE => match self.device_feature_select {
                0 => features & 0xffff_ffff,
                1 => features >> 32,
                _ => 0,
            },
            DRIVER_FEATURE_SELECT => u64::from(self.driver_feature_select),
            DRIVER_FEATURE => match self.driver_feature_select {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            MSIX_CONFIG => u64::from(irq.config_vector()),
            NUM_QUEUES => self.queues.len() as u64,
            DEVICE_STATUS => u64::from(status),
            CONFIG_GENERATION => 0,
            QUEUE_SELECT => u64::from(self.queue_select),
            QUEUE_SIZE => qf(|q| u64::from(q.size)),
            QUEUE_MSIX_VECTOR => match q {
                Some(_) => u64::from(irq.queue_vector(self.queue_select)),
                None => u64::from(NO_VECTOR),
            },
            QUEUE_ENABLE => qf(|q| u64::from(q.enabled)),
            QUEUE_NOTIFY_OFF => q.map_or(0, |_| u64::from(self.queue_select)),
            QUEUE_DESC_LO => qf(|q| q.desc & 0xffff_ffff),
            QUEUE_DESC_HI => qf(|q| q.desc >> 32),
            QUEUE_DRIVER_LO => qf(|q| q.driver & 0xffff_ffff),
            QUEUE_DRIVER_HI => qf(|q| q.driver >> 32),
            QUEUE_DEVICE_LO => qf(|q| q.device & 0xffff_ffff),
            QUEUE_DEVICE_HI => qf(|q| q.device >> 32),
            _ => 0,
        }
    }

    /// A guest write of `data` at `offset`. Returns the value written to
    /// device_status, if any: the transport runs the status state machine.
    pub fn write(&mut self, offset: u64, data: &[u8], irq: &VirtioPciInterrupt) -> Option<u8> {
        let Some(fields) = split_fields(offset, data.len()) else {
            tracing::debug!(
                offset,
                len = data.len(),
                "malformed virtio common config write"
            );
            return None;
        };
        let mut bytes = [0u8; 8];
        bytes[..data.len()].copy_from_slice(data);
        let value = u64::from_le_bytes(bytes);
        let mut new_status = None;
        for (pos, w, shift) in fields {
            let v = (value >> shift) & ((1u64 << (w * 8)) - 1);
            if let Some(s) = self.write_field(pos, v, irq) {
                new_status = Some(s);
            }
        }
        new_status
    }

    fn write_field(&mut self, pos: u64, v: u64, irq: &VirtioPciInterrupt) -> Option<u8> {
        match pos {
            DEVICE_FEATURE_SELECT => self.device_feature_select = v as u32,
            DRIVER_FEATURE_SELECT => self.driver_feature_select = v as u32,
            DRIVER_FEATURE => {
                if self.status & status::FEATURES_OK != 0 {
                    tracing::debug!("driver features written after FEATURES_OK, ignored");
                } else {
                    match self.driver_feature_select {
                        0 => set_lo(&mut self.driver_features, v),
                        1 => set_hi(&mut self.driver_features, v),
                        _ => {}
                    }
                }
            }
            MSIX_CONFIG => irq.set_config_vector(v as u16),
            DEVICE_STATUS => return Some(v as u8),
            QUEUE_SELECT => self.queue_select = v as u16,
            QUEUE_MSIX_VECTOR if self.selected().is_some() => {
                irq.set_queue_vector(self.queue_select, v as u16);
            }
            QUEUE_SIZE | QUEUE_ENABLE | QUEUE_DESC_LO..=QUEUE_DEVICE_HI => {
                let q = self.selected_mut()?;
                match pos {
                    QUEUE_SIZE if !q.enabled => q.size = v as u16,
                    // Writing 0 is not allowed without VIRTIO_F_RING_RESET.
                    QUEUE_ENABLE if v == 1 => q.enabled = true,
                    QUEUE_DESC_LO if !q.enabled => set_lo(&mut q.desc, v),
                    QUEUE_DESC_HI if !q.enabled => set_hi(&mut q.desc, v),
                    QUEUE_DRIVER_LO if !q.enabled => set_lo(&mut q.driver, v),
                    QUEUE_DRIVER_HI if !q.enabled => set_hi(&mut q.driver, v),
                    QUEUE_DEVICE_LO if !q.enabled => set_lo(&mut q.device, v),
                    QUEUE_DEVICE_HI if !q.enabled => set_hi(&mut q.device, v),
                    _ => tracing::debug!(pos, "queue field write ignored"),
                }
            }
            // device_feature, num_queues, config_generation and
            // queue_notify_off are read-only.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_splitting() {
        assert_eq!(split_fields(0x14, 1), Some(vec![(0x14, 1, 0)]));
        assert_eq!(
            split_fields(0x20, 8),
            Some(vec![(0x20, 4, 0), (0x24, 4, 32)])
        );
        assert_eq!(
            split_fields(0x14, 4),
            Some(vec![(0x14, 1, 0), (0x15, 1, 8), (0x16, 2, 16)])
        );
        assert_eq!(split_fields(0x13, 1), None);
        assert_eq!(split_fields(0x10, 1), None);
        assert_eq!(split_fields(0x34, 8), None);
        assert_eq!(split_fields(0x38, 2), None);
        assert_eq!(split_fields(u64::MAX, 2), None);
        assert_eq!(split_fields(0, 0), None);
        assert_eq!(split_fields(0, 16), None);
    }
}
