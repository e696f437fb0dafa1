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

use std::collections::VecDeque;

use virtio_queue::DescriptorChain;
use vm_memory::{Address, GuestAddress, GuestMemoryMmap};

use super::NUM_BUFFERS_OFFSET;
use crate::virtio::iovec::GuestIovecs;

/// Most iovecs one readv takes (the kernel's IOV_MAX), and so most
/// descriptors parsed ahead.
pub(super) const MAX_RX_IOVECS: usize = 1024;

/// One parsed chain.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    head: u16,
    /// Its iovecs (consecutive in the list).
    iovecs: usize,
    /// Its bytes.
    len: usize,
}

pub(super) struct RxBuffers {
    chains: VecDeque<Parsed>,
    iovecs: GuestIovecs,
    /// Guest address and length of every iovec, in the same order.
    ranges: Vec<(GuestAddress, usize)>,
    /// Bytes of all parsed chains.
    capacity: usize,
}

impl RxBuffers {
    /// Room for `queue_size` chains; nothing is allocated afterwards.
    pub fn new(queue_size: usize) -> Self {
        Self {
            chains: VecDeque::with_capacity(queue_size),
            iovecs: GuestIovecs::with_capacity(MAX_RX_IOVECS),
            ranges: Vec::with_capacity(MAX_RX_IOVECS),
            capacity: 0,
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
        self.capacity = 0;
        n
    }

    /// Parses `chain` (head below `queue_size`) onto the end of the list;
    /// false, with nothing kept, when the zero-copy path cannot take it.
    pub fn push_chain(
        &mut self,
        mem: &GuestMemoryMmap,
        chain: DescriptorChain<&GuestMemoryMmap>,
        queue_size: u16,
    ) -> bool {
        let head = chain.head_index();
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
    fn parse(&mut self, mem: &GuestMemoryMmap, chain: DescriptorChain<&GuestMemoryMmap>) -> bool {
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

    /// How many iovecs from the front hold at least `need` bytes (all of
    /// them if they hold less), and their bytes.
    pub fn iovecs_for(&self, need: usize) -> (usize, usize) {
        let mut bytes = 0;
        for (i, &(_, len)) in self.ranges.iter().enumerate() {
            bytes += len;
            if bytes >= need {
                return (i + 1, bytes);
            }
        }
        (self.ranges.len(), bytes)
    }

    /// The iovec list, for the readv.
    pub fn iovecs(&self) -> &GuestIovecs {
        &self.iovecs
    }

    /// Takes the chains a frame of `len` bytes (at most [`Self::capacity`])
    /// filled from the front: their (head, used length) go to `used`, and
    /// the guest addresses of the frame's two `num_buffers` bytes are
    /// returned.
    pub fn take(&mut self, len: usize, used: &mut Vec<(u16, u32)>) -> [Option<GuestAddress>; 2] {
        used.clear();
        let mut num_buffers_at = [None; 2];
        let mut offset = 0usize;
        for &(addr, n) in &self.ranges {
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
        let (mut left, mut iovecs, mut bytes) = (len, 0, 0);
        while left > 0 {
            let Some(c) = self.chains.pop_front() else {
                break;
            };
            let n = c.len.min(left);
            used.push((c.head, n as u32));
            left -= n;
            iovecs += c.iovecs;
            bytes += c.len;
        }
        self.iovecs.drain_front(iovecs);
        self.ranges.drain(..iovecs.min(self.ranges.len()));
        self.capacity -= bytes.min(self.capacity);
        num_buffers_at
    }
}
