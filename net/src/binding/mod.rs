//! Pod network bindings: wiring a VM NIC into a Kubernetes-style pod's
//! network namespace, the way KubeVirt's `pkg/network/setup` does.
//!
//! Two bindings are provided, each for one NIC:
//!
//! - [`setup_bridge`]: the pod interface (e.g. `eth0`) becomes a port of a
//!   new bridge (`k6t-eth0`) together with the VM's tap; the pod's IPv4
//!   address moves from `eth0` to the guest, which gets it (with the pod's
//!   gateway, routes, MTU and DNS) from the in-process DHCP server that
//!   answers on the bridge from `169.254.75.10`. See [`bridge`].
//! - [`setup_masquerade`]: the guest sits on a private subnet (default
//!   `10.0.2.0/24`) behind a bridge holding the gateway address
//!   (`10.0.2.1`), and nftables NATs between it and the pod address, which
//!   stays on `eth0`. See [`masquerade`].
//!
//! Both return a [`BindingSetup`]: the tap queues for the device model, the
//! DHCP server and its socket, and a [`BindingGuard`] that undoes every
//! change in reverse order when dropped (or, with errors reported, on
//! [`BindingGuard::teardown`]). If setup fails half-way, what was done so far
//! is undone before the error is returned.
//!
//! Setup is idempotent with respect to a previous run killed before it could
//! clean up (SIGKILL, OOM): it first removes a stale bridge, tap and nft
//! table of the same names. The bridge binding records the pod interface's
//! original state (MAC, IPv4 addresses, routes) in the bridge's alias
//! (`ip link show k6t-eth0` shows it) before touching the interface, so a
//! later run can put the pod interface back first and then start over.
//!
//! KubeVirt's privilege split uses the same steps in two processes:
//! [`BindingKind::plumb`] (root, `petrel net-setup`) does everything that
//! needs CAP_NET_ADMIN and creates the tap persistent and owned by the
//! unprivileged uid ([`TapOwner`]); [`BindingKind::attach`] (that uid, only
//! CAP_NET_BIND_SERVICE) checks the bridge and tap by reading netlink,
//! attaches to the tap's queues and binds DHCP; [`BindingKind::remove`]
//! (`petrel net-teardown`) removes it by name.
//!
//! Everything happens in the network namespace of the calling thread, with
//! netlink, `/proc/sys` and the `nft` binary (forked from the calling
//! thread); the [`BindingGuard`] must be dropped in the same namespace.
//! Sysctls are read first and written only when they differ
//! ([`ensure_sysctl`]), so a container whose pod declares them
//! (`securityContext.sysctls`) needs no writable `/proc/sys`.
//! Needs CAP_NET_ADMIN (and CAP_NET_RAW / CAP_NET_BIND_SERVICE for the DHCP
//! socket).

mod dns;
mod guard;
mod request;
mod steps;
mod sysctl;

pub mod bridge;
pub mod masquerade;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use net_backend::{Tap, TapError};

use crate::dhcp::{DhcpServer, DhcpSocket};
use crate::netlink::NetlinkError;
use crate::nft::{self, NftError};

pub use bridge::setup_bridge;
pub use dns::{parse_resolv_conf, read_resolv_conf, DnsInfo};
pub use guard::BindingGuard;
pub use masquerade::setup_masquerade;
pub use request::{default_bridge_name, nft_table_name, PodBindingRequest};
pub use steps::pod_has_global_ipv6;
pub use sysctl::{ensure_sysctl, sysctl_path, SysctlError};

use guard::UndoStep;
pub(crate) use steps::first_hosts_v6;
use steps::{
    attach_tap, bind_dhcp, cleanup_stale, ensure_address, first_hosts_v4, mtu16, open_tap,
    prepared_bridge, random_mac,
};

/// Prefix of the bridge name KubeVirt uses (`k6t-<pod iface>`).
pub const BRIDGE_PREFIX: &str = "k6t-";
/// Prefix of the nftables table of a VM ([`nft_table_name`]).
pub const NFT_TABLE_PREFIX: &str = "petrel_";
/// Longest interface name, NUL excluded.
pub use net_backend::MAX_IFNAME_LEN;
/// Longest nft table name [`nft_table_name`] produces.
pub const MAX_TABLE_NAME_LEN: usize = 64;
/// The masquerade binding's default IPv4 guest network (KubeVirt's
/// `vmNetworkCIDR` default).
pub const DEFAULT_V4_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 0, 2, 0), 24);
/// The masquerade binding's customary IPv6 guest network (KubeVirt's
/// `vmIPv6NetworkCIDR` default).
pub const DEFAULT_V6_CIDR: (Ipv6Addr, u8) = (Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 0), 120);
/// Lease time handed out: effectively infinite, as in KubeVirt, since the
/// guest's address never changes while it runs.
pub const LEASE_SECS: u32 = u32::MAX;

/// Which binding wires a NIC into the pod network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    /// [`setup_bridge`]: the guest takes the pod interface's place on L2.
    Bridge,
    /// [`setup_masquerade`]: the guest sits behind NAT on a private subnet.
    Masquerade,
}

impl BindingKind {
    /// The binding's name as KubeVirt spells it (`bridge`, `masquerade`).
    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::Bridge => "bridge",
            BindingKind::Masquerade => "masquerade",
        }
    }

    /// Sets up this binding for `req` in one process: plumbing, taps and
    /// DHCP (needs CAP_NET_ADMIN).
    pub fn setup(self, req: &PodBindingRequest) -> Result<BindingSetup, BindingError> {
        match self {
            BindingKind::Bridge => setup_bridge(req),
            BindingKind::Masquerade => setup_masquerade(req),
        }
    }

    /// The privileged half of the split (`petrel net-setup`): every change
    /// that needs CAP_NET_ADMIN — bridge, addresses, the tap created
    /// persistent and owned by `owner`, sysctls, nft table — after
    /// removing stale state of the same names. Nothing is served; the
    /// returned guard undoes it all unless [kept](BindingGuard::keep).
    pub fn plumb(self, req: &PodBindingRequest, owner: TapOwner) -> Result<Plumbed, BindingError> {
        let mode = TapMode::Persistent(owner);
        match self {
            BindingKind::Bridge => bridge::plumb(req, mode).map(|(p, _)| p),
            BindingKind::Masquerade => masquerade::plumb(req, mode).map(|(p, _)| p),
        }
    }

    /// The unprivileged half (`petrel run` after `net-setup`): checks the
    /// prepared bridge and tap, attaches to the tap's queues and binds the
    /// DHCP socket; no netlink write, no nft. The returned guard is empty:
    /// the plumbing is `net-teardown`'s to remove.
    pub fn attach(self, req: &PodBindingRequest) -> Result<BindingSetup, BindingError> {
        match self {
            BindingKind::Bridge => bridge::attach(req),
            BindingKind::Masquerade => masquerade::attach(req),
        }
    }

    /// Removes what [`plumb`](Self::plumb) (or a killed
    /// [`setup`](Self::setup)) left for `req`: the nft table, the tap, the
    /// bridge (the pod interface restored from the bridge's alias). What is
    /// absent already is fine.
    pub fn remove(self, req: &PodBindingRequest) -> Result<(), BindingError> {
        req.validate()?;
        if self == BindingKind::Masquerade {
            nft::apply(&masquerade::masquerade_rules(req).delete_json())?;
        }
        let mut nl = crate::netlink::Netlink::new()?;
        cleanup_stale(&mut nl, req)
    }
}

/// Who owns a tap `net-setup` creates: the uid (and gid) the unprivileged
/// VMM runs as (KubeVirt's `qemu`, 107).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapOwner {
    /// Owner uid (TUNSETOWNER).
    pub uid: u32,
    /// Owner gid (TUNSETGROUP).
    pub gid: u32,
}

/// How the plumbing step makes the tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TapMode {
    /// Opened by this process, gone when its queues close.
    Open,
    /// Persistent, owned by another uid, no queue kept open.
    Persistent(TapOwner),
}

/// What the privileged half leaves: its undo guard, and the facts the
/// unprivileged half will find again.
#[derive(Debug)]
pub struct Plumbed {
    /// Undoes the plumbing on drop unless [kept](BindingGuard::keep).
    pub guard: BindingGuard,
    /// The pod interface's MTU, which bridge and tap got.
    pub mtu: u16,
    /// The MAC the guest must use.
    pub guest_mac: [u8; 6],
}

impl std::fmt::Display for BindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors from setting up a binding.
#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    /// The request is inconsistent.
    #[error("invalid binding request for NIC {nic:?}: {reason}")]
    Invalid {
        /// The NIC's name.
        nic: String,
        /// What is wrong.
        reason: String,
    },
    /// A netlink operation failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The tap could not be created or configured.
    #[error("tap {name}: {source}")]
    Tap {
        /// The tap's name.
        name: String,
        /// The underlying error.
        source: TapError,
    },
    /// `nft` failed.
    #[error("nftables: {0}")]
    Nft(#[from] NftError),
    /// The DHCP socket could not be bound.
    #[error("DHCP socket on {iface}: {source}")]
    Dhcp {
        /// The interface it was to be bound to.
        iface: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A sysctl could not be read, or must change and could not be set.
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    /// The pod interface has no Ethernet MAC address (bridge binding).
    #[error("pod interface {iface} has no Ethernet MAC address")]
    NoPodMac {
        /// The interface.
        iface: String,
    },
    /// State left by an earlier run could not be cleaned up.
    #[error("cannot clean up stale state of {name}: {reason}")]
    Stale {
        /// The conflicting interface or table.
        name: String,
        /// Why.
        reason: String,
    },
    /// The plumbing a privileged `net-setup` makes is not there (or not
    /// as it makes it).
    #[error("{name}: {reason}; the pod was not prepared for this VM (run `petrel net-setup SPEC --uid UID` as root in the pod's network namespace first)")]
    NotPrepared {
        /// The missing or wrong link.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// No random bytes for a MAC address.
    #[error("cannot read random bytes for a MAC address: {0}")]
    Random(#[source] io::Error),
}

/// What a binding hands to the VMM for one NIC.
///
/// Fields drop in declaration order: the taps (a non-persistent tap
/// vanishes with its last queue), the DHCP socket, then the guard.
#[derive(Debug)]
pub struct BindingSetup {
    /// One [`Tap`] per queue, up and a port of the bridge.
    pub taps: Vec<Tap>,
    /// The DHCP server and its socket (bound to the bridge), when there is
    /// an IPv4 address to hand out.
    pub dhcp: Option<(DhcpServer, DhcpSocket)>,
    /// Undoes everything when dropped.
    pub guard: BindingGuard,
    /// MTU of the pod interface, to be used for the guest (virtio-net
    /// `mtu` config field) as it is for the bridge and tap.
    pub mtu: u16,
    /// The MAC the guest must use (the DHCP server answers only it).
    pub guest_mac: [u8; 6],
}
