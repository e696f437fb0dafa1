//! Counters of one virtio-net device. Each queue pair has its own block of
//! atomics, written only by that pair's worker: the datapath accumulates a
//! batch in plain integers ([`BatchCounters`]) and publishes it with one
//! `fetch_add` per non-zero counter, so the hot loop never touches shared
//! cache lines per frame.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::info;

/// Live counters of one queue pair.
#[derive(Debug, Default)]
pub struct QueuePairMetrics {
    /// Frames delivered to the guest.
    pub rx_frames: AtomicU64,
    /// Bytes delivered to the guest (virtio-net header included).
    pub rx_bytes: AtomicU64,
    /// Frames of `rx_frames` that went through the device's bounce buffer
    /// (the rest the backend read straight into guest buffers).
    pub rx_copied: AtomicU64,
    /// Frames sent to the backend.
    pub tx_frames: AtomicU64,
    /// Bytes sent to the backend (virtio-net header included).
    pub tx_bytes: AtomicU64,
    /// Frames dropped because the guest's buffer could not hold them
    /// (without MRG_RXBUF: a single chain smaller than the frame).
    pub rx_dropped_no_buffer: AtomicU64,
    /// TX chains the device refused (writable descriptors, too long, too
    /// short, truncated, out of guest memory).
    pub tx_malformed: AtomicU64,
    /// RX chains the device refused (readable descriptors, out of guest
    /// memory, truncated) and frames the backend handed over too short.
    pub rx_malformed: AtomicU64,
    /// Used-buffer interrupts raised for this pair's queues.
    pub notifications: AtomicU64,
    /// Backend read/write failures other than "would block".
    pub backend_errors: AtomicU64,
}

/// A plain copy of one queue pair's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueuePairCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub rx_copied: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_dropped_no_buffer: u64,
    pub tx_malformed: u64,
    pub rx_malformed: u64,
    pub notifications: u64,
    pub backend_errors: u64,
}

/// Counters gathered while processing one batch; published at its end.
pub(crate) type BatchCounters = QueuePairCounters;

fn add(counter: &AtomicU64, value: u64) {
    if value != 0 {
        counter.fetch_add(value, Ordering::Relaxed);
    }
}

impl QueuePairMetrics {
    /// Publishes a batch (one `fetch_add` per non-zero counter).
    pub(crate) fn publish(&self, batch: &BatchCounters) {
        add(&self.rx_frames, batch.rx_frames);
        add(&self.rx_bytes, batch.rx_bytes);
        add(&self.rx_copied, batch.rx_copied);
        add(&self.tx_frames, batch.tx_frames);
        add(&self.tx_bytes, batch.tx_bytes);
        add(&self.rx_dropped_no_buffer, batch.rx_dropped_no_buffer);
        add(&self.tx_malformed, batch.tx_malformed);
        add(&self.rx_malformed, batch.rx_malformed);
        add(&self.notifications, batch.notifications);
        add(&self.backend_errors, batch.backend_errors);
    }

    /// Reads the counters.
    pub fn snapshot(&self) -> QueuePairCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QueuePairCounters {
            rx_frames: get(&self.rx_frames),
            rx_bytes: get(&self.rx_bytes),
            rx_copied: get(&self.rx_copied),
            tx_frames: get(&self.tx_frames),
            tx_bytes: get(&self.tx_bytes),
            rx_dropped_no_buffer: get(&self.rx_dropped_no_buffer),
            tx_malformed: get(&self.tx_malformed),
            rx_malformed: get(&self.rx_malformed),
            notifications: get(&self.notifications),
            backend_errors: get(&self.backend_errors),
        }
    }
}

/// Device-level counters, plain copy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCounters {
    pub ctrl_commands: u64,
    pub ctrl_errors: u64,
    pub event_errors: u64,
    pub config_writes_refused: u64,
}

/// All counters of one virtio-net device.
#[derive(Debug)]
pub struct NetMetrics {
    pairs: Vec<QueuePairMetrics>,
    /// Control-queue commands processed (any result).
    pub ctrl_commands: AtomicU64,
    /// Control-queue commands answered with VIRTIO_NET_ERR or dropped.
    pub ctrl_errors: AtomicU64,
    /// Event-loop failures (epoll errors, interrupt delivery, broken queues).
    pub event_errors: AtomicU64,
    /// Refused writes to the configuration space.
    pub config_writes_refused: AtomicU64,
}

impl NetMetrics {
    pub fn new(pairs: usize) -> Self {
        Self {
            pairs: (0..pairs).map(|_| QueuePairMetrics::default()).collect(),
            ctrl_commands: AtomicU64::new(0),
            ctrl_errors: AtomicU64::new(0),
            event_errors: AtomicU64::new(0),
            config_writes_refused: AtomicU64::new(0),
        }
    }

    /// The live counters of queue pair `index`.
    pub fn pair(&self, index: usize) -> Option<&QueuePairMetrics> {
        self.pairs.get(index)
    }

    /// One entry per queue pair, in order.
    pub fn snapshot(&self) -> Vec<QueuePairCounters> {
        self.pairs.iter().map(QueuePairMetrics::snapshot).collect()
    }

    /// The device-level counters.
    pub fn device_snapshot(&self) -> DeviceCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DeviceCounters {
            ctrl_commands: get(&self.ctrl_commands),
            ctrl_errors: get(&self.ctrl_errors),
            event_errors: get(&self.event_errors),
            config_writes_refused: get(&self.config_writes_refused),
        }
    }

    pub(crate) fn count_event_error(&self) -> u64 {
        self.event_errors.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Logs every queue pair's counters at info, with `nic` and `queue`
    /// fields (tests and operators read them from the log).
    pub fn log(&self, nic: &str, reason: &str) {
        for (queue, c) in self.snapshot().iter().enumerate() {
            info!(
                nic,
                queue,
                reason,
                rx_frames = c.rx_frames,
                rx_bytes = c.rx_bytes,
                rx_copied = c.rx_copied,
                tx_frames = c.tx_frames,
                tx_bytes = c.tx_bytes,
                rx_dropped_no_buffer = c.rx_dropped_no_buffer,
                tx_malformed = c.tx_malformed,
                rx_malformed = c.rx_malformed,
                notifications = c.notifications,
                backend_errors = c.backend_errors,
                "virtio-net queue pair counters"
            );
        }
        let d = self.device_snapshot();
        info!(
            nic,
            reason,
            ctrl_commands = d.ctrl_commands,
            ctrl_errors = d.ctrl_errors,
            event_errors = d.event_errors,
            config_writes_refused = d.config_writes_refused,
            "virtio-net device counters"
        );
    }
}
