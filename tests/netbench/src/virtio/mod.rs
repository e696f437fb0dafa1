//! The virtio-net modes: the driver's rings and interrupt, the `direct`
//! mode (the benchmark thread calls the `QueuePair` itself) and the
//! `worker` mode (the full `Net` device with its worker threads).

pub mod control;
pub mod direct;
pub mod driver;
mod interrupt;
pub mod worker;

pub use control::OFFLOADS;
pub use interrupt::BenchInterrupt;

use devices::virtio::net::QUEUE_SIZE;

/// Guest memory per queue pair and the layout inside it.
pub const PAIR_MEM: u64 = 16 << 20;
pub const RX_RING_OFF: u64 = 0;
pub const TX_RING_OFF: u64 = 0x4000;
pub const CTRL_RING_OFF: u64 = 0x8000;
pub const CTRL_BUF_OFF: u64 = 0xc000;
pub const RX_BUF_OFF: u64 = 0x10_0000;
pub const TX_BUF_OFF: u64 = 0x50_0000;
/// Size of the rx and tx rings (the device's maximum).
pub const RING: u16 = QUEUE_SIZE;
pub const CTRL_RING: u16 = 16;
/// The worker-mode device's id; its workers are "pbench-q0", "pbench-q1".
pub const DEVICE_ID: &str = "pbench";
/// What the device's worker thread names start with.
pub const WORKER_PREFIX: &str = "pbench-q";
