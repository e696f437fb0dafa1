//! The MADT: one local APIC per vCPU (APIC ID = ACPI UID = index), the
//! IOAPIC (ID after the CPUs', as in the MP table), ISA IRQ 0 → GSI 2 (the
//! PIT on IOAPIC pin 2, as petrel's GSI routing wires it) and LINT1 as NMI
//! on every CPU. PCAT_COMPAT: the 8259 pair exists.

use acpi_tables::sdt::Sdt;

use crate::layout::{APIC_ADDR, IOAPIC_ADDR};

const PCAT_COMPAT: u32 = 1;
const TYPE_LOCAL_APIC: u8 = 0;
const TYPE_IOAPIC: u8 = 1;
const TYPE_SOURCE_OVERRIDE: u8 = 2;
const TYPE_LOCAL_APIC_NMI: u8 = 4;
const LOCAL_APIC_ENABLED: u32 = 1;
/// The PIT's pin on the IOAPIC.
const TIMER_GSI: u32 = 2;

pub(super) fn build(num_cpus: u8, oem: [u8; 6], table: [u8; 8], rev: u32) -> Vec<u8> {
    let mut madt = Sdt::new(*b"APIC", 44, 5, oem, table, rev);
    madt.write_u32(36, APIC_ADDR as u32);
    madt.write_u32(40, PCAT_COMPAT);
    let mut e = Vec::new();
    for id in 0..num_cpus {
        e.extend_from_slice(&[TYPE_LOCAL_APIC, 8, id, id]);
        e.extend_from_slice(&LOCAL_APIC_ENABLED.to_le_bytes());
    }
    e.extend_from_slice(&[TYPE_IOAPIC, 12, num_cpus, 0]);
    e.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    e.extend_from_slice(&0u32.to_le_bytes());
    // Bus 0 (ISA), IRQ 0, conforming polarity and trigger.
    e.extend_from_slice(&[TYPE_SOURCE_OVERRIDE, 10, 0, 0]);
    e.extend_from_slice(&TIMER_GSI.to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    // All processors (0xff), conforming flags, LINT1.
    e.extend_from_slice(&[TYPE_LOCAL_APIC_NMI, 6, 0xff, 0, 0, 1]);
    madt.append_slice(&e);
    madt.as_slice().to_vec()
}
