//! PVH boot: `struct hvm_start_info` and what it points at.

use std::mem::size_of;

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemory};

use crate::e820::e820_entries;
use crate::error::{to_u32, BootError, Result};
use crate::initrd::InitrdInfo;
use crate::layout::{
    BOOT_PARAMS_START, MEMMAP_MAX_ENTRIES, MEMMAP_START, MODLIST_START, PVH_INFO_START,
};

/// `XEN_HVM_START_MAGIC_VALUE`, checked by the kernel's PVH entry.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// Version 1 adds the memory map fields the kernel needs without ACPI/e820.
const HVM_START_INFO_VERSION: u32 = 1;

// The PVH structures must not overlap each other or the zero page.
const _: () = assert!(PVH_INFO_START + size_of::<hvm_start_info>() as u64 <= MODLIST_START);
const _: () = assert!(MODLIST_START + size_of::<hvm_modlist_entry>() as u64 <= MEMMAP_START);
const _: () = assert!(
    MEMMAP_START + (MEMMAP_MAX_ENTRIES * size_of::<hvm_memmap_table_entry>()) as u64
        <= BOOT_PARAMS_START
);

fn write<M: GuestMemory + ?Sized, T: ByteValued>(
    mem: &M,
    what: &'static str,
    val: T,
    addr: u64,
) -> Result<()> {
    mem.write_obj(val, GuestAddress(addr))
        .map_err(|source| BootError::GuestMemoryWrite { what, addr, source })
}

/// Writes `hvm_start_info`, the module list (the initrd, if any) and the
/// memory map, and returns the start_info address the PVH entry expects in
/// EBX.
pub fn configure_pvh<M: GuestMemory + ?Sized>(
    mem: &M,
    cmdline_addr: GuestAddress,
    initrd: Option<InitrdInfo>,
    mem_bytes: u64,
) -> Result<GuestAddress> {
    let mut start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: HVM_START_INFO_VERSION,
        cmdline_paddr: cmdline_addr.0,
        ..Default::default()
    };

    if let Some(initrd) = initrd {
        let module = hvm_modlist_entry {
            paddr: initrd.addr.0,
            size: initrd.size,
            ..Default::default()
        };
        write(mem, "PVH module list", module, MODLIST_START)?;
        start_info.nr_modules = 1;
        start_info.modlist_paddr = MODLIST_START;
    }

    let map = e820_entries(mem_bytes);
    if map.len() > MEMMAP_MAX_ENTRIES {
        return Err(BootError::TooManyMemoryMapEntries {
            count: map.len(),
            max: MEMMAP_MAX_ENTRIES,
        });
    }
    let entry_size = size_of::<hvm_memmap_table_entry>() as u64;
    for (i, e) in map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind.code(),
            reserved: 0,
        };
        write(
            mem,
            "PVH memory map",
            entry,
            MEMMAP_START + i as u64 * entry_size,
        )?;
    }
    start_info.memmap_paddr = MEMMAP_START;
    start_info.memmap_entries = to_u32("PVH memmap entries", map.len() as u64)?;

    write(mem, "hvm_start_info", start_info, PVH_INFO_START)?;
    Ok(GuestAddress(PVH_INFO_START))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::E820Kind;
    use crate::layout::CMDLINE_START;
    use vm_memory::GuestMemoryMmap;

    const MIB: u64 = 1 << 20;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 * MIB as usize)]).unwrap()
    }

    #[test]
    fn start_info_with_initrd() {
        let m = mem();
        let initrd = InitrdInfo {
            addr: GuestAddress(0x0700_0000),
            size: 0x12345,
        };
        let addr = configure_pvh(&m, GuestAddress(CMDLINE_START), Some(initrd), 128 * MIB).unwrap();
        assert_eq!(addr.0, PVH_INFO_START);

        let si: hvm_start_info = m.read_obj(addr).unwrap();
        assert_eq!(si.magic, 0x336e_c578);
        assert_eq!(si.version, 1);
        assert_eq!(si.cmdline_paddr, CMDLINE_START);
        assert_eq!(si.rsdp_paddr, 0);
        assert_eq!(si.nr_modules, 1);
        assert_eq!(si.modlist_paddr, MODLIST_START);
        let module: hvm_modlist_entry = m.read_obj(GuestAddress(MODLIST_START)).unwrap();
        assert_eq!((module.paddr, module.size), (0x0700_0000, 0x12345));

        let expected = e820_entries(128 * MIB);
        assert_eq!(si.memmap_paddr, MEMMAP_START);
        assert_eq!(si.memmap_entries as usize, expected.len());
        for (i, e) in expected.iter().enumerate() {
            let got: hvm_memmap_table_entry = m
                .read_obj(GuestAddress(MEMMAP_START + 24 * i as u64))
                .unwrap();
            assert_eq!(
                (got.addr, got.size, got.type_),
                (e.addr, e.size, e.kind.code())
            );
        }
        let first: hvm_memmap_table_entry = m.read_obj(GuestAddress(MEMMAP_START)).unwrap();
        assert_eq!(first.type_, 1);
        assert_eq!(E820Kind::Reserved.code(), 2);
    }

    #[test]
    fn start_info_without_initrd() {
        let m = mem();
        let addr = configure_pvh(&m, GuestAddress(CMDLINE_START), None, 4096 * MIB).unwrap();
        let si: hvm_start_info = m.read_obj(addr).unwrap();
        assert_eq!((si.nr_modules, si.modlist_paddr), (0, 0));
        assert_eq!(si.memmap_entries, 4);
    }
}
