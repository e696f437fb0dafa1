//! Host-side network backends for petrel's virtio-net device.
//!
//! The device model moves whole Ethernet frames, each prefixed with a
//! [`VNET_HDR_LEN`]-byte virtio-net header, between guest queues and a
//! [`FrameBackend`]. This crate knows nothing of KVM, guest memory or virtio
//! queues; it only provides the backends:
//!
//! - [`backend`]: the [`FrameBackend`] trait and the negotiated [`Offloads`].
//! - [`tap`]: [`Tap`], a Linux tap interface (`IFF_TAP | IFF_NO_PI |
//!   IFF_VNET_HDR`, multi-queue when asked) opened by name or adopted from a
//!   descriptor handed over by a parent process.
//! - [`seqpacket`]: [`SeqpacketBackend`], an unprivileged in-process backend
//!   over an `AF_UNIX` `SOCK_SEQPACKET` socket pair, for tests.
//! - `sys` (private): ioctl numbers, the `ifreq` layout and the only `unsafe`
//!   code of the crate, one foreign call per block.

pub mod backend;
pub mod binding;
pub mod dhcp;
pub mod macvtap;
pub mod netlink;
pub mod nft;
pub mod ra;
pub mod seqpacket;
pub mod sriov;
mod sys;
pub mod tap;

pub use backend::{FrameBackend, Offloads};
pub use seqpacket::{seqpacket_pair, SeqpacketBackend};
pub use tap::{Tap, TapError};

/// Size of the virtio-net header petrel uses on every backend
/// (`virtio_net_hdr_v1`, `num_buffers` included).
pub const VNET_HDR_LEN: usize = 12;
