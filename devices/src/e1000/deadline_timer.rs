//! The moderation timer: one non-blocking CLOCK_MONOTONIC timerfd per
//! device, armed at absolute deadlines by whichever thread holds the
//! register lock (a vCPU or the worker) and watched by the worker's event
//! loop. Non-blocking because a re-arm between the worker's wake-up and its
//! read resets the expiry count: a blocking read would then wait for the
//! next expiry on the worker thread.
//!
//! While moderation is busy the timer repeats every ITR interval
//! (`it_interval`): an interrupt per interval then costs no
//! `timerfd_settime` (about 20 µs on a nested host), only the expiry. A
//! tick that finds nothing to do disarms it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Nanoseconds of CLOCK_MONOTONIC (the timer's clock).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec the call only writes; CLOCK_MONOTONIC
    // always exists, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

pub(crate) struct DeadlineTimer {
    fd: OwnedFd,
    /// The next expiry the timer is armed for (None: disarmed).
    armed: Option<u64>,
    /// The period it repeats at after `armed` (0: once).
    interval: u64,
}

impl DeadlineTimer {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with constant flags; the result is checked.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            fd,
            armed: None,
            interval: 0,
        })
    }

    /// Arms the timer for `deadline`, then every `interval` ns (0: once),
    /// unless it is armed for that time or earlier already (an early
    /// expiry is harmless: the worker looks at what is due and arms again).
    pub fn arm(&mut self, deadline: u64, interval: u64) {
        if self.armed.is_some_and(|a| a <= deadline) {
            return;
        }
        // 0 would disarm the timer.
        let deadline = deadline.max(1);
        if self.settime(deadline, interval) {
            self.armed = Some(deadline);
            self.interval = interval;
        }
    }

    /// Stops the timer (a tick found nothing to do).
    pub fn disarm(&mut self) {
        if self.armed.is_some() && self.settime(0, 0) {
            self.armed = None;
        }
    }

    fn settime(&self, deadline: u64, interval: u64) -> bool {
        let ts = |ns: u64| libc::timespec {
            tv_sec: (ns / 1_000_000_000) as libc::time_t,
            tv_nsec: (ns % 1_000_000_000) as libc::c_long,
        };
        let spec = libc::itimerspec {
            it_interval: ts(interval),
            it_value: ts(deadline),
        };
        // SAFETY: the fd is this timer's own; `spec` is a live itimerspec
        // only read; the old value is not asked for (null).
        let r = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if r != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "e1000: cannot set the moderation timer");
        }
        r == 0
    }

    /// The worker saw the timer fire: consumes the expiries and returns
    /// the time of the last one (None: nothing expired, e.g. a re-arm came
    /// between the wake-up and the read).
    pub fn fired(&mut self) -> Option<u64> {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `count`, which is 8 bytes long;
        // the fd is non-blocking, so nothing waits when it has not fired.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        let expiries = u64::from_ne_bytes(count);
        let armed = self.armed?;
        if n != 8 || expiries == 0 {
            return None;
        }
        // Expiries lie on the grid `armed + k × interval`.
        let last = armed.saturating_add((expiries - 1).saturating_mul(self.interval));
        self.armed = (self.interval != 0).then(|| last.saturating_add(self.interval));
        Some(last)
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
