//! Guest RAM ranges and the e820 map the kernel is told about.

use vm_memory::GuestAddress;

use crate::layout::{HIMEM_START, LOW_RAM_END, MMIO_GAP_END, MMIO_GAP_START};

/// Kind of an e820 range; the discriminants are the e820 (and Xen HVM
/// memmap) type codes, which are identical for these two kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E820Kind {
    /// Usable RAM.
    Ram = 1,
    /// Present but not for the OS (EBDA, MP table, legacy BIOS area).
    Reserved = 2,
}

impl E820Kind {
    /// The numeric type code used in both `boot_e820_entry` and
    /// `hvm_memmap_table_entry`.
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// One range of the guest-physical memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the guest may use the range for.
    pub kind: E820Kind,
}

/// Guest RAM backing for `mem_bytes` of memory: one range from 0, and the
/// part that would overlap the MMIO hole relocated to start at 4 GiB.
pub fn ram_regions(mem_bytes: u64) -> Vec<(GuestAddress, usize)> {
    let low = mem_bytes.min(MMIO_GAP_START);
    let high = mem_bytes - low;
    let mut regions = Vec::with_capacity(2);
    if low > 0 {
        regions.push((GuestAddress(0), low as usize));
    }
    if high > 0 {
        regions.push((GuestAddress(MMIO_GAP_END), high as usize));
    }
    regions
}

/// The e820 map for `mem_bytes` of RAM laid out by [`ram_regions`].
///
/// The EBDA/MP table and the legacy VGA/BIOS window (`LOW_RAM_END..1 MiB`) are
/// reported reserved so the kernel neither allocates over the MP table nor
/// treats ROM-space as RAM. The MMIO hole is left out entirely: without ACPI,
/// Linux picks its PCI MMIO window from the largest e820 gap below 4 GiB.
pub fn e820_entries(mem_bytes: u64) -> Vec<E820Entry> {
    let mut entries = Vec::with_capacity(4);
    let mut push = |addr: u64, end: u64, kind: E820Kind| {
        if end > addr {
            entries.push(E820Entry {
                addr,
                size: end - addr,
                kind,
            });
        }
    };
    let low_end = mem_bytes.min(MMIO_GAP_START);
    push(0, low_end.min(LOW_RAM_END), E820Kind::Ram);
    // The reserved window exists in the memory map even if RAM stops inside
    // it: it is backed by the same region the MP table is written to.
    push(LOW_RAM_END, low_end.min(HIMEM_START), E820Kind::Reserved);
    push(HIMEM_START, low_end, E820Kind::Ram);
    push(
        MMIO_GAP_END,
        MMIO_GAP_END + (mem_bytes - low_end),
        E820Kind::Ram,
    );
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn regions_without_hole() {
        assert_eq!(
            ram_regions(128 * MIB),
            vec![(GuestAddress(0), (128 * MIB) as usize)]
        );
    }

    #[test]
    fn regions_with_hole() {
        assert_eq!(
            ram_regions(4 * GIB),
            vec![
                (GuestAddress(0), (3 * GIB) as usize),
                (GuestAddress(4 * GIB), GIB as usize)
            ]
        );
    }

    #[test]
    fn e820_128m() {
        let e = e820_entries(128 * MIB);
        assert_eq!(
            e,
            vec![
                E820Entry {
                    addr: 0,
                    size: 0x9fc00,
                    kind: E820Kind::Ram
                },
                E820Entry {
                    addr: 0x9fc00,
                    size: 0x10_0000 - 0x9fc00,
                    kind: E820Kind::Reserved
                },
                E820Entry {
                    addr: 0x10_0000,
                    size: 128 * MIB - 0x10_0000,
                    kind: E820Kind::Ram
                },
            ]
        );
    }

    #[test]
    fn e820_4g_splits_around_hole() {
        let e = e820_entries(4 * GIB);
        assert_eq!(e.len(), 4);
        assert_eq!(e[2].addr, HIMEM_START);
        assert_eq!(e[2].addr + e[2].size, MMIO_GAP_START);
        assert_eq!(e[3].addr, MMIO_GAP_END);
        assert_eq!(e[3].size, GIB);
        assert_eq!(e[3].kind, E820Kind::Ram);
        let ram: u64 = e
            .iter()
            .filter(|x| x.kind == E820Kind::Ram)
            .map(|x| x.size)
            .sum();
        assert_eq!(ram, 4 * GIB - (HIMEM_START - LOW_RAM_END));
        // Nothing described inside the MMIO hole.
        assert!(e
            .iter()
            .all(|x| x.addr + x.size <= MMIO_GAP_START || x.addr >= MMIO_GAP_END));
    }

    #[test]
    fn e820_exactly_gap_start_has_no_high_entry() {
        let e = e820_entries(MMIO_GAP_START);
        assert_eq!(e.len(), 3);
        assert_eq!(e[2].addr + e[2].size, MMIO_GAP_START);
    }
}
