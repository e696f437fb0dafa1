//! The GED power button: pressing it raises one edge on the GED's GSI
//! (an irqfd the VMM registered); the DSDT's `_EVT` notifies PNP0C0C, whose
//! driver reports KEY_POWER to the guest (acpid there powers off).

use std::io;

use vm_superio::Trigger;

use crate::legacy::EventFdTrigger;

/// The GED's interrupt: an ISA-range IOAPIC pin no legacy device uses.
pub const GED_GSI: u32 = 5;

#[derive(Debug)]
pub struct PowerButton {
    irq: EventFdTrigger,
}

impl PowerButton {
    pub fn new(irq: EventFdTrigger) -> Self {
        Self { irq }
    }

    /// One press: an edge on the GED interrupt.
    pub fn press(&self) -> io::Result<()> {
        tracing::info!("ACPI power button pressed");
        self.irq.trigger()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    #[test]
    fn press_raises_the_interrupt() {
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let b = PowerButton::new(EventFdTrigger::new(evt.try_clone().unwrap()));
        b.press().unwrap();
        assert_eq!(evt.read().unwrap(), 1);
    }
}
