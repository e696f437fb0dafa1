//! Identity page tables for entering the kernel in long mode.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::error::{BootError, Result};
use crate::layout::{PDE_START, PDPTE_START, PML4_START};

/// Present | writable.
const PTE_PRESENT_RW: u64 = 0x3;
/// Present | writable | page size (2 MiB leaf).
const PDE_LARGE_PAGE: u64 = 0x83;
const LARGE_PAGE_SHIFT: u32 = 21;
const ENTRIES: u64 = 512;

fn write<M: GuestMemory + ?Sized>(mem: &M, bytes: &[u8], addr: u64) -> Result<()> {
    mem.write_slice(bytes, GuestAddress(addr))
        .map_err(|source| BootError::GuestMemoryWrite {
            what: "boot page tables",
            addr,
            source,
        })
}

/// Identity-maps the first 1 GiB with 2 MiB pages and returns CR3.
///
/// 1 GiB covers everything the 64-bit entry touches before the kernel builds
/// its own tables: the zero page, command line, kernel image at 16 MiB and
/// an initrd capped below 896 MiB.
pub fn write_identity_page_tables<M: GuestMemory + ?Sized>(mem: &M) -> Result<u64> {
    write(
        mem,
        &(PDPTE_START | PTE_PRESENT_RW).to_le_bytes(),
        PML4_START,
    )?;
    write(
        mem,
        &(PDE_START | PTE_PRESENT_RW).to_le_bytes(),
        PDPTE_START,
    )?;
    let pde: Vec<u8> = (0..ENTRIES)
        .flat_map(|i| ((i << LARGE_PAGE_SHIFT) | PDE_LARGE_PAGE).to_le_bytes())
        .collect();
    write(mem, &pde, PDE_START)?;
    Ok(PML4_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn maps_first_gib() {
        let m: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let cr3 = write_identity_page_tables(&m).unwrap();
        assert_eq!(cr3, PML4_START);
        let pml4: u64 = m.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPTE_START | 3);
        let pdpte: u64 = m.read_obj(GuestAddress(PDPTE_START)).unwrap();
        assert_eq!(pdpte, PDE_START | 3);
        for i in 0..512u64 {
            let pde: u64 = m.read_obj(GuestAddress(PDE_START + i * 8)).unwrap();
            assert_eq!(pde, (i << 21) | 0x83);
        }
    }
}
