//! The RX used ring, written per batch. `Queue::add_used` stores the used
//! index after every element (a region lookup and a release store each):
//! 16 times per 64 KiB frame in 4 KiB buffers, where the element writes
//! alone are needed. Here elements are written as frames are placed and
//! the index is published every [`PUBLISH_EVERY`] entries (so a driver
//! polling the ring meanwhile sees progress) and when the batch ends, as
//! vhost-net does. The event-idx decision is then taken over the whole
//! batch, as `Queue::needs_notification` does over its `num_added`.

use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};

use virtio_queue::{Queue, QueueT};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileMemory,
};

/// Entries written before the used index is published mid-batch.
const PUBLISH_EVERY: u16 = 64;

/// Offset of the first element in the used ring (flags, idx).
const USED_RING_HEADER: u64 = 4;
/// Offset of the ring in the avail ring (flags, idx).
const AVAIL_RING_HEADER: u64 = 4;

/// The used entries of one RX batch.
pub(super) struct UsedBatch {
    /// The queue's next used index when the batch began.
    first: Wrapping<u16>,
    /// Where the next element goes.
    next: Wrapping<u16>,
    /// The index the driver has been shown.
    published: Wrapping<u16>,
}

impl UsedBatch {
    pub fn begin(queue: &Queue) -> Self {
        let at = Wrapping(queue.next_used());
        Self {
            first: at,
            next: at,
            published: at,
        }
    }

    /// Writes the used element (`head`, `len`) at the next position.
    pub fn add(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
        head: u16,
        len: u32,
    ) -> Result<(), virtio_queue::Error> {
        let size = queue.size();
        if head >= size {
            return Err(virtio_queue::Error::InvalidDescriptorIndex);
        }
        let offset = USED_RING_HEADER + u64::from(self.next.0 % size) * 8;
        let addr = GuestAddress(queue.used_ring())
            .checked_add(offset)
            .ok_or(virtio_queue::Error::AddressOverflow)?;
        // virtq_used_elem: le32 id, le32 len; one volatile store (a
        // `write_obj` goes through vm-memory's generic byte copy).
        let elem = u64::from(head) | (u64::from(len) << 32);
        mem.get_slice(addr, 8)
            .map_err(virtio_queue::Error::GuestMemory)?
            .get_ref::<u64>(0)
            .map_err(virtio_queue::Error::VolatileMemoryError)?
            .store(elem.to_le());
        self.next += 1;
        if (self.next - self.published).0 >= PUBLISH_EVERY {
            self.publish(queue, mem)?;
        }
        Ok(())
    }

    /// Shows the driver every element written so far (release store of the
    /// used index) and moves the queue's own next used index along.
    pub fn publish(
        &mut self,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<(), virtio_queue::Error> {
        if self.next == self.published {
            return Ok(());
        }
        let addr = GuestAddress(queue.used_ring())
            .checked_add(2)
            .ok_or(virtio_queue::Error::AddressOverflow)?;
        mem.store(self.next.0.to_le(), addr, Ordering::Release)
            .map_err(virtio_queue::Error::GuestMemory)?;
        queue.set_next_used(self.next.0);
        self.published = self.next;
        Ok(())
    }

    /// With EVENT_IDX, whether the batch (published) crossed the driver's
    /// `used_event`; `None` without EVENT_IDX, where the avail ring's
    /// flags decide (`Queue::needs_notification`).
    pub fn event_idx_notify(
        &self,
        queue: &Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<Option<bool>, virtio_queue::Error> {
        if !queue.event_idx_enabled() {
            return Ok(None);
        }
        if self.published == self.first {
            return Ok(Some(false));
        }
        // The used index is out before used_event is read.
        fence(Ordering::SeqCst);
        let offset = AVAIL_RING_HEADER + u64::from(queue.size()) * 2;
        let addr = GuestAddress(queue.avail_ring())
            .checked_add(offset)
            .ok_or(virtio_queue::Error::AddressOverflow)?;
        let used_event: u16 = mem
            .load(addr, Ordering::Relaxed)
            .map_err(virtio_queue::Error::GuestMemory)?;
        let (new, old) = (self.published, self.first);
        Ok(Some(
            new - Wrapping(u16::from_le(used_event)) - Wrapping(1) < new - old,
        ))
    }
}
