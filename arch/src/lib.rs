//! x86_64 guest setup for petrel: pure functions over guest memory that lay
//! out boot structures and compute initial register values. Nothing here
//! talks to KVM; the VMM applies the results with its own ioctls.
//!
//! Contents:
//! - [`layout`]: the guest-physical memory map (constants).
//! - [`e820`]: RAM ranges around the MMIO hole and the e820 map.
//! - [`mptable`]: Intel MP 1.4 table (CPUs, IOAPIC, ISA/PCI interrupt routes).
//! - [`acpi`]: hardware-reduced ACPI tables (RSDP, XSDT, FADT, DSDT, MADT).
//! - [`cmdline`], [`initrd`]: placing the command line and the initrd.
//! - [`pvh`]: `hvm_start_info` for the PVH entry.
//! - [`bootparams`]: the zero page for the Linux 64-bit entry.
//! - [`gdt`], [`paging`]: descriptor tables and identity page tables.
//! - [`regs`]: GPRs, special registers and FPU state per entry mode.
//! - [`cpuid`]: per-vCPU topology fix-ups of KVM's CPUID list.
//! - [`msr`]: boot MSR values.
//! - [`error`]: the boot error type, [`BootError`].

pub mod acpi;
pub mod bootparams;
pub mod cmdline;
pub mod cpuid;
pub mod e820;
pub mod error;
pub mod gdt;
pub mod initrd;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod paging;
pub mod pvh;
pub mod regs;

pub use acpi::{setup_acpi, AcpiConfig, AcpiError};
pub use bootparams::configure_boot_params;
pub use cmdline::write_cmdline;
pub use cpuid::filter_cpuid;
pub use e820::{e820_entries, ram_regions, E820Entry, E820Kind};
pub use error::BootError;
pub use initrd::{initrd_load_addr, InitrdInfo};
pub use mptable::{setup_mptable, MpTableError, PciIntx};
pub use msr::boot_msrs;
pub use pvh::configure_pvh;
pub use regs::{boot_regs, boot_sregs, fpu_default, setup_long_mode_tables, EntryMode};
