//! Zero-copy receive: the guest's rx chains parsed ahead of the frames
//! (as Firecracker's `RxBuffers`) into one list of raw iovecs, so the
//! backend reads each frame with a single readv straight into guest
//! buffers, virtio-net header included; with MRG_RXBUF a frame takes as
//! many chains from the front as it needs.
//!
//! Parsed chains have left the avail ring but are not used yet: they are
//! the most recently popped ones, so [`RxBuffers::clear`] tells how many
//! positions to go back to hand them to the guest again (bounce path,
//! worker stop). A chain this list cannot take — a readable descriptor,
//! one outside a single memory region, a truncated chain, a bad head,
//! more descriptors than a readv takes — is never half-parsed: the caller
//! falls back to the bounce path, which judges it exactly as before.
//!
//! Per-frame cost is what this file is about (issue 17): the list is a
//! window over fixed arrays (a frame advances its start, nothing is moved
//! until the arrays run out of room), and a readv hands the kernel at
//! most [`SHORT_READ_IOVECS`] iovecs while frames are small — the first
//! guest ranges plus the pair's bounce buffer as the tail, whose bytes (a
//! big frame's overflow, rare in such a stream) are then copied into the
//! following ranges. More iovecs make the kernel allocate and free an
//! array per readv and import them all, which cost more than a 1.5 KB
//! copy. After a frame overflowed, the reads hand over all the ranges a
//! maximal frame needs (a stream of 64 KiB frames is then copied by the
//! kernel only), until [`NARROW_AFTER`] frames in a row would have fit the
//! short list.

use std::collections::VecDeque;
use std::io;

use net_backend::FrameBackend;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::slice_chain::SliceChain;
use super::NUM_BUFFERS_OFFSET;
use crate::virtio::iovec::{GuestIovecs, SHORT_READ_IOVECS};

/// Most iovecs one readv takes (the kernel's IOV_MAX), and so most
/// descriptors parsed ahead.
pub(super) const MAX_RX_IOVECS: usize = 1024;

/// Frames in a row that fit the short read list before reads go back to it
/// after an overflow.
const NARROW_AFTER: u32 = 16;

/// One parsed chain.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    head: u16,
    /// Its iovecs (consecutive in the list).
    iovecs: usize,
    /// Its bytes.
    len: usize,
}

/// How one read went: the frame's length as the backend reported it, and
/// how many of its first bytes went straight into guest ranges (the rest,
/// up to the reported length, is at the front of the tail buffer).
#[derive(Debug, Clone, Copy)]
pub(super) struct Read {
    pub len: usize,
    pub direct: usize,
    /// Most bytes the read could place (guest ranges plus tail).
    pub offered: usize,
}

pub(super) struct RxBuffers {
    chains: VecDeque<Parsed>,
    /// The live ranges are `start..` of `iovecs` and `ranges`.
    iovecs: GuestIovecs,
    /// Guest address and length of every iovec, in the same order.
    ranges: Vec<(GuestAddress, usize)>,
    start: usize,
    /// Bytes of all parsed chains.
    capacity: usize,
    /// Reads hand over all the ranges a maximal frame needs (after a frame
    /// overflowed).
    wide: bool,
    /// Frames in a row that fit the short list while `wide`.
    fitted: u32,
}

impl RxBuffers {
    /// Room for `queue_size` chains; nothing is allocated afterwards.
    pub fn new(queue_size: usize) -> Self {
        Self {
            chains: VecDeque::with_capacity(queue_size),
            iovecs: GuestIovecs::with_capacity(MAX_RX_IOVECS),
            ranges: Vec::with_capacity(MAX_RX_IOVECS),
            start: 0,
            capacity: 0,
            wide: false,
            fitted: 0,
        }
    }

    /// Bytes of all parsed chains.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Chains parsed.
    pub fn chains(&self) -> usize {
        self.chains.len()
    }

    /// Forgets every parsed chain; returns how many there were (the
    /// caller gives them back to the avail ring).
    pub fn clear(&mut self) -> usize {
        let n = self.chains.len();
        self.chains.clear();
        self.iovecs.clear();
        self.ranges.clear();
        self.start = 0;
        self.capacity = 0;
        n
    }

    /// Parses `chain`, which starts at descriptor `head` (below
    /// `queue_size`), onto the end of the list; false, with nothing kept,
    /// when the zero-copy path cannot take it.
    pub fn push_chain(
        &mut self,
        mem: &GuestMemoryMmap,
        head: u16,
        chain: SliceChain<'_>,
        queue_size: u16,
    ) -> bool {
        // Move the live window to the front only when a chain as long as
        // the queue might not fit behind it: once per several hundred
        // frames instead of a memmove per frame.
        if self.start > 0 && self.ranges.len() + usize::from(queue_size) > MAX_RX_IOVECS {
            self.iovecs.drain_front(self.start);
            self.ranges.drain(..self.start);
            self.start = 0;
        }
        let first = self.iovecs.len();
        let parsed = head < queue_size && self.parse(mem, chain);
        let len: usize = self.ranges[first..].iter().map(|&(_, l)| l).sum();
        if !parsed || len == 0 || self.chains.len() == self.chains.capacity() {
            self.iovecs.truncate(first);
            self.ranges.truncate(first);
            return false;
        }
        self.chains.push_back(Parsed {
            head,
            iovecs: self.iovecs.len() - first,
            len,
        });
        self.capacity += len;
        true
    }

    /// Records the chain's descriptors; false on the first one the
    /// zero-copy path cannot take.
    fn parse(&mut self, mem: &GuestMemoryMmap, chain: SliceChain<'_>) -> bool {
        let mut more = false;
        for desc in chain {
            more = desc.has_next();
            if !desc.is_write_only() {
                return false;
            }
            let len = desc.len() as usize;
            if len == 0 {
                continue;
            }
            if !self.iovecs.push_writable(mem, desc.addr(), len) {
                return false;
            }
            self.ranges.push((desc.addr(), len));
        }
        !more
    }

    /// Reads one frame of at most `max` bytes: straight into every parsed
    /// range when they hold `max` and the list is short or wide, else
    /// into the first ranges with `tail` (at least `max` bytes) after them.
    pub fn read(
        &mut self,
        mem: &GuestMemoryMmap,
        backend: &mut dyn FrameBackend,
        tail: &mut [u8],
        max: usize,
    ) -> io::Result<Read> {
        let live = &self.ranges[self.start..];
        let short = live.len().min(SHORT_READ_IOVECS - 1);
        let short_bytes: usize = live[..short].iter().map(|&(_, l)| l).sum();
        let all = self.capacity >= max && (self.wide || live.len() <= SHORT_READ_IOVECS);
        let read = if all {
            // Only the ranges a maximal frame needs: up to two are parsed.
            let (count, bytes) = prefix_holding(live, max);
            let len = self.iovecs.read_from(mem, backend, self.start, count)?;
            Read {
                len,
                direct: bytes,
                offered: bytes,
            }
        } else {
            let tail_len = max.saturating_sub(short_bytes).clamp(1, tail.len());
            let tail = &mut tail[..tail_len];
            let len = self.iovecs.read_with_tail(mem, backend, self.start, tail)?;
            Read {
                len,
                direct: short_bytes,
                offered: short_bytes + tail_len,
            }
        };
        if read.len > short_bytes {
            self.wide = true;
            self.fitted = 0;
        } else if self.wide {
            self.fitted += 1;
            if self.fitted >= NARROW_AFTER {
                self.wide = false;
            }
        }
        Ok(read)
    }

    /// Copies `overflow`, the frame's bytes from `direct` on, into the
    /// parsed ranges that follow; how many bytes found room (fewer than
    /// `overflow.len()` when the chains are too short), or `None` when
    /// guest memory refused the write.
    pub fn place_overflow(
        &self,
        mem: &GuestMemoryMmap,
        direct: usize,
        overflow: &[u8],
    ) -> Option<usize> {
        let (mut skip, mut done) = (direct, 0usize);
        for &(addr, n) in &self.ranges[self.start..] {
            if done == overflow.len() {
                break;
            }
            if skip >= n {
                skip -= n;
                continue;
            }
            let room = (n - skip).min(overflow.len() - done);
            let at = addr.checked_add(skip as u64)?;
            mem.write_slice(&overflow[done..done + room], at).ok()?;
            skip = 0;
            done += room;
        }
        Some(done)
    }

    /// Takes the chains a frame of `len` bytes (at most [`Self::capacity`])
    /// filled from the front: their (head, used length) go to `used`, and
    /// the guest addresses of the frame's two `num_buffers` bytes are
    /// returned. A `len` of 0 takes the first chain with used length 0.
    pub fn take(&mut self, len: usize, used: &mut Vec<(u16, u32)>) -> [Option<GuestAddress>; 2] {
        used.clear();
        let mut num_buffers_at = [None; 2];
        let mut offset = 0usize;
        for &(addr, n) in &self.ranges[self.start..] {
            if offset >= NUM_BUFFERS_OFFSET + 2 {
                break;
            }
            for (i, slot) in num_buffers_at.iter_mut().enumerate() {
                let at = NUM_BUFFERS_OFFSET + i;
                if (offset..offset + n).contains(&at) {
                    *slot = addr.checked_add((at - offset) as u64);
                }
            }
            offset += n;
        }
        let (mut left, mut iovecs, mut bytes) = (len.max(1), 0, 0);
        while left > 0 {
            let Some(c) = self.chains.pop_front() else {
                break;
            };
            let n = c.len.min(left);
            used.push((c.head, n.min(len) as u32));
            left -= n;
            iovecs += c.iovecs;
            bytes += c.len;
        }
        self.start = (self.start + iovecs).min(self.ranges.len());
        if self.chains.is_empty() {
            self.iovecs.clear();
            self.ranges.clear();
            self.start = 0;
        }
        self.capacity -= bytes.min(self.capacity);
        num_buffers_at
    }
}

/// How many ranges from the front hold at least `need` bytes (all of them
/// if they hold less), and their bytes.
fn prefix_holding(ranges: &[(GuestAddress, usize)], need: usize) -> (usize, usize) {
    let mut bytes = 0;
    for (i, &(_, len)) in ranges.iter().enumerate() {
        bytes += len;
        if bytes >= need {
            return (i + 1, bytes);
        }
    }
    (ranges.len(), bytes)
}
