//! The event-manager subscriber of one worker: owns the pair's kick
//! eventfds and (through the [`QueuePair`]) the backend,
//! and turns readiness into datapath calls and interrupts.
//!
//! The backend fd is watched level-triggered: EPOLLIN while the guest has
//! rx buffers (removed when the datapath pauses, re-added on the next rx
//! kick) and EPOLLOUT only while a TX frame waits for room.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use tracing::{error, warn};
use vmm_sys_util::eventfd::EventFd;

use super::{CtrlQueue, NetContext, QueuePair, QueuePairError};
use crate::rate_limit::should_log;
use crate::virtio::VirtioInterruptType;
use crate::worker::WorkerHandler;

pub struct NetEpollHandler {
    ctx: Arc<NetContext>,
    pair: QueuePair,
    rx_kick: EventFd,
    tx_kick: EventFd,
    ctrl: Option<(CtrlQueue, EventFd)>,
    /// What the backend fd is registered for (empty: not registered).
    backend_interest: EventSet,
    rx_paused: bool,
    tx_blocked: bool,
    backend_dead: bool,
    stopped: bool,
}

impl NetEpollHandler {
    /// The handler of queue pair `pair` of the device activated as `ctx`,
    /// woken by the pair's kick eventfds; `ctrl` is the control queue and
    /// its kick when this worker serves it (pair 0).
    pub fn new(
        ctx: Arc<NetContext>,
        pair: QueuePair,
        rx_kick: EventFd,
        tx_kick: EventFd,
        ctrl: Option<(CtrlQueue, EventFd)>,
    ) -> Self {
        Self {
            ctx,
            pair,
            rx_kick,
            tx_kick,
            ctrl,
            backend_interest: EventSet::empty(),
            rx_paused: false,
            tx_blocked: false,
            backend_dead: false,
            stopped: false,
        }
    }

    /// Takes the handler apart (worker stop): the queue pair keeps the
    /// backend; rx chains parsed ahead go back to the avail ring.
    pub fn into_queue_pair(mut self) -> QueuePair {
        self.pair.return_rx_buffers();
        self.pair
    }

    fn backend_fd(&self) -> RawFd {
        self.pair.backend().as_raw_fd()
    }

    fn event_error(&self, what: &str, detail: &dyn std::fmt::Debug) {
        let n = self.ctx.metrics.count_event_error();
        if should_log(n) {
            error!(nic = %self.ctx.nic, pair = self.pair.index(), occurrences = n,
                "virtio-net: {what}: {detail:?}");
        }
    }

    fn signal(&self, queue: u16) {
        if let Err(e) = self
            .ctx
            .interrupt
            .trigger(VirtioInterruptType::Queue(queue))
        {
            self.event_error("cannot raise the queue interrupt", &e);
        }
    }

    fn broken(&self, e: QueuePairError) {
        warn!(nic = %self.ctx.nic, pair = self.pair.index(), error = %e,
            "virtio-net: queue broken by the driver, device needs reset");
        self.ctx.metrics.count_event_error();
        self.ctx.mark_needs_reset();
        if let Err(e) = self.ctx.interrupt.trigger(VirtioInterruptType::Config) {
            self.event_error("cannot raise the config interrupt", &e);
        }
    }

    /// Raises the queue's interrupt if the datapath asked for it; a batch
    /// that ran out of budget kicks its queue again, so it resumes after
    /// the other events of this round.
    fn after_batch(&self, queue: u16, notify: bool, budget_exhausted: bool, kick: &EventFd) {
        if notify {
            self.signal(queue);
        }
        if budget_exhausted {
            let _ = kick.write(1);
        }
    }

    fn run_rx(&mut self) {
        if self.pair.index() >= usize::from(self.ctx.active_pairs()) {
            // Disabled by VQ_PAIRS_SET: leave frames in the backend.
            self.rx_paused = true;
            return;
        }
        match self.pair.process_rx() {
            Ok(out) => {
                let queue = self.pair.rx_queue_index();
                self.after_batch(queue, out.notify, out.budget_exhausted, &self.rx_kick);
                self.rx_paused = out.paused;
                if out.backend_closed {
                    warn!(nic = %self.ctx.nic, pair = self.pair.index(), "virtio-net: backend closed");
                    self.backend_dead = true;
                }
            }
            Err(e) => {
                self.rx_paused = true;
                self.broken(e);
            }
        }
    }

    fn run_tx(&mut self) {
        match self.pair.process_tx() {
            Ok(out) => {
                let queue = self.pair.tx_queue_index();
                self.after_batch(queue, out.notify, out.budget_exhausted, &self.tx_kick);
                self.tx_blocked = out.backend_full;
            }
            Err(e) => {
                self.tx_blocked = false;
                self.broken(e);
            }
        }
    }

    fn run_ctrl(&mut self) {
        let Some((ctrl, _)) = self.ctrl.as_mut() else {
            return;
        };
        let index = ctrl.queue_index();
        match ctrl.process() {
            Ok(out) => {
                if let Some((_, kick)) = &self.ctrl {
                    self.after_batch(index, out.notify, out.budget_exhausted, kick);
                }
            }
            Err(e) => self.broken(e),
        }
    }

    fn wanted_backend_interest(&self) -> EventSet {
        let mut set = EventSet::empty();
        if self.backend_dead {
            return set;
        }
        if !self.rx_paused {
            set |= EventSet::IN;
        }
        if self.tx_blocked {
            set |= EventSet::OUT;
        }
        set
    }

    fn update_backend_interest(&mut self, ops: &mut EventOps) {
        let want = self.wanted_backend_interest();
        if want == self.backend_interest {
            return;
        }
        let fd = self.backend_fd();
        let result = if self.backend_interest.is_empty() {
            ops.add(Events::new_raw(fd, want))
        } else if want.is_empty() {
            ops.remove(Events::new_raw(fd, self.backend_interest))
        } else {
            ops.modify(Events::new_raw(fd, want))
        };
        match result {
            Ok(()) => self.backend_interest = want,
            Err(e) => self.event_error("cannot update the backend's epoll interest", &e),
        }
    }
}

impl MutEventSubscriber for NetEpollHandler {
    fn init(&mut self, ops: &mut EventOps) {
        // Registrations belong to the event loop, which is new here.
        self.backend_interest = EventSet::empty();
        let mut fds = vec![self.rx_kick.as_raw_fd(), self.tx_kick.as_raw_fd()];
        if let Some((_, kick)) = &self.ctrl {
            fds.push(kick.as_raw_fd());
        }
        for fd in fds {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                self.event_error("cannot register an eventfd", &e);
                // Without its fds the worker would never wake up again.
                self.stopped = true;
            }
        }
        self.update_backend_interest(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        let set = events.event_set();
        if fd == self.rx_kick.as_raw_fd() {
            let _ = self.rx_kick.read();
            self.run_rx();
        } else if fd == self.tx_kick.as_raw_fd() {
            let _ = self.tx_kick.read();
            self.run_tx();
        } else if self.ctrl.as_ref().is_some_and(|(_, k)| k.as_raw_fd() == fd) {
            if let Some((_, kick)) = &self.ctrl {
                let _ = kick.read();
            }
            self.run_ctrl();
        } else if fd == self.backend_fd() {
            if set.contains(EventSet::OUT) {
                self.run_tx();
            }
            if set.contains(EventSet::IN) {
                self.run_rx();
            } else if set.intersects(EventSet::ERROR | EventSet::HANG_UP) {
                self.event_error("backend error or hang-up", &set);
                self.backend_dead = true;
            }
        } else {
            self.event_error("event on an unknown fd", &fd);
        }
        self.update_backend_interest(ops);
    }
}

impl WorkerHandler for NetEpollHandler {
    const KIND: crate::sandbox::WorkerKind = crate::sandbox::WorkerKind::VirtioNetQueue;

    /// Registration failed: without its fds the worker would never wake.
    fn stopped(&self) -> bool {
        self.stopped
    }
}
