//! Boot GDT/IDT contents and the matching KVM segment registers.
//!
//! KVM loads segment registers from `kvm_sregs`, not from memory, but the
//! kernel's early code reloads selectors and reads the GDT, so the table in
//! guest memory must describe exactly what the registers hold.

use kvm_bindings::kvm_segment;
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::error::{BootError, Result};
use crate::layout::{BOOT_GDT_MAX_ENTRIES, BOOT_GDT_START, BOOT_IDT_START};

/// 64-bit code: present, DPL0, execute/read, accessed, L=1, G=1.
pub const CODE64_FLAGS: u16 = 0xa09b;
/// 32-bit code: present, DPL0, execute/read, accessed, D/B=1, G=1.
pub const CODE32_FLAGS: u16 = 0xc09b;
/// Flat data: present, DPL0, read/write, accessed, D/B=1, G=1.
pub const DATA_FLAGS: u16 = 0xc093;
/// Busy 32/64-bit TSS, byte granular, as used by the 64-bit boot GDT.
pub const TSS64_FLAGS: u16 = 0x808b;
/// Busy TSS, byte granular, for the 32-bit PVH GDT.
pub const TSS32_FLAGS: u16 = 0x008b;

/// Long-mode boot GDT: null, code64 (0x08), data (0x10), TSS (0x18).
pub const LONG_MODE_GDT: [u64; 4] = [
    0,
    gdt_entry(CODE64_FLAGS, 0, 0xfffff),
    gdt_entry(DATA_FLAGS, 0, 0xfffff),
    gdt_entry(TSS64_FLAGS, 0, 0xfffff),
];
/// Selector indices into [`LONG_MODE_GDT`].
pub const LONG_MODE_CODE: usize = 1;
/// Data selector index in [`LONG_MODE_GDT`].
pub const LONG_MODE_DATA: usize = 2;
/// TSS selector index in [`LONG_MODE_GDT`].
pub const LONG_MODE_TSS: usize = 3;

/// PVH boot GDT: the PVH ABI wants flat 32-bit segments; selectors 0x10
/// (code), 0x18 (data), 0x20 (TSS) match what other PVH loaders use.
pub const PVH_GDT: [u64; 5] = [
    0,
    0,
    gdt_entry(CODE32_FLAGS, 0, 0xfffff),
    gdt_entry(DATA_FLAGS, 0, 0xfffff),
    gdt_entry(TSS32_FLAGS, 0, 0x67),
];
/// Code selector index in [`PVH_GDT`].
pub const PVH_CODE: usize = 2;
/// Data selector index in [`PVH_GDT`].
pub const PVH_DATA: usize = 3;
/// TSS selector index in [`PVH_GDT`].
pub const PVH_TSS: usize = 4;

// Both boot GDTs must fit in the slots reserved before the IDT.
const _: () = assert!(PVH_GDT.len() <= BOOT_GDT_MAX_ENTRIES);
const _: () = assert!(LONG_MODE_GDT.len() <= BOOT_GDT_MAX_ENTRIES);
const _: () = assert!(BOOT_GDT_START + 8 * BOOT_GDT_MAX_ENTRIES as u64 <= BOOT_IDT_START);

/// Encodes a segment descriptor. `flags` holds the access byte in bits 0..8
/// and the G/DB/L/AVL nibble in bits 12..16 (bits 8..12 are ignored; the
/// descriptor keeps limit bits 16..20 there).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    ((base & 0xff00_0000) << 32)
        | (((flags as u64) & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

/// The KVM segment register matching GDT `entry` at slot `index`.
pub fn segment_from_gdt(entry: u64, index: usize) -> kvm_segment {
    let bit = |n: u32| ((entry >> n) & 1) as u8;
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
    let g = bit(55);
    // KVM wants the effective byte limit, not the descriptor's page count.
    let limit = if g == 1 {
        (raw_limit << 12) | 0xfff
    } else {
        raw_limit
    };
    let present = bit(47);
    kvm_segment {
        base,
        limit,
        selector: (index * 8) as u16,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g,
        avl: bit(52),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

/// Writes `gdt` (one of the boot GDTs above, which fit the reserved slots)
/// at `BOOT_GDT_START`; returns the GDTR limit.
pub(crate) fn write_gdt<M: GuestMemory + ?Sized>(mem: &M, gdt: &[u64]) -> Result<u16> {
    let bytes: Vec<u8> = gdt.iter().flat_map(|e| e.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(BOOT_GDT_START))
        .map_err(|source| BootError::GuestMemoryWrite {
            what: "boot GDT",
            addr: BOOT_GDT_START,
            source,
        })?;
    Ok((bytes.len() - 1) as u16)
}

/// Writes a single null IDT gate at `BOOT_IDT_START`; returns the IDTR limit.
/// Interrupts stay disabled until the kernel loads its own IDT, and any fault
/// before then triple-faults, which is the clearest failure available.
pub(crate) fn write_idt<M: GuestMemory + ?Sized>(mem: &M) -> Result<u16> {
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(|source| BootError::GuestMemoryWrite {
            what: "boot IDT",
            addr: BOOT_IDT_START,
            source,
        })?;
    Ok(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(gdt_entry(CODE64_FLAGS, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(DATA_FLAGS, 0, 0xfffff), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(CODE32_FLAGS, 0, 0xfffff), 0x00cf_9b00_0000_ffff);
        assert_eq!(gdt_entry(TSS64_FLAGS, 0, 0xfffff), 0x008f_8b00_0000_ffff);
        assert_eq!(gdt_entry(TSS32_FLAGS, 0, 0x67), 0x0000_8b00_0000_0067);
        assert_eq!(
            gdt_entry(DATA_FLAGS, 0x1234_5678, 0xabcde),
            0x12ca_9334_5678_bcde
        );
    }

    #[test]
    fn segments_round_trip() {
        let cs = segment_from_gdt(LONG_MODE_GDT[LONG_MODE_CODE], LONG_MODE_CODE);
        assert_eq!((cs.selector, cs.type_, cs.l, cs.db), (0x8, 0xb, 1, 0));
        assert_eq!((cs.present, cs.s, cs.g, cs.dpl), (1, 1, 1, 0));
        assert_eq!((cs.base, cs.limit, cs.unusable), (0, 0xffff_ffff, 0));

        let ds = segment_from_gdt(PVH_GDT[PVH_DATA], PVH_DATA);
        assert_eq!((ds.selector, ds.type_, ds.db, ds.g), (0x18, 0x3, 1, 1));

        let tr = segment_from_gdt(PVH_GDT[PVH_TSS], PVH_TSS);
        assert_eq!(
            (tr.selector, tr.type_, tr.s, tr.g, tr.limit),
            (0x20, 0xb, 0, 0, 0x67)
        );

        let null = segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
    }
}
