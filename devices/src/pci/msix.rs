//! MSI-X (PCI 3.0, 6.8.2): the capability, the vector table and the
//! pending-bit array. Routing goes through [`MsiVectors`]; a vector that
//! fires while masked (per vector or by the function mask) sets its
//! pending bit and is delivered when it is unmasked.

use std::io;
use std::sync::Arc;

use super::{cap_id, extract_bytes, merge_dword, MsiMessage, MsiVectors};

/// Size of one table entry.
pub const MSIX_ENTRY_SIZE: u64 = 16;
/// Length of the MSI-X capability structure.
pub const MSIX_CAP_LEN: usize = 12;
/// Architectural limit on the table size.
const MAX_VECTORS: u16 = 2048;

const MSG_CTL_ENABLE: u16 = 1 << 15;
const MSG_CTL_FUNCTION_MASK: u16 = 1 << 14;
const VECTOR_CTL_MASK: u32 = 1;

/// One MSI-X table entry as the guest wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixTableEntry {
    pub msg_addr_lo: u32,
    pub msg_addr_hi: u32,
    pub msg_data: u32,
    pub vector_ctl: u32,
}

impl Default for MsixTableEntry {
    /// Entries come out of reset masked.
    fn default() -> Self {
        Self {
            msg_addr_lo: 0,
            msg_addr_hi: 0,
            msg_data: 0,
            vector_ctl: VECTOR_CTL_MASK,
        }
    }
}

impl MsixTableEntry {
    pub fn masked(&self) -> bool {
        self.vector_ctl & VECTOR_CTL_MASK != 0
    }

    pub fn message(&self) -> MsiMessage {
        MsiMessage {
            addr: u64::from(self.msg_addr_hi) << 32 | u64::from(self.msg_addr_lo),
            data: self.msg_data,
        }
    }

    fn dword(&self, i: usize) -> u32 {
        match i {
            0 => self.msg_addr_lo,
            1 => self.msg_addr_hi,
            2 => self.msg_data,
            _ => self.vector_ctl,
        }
    }

    fn set_dword(&mut self, i: usize, v: u32) {
        match i {
            // The address is dword aligned.
            0 => self.msg_addr_lo = v & !0x3,
            1 => self.msg_addr_hi = v,
            2 => self.msg_data = v,
            // Only the mask bit is defined.
            _ => self.vector_ctl = v & VECTOR_CTL_MASK,
        }
    }
}

/// MSI-X state of one function.
pub struct MsixConfig {
    table: Vec<MsixTableEntry>,
    pba: Vec<u64>,
    enabled: bool,
    function_masked: bool,
    /// What `vectors` currently routes each vector to.
    routed: Vec<Option<MsiMessage>>,
    vectors: Arc<dyn MsiVectors>,
}

impl std::fmt::Debug for MsixConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsixConfig")
            .field("vectors", &self.table.len())
            .field("enabled", &self.enabled)
            .field("function_masked", &self.function_masked)
            .finish()
    }
}

impl MsixConfig {
    /// One table entry per vector of `vectors` (1..=2048 of them).
    pub fn new(vectors: Arc<dyn MsiVectors>) -> io::Result<Self> {
        let n = vectors.len();
        if n == 0 || n > MAX_VECTORS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("MSI-X needs 1..={MAX_VECTORS} vectors, got {n}"),
            ));
        }
        let n = usize::from(n);
        Ok(Self {
            table: vec![MsixTableEntry::default(); n],
            pba: vec![0; n.div_ceil(64)],
            enabled: false,
            function_masked: false,
            routed: vec![None; n],
            vectors,
        })
    }

    /// Number of vectors (table entries).
    pub fn num_vectors(&self) -> u16 {
        self.table.len() as u16
    }

    /// Bytes the table occupies in its BAR.
    pub fn table_len(&self) -> u64 {
        self.table.len() as u64 * MSIX_ENTRY_SIZE
    }

    /// Bytes the pending-bit array occupies in its BAR.
    pub fn pba_len(&self) -> u64 {
        self.pba.len() as u64 * 8
    }

    /// The routing group (for its irqfds).
    pub fn vectors(&self) -> &Arc<dyn MsiVectors> {
        &self.vectors
    }

    /// The capability bytes for [`super::PciConfiguration::add_capability`];
    /// offsets must be 8-byte aligned.
    pub fn capability(
        &self,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> [u8; MSIX_CAP_LEN] {
        let mut cap = [0u8; MSIX_CAP_LEN];
        cap[0] = cap_id::MSIX;
        cap[2..4].copy_from_slice(&self.message_control().to_le_bytes());
        let table = (table_offset & !0x7) | u32::from(table_bar & 0x7);
        let pba = (pba_offset & !0x7) | u32::from(pba_bar & 0x7);
        cap[4..8].copy_from_slice(&table.to_le_bytes());
        cap[8..12].copy_from_slice(&pba.to_le_bytes());
        cap
    }

    /// The message control register: table size - 1, function mask,
    /// enable.
    pub fn message_control(&self) -> u16 {
        let mut v = self.num_vectors() - 1;
        if self.function_masked {
            v |= MSG_CTL_FUNCTION_MASK;
        }
        if self.enabled {
            v |= MSG_CTL_ENABLE;
        }
        v
    }

    /// A guest write of the message control register (only the enable and
    /// function-mask bits are writable).
    pub fn set_message_control(&mut self, value: u16) {
        let enabled = value & MSG_CTL_ENABLE != 0;
        let masked = value & MSG_CTL_FUNCTION_MASK != 0;
        if enabled == self.enabled && masked == self.function_masked {
            return;
        }
        self.enabled = enabled;
        self.function_masked = masked;
        for v in 0..self.num_vectors() {
            self.refresh(v);
        }
    }

    /// Overlays the live message control on configuration dword `reg` (raw
    /// value `value`) when `reg` is the first dword of the capability at
    /// `cap_offset`.
    pub fn read_cap_reg(&self, cap_offset: usize, reg: usize, value: u32) -> u32 {
        if reg * 4 == cap_offset {
            (value & 0xffff) | u32::from(self.message_control()) << 16
        } else {
            value
        }
    }

    /// Handles a guest configuration write into the capability at
    /// `cap_offset`; returns false when the write is outside it. Only the
    /// message control's enable and function-mask bits are writable.
    pub fn write_cap_reg(
        &mut self,
        cap_offset: usize,
        reg: usize,
        offset: u64,
        data: &[u8],
    ) -> bool {
        let start = cap_offset / 4;
        if !(start..start + MSIX_CAP_LEN / 4).contains(&reg) {
            return false;
        }
        if reg == start {
            let old = u32::from(self.message_control()) << 16;
            if let Some(new) = merge_dword(old, offset, data) {
                if new != old {
                    self.set_message_control((new >> 16) as u16);
                }
            }
        }
        true
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn is_function_masked(&self) -> bool {
        self.function_masked
    }

    /// The table entry of `vector`.
    pub fn entry(&self, vector: u16) -> Option<&MsixTableEntry> {
        self.table.get(usize::from(vector))
    }

    pub fn is_pending(&self, vector: u16) -> bool {
        let v = usize::from(vector);
        self.pba
            .get(v / 64)
            .is_some_and(|w| w & (1 << (v % 64)) != 0)
    }

    fn set_pending(&mut self, vector: u16, pending: bool) {
        let v = usize::from(vector);
        if let Some(w) = self.pba.get_mut(v / 64) {
            if pending {
                *w |= 1 << (v % 64);
            } else {
                *w &= !(1 << (v % 64));
            }
        }
    }

    /// Where `vector` should be routed now.
    fn effective_route(&self, vector: u16) -> Option<MsiMessage> {
        let e = self.entry(vector)?;
        (self.enabled && !self.function_masked && !e.masked()).then(|| e.message())
    }

    /// Pushes the vector's routing to the VMM if it changed, and delivers
    /// a pending interrupt once the vector is unmasked.
    fn refresh(&mut self, vector: u16) {
        let want = self.effective_route(vector);
        let idx = usize::from(vector);
        if self.routed.get(idx).copied().flatten() != want {
            match self.vectors.update(vector, want) {
                Ok(()) => {
                    if let Some(r) = self.routed.get_mut(idx) {
                        *r = want;
                    }
                }
                Err(e) => tracing::warn!(vector, "cannot route MSI-X vector: {e}"),
            }
        }
        if want.is_some() && self.is_pending(vector) {
            self.set_pending(vector, false);
            if let Err(e) = self.vectors.trigger(vector) {
                tracing::warn!(vector, "cannot inject pending MSI-X vector: {e}");
            }
        }
    }

    /// Fires `vector`: injected when deliverable, recorded in the PBA when
    /// masked, dropped while MSI-X is disabled (petrel offers no INTx).
    pub fn trigger(&mut self, vector: u16) -> io::Result<()> {
        let Some(entry) = self.entry(vector) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("MSI-X vector {vector} out of range"),
            ));
        };
        if !self.enabled {
            tracing::trace!(vector, "MSI-X disabled, interrupt dropped");
            return Ok(());
        }
        if self.function_masked || entry.masked() {
            self.set_pending(vector, true);
            return Ok(());
        }
        self.vectors.trigger(vector)
    }

    /// Guest read inside the table (4- or 8-byte aligned accesses; others
    /// read all-ones).
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let Some(dw) = Self::table_dword_index(offset, data.len()) else {
            return;
        };
        let mut value = 0u64;
        for k in 0..data.len() / 4 {
            let i = dw + k;
            let Some(e) = self.table.get(i / 4) else {
                return;
            };
            value |= u64::from(e.dword(i % 4)) << (32 * k);
        }
        extract_bytes(value, data.len(), 0, data);
    }

    /// Guest write inside the table (4- or 8-byte aligned accesses; others
    /// are ignored).
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        let Some(dw) = Self::table_dword_index(offset, data.len()) else {
            tracing::debug!(offset, len = data.len(), "malformed MSI-X table write");
            return;
        };
        let mut touched = None;
        for (k, chunk) in data.chunks_exact(4).enumerate() {
            let i = dw + k;
            let mut b = [0u8; 4];
            b.copy_from_slice(chunk);
            let Some(e) = self.table.get_mut(i / 4) else {
                break;
            };
            e.set_dword(i % 4, u32::from_le_bytes(b));
            touched = Some(i / 4);
        }
        if let Some(v) = touched {
            self.refresh(v as u16);
        }
    }

    /// Guest read of the pending-bit array (read-only).
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        let Some(dw) = Self::table_dword_index(offset, data.len()) else {
            return;
        };
        let Some(&word) = self.pba.get(dw / 2) else {
            return;
        };
        let value = if data.len() == 8 {
            word
        } else {
            word >> (32 * (dw % 2))
        };
        extract_bytes(value, data.len(), 0, data);
    }

    /// Guest write of the pending-bit array: ignored (read-only).
    pub fn write_pba(&mut self, offset: u64, data: &[u8]) {
        tracing::debug!(offset, len = data.len(), "write to read-only MSI-X PBA");
    }

    /// Dword index of an aligned 4- or 8-byte access.
    fn table_dword_index(offset: u64, len: usize) -> Option<usize> {
        let ok = matches!(len, 4 | 8) && offset & (len as u64 - 1) == 0;
        ok.then(|| usize::try_from(offset / 4).ok()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::FakeVectors;

    fn w32(m: &mut MsixConfig, off: u64, v: u32) {
        m.write_table(off, &v.to_le_bytes());
    }

    fn r32(m: &MsixConfig, off: u64) -> u32 {
        let mut b = [0u8; 4];
        m.read_table(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn capability_bytes_and_control() {
        let fake = FakeVectors::new(3);
        let mut m = MsixConfig::new(fake.clone()).unwrap();
        let cap = m.capability(0, 0x4000, 0, 0x6000);
        assert_eq!(cap[0], 0x11);
        assert_eq!(u16::from_le_bytes([cap[2], cap[3]]), 2);
        assert_eq!(u32::from_le_bytes([cap[4], cap[5], cap[6], cap[7]]), 0x4000);
        assert_eq!(
            u32::from_le_bytes([cap[8], cap[9], cap[10], cap[11]]),
            0x6000
        );
        // Table size is read-only; enable and function mask are not.
        assert!(m.write_cap_reg(0x40, 0x10, 2, &0xffffu16.to_le_bytes()));
        assert_eq!(m.message_control(), 0xc002);
        assert_eq!(m.read_cap_reg(0x40, 0x10, 0x0000_5011), 0xc002_5011);
        assert!(m.write_cap_reg(0x40, 0x10, 3, &[0x80]));
        assert!(m.is_enabled() && !m.is_function_masked());
        assert!(!m.write_cap_reg(0x40, 0x13, 0, &[0; 4]));
        assert!(MsixConfig::new(FakeVectors::new(0)).is_err());
    }

    #[test]
    fn table_write_routes_vector() {
        let fake = FakeVectors::new(2);
        let mut m = MsixConfig::new(fake.clone()).unwrap();
        m.set_message_control(MSG_CTL_ENABLE);
        // Linux: program the entry while masked, then unmask.
        w32(&mut m, 16, 0xfee0_1000);
        w32(&mut m, 20, 0);
        w32(&mut m, 24, 0x4041);
        assert!(fake.take_updates().is_empty());
        assert_eq!(r32(&m, 16), 0xfee0_1000);
        assert_eq!(r32(&m, 28), 1);
        w32(&mut m, 28, 0);
        let msg = MsiMessage {
            addr: 0xfee0_1000,
            data: 0x4041,
        };
        assert_eq!(fake.take_updates(), vec![(1, Some(msg))]);
        // 64-bit access reads address lo/hi together.
        let mut b = [0u8; 8];
        m.read_table(16, &mut b);
        assert_eq!(u64::from_le_bytes(b), 0xfee0_1000);
        // A 64-bit write of data + control masks it again.
        m.write_table(24, &(0x4041u64 | 1 << 32).to_le_bytes());
        assert_eq!(fake.take_updates(), vec![(1, None)]);
        // Disabling MSI-X unroutes, enabling restores.
        w32(&mut m, 28, 0);
        fake.take_updates();
        m.set_message_control(0);
        assert_eq!(fake.take_updates(), vec![(1, None)]);
        m.set_message_control(MSG_CTL_ENABLE);
        assert_eq!(fake.take_updates(), vec![(1, Some(msg))]);
        // Malformed and out-of-range accesses are harmless.
        m.write_table(2, &[1, 2]);
        m.write_table(1000, &[0; 4]);
        m.write_table(17, &[0; 4]);
        assert_eq!(r32(&m, 1000), u32::MAX);
        assert!(fake.take_updates().is_empty());
    }

    #[test]
    fn masked_vector_sets_pending_and_fires_on_unmask() {
        let fake = FakeVectors::new(2);
        let mut m = MsixConfig::new(fake.clone()).unwrap();
        // Disabled: dropped.
        m.trigger(0).unwrap();
        assert!(!m.is_pending(0));
        m.set_message_control(MSG_CTL_ENABLE);
        w32(&mut m, 0, 0xfee0_0000);
        w32(&mut m, 8, 0x30);
        m.trigger(0).unwrap();
        assert!(m.is_pending(0));
        assert!(fake.take_triggers().is_empty());
        let mut b = [0u8; 8];
        m.read_pba(0, &mut b);
        assert_eq!(u64::from_le_bytes(b), 1);
        m.write_pba(0, &[0; 8]);
        assert!(m.is_pending(0));
        w32(&mut m, 12, 0);
        assert!(!m.is_pending(0));
        assert_eq!(fake.take_triggers(), vec![0]);
        assert_eq!(fake.fds[0].read().unwrap(), 1);
        // Function mask also defers.
        m.set_message_control(MSG_CTL_ENABLE | MSG_CTL_FUNCTION_MASK);
        m.trigger(0).unwrap();
        assert!(m.is_pending(0));
        let mut b4 = [0u8; 4];
        m.read_pba(0, &mut b4);
        assert_eq!(u32::from_le_bytes(b4), 1);
        m.set_message_control(MSG_CTL_ENABLE);
        assert_eq!(fake.take_triggers(), vec![0]);
        m.trigger(0).unwrap();
        assert_eq!(fake.take_triggers(), vec![0]);
        assert!(m.trigger(2).is_err());
    }
}
