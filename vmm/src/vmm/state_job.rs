//! The run loop's half of snapshots and migrations ([`crate::migration`]):
//! the API's executor left a [`crate::migration::Job`]; this does it with
//! the VM's parts at hand and answers the request.

use std::time::Instant;

use tracing::info;

use super::Vmm;

/// A paused gate stops workers before their next event, not inside one:
/// time for one in flight to finish its writes into guest memory.
const WORKER_QUIESCE: std::time::Duration = std::time::Duration::from_millis(50);
use crate::api::VmState;
use crate::error::VmmError;
use crate::migration::{self, Job, JobKind, MigrationUrl};

impl Vmm {
    /// Does the waiting job; true when the VM moved to a migration target
    /// (the run ends). Otherwise the vCPUs are left as the VM must go on:
    /// running, parked (paused), or not started (a failed restore).
    pub(crate) fn state_job(&mut self) -> Result<bool, VmmError> {
        let Some(job) = self.jobs.take() else {
            return Ok(false);
        };
        match job.kind.clone() {
            JobKind::Snapshot(dir) => {
                // Paused: the vCPU threads are parked; stop them for their fds.
                let fds = self.vcpus.stop();
                let r = migration::snapshot_dir(&dir, &self.name, &self.vm, &self.pci, &fds);
                self.vcpu_fds = fds;
                // They park again at once: the pause flag stays set.
                self.start_vcpus()?;
                job.finish(r);
            }
            JobKind::Restore(dir) => {
                let r = migration::restore_dir(&dir, &self.vm, &self.pci, &self.vcpu_fds);
                if r.is_ok() {
                    // Cloud Hypervisor's restored VM is paused until vm.resume.
                    // No thread runs yet: this only sets the flag they park on.
                    self.vcpus.pauser().pause();
                    if let Some(g) = &self.pci.pause {
                        g.pause();
                    }
                    self.jobs.set_state(VmState::Paused);
                    self.booted
                        .store(true, std::sync::atomic::Ordering::Release);
                    self.start_vcpus()?;
                    migration::announce_guests(&self.pci);
                }
                job.finish(r);
            }
            JobKind::Receive(url) => {
                let r = migration::receive(&url, &self.vm, &self.pci, &self.vcpu_fds);
                if r.is_ok() {
                    self.jobs.set_state(VmState::Running);
                    self.booted
                        .store(true, std::sync::atomic::Ordering::Release);
                    self.start_vcpus()?;
                    migration::announce_guests(&self.pci);
                    info!("the migrated VM runs here now");
                }
                job.finish(r);
            }
            JobKind::Send(url) => return self.send_migration(job, &url),
        }
        Ok(false)
    }

    /// Pre-copy with the guest running, then stop-and-copy; on any failure
    /// before the target's `Ack` the guest runs on here.
    fn send_migration(&mut self, job: Job, url: &MigrationUrl) -> Result<bool, VmmError> {
        let mut sender = match migration::send(url, &self.name, &self.vm, self.num_vcpus) {
            Ok(s) => s,
            Err(e) => return Ok(ran_on(job, e)),
        };
        // KVM's dirty log sees only vCPU stores, not the NIC workers' writes
        // into guest memory: with NICs, the workers stop for the whole send.
        // (Without NICs there are no workers: nothing else writes RAM.)
        let gate = self
            .pci
            .pause
            .clone()
            .filter(|g| self.has_nics && !g.is_paused());
        if let Some(g) = &gate {
            g.pause();
            std::thread::sleep(WORKER_QUIESCE);
        }
        let resume_workers = |gate: &Option<devices::PauseGate>| {
            if let Some(g) = gate {
                if let Err(err) = g.resume() {
                    tracing::warn!(error = %err, "cannot wake the queue workers");
                }
            }
        };
        if let Err(e) = sender.precopy(&self.vm) {
            sender.abandon(&self.vm);
            resume_workers(&gate);
            return Ok(ran_on(job, e));
        }
        let stopped = Instant::now();
        let fds = self.vcpus.stop();
        match sender.finish(&self.name, &self.vm, &self.pci, &fds, stopped) {
            Ok(out) => {
                info!(
                    downtime_ms = out.downtime.as_millis() as u64,
                    total_ms = out.total.as_millis() as u64,
                    precopy_passes = out.passes,
                    bytes = out.bytes,
                    "migration complete"
                );
                eprintln!(
                    "petrel: migration complete: downtime {} ms, total {} ms, {} pre-copy passes, {} MiB sent",
                    out.downtime.as_millis(),
                    out.total.as_millis(),
                    out.passes,
                    out.bytes >> 20
                );
                job.finish(Ok(()));
                Ok(true)
            }
            Err(e) => {
                sender.abandon(&self.vm);
                self.vcpu_fds = fds;
                self.start_vcpus()?;
                resume_workers(&gate);
                Ok(ran_on(job, e))
            }
        }
    }
}

/// Answers a failed send: the guest runs on here.
fn ran_on(job: Job, e: migration::MigrationError) -> bool {
    info!("migration failed; the guest runs on here");
    job.finish(Err(e));
    false
}
