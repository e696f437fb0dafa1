//! The sending side: connect, send the header, pre-copy guest memory while
//! the guest runs (KVM dirty logging: a full pass, then passes over what
//! the guest dirtied, until that is small or stops shrinking), then — with
//! the vCPUs stopped by the caller — the last dirty pages, the state and
//! `Complete`. The target's `Ack` is the commit point: any error before it
//! leaves the source able to resume.

use std::time::{Duration, Instant};

use kvm_ioctls::VcpuFd;
use tracing::info;

use super::format::Header;
use super::url::Conn;
use super::{memory, transport, MigrationError, MigrationUrl, VmSnapshot};
use crate::pci_setup::PciSetup;
use crate::vm::Vm;

/// Pre-copy stops once a pass has less than this left to send.
const DIRTY_TARGET_BYTES: u64 = 4 << 20;
/// And after this many passes, however much is dirty.
const MAX_PASSES: u32 = 8;

/// A migration in progress.
pub struct Sender {
    conn: Conn,
    started: Instant,
    pub bytes: u64,
    pub passes: u32,
    logging: bool,
}

/// What a finished migration reports.
#[derive(Debug, Clone)]
pub struct SendOutcome {
    /// From stopping the vCPUs to the target's `Ack`.
    pub downtime: Duration,
    pub total: Duration,
    pub passes: u32,
    pub bytes: u64,
}

/// Starts a migration to `url`: the target must accept the header.
pub fn send(
    url: &MigrationUrl,
    name: &str,
    vm: &Vm,
    vcpus: usize,
) -> Result<Sender, MigrationError> {
    let started = Instant::now();
    let mut conn = url.connect()?;
    let header = serde_json::to_vec(&Header::of(name, vm, vcpus))?;
    transport::send(&mut conn, transport::HEADER, &[&header])?;
    transport::expect_ack(&mut conn)?;
    Ok(Sender {
        conn,
        started,
        bytes: 0,
        passes: 0,
        logging: false,
    })
}

impl Sender {
    fn send_ranges(
        &mut self,
        vm: &Vm,
        ranges: &[memory::Range],
        skip_zero: bool,
    ) -> Result<(), MigrationError> {
        let conn = &mut self.conn;
        let mut bytes = 0u64;
        memory::for_each_chunk(&vm.mem, ranges, skip_zero, |gpa, data| {
            bytes += data.len() as u64;
            transport::send_memory(conn, gpa, data)
        })?;
        self.bytes += bytes;
        Ok(())
    }

    /// Pre-copy while the guest runs.
    pub fn precopy(&mut self, vm: &Vm) -> Result<(), MigrationError> {
        memory::set_dirty_logging(&vm.fd, &vm.mem, true)?;
        self.logging = true;
        // The first pass sends everything not zero; the target zeroed its RAM.
        self.send_ranges(vm, &memory::all_ranges(&vm.mem), true)?;
        self.passes = 1;
        let mut last = u64::MAX;
        while self.passes < MAX_PASSES {
            let dirty = memory::dirty_ranges(&vm.fd, &vm.mem)?;
            let n = memory::total(&dirty);
            info!(pass = self.passes, dirty_bytes = n, "pre-copy pass");
            self.send_ranges(vm, &dirty, false)?;
            self.passes += 1;
            if n < DIRTY_TARGET_BYTES || n >= last {
                break;
            }
            last = n;
        }
        Ok(())
    }

    /// Stop-and-copy: the vCPUs are stopped (`vcpus` are their fds) and the
    /// devices quiet. Returns at the target's `Ack`.
    pub fn finish(
        &mut self,
        name: &str,
        vm: &Vm,
        pci: &PciSetup,
        vcpus: &[VcpuFd],
        stopped: Instant,
    ) -> Result<SendOutcome, MigrationError> {
        let dirty = if self.logging {
            memory::dirty_ranges(&vm.fd, &vm.mem)?
        } else {
            memory::all_ranges(&vm.mem)
        };
        let last = memory::total(&dirty);
        self.send_ranges(vm, &dirty, !self.logging)?;
        let state = VmSnapshot::capture(name, vm, pci, vcpus)?.to_json()?;
        transport::send(&mut self.conn, transport::STATE, &[&state])?;
        transport::send(&mut self.conn, transport::COMPLETE, &[])?;
        transport::expect_ack(&mut self.conn)?;
        let out = SendOutcome {
            downtime: stopped.elapsed(),
            total: self.started.elapsed(),
            passes: self.passes,
            bytes: self.bytes,
        };
        info!(
            last_pass_bytes = last,
            state_bytes = state.len(),
            "stop-and-copy sent"
        );
        Ok(out)
    }

    /// After a failure: dirty logging off again (it slows the guest).
    pub fn abandon(self, vm: &Vm) {
        if self.logging {
            if let Err(e) = memory::set_dirty_logging(&vm.fd, &vm.mem, false) {
                tracing::warn!(error = %e, "cannot turn dirty logging off");
            }
        }
    }
}
