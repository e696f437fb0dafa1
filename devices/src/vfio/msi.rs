//! Emulated MSI capability of a passthrough device. The guest's address,
//! data, enable and mask bits live here and become KVM routes through
//! [`MsiVectors`]; the device itself is only told how many vectors to
//! signal (see `VfioPciDevice`).

use std::sync::Arc;

use super::probe::MsiInfo;
use crate::pci::{MsiMessage, MsiVectors};

const CTL_ENABLE: u16 = 1;
const CTL_MME_SHIFT: u16 = 4;
const CTL_MME_MASK: u16 = 0x7 << CTL_MME_SHIFT;

pub(crate) struct MsiState {
    info: MsiInfo,
    /// The capability bytes as the guest sees them.
    bytes: [u8; 24],
    /// Bits of `bytes` the guest may change.
    writable: [u8; 24],
    vectors: Arc<dyn MsiVectors>,
    routed: Vec<Option<MsiMessage>>,
}

impl MsiState {
    /// `raw` is the capability as read from the device (id, next pointer
    /// and read-only control bits are kept).
    pub(crate) fn new(info: MsiInfo, raw: &[u8], vectors: Arc<dyn MsiVectors>) -> Self {
        let mut bytes = [0u8; 24];
        let len = info.cap_len().min(raw.len());
        bytes[..2.min(len)].copy_from_slice(&raw[..2.min(len)]);
        if len >= 4 {
            // Control: capability bits from the device, enable and MME
            // cleared (as after reset).
            let ctl = u16::from_le_bytes([raw[2], raw[3]]) & !(CTL_ENABLE | CTL_MME_MASK);
            bytes[2..4].copy_from_slice(&ctl.to_le_bytes());
        }
        let mut writable = [0u8; 24];
        writable[2] = (CTL_ENABLE | CTL_MME_MASK) as u8;
        writable[4..8].copy_from_slice(&[0xfc, 0xff, 0xff, 0xff]);
        if info.addr64 {
            writable[8..12].fill(0xff);
        }
        let d = info.data_offset();
        writable[d..d + 2].fill(0xff);
        if let Some(m) = info.mask_offset() {
            writable[m..m + 4].fill(0xff);
        }
        let n = usize::from(vectors.len());
        Self {
            info,
            bytes,
            writable,
            vectors,
            routed: vec![None; n],
        }
    }

    pub(crate) fn contains(&self, offset: usize) -> bool {
        (self.info.cap..self.info.cap + self.info.cap_len()).contains(&offset)
    }

    pub(crate) fn read_byte(&self, offset: usize) -> u8 {
        offset
            .checked_sub(self.info.cap)
            .and_then(|i| self.bytes.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Applies a guest write of `data` at configuration offset `offset`
    /// (bytes outside the capability are ignored) and updates the routes.
    pub(crate) fn write(&mut self, offset: usize, data: &[u8]) {
        for (k, &b) in data.iter().enumerate() {
            let Some(i) = (offset + k).checked_sub(self.info.cap) else {
                continue;
            };
            if i >= self.info.cap_len() {
                continue;
            }
            let w = self.writable[i];
            self.bytes[i] = (self.bytes[i] & !w) | (b & w);
        }
        self.update_routes();
    }

    fn ctl(&self) -> u16 {
        u16::from_le_bytes([self.bytes[2], self.bytes[3]])
    }

    pub(crate) fn enabled(&self) -> bool {
        self.ctl() & CTL_ENABLE != 0
    }

    /// Vectors the guest enabled (Multiple Message Enable, capped by what
    /// the device and the VMM offer).
    pub(crate) fn enabled_vectors(&self) -> u16 {
        let mme = (self.ctl() & CTL_MME_MASK) >> CTL_MME_SHIFT;
        (1u16 << mme.min(5))
            .min(u16::from(self.info.max_vectors))
            .min(self.vectors.len())
    }

    pub(crate) fn vectors(&self) -> &Arc<dyn MsiVectors> {
        &self.vectors
    }

    fn u32_at(&self, i: usize) -> u32 {
        u32::from_le_bytes([
            self.bytes[i],
            self.bytes[i + 1],
            self.bytes[i + 2],
            self.bytes[i + 3],
        ])
    }

    fn update_routes(&mut self) {
        let enabled = self.enabled();
        let n = self.enabled_vectors();
        let addr_hi = if self.info.addr64 { self.u32_at(8) } else { 0 };
        let addr = u64::from(addr_hi) << 32 | u64::from(self.u32_at(4));
        let d = self.info.data_offset();
        let data = u32::from(u16::from_le_bytes([self.bytes[d], self.bytes[d + 1]]));
        let mask = self.info.mask_offset().map_or(0, |m| self.u32_at(m));
        for i in 0..self.vectors.len() {
            let on = enabled && i < n && mask & (1 << i) == 0;
            // With several vectors the device puts the vector number in the
            // low bits of the data.
            let want = on.then(|| MsiMessage {
                addr,
                data: (data & !(u32::from(n) - 1)) | u32::from(i),
            });
            let slot = &mut self.routed[usize::from(i)];
            if *slot != want {
                *slot = want;
                if let Err(e) = self.vectors.update(i, want) {
                    tracing::warn!(vector = i, error = %e, "cannot route MSI vector");
                }
            }
        }
    }
}
