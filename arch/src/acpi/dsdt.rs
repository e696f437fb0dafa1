//! The DSDT in AML: the PCI root bridge (bus 0, the config ports, the BAR
//! windows, `_PRT` for INTx), the GED (ACPI0013) whose interrupt notifies
//! the power button, the PNP0C0C power button itself and `_S5`.

use acpi_tables::aml::{
    self, AddressSpace, AddressSpaceCacheable, Device, EISAName, Interrupt, Method, Name, Notify,
    Package, Path, ResourceTemplate, IO,
};
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;

use super::{AcpiConfig, S5_SLEEP_TYPE};

/// Notify value of a power-button press (ACPI 6.5 §5.6.6).
const NOTIFY_BUTTON_PRESSED: u8 = 0x80;

fn pci_root(cfg: &AcpiConfig<'_>, sink: &mut Vec<u8>) {
    let (io_start, io_size) = cfg.pci_io;
    let (mmio_start, mmio_size) = cfg.pci_mmio;
    let bus = AddressSpace::<u16>::new_bus_number(0, 0);
    let cfg_ports = IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = AddressSpace::<u16>::new_io(0, 0xcf7, None);
    let io_high =
        AddressSpace::<u16>::new_io(0xd00, io_start.saturating_add(io_size - 1).max(0xd00), None);
    let mmio = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        mmio_start,
        mmio_start + (mmio_size - 1),
        None,
    );
    let crs = ResourceTemplate::new(vec![&bus, &cfg_ports, &io_low, &io_high, &mmio]);
    // _PRT: one (address, pin, source, GSI) package per INTx line.
    let routes: Vec<(u32, u8, u32)> = cfg
        .pci_intx
        .iter()
        .map(|r| {
            (
                (u32::from(r.device) << 16) | 0xffff,
                r.pin,
                u32::from(r.gsi),
            )
        })
        .collect();
    let entries: Vec<Package<'_>> = routes
        .iter()
        .map(|(addr, pin, gsi)| Package::new(vec![addr, pin, &aml::ZERO, gsi]))
        .collect();
    let prt = Package::new(entries.iter().map(|p| p as &dyn Aml).collect());
    let hid = EISAName::new("PNP0A08");
    let cid = EISAName::new("PNP0A03");
    let names = [
        Name::new("_HID".into(), &hid),
        Name::new("_CID".into(), &cid),
        Name::new("_ADR".into(), &aml::ZERO),
        Name::new("_SEG".into(), &aml::ZERO),
        Name::new("_UID".into(), &aml::ZERO),
        Name::new("_BBN".into(), &aml::ZERO),
        Name::new("_CRS".into(), &crs),
        Name::new("_PRT".into(), &prt),
    ];
    Device::new(
        "_SB_.PCI0".into(),
        names.iter().map(|n| n as &dyn Aml).collect(),
    )
    .to_aml_bytes(sink);
}

fn power_button(cfg: &AcpiConfig<'_>, sink: &mut Vec<u8>) {
    let hid = EISAName::new("PNP0C0C");
    Device::new(
        "_SB_.PWRB".into(),
        vec![
            &Name::new("_HID".into(), &hid),
            &Name::new("_UID".into(), &aml::ZERO),
        ],
    )
    .to_aml_bytes(sink);
    // The GED: any edge on its interrupt is a button press.
    let irq = Interrupt::new(true, true, false, false, cfg.ged_gsi);
    let crs = ResourceTemplate::new(vec![&irq]);
    let pwrb = Path::new("\\_SB_.PWRB");
    let notify = Notify::new(&pwrb, &NOTIFY_BUTTON_PRESSED);
    let evt = Method::new("_EVT".into(), 1, true, vec![&notify]);
    Device::new(
        "_SB_.GED_".into(),
        vec![
            &Name::new("_HID".into(), &"ACPI0013"),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new("_CRS".into(), &crs),
            &evt,
        ],
    )
    .to_aml_bytes(sink);
}

/// The DSDT's bytes, header and checksum included.
pub(super) fn build(cfg: &AcpiConfig<'_>, oem: [u8; 6], table: [u8; 8], rev: u32) -> Vec<u8> {
    let mut body = Vec::new();
    pci_root(cfg, &mut body);
    power_button(cfg, &mut body);
    Name::new("_S5_".into(), &Package::new(vec![&S5_SLEEP_TYPE])).to_aml_bytes(&mut body);
    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, oem, table, rev);
    dsdt.append_slice(&body);
    dsdt.as_slice().to_vec()
}
