//! The host plan: the spec plan resolved inside the pod. Everything `run`
//! takes from the host — which pod interface a network arrived on, whether
//! the pod has IPv6, the DNS settings, a macvtap link's MAC, the VF of an
//! SR-IOV NIC, handed-over tap descriptors — is read here, once, so that
//! `petrel validate --host` prints what `run` will do and `run` executes it
//! without deciding anything again.

mod passt;
mod resolve;
mod resource;
mod text;
mod view;

#[cfg(test)]
mod tests;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Serialize;

use crate::plan::{Binding, Ipv4Cidr, Ipv6Cidr, MacAddr, PlanErrors, PortPlan};

pub use passt::{find_on_path, PasstPlan, PodAddrs, PASST_PROGRAM};
pub use resolve::{resolve, HostInputs};
pub use view::{HostView, SysHost};

/// What the host side of each NIC is, in plan order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPlan {
    pub nics: Vec<HostNic>,
}

/// One NIC's host side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostNic {
    /// The spec's interface name (the device id).
    pub name: String,
    /// The MAC the guest gets: the plan's, or the macvtap link's.
    pub guest_mac: MacAddr,
    pub backend: HostBackend,
}

/// What carries a NIC's frames on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostBackend {
    /// Taps the parent process handed over (`--tap-fd`), one per queue pair.
    TapFds { fds: Vec<i32> },
    /// A tap opened by name, created when absent.
    Tap { name: String },
    /// A pod binding petrel plumbs itself (bridge or masquerade).
    Pod(PodPlan),
    /// A macvtap link of the pod; `set_link_mac` when the spec's MAC must
    /// be given to the link (a macvtap receives only its own address).
    Macvtap { iface: String, set_link_mac: bool },
    /// The passt program, started per NIC (passt and slirp bindings).
    Passt(PasstPlan),
    /// An SR-IOV VF passed through with VFIO.
    Vfio {
        address: String,
        sysfs_path: PathBuf,
        resolved_from: String,
    },
}

/// A pod binding, with every host fact it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodPlan {
    pub binding: Binding,
    /// The pod interface the network arrives on (`eth0`, `net1`, …).
    pub pod_iface: String,
    pub tap: String,
    /// Masquerade: the guest's IPv4 network.
    pub ipv4: Option<Ipv4Cidr>,
    /// Masquerade: the guest's IPv6 network, only when the pod has IPv6.
    pub ipv6: Option<Ipv6Cidr>,
    pub ports: Vec<PortPlan>,
    /// Masquerade: TCP ports petrel serves in the pod (its metrics port),
    /// never forwarded to the guest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reserved_ports: Vec<u16>,
    /// From the pod's resolv.conf, for DHCP.
    pub dns_servers: Vec<Ipv4Addr>,
    pub dns_search: Vec<String>,
    /// Bridge without a spec MAC: the guest takes the pod interface's MAC
    /// (the HostNic's `guest_mac`) and the pod interface another one, as
    /// KubeVirt and Virtink do.
    pub delegate_mac: bool,
    /// A privileged `petrel net-setup` plumbed it: `run` only attaches
    /// (set from the net-setup record, never by the host plan itself).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub prepared: bool,
}

impl HostPlan {
    /// Human-readable summary (for `petrel validate --host`).
    pub fn to_text(&self) -> String {
        text::render(self)
    }

    /// The host side of NIC `name`.
    pub fn nic(&self, name: &str) -> Option<&HostNic> {
        self.nics.iter().find(|n| n.name == name)
    }
}

/// Every way the pod does not fit the spec, reported together like plan
/// errors.
pub type HostErrors = PlanErrors;
