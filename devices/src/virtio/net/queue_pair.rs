//! The datapath of one queue pair: moves frames between the guest's rx/tx
//! virtqueues and a [`FrameBackend`], and says whether the guest must be
//! notified. It owns no fds besides the backend and raises no interrupts,
//! so it can be driven directly (unit tests, benchmarks) or by
//! [`super::NetEpollHandler`] on a worker thread.
//!
//! This file holds the pair and its batch bookkeeping; the receive path is
//! in `rx.rs`, the transmit path in `tx.rs`. Nothing is allocated per
//! frame.

use std::sync::Arc;

use net_backend::FrameBackend;
use tracing::warn;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::metrics::{BatchCounters, NetMetrics};
use super::rx_buffers::RxBuffers;
use super::tx::TxIovecs;
use super::used_batch::UsedBatch;
use super::MAX_BUFFER_LEN;
use crate::rate_limit::LogRateLimiter;

/// Most chains (TX) or frames (RX) handled by one `process_*` call; the
/// event handler re-kicks itself when a budget runs out, so the other
/// direction of the pair gets its turn.
pub const TX_BUDGET: usize = 256;
pub const RX_BUDGET: usize = 256;
/// RX used entries written before the used index is published mid-batch.
pub const RX_PUBLISH_EVERY: usize = 64;

/// The driver broke a queue (e.g. an available index more than a queue
/// size ahead): the device needs a reset and stops using that queue.
#[derive(Debug, thiserror::Error)]
pub enum QueuePairError {
    #[error("the driver broke virtqueue {queue}")]
    BrokenQueue {
        queue: u16,
        #[source]
        source: virtio_queue::Error,
    },
}

/// Result of one [`QueuePair::process_tx`] call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxOutcome {
    /// Used buffers were added and the driver asked to be notified.
    pub notify: bool,
    /// The backend would block: the current chain is back in the avail
    /// ring; call again when the backend is writable.
    pub backend_full: bool,
    /// [`TX_BUDGET`] chains were processed and more may be waiting.
    pub budget_exhausted: bool,
}

/// Result of one [`QueuePair::process_rx`] call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxOutcome {
    /// Used buffers were added and the driver asked to be notified.
    pub notify: bool,
    /// No guest buffers (or the queue is broken): stop polling the
    /// backend until the rx queue is kicked. Notifications are enabled.
    pub paused: bool,
    /// [`RX_BUDGET`] frames were processed and more may be waiting.
    pub budget_exhausted: bool,
    /// The backend reported end of file (peer gone).
    pub backend_closed: bool,
}

/// Which queue of the pair.
#[derive(Debug, Clone, Copy)]
pub(super) enum Direction {
    Rx,
    Tx,
}

/// Why a descriptor chain was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChainError {
    /// A device-writable descriptor on TX, a readable one on RX.
    WrongDirection,
    /// More bytes than [`MAX_BUFFER_LEN`] (TX).
    TooLong,
    /// Fewer bytes than a virtio-net header (TX), no room at all (RX).
    TooShort,
    /// The chain ended on a descriptor with NEXT set: a loop, a next index
    /// out of the table, or an unreadable descriptor.
    Truncated,
    /// A buffer outside guest memory.
    Memory,
    /// The head index is outside the queue, so the chain cannot be
    /// returned.
    BadHead,
}

pub struct QueuePair {
    pub(super) index: usize,
    pub(super) mem: GuestMemoryMmap,
    pub(super) rx: Queue,
    pub(super) tx: Queue,
    pub(super) backend: Box<dyn FrameBackend>,
    pub(super) mrg_rxbuf: bool,
    /// One frame read from the backend; `rx_pending` says it is still
    /// waiting for guest buffers.
    pub(super) rx_buf: Box<[u8]>,
    pub(super) rx_pending: Option<usize>,
    pub(super) tx_buf: Box<[u8]>,
    /// The guest memory ranges of the TX chain being sent (zero-copy path);
    /// `None` when the backend cannot write raw iovecs.
    pub(super) tx_iovecs: Option<TxIovecs>,
    /// TX chains sent in the current pass, for the used ring.
    pub(super) tx_used: UsedBatch,
    /// RX chains filled and not yet published to the used ring.
    pub(super) rx_used: UsedBatch,
    /// (head, used len) of the chains one RX frame occupies.
    pub(super) rx_chains: Vec<(u16, u32)>,
    /// RX chains parsed ahead for zero-copy receive; `None` when the
    /// backend cannot read raw iovecs.
    pub(super) rx_buffers: Option<RxBuffers>,
    pub(super) rx_broken: bool,
    pub(super) tx_broken: bool,
    pub(super) metrics: Arc<NetMetrics>,
    /// Guest-triggerable warnings.
    pub(super) warnings: LogRateLimiter,
}

impl QueuePair {
    /// `index` is the pair number: its queues are `2*index` (rx) and
    /// `2*index + 1` (tx). `mrg_rxbuf` is the negotiated
    /// VIRTIO_NET_F_MRG_RXBUF. The queues' EVENT_IDX setting is used as is.
    pub fn new(
        index: usize,
        mem: GuestMemoryMmap,
        rx: Queue,
        tx: Queue,
        backend: Box<dyn FrameBackend>,
        mrg_rxbuf: bool,
        metrics: Arc<NetMetrics>,
    ) -> Self {
        let chains = usize::from(rx.max_size());
        let tx_iovecs = backend.writes_iovecs().then(TxIovecs::new);
        let rx_buffers = backend
            .reads_iovecs()
            .then(|| RxBuffers::new(usize::from(rx.max_size())));
        Self {
            index,
            mem,
            rx,
            tx,
            backend,
            mrg_rxbuf,
            rx_buf: vec![0u8; MAX_BUFFER_LEN].into_boxed_slice(),
            rx_pending: None,
            tx_buf: vec![0u8; MAX_BUFFER_LEN].into_boxed_slice(),
            tx_iovecs,
            tx_used: UsedBatch::new(TX_BUDGET),
            // Published at RX_PUBLISH_EVERY, checked after each frame.
            rx_used: UsedBatch::new(RX_PUBLISH_EVERY + chains),
            rx_chains: Vec::with_capacity(chains),
            rx_buffers,
            rx_broken: false,
            tx_broken: false,
            metrics,
            warnings: LogRateLimiter::new(),
        }
    }

    /// The pair number.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Virtqueue index of the rx queue (for interrupts).
    pub fn rx_queue_index(&self) -> u16 {
        (self.index * 2) as u16
    }

    /// Virtqueue index of the tx queue (for interrupts).
    pub fn tx_queue_index(&self) -> u16 {
        (self.index * 2 + 1) as u16
    }

    /// The backend, e.g. for its fd.
    pub fn backend(&self) -> &dyn FrameBackend {
        self.backend.as_ref()
    }

    /// Whether a frame read from the backend waits for guest buffers.
    pub fn has_pending_rx(&self) -> bool {
        self.rx_pending.is_some()
    }

    /// Whether the driver broke the rx / tx queue (no more processing).
    pub fn is_broken(&self) -> (bool, bool) {
        (self.rx_broken, self.tx_broken)
    }

    /// Gives the backend back (on reset); a pending RX frame is dropped,
    /// and so are the rx chains parsed ahead (the queue goes too).
    pub fn into_backend(self) -> Box<dyn FrameBackend> {
        self.backend
    }

    pub(super) fn warn_rate_limited(&mut self, what: &str, detail: &dyn std::fmt::Debug) {
        warn_rate_limited(&mut self.warnings, self.index, what, detail);
    }

    /// Runs one batch of `direction` (`batch_fn` returns how many used
    /// entries it added): whether to notify, or the driver's error; the
    /// batch's counters are published either way.
    pub(super) fn run_batch(
        &mut self,
        direction: Direction,
        batch_fn: impl FnOnce(&mut Self, &mut BatchCounters) -> Result<u32, virtio_queue::Error>,
    ) -> Result<bool, QueuePairError> {
        let mut batch = BatchCounters::default();
        let used = batch_fn(self, &mut batch);
        // Both directions' chains go through a `UsedBatch`, which must say
        // whether to notify (the queue's own count misses them).
        let (index, queue, used_batch, broken) = match direction {
            Direction::Rx => (
                self.rx_queue_index(),
                &self.rx,
                &mut self.rx_used,
                &mut self.rx_broken,
            ),
            Direction::Tx => (
                self.tx_queue_index(),
                &self.tx,
                &mut self.tx_used,
                &mut self.tx_broken,
            ),
        };
        let mem = &self.mem;
        let used = used.and_then(|n| {
            if n > 0 {
                used_batch.needs_notification(queue, mem)
            } else {
                Ok(false)
            }
        });
        let result = settle_batch_result(index, broken, used);
        if let Ok(notify) = result {
            batch.notifications += u64::from(notify);
        }
        self.publish(&batch);
        result
    }

    fn publish(&self, batch: &BatchCounters) {
        if let Some(m) = self.metrics.pair(self.index) {
            m.publish(batch);
        }
    }
}

/// Logs a guest-triggerable warning of pair `index`, rate-limited by
/// `warnings` (a free function, for code that holds other fields of the
/// pair borrowed).
pub(super) fn warn_rate_limited(
    warnings: &mut LogRateLimiter,
    index: usize,
    what: &str,
    detail: &dyn std::fmt::Debug,
) {
    if let Some(occurrences) = warnings.hit() {
        warn!(pair = index, occurrences, "virtio-net: {what}: {detail:?}");
    }
}

/// Ends a batch on `queue` (virtqueue `index`) that added `used` entries:
/// whether the driver asked to be notified. A queue error means the driver
/// broke the queue, which is then marked in `broken` and left alone.
pub(super) fn settle_batch(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    index: u16,
    broken: &mut bool,
    used: Result<u32, virtio_queue::Error>,
) -> Result<bool, QueuePairError> {
    let notify = used.and_then(|used| {
        if used > 0 {
            queue.needs_notification(mem)
        } else {
            Ok(false)
        }
    });
    settle_batch_result(index, broken, notify)
}

/// A batch's verdict on virtqueue `index`: whether to notify, or the
/// driver's error, which marks the queue in `broken`.
fn settle_batch_result(
    index: u16,
    broken: &mut bool,
    notify: Result<bool, virtio_queue::Error>,
) -> Result<bool, QueuePairError> {
    notify.map_err(|source| {
        *broken = true;
        QueuePairError::BrokenQueue {
            queue: index,
            source,
        }
    })
}
