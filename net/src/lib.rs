//! Pod network plumbing for petrel: everything between a VM NIC's backend
//! and a Kubernetes-style pod network, the way KubeVirt's
//! `pkg/network/setup` does it. The backends themselves (the
//! [`FrameBackend`](net_backend::FrameBackend) contract, taps, macvtap) are
//! in the `net_backend` crate, which this one uses to open taps.
//!
//! - [`binding`]: the bridge and masquerade bindings, which wire a tap into
//!   the pod's network namespace and undo it on drop.
//! - [`service`]: [`PodNetService`], one bound NIC's DHCPv4, router
//!   advertisement and DHCPv6 servers with their sockets, RA timer and the
//!   binding's undo guard, served from the VMM's control loop.
//! - [`dhcp`] (DHCPv4, and [`dhcp::v6`]) and [`ra`]: the protocol servers.
//! - [`nft`], [`netlink`]: nftables rules (through the `nft` binary) and a
//!   small rtnetlink client.
//! - [`passt`]: the passt and slirp bindings: passt's command line and
//!   process, one per NIC, over a [`net_backend::PasstStream`].
//! - [`sriov`]: SR-IOV VF resolution from the pod's device-plugin
//!   environment and network-status annotation.
//! - `sys` (private): the socket system calls std lacks, the crate's only
//!   `unsafe` code, one foreign call per block.

// Long test functions walk one scenario start to end; only test code may.
#![cfg_attr(test, allow(clippy::too_many_lines))]

pub mod binding;
pub mod budget;
pub mod contained;
pub mod dhcp;
pub mod netlink;
pub mod nft;
pub mod passt;
pub mod ra;
pub mod service;
pub mod sriov;
mod sys;

pub use nft::Protocol;
pub use service::{BoundPodNic, PodNetService};
