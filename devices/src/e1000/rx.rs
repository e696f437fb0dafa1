//! Receive: the address filter and the descriptor ring writer. Runs on the
//! "{id}-rx" worker with the register lock held for one frame at a time.

use std::sync::atomic::{fence, Ordering};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::device::Regs;
use super::regs::{self, ctrl, icr, rah, rctl, rxd};
use super::tx::{size_bucket, DESC_LEN};

/// Shortest frame handed to the driver (without FCS); shorter ones are
/// padded with zeroes.
pub const RX_MIN_FRAME_LEN: usize = 60;
/// Longest frame without RCTL.LPE (1518 plus a VLAN tag), without FCS.
pub const MAX_STD_FRAME_LEN: usize = 1522;
/// Longest frame with RCTL.LPE (the 82540's 16 KiB limit).
pub const MAX_LONG_FRAME_LEN: usize = 16384;
const FCS_LEN: usize = 4;

/// What happened to one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxResult {
    /// Written to the ring.
    Delivered,
    /// Not for us (address filter).
    Filtered,
    /// Dropped: receiver disabled, runt, too long, ring outside memory.
    Dropped,
    /// The ring has no room now: keep the frame and wait for RDT.
    NoRoom,
}

/// Receive buffer size from RCTL.BSIZE/BSEX.
pub fn buffer_size(rctl_val: u32) -> usize {
    let bsize = (rctl_val >> rctl::BSIZE_SHIFT) & 3;
    match (rctl_val & rctl::BSEX != 0, bsize) {
        (false, 0) => 2048,
        (false, 1) => 1024,
        (false, 2) => 512,
        (false, _) => 256,
        (true, 1) => 16384,
        (true, 2) => 8192,
        (true, 3) => 4096,
        (true, _) => 2048, // reserved encoding
    }
}

/// The receive address filter: unicast against RAL/RAH, broadcast with
/// BAM, multicast with MPE or the MTA hash, everything with UPE/MPE, and
/// the VLAN filter table with RCTL.VFE.
pub fn accepts(regs: &Regs, frame: &[u8]) -> bool {
    let Some(dst) = frame.get(..6) else {
        return false;
    };
    let rctl_val = regs.get(regs::RCTL);
    if rctl_val & rctl::VFE != 0 {
        if let Some(vid) = vlan_tag(regs, frame).map(|tci| tci & 0xfff) {
            let word = regs.get(regs::VFTA + u64::from(vid >> 5) * 4);
            if word & (1 << (vid & 31)) == 0 {
                return false;
            }
        }
    }
    let multicast = dst[0] & 1 != 0;
    if multicast && rctl_val & rctl::MPE != 0 {
        return true;
    }
    if !multicast && rctl_val & rctl::UPE != 0 {
        return true;
    }
    if dst == [0xff; 6] && rctl_val & rctl::BAM != 0 {
        return true;
    }
    // Exact filters: Linux puts unicast and multicast addresses here.
    let exact = (0..regs::RA_ENTRIES as u64).any(|i| {
        let ral = regs.get(regs::RA + i * 8);
        let rah_val = regs.get(regs::RA + i * 8 + 4);
        if rah_val & rah::AV == 0 || rah_val & rah::AS_MASK != 0 {
            return false;
        }
        let mut addr = [0u8; 6];
        addr[..4].copy_from_slice(&ral.to_le_bytes());
        addr[4..].copy_from_slice(&rah_val.to_le_bytes()[..2]);
        addr == dst
    });
    if exact {
        return true;
    }
    if multicast {
        // Multicast table: 12 bits of the address picked by RCTL.MO.
        let shift = [4u32, 3, 2, 0][((rctl_val >> rctl::MO_SHIFT) & 3) as usize];
        let hash = ((u32::from(dst[5]) << 8 | u32::from(dst[4])) >> shift) & 0xfff;
        let word = regs.get(regs::MTA + u64::from(hash >> 5) * 4);
        return word & (1 << (hash & 31)) != 0;
    }
    false
}

/// The TCI of an 802.1Q-tagged frame (tag type per VET).
fn vlan_tag(regs: &Regs, frame: &[u8]) -> Option<u16> {
    let vet = regs.get(regs::VET) as u16;
    let t = frame.get(12..16)?;
    (u16::from_be_bytes([t[0], t[1]]) == vet).then(|| u16::from_be_bytes([t[2], t[3]]))
}

/// Filters `frame` (no virtio-net header) and writes it to the receive
/// ring, advancing RDH and setting RXT0 (the caller updates the interrupt
/// line). `scratch` is reused for the padded frame plus FCS.
pub fn receive(
    regs: &mut Regs,
    mem: &GuestMemoryMmap,
    frame: &[u8],
    scratch: &mut Vec<u8>,
) -> RxResult {
    let rctl_val = regs.get(regs::RCTL);
    if rctl_val & rctl::EN == 0 || frame.len() < 14 {
        return RxResult::Dropped;
    }
    let max = if rctl_val & rctl::LPE != 0 {
        MAX_LONG_FRAME_LEN
    } else {
        MAX_STD_FRAME_LEN
    };
    if frame.len() > max {
        regs.add_stat(regs::ROC, 1);
        return RxResult::Dropped;
    }
    if !accepts(regs, frame) {
        return RxResult::Filtered;
    }

    // Ring geometry.
    let len = regs.get(regs::RDLEN) / DESC_LEN as u32;
    let head = regs.get(regs::RDH);
    let tail = regs.get(regs::RDT);
    if len == 0 || head >= len || tail >= len {
        return RxResult::NoRoom;
    }
    let base = u64::from(regs.get(regs::RDBAH)) << 32 | u64::from(regs.get(regs::RDBAL));

    // The bytes to store: VLAN tag stripped (CTRL.VME), padded, FCS.
    scratch.clear();
    let mut special = None;
    match vlan_tag(regs, frame) {
        Some(tci) if regs.get(regs::CTRL) & ctrl::VME != 0 => {
            special = Some(tci);
            scratch.extend_from_slice(&frame[..12]);
            scratch.extend_from_slice(&frame[16..]);
        }
        _ => scratch.extend_from_slice(frame),
    }
    if scratch.len() < RX_MIN_FRAME_LEN {
        scratch.resize(RX_MIN_FRAME_LEN, 0);
    }
    if rctl_val & rctl::SECRC == 0 {
        let fcs = crc32(scratch);
        scratch.extend_from_slice(&fcs.to_le_bytes());
    }
    let total = scratch.len();
    let bufsize = buffer_size(rctl_val);
    let needed = total.div_ceil(bufsize) as u32;
    if needed >= len {
        // Could never fit (one slot always stays empty).
        return RxResult::Dropped;
    }
    let free = (tail + len - head) % len;
    if free < needed {
        return RxResult::NoRoom;
    }

    let mut head = head;
    for (i, chunk) in scratch.chunks(bufsize).enumerate() {
        let Some(desc) = base
            .checked_add(u64::from(head) * DESC_LEN)
            .filter(|a| a.checked_add(DESC_LEN).is_some())
        else {
            regs.counters.rx_ring_errors += 1;
            regs.set(regs::RDH, head);
            return RxResult::Dropped;
        };
        let mut addr = [0u8; 8];
        if mem.read_slice(&mut addr, GuestAddress(desc)).is_err() {
            regs.counters.rx_ring_errors += 1;
            regs.set(regs::RDH, head);
            return RxResult::Dropped;
        }
        let buf = u64::from_le_bytes(addr);
        let last = i + 1 == needed as usize;
        let mut errors = 0u8;
        if mem.write_slice(chunk, GuestAddress(buf)).is_err() {
            regs.counters.rx_ring_errors += 1;
            errors |= rxd::ERR_RXE;
        }
        let mut status = rxd::STA_DD | rxd::STA_IXSM;
        let mut tci = 0u16;
        if last {
            status |= rxd::STA_EOP;
            if let Some(t) = special {
                status |= rxd::STA_VP;
                tci = t;
            }
        }
        let [l0, l1] = (chunk.len() as u16).to_le_bytes();
        let [s0, s1] = tci.to_le_bytes();
        let wb = [l0, l1, 0, 0, status, errors, s0, s1];
        // The buffer must be visible before DD.
        fence(Ordering::Release);
        if mem.write_slice(&wb, GuestAddress(desc + 8)).is_err() {
            regs.counters.rx_ring_errors += 1;
        }
        head = (head + 1) % len;
    }
    regs.set(regs::RDH, head);

    // Statistics.
    regs.add_stat(regs::GPRC, 1);
    regs.add_stat(regs::TPR, 1);
    regs.add_stat64(regs::GORCL, total as u64);
    regs.add_stat64(regs::TORL, total as u64);
    if frame[..6] == [0xff; 6] {
        regs.add_stat(regs::BPRC, 1);
    } else if frame[0] & 1 != 0 {
        regs.add_stat(regs::MPRC, 1);
    }
    let with_fcs = frame.len().max(RX_MIN_FRAME_LEN) + FCS_LEN;
    if let Some(b) = size_bucket(with_fcs) {
        regs.add_stat(regs::PRC64 + 4 * b as u64, 1);
    }
    regs.counters.rx_frames += 1;
    regs.counters.rx_bytes += frame.len() as u64;

    let mut cause = icr::RXT0;
    // Free descriptors at or below the RDMTS fraction (1/2, 1/4, 1/8).
    let rdmts = (rctl_val >> rctl::RDMTS_SHIFT) & 3;
    let free = (tail + len - head) % len;
    if rdmts < 3 && free <= len >> (rdmts + 1) {
        cause |= icr::RXDMT0;
    }
    regs.set_cause(cause);
    RxResult::Delivered
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The Ethernet FCS (CRC-32, IEEE 802.3), sent least significant byte
/// first.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}
