//! The driver's side of split virtqueues in a `GuestMemoryMmap`, for the
//! unit tests and benchmarks that play the guest without one.
//!
//! Built for this crate's tests and, with the `test-driver` feature, for
//! other crates' test binaries; petrel itself never enables it.

// A failed guest-memory access here means the fixture is laid out wrong;
// stopping the test at once says so best, as the same code inline in a
// test would.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{fence, Ordering};

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::net::QUEUE_SIZE;

/// The driver side of one split virtqueue (no indirect descriptors).
///
/// Indices shared with the device are read and written with the orderings
/// a driver uses, so the device may run on another thread.
pub struct DriverRing {
    mem: GuestMemoryMmap,
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    /// Where [`DriverRing::add_chain`] writes its next descriptor.
    next_desc: u16,
    /// Shadow of the avail index, made visible by [`DriverRing::publish`].
    avail_idx: u16,
    /// The next used entry the driver has not consumed; the caller
    /// advances it as it reaps.
    pub last_used: u16,
}

impl DriverRing {
    /// Lays out a ring of `size` entries at `base` (descriptor table, then
    /// avail ring, then used ring) and zeroes it.
    pub fn new(mem: &GuestMemoryMmap, base: u64, size: u16) -> Self {
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        let end = used + 6 + 8 * u64::from(size);
        mem.write_slice(&vec![0u8; (end - base) as usize], GuestAddress(base))
            .unwrap();
        Self {
            mem: mem.clone(),
            desc,
            avail,
            used,
            size,
            next_desc: 0,
            avail_idx: 0,
            last_used: 0,
        }
    }

    /// The guest memory the ring lives in.
    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The avail index as the driver has it (published or not).
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }

    /// The device's view, as the transport would configure it.
    pub fn queue(&self, event_idx: bool) -> Queue {
        let mut q = Queue::new(QUEUE_SIZE).unwrap();
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc as u32), Some((self.desc >> 32) as u32));
        q.set_avail_ring_address(Some(self.avail as u32), Some((self.avail >> 32) as u32));
        q.set_used_ring_address(Some(self.used as u32), Some((self.used >> 32) as u32));
        q.set_event_idx(event_idx);
        q.set_ready(true);
        q
    }

    /// Writes descriptor `index`.
    pub fn set_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.mem
            .write_slice(&d, GuestAddress(self.desc + 16 * u64::from(index)))
            .unwrap();
    }

    /// Writes a chain of (addr, len, device-writable) buffers on the next
    /// free descriptors and publishes it; returns its head.
    pub fn add_chain(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, write)) in bufs.iter().enumerate() {
            let index = (self.next_desc + i as u16) % self.size;
            let last = i + 1 == bufs.len();
            let mut flags = if write { VRING_DESC_F_WRITE as u16 } else { 0 };
            if !last {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            self.set_desc(index, addr, len, flags, (index + 1) % self.size);
        }
        self.next_desc = (self.next_desc + bufs.len() as u16) % self.size;
        self.push(head);
        self.publish();
        head
    }

    /// Puts `head` in the avail ring (not yet visible to the device).
    pub fn push(&mut self, head: u16) {
        let slot = self.avail + 4 + 2 * u64::from(self.avail_idx % self.size);
        self.mem
            .write_obj(head.to_le(), GuestAddress(slot))
            .unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    /// Makes pushed heads visible to the device.
    pub fn publish(&self) {
        self.set_avail_idx(self.avail_idx);
    }

    /// Stores `idx` as the avail index the device sees (store-release);
    /// any value, to play a driver that breaks the queue.
    pub fn set_avail_idx(&self, idx: u16) {
        self.mem
            .store(idx.to_le(), GuestAddress(self.avail + 2), Ordering::Release)
            .unwrap();
    }

    /// With EVENT_IDX: whether the device asked for a kick for the heads
    /// published since `old` (the avail index before them).
    pub fn kick_needed(&self, old: u16) -> bool {
        fence(Ordering::SeqCst);
        let at = self.used + 4 + 8 * u64::from(self.size);
        let event: u16 = self.mem.load(GuestAddress(at), Ordering::Relaxed).unwrap();
        need_event(u16::from_le(event), self.avail_idx, old)
    }

    /// The used index the device published.
    pub fn used_idx(&self) -> u16 {
        let v: u16 = self
            .mem
            .load(GuestAddress(self.used + 2), Ordering::Acquire)
            .unwrap();
        u16::from_le(v)
    }

    /// (id, len) of used element `i`.
    pub fn used_elem(&self, i: u16) -> (u32, u32) {
        let at = GuestAddress(self.used + 4 + 8 * u64::from(i % self.size));
        let mut e = [0u8; 8];
        self.mem.read_slice(&mut e, at).unwrap();
        (
            u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
            u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
        )
    }

    /// With EVENT_IDX: asks for an interrupt once the used index passes
    /// `idx`.
    pub fn set_used_event(&self, idx: u16) {
        let at = self.avail + 4 + 2 * u64::from(self.size);
        self.mem
            .store(idx.to_le(), GuestAddress(at), Ordering::Relaxed)
            .unwrap();
    }
}

/// `vring_need_event` (virtio 1.x, 2.7.10): whether moving an index from
/// `old` to `new` passes `event`.
fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}
