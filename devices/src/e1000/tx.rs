//! Transmit: descriptor ring processing, checksum insertion and TCP/UDP
//! segmentation (TSO), all done in the device so the backend only ever sees
//! complete, fully checksummed frames (with an all-zero virtio-net header)
//! — except that a TCP TSO packet goes to a backend that
//! [accepts GSO](FrameBackend::accepts_gso) whole, as one GSO frame with
//! its headers completed (the kernel behind a tap segments it, exactly as
//! for virtio-net): one write instead of one per segment.
//!
//! Each packet is gathered into a preallocated buffer of [`TX_BUF_LEN`]
//! bytes; a packet that does not fit, whose buffers lie outside guest
//! memory, or whose offload parameters make no sense is dropped and
//! counted, never transmitted partially.

use std::io::IoSlice;

use net_backend::FrameBackend;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::regs::txd;
use super::VNET_HDR_LEN;

/// Room for one packet: a 64 KiB TSO payload plus headers.
pub const TX_BUF_LEN: usize = 0x1_0000 + 0x400;
/// Bytes per descriptor.
pub const DESC_LEN: u64 = 16;
/// Smallest TSO MSS accepted: Linux's TCP_MIN_SND_MSS, below which no
/// Linux TCP sends; smaller values only serve to turn one descriptor into
/// thousands of frames.
pub const MIN_TSO_MSS: usize = 48;
/// Most segments one TSO packet may make: a 64 KiB send (Linux's
/// gso_max_size) at [`MIN_TSO_MSS`]. A packet needing more is dropped.
pub const MAX_TSO_SEGMENTS: usize = 0x1_0000_usize.div_ceil(MIN_TSO_MSS);

/// The work one pass (one TDT write on the vCPU thread, or one
/// continuation on the worker) may do, so that one MMIO exit never holds
/// the device for long whatever the guest posted: at most this many
/// frames sent (a TSO packet's segments are resumed in the next pass) ...
pub const TX_PASS_FRAMES: usize = 256;
/// ... this many descriptors read ...
pub const TX_PASS_DESCRIPTORS: u32 = 256;
/// ... and this many bytes gathered from guest memory.
pub const TX_PASS_BYTES: usize = 1 << 20;

/// virtio_net_hdr flags and gso types (virtio 1.x, 5.1.6).
const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// The offload context of the last context descriptor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Context {
    ipcss: usize,
    ipcso: usize,
    ipcse: usize,
    tucss: usize,
    tucso: usize,
    tucse: usize,
    hdr_len: usize,
    mss: usize,
    ipv4: bool,
    tcp: bool,
    tse: bool,
}

/// A descriptor ring snapshot taken from the registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRing {
    pub base: u64,
    /// Descriptors in the ring (TDLEN / 16).
    pub len: u32,
    pub head: u32,
    pub tail: u32,
}

/// What one pass over the ring did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxOutcome {
    /// The new TDH.
    pub head: u32,
    /// A descriptor with RS got its DD bit written back (TXDW).
    pub wrote_back: bool,
    /// One of them had IDE clear: TXDW is not delayed (TIDV/TADV).
    pub wrote_back_now: bool,
    /// The pass ran out of budget with work left (descriptors before
    /// the tail or segments of a TSO packet): run another pass.
    pub more: bool,
}

/// Counters of one pass, applied to the statistics registers and the
/// device counters by the caller.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxStats {
    pub frames: u64,
    /// Frame bytes without FCS.
    pub bytes: u64,
    pub multicast: u64,
    pub broadcast: u64,
    /// PTC64..PTC1522 buckets.
    pub sizes: [u64; 6],
    pub tso_contexts: u64,
    /// Packets dropped: malformed, too long, bad buffers or offloads.
    pub dropped: u64,
    /// Ring problems: registers out of range, ring outside guest memory.
    pub ring_errors: u64,
    /// Frames the backend refused.
    pub backend_errors: u64,
}

/// Where frames go and how.
pub struct TxOut<'a> {
    pub backend: &'a mut dyn FrameBackend,
    /// VET when CTRL.VME is set (VLAN insertion enabled).
    pub vlan_tpid: Option<u16>,
    /// The backend takes GSO frames ([`FrameBackend::accepts_gso`]).
    pub gso: bool,
    pub stats: &'a mut TxStats,
}

/// A gathered TSO packet whose segments are not all sent: the pass ran
/// out of frames; the next pass sends the rest before reading descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct PendingTso {
    /// Packet length in `buf`.
    len: usize,
    popts: u8,
    vlan: Option<(u16, u16)>,
    /// The first segment not sent yet.
    next: usize,
    ctx: Context,
}

/// Transmit state that survives between TDT writes: the offload context,
/// a packet whose descriptors are not all posted yet, and a TSO packet
/// whose segments are not all sent.
pub struct TxState {
    ctx: Context,
    buf: Vec<u8>,
    seg: Vec<u8>,
    len: usize,
    started: bool,
    broken: bool,
    popts: u8,
    tso: bool,
    tso_pending: Option<PendingTso>,
    /// Frames the current pass may still send.
    frames_left: usize,
    /// Bytes the current pass may still gather.
    bytes_left: usize,
}

impl Default for TxState {
    fn default() -> Self {
        Self::new()
    }
}

impl TxState {
    pub fn new() -> Self {
        Self {
            ctx: Context::default(),
            buf: vec![0; TX_BUF_LEN],
            seg: vec![0; TX_BUF_LEN],
            len: 0,
            started: false,
            broken: false,
            popts: 0,
            tso: false,
            tso_pending: None,
            frames_left: 0,
            bytes_left: 0,
        }
    }

    /// Whether a TSO packet's segments wait for the next pass.
    pub fn has_pending_segments(&self) -> bool {
        self.tso_pending.is_some()
    }

    /// Device reset: forget the context, any partial packet and any
    /// segments not sent yet.
    pub fn reset(&mut self) {
        self.ctx = Context::default();
        self.tso_pending = None;
        self.clear_packet();
    }

    fn clear_packet(&mut self) {
        self.len = 0;
        self.started = false;
        self.broken = false;
        self.popts = 0;
        self.tso = false;
    }

    /// Processes descriptors from `ring.head` up to `ring.tail` (at most
    /// one lap) within one pass's budget ([`TX_PASS_FRAMES`],
    /// [`TX_PASS_DESCRIPTORS`], [`TX_PASS_BYTES`]); segments of a TSO
    /// packet left by the previous pass go first. Stops early, counting a
    /// ring error, when the ring registers are out of range or a
    /// descriptor cannot be read.
    pub fn process(&mut self, mem: &GuestMemoryMmap, ring: TxRing, out: &mut TxOut) -> TxOutcome {
        let mut outcome = TxOutcome {
            head: ring.head,
            wrote_back: false,
            wrote_back_now: false,
            more: false,
        };
        self.frames_left = TX_PASS_FRAMES;
        self.bytes_left = TX_PASS_BYTES;
        if let Some(pending) = self.tso_pending.take() {
            self.segment(pending, out);
        }
        if ring.len == 0 || ring.head >= ring.len || ring.tail >= ring.len {
            if ring.head != ring.tail {
                out.stats.ring_errors += 1;
            }
            outcome.more = self.tso_pending.is_some();
            return outcome;
        }
        let mut head = ring.head;
        let mut descriptors = ring.len.min(TX_PASS_DESCRIPTORS);
        while head != ring.tail {
            if descriptors == 0
                || self.frames_left == 0
                || self.bytes_left == 0
                || self.tso_pending.is_some()
            {
                outcome.more = true;
                break;
            }
            descriptors -= 1;
            let Some(addr) = ring
                .base
                .checked_add(u64::from(head) * DESC_LEN)
                .filter(|a| a.checked_add(DESC_LEN).is_some())
            else {
                out.stats.ring_errors += 1;
                break;
            };
            let mut desc = [0u8; DESC_LEN as usize];
            if mem.read_slice(&mut desc, GuestAddress(addr)).is_err() {
                out.stats.ring_errors += 1;
                break;
            }
            let rs = self.descriptor(mem, &desc, out);
            if rs {
                // STA: DD set, EC/LC/TU clear. The packet's data is in
                // `buf` already, so its segments may still be pending.
                let sta = (desc[12] & 0xf0) | txd::STA_DD;
                if mem.write_slice(&[sta], GuestAddress(addr + 12)).is_ok() {
                    outcome.wrote_back = true;
                    outcome.wrote_back_now |= desc[11] & txd::CMD_IDE == 0;
                } else {
                    out.stats.ring_errors += 1;
                }
            }
            head = (head + 1) % ring.len;
        }
        outcome.head = head;
        outcome.more |= self.tso_pending.is_some();
        outcome
    }

    /// Handles one descriptor; returns whether it asks for status
    /// write-back (RS).
    fn descriptor(&mut self, mem: &GuestMemoryMmap, d: &[u8; 16], out: &mut TxOut) -> bool {
        let addr = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        let lower = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
        let upper = u32::from_le_bytes([d[12], d[13], d[14], d[15]]);
        let cmd = (lower >> 24) as u8;
        let special = (upper >> 16) as u16;
        let rs = cmd & txd::CMD_RS != 0;
        let (length, data, popts, tse) = if cmd & txd::CMD_DEXT == 0 {
            ((lower & 0xffff) as usize, false, 0, false)
        } else {
            match lower & txd::DTYP_MASK {
                0 => {
                    self.set_context(d, lower, out.stats);
                    return rs;
                }
                txd::DTYP_DATA => (
                    (lower & 0xf_ffff) as usize,
                    true,
                    (upper >> 8) as u8,
                    cmd & txd::CMD_TSE != 0,
                ),
                _ => {
                    // Reserved descriptor type: poison the packet.
                    self.started = true;
                    self.broken = true;
                    if cmd & txd::CMD_EOP != 0 {
                        self.finish(None, None, out);
                    }
                    return rs;
                }
            }
        };
        if !self.started {
            self.started = true;
            self.popts = popts;
            self.tso = data && tse && self.ctx.tse;
        }
        self.gather(mem, addr, length);
        if cmd & txd::CMD_EOP != 0 {
            let vlan = out
                .vlan_tpid
                .filter(|_| cmd & txd::CMD_VLE != 0)
                .map(|tpid| (tpid, special));
            // Legacy IC: checksum from CSS to the end, stored at CSO.
            let legacy_ic = (!data && cmd & txd::CMD_IC != 0)
                .then(|| (usize::from(d[13]), usize::from((lower >> 16) as u8)));
            self.finish(vlan, legacy_ic, out);
        }
        rs
    }

    fn set_context(&mut self, d: &[u8; 16], lower: u32, stats: &mut TxStats) {
        let tucmd = (lower >> 24) as u8;
        let tcp = tucmd & txd::TUCMD_TCP != 0;
        let tucss = usize::from(d[4]);
        let mut tucso = usize::from(d[5]);
        if tucso == 0 {
            // No offset given: the standard TCP/UDP checksum position.
            tucso = tucss + if tcp { 16 } else { 6 };
        }
        self.ctx = Context {
            ipcss: usize::from(d[0]),
            ipcso: usize::from(d[1]),
            ipcse: usize::from(u16::from_le_bytes([d[2], d[3]])),
            tucss,
            tucso,
            tucse: usize::from(u16::from_le_bytes([d[6], d[7]])),
            hdr_len: usize::from(d[13]),
            mss: usize::from(u16::from_le_bytes([d[14], d[15]])),
            ipv4: tucmd & txd::TUCMD_IP != 0,
            tcp,
            tse: tucmd & txd::CMD_TSE != 0,
        };
        if self.ctx.tse {
            stats.tso_contexts += 1;
        }
    }

    fn gather(&mut self, mem: &GuestMemoryMmap, addr: u64, length: usize) {
        if length == 0 || self.broken {
            return;
        }
        let Some(end) = self
            .len
            .checked_add(length)
            .filter(|&end| end <= self.buf.len())
        else {
            self.broken = true;
            return;
        };
        self.bytes_left = self.bytes_left.saturating_sub(length);
        let read = match self.buf.get_mut(self.len..end) {
            Some(dst) => mem.read_slice(dst, GuestAddress(addr)).is_ok(),
            None => false,
        };
        if read {
            self.len = end;
        } else {
            self.broken = true;
        }
    }

    fn finish(
        &mut self,
        vlan: Option<(u16, u16)>,
        legacy_ic: Option<(usize, usize)>,
        out: &mut TxOut,
    ) {
        let len = self.len;
        let ok = !self.broken && len > 0;
        let (tso, popts, ctx) = (self.tso, self.popts, self.ctx);
        self.clear_packet();
        if !ok {
            out.stats.dropped += 1;
            return;
        }
        if tso {
            let pending = PendingTso {
                len,
                popts,
                vlan,
                next: 0,
                ctx,
            };
            if !self.tso_valid(&pending) {
                out.stats.dropped += 1;
            } else if !(out.gso && self.send_gso(&pending, out)) {
                self.segment(pending, out);
            }
            return;
        }
        let Some(frame) = self.buf.get_mut(..len) else {
            out.stats.dropped += 1;
            return;
        };
        if popts & txd::POPTS_IXSM != 0 {
            put_checksum(frame, ctx.ipcss, ctx.ipcso, ctx.ipcse, false);
        }
        if popts & txd::POPTS_TXSM != 0 {
            put_checksum(frame, ctx.tucss, ctx.tucso, ctx.tucse, true);
        }
        if let Some((css, cso)) = legacy_ic {
            put_checksum(frame, css, cso, 0, true);
        }
        self.frames_left = self.frames_left.saturating_sub(1);
        send(frame, vlan, out);
    }

    /// Hands a valid TCP TSO packet to the backend whole, as a GSO frame:
    /// IP length (and checksum) and the TCP pseudo-header sum completed as
    /// Linux's stack leaves them for CHECKSUM_PARTIAL, a virtio-net header
    /// describing the segmentation. False (nothing sent) when the packet
    /// is not one the stack can segment for us: UDP, no TCP checksum
    /// offload, a VLAN tag to insert, or more than 64 KiB of IP.
    fn send_gso(&mut self, p: &PendingTso, out: &mut TxOut) -> bool {
        let c = p.ctx;
        let l3_len = p.len - c.ipcss;
        if !c.tcp || p.popts & txd::POPTS_TXSM == 0 || p.vlan.is_some() || l3_len > 0xffff {
            return false;
        }
        let Some(frame) = self.buf.get_mut(..p.len) else {
            return false;
        };
        if c.ipv4 {
            put_be16(frame, c.ipcss + 2, l3_len as u16);
            if p.popts & txd::POPTS_IXSM != 0 {
                put_checksum(frame, c.ipcss, c.ipcso, c.ipcse, false);
            }
        } else {
            put_be16(frame, c.ipcss + 4, (l3_len - 40) as u16);
        }
        let l4_len = p.len - c.tucss;
        let partial = be16(frame, c.tucso);
        put_be16(frame, c.tucso, fold(u32::from(partial) + l4_len as u32));
        let mut hdr = [0u8; VNET_HDR_LEN];
        hdr[0] = VNET_F_NEEDS_CSUM;
        hdr[1] = if c.ipv4 {
            VNET_GSO_TCPV4
        } else {
            VNET_GSO_TCPV6
        };
        hdr[2..4].copy_from_slice(&(c.hdr_len as u16).to_le_bytes());
        hdr[4..6].copy_from_slice(&(c.mss as u16).to_le_bytes());
        hdr[6..8].copy_from_slice(&(c.tucss as u16).to_le_bytes());
        hdr[8..10].copy_from_slice(&((c.tucso - c.tucss) as u16).to_le_bytes());
        self.frames_left = self.frames_left.saturating_sub(1);
        let bufs = [IoSlice::new(&hdr), IoSlice::new(frame)];
        let result = out.backend.write_frame(&bufs);
        count_gso(frame, &c, result.is_ok(), out.stats);
        true
    }

    /// Whether a gathered TSO packet's context makes sense: header
    /// offsets inside the header, MSS and segment count within bounds.
    fn tso_valid(&self, p: &PendingTso) -> bool {
        let c = &p.ctx;
        let hdr = c.hdr_len;
        let l3_min = if c.ipv4 { 20 } else { 40 };
        let l4_min = if c.tcp { 20 } else { 8 };
        hdr > 0
            && hdr <= p.len
            && c.mss >= MIN_TSO_MSS
            && (p.len - hdr).div_ceil(c.mss) <= MAX_TSO_SEGMENTS
            && c.ipcss + l3_min <= hdr
            && c.tucss >= c.ipcss + l3_min
            && c.tucss + l4_min <= hdr
            && (p.popts & txd::POPTS_TXSM == 0 || c.tucso + 2 <= hdr)
            && (p.popts & txd::POPTS_IXSM == 0 || c.ipcso + 2 <= hdr)
    }

    /// TCP (or UDP) segmentation of the gathered packet per its context,
    /// from segment `p.next` on, while the pass may send frames; what is
    /// left becomes [`Self::tso_pending`]. `p` passed [`Self::tso_valid`].
    fn segment(&mut self, p: PendingTso, out: &mut TxOut) {
        let c = p.ctx;
        let hdr = c.hdr_len;
        let (Some(header), Some(payload)) = (self.buf.get(..hdr), self.buf.get(hdr..p.len)) else {
            out.stats.dropped += 1;
            return;
        };
        let ip_id = be16(header, c.ipcss + 4);
        let seq = be32(header, c.tucss + 4);
        let tu_partial = be16(header, c.tucso);
        let chunks = payload.len().div_ceil(c.mss).max(1);
        for i in p.next..chunks {
            if self.frames_left == 0 {
                self.tso_pending = Some(PendingTso { next: i, ..p });
                return;
            }
            self.frames_left -= 1;
            let start = (i * c.mss).min(payload.len());
            let end = (start + c.mss).min(payload.len());
            let seg_len = hdr + (end - start);
            let Some(s) = self.seg.get_mut(..seg_len) else {
                out.stats.dropped += 1;
                return;
            };
            s[..hdr].copy_from_slice(header);
            s[hdr..].copy_from_slice(&payload[start..end]);
            fix_segment(s, &c, i, chunks, ip_id, seq);
            let l4_len = seg_len - c.tucss;
            if p.popts & txd::POPTS_TXSM != 0 {
                // The driver left the pseudo-header sum without the length.
                put_be16(s, c.tucso, ones_add(tu_partial, l4_len as u16));
                put_checksum(s, c.tucss, c.tucso, c.tucse, true);
            }
            if p.popts & txd::POPTS_IXSM != 0 {
                put_checksum(s, c.ipcss, c.ipcso, c.ipcse, false);
            }
            send(s, p.vlan, out);
        }
    }
}

/// Rewrites the per-segment header fields of segment `i` of `chunks`: IP
/// length and id, TCP sequence and flags (or UDP length).
fn fix_segment(s: &mut [u8], c: &Context, i: usize, chunks: usize, ip_id: u16, seq: u32) {
    let seg_len = s.len();
    if c.ipv4 {
        put_be16(s, c.ipcss + 2, (seg_len - c.ipcss) as u16);
        put_be16(s, c.ipcss + 4, ip_id.wrapping_add(i as u16));
    } else {
        put_be16(s, c.ipcss + 4, (seg_len - c.ipcss - 40) as u16);
    }
    if c.tcp {
        put_be32(s, c.tucss + 4, seq.wrapping_add((i * c.mss) as u32));
        let mut flags = s[c.tucss + 13];
        if i + 1 < chunks {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        s[c.tucss + 13] = flags;
    } else {
        put_be16(s, c.tucss + 4, (seg_len - c.tucss) as u16);
    }
}

/// Counts a TSO packet sent whole as the segments the wire will carry.
fn count_gso(frame: &[u8], c: &Context, ok: bool, stats: &mut TxStats) {
    if !ok {
        stats.backend_errors += 1;
        stats.dropped += 1;
        return;
    }
    let payload = frame.len() - c.hdr_len;
    let segs = payload.div_ceil(c.mss).max(1);
    let last = payload - (segs - 1) * c.mss;
    stats.frames += segs as u64;
    stats.bytes += (segs * c.hdr_len + payload) as u64;
    for (n, len) in [(segs - 1, c.hdr_len + c.mss), (1, c.hdr_len + last)] {
        if let Some(b) = size_bucket(len + 4) {
            stats.sizes[b] += n as u64;
        }
    }
    if frame.first().is_some_and(|b| b & 1 != 0) {
        if frame.get(..6) == Some(&[0xff; 6]) {
            stats.broadcast += segs as u64;
        } else {
            stats.multicast += segs as u64;
        }
    }
}

/// PTC/PRC bucket of a frame length (with FCS): 64, 127, 255, 511, 1023,
/// 1522.
pub fn size_bucket(len_with_fcs: usize) -> Option<usize> {
    match len_with_fcs {
        0..=64 => Some(0),
        65..=127 => Some(1),
        128..=255 => Some(2),
        256..=511 => Some(3),
        512..=1023 => Some(4),
        1024..=1522 => Some(5),
        _ => None,
    }
}

fn send(frame: &[u8], vlan: Option<(u16, u16)>, out: &mut TxOut) {
    let hdr = [0u8; VNET_HDR_LEN];
    let (result, wire_len) = match vlan {
        Some((tpid, tci)) if frame.len() >= 12 => {
            let [t0, t1] = tpid.to_be_bytes();
            let [c0, c1] = tci.to_be_bytes();
            let tag = [t0, t1, c0, c1];
            let bufs = [
                IoSlice::new(&hdr),
                IoSlice::new(&frame[..12]),
                IoSlice::new(&tag),
                IoSlice::new(&frame[12..]),
            ];
            (out.backend.write_frame(&bufs), frame.len() + 4)
        }
        _ => {
            let bufs = [IoSlice::new(&hdr), IoSlice::new(frame)];
            (out.backend.write_frame(&bufs), frame.len())
        }
    };
    let stats = &mut *out.stats;
    if result.is_err() {
        stats.backend_errors += 1;
        stats.dropped += 1;
        return;
    }
    stats.frames += 1;
    stats.bytes += wire_len as u64;
    if let Some(&first) = frame.first() {
        if frame.get(..6) == Some(&[0xff; 6]) {
            stats.broadcast += 1;
        } else if first & 1 != 0 {
            stats.multicast += 1;
        }
    }
    if let Some(b) = size_bucket(wire_len + 4) {
        stats.sizes[b] += 1;
    }
}

/// Ones'-complement sum of `data` as big-endian 16-bit words (an odd last
/// byte is padded with zero), not folded.
pub fn ones_sum(data: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff_ffff {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
    }
    sum as u32
}

/// Folds a 32-bit ones'-complement sum to 16 bits.
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn ones_add(a: u16, b: u16) -> u16 {
    fold(u32::from(a) + u32::from(b))
}

/// Inserts the checksum of `frame[css..=cse]` (to the end when `cse` is 0
/// or past it) at `cso`. Offsets that do not fit are ignored (the frame
/// goes out unmodified). `tu` maps a zero result to 0xffff (UDP).
fn put_checksum(frame: &mut [u8], css: usize, cso: usize, cse: usize, tu: bool) -> bool {
    let n = frame.len();
    let end = if cse != 0 && cse < n { cse + 1 } else { n };
    if css >= end || cso.checked_add(2).is_none_or(|e| e > end) {
        return false;
    }
    let mut c = !fold(ones_sum(&frame[css..end]));
    if tu && c == 0 {
        c = 0xffff;
    }
    put_be16(frame, cso, c);
    true
}

fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_be_bytes([s[0], s[1]]),
        None => 0,
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

fn put_be16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn put_be32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// Transmit state of a snapshot: the offload context and a packet
/// gathered from descriptors already consumed (TDH moved past them), or a
/// TSO packet with segments left to send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct TxSaved {
    ctx: Context,
    /// The gathered bytes (`buf[..len]`, or the pending TSO packet).
    packet: Vec<u8>,
    len: usize,
    started: bool,
    broken: bool,
    popts: u8,
    tso: bool,
    tso_pending: Option<PendingTso>,
}

impl TxState {
    pub(super) fn save(&self) -> TxSaved {
        let used = self.tso_pending.map_or(self.len, |p| p.len.max(self.len));
        TxSaved {
            ctx: self.ctx,
            packet: self.buf.get(..used).unwrap_or_default().to_vec(),
            len: self.len,
            started: self.started,
            broken: self.broken,
            popts: self.popts,
            tso: self.tso,
            tso_pending: self.tso_pending,
        }
    }

    pub(super) fn restore(&mut self, s: &TxSaved) -> Result<(), String> {
        let pending = s.tso_pending.map_or(0, |p| p.len);
        if s.packet.len() > TX_BUF_LEN || s.len > s.packet.len() || pending > s.packet.len() {
            return Err(format!(
                "saved transmit packet of {} bytes (len {}, pending {pending}) does not fit",
                s.packet.len(),
                s.len
            ));
        }
        self.buf[..s.packet.len()].copy_from_slice(&s.packet);
        self.ctx = s.ctx;
        self.len = s.len;
        self.started = s.started;
        self.broken = s.broken;
        self.popts = s.popts;
        self.tso = s.tso;
        self.tso_pending = s.tso_pending;
        Ok(())
    }
}
