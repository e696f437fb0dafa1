//! How a run ends. Whoever sees the end first (a vCPU, the i8042 reset, a
//! signal) records why and writes the one exit eventfd the control loop waits
//! on; later reasons are ignored.

use std::sync::Mutex;

use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest reset the machine (reboot, `panic=-1` reset, and a
    /// poweroff without ACPI): `--on-guest-reset` decides what follows.
    GuestReset,
    /// The guest powered off through ACPI (S5).
    GuestShutdown,
    /// The VMM was asked to reboot the guest ([`crate::Lifecycle::reboot`]):
    /// the VM restarts in the same process whatever `--on-guest-reset` says.
    RebootRequested,
    /// The console showed a kernel panic before the reset.
    GuestPanic(String),
    /// SIGTERM or SIGINT asked petrel to stop the VM.
    Signal(i32),
    /// KVM_EXIT_SHUTDOWN: triple fault.
    TripleFault { vcpu: u8 },
    /// KVM_EXIT_INTERNAL_ERROR, e.g. an instruction this host cannot emulate.
    InternalError {
        vcpu: u8,
        suberror: u32,
        data: Vec<u64>,
    },
    /// KVM_EXIT_FAIL_ENTRY.
    FailEntry { vcpu: u8, reason: u64 },
    /// KVM_RUN returned an error or an exit petrel does not handle.
    VcpuFailed { vcpu: u8, error: String },
    /// `vm.shutdown` or `vmm.shutdown` through the API.
    ApiShutdown,
    /// The passt process of NIC `nic` exited while the guest ran.
    NetworkHelperExited { nic: String, status: String },
    /// A petrel thread panicked ([`crate::panic_hook`]).
    ThreadPanicked { thread: String },
    /// Not an end: the API left a snapshot or migration job for the run
    /// loop ([`crate::migration::JobSlot`]).
    StateJob,
    /// The VM moved to the migration target, which runs it now.
    MigratedOut,
}

impl ExitReason {
    /// True when the VM stopped the way it was asked to.
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            ExitReason::GuestReset
                | ExitReason::GuestShutdown
                | ExitReason::RebootRequested
                | ExitReason::Signal(_)
                | ExitReason::ApiShutdown
                | ExitReason::MigratedOut
        )
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::GuestReset => write!(f, "the guest reset the machine"),
            ExitReason::NetworkHelperExited { nic, status } => write!(
                f,
                "interface {nic}: passt {status} while the guest ran (its messages are above)"
            ),
            ExitReason::GuestShutdown => write!(f, "the guest powered off (ACPI S5)"),
            ExitReason::RebootRequested => write!(f, "a reboot was requested"),
            ExitReason::GuestPanic(line) => write!(f, "the guest kernel panicked: {line}"),
            ExitReason::Signal(s) => write!(f, "stopped by signal {s}"),
            ExitReason::TripleFault { vcpu } => write!(
                f,
                "vCPU {vcpu}: the guest triple-faulted (KVM_EXIT_SHUTDOWN)"
            ),
            ExitReason::InternalError {
                vcpu,
                suberror,
                data,
            } => {
                write!(f, "vCPU {vcpu}: KVM internal error, suberror {suberror}")?;
                if *suberror == kvm_bindings::KVM_INTERNAL_ERROR_EMULATION {
                    write!(
                        f,
                        " (instruction emulation failed; the guest ran an instruction this host cannot emulate in ring 0)"
                    )?;
                }
                if !data.is_empty() {
                    let words: Vec<String> = data.iter().map(|d| format!("{d:#x}")).collect();
                    write!(f, "; data: {}", words.join(" "))?;
                }
                Ok(())
            }
            ExitReason::FailEntry { vcpu, reason } => write!(
                f,
                "vCPU {vcpu}: KVM could not enter the guest, hardware reason {reason:#x}"
            ),
            ExitReason::VcpuFailed { vcpu, error } => write!(f, "vCPU {vcpu}: {error}"),
            ExitReason::ApiShutdown => write!(f, "shut down through the API"),
            ExitReason::ThreadPanicked { thread } => write!(f, "petrel's thread {thread} panicked"),
            ExitReason::StateJob => write!(f, "a snapshot or migration was requested"),
            ExitReason::MigratedOut => write!(f, "the VM migrated to the target"),
        }
    }
}

pub struct ExitSignal {
    evt: EventFd,
    reason: Mutex<Option<ExitReason>>,
}

impl ExitSignal {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            evt: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
            reason: Mutex::new(None),
        })
    }

    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }

    /// Records `reason` unless one is already recorded, and wakes the
    /// control loop.
    pub fn request(&self, reason: ExitReason) {
        {
            let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(reason);
            }
        }
        if let Err(e) = self.evt.write(1) {
            tracing::error!(error = %e, "cannot signal the exit event");
        }
    }

    /// Forgets the recorded reason, for the next run after a VM reset.
    pub fn clear(&self) {
        let _ = self.evt.read();
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn reason(&self) -> Option<ExitReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
