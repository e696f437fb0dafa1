//! Returning a batch of chains to a split virtqueue's used ring with one
//! memory-region lookup and one used-index store, instead of
//! `Queue::add_used`'s lookup for every element and store of the index
//! after every element.
//!
//! `Queue::needs_notification` only knows about chains added through
//! `add_used` (its private `num_added`), so a queue whose chains go through
//! a [`UsedBatch`] must be settled with [`UsedBatch::needs_notification`],
//! which applies the same EVENT_IDX rule (virtio 1.x 2.7.7.2, as Linux's
//! `virtqueue_kick_prepare`) to the entries added since the last check.

use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};

use virtio_queue::{Error, Queue, QueueT};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileMemory,
};

/// `flags` and `idx` before the used ring's elements.
const USED_RING_HEADER: u64 = 4;
/// `id` and `len`, both le32.
const USED_ELEM_SIZE: u64 = 8;
/// `flags` and `idx` before the avail ring's elements.
const AVAIL_RING_HEADER: u64 = 4;

/// Chains finished in this batch, not yet in the used ring.
pub(super) struct UsedBatch {
    /// (head, len); never reallocated (at most `capacity` entries).
    pending: Vec<(u16, u32)>,
    /// Entries published since the last [`Self::needs_notification`].
    added: Wrapping<u16>,
}

impl UsedBatch {
    /// Room for `capacity` chains (a batch's budget).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            pending: Vec::with_capacity(capacity),
            added: Wrapping(0),
        }
    }

    /// Records chain `head` (already checked to be below the queue size)
    /// as used with `len` bytes written. The caller publishes before more
    /// than `capacity` are pending (a batch's budget), so this never
    /// reallocates.
    pub(super) fn push(&mut self, head: u16, len: u32) {
        self.pending.push((head, len));
    }

    /// Entries recorded and not yet published.
    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes the recorded entries to `queue`'s used ring in `mem`, then
    /// publishes them with one release store of the used index; how many.
    /// The elements are written through one slice of the whole ring when
    /// it lies in one memory region, else each with its own checked
    /// access (a ring across regions is legal, just slow).
    pub(super) fn publish(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<u32, Error> {
        let count = self.pending.len();
        if count == 0 {
            return Ok(0);
        }
        let size = queue.size();
        let ring = GuestAddress(queue.used_ring());
        let elems = ring
            .checked_add(USED_RING_HEADER)
            .ok_or(Error::AddressOverflow)?;
        let mut next = Wrapping(queue.next_used());
        let slice = mem.get_slice(elems, usize::from(size) * USED_ELEM_SIZE as usize);
        for &(head, len) in &self.pending {
            let off = u64::from(next.0 % size) * USED_ELEM_SIZE;
            // virtq_used_elem: le32 id, le32 len, as one (unaligned-safe)
            // volatile store; `write_slice` is a generic byte copy.
            let elem = (u64::from(head) | (u64::from(len) << 32)).to_le();
            match &slice {
                Ok(slice) => slice
                    .get_ref::<u64>(off as usize)
                    .map_err(Error::VolatileMemoryError)?
                    .store(elem),
                Err(_) => {
                    let addr = elems.checked_add(off).ok_or(Error::AddressOverflow)?;
                    mem.write_obj(elem, addr).map_err(Error::GuestMemory)?;
                }
            }
            next += Wrapping(1);
        }
        self.pending.clear();
        queue.set_next_used(next.0);
        self.added += Wrapping(count as u16);
        let idx = ring.checked_add(2).ok_or(Error::AddressOverflow)?;
        // Release: the driver that sees the new index sees the elements.
        mem.store(next.0.to_le(), idx, Ordering::Release)
            .map_err(Error::GuestMemory)?;
        Ok(count as u32)
    }

    /// Whether the driver asked to be notified of the entries published
    /// since the last call (always, without EVENT_IDX, as
    /// `Queue::needs_notification`).
    pub(super) fn needs_notification(
        &mut self,
        queue: &Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, Error> {
        let added = std::mem::replace(&mut self.added, Wrapping(0));
        if !queue.event_idx_enabled() {
            return Ok(true);
        }
        // The used index store must be visible before used_event is read,
        // or a driver that just moved used_event could miss its interrupt.
        fence(Ordering::SeqCst);
        let at = AVAIL_RING_HEADER + u64::from(queue.size()) * 2;
        let addr = GuestAddress(queue.avail_ring())
            .checked_add(at)
            .ok_or(Error::AddressOverflow)?;
        let used_event = Wrapping(u16::from_le(
            mem.load(addr, Ordering::Relaxed)
                .map_err(Error::GuestMemory)?,
        ));
        let next = Wrapping(queue.next_used());
        // Notify when used_event lies in [next - added, next).
        Ok(next - used_event - Wrapping(1) < added)
    }
}
