//! Pausing the vCPUs: the control thread sets [`VcpuPark`]'s flag and kicks
//! every vCPU thread once with the same immediate-exit kick
//! [`crate::vcpu::Vcpus::stop`] uses; each thread leaves KVM_RUN, sees the
//! flag at the top of its run loop and parks on the condvar until resumed
//! or stopped. Whatever KVM_RUN had not finished (an MMIO read waiting for
//! its data) is completed by the next KVM_RUN after resume, so the guest
//! continues exactly where it stopped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tracing::debug;

use crate::vcpu::{kick_signal, VcpuShared};

/// The pause flag and the count of parked vCPU threads.
#[derive(Debug, Default)]
pub struct VcpuPark {
    paused: AtomicBool,
    parked: Mutex<usize>,
    cv: Condvar,
}

impl VcpuPark {
    /// Checked by each vCPU thread before every KVM_RUN.
    pub fn should_park(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// vCPU thread: blocks while paused, until resumed or `stop` is set.
    pub fn park(&self, id: u8, stop: &AtomicBool) {
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        *parked += 1;
        debug!(vcpu = id, "vCPU parked");
        self.cv.notify_all();
        while self.paused.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
            parked = self.cv.wait(parked).unwrap_or_else(|e| e.into_inner());
        }
        *parked -= 1;
        debug!(vcpu = id, "vCPU unparked");
    }

    /// Wakes every parked thread (after clearing the flag, or setting stop).
    pub fn wake_all(&self) {
        let _guard = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }

    /// Waits until `count` threads are parked; false on timeout.
    fn wait_parked(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        while *parked < count {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            parked = self
                .cv
                .wait_timeout(parked, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// How long pausing waits for every vCPU to leave KVM_RUN.
const PARK_TIMEOUT: Duration = Duration::from_secs(2);

/// Pauses and resumes the running vCPUs; made by
/// [`crate::vcpu::Vcpus::pauser`] once they run, used on the control thread.
pub struct VcpuPauser {
    shared: Arc<VcpuShared>,
    /// The running vCPU threads (kept current by [`crate::vcpu::Vcpus`]).
    threads: Arc<Mutex<Vec<libc::pthread_t>>>,
}

impl VcpuPauser {
    pub(crate) fn new(shared: Arc<VcpuShared>, threads: Arc<Mutex<Vec<libc::pthread_t>>>) -> Self {
        Self { shared, threads }
    }

    /// Parks every vCPU; false if one did not park in time (they are
    /// resumed again then).
    pub fn pause(&self) -> bool {
        self.shared.park.paused.store(true, Ordering::Release);
        let count = self.kick_all();
        if self.shared.park.wait_parked(count, PARK_TIMEOUT) {
            return true;
        }
        self.resume();
        false
    }

    pub fn resume(&self) {
        self.shared.park.paused.store(false, Ordering::Release);
        self.shared.park.wake_all();
    }

    /// Kicks every running vCPU thread once; returns how many there are.
    fn kick_all(&self) -> usize {
        let threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for &t in threads.iter() {
            // SAFETY: each pthread_t belongs to a vCPU thread that has not
            // been joined: Vcpus::stop empties this list before it joins,
            // under the same lock, and Vcpus::start lists a thread only once
            // it is spawned. The kick handler only sets immediate_exit.
            unsafe { libc::pthread_kill(t, kick_signal()) };
        }
        threads.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn park_blocks_until_resumed_or_stopped() {
        let park = Arc::new(VcpuPark::default());
        let stop = Arc::new(AtomicBool::new(false));
        park.paused.store(true, Ordering::Release);
        let (p, s) = (park.clone(), stop.clone());
        let t = std::thread::spawn(move || p.park(0, &s));
        assert!(park.wait_parked(1, Duration::from_secs(5)));
        park.paused.store(false, Ordering::Release);
        park.wake_all();
        t.join().unwrap();
        park.paused.store(true, Ordering::Release);
        let (p, s) = (park.clone(), stop.clone());
        let t = std::thread::spawn(move || p.park(1, &s));
        assert!(park.wait_parked(1, Duration::from_secs(5)));
        stop.store(true, Ordering::Release);
        park.wake_all();
        t.join().unwrap();
        assert!(!park.wait_parked(1, Duration::from_millis(10)));
    }
}
