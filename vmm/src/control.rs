//! The control thread's event loop (event-manager): it waits for the exit
//! event (vCPUs, i8042 reset), stop signals, and console input from stdin.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use devices::acpi::PowerButton;
use devices::legacy::Serial;
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use net::service::ServiceToken;
use tracing::{error, info, warn};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use crate::exit::{ExitReason, ExitSignal};
use crate::intx::KvmIntx;
use crate::signals::StopSignals;
use net::PodNetService;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("event manager failed")]
    EventManager(#[from] event_manager::Error),
}

struct ExitSubscriber {
    exit: Arc<ExitSignal>,
    done: Arc<AtomicBool>,
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
        self.done.store(true, Ordering::Release);
    }
}

struct SignalSubscriber {
    signals: StopSignals,
    exit: Arc<ExitSignal>,
    stop: GracefulStop,
}

impl MutEventSubscriber for SignalSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.signals, EventSet::IN)) {
            warn!(error = ?e, "cannot watch stop signals");
        }
        if let Err(e) = ops.add(Events::new(&self.stop.timer, EventSet::IN)) {
            warn!(error = ?e, "cannot watch the grace-period timer");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() == self.stop.timer.as_raw_fd() {
            let _ = self.stop.timer.wait();
            info!(
                grace_s = self.stop.grace.as_secs(),
                "the guest did not power off within the grace period; stopping the VM"
            );
            self.exit.request(ExitReason::Signal(libc::SIGTERM));
            return;
        }
        match self.signals.read() {
            Ok(Some(sig)) if sig == libc::SIGTERM && self.stop.press() => {}
            Ok(Some(sig)) => {
                info!(signal = sig, "stop requested");
                self.exit.request(ExitReason::Signal(sig));
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "reading the signalfd failed"),
        }
    }
}

/// SIGTERM's shutdown (pod termination): press the power button, then stop
/// the VM when the grace period ends; a second SIGTERM, SIGINT or a zero
/// grace period stops at once.
pub struct GracefulStop {
    button: Arc<PowerButton>,
    grace: Duration,
    timer: TimerFd,
    pressed: bool,
    /// Whether a guest runs to press the button for (false while an
    /// `--incoming` VM waits for its state).
    booted: Arc<AtomicBool>,
}

impl GracefulStop {
    pub fn new(button: Arc<PowerButton>, grace: Duration) -> std::io::Result<Self> {
        Ok(Self {
            button,
            grace,
            timer: TimerFd::new().map_err(std::io::Error::from)?,
            pressed: false,
            booted: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The flag saying a guest runs (see the field).
    pub fn booted(&self) -> Arc<AtomicBool> {
        self.booted.clone()
    }

    /// Presses the button and arms the timer; false when SIGTERM should
    /// stop the VM at once.
    fn press(&mut self) -> bool {
        if self.pressed || self.grace.is_zero() || !self.booted.load(Ordering::Acquire) {
            return false;
        }
        if let Err(e) = self.button.press() {
            warn!(error = %e, "cannot press the power button");
            return false;
        }
        if let Err(e) = self.timer.reset(self.grace, None) {
            warn!(error = %e, "cannot arm the grace-period timer");
            return false;
        }
        self.pressed = true;
        info!(
            grace_s = self.grace.as_secs(),
            "SIGTERM: power button pressed; waiting for the guest to power off"
        );
        true
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

/// Event-manager adapter over a pod NIC's [`net::PodNetService`]: it
/// registers the service's descriptors with their tokens and hands each
/// readable one back; the service owns the policy (RA schedule, counters)
/// and the binding's undo guard.
struct PodNetSubscriber(PodNetService);

impl MutEventSubscriber for PodNetSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        for (fd, token) in self.0.fds() {
            if let Err(e) = ops.add(Events::with_data_raw(fd, token.raw(), EventSet::IN)) {
                warn!(error = ?e, nic = %self.0.nic(), "cannot watch a pod network socket");
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let Some(token) = ServiceToken::from_raw(events.data()) else {
            return;
        };
        if let Err(e) = self.0.handle(token) {
            let cause = std::error::Error::source(&e).map(ToString::to_string);
            warn!(error = %e, cause = cause.unwrap_or_default(), "pod network socket error");
        }
    }
}

/// Watches one NIC's passt: if it exits while the guest runs, the NIC has
/// no network any more and the VM stops with an error (the pod's restart
/// policy brings both back), rather than running on without a network.
struct PasstSubscriber {
    passt: net::passt::Passt,
    exit: Arc<ExitSignal>,
}

impl MutEventSubscriber for PasstSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        let fd = self.passt.exit_fd();
        if let Err(e) = ops.add(Events::new_raw(fd, EventSet::IN)) {
            warn!(error = ?e, nic = %self.passt.nic(), "cannot watch passt");
        }
    }

    fn process(&mut self, _events: Events, ops: &mut EventOps) {
        let _ = ops.remove(Events::new_raw(self.passt.exit_fd(), EventSet::IN));
        let status = self
            .passt
            .try_reap()
            .map_or_else(|| "exited".to_string(), |s| s.to_string());
        error!(nic = %self.passt.nic(), pid = self.passt.pid(), %status,
            "passt exited; the NIC has no network, stopping the VM");
        self.exit.request(ExitReason::NetworkHelperExited {
            nic: self.passt.nic().to_string(),
            status,
        });
    }
}

type Subscriber = Box<dyn MutEventSubscriber + Send>;

/// The control thread's event loop. It owns the pod networks' services (so
/// they live until the [`crate::Vmm`] drops it, after the devices) and the
/// stop-signal fd.
pub struct Control {
    mgr: EventManager<Subscriber>,
    done: Arc<AtomicBool>,
    exit: Arc<ExitSignal>,
}

impl Control {
    pub fn new(
        exit: Arc<ExitSignal>,
        signals: StopSignals,
        stop: GracefulStop,
        intx: Vec<Arc<KvmIntx>>,
        services: crate::attach::NicServices,
    ) -> Result<Self, ControlError> {
        let mut mgr: EventManager<Subscriber> = EventManager::new()?;
        let done = Arc::new(AtomicBool::new(false));
        mgr.add_subscriber(Box::new(ExitSubscriber {
            exit: exit.clone(),
            done: done.clone(),
        }));
        mgr.add_subscriber(Box::new(SignalSubscriber {
            signals,
            exit: exit.clone(),
            stop,
        }));
        for binding in services.pod {
            mgr.add_subscriber(Box::new(PodNetSubscriber(binding)));
        }
        for passt in services.passt {
            mgr.add_subscriber(Box::new(PasstSubscriber {
                passt,
                exit: exit.clone(),
            }));
        }
        for line in intx {
            mgr.add_subscriber(Box::new(ResampleSubscriber { line }));
        }
        Ok(Control { mgr, done, exit })
    }

    /// Feeds bytes typed on stdin to the guest's serial port.
    pub fn watch_stdin(&mut self, serial: Arc<Mutex<Serial>>) {
        self.mgr.add_subscriber(Box::new(StdinSubscriber {
            serial,
            pending: Vec::new(),
        }));
    }

    /// Serves the API's request channel (see [`crate::api`]).
    pub fn serve_api(&mut self, api: crate::api::ApiSubscriber) {
        self.mgr.add_subscriber(Box::new(api));
    }

    /// Serves the console socket (clients and their input).
    pub fn watch_console_socket(&mut self, socket: crate::console_socket::ConsoleSocket) {
        self.mgr.add_subscriber(Box::new(socket));
    }

    /// Readies the loop for the next run after a VM reset.
    pub fn rearm(&mut self) {
        self.exit.clear();
        self.done.store(false, Ordering::Release);
    }

    /// Runs the loop until the exit event fires; returns the reason.
    pub fn run(&mut self) -> Result<ExitReason, ControlError> {
        while !self.done.load(Ordering::Acquire) {
            self.mgr.run()?;
        }
        Ok(self.exit.reason().unwrap_or(ExitReason::GuestReset))
    }
}
