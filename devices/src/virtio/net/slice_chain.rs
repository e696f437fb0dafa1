//! A split-queue descriptor chain read through a slice of its descriptor
//! table resolved once per pass, instead of `virtio_queue`'s
//! `DescriptorChain`, which looks the table's memory region up again for
//! every descriptor (`read_obj`). It yields exactly what `DescriptorChain`
//! yields, with the same limits (at most a table's size of descriptors, an
//! index past the table ends the chain, at most 2^32 - 1 bytes, one level
//! of indirect table), so the TX checks built on it give the same
//! verdicts. A table that is not inside one memory region (legal, never
//! seen in practice) is read descriptor by descriptor through the guest
//! memory, as `DescriptorChain` reads every table.

use virtio_queue::desc::split::Descriptor;
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileMemory,
    VolatileSlice,
};

/// Bytes per split-queue descriptor (and an indirect table's alignment of
/// length).
const DESC_SIZE: usize = 16;

/// Where a table's descriptors are read from.
#[derive(Clone, Copy)]
enum Table<'m> {
    /// The whole table, inside one region.
    Slice(VolatileSlice<'m>),
    /// A table across regions (or partly outside guest memory): each
    /// descriptor through a checked guest memory access.
    Memory(GuestAddress),
}

impl<'m> Table<'m> {
    fn resolve(mem: &'m GuestMemoryMmap, addr: GuestAddress, len: usize) -> Self {
        match mem.get_slice(addr, len) {
            Ok(slice) => Self::Slice(slice),
            Err(_) => Self::Memory(addr),
        }
    }

    /// Descriptor `index` (below the table's size), or `None` when it
    /// cannot be read (which ends the chain, as in `DescriptorChain`).
    fn read(&self, mem: &GuestMemoryMmap, index: u16) -> Option<Descriptor> {
        let off = usize::from(index) * DESC_SIZE;
        match self {
            // In bounds (`index` < entries of the slice) and unaligned-safe
            // (an indirect table need not be aligned).
            Self::Slice(slice) => Some(slice.get_ref::<Descriptor>(off).ok()?.load()),
            Self::Memory(base) => mem.read_obj(base.checked_add(off as u64)?).ok(),
        }
    }
}

/// The descriptor table of a queue, resolved for one pass over its avail
/// ring.
pub(super) struct DescTable<'m> {
    table: Table<'m>,
    size: u16,
}

impl<'m> DescTable<'m> {
    /// The `size`-entry table at `addr` of `mem`.
    pub(super) fn resolve(mem: &'m GuestMemoryMmap, addr: u64, size: u16) -> Self {
        let table = Table::resolve(mem, GuestAddress(addr), usize::from(size) * DESC_SIZE);
        Self { table, size }
    }

    /// Whether the table is read through one slice (the fast case).
    #[cfg(test)]
    fn is_slice(&self) -> bool {
        matches!(self.table, Table::Slice(_))
    }

    /// The chain starting at descriptor `head`.
    pub(super) fn chain(&self, mem: &'m GuestMemoryMmap, head: u16) -> SliceChain<'m> {
        SliceChain {
            mem,
            table: self.table,
            size: self.size,
            next: head,
            ttl: self.size,
            yielded: 0,
            indirect: false,
        }
    }
}

/// One chain's descriptors, as `DescriptorChain` yields them.
pub(super) struct SliceChain<'m> {
    mem: &'m GuestMemoryMmap,
    /// The table being walked: the queue's, or an indirect one.
    table: Table<'m>,
    size: u16,
    next: u16,
    /// Descriptors left before the chain counts as a loop.
    ttl: u16,
    yielded: u32,
    indirect: bool,
}

impl SliceChain<'_> {
    /// `DescriptorChain::switch_to_indirect_table`, same checks; `None`
    /// ends the chain.
    fn switch_to_indirect(&mut self, desc: &Descriptor) -> Option<()> {
        if self.indirect || !(desc.len() as usize).is_multiple_of(DESC_SIZE) {
            return None;
        }
        let entries = u16::try_from(desc.len() as usize / DESC_SIZE).ok()?;
        self.table = Table::resolve(self.mem, desc.addr(), desc.len() as usize);
        self.size = entries;
        self.next = 0;
        self.ttl = entries;
        self.indirect = true;
        Some(())
    }
}

impl Iterator for SliceChain<'_> {
    type Item = Descriptor;

    fn next(&mut self) -> Option<Descriptor> {
        loop {
            if self.ttl == 0 || self.next >= self.size {
                return None;
            }
            let desc = self.table.read(self.mem, self.next)?;
            if desc.refers_to_indirect_table() {
                self.switch_to_indirect(&desc)?;
                continue;
            }
            self.yielded = self.yielded.checked_add(desc.len())?;
            if desc.has_next() {
                self.next = desc.next();
                self.ttl -= 1;
            } else {
                self.ttl = 0;
            }
            return Some(desc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::test_driver::DriverRing;
    use virtio_bindings::virtio_ring::{
        VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    };
    use virtio_queue::QueueOwnedT;
    use vm_memory::Bytes;

    const RING_BASE: u64 = 0x1000;
    const SIZE: u16 = 16;
    /// Where indirect descriptors point: aligned, unaligned, across the
    /// boundary of the two regions, outside guest memory.
    const TABLES: [u64; 4] = [0x8000, 0x8003, 0xffc0, 0x3_0000];

    /// xorshift64: deterministic, so a failure reproduces.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn random_desc(state: &mut u64, entries: u16) -> [u8; 16] {
        let r = rng(state);
        let indirect = r.is_multiple_of(5);
        let addr = if indirect {
            TABLES[(r >> 8) as usize % TABLES.len()]
        } else {
            0x4000 + (r >> 16) % 0x1000
        };
        let len: u32 = match (r >> 24) % 6 {
            0 => 0,
            1 => 17,
            2 => u32::MAX - 3,
            _ => 16 * ((r >> 32) % 9) as u32,
        };
        let mut flags = 0u16;
        if indirect {
            flags |= VRING_DESC_F_INDIRECT as u16;
        }
        if !(r >> 40).is_multiple_of(3) {
            flags |= VRING_DESC_F_NEXT as u16;
        }
        if (r >> 44).is_multiple_of(4) {
            flags |= VRING_DESC_F_WRITE as u16;
        }
        let next = ((r >> 48) % u64::from(entries + 4)) as u16;
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        d
    }

    fn fields(d: &Descriptor) -> (u64, u32, u16, u16) {
        (d.addr().0, d.len(), d.flags(), d.next())
    }

    /// Random tables (loops, indices past the table, nested, unaligned,
    /// split and unmapped indirect tables, byte counts that overflow):
    /// every chain yields what `DescriptorChain` yields.
    #[test]
    fn yields_what_descriptor_chain_yields() {
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x1_0000),
            (GuestAddress(0x1_0000), 0x1_0000),
        ])
        .unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut compared = 0;
        for _ in 0..2000 {
            let mut ring = DriverRing::new(&mem, RING_BASE, SIZE);
            for i in 0..SIZE {
                let d = random_desc(&mut state, SIZE);
                mem.write_slice(&d, GuestAddress(RING_BASE + 16 * u64::from(i)))
                    .unwrap();
            }
            for &table in &TABLES[..3] {
                for i in 0..8u64 {
                    let d = random_desc(&mut state, 8);
                    mem.write_slice(&d, GuestAddress(table + 16 * i)).unwrap();
                }
            }
            for head in 0..SIZE {
                ring.push(head);
            }
            ring.publish();
            let mut queue = ring.queue(false);
            let table = DescTable::resolve(&mem, RING_BASE, SIZE);
            for chain in queue.iter(&mem).unwrap() {
                let ours: Vec<_> = table
                    .chain(&mem, chain.head_index())
                    .map(|d| fields(&d))
                    .collect();
                let theirs: Vec<_> = chain.map(|d| fields(&d)).collect();
                assert_eq!(ours, theirs);
                compared += 1;
            }
        }
        assert_eq!(compared, 2000 * usize::from(SIZE));
    }

    /// A queue table across the two regions or outside memory is read
    /// through the guest memory, and yields the same as a slice would.
    #[test]
    fn a_table_outside_one_region_is_read_through_memory() {
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x1_0000),
            (GuestAddress(0x1_0000), 0x1_0000),
        ])
        .unwrap();
        assert!(!DescTable::resolve(&mem, 0xff08, 16).is_slice());
        assert!(!DescTable::resolve(&mem, 0x3_0000, 16).is_slice());
        assert!(DescTable::resolve(&mem, 0xf000, 256).is_slice());
        // Descriptor 15 of the table at 0xff08 is the first one past
        // 0x10000; a chain 14 -> 15 -> end crosses the boundary.
        let at = |i: u64| GuestAddress(0xff08 + 16 * i);
        mem.write_obj(0x4000u64, at(14)).unwrap();
        mem.write_obj(100u32, GuestAddress(at(14).0 + 8)).unwrap();
        mem.write_obj(VRING_DESC_F_NEXT as u16, GuestAddress(at(14).0 + 12))
            .unwrap();
        mem.write_obj(15u16, GuestAddress(at(14).0 + 14)).unwrap();
        mem.write_obj(0x5000u64, at(15)).unwrap();
        mem.write_obj(200u32, GuestAddress(at(15).0 + 8)).unwrap();
        let split = DescTable::resolve(&mem, 0xff08, 16);
        let got: Vec<_> = split.chain(&mem, 14).map(|d| fields(&d)).collect();
        assert_eq!(
            got,
            vec![
                (0x4000, 100, VRING_DESC_F_NEXT as u16, 15),
                (0x5000, 200, 0, 0)
            ]
        );
        // Outside guest memory: nothing.
        assert_eq!(
            DescTable::resolve(&mem, 0x3_0000, 16)
                .chain(&mem, 0)
                .count(),
            0
        );
    }
}
