//! The passthrough model against a fake device: probing, BAR placement and
//! shadowing, configuration-space virtualization, MSI-X table emulation,
//! MSI routing, interrupt-mode switching and a hostile device.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::fake::{FakeVfio, IrqCall};
use super::*;
use crate::pci::{BarAllocator, BarKind, FakeVectors, MsiMessage, PciDevice};

const MMIO_BASE: u64 = 0xc000_0000;

/// An 82599-like VF: BAR0 16 KiB registers (64-bit), BAR2 32 bytes of I/O,
/// BAR3 16 KiB (64-bit) with the MSI-X table at 0 and the PBA at 0x2000,
/// 3 MSI-X vectors, and a 64-bit MSI capability with per-vector masking
/// for 4 vectors.
fn vf() -> FakeVfio {
    let msix = [0x11, 0, 0x02, 0x00, 0x03, 0, 0, 0, 0x03, 0x20, 0, 0];
    let msi = [
        0x05, 0, 0x84, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut f = FakeVfio::new()
        .with_bar(0, 0x4, 0x4000, true)
        .with_bar(2, 0x1, 0x20, false)
        .with_bar(3, 0x4 | 0x8, 0x4000, true)
        .with_cap(0x50, &msi)
        .with_cap(0x70, &msix);
    f.set_config(0x3d, &[1]); // INTA#
    f
}

struct Built {
    dev: VfioPciDevice,
    ops: Arc<FakeVfio>,
    msix: Arc<FakeVectors>,
    msi: Arc<FakeVectors>,
}

fn intx_fds() -> IntxFds {
    IntxFds {
        trigger: EventFd::new(EFD_NONBLOCK).unwrap(),
        resample: EventFd::new(EFD_NONBLOCK).unwrap(),
    }
}

/// Probes `ops`, places its BARs and builds the model with `irqs`.
fn model(
    ops: &Arc<FakeVfio>,
    irqs: impl FnOnce(&Probe) -> VfioInterrupts,
) -> Result<VfioPciDevice, VfioError> {
    let probe = Probe::read(&**ops).unwrap();
    let mut mmio = BarAllocator::new(MMIO_BASE, 0x1000_0000);
    let mut io = BarAllocator::new(0xc000, 0x4000);
    let bars = place_bars(&probe, &mut mmio, &mut io).unwrap();
    let irqs = irqs(&probe);
    VfioPciDevice::new("sriov1".into(), ops.clone(), probe, bars, irqs)
}

fn no_irqs() -> VfioInterrupts {
    VfioInterrupts {
        msix: None,
        msi: None,
        intx: None,
    }
}

fn build(fake: FakeVfio) -> Built {
    let ops = Arc::new(fake);
    let (mut msix, mut msi) = (None, None);
    let dev = model(&ops, |probe| {
        let x = FakeVectors::new(probe.msix.map_or(1, |m| m.table_size));
        let m = FakeVectors::new(probe.msi.map_or(1, |m| u16::from(m.max_vectors)));
        msix = Some(x.clone());
        msi = Some(m.clone());
        VfioInterrupts {
            msix: Some(x),
            msi: Some(m),
            intx: Some(intx_fds()),
        }
    })
    .unwrap();
    Built {
        dev,
        ops,
        msix: msix.unwrap(),
        msi: msi.unwrap(),
    }
}

fn cfg_write32(dev: &mut VfioPciDevice, offset: usize, v: u32) {
    dev.config_write(offset / 4, 0, &v.to_le_bytes());
}

fn cfg_write16(dev: &mut VfioPciDevice, offset: usize, v: u16) {
    dev.config_write(offset / 4, (offset % 4) as u64, &v.to_le_bytes());
}

#[test]
fn probe_reads_bars_and_capabilities() {
    let p = Probe::read(&vf()).unwrap();
    assert_eq!((p.vendor_id, p.device_id), (0x8086, 0x10ed));
    let kinds: Vec<_> = p.bars.iter().map(|b| (b.index, b.kind, b.size)).collect();
    assert_eq!(
        kinds,
        vec![
            (0, BarKind::Mmio64, 0x4000),
            (2, BarKind::Io, 0x20),
            (3, BarKind::Mmio64, 0x4000)
        ]
    );
    assert!(p.bar(3).unwrap().prefetchable);
    let m = p.msix.unwrap();
    assert_eq!(
        (
            m.cap,
            m.table_size,
            m.table_bar,
            m.table_offset,
            m.pba_bar,
            m.pba_offset
        ),
        (0x70, 3, 3, 0, 3, 0x2000)
    );
    let msi = p.msi.unwrap();
    assert_eq!(
        (msi.cap, msi.max_vectors, msi.addr64, msi.per_vector_mask),
        (0x50, 4, true, true)
    );
    assert_eq!(p.intx_pin, 1);
}

#[test]
fn bars_are_placed_page_aligned_in_their_windows() {
    let p = Probe::read(&vf()).unwrap();
    let mut mmio = BarAllocator::new(MMIO_BASE + 0x10, 0x1000_0000);
    let mut io = BarAllocator::new(0xc004, 0x4000);
    let bars = place_bars(&p, &mut mmio, &mut io).unwrap();
    for b in &bars {
        assert_eq!(b.addr % b.size, 0, "{b:?}");
        if b.is_mmio() {
            assert_eq!(b.addr % 4096, 0, "{b:?}");
            assert!(b.addr >= MMIO_BASE && b.addr + b.size <= 1 << 32);
        } else {
            assert!(b.addr >= 0xc004 && b.addr + b.size <= 0x10000);
        }
    }
    let mut tiny = BarAllocator::new(MMIO_BASE, 0x4000);
    assert_eq!(
        place_bars(&p, &mut tiny, &mut io),
        Err(VfioError::NoBarSpace {
            index: 3,
            size: 0x4000
        })
    );
}

#[test]
fn reset_on_start_and_on_drop() {
    let b = build(vf());
    assert_eq!(b.ops.resets.load(Ordering::SeqCst), 1);
    let ops = b.ops.clone();
    drop(b.dev);
    assert_eq!(ops.resets.load(Ordering::SeqCst), 2);
    // INTx was on; it is switched off before the reset.
    assert_eq!(
        ops.take_irqs().last(),
        Some(&IrqCall::Disable(IrqIndex::Intx))
    );
}

#[test]
fn bar_registers_are_shadowed_and_never_reach_the_device() {
    let mut b = build(vf());
    let bars = b.dev.bars();
    let bar0 = bars[0];
    assert_eq!(b.dev.config_read(4), bar0.addr as u32 | 0x4);
    assert_eq!(b.dev.config_read(5), (bar0.addr >> 32) as u32);
    // Sizing: all-ones reads back the size mask with the type bits.
    cfg_write32(&mut b.dev, 0x10, u32::MAX);
    assert_eq!(b.dev.config_read(4), !(0x4000u32 - 1) | 0x4);
    cfg_write32(&mut b.dev, 0x10, bar0.addr as u32);
    assert_eq!(b.dev.config_read(4), bar0.addr as u32 | 0x4);
    // I/O BAR.
    let io = bars.iter().find(|b| b.kind == BarKind::Io).unwrap();
    assert_eq!(b.dev.config_read(6), io.addr as u32 | 1);
    // Moving a BAR is refused; the expansion ROM reads zero.
    cfg_write32(&mut b.dev, 0x10, 0x1234_0000);
    assert_eq!(b.dev.config_read(4), bar0.addr as u32 | 0x4);
    cfg_write32(&mut b.dev, 0x30, u32::MAX);
    assert_eq!(b.dev.config_read(12), 0);
    assert!(b.ops.config_writes.lock().unwrap().is_empty());
}

#[test]
fn identity_and_command_pass_through_header_is_single_function() {
    let mut b = build(vf());
    assert_eq!(b.dev.config_read(0), 0x10ed_8086);
    assert_eq!(b.dev.config_read(3) & (0x80 << 16), 0);
    cfg_write16(&mut b.dev, 4, 0x0006); // memory + bus master
    assert_eq!(b.dev.config_read(1) & 0xffff, 0x0006);
    assert_eq!(
        b.ops.config_writes.lock().unwrap().as_slice(),
        &[(4u64, vec![0x06, 0x00])]
    );
    // Vendor id writes are dropped.
    cfg_write32(&mut b.dev, 0, 0);
    assert_eq!(b.dev.config_read(0), 0x10ed_8086);
}

#[test]
fn interrupt_line_is_scratch_pin_comes_from_the_device() {
    let mut b = build(vf());
    b.dev.config_write(15, 0, &[19]);
    assert_eq!(b.dev.config_read(15) & 0xffff, 0x0113);
    assert!(b.ops.config_writes.lock().unwrap().is_empty());
}

#[test]
fn intx_is_enabled_at_start_with_its_unmask_fd() {
    let b = build(vf());
    assert_eq!(
        b.ops.take_irqs(),
        vec![IrqCall::Enable(IrqIndex::Intx, 1), IrqCall::Unmask]
    );
}

#[test]
fn no_intx_wiring_means_pin_zero_and_no_intx() {
    let ops = Arc::new(vf());
    let mut dev = model(&ops, |_| no_irqs()).unwrap();
    assert_eq!((dev.config_read(15) >> 8) & 0xff, 0);
    assert!(ops.take_irqs().is_empty());
}

#[test]
fn msix_table_is_emulated_and_enable_switches_from_intx() {
    let mut b = build(vf());
    b.ops.take_irqs();
    let table_bar = 3u8;
    // Message control reads the table size; enable + function mask.
    assert_eq!(b.dev.config_read(0x70 / 4) >> 16, 2);
    cfg_write16(&mut b.dev, 0x72, 0xc000);
    assert_eq!(
        b.ops.take_irqs(),
        vec![
            IrqCall::Disable(IrqIndex::Intx),
            IrqCall::Enable(IrqIndex::Msix, 3)
        ]
    );
    assert_eq!(b.dev.config_read(0x70 / 4) >> 16, 0xc002);
    // Program vector 1 and unmask it, then drop the function mask.
    b.dev
        .bar_write(table_bar, 16, &0xfee0_1000u32.to_le_bytes());
    b.dev.bar_write(table_bar, 20, &0u32.to_le_bytes());
    b.dev.bar_write(table_bar, 24, &0x4041u32.to_le_bytes());
    b.dev.bar_write(table_bar, 28, &0u32.to_le_bytes());
    cfg_write16(&mut b.dev, 0x72, 0x8000);
    let updates = b.msix.take_updates();
    assert!(updates.contains(&(
        1,
        Some(MsiMessage {
            addr: 0xfee0_1000,
            data: 0x4041
        })
    )));
    // The table reads back what the guest wrote, and never reached the
    // device.
    let mut d = [0u8; 4];
    b.dev.bar_read(table_bar, 24, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x4041);
    assert!(b.ops.bar_writes.lock().unwrap().is_empty());
    // PBA reads come from the emulation; writes are dropped.
    b.dev.bar_read(table_bar, 0x2000, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0);
    b.dev.bar_write(table_bar, 0x2000, &[0xff; 4]);
    assert!(b.ops.bar_writes.lock().unwrap().is_empty());
    // Other parts of the BAR go to the device.
    b.dev.bar_write(table_bar, 0x3000, &7u32.to_le_bytes());
    b.dev.bar_read(table_bar, 0x3000, &mut d);
    assert_eq!(u32::from_le_bytes(d), 7);
    // Disabling MSI-X brings INTx back.
    cfg_write16(&mut b.dev, 0x72, 0);
    assert_eq!(
        b.ops.take_irqs(),
        vec![
            IrqCall::Disable(IrqIndex::Msix),
            IrqCall::Enable(IrqIndex::Intx, 1),
            IrqCall::Unmask
        ]
    );
    assert!(b.msix.take_updates().contains(&(1, None)));
}

#[test]
fn msi_routes_follow_address_data_count_and_mask() {
    let mut b = build(vf());
    b.ops.take_irqs();
    let cap = 0x50;
    cfg_write32(&mut b.dev, cap + 4, 0xfee0_0000);
    cfg_write32(&mut b.dev, cap + 8, 0);
    cfg_write16(&mut b.dev, cap + 12, 0x4060);
    assert!(
        b.msi.take_updates().is_empty(),
        "nothing routed before enable"
    );
    // Enable with 2 vectors (MME = 1).
    cfg_write16(&mut b.dev, cap + 2, 0x0011);
    assert_eq!(
        b.ops.take_irqs(),
        vec![
            IrqCall::Disable(IrqIndex::Intx),
            IrqCall::Enable(IrqIndex::Msi, 2)
        ]
    );
    let mut up = b.msi.take_updates();
    up.sort_by_key(|u| u.0);
    assert_eq!(
        up,
        vec![
            (
                0,
                Some(MsiMessage {
                    addr: 0xfee0_0000,
                    data: 0x4060
                })
            ),
            (
                1,
                Some(MsiMessage {
                    addr: 0xfee0_0000,
                    data: 0x4061
                })
            ),
        ]
    );
    // Control reads back capability bits from the device plus the guest's.
    assert_eq!(b.dev.config_read(cap / 4) >> 16, 0x0195);
    // Mask vector 1.
    cfg_write32(&mut b.dev, cap + 16, 0b10);
    assert_eq!(b.msi.take_updates(), vec![(1, None)]);
    assert_eq!(b.dev.config_read((cap + 16) / 4), 0b10);
    // The capability never reached the device.
    assert!(b.ops.config_writes.lock().unwrap().is_empty());
    // Disable.
    cfg_write16(&mut b.dev, cap + 2, 0);
    assert_eq!(
        b.ops.take_irqs(),
        vec![
            IrqCall::Disable(IrqIndex::Msi),
            IrqCall::Enable(IrqIndex::Intx, 1),
            IrqCall::Unmask
        ]
    );
    assert_eq!(b.msi.take_updates(), vec![(0, None)]);
}

#[test]
fn mmap_areas_leave_out_the_msix_pages() {
    let b = build(vf());
    let bars = b.dev.bars();
    let areas = b.dev.mmap_areas();
    let bar0 = bars.iter().find(|b| b.index == 0).unwrap();
    let bar3 = bars.iter().find(|b| b.index == 3).unwrap();
    assert_eq!(
        areas,
        vec![
            MmapArea {
                bar: 0,
                offset: 0,
                size: 0x4000,
                guest_addr: bar0.addr
            },
            // Table at 0 (page 0) and PBA at 0x2000 (page 2) trap.
            MmapArea {
                bar: 3,
                offset: 0x1000,
                size: 0x1000,
                guest_addr: bar3.addr + 0x1000
            },
            MmapArea {
                bar: 3,
                offset: 0x3000,
                size: 0x1000,
                guest_addr: bar3.addr + 0x3000
            },
        ]
    );
}

#[test]
fn sparse_mmap_areas_are_honoured_and_trimmed_to_pages() {
    let mut f = vf();
    f.bars[0].as_mut().unwrap().sparse = Some(vec![(0x800, 0x2000), (0x3000, 0x9000)]);
    let b = build(f);
    let bar0 = b.dev.bars()[0];
    let areas: Vec<_> = b
        .dev
        .mmap_areas()
        .into_iter()
        .filter(|a| a.bar == 0)
        .map(|a| (a.offset, a.size, a.guest_addr - bar0.addr))
        .collect();
    assert_eq!(
        areas,
        vec![(0x1000, 0x1000, 0x1000), (0x3000, 0x1000, 0x3000)]
    );
}

#[test]
fn capability_loop_and_wild_pointers_terminate() {
    let mut f = vf();
    // 0x70's next pointer back to 0x50: a loop.
    f.set_config(0x71, &[0x50]);
    let p = Probe::read(&f).unwrap();
    assert!(p.msix.is_some() && p.msi.is_some());
    // A pointer into the header is the end of the list.
    let mut f = vf();
    f.set_config(0x34, &[0x10]);
    let p = Probe::read(&f).unwrap();
    assert!(p.msix.is_none() && p.msi.is_none());
}

#[test]
fn msix_table_outside_its_bar_is_refused() {
    let mut f = vf();
    // Table at offset 0x3ff8 of a 16 KiB BAR: 3 entries do not fit.
    f.set_config(0x74, &0x3ffbu32.to_le_bytes());
    assert!(matches!(
        Probe::read(&f),
        Err(VfioError::MsixOutsideBar { what: "table", .. })
    ));
    // Table in a BAR the device does not have.
    let mut f = vf();
    f.set_config(0x74, &0x0000_0005u32.to_le_bytes());
    assert!(matches!(
        Probe::read(&f),
        Err(VfioError::MsixOutsideBar { .. })
    ));
}

#[test]
fn odd_bar_sizes_are_refused() {
    let f = FakeVfio::new().with_bar(0, 0, 0x3000, true);
    assert_eq!(
        Probe::read(&f),
        Err(VfioError::BadBar {
            index: 0,
            size: 0x3000,
            reason: "not a power of two"
        })
    );
    let f = FakeVfio::new().with_bar(5, 0x4, 0x1000, true);
    assert!(matches!(
        Probe::read(&f),
        Err(VfioError::BadBar { index: 5, .. })
    ));
}

#[test]
fn hostile_guest_accesses_are_contained() {
    let mut b = build(vf());
    let mut big = [0u8; 8];
    // Past the BAR end, unknown BARs, huge offsets: all-ones, nothing
    // forwarded.
    b.dev.bar_read(0, 0x3ffc, &mut big);
    assert_eq!(big, [0xff; 8]);
    b.dev.bar_read(4, 0, &mut big);
    b.dev.bar_write(0, u64::MAX - 2, &[1, 2, 3, 4]);
    b.dev.bar_write(1, 0, &[1]);
    assert!(b.ops.bar_writes.lock().unwrap().is_empty());
    // Malformed config writes and reads past the space.
    b.dev.config_write(1, 3, &[1, 2]);
    b.dev.config_write(1, u64::MAX, &[1]);
    b.dev.config_write(64, 0, &[1]);
    b.dev.config_write(1, 0, &[1, 2, 3]);
    assert!(b.ops.config_writes.lock().unwrap().is_empty());
    assert_eq!(b.dev.config_read(64), u32::MAX);
    assert_eq!(b.dev.config_read(usize::MAX), u32::MAX);
    // Misaligned MSI-X table accesses are dropped.
    b.dev.bar_write(3, 2, &[1, 2, 3, 4]);
    b.dev.bar_write(3, 0, &[1]);
    assert!(b.msix.take_updates().is_empty());
}

#[test]
fn vector_counts_must_match_the_device() {
    let ops = Arc::new(vf());
    let err = model(&ops, |_| VfioInterrupts {
        msix: Some(FakeVectors::new(2)),
        ..no_irqs()
    })
    .unwrap_err();
    assert_eq!(err, VfioError::MsixVectors { want: 3, got: 2 });
}
