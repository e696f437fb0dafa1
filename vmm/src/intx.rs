//! Level-triggered PCI INTx lines on IOAPIC pins 16–23, as KVM irqfds with a
//! resample eventfd: KVM lowers the line when the guest EOIs the interrupt
//! and signals the resample fd; the control loop then raises it again if the
//! device still holds it asserted. This is how an e1000's ICR & IMS level
//! reaches the guest without a VMM thread per interrupt.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::irq::{GsiRouting, IrqError};

/// IOAPIC pins handed to PCI INTx, one per device.
pub const INTX_FIRST_GSI: u32 = 16;
pub const INTX_LAST_GSI: u32 = 23;

pub struct KvmIntx {
    gsi: u32,
    trigger: EventFd,
    resample: EventFd,
    asserted: AtomicBool,
}

impl KvmIntx {
    pub fn new(routing: &GsiRouting, gsi: u32) -> Result<Arc<Self>, IrqError> {
        let trigger = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(IrqError::EventFd)?;
        let resample = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(IrqError::EventFd)?;
        routing
            .vm()
            .register_irqfd_with_resample(&trigger, &resample, gsi)
            .map_err(|source| IrqError::Irqfd { gsi, source })?;
        Ok(Arc::new(Self {
            gsi,
            trigger,
            resample,
            asserted: AtomicBool::new(false),
        }))
    }

    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    pub fn resample_fd(&self) -> &EventFd {
        &self.resample
    }

    /// Called by the control loop when the guest EOIs the line.
    pub fn on_resample(&self) {
        let _ = self.resample.read();
        if self.asserted.load(Ordering::Acquire) {
            let _ = self.trigger.write(1);
        }
    }
}

impl devices::pci::IntxLine for KvmIntx {
    fn set_level(&self, asserted: bool) {
        let was = self.asserted.swap(asserted, Ordering::AcqRel);
        if asserted && !was {
            if let Err(e) = self.trigger.write(1) {
                tracing::warn!(gsi = self.gsi, error = %e, "cannot raise INTx");
            }
        }
    }
}
