//! The one worker-thread loop of the device models: a named thread,
//! optionally pinned to host CPUs, running its own event manager over one
//! handler plus a kill eventfd. [`Worker`] owns the thread: stopping it
//! (explicitly or on drop) writes the kill eventfd and joins, and an
//! explicit [`Worker::stop`] hands the handler, with everything it owned
//! (queue pair, backend), back.
//!
//! Start order on the thread: set affinity, set up the event loop, confine
//! the thread (the VMM's [`crate::sandbox`] hook), report ready, then loop until the kill eventfd fires or the handler says it is
//! done. `spawn` returns only once the thread is ready, so a failed start
//! is an error at the call site and the handler comes back with it.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use tracing::{error, info};
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use crate::affinity::pin_current_thread;
use crate::pause::PauseGate;
use crate::sandbox::{self, WorkerKind};

/// What a [`Worker`] runs: an event-manager subscriber that may end its
/// own loop (e.g. when it could not register its fds).
pub trait WorkerHandler: MutEventSubscriber + Send + 'static {
    /// Which worker this is, for its sandbox (see [`crate::sandbox`]).
    const KIND: WorkerKind;

    /// True once the loop must end; the worker then returns the handler.
    fn stopped(&self) -> bool {
        false
    }
}

/// Why a worker did not start; the handler comes back when it can (not if
/// the thread died before taking it over).
pub struct SpawnError<H> {
    pub error: io::Error,
    pub handler: Option<H>,
}

impl<H> std::fmt::Debug for SpawnError<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnError")
            .field("error", &self.error)
            .field("handler_returned", &self.handler.is_some())
            .finish()
    }
}

/// A running worker thread and its kill eventfd; joins on drop.
pub struct Worker<H: WorkerHandler> {
    name: String,
    kill: EventFd,
    handle: Option<JoinHandle<Option<H>>>,
}

impl<H: WorkerHandler> Worker<H> {
    /// Starts thread `name` (pinned to `cpus` when given and not empty)
    /// running `handler`, and waits until it is pinned and its event loop
    /// is set up.
    pub fn spawn(
        name: String,
        cpus: Option<Vec<usize>>,
        handler: H,
    ) -> Result<Self, SpawnError<H>> {
        Self::spawn_gated(name, cpus, handler, None)
    }

    /// Like [`Worker::spawn`]; with a `gate`, the thread stops taking
    /// events while the gate is paused (see [`PauseGate`]).
    pub fn spawn_gated(
        name: String,
        cpus: Option<Vec<usize>>,
        handler: H,
        gate: Option<PauseGate>,
    ) -> Result<Self, SpawnError<H>> {
        let kill = match kill_pair() {
            Ok(k) => k,
            Err(error) => {
                return Err(SpawnError {
                    error,
                    handler: Some(handler),
                })
            }
        };
        let (kill, kill_copy) = kill;
        // The handler goes over a channel rather than into the closure, so
        // that it comes back if the thread cannot be created.
        let (handler_tx, handler_rx) = mpsc::channel::<H>();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let spawned = thread::Builder::new()
            .name(name.clone())
            .spawn(move || run(handler_rx, ready_tx, cpus, kill_copy, gate));
        let handle = match spawned {
            Ok(h) => h,
            Err(error) => {
                return Err(SpawnError {
                    error,
                    handler: Some(handler),
                })
            }
        };
        if let Err(mpsc::SendError(handler)) = handler_tx.send(handler) {
            let _ = handle.join();
            return Err(SpawnError {
                error: io::Error::other("the worker thread died at start"),
                handler: Some(handler),
            });
        }
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the worker thread died at start")));
        match ready {
            Ok(()) => Ok(Self {
                name,
                kill,
                handle: Some(handle),
            }),
            Err(error) => Err(SpawnError {
                error,
                handler: handle.join().ok().flatten(),
            }),
        }
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the thread and returns its handler; `None` if the thread
    /// panicked (what it owned is lost).
    pub fn stop(mut self) -> Option<H> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Option<H> {
        let handle = self.handle.take()?;
        if let Err(e) = self.kill.write(1) {
            // Joining now could hang forever: leave the thread detached.
            error!(worker = %self.name, error = %e, "cannot signal the worker thread");
            return None;
        }
        match handle.join() {
            Ok(handler) => handler,
            Err(_) => {
                error!(worker = %self.name, "worker thread panicked");
                None
            }
        }
    }
}

impl<H: WorkerHandler> Drop for Worker<H> {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// A non-blocking eventfd and a second handle on it.
fn kill_pair() -> io::Result<(EventFd, EventFd)> {
    let kill = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?;
    let copy = kill.try_clone()?;
    Ok((kill, copy))
}

/// The handler plus the kill eventfd, as one subscriber.
struct Killable<H> {
    handler: H,
    kill: EventFd,
    killed: bool,
    gate: Option<PauseGate>,
}

impl<H: WorkerHandler> Killable<H> {
    fn done(&self) -> bool {
        self.killed || self.handler.stopped()
    }
}

impl<H: WorkerHandler> MutEventSubscriber for Killable<H> {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new_raw(self.kill.as_raw_fd(), EventSet::IN)) {
            error!(error = ?e, "cannot register the worker's kill eventfd");
            // Without it the worker could never be stopped.
            self.killed = true;
            return;
        }
        self.handler.init(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.kill.as_raw_fd() {
            let _ = self.kill.read();
            self.killed = true;
            return;
        }
        // Paused: hold the event until resumed; a kill meanwhile is the
        // next event the loop sees.
        if let Some(gate) = &self.gate {
            if gate.wait(&self.kill) {
                return;
            }
        }
        self.handler.process(events, ops);
    }
}

/// The thread body: returns the handler when it can.
fn run<H: WorkerHandler>(
    handler_rx: mpsc::Receiver<H>,
    ready_tx: mpsc::Sender<io::Result<()>>,
    cpus: Option<Vec<usize>>,
    kill: EventFd,
    gate: Option<PauseGate>,
) -> Option<H> {
    let handler = handler_rx.recv().ok()?;
    if let Some(cpus) = cpus.as_deref().filter(|c| !c.is_empty()) {
        if let Err(e) = pin_current_thread(cpus) {
            let _ = ready_tx.send(Err(e));
            return Some(handler);
        }
    }
    let mut em = match EventManager::<Killable<H>>::new() {
        Ok(em) => em,
        Err(e) => {
            let _ = ready_tx.send(Err(io::Error::other(e.to_string())));
            return Some(handler);
        }
    };
    let id = em.add_subscriber(Killable {
        handler,
        kill,
        killed: false,
        gate,
    });
    // Confined after its setup, before its first event.
    if let Err(e) = sandbox::confine(H::KIND) {
        let _ = ready_tx.send(Err(e));
        return em.remove_subscriber(id).ok().map(|s| s.handler);
    }
    let _ = ready_tx.send(Ok(()));
    loop {
        match em.subscriber_mut(id) {
            Ok(s) if !s.done() => {}
            _ => break,
        }
        if let Err(e) = em.run() {
            // event-manager already retries EINTR; anything else is fatal
            // for this loop (the handler is still returned on stop).
            error!(error = %e, "worker event loop failed");
            break;
        }
    }
    let handler = em.remove_subscriber(id).ok().map(|s| s.handler);
    if handler.is_some() {
        info!(
            thread = thread::current().name().unwrap_or("?"),
            "worker stopped"
        );
    }
    handler
}
