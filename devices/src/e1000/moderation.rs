//! Interrupt moderation of the 82540EM (8254x SDM, "Interrupt Throttling"
//! and the receive and transmit interrupt delay registers), as pure state
//! over a nanosecond clock: the register file feeds it the time and the
//! registers and arms the worker's timer for [`Moderation::next_deadline`].
//!
//! - ITR (0x00C4, bits 15:0, 256 ns units) is the minimum interval between
//!   two assertions of the interrupt line. A cause that would assert the
//!   line inside the interval is accumulated in ICR and the assertion waits
//!   for the interval's end. 0 turns throttling off.
//! - RDTR (0x2820, bits 15:0, 1.024 µs units) delays RXT0 after each frame
//!   (a relative timer, restarted by every frame); RADV (0x282C) bounds the
//!   delay from the first frame (absolute). RDTR = 0, Linux's default,
//!   raises RXT0 at once and RADV is ignored. A write of RDTR with FPD
//!   (bit 31) raises a pending RXT0 at once.
//! - TIDV/TADV (0x3820/0x382C) do the same for TXDW, for write-backs of
//!   descriptors that have IDE set; a write-back without IDE raises TXDW at
//!   once.
//!
//! Bounds against a hostile driver: only bits 15:0 count (the others are
//! reserved), so no delay exceeds 0xffff units (16.8 ms for ITR, 67.1 ms
//! for the delay timers); a delay whose absolute register is 0 is bounded
//! by 0xffff units from its first event all the same (the hardware would
//! let a steady stream postpone the interrupt forever); and a non-zero ITR
//! under [`MIN_ITR`] counts as [`MIN_ITR`] (about 10 µs, 100 000
//! interrupts/s), so the worker's timer never fires at sub-microsecond
//! rates.

use super::regs::icr;

/// ITR's unit.
pub const ITR_UNIT_NS: u64 = 256;
/// RDTR, RADV, TIDV and TADV's unit.
pub const DELAY_UNIT_NS: u64 = 1024;
/// The smallest interval a non-zero ITR gives: 39 × 256 ns ≈ 10 µs.
pub const MIN_ITR: u64 = 39;
/// Bits 15:0 of the moderation registers.
const FIELD: u32 = 0xffff;

/// The throttling interval ITR asks for (0: no throttling).
pub fn itr_interval_ns(itr: u32) -> u64 {
    match u64::from(itr & FIELD) {
        0 => 0,
        v => v.max(MIN_ITR) * ITR_UNIT_NS,
    }
}

/// A delay timer register's value in ns.
fn delay_ns(reg: u32) -> u64 {
    u64::from(reg & FIELD) * DELAY_UNIT_NS
}

/// A running delay: the cause is raised at the earlier deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Delay {
    relative: u64,
    absolute: u64,
}

impl Delay {
    fn due(self) -> u64 {
        self.relative.min(self.absolute)
    }
}

/// Moderation state; times are ns of CLOCK_MONOTONIC.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Moderation {
    /// When the line was last asserted (the start of the ITR interval).
    last_assert: Option<u64>,
    /// An assertion waits for the ITR interval's end.
    deferred: bool,
    rx: Option<Delay>,
    tx: Option<Delay>,
}

impl Moderation {
    /// Starts or restarts a delay for an event at `now`; returns whether
    /// the cause is to be raised at once (no relative delay).
    fn start_delay(slot: &mut Option<Delay>, now: u64, relative: u32, absolute: u32) -> bool {
        let rel = delay_ns(relative);
        if rel == 0 {
            *slot = None;
            return true;
        }
        let abs = match delay_ns(absolute) {
            0 => u64::from(FIELD) * DELAY_UNIT_NS,
            ns => ns,
        };
        let absolute = slot.map_or(now.saturating_add(abs), |d| d.absolute);
        *slot = Some(Delay {
            relative: now.saturating_add(rel),
            absolute,
        });
        false
    }

    /// Frames were delivered at `now`: whether RXT0 is to be raised at once.
    pub fn rx_frames(&mut self, now: u64, rdtr: u32, radv: u32) -> bool {
        Self::start_delay(&mut self.rx, now, rdtr, radv)
    }

    /// Descriptors were written back at `now`, all with IDE (`delayed`) or
    /// some without: whether TXDW is to be raised at once.
    pub fn tx_written_back(&mut self, now: u64, delayed: bool, tidv: u32, tadv: u32) -> bool {
        if !delayed {
            self.tx = None;
            return true;
        }
        Self::start_delay(&mut self.tx, now, tidv, tadv)
    }

    /// RDTR.FPD: whether an RXT0 was pending (and is to be raised now).
    pub fn flush_rx(&mut self) -> bool {
        self.rx.take().is_some()
    }

    /// The delayed causes due by `now`, taken.
    pub fn take_expired(&mut self, now: u64) -> u32 {
        let mut cause = 0;
        if self.rx.is_some_and(|d| d.due() <= now) {
            self.rx = None;
            cause |= icr::RXT0;
        }
        if self.tx.is_some_and(|d| d.due() <= now) {
            self.tx = None;
            cause |= icr::TXDW;
        }
        cause
    }

    /// The delayed causes not raised yet (a snapshot folds them into ICR).
    pub fn pending_causes(&self) -> u32 {
        let rx = if self.rx.is_some() { icr::RXT0 } else { 0 };
        let tx = if self.tx.is_some() { icr::TXDW } else { 0 };
        rx | tx
    }

    /// Whether ITR lets the line be asserted at `now`.
    pub fn may_assert(&self, now: u64, itr: u32) -> bool {
        let interval = itr_interval_ns(itr);
        interval == 0
            || self
                .last_assert
                .is_none_or(|t| now >= t.saturating_add(interval))
    }

    /// The line was asserted at `now`: the interval starts.
    pub fn asserted(&mut self, now: u64) {
        self.last_assert = Some(now);
        self.deferred = false;
    }

    /// An assertion waits for the end of the interval.
    pub fn defer(&mut self) {
        self.deferred = true;
    }

    /// Nothing to assert any more (the causes were read or masked).
    pub fn cancel_deferred(&mut self) {
        self.deferred = false;
    }

    pub fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// Whether a delayed cause waits.
    pub fn has_delays(&self) -> bool {
        self.rx.is_some() || self.tx.is_some()
    }

    /// When the timer must fire next: at the end of the interval a
    /// deferred assertion waits for, and at a delay's deadline if its cause
    /// would assert the line (it is in `watch`: IMS while the line is low).
    /// A delay due inside the ITR interval is looked at when the interval
    /// ends, as its cause could not assert the line earlier; and a cause
    /// nothing watches needs no timer at all: ICR reads and IMS writes
    /// take the expired delays first. This keeps the timer to about one
    /// wake-up per interval however often frames restart the delays.
    pub fn next_deadline(&self, itr: u32, watch: u32) -> Option<u64> {
        let itr_end = self
            .last_assert
            .map(|t| t.saturating_add(itr_interval_ns(itr)));
        let delay = |d: Option<Delay>, cause: u32| {
            d.filter(|_| watch & cause != 0)
                .map(|d| d.due().max(itr_end.unwrap_or(0)))
        };
        [
            itr_end.filter(|_| self.deferred),
            delay(self.rx, icr::RXT0),
            delay(self.tx, icr::TXDW),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
