//! Initial vCPU register state for the two supported kernel entry points.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use vm_memory::{GuestAddress, GuestMemory};

use crate::error::Result;
use crate::gdt::{
    segment_from_gdt, write_gdt, write_idt, LONG_MODE_CODE, LONG_MODE_DATA, LONG_MODE_GDT,
    LONG_MODE_TSS, PVH_CODE, PVH_DATA, PVH_GDT, PVH_TSS,
};
use crate::layout::{BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER};
use crate::paging::write_identity_page_tables;

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;
/// Only the always-one reserved bit: interrupts stay off until the kernel
/// has its IDT.
const RFLAGS_RESERVED: u64 = 0x2;

/// Which kernel entry point the boot vCPU starts in, with the pointer that
/// entry expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// PVH: 32-bit protected mode, paging off, EBX = `hvm_start_info`.
    Pvh {
        /// Guest-physical address of `hvm_start_info`.
        start_info: GuestAddress,
    },
    /// Linux 64-bit boot protocol: long mode, RSI = zero page.
    Linux64 {
        /// Guest-physical address of `boot_params`.
        boot_params: GuestAddress,
    },
}

/// General-purpose registers for the boot vCPU entering at `entry`.
pub fn boot_regs(entry: GuestAddress, mode: &EntryMode) -> kvm_regs {
    let mut regs = kvm_regs {
        rip: entry.0,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    };
    match *mode {
        EntryMode::Pvh { start_info } => regs.rbx = start_info.0,
        EntryMode::Linux64 { boot_params } => {
            // The 64-bit entry may push before it sets up its own stack.
            regs.rsp = BOOT_STACK_POINTER;
            regs.rbp = BOOT_STACK_POINTER;
            regs.rsi = boot_params.0;
        }
    }
    regs
}

/// Writes the long-mode GDT, the null IDT and the 1 GiB identity map, and
/// returns CR3.
pub fn setup_long_mode_tables<M: GuestMemory + ?Sized>(mem: &M) -> Result<u64> {
    write_gdt(mem, &LONG_MODE_GDT)?;
    write_idt(mem)?;
    write_identity_page_tables(mem)
}

/// Adjusts the vCPU's current special registers (as read from KVM) for
/// `mode`, writing the descriptor tables (and for long mode the page
/// tables) they refer to.
pub fn boot_sregs<M: GuestMemory + ?Sized>(
    mem: &M,
    sregs: &mut kvm_sregs,
    mode: &EntryMode,
) -> Result<()> {
    let (gdt, code, data, tss): (&[u64], _, _, _) = match mode {
        EntryMode::Pvh { .. } => (&PVH_GDT, PVH_CODE, PVH_DATA, PVH_TSS),
        EntryMode::Linux64 { .. } => (
            &LONG_MODE_GDT,
            LONG_MODE_CODE,
            LONG_MODE_DATA,
            LONG_MODE_TSS,
        ),
    };

    let gdt_limit = write_gdt(mem, gdt)?;
    let idt_limit = write_idt(mem)?;
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = gdt_limit;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = idt_limit;

    let data_seg = segment_from_gdt(gdt[data], data);
    sregs.cs = segment_from_gdt(gdt[code], code);
    sregs.ds = data_seg;
    sregs.es = data_seg;
    sregs.fs = data_seg;
    sregs.gs = data_seg;
    sregs.ss = data_seg;
    sregs.tr = segment_from_gdt(gdt[tss], tss);

    match mode {
        EntryMode::Pvh { .. } => {
            // The PVH ABI: protected mode, paging and every extension off.
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr3 = 0;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
        EntryMode::Linux64 { .. } => {
            sregs.cr3 = write_identity_page_tables(mem)?;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG | X86_CR0_ET;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
    }
    Ok(())
}

/// FPU state after FNINIT, with SSE exceptions masked (the MXCSR reset
/// value) as the kernel expects on entry.
pub fn fpu_default() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{BOOT_PARAMS_START, PML4_START, PVH_INFO_START};
    use vm_memory::{Bytes, GuestMemoryMmap};

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn read_gdt(m: &GuestMemoryMmap, n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| {
                m.read_obj(GuestAddress(BOOT_GDT_START + 8 * i as u64))
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn pvh_regs() {
        let mode = EntryMode::Pvh {
            start_info: GuestAddress(PVH_INFO_START),
        };
        let r = boot_regs(GuestAddress(0x100_0000), &mode);
        assert_eq!(
            (r.rip, r.rbx, r.rflags, r.rsp),
            (0x100_0000, PVH_INFO_START, 2, 0)
        );
    }

    #[test]
    fn linux64_regs() {
        let mode = EntryMode::Linux64 {
            boot_params: GuestAddress(BOOT_PARAMS_START),
        };
        let r = boot_regs(GuestAddress(0x100_0123), &mode);
        assert_eq!(r.rip, 0x100_0123);
        assert_eq!((r.rsp, r.rbp), (BOOT_STACK_POINTER, BOOT_STACK_POINTER));
        assert_eq!((r.rsi, r.rflags), (BOOT_PARAMS_START, 2));
    }

    #[test]
    fn pvh_sregs() {
        let m = mem();
        let mut s = kvm_sregs {
            cr0: 0x6000_0010,
            cr4: 0x20,
            efer: 0x500,
            ..Default::default()
        };
        let mode = EntryMode::Pvh {
            start_info: GuestAddress(PVH_INFO_START),
        };
        boot_sregs(&m, &mut s, &mode).unwrap();
        assert_eq!((s.cr0, s.cr4, s.efer), (0x11, 0, 0));
        assert_eq!(
            (s.cs.selector, s.cs.type_, s.cs.db, s.cs.l),
            (0x10, 0xb, 1, 0)
        );
        assert_eq!(
            (s.cs.base, s.cs.limit, s.cs.g, s.cs.s, s.cs.present),
            (0, 0xffff_ffff, 1, 1, 1)
        );
        for seg in [s.ds, s.es, s.fs, s.gs, s.ss] {
            assert_eq!((seg.selector, seg.type_, seg.db, seg.g), (0x18, 0x3, 1, 1));
        }
        assert_eq!((s.tr.selector, s.tr.type_), (0x20, 0xb));
        assert_eq!((s.gdt.base, s.gdt.limit), (BOOT_GDT_START, 39));
        assert_eq!((s.idt.base, s.idt.limit), (BOOT_IDT_START, 7));
        assert_eq!(
            read_gdt(&m, 5),
            vec![
                0,
                0,
                0x00cf_9b00_0000_ffff,
                0x00cf_9300_0000_ffff,
                0x0000_8b00_0000_0067
            ]
        );
    }

    #[test]
    fn linux64_sregs() {
        let m = mem();
        let mut s = kvm_sregs {
            cr0: 0x6000_0010,
            ..Default::default()
        };
        let mode = EntryMode::Linux64 {
            boot_params: GuestAddress(BOOT_PARAMS_START),
        };
        boot_sregs(&m, &mut s, &mode).unwrap();
        assert_eq!(s.cr3, PML4_START);
        assert_eq!(s.cr0, 0x6000_0010 | 0x8000_0001);
        assert_ne!(s.cr4 & 0x20, 0);
        assert_eq!(s.efer & 0x500, 0x500);
        assert_eq!((s.cs.selector, s.cs.l, s.cs.db), (0x8, 1, 0));
        assert_eq!(
            (s.ds.selector, s.ss.selector, s.tr.selector),
            (0x10, 0x10, 0x18)
        );
        assert_eq!((s.gdt.base, s.gdt.limit), (BOOT_GDT_START, 31));
        assert_eq!(
            read_gdt(&m, 4),
            vec![
                0,
                0x00af_9b00_0000_ffff,
                0x00cf_9300_0000_ffff,
                0x008f_8b00_0000_ffff
            ]
        );
        let idt: u64 = m.read_obj(GuestAddress(BOOT_IDT_START)).unwrap();
        assert_eq!(idt, 0);
    }

    #[test]
    fn long_mode_tables_cr3() {
        assert_eq!(setup_long_mode_tables(&mem()).unwrap(), PML4_START);
    }

    #[test]
    fn fpu() {
        let f = fpu_default();
        assert_eq!((f.fcw, f.mxcsr), (0x37f, 0x1f80));
    }
}
