//! The pod bindings' host plumbing on a `pod-net` thread, started with the
//! process and joined when the NICs are attached.
//!
//! Setting up a pod binding is netlink work (bridge, tap, addresses) and,
//! for masquerade, one `nft` fork+exec (~12 ms here); none of it needs the
//! VM. Run serially after the VM's KVM set-up it was the longest start-up
//! phase; on a thread of its own it overlaps KVM_CREATE_VM, the irqchip,
//! the memory slot and the kernel load. Nothing changes in what the
//! bindings do or in which order: the thread opens every pod-bound NIC's
//! backend in plan order, as [`super::attach_nics`] did, and the devices
//! get their taps only after the join, so a masquerade NIC's nft table
//! (with its anti-spoof rules) is loaded before the guest's first
//! instruction can move a frame.
//!
//! Teardown: what the thread set up is undone by dropping what it returns
//! ([`net::PodNetService`] owns each binding's guard). [`PodSetup`] joins
//! the thread when dropped, so a start-up that fails while the thread runs
//! still waits for it and tears its bindings down before the process goes
//! on (or exits). The thread inherits the process's network namespace and
//! blocked signals (it is started after they are set), and it is joined
//! before any seccomp filter goes on, so it needs no thread class.

use std::thread::JoinHandle;
use std::time::Instant;

use super::AttachError;
use crate::backend::{self, BackendError, Opened};
use crate::host::{HostBackend, HostPlan};
use crate::plan::VmPlan;

/// Each pod-bound NIC's opened backend, in plan order, and the first
/// failure (after which no further NIC was set up).
#[derive(Default)]
struct Bound {
    opened: Vec<(String, Opened)>,
    failed: Option<(String, BackendError)>,
}

/// The `pod-net` thread, or nothing when no NIC has a pod binding.
pub struct PodSetup(Option<JoinHandle<Bound>>);

/// The opened pod backends, for [`super::attach_nics`] to take by name.
#[derive(Default)]
pub(super) struct PodBackends(Vec<(String, Opened)>);

impl PodBackends {
    pub(super) fn take(&mut self, nic: &str) -> Option<Opened> {
        let i = self.0.iter().position(|(n, _)| n == nic)?;
        Some(self.0.swap_remove(i).1)
    }
}

impl PodSetup {
    /// Starts setting up every pod-bound NIC of `plan`; none: no thread.
    pub fn start(plan: &VmPlan, host: &HostPlan) -> Result<Self, AttachError> {
        let nics: Vec<_> = plan
            .nics
            .iter()
            .filter_map(|nic| {
                let h = host.nic(&nic.name)?;
                matches!(h.backend, HostBackend::Pod(_)).then(|| (nic.clone(), h.clone()))
            })
            .collect();
        if nics.is_empty() {
            return Ok(Self(None));
        }
        let vm_name = plan.name.clone();
        std::thread::Builder::new()
            .name("pod-net".into())
            .spawn(move || {
                let start = Instant::now();
                let mut bound = Bound::default();
                for (nic, h) in &nics {
                    match backend::open(&vm_name, nic, h) {
                        Ok(opened) => bound.opened.push((nic.name.clone(), opened)),
                        Err(e) => {
                            bound.failed = Some((nic.name.clone(), e));
                            break;
                        }
                    }
                }
                tracing::info!(
                    setup_us = start.elapsed().as_micros() as u64,
                    nics = nics.len(),
                    "pod networks set up"
                );
                bound
            })
            .map(|h| Self(Some(h)))
            .map_err(AttachError::PodThread)
    }

    /// Waits for the thread: the opened backends, or the first NIC's error
    /// (what the others set up is undone first).
    pub(super) fn finish(mut self) -> Result<PodBackends, AttachError> {
        let Some(handle) = self.0.take() else {
            return Ok(PodBackends::default());
        };
        let bound = handle.join().map_err(|_| AttachError::PodThreadPanicked)?;
        match bound.failed {
            None => Ok(PodBackends(bound.opened)),
            Some((nic, source)) => {
                drop(bound.opened);
                Err(AttachError::Backend {
                    nic,
                    source: Box::new(source),
                })
            }
        }
    }
}

impl Drop for PodSetup {
    /// A start-up that ends before [`PodSetup::finish`]: wait for the
    /// thread and undo what it set up (its result drops here).
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            if handle.join().is_err() {
                tracing::error!("the pod network set-up thread panicked");
            }
        }
    }
}
