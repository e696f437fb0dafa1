//! The control thread's event loop (event-manager): it waits for the exit
//! event (vCPUs, i8042 reset), stop signals, and console input from stdin.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use devices::legacy::Serial;
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use tracing::{info, warn};
use vmm_sys_util::epoll::EventSet;

use crate::exit::{ExitReason, ExitSignal};
use crate::intx::KvmIntx;
use crate::pod_net::PodBinding;
use crate::signals::StopSignals;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("event manager failed")]
    EventManager(#[from] event_manager::Error),
}

struct ExitSubscriber {
    exit: Arc<ExitSignal>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

impl MutEventSubscriber for ExitSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(self.exit.eventfd(), EventSet::IN)) {
            warn!(error = ?e, "cannot watch the exit event");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.exit.eventfd().read();
        // The i8042 writes the event without a reason: that is a reset.
        if self.exit.reason().is_none() {
            self.exit.request(ExitReason::GuestReset);
        }
        self.done.store(true, std::sync::atomic::Ordering::Release);
    }
}

struct SignalSubscriber {
    signals: StopSignals,
    exit: Arc<ExitSignal>,
}

impl MutEventSubscriber for SignalSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.signals, EventSet::IN)) {
            warn!(error = ?e, "cannot watch stop signals");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        match self.signals.read() {
            Ok(Some(sig)) => {
                info!(signal = sig, "stop requested");
                self.exit.request(ExitReason::Signal(sig));
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "reading the signalfd failed"),
        }
    }
}

struct StdinSubscriber {
    serial: Arc<Mutex<Serial>>,
    pending: Vec<u8>,
}

impl MutEventSubscriber for StdinSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        let stdin = std::io::stdin();
        if let Err(e) = ops.add(Events::new(&stdin.as_raw_fd(), EventSet::IN)) {
            warn!(error = ?e, "cannot watch stdin");
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let mut buf = [0u8; 64];
        let n = std::io::stdin().lock().read(&mut buf).unwrap_or(0);
        if n == 0 || events.event_set().contains(EventSet::HANG_UP) {
            let _ = ops.remove(Events::new(&std::io::stdin().as_raw_fd(), EventSet::IN));
            return;
        }
        self.pending.extend_from_slice(&buf[..n]);
        let mut serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        let took = serial.enqueue_input(&self.pending);
        // A full FIFO drops what the guest is not reading; a console is
        // interactive, so stale keystrokes are not worth buffering.
        self.pending.drain(..took.min(self.pending.len()));
        if self.pending.len() > 4096 {
            self.pending.clear();
        }
    }
}

/// Re-raises a level-triggered INTx line after the guest's EOI when the
/// device still holds it.
struct ResampleSubscriber {
    line: Arc<KvmIntx>,
}

impl MutEventSubscriber for ResampleSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(self.line.resample_fd(), EventSet::IN)) {
            warn!(error = ?e, gsi = self.line.gsi(), "cannot watch an INTx resample event");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        self.line.on_resample();
    }
}

const TOKEN_DHCP4: u32 = 1;
const TOKEN_RA: u32 = 2;
const TOKEN_DHCP6: u32 = 3;

/// Serves a pod binding's DHCP server on its socket; owns the binding's
/// undo guard, so the plumbing goes away when the loop ends.
struct DhcpSubscriber {
    binding: PodBinding,
}

impl MutEventSubscriber for DhcpSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        let b = &self.binding;
        let mut fds: Vec<(i32, u32)> = Vec::new();
        if let Some((_, sock)) = &b.dhcp {
            fds.push((sock.as_raw_fd(), TOKEN_DHCP4));
        }
        if let Some(ra) = &b.ra {
            fds.push((ra.as_raw_fd(), TOKEN_RA));
        }
        if let Some((_, sock)) = &b.dhcp6 {
            fds.push((sock.as_raw_fd(), TOKEN_DHCP6));
        }
        for (fd, token) in fds {
            if let Err(e) = ops.add(Events::with_data_raw(fd, token, EventSet::IN)) {
                warn!(error = ?e, nic = %b.nic, "cannot watch a pod network socket");
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let b = &mut self.binding;
        let res = match events.data() {
            TOKEN_DHCP4 => match &mut b.dhcp {
                Some((server, sock)) => sock.handle_readable(server),
                None => Ok(()),
            },
            TOKEN_RA => match &mut b.ra {
                Some(ra) => ra.handle_readable(),
                None => Ok(()),
            },
            TOKEN_DHCP6 => match &mut b.dhcp6 {
                Some((server, sock)) => sock.handle_readable(server),
                None => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(e) = res {
            warn!(error = %e, nic = %b.nic, "pod network socket error");
        }
    }
}

impl Drop for DhcpSubscriber {
    fn drop(&mut self) {
        if let Some((server, _)) = &self.binding.dhcp {
            info!(nic = %self.binding.nic, counters = ?server.counters(), "DHCP server stopped");
        }
    }
}

/// Runs the control loop until the exit event fires; returns the reason.
pub fn run(
    exit: Arc<ExitSignal>,
    signals: StopSignals,
    stdin_serial: Option<Arc<Mutex<Serial>>>,
    intx: Vec<Arc<KvmIntx>>,
    pod: Vec<PodBinding>,
) -> Result<ExitReason, ControlError> {
    let mut mgr: EventManager<Box<dyn MutEventSubscriber + Send>> = EventManager::new()?;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    mgr.add_subscriber(Box::new(ExitSubscriber {
        exit: exit.clone(),
        done: done.clone(),
    }));
    mgr.add_subscriber(Box::new(SignalSubscriber {
        signals,
        exit: exit.clone(),
    }));
    if let Some(serial) = stdin_serial {
        mgr.add_subscriber(Box::new(StdinSubscriber {
            serial,
            pending: Vec::new(),
        }));
    }
    for binding in pod {
        mgr.add_subscriber(Box::new(DhcpSubscriber { binding }));
    }
    for line in intx {
        mgr.add_subscriber(Box::new(ResampleSubscriber { line }));
    }
    while !done.load(std::sync::atomic::Ordering::Acquire) {
        mgr.run()?;
    }
    Ok(exit.reason().unwrap_or(ExitReason::GuestReset))
}
