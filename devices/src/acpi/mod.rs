//! The hardware-reduced ACPI platform devices: the sleep control/status and
//! reset register ([`AcpiPm`], where a guest `poweroff` writes S5 and an
//! ACPI reset writes the reset value) and the GED power button
//! ([`PowerButton`], an edge on the GED's interrupt that the DSDT turns into
//! a PNP0C0C notify). The tables themselves are `arch::acpi`.

mod pm;
mod power_button;

pub use pm::{AcpiPm, PmEvents, ACPI_PM_LEN, ACPI_PM_PORT};
pub use power_button::{PowerButton, GED_GSI};
