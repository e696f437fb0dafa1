//! One transmit pass: a ring snapshot from the registers, a budgeted run
//! of [`TxState::process`], then TDH, the statistics registers and the
//! causes. The vCPU thread runs one pass per TDT (or TCTL) write; when
//! the guest posted more than one pass may do, the rx worker runs the
//! following passes (see `worker.rs`), so a single MMIO exit never holds
//! the device and backend locks for long.

use std::sync::Mutex;

use net_backend::FrameBackend;
use vm_memory::GuestMemoryMmap;

use super::reg_file::{Regs, Shared};
use super::regs::{self, ctrl, icr, tctl};
use super::tx::{TxOut, TxRing, TxState, TxStats, DESC_LEN};

/// What a pass needs; the device and the worker each hold the parts.
pub(crate) struct TxPass<'a> {
    pub shared: &'a Shared,
    pub backend: &'a Mutex<Box<dyn FrameBackend>>,
    pub mem: &'a GuestMemoryMmap,
    pub state: &'a Mutex<TxState>,
}

impl TxPass<'_> {
    /// Runs one pass; returns whether work is left for another one.
    ///
    /// The transmit state's lock is held for the whole pass, so passes of
    /// the vCPU thread and the worker never overlap (lock order: state,
    /// backend, registers).
    pub fn run(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (ring, vlan_tpid) = {
            let regs = self.shared.lock();
            if regs.get(regs::TCTL) & tctl::EN == 0 {
                return false;
            }
            let ring = TxRing {
                base: u64::from(regs.get(regs::TDBAH)) << 32 | u64::from(regs.get(regs::TDBAL)),
                len: regs.get(regs::TDLEN) / DESC_LEN as u32,
                head: regs.get(regs::TDH),
                tail: regs.get(regs::TDT),
            };
            let vlan = (regs.get(regs::CTRL) & ctrl::VME != 0).then(|| regs.get(regs::VET) as u16);
            (ring, vlan)
        };
        if ring.head == ring.tail && !state.has_pending_segments() {
            return false;
        }
        let mut stats = TxStats::default();
        let outcome = {
            let mut backend = self.backend.lock().unwrap_or_else(|e| e.into_inner());
            let gso = backend.accepts_gso();
            let mut out = TxOut {
                backend: backend.as_mut(),
                vlan_tpid,
                gso,
                stats: &mut stats,
            };
            state.process(self.mem, ring, &mut out)
        };
        let mut regs = self.shared.lock();
        regs.set(regs::TDH, outcome.head);
        apply_stats(&mut regs, &stats);
        let mut cause = 0;
        if outcome.wrote_back && regs.tx_written_back(!outcome.wrote_back_now) {
            cause |= icr::TXDW;
        }
        if outcome.head == ring.tail && !outcome.more {
            cause |= icr::TXQE;
        }
        if cause != 0 {
            regs.set_cause(cause);
            regs.update_irq(self.shared.irq.as_ref(), true);
        }
        outcome.more
    }
}

/// Adds a pass's counts to the statistics registers and device counters.
fn apply_stats(regs: &mut Regs, stats: &TxStats) {
    let frames = u32::try_from(stats.frames).unwrap_or(u32::MAX);
    regs.add_stat(regs::GPTC, frames);
    regs.add_stat(regs::TPT, frames);
    let fcs_bytes = stats.bytes.saturating_add(4 * stats.frames);
    regs.add_stat64(regs::GOTCL, fcs_bytes);
    regs.add_stat64(regs::TOTL, fcs_bytes);
    regs.add_stat(regs::MPTC, stats.multicast as u32);
    regs.add_stat(regs::BPTC, stats.broadcast as u32);
    regs.add_stat(regs::TSCTC, stats.tso_contexts as u32);
    for (i, &n) in stats.sizes.iter().enumerate() {
        regs.add_stat(regs::PTC64 + 4 * i as u64, n as u32);
    }
    let c = &mut regs.counters;
    c.tx_frames += stats.frames;
    c.tx_bytes += stats.bytes;
    c.tx_dropped += stats.dropped;
    c.tx_ring_errors += stats.ring_errors;
    c.backend_errors += stats.backend_errors;
}
