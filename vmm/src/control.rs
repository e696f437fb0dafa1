//! The control thread's event loop (event-manager): it waits for the exit
//! event (vCPUs, i8042 reset), stop signals, and console input from stdin.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::legacy::Serial;
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use tracing::{info, warn};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

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
const TOKEN_RA_TIMER: u32 = 4;

/// RFC 4861 §6.2.4/§10: the first unsolicited advertisements go out at most
/// 16 s apart (3 of them), then every MinRtrAdvInterval..MaxRtrAdvInterval
/// (200..600 s by default), randomized so routers on a link do not
/// synchronize. `unit` is a random number in [0, 1).
fn ra_interval(sent: u32, unit: f64) -> Duration {
    const MAX_INITIAL_INTERVAL: u64 = 16;
    const MAX_INITIAL_ADVERTISEMENTS: u32 = 3;
    const MIN_INTERVAL: u64 = 200;
    const MAX_INTERVAL: u64 = 600;
    if sent < MAX_INITIAL_ADVERTISEMENTS {
        return Duration::from_secs(MAX_INITIAL_INTERVAL);
    }
    let spread = (MAX_INTERVAL - MIN_INTERVAL) as f64 * unit.clamp(0.0, 1.0);
    Duration::from_secs(MIN_INTERVAL) + Duration::from_secs_f64(spread)
}

/// A number in [0, 1) that differs between petrel processes (for the RA
/// jitter; nothing secret depends on it).
fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Serves a pod binding's DHCP server on its socket, answers router
/// solicitations and sends unsolicited advertisements on a timer; owns the
/// binding's undo guard, so the plumbing goes away when the loop ends.
struct DhcpSubscriber {
    binding: PodBinding,
    /// Unsolicited router advertisements (IPv6 bindings only).
    ra_timer: Option<TimerFd>,
    unsolicited: u32,
}

impl DhcpSubscriber {
    fn new(binding: PodBinding) -> Self {
        let ra_timer = binding.ra.as_ref().and_then(|_| match TimerFd::new() {
            Ok(t) => Some(t),
            Err(e) => {
                warn!(error = %e, nic = %binding.nic, "no timer for unsolicited router advertisements");
                None
            }
        });
        let mut sub = Self {
            binding,
            ra_timer,
            unsolicited: 0,
        };
        sub.arm_ra_timer();
        sub
    }

    fn arm_ra_timer(&mut self) {
        let next = ra_interval(self.unsolicited, jitter_unit());
        if let Some(t) = &mut self.ra_timer {
            if let Err(e) = t.reset(next, None) {
                warn!(error = %e, nic = %self.binding.nic, "cannot arm the router advertisement timer");
            }
        }
    }

    fn on_ra_timer(&mut self) -> std::io::Result<()> {
        if let Some(t) = &mut self.ra_timer {
            // Readable, so this does not block; it clears the expiry.
            t.wait()
                .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        }
        self.unsolicited = self.unsolicited.saturating_add(1);
        self.arm_ra_timer();
        match &mut self.binding.ra {
            Some(ra) => ra.send_ra(),
            None => Ok(()),
        }
    }
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
        if let Some(t) = &self.ra_timer {
            fds.push((t.as_raw_fd(), TOKEN_RA_TIMER));
        }
        for (fd, token) in fds {
            if let Err(e) = ops.add(Events::with_data_raw(fd, token, EventSet::IN)) {
                warn!(error = ?e, nic = %b.nic, "cannot watch a pod network socket");
            }
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.data() == TOKEN_RA_TIMER {
            if let Err(e) = self.on_ra_timer() {
                warn!(error = %e, nic = %self.binding.nic, "unsolicited router advertisement failed");
            }
            return;
        }
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
        if let Some(ra) = &self.binding.ra {
            info!(
                nic = %self.binding.nic,
                counters = ?ra.counters(),
                unsolicited = self.unsolicited,
                "router advertisements stopped"
            );
        }
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
        intx: Vec<Arc<KvmIntx>>,
        pod: Vec<PodBinding>,
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
        }));
        for binding in pod {
            mgr.add_subscriber(Box::new(DhcpSubscriber::new(binding)));
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

    /// Runs the loop until the exit event fires; returns the reason.
    pub fn run(&mut self) -> Result<ExitReason, ControlError> {
        while !self.done.load(Ordering::Acquire) {
            self.mgr.run()?;
        }
        Ok(self.exit.reason().unwrap_or(ExitReason::GuestReset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ra_schedule_follows_rfc4861() {
        for sent in 0..3 {
            assert_eq!(ra_interval(sent, 0.9), Duration::from_secs(16));
        }
        assert_eq!(ra_interval(3, 0.0), Duration::from_secs(200));
        assert_eq!(ra_interval(9, 0.5), Duration::from_secs(400));
        assert!(ra_interval(9, 0.999_999) <= Duration::from_secs(600));
        // Out-of-range randomness is clamped.
        assert_eq!(ra_interval(5, 7.0), Duration::from_secs(600));
        assert_eq!(ra_interval(5, -1.0), Duration::from_secs(200));
    }

    #[test]
    fn jitter_is_a_unit_fraction() {
        for _ in 0..100 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
