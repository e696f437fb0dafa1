//! A split queue's avail ring read through one slice resolved per pass,
//! instead of `virtio_queue`'s `AvailIter`, which looks the ring's memory
//! region up again for every entry. Same orderings (acquire for the index
//! and each entry) and the same check of the index the driver publishes
//! (at most a queue size ahead). A ring that is not inside one memory
//! region (legal, never seen in practice) is read entry by entry through
//! the guest memory. Unlike `AvailIter`, which ends the iteration quietly
//! (and leaves the entry to be retried for ever), an entry that cannot be
//! read is an error: the driver broke the queue.

use std::num::Wrapping;
use std::sync::atomic::Ordering;

use virtio_queue::{Error, Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

/// `flags` and `idx` before the ring's entries.
const HEADER: usize = 4;
/// Offset of `idx`.
const IDX: usize = 2;

enum Ring<'m> {
    Slice(VolatileSlice<'m>),
    Memory(GuestAddress),
}

/// The avail ring of one queue, for one pass.
pub(super) struct AvailRing<'m> {
    mem: &'m GuestMemoryMmap,
    ring: Ring<'m>,
    size: u16,
}

impl<'m> AvailRing<'m> {
    /// The avail ring of `queue` in `mem`; an error when the queue is not
    /// ready (as `Queue::iter`).
    pub(super) fn resolve(mem: &'m GuestMemoryMmap, queue: &Queue) -> Result<Self, Error> {
        if !queue.ready() || queue.avail_ring() == 0 || queue.size() == 0 {
            return Err(Error::QueueNotReady);
        }
        let addr = GuestAddress(queue.avail_ring());
        let len = HEADER + 2 * usize::from(queue.size());
        let ring = match mem.get_slice(addr, len) {
            Ok(slice) => Ring::Slice(slice),
            Err(_) => Ring::Memory(addr),
        };
        Ok(Self {
            mem,
            ring,
            size: queue.size(),
        })
    }

    fn load(&self, off: usize) -> Result<u16, Error> {
        let v: u16 = match &self.ring {
            // In bounds (`off` + 2 <= the slice's length) and aligned (the
            // queue checked the ring's alignment, regions are page-aligned).
            Ring::Slice(slice) => slice
                .load(off, Ordering::Acquire)
                .map_err(Error::VolatileMemoryError)?,
            Ring::Memory(base) => {
                let addr = base.checked_add(off as u64).ok_or(Error::AddressOverflow)?;
                self.mem
                    .load(addr, Ordering::Acquire)
                    .map_err(Error::GuestMemory)?
            }
        };
        Ok(u16::from_le(v))
    }

    /// The driver's avail index, checked against `next_avail` (the device's
    /// position): more than a queue size of new entries is an error.
    pub(super) fn index(&self, next_avail: Wrapping<u16>) -> Result<Wrapping<u16>, Error> {
        let idx = Wrapping(self.load(IDX)?);
        if (idx - next_avail).0 > self.size {
            return Err(Error::InvalidAvailRingIndex);
        }
        Ok(idx)
    }

    /// The chain head at ring position `pos`.
    pub(super) fn head(&self, pos: Wrapping<u16>) -> Result<u16, Error> {
        self.load(HEADER + 2 * usize::from(pos.0 % self.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_driver::DriverRing;

    /// The ring read through a slice and through the guest memory (a ring
    /// across two regions) gives the same heads; an index more than a
    /// queue size ahead is refused; an unready queue is refused.
    #[test]
    fn reads_heads_in_one_region_and_across_two() {
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x1_0000),
            (GuestAddress(0x1_0000), 0x1_0000),
        ])
        .unwrap();
        // Size 16: a 256-byte descriptor table, then the avail ring
        // (38 bytes). With the table at 0xfef0 the ring spans
        // 0xfff0..0x10016, across the two regions.
        for (base, in_one_region) in [(0x1000u64, true), (0xfef0, false)] {
            let mut ring = DriverRing::new(&mem, base, 16);
            for head in [3u16, 7, 15, 0, 9] {
                ring.push(head);
            }
            ring.publish();
            let queue = ring.queue(false);
            let avail = AvailRing::resolve(&mem, &queue).unwrap();
            assert_eq!(matches!(avail.ring, Ring::Slice(_)), in_one_region);
            assert_eq!(avail.index(Wrapping(0)).unwrap(), Wrapping(5));
            let heads: Vec<u16> = (0..5u16)
                .map(|p| avail.head(Wrapping(p)).unwrap())
                .collect();
            assert_eq!(heads, [3, 7, 15, 0, 9]);
            ring.set_avail_idx(17);
            assert!(matches!(
                avail.index(Wrapping(0)),
                Err(Error::InvalidAvailRingIndex)
            ));
            let mut unready = ring.queue(false);
            unready.set_ready(false);
            assert!(matches!(
                AvailRing::resolve(&mem, &unready),
                Err(Error::QueueNotReady)
            ));
        }
    }
}
