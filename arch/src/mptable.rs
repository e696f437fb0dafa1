//! Intel MultiProcessor Specification 1.4 tables.
//!
//! With no ACPI tables, the MP table is how the guest learns about its CPUs,
//! the IOAPIC, and how ISA and PCI interrupts are wired to IOAPIC pins.

use std::mem::size_of;

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use crate::layout::{
    APIC_ADDR, HIMEM_START, IOAPIC_ADDR, IOAPIC_NUM_PINS, MAX_VCPUS, MPTABLE_START,
};

/// Why the MP table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MpTableError {
    /// At least the boot processor must be described.
    #[error("the MP table needs at least one vCPU")]
    NoCpus,
    /// APIC IDs are 8 bits and 0xff / the IOAPIC ID are taken.
    #[error("{count} vCPUs requested, the MP table supports at most {max}")]
    TooManyCpus {
        /// Requested vCPUs.
        count: u8,
        /// Supported maximum.
        max: u8,
    },
    /// A PCI INTx route is out of range.
    #[error("invalid PCI INTx route: device {device} (max 31), pin {pin} (max 3), gsi {gsi} (max {max_gsi})")]
    InvalidPciIntx {
        /// PCI device number.
        device: u8,
        /// INTx pin (0 = INTA).
        pin: u8,
        /// Target IOAPIC pin.
        gsi: u8,
        /// Highest IOAPIC pin.
        max_gsi: u8,
    },
    /// The configuration table would exceed its 16-bit length field or run
    /// into the BIOS area at 1 MiB.
    #[error("MP configuration table of {size:#x} bytes exceeds the maximum of {max:#x}")]
    TooLarge {
        /// Size of the configuration table.
        size: u64,
        /// Largest size that fits.
        max: u64,
    },
    /// Writing the table into guest memory failed.
    #[error("failed to write the MP table to guest memory at {addr:#x}")]
    GuestMemoryWrite {
        /// Guest-physical address of the write.
        addr: u64,
        /// Underlying vm-memory error.
        #[source]
        source: GuestMemoryError,
    },
}

/// A PCI legacy interrupt route: `device`'s INTx `pin` (0 = INTA .. 3 = INTD)
/// on bus 0 is wired to IOAPIC pin `gsi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIntx {
    /// Device number on PCI bus 0 (0..=31).
    pub device: u8,
    /// Interrupt pin, 0 = INTA .. 3 = INTD.
    pub pin: u8,
    /// IOAPIC input pin.
    pub gsi: u8,
}

const SPEC_REV_1_4: u8 = 4;
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;

const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Family 6 signature and FPU + APIC feature flags: enough for Linux to treat
/// the processor as APIC-capable; real identification comes from CPUID.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURE_FPU: u32 = 1 << 0;
const CPU_FEATURE_APIC: u32 = 1 << 9;

const IOAPIC_ENABLED: u8 = 1;

const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
/// Polarity and trigger "conforming to the bus": edge/active-high for ISA.
const INT_FLAGS_CONFORMING: u16 = 0;
/// Polarity 3 (active low) | trigger 3 << 2 (level), as PCI INTx requires.
const INT_FLAGS_PCI: u16 = 0x0f;

const BUS_PCI: u8 = 0;
const BUS_ISA: u8 = 1;
const ISA_IRQS: u8 = 16;
/// The 8254 timer (ISA IRQ 0) is wired to IOAPIC pin 2, as on real chipsets
/// and as KVM's in-kernel PIT expects.
const TIMER_IOAPIC_PIN: u8 = 2;
const ALL_LOCAL_APICS: u8 = 0xff;

/// MP floating pointer structure.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MpfIntel {
    signature: [u8; 4],
    physptr: u32,
    length: u8,
    specification: u8,
    checksum: u8,
    feature1: u8,
    feature2: [u8; 4],
}

/// MP configuration table header.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MpcTable {
    signature: [u8; 4],
    length: u16,
    spec: u8,
    checksum: u8,
    oem: [u8; 8],
    productid: [u8; 12],
    oemptr: u32,
    oemsize: u16,
    oemcount: u16,
    lapic: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MpcCpu {
    kind: u8,
    apicid: u8,
    apicver: u8,
    cpuflag: u8,
    cpufeature: u32,
    featureflag: u32,
    reserved: [u32; 2],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MpcBus {
    kind: u8,
    busid: u8,
    bustype: [u8; 6],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MpcIoapic {
    kind: u8,
    apicid: u8,
    apicver: u8,
    flags: u8,
    apicaddr: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MpcIntsrc {
    kind: u8,
    irqtype: u8,
    irqflag: u16,
    srcbus: u8,
    srcbusirq: u8,
    dstapic: u8,
    dstirq: u8,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct MpcLintsrc {
    kind: u8,
    irqtype: u8,
    irqflag: u16,
    srcbusid: u8,
    srcbusirq: u8,
    destapic: u8,
    destapiclint: u8,
}

// Layouts fixed by the MP spec; every field is naturally aligned, so repr(C)
// adds no padding, which these asserts prove.
const _: () = assert!(size_of::<MpfIntel>() == 16);
const _: () = assert!(size_of::<MpcTable>() == 44);
const _: () = assert!(size_of::<MpcCpu>() == 20);
const _: () = assert!(size_of::<MpcBus>() == 8);
const _: () = assert!(size_of::<MpcIoapic>() == 8);
const _: () = assert!(size_of::<MpcIntsrc>() == 8);
const _: () = assert!(size_of::<MpcLintsrc>() == 8);

// SAFETY: repr(C) struct of integers and byte arrays with no padding (size
// asserted above); any bit pattern is a valid value.
unsafe impl ByteValued for MpfIntel {}
// SAFETY: repr(C) struct of integers and byte arrays with no padding (size
// asserted above); any bit pattern is a valid value.
unsafe impl ByteValued for MpcTable {}
// SAFETY: repr(C) struct of integers with no padding (size asserted above);
// any bit pattern is a valid value.
unsafe impl ByteValued for MpcCpu {}
// SAFETY: repr(C) struct of bytes, no padding (size asserted above); any bit
// pattern is a valid value.
unsafe impl ByteValued for MpcBus {}
// SAFETY: repr(C) struct of integers with no padding (size asserted above);
// any bit pattern is a valid value.
unsafe impl ByteValued for MpcIoapic {}
// SAFETY: repr(C) struct of integers with no padding (size asserted above);
// any bit pattern is a valid value.
unsafe impl ByteValued for MpcIntsrc {}
// SAFETY: repr(C) struct of integers with no padding (size asserted above);
// any bit pattern is a valid value.
unsafe impl ByteValued for MpcLintsrc {}

/// Value that makes `bytes` sum to zero modulo 256 once stored in them.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, &b| acc.wrapping_add(b))
        .wrapping_neg()
}

/// Size in bytes of the configuration table (header and entries).
fn config_table_size(num_cpus: u8, num_pci_intx: usize) -> u64 {
    let fixed = size_of::<MpcTable>()
        + usize::from(num_cpus) * size_of::<MpcCpu>()
        + 2 * size_of::<MpcBus>()
        + size_of::<MpcIoapic>()
        + usize::from(ISA_IRQS) * size_of::<MpcIntsrc>()
        + 2 * size_of::<MpcLintsrc>();
    (fixed as u64)
        .saturating_add((num_pci_intx as u64).saturating_mul(size_of::<MpcIntsrc>() as u64))
}

/// Processor entries: one per vCPU, APIC IDs `0..num_cpus`, the first the BSP.
fn push_cpu_entries(entries: &mut Vec<u8>, num_cpus: u8) {
    for apicid in 0..num_cpus {
        let cpu = MpcCpu {
            kind: ENTRY_PROCESSOR,
            apicid,
            apicver: LAPIC_VERSION,
            cpuflag: CPU_ENABLED | if apicid == 0 { CPU_BSP } else { 0 },
            cpufeature: CPU_SIGNATURE,
            featureflag: CPU_FEATURE_APIC | CPU_FEATURE_FPU,
            reserved: [0; 2],
        };
        entries.extend_from_slice(cpu.as_slice());
    }
}

/// The PCI and ISA bus entries, then the one IOAPIC.
fn push_bus_and_ioapic_entries(entries: &mut Vec<u8>, ioapic_id: u8) {
    for (busid, bustype) in [(BUS_PCI, *b"PCI   "), (BUS_ISA, *b"ISA   ")] {
        let bus = MpcBus {
            kind: ENTRY_BUS,
            busid,
            bustype,
        };
        entries.extend_from_slice(bus.as_slice());
    }
    let ioapic = MpcIoapic {
        kind: ENTRY_IOAPIC,
        apicid: ioapic_id,
        apicver: IOAPIC_VERSION,
        flags: IOAPIC_ENABLED,
        apicaddr: IOAPIC_ADDR as u32,
    };
    entries.extend_from_slice(ioapic.as_slice());
}

/// I/O interrupt entries: the ISA IRQs identity-mapped (the timer on its
/// IOAPIC pin), then each PCI INTx route.
fn push_io_interrupt_entries(entries: &mut Vec<u8>, ioapic_id: u8, pci_intx: &[PciIntx]) {
    for irq in 0..ISA_IRQS {
        let src = MpcIntsrc {
            kind: ENTRY_IO_INTERRUPT,
            irqtype: INT_TYPE_INT,
            irqflag: INT_FLAGS_CONFORMING,
            srcbus: BUS_ISA,
            srcbusirq: irq,
            dstapic: ioapic_id,
            dstirq: if irq == 0 { TIMER_IOAPIC_PIN } else { irq },
        };
        entries.extend_from_slice(src.as_slice());
    }
    for intx in pci_intx {
        let src = MpcIntsrc {
            kind: ENTRY_IO_INTERRUPT,
            irqtype: INT_TYPE_INT,
            irqflag: INT_FLAGS_PCI,
            srcbus: BUS_PCI,
            srcbusirq: (intx.device << 2) | intx.pin,
            dstapic: ioapic_id,
            dstirq: intx.gsi,
        };
        entries.extend_from_slice(src.as_slice());
    }
}

/// Local interrupt entries for virtual-wire mode: the PIC reaches the BSP
/// through LINT0, NMIs go to every local APIC's LINT1.
fn push_local_interrupt_entries(entries: &mut Vec<u8>) {
    for (irqtype, destapic, destapiclint) in
        [(INT_TYPE_EXTINT, 0, 0), (INT_TYPE_NMI, ALL_LOCAL_APICS, 1)]
    {
        let lint = MpcLintsrc {
            kind: ENTRY_LOCAL_INTERRUPT,
            irqtype,
            irqflag: INT_FLAGS_CONFORMING,
            srcbusid: BUS_ISA,
            srcbusirq: 0,
            destapic,
            destapiclint,
        };
        entries.extend_from_slice(lint.as_slice());
    }
}

/// Builds the configuration table (header + entries) with its checksum.
/// The caller has checked that the result fits the 16-bit length field.
fn build_config_table(num_cpus: u8, pci_intx: &[PciIntx]) -> Vec<u8> {
    // The IOAPIC takes the first ID after the CPUs' so the IDs never clash.
    let ioapic_id = num_cpus;
    let mut entries: Vec<u8> = Vec::new();
    push_cpu_entries(&mut entries, num_cpus);
    push_bus_and_ioapic_entries(&mut entries, ioapic_id);
    push_io_interrupt_entries(&mut entries, ioapic_id, pci_intx);
    push_local_interrupt_entries(&mut entries);

    let entry_count = u16::from(num_cpus) + 2 + 1 + u16::from(ISA_IRQS) + 2;
    let mut header = MpcTable {
        signature: *b"PCMP",
        length: (size_of::<MpcTable>() + entries.len()) as u16,
        spec: SPEC_REV_1_4,
        checksum: 0,
        oem: *b"PETREL  ",
        productid: *b"PETRELVMM   ",
        oemptr: 0,
        oemsize: 0,
        oemcount: entry_count + pci_intx.len() as u16,
        lapic: APIC_ADDR as u32,
        reserved: 0,
    };
    let mut table = Vec::with_capacity(usize::from(header.length));
    table.extend_from_slice(header.as_slice());
    table.extend_from_slice(&entries);
    header.checksum = checksum(&table);
    table[..size_of::<MpcTable>()].copy_from_slice(header.as_slice());
    table
}

/// Writes the MP floating pointer and configuration table at `MPTABLE_START`
/// for `num_cpus` vCPUs (APIC IDs `0..num_cpus`) and the given PCI INTx
/// routes on bus 0.
pub fn setup_mptable<M: GuestMemory + ?Sized>(
    mem: &M,
    num_cpus: u8,
    pci_intx: &[PciIntx],
) -> Result<(), MpTableError> {
    if num_cpus == 0 {
        return Err(MpTableError::NoCpus);
    }
    if num_cpus > MAX_VCPUS {
        return Err(MpTableError::TooManyCpus {
            count: num_cpus,
            max: MAX_VCPUS,
        });
    }
    let max_gsi = IOAPIC_NUM_PINS - 1;
    if let Some(bad) = pci_intx
        .iter()
        .find(|i| i.device > 31 || i.pin > 3 || i.gsi > max_gsi)
    {
        return Err(MpTableError::InvalidPciIntx {
            device: bad.device,
            pin: bad.pin,
            gsi: bad.gsi,
            max_gsi,
        });
    }
    let table_addr = MPTABLE_START + size_of::<MpfIntel>() as u64;
    let size = config_table_size(num_cpus, pci_intx.len());
    let max = (HIMEM_START - table_addr).min(u64::from(u16::MAX));
    if size > max {
        return Err(MpTableError::TooLarge { size, max });
    }
    let table = build_config_table(num_cpus, pci_intx);

    let mut mpf = MpfIntel {
        signature: *b"_MP_",
        physptr: table_addr as u32,
        // In 16-byte units.
        length: 1,
        specification: SPEC_REV_1_4,
        checksum: 0,
        // 0: a configuration table is present (no default configuration).
        feature1: 0,
        // IMCRP clear: virtual-wire mode, no IMCR to program.
        feature2: [0; 4],
    };
    mpf.checksum = checksum(mpf.as_slice());

    let write = |bytes: &[u8], addr: u64| {
        mem.write_slice(bytes, GuestAddress(addr))
            .map_err(|source| MpTableError::GuestMemoryWrite { addr, source })
    };
    write(mpf.as_slice(), MPTABLE_START)?;
    write(&table, table_addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap()
    }

    fn sum(m: &GuestMemoryMmap, addr: u64, len: usize) -> u8 {
        let mut buf = vec![0u8; len];
        m.read_slice(&mut buf, GuestAddress(addr)).unwrap();
        buf.iter().fold(0u8, |a, &b| a.wrapping_add(b))
    }

    struct Parsed {
        cpus: Vec<MpcCpu>,
        buses: Vec<MpcBus>,
        ioapics: Vec<MpcIoapic>,
        intsrcs: Vec<MpcIntsrc>,
        lints: Vec<MpcLintsrc>,
        header: MpcTable,
    }

    fn parse(m: &GuestMemoryMmap) -> Parsed {
        let mpf: MpfIntel = m.read_obj(GuestAddress(MPTABLE_START)).unwrap();
        assert_eq!(&mpf.signature, b"_MP_");
        assert_eq!(mpf.specification, 4);
        assert_eq!(mpf.length, 1);
        assert_eq!(sum(m, MPTABLE_START, 16), 0);
        let base = u64::from(mpf.physptr);
        assert_eq!(base, MPTABLE_START + 16);
        let header: MpcTable = m.read_obj(GuestAddress(base)).unwrap();
        assert_eq!(&header.signature, b"PCMP");
        assert_eq!(header.spec, 4);
        assert_eq!(u64::from(header.lapic), APIC_ADDR);
        assert_eq!(sum(m, base, usize::from(header.length)), 0);
        assert!(base + u64::from(header.length) <= HIMEM_START);

        let mut p = Parsed {
            cpus: vec![],
            buses: vec![],
            ioapics: vec![],
            intsrcs: vec![],
            lints: vec![],
            header,
        };
        let mut at = base + size_of::<MpcTable>() as u64;
        for _ in 0..header.oemcount {
            let kind: u8 = m.read_obj(GuestAddress(at)).unwrap();
            let g = GuestAddress(at);
            at += match kind {
                ENTRY_PROCESSOR => {
                    p.cpus.push(m.read_obj(g).unwrap());
                    20
                }
                ENTRY_BUS => {
                    p.buses.push(m.read_obj(g).unwrap());
                    8
                }
                ENTRY_IOAPIC => {
                    p.ioapics.push(m.read_obj(g).unwrap());
                    8
                }
                ENTRY_IO_INTERRUPT => {
                    p.intsrcs.push(m.read_obj(g).unwrap());
                    8
                }
                ENTRY_LOCAL_INTERRUPT => {
                    p.lints.push(m.read_obj(g).unwrap());
                    8
                }
                k => panic!("unknown entry type {k}"),
            };
        }
        assert_eq!(at, base + u64::from(header.length));
        p
    }

    #[test]
    fn four_cpus_with_pci_routes() {
        let m = mem();
        let intx = [
            PciIntx {
                device: 1,
                pin: 0,
                gsi: 16,
            },
            PciIntx {
                device: 31,
                pin: 3,
                gsi: 23,
            },
        ];
        setup_mptable(&m, 4, &intx).unwrap();
        let p = parse(&m);
        assert_eq!(&p.header.oem, b"PETREL  ");

        assert_eq!(p.cpus.len(), 4);
        for (i, c) in p.cpus.iter().enumerate() {
            assert_eq!(usize::from(c.apicid), i);
            assert_ne!(c.cpuflag & CPU_ENABLED, 0);
            assert_eq!(c.cpuflag & CPU_BSP != 0, i == 0);
            assert_eq!(c.featureflag, CPU_FEATURE_APIC | CPU_FEATURE_FPU);
        }

        assert_eq!(p.buses.len(), 2);
        assert_eq!((p.buses[0].busid, &p.buses[0].bustype), (0, b"PCI   "));
        assert_eq!((p.buses[1].busid, &p.buses[1].bustype), (1, b"ISA   "));

        assert_eq!(p.ioapics.len(), 1);
        let io = p.ioapics[0];
        assert_eq!((io.apicid, io.apicver, io.flags), (4, 0x11, 1));
        assert_eq!(u64::from(io.apicaddr), IOAPIC_ADDR);

        let isa: Vec<_> = p.intsrcs.iter().filter(|s| s.srcbus == BUS_ISA).collect();
        assert_eq!(isa.len(), 16);
        for (irq, s) in isa.iter().enumerate() {
            assert_eq!(usize::from(s.srcbusirq), irq);
            let pin = if irq == 0 { 2 } else { irq };
            assert_eq!(usize::from(s.dstirq), pin);
            assert_eq!((s.irqtype, s.irqflag, s.dstapic), (0, 0, 4));
        }

        let pci: Vec<_> = p.intsrcs.iter().filter(|s| s.srcbus == BUS_PCI).collect();
        assert_eq!(pci.len(), 2);
        assert_eq!((pci[0].srcbusirq, pci[0].dstirq), (1 << 2, 16));
        assert_eq!((pci[1].srcbusirq, pci[1].dstirq), ((31 << 2) | 3, 23));
        for s in pci {
            assert_eq!((s.irqtype, s.irqflag, s.dstapic), (0, 0x0f, 4));
        }

        assert_eq!(p.lints.len(), 2);
        assert_eq!((p.lints[0].irqtype, p.lints[0].destapiclint), (3, 0));
        assert_eq!(
            (
                p.lints[1].irqtype,
                p.lints[1].destapic,
                p.lints[1].destapiclint
            ),
            (1, 0xff, 1)
        );
    }

    #[test]
    fn max_cpus_fit_below_1m() {
        let m = mem();
        setup_mptable(&m, MAX_VCPUS, &[]).unwrap();
        let p = parse(&m);
        assert_eq!(p.cpus.len(), usize::from(MAX_VCPUS));
        assert_eq!(p.ioapics[0].apicid, MAX_VCPUS);
    }

    #[test]
    fn single_cpu() {
        let m = mem();
        setup_mptable(&m, 1, &[]).unwrap();
        let p = parse(&m);
        assert_eq!(p.cpus.len(), 1);
        assert_eq!(p.cpus[0].cpuflag, CPU_ENABLED | CPU_BSP);
    }

    #[test]
    fn rejects_bad_arguments() {
        let m = mem();
        assert!(matches!(
            setup_mptable(&m, 0, &[]),
            Err(MpTableError::NoCpus)
        ));
        assert!(matches!(
            setup_mptable(&m, 255, &[]),
            Err(MpTableError::TooManyCpus { count: 255, .. })
        ));
        let many = vec![
            PciIntx {
                device: 0,
                pin: 0,
                gsi: 16
            };
            10_000
        ];
        assert!(matches!(
            setup_mptable(&m, 1, &many),
            Err(MpTableError::TooLarge { max: 0xffff, .. })
        ));
        for bad in [(32, 0, 16), (1, 4, 16), (1, 0, 24)] {
            let intx = PciIntx {
                device: bad.0,
                pin: bad.1,
                gsi: bad.2,
            };
            assert!(matches!(
                setup_mptable(&m, 1, &[intx]),
                Err(MpTableError::InvalidPciIntx { .. })
            ));
        }
        let small: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x9f000)]).unwrap();
        assert!(matches!(
            setup_mptable(&small, 1, &[]),
            Err(MpTableError::GuestMemoryWrite { .. })
        ));
    }
}
