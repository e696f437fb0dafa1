//! Requests into a running VM from outside the vCPUs: the ACPI power button
//! and a reboot. A [`Lifecycle`] is cheap to clone and `Send`, so the
//! control API (or any thread) can hold one while [`crate::Vmm::run`] runs.

use std::sync::Arc;

use devices::acpi::PowerButton;

use crate::exit::{ExitReason, ExitSignal};

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("cannot raise the power button's GED interrupt")]
    PowerButton(#[source] std::io::Error),
}

#[derive(Clone)]
pub struct Lifecycle {
    exit: Arc<ExitSignal>,
    button: Arc<PowerButton>,
}

impl Lifecycle {
    pub(crate) fn new(exit: Arc<ExitSignal>, button: Arc<PowerButton>) -> Self {
        Self { exit, button }
    }

    /// Presses the ACPI power button: an ACPI guest shuts down (the run then
    /// ends with [`ExitReason::GuestShutdown`]); one that ignores the
    /// button keeps running.
    pub fn power_button(&self) -> Result<(), LifecycleError> {
        self.button.press().map_err(LifecycleError::PowerButton)
    }

    /// Resets the VM in place and boots the guest again (networking kept),
    /// whatever `--on-guest-reset` says.
    pub fn reboot(&self) {
        self.exit.request(ExitReason::RebootRequested);
    }
}
