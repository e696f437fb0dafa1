//! The moderation timer: one non-blocking CLOCK_MONOTONIC timerfd per
//! device, armed at absolute deadlines by whichever thread holds the
//! register lock (a vCPU or the worker) and watched by the worker's event
//! loop. Non-blocking because a re-arm between the worker's wake-up and its
//! read resets the expiry count: a blocking read would then wait for the
//! next expiry on the worker thread.

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
    /// The deadline the timer is armed for, until the worker sees it fire.
    armed: Option<u64>,
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
        Ok(Self { fd, armed: None })
    }

    /// Arms the timer for `deadline` unless it is armed for that time or
    /// earlier already (an early expiry is harmless: the worker looks at
    /// what is due and arms again).
    pub fn arm(&mut self, deadline: u64) {
        if self.armed.is_some_and(|a| a <= deadline) {
            return;
        }
        // 0 would disarm the timer.
        let deadline = deadline.max(1);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (deadline / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
            },
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
        if r == 0 {
            self.armed = Some(deadline);
        } else {
            tracing::warn!(error = %io::Error::last_os_error(), "e1000: cannot arm the moderation timer");
        }
    }

    /// The worker saw the timer fire: consumes the expiry.
    pub fn fired(&mut self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `count`, which is 8 bytes long;
        // the fd is non-blocking, so nothing waits when it has not fired.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        self.armed = None;
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
