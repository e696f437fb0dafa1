//! Minimal ACPI tables, laid out as Cloud Hypervisor builds them:
//! RSDP → XSDT → FADT (sleep control/status and reset registers on one I/O
//! port, no PM1/GPE blocks; see [`fadt`] for why HW_REDUCED_ACPI is not set) → DSDT (PCI root with `_PRT`, a GED whose
//! interrupt notifies the PNP0C0C power button, `_S5`), and the MADT (local
//! APICs, the IOAPIC, ISA IRQ 0 → GSI 2). Pure: the tables are built with
//! the rust-vmm `acpi_tables` crate and written into guest memory.
//!
//! The RSDP sits at [`ACPI_START`] (0xe0000), inside the BIOS area Linux
//! scans when no boot protocol hands it the address; the MP table stays at
//! the EBDA for guests booted with `acpi=off`.

mod dsdt;
mod madt;

use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use crate::mptable::PciIntx;

/// Where the RSDP and the tables after it go (BIOS area, e820-reserved).
pub const ACPI_START: u64 = 0x000e_0000;
/// End of the BIOS area the tables must fit below.
pub const ACPI_END: u64 = 0x0010_0000;

/// `_S5` sleep type: SLP_TYP written to the sleep control register.
pub const S5_SLEEP_TYPE: u8 = 5;
/// Sleep control register: SLP_TYP in bits 2..=4, SLP_EN in bit 5.
pub const SLP_TYP_SHIFT: u8 = 2;
pub const SLP_EN: u8 = 1 << 5;
/// What the guest writes to the FADT's reset register to reset the machine.
pub const RESET_VALUE: u8 = 1;

/// The FADT's SCI line: an ISA IRQ nothing raises (no GPE or PM1 block).
pub const SCI_GSI: u16 = 9;

const OEM_ID: [u8; 6] = *b"PETREL";
const OEM_TABLE_ID: [u8; 8] = *b"PETRELVM";
const OEM_REVISION: u32 = 1;

/// What the tables describe.
#[derive(Debug, Clone)]
pub struct AcpiConfig<'a> {
    pub num_cpus: u8,
    /// INTx routes of PCI bus 0 (the `_PRT`).
    pub pci_intx: &'a [PciIntx],
    /// I/O port of the sleep control/status and reset register (1 byte).
    pub pm_port: u16,
    /// GSI of the GED's edge-triggered interrupt (the power button).
    pub ged_gsi: u32,
    /// PCI I/O BAR window (start, size).
    pub pci_io: (u16, u16),
    /// PCI 32-bit memory BAR window (start, size).
    pub pci_mmio: (u32, u32),
}

#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    #[error("the ACPI tables ({len} bytes) do not fit the BIOS area")]
    TooLarge { len: u64 },
    #[error("cannot write the ACPI {what} at {addr:#x}")]
    Write {
        what: &'static str,
        addr: u64,
        #[source]
        source: GuestMemoryError,
    },
}

fn bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

fn fadt(dsdt_addr: u64, pm_port: u16) -> Vec<u8> {
    let reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        pm_port.into(),
    );
    // Not HW_REDUCED_ACPI: on x86 that flag makes Linux drop the 8259 and
    // the PIT clockevent, and on this host (AMD, no kvm-clock in the guest,
    // no CPUID TSC leaf) the PIT is what the guest calibrates its TSC and
    // LAPIC timer against. The guest kernel is built ACPI_REDUCED_HARDWARE
    // only, so it still uses just the sleep control/status registers and
    // the GED; no PM1 block, GPE or fixed button exists (PWR_BUTTON and
    // SLP_BUTTON say so), and the SCI GSI names an unused ISA line.
    let mut b = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup);
    b.sci_int = SCI_GSI.into();
    b.reset_reg = reg;
    b.reset_value = RESET_VALUE;
    b.sleep_control_reg = reg;
    b.sleep_status_reg = reg;
    // IAPC_BOOT_ARCH: legacy devices and an 8042; no VGA, no MSI quirk.
    b.iapc_boot_arch = 0x3u16.into();
    bytes(&b.finalize())
}

/// Builds the tables and writes them at [`ACPI_START`]; returns the RSDP's
/// address (for `hvm_start_info.rsdp_paddr` or `boot_params.acpi_rsdp_addr`).
pub fn setup_acpi<M: GuestMemory + ?Sized>(
    mem: &M,
    cfg: &AcpiConfig<'_>,
) -> Result<GuestAddress, AcpiError> {
    let align = |a: u64| (a + 15) & !15;
    let rsdp_addr = ACPI_START;
    let xsdt_addr = align(rsdp_addr + Rsdp::len() as u64);
    // The XSDT has two entries (FADT, MADT): 36 + 16 bytes.
    let fadt_addr = align(xsdt_addr + 36 + 16);
    let dsdt_addr = align(fadt_addr + acpi_tables::fadt::FADT::len() as u64);
    let dsdt = dsdt::build(cfg, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let madt_addr = align(dsdt_addr + dsdt.len() as u64);
    let madt = madt::build(cfg.num_cpus, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let end = madt_addr + madt.len() as u64;
    if end > ACPI_END {
        return Err(AcpiError::TooLarge {
            len: end - ACPI_START,
        });
    }
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let tables: [(&'static str, u64, Vec<u8>); 5] = [
        ("RSDP", rsdp_addr, bytes(&Rsdp::new(OEM_ID, xsdt_addr))),
        ("XSDT", xsdt_addr, bytes(&xsdt)),
        ("FADT", fadt_addr, fadt(dsdt_addr, cfg.pm_port)),
        ("DSDT", dsdt_addr, dsdt),
        ("MADT", madt_addr, madt),
    ];
    for (what, addr, data) in tables {
        mem.write_slice(&data, GuestAddress(addr))
            .map_err(|source| AcpiError::Write { what, addr, source })?;
    }
    Ok(GuestAddress(rsdp_addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
    }

    fn table(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
        let mut len = [0u8; 4];
        mem.read_slice(&mut len, GuestAddress(addr + 4)).unwrap();
        let mut t = vec![0u8; u32::from_le_bytes(len) as usize];
        mem.read_slice(&mut t, GuestAddress(addr)).unwrap();
        t
    }

    #[test]
    fn tables_chain_and_checksum() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let intx = [PciIntx {
            device: 3,
            pin: 0,
            gsi: 16,
        }];
        let cfg = AcpiConfig {
            num_cpus: 2,
            pci_intx: &intx,
            pm_port: 0x600,
            ged_gsi: 5,
            pci_io: (0xc000, 0x4000),
            pci_mmio: (0xc000_0000, 0x3ec0_0000),
        };
        let rsdp = setup_acpi(&mem, &cfg).unwrap();
        let mut r = [0u8; 36];
        mem.read_slice(&mut r, rsdp).unwrap();
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(sum(&r[..20]), 0);
        assert_eq!(sum(&r), 0);
        let xsdt_addr = u64::from_le_bytes(r[24..32].try_into().unwrap());
        let xsdt = table(&mem, xsdt_addr);
        assert_eq!(&xsdt[..4], b"XSDT");
        assert_eq!(sum(&xsdt), 0);
        let fadt_addr = u64::from_le_bytes(xsdt[36..44].try_into().unwrap());
        let madt_addr = u64::from_le_bytes(xsdt[44..52].try_into().unwrap());
        let fadt = table(&mem, fadt_addr);
        assert_eq!(&fadt[..4], b"FACP");
        assert_eq!(sum(&fadt), 0);
        let flags = u32::from_le_bytes(fadt[112..116].try_into().unwrap());
        assert_eq!(flags & (1 << 20), 0, "not HW_REDUCED_ACPI (see fadt())");
        assert_ne!(flags & (1 << 4), 0, "no fixed power button");
        // Sleep control register: System I/O at the PM port.
        assert_eq!(fadt[244], 1);
        assert_eq!(
            u64::from_le_bytes(fadt[248..256].try_into().unwrap()),
            0x600
        );
        let dsdt_addr = u64::from_le_bytes(fadt[140..148].try_into().unwrap());
        let dsdt = table(&mem, dsdt_addr);
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(sum(&dsdt), 0);
        for name in [&b"_S5_"[..], b"PWRB", b"GED_", b"_PRT", b"PCI0"] {
            assert!(dsdt.windows(4).any(|w| w == name), "{name:?}");
        }
        let madt = table(&mem, madt_addr);
        assert_eq!(&madt[..4], b"APIC");
        assert_eq!(sum(&madt), 0);
        // header 44 + 2 local APICs (8) + IOAPIC (12) + override (10) + NMI (6)
        assert_eq!(madt.len(), 44 + 16 + 12 + 10 + 6);
    }
}
