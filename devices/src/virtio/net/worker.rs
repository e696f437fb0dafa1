//! One worker thread per queue pair: named "{nic}-q{i}", optionally pinned
//! to host CPUs, running its own event loop with a [`NetEpollHandler`].
//! Stopping writes the kill eventfd and joins the thread, which hands the
//! handler (and so the backend) back.

use std::io;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use event_manager::{EventManager, SubscriberOps};
use tracing::{error, info};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::NetEpollHandler;

pub struct Worker {
    name: String,
    kill: EventFd,
    handle: Option<JoinHandle<Option<NetEpollHandler>>>,
}

/// Why a worker did not start; the handler comes back when it can.
pub struct SpawnError {
    pub error: io::Error,
    pub handler: Option<Box<NetEpollHandler>>,
}

impl std::fmt::Debug for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnError")
            .field("error", &self.error)
            .field("handler_returned", &self.handler.is_some())
            .finish()
    }
}

impl Worker {
    /// A kill eventfd for a handler and its worker: pass one copy to
    /// [`NetEpollHandler::new`] and the other to [`Worker::spawn`].
    pub fn kill_pair() -> io::Result<(EventFd, EventFd)> {
        let kill = EventFd::new(EFD_NONBLOCK)?;
        let copy = kill.try_clone()?;
        Ok((kill, copy))
    }

    /// Starts the thread and waits until it is pinned and its event loop
    /// is set up.
    pub fn spawn(
        name: String,
        cpus: Option<Vec<usize>>,
        handler: NetEpollHandler,
        kill: EventFd,
    ) -> Result<Worker, SpawnError> {
        let (handler_tx, handler_rx) = mpsc::channel::<NetEpollHandler>();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let spawned = thread::Builder::new()
            .name(name.clone())
            .spawn(move || run(handler_rx, ready_tx, cpus));
        let handle = match spawned {
            Ok(h) => h,
            Err(error) => {
                return Err(SpawnError {
                    error,
                    handler: Some(Box::new(handler)),
                })
            }
        };
        if let Err(mpsc::SendError(handler)) = handler_tx.send(handler) {
            let _ = handle.join();
            return Err(SpawnError {
                error: io::Error::other("the worker thread died at start"),
                handler: Some(Box::new(handler)),
            });
        }
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the worker thread died at start")));
        match ready {
            Ok(()) => Ok(Worker {
                name,
                kill,
                handle: Some(handle),
            }),
            Err(error) => Err(SpawnError {
                error,
                handler: handle.join().ok().flatten().map(Box::new),
            }),
        }
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops the thread and returns its handler; `None` if the thread
    /// panicked (its backend is lost).
    pub fn stop(mut self) -> Option<NetEpollHandler> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Option<NetEpollHandler> {
        let handle = self.handle.take()?;
        if let Err(e) = self.kill.write(1) {
            error!(worker = %self.name, error = %e, "virtio-net: cannot signal the worker");
        }
        match handle.join() {
            Ok(handler) => handler,
            Err(_) => {
                error!(worker = %self.name, "virtio-net: worker thread panicked");
                None
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

fn run(
    handler_rx: mpsc::Receiver<NetEpollHandler>,
    ready_tx: mpsc::Sender<io::Result<()>>,
    cpus: Option<Vec<usize>>,
) -> Option<NetEpollHandler> {
    let handler = handler_rx.recv().ok()?;
    if let Some(cpus) = cpus.as_deref().filter(|c| !c.is_empty()) {
        if let Err(e) = set_affinity(cpus) {
            let _ = ready_tx.send(Err(e));
            return Some(handler);
        }
    }
    let mut em = match EventManager::<NetEpollHandler>::new() {
        Ok(em) => em,
        Err(e) => {
            let _ = ready_tx.send(Err(io::Error::other(e.to_string())));
            return Some(handler);
        }
    };
    let id = em.add_subscriber(handler);
    let _ = ready_tx.send(Ok(()));
    loop {
        match em.subscriber_mut(id) {
            Ok(h) if !h.stopped() => {}
            _ => break,
        }
        if let Err(e) = em.run() {
            // event-manager already retries EINTR; anything else is fatal
            // for this loop (the handler is still returned on stop).
            error!(error = %e, "virtio-net: worker event loop failed");
            break;
        }
    }
    let handler = em.remove_subscriber(id).ok();
    if handler.is_some() {
        info!(
            thread = thread::current().name().unwrap_or("?"),
            "virtio-net: worker stopped"
        );
    }
    handler
}

/// Pins the calling thread to `cpus`.
fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for &cpu in cpus {
        if cpu >= max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("host CPU {cpu} is out of range"),
            ));
        }
        // SAFETY: `cpu` is below the set's capacity (checked above).
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of
    // the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
