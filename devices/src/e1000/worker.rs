//! The receive handler: run by one [`crate::Worker`] per device, named
//! "{id}-rx", over the backend fd (readable) and the rx kick eventfd
//! (written on RDT/RCTL writes and resets); the worker adds its kill
//! eventfd. It also continues transmit passes that ran out of budget on
//! the vCPU thread (the tx kick eventfd), one pass per wake-up, kicking
//! itself again while work is left so receive and stop requests interleave.
//! And it watches the interrupt moderation timer (ITR and the delay
//! timers, see `moderation.rs`), which raises what waited.
//!
//! The backend fd is watched only while the ring may have room: when a
//! frame does not fit, the worker keeps it and stops watching the backend
//! until the driver writes RDT (frames wait in the backend instead of being
//! dropped). While RCTL.EN is clear, frames are drained and dropped, as a
//! disabled receiver does.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use net_backend::FrameBackend;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::reg_file::Shared;
use super::rx::{self, RxResult};
use super::tx::{fold, ones_sum, TxState};
use super::tx_pass::TxPass;
use super::VNET_HDR_LEN;
use crate::frame::MAX_BUFFER_LEN;
use crate::rate_limit::should_log;
use crate::worker::WorkerHandler;

/// Frames handled per wake-up before the loop looks at other events.
pub const RX_BATCH: usize = 64;

pub(crate) struct RxHandler {
    id: String,
    shared: Arc<Shared>,
    backend: Arc<Mutex<Box<dyn FrameBackend>>>,
    backend_fd: RawFd,
    mem: GuestMemoryMmap,
    kick: EventFd,
    /// The interrupt moderation timer (owned by the register file).
    timer_fd: RawFd,
    /// The transmit state and the eventfd that asks for another pass.
    tx: Option<(Arc<Mutex<TxState>>, EventFd)>,
    buf: Vec<u8>,
    /// Length (header included) of a frame in `buf` waiting for ring room.
    pending: Option<usize>,
    paused: bool,
    backend_dead: bool,
    watching_backend: bool,
    stopped: bool,
}

impl RxHandler {
    pub fn new(
        id: String,
        shared: Arc<Shared>,
        backend: Arc<Mutex<Box<dyn FrameBackend>>>,
        mem: GuestMemoryMmap,
        kick: EventFd,
    ) -> Self {
        let backend_fd = backend
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_raw_fd();
        let timer_fd = shared.lock().timer_fd();
        Self {
            id,
            timer_fd,
            shared,
            backend,
            backend_fd,
            mem,
            kick,
            tx: None,
            buf: vec![0; MAX_BUFFER_LEN],
            pending: None,
            paused: false,
            backend_dead: false,
            watching_backend: false,
            stopped: false,
        }
    }

    /// Also continues transmit passes when `kick` is written.
    pub fn with_tx(mut self, state: Arc<Mutex<TxState>>, kick: EventFd) -> Self {
        self.tx = Some((state, kick));
        self
    }

    /// One transmit pass; asks for another while work is left.
    fn run_tx(&mut self) {
        let Some((state, kick)) = &self.tx else {
            return;
        };
        let _ = kick.read();
        let pass = TxPass {
            shared: &self.shared,
            backend: &self.backend,
            mem: &self.mem,
            state,
        };
        if pass.run() {
            if let Err(e) = kick.write(1) {
                tracing::warn!(id = %self.id, error = %e, "e1000: cannot re-kick tx");
            }
        }
    }

    /// Moves frames from the backend to the ring until the backend is
    /// empty, the ring is full or the batch is done.
    fn run_rx(&mut self) {
        let mut delivered = false;
        for _ in 0..RX_BATCH {
            let len = match self.pending.take() {
                Some(len) => len,
                None => {
                    let read = self
                        .backend
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .read_frame(&mut self.buf);
                    match read {
                        Ok(0) => {
                            tracing::warn!(id = %self.id, "e1000: backend closed");
                            self.backend_dead = true;
                            break;
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let mut regs = self.shared.lock();
                            regs.counters.backend_errors += 1;
                            if should_log(regs.counters.backend_errors) {
                                tracing::warn!(id = %self.id, error = %e, "e1000: backend read failed");
                            }
                            break;
                        }
                    }
                }
            };
            let complete = complete_frame(self.buf.get_mut(..len).unwrap_or_default());
            let frame = match self.buf.get(VNET_HDR_LEN..len) {
                Some(frame) if complete => frame,
                _ => {
                    self.shared.lock().counters.rx_dropped += 1;
                    continue;
                }
            };
            // Checks and a ring snapshot under the lock, the copy and the
            // FCS without it, then RDH and the causes under it again.
            let plan = {
                let mut regs = self.shared.lock();
                match rx::prepare(&mut regs, frame) {
                    Ok(plan) => plan,
                    Err(RxResult::NoRoom) => {
                        self.pending = Some(len);
                        self.paused = true;
                        break;
                    }
                    Err(RxResult::Filtered) => {
                        regs.counters.rx_filtered += 1;
                        continue;
                    }
                    Err(_) => {
                        regs.counters.rx_dropped += 1;
                        continue;
                    }
                }
            };
            let written = rx::write(&self.mem, frame, &plan);
            let mut regs = self.shared.lock();
            match rx::publish(&mut regs, frame, &plan, &written) {
                RxResult::Delivered => delivered = true,
                _ => regs.counters.rx_dropped += 1,
            }
        }
        if delivered {
            let irq = self.shared.irq.clone();
            self.shared.lock().rx_delivered(irq.as_ref());
        }
    }

    fn update_interest(&mut self, ops: &mut EventOps) {
        let want = !self.paused && !self.backend_dead;
        if want == self.watching_backend {
            return;
        }
        let ev = Events::new_raw(self.backend_fd, EventSet::IN);
        let result = if want { ops.add(ev) } else { ops.remove(ev) };
        match result {
            Ok(()) => self.watching_backend = want,
            Err(e) => {
                tracing::error!(id = %self.id, error = ?e, "e1000: cannot update the backend's epoll interest")
            }
        }
    }
}

impl MutEventSubscriber for RxHandler {
    fn init(&mut self, ops: &mut EventOps) {
        // A new event loop (the worker may be restarted): nothing is
        // registered in it yet.
        self.watching_backend = false;
        let mut fds = vec![self.kick.as_raw_fd(), self.timer_fd];
        if let Some((_, kick)) = &self.tx {
            fds.push(kick.as_raw_fd());
        }
        for fd in fds {
            if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
                tracing::error!(id = %self.id, error = ?e, "e1000: cannot register an eventfd");
                self.stopped = true;
            }
        }
        self.update_interest(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.kick.as_raw_fd() {
            let _ = self.kick.read();
            self.paused = false;
            self.run_rx();
        } else if fd == self.timer_fd {
            let irq = self.shared.irq.clone();
            self.shared.lock().on_timer(irq.as_ref());
        } else if self.tx.as_ref().is_some_and(|(_, k)| k.as_raw_fd() == fd) {
            self.run_tx();
        } else if fd == self.backend_fd {
            let set = events.event_set();
            if set.contains(EventSet::IN) {
                self.run_rx();
            } else if set.intersects(EventSet::ERROR | EventSet::HANG_UP) {
                tracing::warn!(id = %self.id, "e1000: backend error or hang-up");
                self.backend_dead = true;
            }
        }
        self.update_interest(ops);
    }
}

/// virtio_net_hdr flags: the checksum is partial.
const VNET_HDR_F_NEEDS_CSUM: u8 = 1;

/// Makes a backend frame (virtio-net header included) one the driver can
/// take: a partial checksum (which a backend with offloads off should not
/// produce) is completed; GSO frames cannot be and are refused.
fn complete_frame(buf: &mut [u8]) -> bool {
    let Some((hdr, frame)) = buf.split_at_mut_checked(VNET_HDR_LEN) else {
        return false;
    };
    if hdr[1] != 0 {
        return false; // gso_type
    }
    if hdr[0] & VNET_HDR_F_NEEDS_CSUM == 0 {
        return true;
    }
    let start = usize::from(u16::from_le_bytes([hdr[6], hdr[7]]));
    let field = start + usize::from(u16::from_le_bytes([hdr[8], hdr[9]]));
    if start >= frame.len() || field + 2 > frame.len() {
        return false;
    }
    let sum = !fold(ones_sum(&frame[start..]));
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    true
}

impl WorkerHandler for RxHandler {
    const KIND: crate::sandbox::WorkerKind = crate::sandbox::WorkerKind::E1000Rx;

    /// The kick eventfd could not be registered.
    fn stopped(&self) -> bool {
        self.stopped
    }
}
