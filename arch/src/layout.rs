//! Guest-physical memory map shared by every boot path.
//!
//! Everything the VMM places in low memory before the first instruction runs
//! lives below 1 MiB, away from the kernel image (16 MiB) and the initrd
//! (top of low RAM). PVH structures and the Linux zero page never coexist in
//! one boot, but they are still given disjoint ranges so that a bug in one
//! path can never silently corrupt the other.

/// Start of "high" memory; the legacy BIOS area below it is not given to the
/// kernel as RAM.
pub const HIMEM_START: u64 = 0x0010_0000;

/// Extended BIOS Data Area. Linux scans its first KiB for the MP floating
/// pointer, which is why the MP table starts exactly here.
pub const EBDA_START: u64 = 0x0009_fc00;
/// The MP floating pointer followed by the MP configuration table.
pub const MPTABLE_START: u64 = EBDA_START;
/// End of usable conventional memory (640 KiB minus the EBDA).
pub const LOW_RAM_END: u64 = EBDA_START;

/// Physical load address of the (non-relocatable) guest kernel.
pub const KERNEL_START: u64 = 0x0100_0000;

/// Kernel command line, NUL terminated.
pub const CMDLINE_START: u64 = 0x0002_0000;
/// Size of the command line buffer including its NUL terminator. This is the
/// x86 kernel's `COMMAND_LINE_SIZE`: a longer line would be truncated by the
/// guest, so it is rejected up front instead.
pub const CMDLINE_MAX_SIZE: usize = 2048;

/// `struct hvm_start_info` for the PVH entry point.
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (the initrd), right after `hvm_start_info` (56 bytes).
pub const MODLIST_START: u64 = 0x6040;
/// PVH memory map. Kept below `BOOT_PARAMS_START` so both layouts are disjoint.
pub const MEMMAP_START: u64 = 0x6100;
/// Entries that fit between `MEMMAP_START` and `BOOT_PARAMS_START`
/// (24 bytes each), capped to the zero page's e820 capacity.
pub const MEMMAP_MAX_ENTRIES: usize = 128;

/// Linux zero page (`struct boot_params`, 4 KiB) for the 64-bit boot protocol.
pub const BOOT_PARAMS_START: u64 = 0x7000;

/// Boot GDT. Room for 8 descriptors: the PVH GDT needs 5.
pub const BOOT_GDT_START: u64 = 0x500;
/// Number of GDT slots reserved before the IDT.
pub const BOOT_GDT_MAX_ENTRIES: usize = 8;
/// Boot IDT (a single null gate: no interrupts are expected before the
/// kernel installs its own table). Placed after the largest boot GDT.
pub const BOOT_IDT_START: u64 = BOOT_GDT_START + 8 * BOOT_GDT_MAX_ENTRIES as u64;

/// Initial stack for the 64-bit entry; it grows down through the free page
/// between the zero page and the page tables.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;

/// Identity-mapping page tables for the 64-bit entry.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table referenced by `PML4[0]`.
pub const PDPTE_START: u64 = 0xa000;
/// Page directory referenced by `PDPTE[0]` (512 x 2 MiB = first 1 GiB).
pub const PDE_START: u64 = 0xb000;

/// Start of the 32-bit MMIO hole; RAM that would fall here moves above 4 GiB.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole (4 GiB).
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// Size of the 32-bit MMIO hole.
pub const MMIO_GAP_SIZE: u64 = MMIO_GAP_END - MMIO_GAP_START;

/// Default IOAPIC MMIO base.
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
/// Pins on the (KVM in-kernel) IOAPIC; GSIs must be below this.
pub const IOAPIC_NUM_PINS: u8 = 24;
/// Default local APIC MMIO base.
pub const APIC_ADDR: u64 = 0xfee0_0000;

/// 32-bit PCI BAR window: the MMIO hole up to the IOAPIC.
pub const PCI_MMIO32_START: u64 = MMIO_GAP_START;
/// Size of the 32-bit PCI BAR window.
pub const PCI_MMIO32_SIZE: u64 = IOAPIC_ADDR - PCI_MMIO32_START;

/// Lowest address for the initrd: leaves 16 MiB for the kernel image at
/// `KERNEL_START`.
pub const INITRD_MIN_START: u64 = 0x0200_0000;
/// The initrd must end below 896 MiB, the lowmem limit older kernels and the
/// default `initrd_addr_max` (0x37ffffff) assume.
pub const INITRD_MAX_END: u64 = 0x3800_0000;

/// MP table processor entries are addressed by 8-bit APIC ID; 0xff is the
/// broadcast ID and one more ID is taken by the IOAPIC.
pub const MAX_VCPUS: u8 = 254;

/// Page size used for alignment of boot payloads.
pub const PAGE_SIZE: u64 = 0x1000;
