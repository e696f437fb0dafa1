//! The frame-backend contract and the host backends behind petrel's NIC
//! models (the role Cloud Hypervisor's `net_util` plays).
//!
//! A NIC model moves whole Ethernet frames, each prefixed with a
//! [`VNET_HDR_LEN`]-byte virtio-net header, between guest queues and a
//! [`FrameBackend`]. This crate knows nothing of KVM, guest memory, virtio
//! queues or pod plumbing (bindings, DHCP, netlink live in the `net`
//! crate), so the device crate depends on it alone:
//!
//! - [`frame_backend`]: the [`FrameBackend`] trait; [`offloads`]: the
//!   negotiated [`Offloads`].
//! - [`tap`]: [`Tap`], a Linux tap interface (`IFF_TAP | IFF_NO_PI |
//!   IFF_VNET_HDR`, multi-queue when asked) opened by name or adopted from a
//!   descriptor handed over by a parent process.
//! - [`macvtap`]: the queues of a macvtap interface, as [`Tap`]s.
//! - [`passt_stream`]: [`PasstStream`], the length-prefixed frame stream
//!   passt serves (QEMU's stream netdev format), without virtio-net headers.
//! - [`seqpacket`]: [`SeqpacketBackend`], an unprivileged in-process backend
//!   over an `AF_UNIX` `SOCK_SEQPACKET` socket pair, for tests.
//! - [`mac`] and [`ifname`]: the MAC address type ([`MacAddr`]) and the
//!   interface-name check ([`validate_ifname`]) every petrel crate shares.
//! - [`syscall`]: the errno/EINTR and setsockopt helpers both network crates
//!   use (one `unsafe` call, in `set_opt`).
//! - `sys` (private): ioctl numbers, the `ifreq` layout and the rest of the `unsafe`
//!   code of the crate, one foreign call per block.

pub mod frame_backend;
pub mod ifname;
pub mod mac;
pub mod macvtap;
pub mod offloads;
pub mod passt_stream;
pub mod seqpacket;
mod sys;
pub mod syscall;
pub mod tap;

pub use frame_backend::FrameBackend;
pub use ifname::{validate_ifname, IfNameError, MAX_IFNAME_LEN};
pub use mac::{MacAddr, MacError};
pub use macvtap::MacvtapError;
pub use offloads::Offloads;
pub use passt_stream::PasstStream;
pub use seqpacket::{seqpacket_pair, SeqpacketBackend};
pub use tap::{Tap, TapError};

/// Size of the virtio-net header petrel uses on every backend
/// (`virtio_net_hdr_v1`, `num_buffers` included).
pub const VNET_HDR_LEN: usize = 12;
