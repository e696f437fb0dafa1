//! virtio-net: a multi-queue network device whose datapath runs on one
//! worker thread per queue pair, each moving frames between the guest's
//! virtqueues and a [`net_backend::FrameBackend`] (a tap with IFF_VNET_HDR in
//! production, a SOCK_SEQPACKET pair in tests).
//!
//! Queue order (virtio 1.x, 5.1.2): rx0, tx0, rx1, tx1, …, rx(N-1),
//! tx(N-1), then the control queue at index 2N when VIRTIO_NET_F_MQ is
//! negotiated (at index 2 without MQ).
//!
//! The virtio-net header (virtio_net_hdr_v1, 12 bytes) travels untouched
//! between guest buffers and the backend, so checksum and segmentation
//! offloads are the tap's business; the device only fixes `num_buffers`
//! on receive.

mod avail_ring;
mod context;
mod ctrl_queue;
mod device;
mod event_handler;
mod metrics;
mod queue_pair;
mod rx;
mod rx_buffers;
mod slice_chain;
mod tx;
mod used_batch;

/// Frame limits (shared with e1000): the per-pair RX and TX buffers are
/// [`MAX_BUFFER_LEN`] bytes.
pub use crate::frame::{MAX_BUFFER_LEN, MAX_FRAME_LEN, VNET_HDR_LEN};
pub use context::NetContext;
pub use ctrl_queue::{CtrlOutcome, CtrlQueue, CtrlState, CTRL_BUDGET};
pub use device::Net;
pub use event_handler::NetEpollHandler;
pub use metrics::{DeviceCounters, NetMetrics, QueuePairCounters, QueuePairMetrics};
pub use queue_pair::{QueuePair, QueuePairError, RxOutcome, TxOutcome, RX_BUDGET, TX_BUDGET};
/// Maximum size of every queue.
pub const QUEUE_SIZE: u16 = 256;
/// Upper bound of queue pairs (virtio allows 0x8000; one thread each here).
pub const MAX_QUEUE_PAIRS: usize = 64;
/// Size of the configuration space the device exposes: mac[6], status,
/// max_virtqueue_pairs, mtu.
pub const CONFIG_SPACE_LEN: usize = 12;
/// Offset of `num_buffers` in `virtio_net_hdr_v1`.
pub(crate) const NUM_BUFFERS_OFFSET: usize = 10;

/// Feature bit as a mask.
pub(crate) const fn bit(feature: u32) -> u64 {
    1u64 << feature
}

/// Errors creating a [`Net`].
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("a virtio-net device needs at least one backend")]
    NoBackends,
    #[error("{0} queue pairs requested, at most {MAX_QUEUE_PAIRS} supported")]
    TooManyQueuePairs(usize),
    #[error("{got} CPU affinity entries for {pairs} queue pairs")]
    AffinityCount { got: usize, pairs: usize },
    #[error("host CPU {0} is out of range")]
    BadCpu(usize),
    #[error("MTU {0} is out of range (68..=65535 minus headers)")]
    BadMtu(u16),
}

#[cfg(test)]
mod tests;
