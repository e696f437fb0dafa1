//! Closed-loop injection bookkeeping: how many frames the RX loops may
//! still inject, and when frames in flight are given up on.

use std::time::{Duration, Instant};

/// No frame received for this long while frames are in flight: they are
/// considered lost (counted as a stall) and the window reopens.
pub const STALL: Duration = Duration::from_millis(50);

/// Closed-loop injection bookkeeping shared by the RX loops.
pub struct Window {
    pub size: usize,
    pub injected: u64,
    /// Frames given up on after a stall.
    pub forgotten: u64,
    pub last_progress: Instant,
    pub last_received: u64,
}

impl Window {
    pub fn new(size: usize) -> Self {
        Self {
            size,
            injected: 0,
            forgotten: 0,
            last_progress: Instant::now(),
            last_received: 0,
        }
    }

    pub fn room(&self, received: u64) -> usize {
        let in_flight = (self.injected - self.forgotten).saturating_sub(received);
        self.size.saturating_sub(in_flight as usize)
    }

    /// Notes progress; after [`STALL`] without any while frames are in
    /// flight they are written off. Returns true on a stall.
    pub fn check(&mut self, received: u64) -> bool {
        let now = Instant::now();
        if received != self.last_received {
            self.last_received = received;
            self.last_progress = now;
            return false;
        }
        let in_flight = (self.injected - self.forgotten).saturating_sub(received);
        if in_flight > 0 && now.duration_since(self.last_progress) > STALL {
            self.forgotten = self.injected - received.min(self.injected);
            self.last_progress = now;
            return true;
        }
        false
    }
}
