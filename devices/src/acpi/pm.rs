//! One I/O port that the FADT names as the sleep control register, the
//! sleep status register and the reset register (Cloud Hypervisor's
//! `AcpiShutdownDevice`). Writing SLP_EN with SLP_TYP = 5 (`_S5`) is a
//! power-off, the reset value a reset; the VMM decides what each means.

use tracing::info;

use crate::BusDevice;

/// The port (free on a PC: between the ISA devices and the PCI I/O window).
pub const ACPI_PM_PORT: u64 = 0x600;
pub const ACPI_PM_LEN: u64 = 1;

const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0x7;
const S5: u8 = 5;
const RESET_VALUE: u8 = 1;
/// Sleep status: WAK_STS, so a guest polling for wake-up sees it at once.
const WAK_STS: u8 = 1 << 7;

/// Where the guest's requests go.
pub trait PmEvents: Send {
    /// The guest entered S5 (ACPI power-off).
    fn shutdown(&self);
    /// The guest wrote the FADT's reset value.
    fn reset(&self);
}

pub struct AcpiPm {
    events: Box<dyn PmEvents>,
}

impl AcpiPm {
    pub fn new(events: Box<dyn PmEvents>) -> Self {
        Self { events }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = WAK_STS;
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else {
            return;
        };
        if v == RESET_VALUE {
            info!("ACPI reset register written");
            self.events.reset();
        } else if v & SLP_EN != 0 && (v >> SLP_TYP_SHIFT) & SLP_TYP_MASK == S5 {
            info!("guest entered ACPI S5 (power-off)");
            self.events.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Default, Clone)]
    struct Seen(Arc<Mutex<Vec<&'static str>>>);

    impl PmEvents for Seen {
        fn shutdown(&self) {
            self.0.lock().unwrap().push("shutdown");
        }
        fn reset(&self) {
            self.0.lock().unwrap().push("reset");
        }
    }

    #[test]
    fn s5_and_reset_are_told_apart() {
        let seen = Seen::default();
        let mut pm = AcpiPm::new(Box::new(seen.clone()));
        pm.write(0, &[(5 << 2) | (1 << 5)]);
        pm.write(0, &[1]);
        // S5 without SLP_EN, another sleep type, and an empty write: ignored.
        pm.write(0, &[5 << 2]);
        pm.write(0, &[(3 << 2) | (1 << 5)]);
        pm.write(0, &[]);
        assert_eq!(*seen.0.lock().unwrap(), vec!["shutdown", "reset"]);
        let mut b = [0u8; 2];
        pm.read(0, &mut b);
        assert_eq!(b, [WAK_STS, 0]);
    }
}
