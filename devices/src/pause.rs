//! A VM-wide pause gate for the device worker threads. The VMM pauses it
//! (after parking the vCPUs) and every gated [`crate::Worker`] stops taking
//! frames: before it dispatches the next event to its handler it checks one
//! atomic flag and, while it is set, blocks in `poll` on the gate's resume
//! eventfd and its own kill eventfd. The datapath stays lock-free: a
//! running worker pays one `Acquire` load per event.
//!
//! The resume eventfd is level-triggered on purpose: `resume` writes it and
//! nobody reads it until the next `pause`, so every parked worker wakes.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

struct Inner {
    paused: AtomicBool,
    resumed: EventFd,
}

/// Shared by the VMM and every gated worker; clones are the same gate.
#[derive(Clone)]
pub struct PauseGate(Arc<Inner>);

impl std::fmt::Debug for PauseGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PauseGate")
            .field("paused", &self.is_paused())
            .finish()
    }
}

impl PauseGate {
    pub fn new() -> io::Result<Self> {
        Ok(Self(Arc::new(Inner {
            paused: AtomicBool::new(false),
            resumed: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
        })))
    }

    pub fn is_paused(&self) -> bool {
        self.0.paused.load(Ordering::Acquire)
    }

    /// Gated workers stop before their next event. Called from one thread
    /// (the VMM's control thread) together with [`Self::resume`].
    pub fn pause(&self) {
        // Reset the resume event left over from the last resume (EAGAIN
        // when it is already zero).
        let _ = self.0.resumed.read();
        self.0.paused.store(true, Ordering::Release);
    }

    /// Wakes every parked worker.
    pub fn resume(&self) -> io::Result<()> {
        self.0.paused.store(false, Ordering::Release);
        self.0.resumed.write(1)
    }

    /// Blocks while the gate is paused; returns true when `kill` became
    /// readable instead (the worker is being stopped).
    pub(crate) fn wait(&self, kill: &EventFd) -> bool {
        while self.is_paused() {
            let mut fds = [
                libc::pollfd {
                    fd: self.0.resumed.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: kill.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a live array of two initialised pollfds and
            // its length is passed; both descriptors are owned eventfds
            // that outlive the call.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                // Cannot wait: run on rather than spin or hang.
                return false;
            }
            if fds[1].revents & libc::POLLIN != 0 {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_resume_and_kill_wake_the_waiter() {
        let gate = PauseGate::new().unwrap();
        let kill = EventFd::new(EFD_NONBLOCK).unwrap();
        assert!(!gate.wait(&kill), "not paused: returns at once");
        gate.pause();
        assert!(gate.is_paused());
        kill.write(1).unwrap();
        assert!(gate.wait(&kill), "kill ends the wait");
        let _ = kill.read();
        gate.resume().unwrap();
        assert!(!gate.wait(&kill));
        // Pausing again clears the old resume event.
        gate.pause();
        assert!(gate.is_paused());
        gate.resume().unwrap();
        assert!(!gate.is_paused());
    }
}
