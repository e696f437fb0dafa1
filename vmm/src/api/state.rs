//! The VM state machine, Created → Running ⇄ Paused → Shutdown, as a pure
//! function of the state and the action: what the control loop must do,
//! or Cloud Hypervisor's error for an action the state does not allow.

use super::request::{ActionError, VmState, VmmAction};

/// What executing an allowed action takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Answer with the state; nothing changes.
    Report,
    /// Park the vCPUs and the workers, then Paused.
    Pause,
    /// Release them, then Running.
    Resume,
    /// Stop the VM and the VMM (exit 0), then Shutdown.
    Shutdown,
    /// A lifecycle action the other half of issue 14 implements.
    Lifecycle,
    /// A snapshot, restore or migration: handed to the run loop
    /// ([`crate::migration`]).
    StateJob,
}

/// The step `action` takes in `state`, or why it is refused.
pub fn step(state: VmState, action: VmmAction) -> Result<Step, ActionError> {
    use VmState::{Created, Paused, Running};
    let refuse = Err(ActionError::InvalidState {
        action: action.name(),
        state,
    });
    match (action, state) {
        (VmmAction::Info, _) => Ok(Step::Report),
        (VmmAction::Pause, Running) => Ok(Step::Pause),
        (VmmAction::Resume, Paused) => Ok(Step::Resume),
        (VmmAction::Reboot | VmmAction::PowerButton, Running | Paused) => Ok(Step::Lifecycle),
        (VmmAction::ShutdownVm, Created | Running | Paused) => Ok(Step::Shutdown),
        (VmmAction::ShutdownVmm, _) => Ok(Step::Shutdown),
        // Cloud Hypervisor snapshots only a paused VM; restoring and
        // receiving need one that never booted (`--incoming`).
        (VmmAction::Snapshot, Paused) => Ok(Step::StateJob),
        (VmmAction::SendMigration, Running | Paused) => Ok(Step::StateJob),
        (VmmAction::Restore | VmmAction::ReceiveMigration, Created) => Ok(Step::StateJob),
        _ => refuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use VmState::*;
        assert_eq!(step(Running, VmmAction::Pause), Ok(Step::Pause));
        assert_eq!(step(Paused, VmmAction::Resume), Ok(Step::Resume));
        assert_eq!(step(Paused, VmmAction::Info), Ok(Step::Report));
        assert_eq!(step(Paused, VmmAction::ShutdownVmm), Ok(Step::Shutdown));
        assert_eq!(step(Shutdown, VmmAction::ShutdownVmm), Ok(Step::Shutdown));
        assert_eq!(step(Running, VmmAction::Reboot), Ok(Step::Lifecycle));
        assert_eq!(step(Paused, VmmAction::Snapshot), Ok(Step::StateJob));
        assert_eq!(step(Created, VmmAction::Restore), Ok(Step::StateJob));
        assert_eq!(step(Running, VmmAction::SendMigration), Ok(Step::StateJob));
        for (state, action) in [
            (Paused, VmmAction::Pause),
            (Running, VmmAction::Resume),
            (Created, VmmAction::Pause),
            (Shutdown, VmmAction::Resume),
            (Shutdown, VmmAction::ShutdownVm),
            (Created, VmmAction::PowerButton),
            (Running, VmmAction::Snapshot),
            (Running, VmmAction::ReceiveMigration),
            (Created, VmmAction::SendMigration),
        ] {
            assert!(
                matches!(step(state, action), Err(ActionError::InvalidState { .. })),
                "{action:?} in {state:?}"
            );
        }
    }
}
