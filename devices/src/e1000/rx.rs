//! Receive: the address filter and the descriptor ring writer, run on the
//! "{id}-rx" worker in three steps per frame:
//!
//! 1. [`prepare`], under the register lock: receiver state, length checks,
//!    the address filter, and a snapshot of the ring ([`RxPlan`]).
//! 2. [`write`], without the lock: the FCS, the copy into the guest's
//!    buffers and the descriptor write-backs. Only the worker advances RDH
//!    (a driver writes it only to set a ring up), so the descriptors from
//!    the snapshot's head stay the device's meanwhile.
//! 3. [`publish`], under the lock again: RDH, statistics and causes. If the
//!    driver reprogrammed the ring in between (RDBAL/RDBAH/RDLEN/RDH writes,
//!    CTRL.RST), RDH is left alone and the frame counts as dropped.
//!
//! The driver's register accesses (RDT, ICR, IMS...) therefore never wait
//! for a copy or a CRC.

use std::sync::atomic::{fence, Ordering};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::reg_file::Regs;
use super::regs::{self, ctrl, icr, rah, rctl, rxd};
use super::tx::{size_bucket, DESC_LEN};

/// Zeroes for padding runts.
static ZEROES: [u8; RX_MIN_FRAME_LEN] = [0; RX_MIN_FRAME_LEN];

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

/// One frame's ring placement, read under the register lock by
/// [`prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxPlan {
    base: u64,
    /// Ring length in descriptors (non-zero).
    len: u32,
    /// RDH at the snapshot (below `len`).
    head: u32,
    /// [`Regs::rx_ring_gen`] at the snapshot.
    ring_gen: u64,
    bufsize: usize,
    /// The VLAN tag stripped from the frame (CTRL.VME).
    stripped_tci: Option<u16>,
    /// Append the FCS (RCTL.SECRC clear).
    fcs: bool,
    /// Bytes stored: the frame without a stripped tag, padded, plus FCS.
    total: usize,
    rctl: u32,
}

/// What [`write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxWritten {
    /// The head after the descriptors used.
    head: u32,
    /// Descriptors or buffers outside guest memory.
    ring_errors: u64,
    /// All descriptors of the frame were written back.
    complete: bool,
}

/// Step 1, under the lock: checks and filters `frame` (no virtio-net
/// header) and finds room for it in the ring. `Err` is never
/// [`RxResult::Delivered`].
pub fn prepare(regs: &mut Regs, frame: &[u8]) -> Result<RxPlan, RxResult> {
    let rctl_val = regs.get(regs::RCTL);
    if rctl_val & rctl::EN == 0 || frame.len() < 14 {
        return Err(RxResult::Dropped);
    }
    let max = if rctl_val & rctl::LPE != 0 {
        MAX_LONG_FRAME_LEN
    } else {
        MAX_STD_FRAME_LEN
    };
    if frame.len() > max {
        regs.add_stat(regs::ROC, 1);
        return Err(RxResult::Dropped);
    }
    if !accepts(regs, frame) {
        return Err(RxResult::Filtered);
    }

    // Ring geometry.
    let len = regs.get(regs::RDLEN) / DESC_LEN as u32;
    let head = regs.get(regs::RDH);
    let tail = regs.get(regs::RDT);
    if len == 0 || head >= len || tail >= len {
        return Err(RxResult::NoRoom);
    }
    let base = u64::from(regs.get(regs::RDBAH)) << 32 | u64::from(regs.get(regs::RDBAL));

    // The bytes to store: VLAN tag stripped (CTRL.VME), padded, FCS.
    let stripped_tci = match vlan_tag(regs, frame) {
        Some(tci) if regs.get(regs::CTRL) & ctrl::VME != 0 => Some(tci),
        _ => None,
    };
    let stored = frame.len() - if stripped_tci.is_some() { 4 } else { 0 };
    let fcs = rctl_val & rctl::SECRC == 0;
    let total = stored.max(RX_MIN_FRAME_LEN) + if fcs { FCS_LEN } else { 0 };
    let bufsize = buffer_size(rctl_val);
    let needed = total.div_ceil(bufsize) as u32;
    if needed >= len {
        // Could never fit (one slot always stays empty).
        return Err(RxResult::Dropped);
    }
    let free = (tail + len - head) % len;
    if free < needed {
        return Err(RxResult::NoRoom);
    }
    Ok(RxPlan {
        base,
        len,
        head,
        ring_gen: regs.rx_ring_gen,
        bufsize,
        stripped_tci,
        fcs,
        total,
        rctl: rctl_val,
    })
}

/// Step 2, without the lock: computes the FCS and writes `frame` to the
/// buffers of the descriptors `plan` reserved, then their write-backs (DD
/// last). Never touches a descriptor outside `plan`'s ring.
pub fn write(mem: &GuestMemoryMmap, frame: &[u8], plan: &RxPlan) -> RxWritten {
    // The stored bytes as pieces, without copying the frame.
    let (front, back): (&[u8], &[u8]) = match plan.stripped_tci {
        Some(_) => (
            frame.get(..12).unwrap_or_default(),
            frame.get(16..).unwrap_or_default(),
        ),
        None => (frame, &[]),
    };
    let pad = &ZEROES[..RX_MIN_FRAME_LEN.saturating_sub(front.len() + back.len())];
    let fcs_bytes = if plan.fcs {
        let mut crc = crc32fast::Hasher::new();
        for piece in [front, back, pad] {
            crc.update(piece);
        }
        crc.finalize().to_le_bytes()
    } else {
        [0; FCS_LEN]
    };
    let fcs: &[u8] = if plan.fcs { &fcs_bytes } else { &[] };
    let pieces = [front, back, pad, fcs];
    let total: usize = pieces.iter().map(|p| p.len()).sum();

    let mut out = RxWritten {
        head: plan.head,
        ring_errors: 0,
        complete: false,
    };
    let mut offset = 0;
    while offset < total {
        let n = plan.bufsize.min(total - offset);
        let Some(desc) = plan
            .base
            .checked_add(u64::from(out.head) * DESC_LEN)
            .filter(|a| a.checked_add(DESC_LEN).is_some())
        else {
            out.ring_errors += 1;
            return out;
        };
        let mut addr = [0u8; 8];
        if mem.read_slice(&mut addr, GuestAddress(desc)).is_err() {
            out.ring_errors += 1;
            return out;
        }
        let buf = u64::from_le_bytes(addr);
        let last = offset + n == total;
        let mut errors = 0u8;
        if !write_range(mem, &pieces, offset, n, buf) {
            out.ring_errors += 1;
            errors |= rxd::ERR_RXE;
        }
        let mut status = rxd::STA_DD | rxd::STA_IXSM;
        let mut tci = 0u16;
        if last {
            status |= rxd::STA_EOP;
            if let Some(t) = plan.stripped_tci {
                status |= rxd::STA_VP;
                tci = t;
            }
        }
        let [l0, l1] = (n as u16).to_le_bytes();
        let [s0, s1] = tci.to_le_bytes();
        let wb = [l0, l1, 0, 0, status, errors, s0, s1];
        // The buffer must be visible before DD.
        fence(Ordering::Release);
        if mem.write_slice(&wb, GuestAddress(desc + 8)).is_err() {
            out.ring_errors += 1;
        }
        out.head = (out.head + 1) % plan.len;
        offset += n;
    }
    out.complete = true;
    out
}

/// Writes bytes `offset..offset + n` of the concatenated `pieces` to guest
/// address `buf`. False if any part falls outside guest memory.
fn write_range(mem: &GuestMemoryMmap, pieces: &[&[u8]], offset: usize, n: usize, buf: u64) -> bool {
    let end = offset + n;
    let mut ok = true;
    let mut start = 0; // of the current piece in the concatenation
    for piece in pieces {
        let (lo, hi) = (offset.max(start), end.min(start + piece.len()));
        if lo < hi {
            let dst = buf.checked_add((lo - offset) as u64);
            let src = piece.get(lo - start..hi - start).unwrap_or_default();
            ok &= dst.is_some_and(|d| mem.write_slice(src, GuestAddress(d)).is_ok());
        }
        start += piece.len();
        if start >= end {
            break;
        }
    }
    ok
}

/// Step 3, under the lock: advances RDH (unless the ring was reprogrammed
/// since [`prepare`]), updates the statistics and sets RXDMT0 when the ring
/// runs low; the caller then calls [`Regs::rx_delivered`] once for the
/// batch (RXT0, which RDTR/RADV may delay, and the interrupt line).
pub fn publish(regs: &mut Regs, frame: &[u8], plan: &RxPlan, written: &RxWritten) -> RxResult {
    regs.counters.rx_ring_errors += written.ring_errors;
    let same_ring = regs.rx_ring_gen == plan.ring_gen;
    if same_ring {
        regs.set(regs::RDH, written.head);
    }
    if !same_ring || !written.complete {
        return RxResult::Dropped;
    }

    // Statistics.
    let total = plan.total as u64;
    regs.add_stat(regs::GPRC, 1);
    regs.add_stat(regs::TPR, 1);
    regs.add_stat64(regs::GORCL, total);
    regs.add_stat64(regs::TORL, total);
    if frame.get(..6) == Some(&[0xff; 6]) {
        regs.add_stat(regs::BPRC, 1);
    } else if frame.first().is_some_and(|b| b & 1 != 0) {
        regs.add_stat(regs::MPRC, 1);
    }
    let with_fcs = frame.len().max(RX_MIN_FRAME_LEN) + FCS_LEN;
    if let Some(b) = size_bucket(with_fcs) {
        regs.add_stat(regs::PRC64 + 4 * b as u64, 1);
    }
    regs.counters.rx_frames += 1;
    regs.counters.rx_bytes += frame.len() as u64;

    // Free descriptors at or below the RDMTS fraction (1/2, 1/4, 1/8),
    // against the driver's current tail.
    let (len, head, tail) = (plan.len, written.head, regs.get(regs::RDT));
    let rdmts = (plan.rctl >> rctl::RDMTS_SHIFT) & 3;
    if tail < len {
        let free = (tail + len - head) % len;
        if rdmts < 3 && free <= len >> (rdmts + 1) {
            regs.set_cause(icr::RXDMT0);
        }
    }
    RxResult::Delivered
}

/// The Ethernet FCS (CRC-32, IEEE 802.3, the polynomial `crc32fast`
/// computes), sent least significant byte first.
#[cfg(test)]
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}
