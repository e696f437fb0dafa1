//! The validated VM plan: what petrel will actually build from a [`VmSpec`].
//!
//! [`resolve`] checks the spec and fills in every default. All problems are
//! collected (none stops the others) and returned together as [`PlanErrors`];
//! each [`FieldError`] names the field path, the offending value and what is
//! allowed. The rules:
//!
//! * **CPU**: vCPUs = sockets × cores × threads (each defaults to 1) and must
//!   be 1–254.
//! * **Memory**: KubeVirt `domain.memory.guest`, else `resources.requests.memory`,
//!   else `resources.limits.memory`; Virtink `instance.memory.size`. Kubernetes
//!   quantity notation; at least 16 MiB; 128 MiB (with a warning) when absent.
//! * **Kernel**: `firmware.kernelBoot` (`kernelArgs`/`cmdline`,
//!   `container.kernelPath`/`initrdPath` as local paths) or Virtink
//!   `instance.kernel`; [`Overrides`] from the command line win. A missing
//!   kernel is not a plan error.
//! * **Interfaces and networks** pair up by name, one to one, names unique.
//!   Each network has exactly one source (`pod`, `multus`, and for KubeVirt
//!   `genie`, `resource`); at most one pod network, where a multus network with
//!   `default: true` counts as the pod network. Each interface has exactly one
//!   binding: `bridge` works on any network; `masquerade` and `slirp` need
//!   the pod network, `passt` the pod network or a multus network (DCE5's
//!   passt mode on ipvlan/macvlan links); `sriov` and `macvtap` need a
//!   multus network.
//! * When a KubeVirt VM has neither interfaces nor networks and
//!   `autoattachPodInterface` is not `false`, the interface `default` (bridge
//!   binding on the pod network) is added, with a warning.
//! * **Ports** (pod network only: forwarded with masquerade, slirp and passt,
//!   informational with bridge): port 1–65535, protocol TCP or UDP (any case,
//!   default TCP), unique names per interface; `portRanges` is refused.
//! * **Virtink**: an interface without a binding is bridge (its webhook);
//!   vdpa and vhostUser are refused by name.
//! * **state**: up (default), down (link down), absent (not attached).
//! * **dhcpOptions**: NTP servers are IPv4 addresses; private options
//!   224–254, once each, at most 255 bytes.
//! * **MAC**: `aa:bb:cc:dd:ee:ff` or with `-`; unicast and not all-zero; unique.
//!   Without one, a stable locally administered `02:…` address is derived
//!   from the namespace, VM and interface names (a bridge on the pod network
//!   then takes the pod interface's MAC instead, in the host plan).
//! * **PCI**: `dddd:bb:dd.f` (hex, device ≤ 0x1f, function ≤ 7), unique, not
//!   the host bridge slot 0; other NICs get slots from `0000:00:02.0` up in
//!   interface order, skipping slots used by explicit addresses.
//! * **bootOrder** > 0 and unique; **model** one of virtio, e1000, e1000e,
//!   ne2k_pci, pcnet, rtl8139 (default virtio).
//! * **Masquerade CIDRs**: IPv4 prefix /30 or shorter, IPv6 /126 or shorter;
//!   defaults 10.0.2.0/24 and fd10:0:2::/120 (KubeVirt), 10.0.2.0/30 (Virtink).
//! * **Queues**: with `networkInterfaceMultiqueue: true`, virtio NICs get one
//!   queue pair per vCPU (passt and slirp NICs keep one: passt serves one
//!   socket).
//! * **Backends**: bridge/masquerade → a tap named `tap-<iface>` (cut to 15
//!   chars); macvtap → the pod interface; sriov → VFIO; slirp/passt → user
//!   space (a passt process per NIC, one queue pair). The petrel annotation
//!   `petrel.io/tap.<iface>: <tap>` wires an interface straight to an
//!   existing tap (binding `Tap`, no pod plumbing).
//!
//! Fields that are ignored or out of scope end up in [`VmPlan::warnings`].

mod cidr;
mod mac;
mod net;
mod pci;
mod support;
mod text;
mod validate;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::spec::{SpecKind, VmSpec};

pub use cidr::{
    Ipv4Cidr, Ipv6Cidr, KUBEVIRT_DEFAULT_IPV4_CIDR, KUBEVIRT_DEFAULT_IPV6_CIDR,
    VIRTINK_DEFAULT_CIDR,
};
pub use mac::{generate_mac, MacAddr, MacError};
pub use pci::{PciAddress, PciError};

/// Annotation prefix for direct tap wiring: `petrel.io/tap.<iface>: <tap>`.
pub const TAP_ANNOTATION_PREFIX: &str = "petrel.io/tap.";
/// Kernel command line used when neither the spec nor the CLI gives one.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1";
/// Memory used when the spec gives none.
pub const DEFAULT_MEMORY_BYTES: u64 = 128 << 20;
/// Smallest memory size accepted.
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;
/// Largest vCPU count accepted.
pub const MAX_VCPUS: u32 = 254;
/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Command-line values that replace what the spec says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// e.g. `spec.domain.devices.interfaces[1].macAddress`.
    pub path: String,
    /// The offending value as written (empty when the problem is a missing or
    /// structural one).
    pub value: String,
    /// What is wrong and what is allowed; reads after the value.
    pub message: String,
}

impl FieldError {
    pub fn new(
        path: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            path: path.into(),
            value: value.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.path, self.message)
        } else {
            write!(f, "{}: {:?} {}", self.path, self.value, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// Every problem found while resolving a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanErrors(pub Vec<FieldError>);

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanErrors {}

/// CPU topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub sockets: u8,
    pub cores: u8,
    pub threads: u8,
}

/// How the guest kernel is booted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootPlan {
    /// Local kernel path (CLI override, else KubeVirt `kernelPath`).
    pub kernel: Option<PathBuf>,
    /// Local initrd path (CLI override, else KubeVirt `initrdPath`).
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// Container image reference given in the spec (not pulled by petrel).
    pub kernel_image: Option<String>,
}

/// Emulated NIC model; serializes as the KubeVirt model string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NicModel {
    #[serde(rename = "virtio")]
    VirtioNet,
    #[serde(rename = "e1000")]
    E1000,
    #[serde(rename = "e1000e")]
    E1000e,
    #[serde(rename = "ne2k_pci")]
    Ne2kPci,
    #[serde(rename = "pcnet")]
    Pcnet,
    #[serde(rename = "rtl8139")]
    Rtl8139,
    #[serde(rename = "igb")]
    Igb,
}

impl NicModel {
    pub const ALL: [NicModel; 7] = [
        NicModel::VirtioNet,
        NicModel::E1000,
        NicModel::E1000e,
        NicModel::Ne2kPci,
        NicModel::Pcnet,
        NicModel::Rtl8139,
        NicModel::Igb,
    ];

    /// The KubeVirt model string.
    pub fn as_str(self) -> &'static str {
        match self {
            NicModel::VirtioNet => "virtio",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
            NicModel::Ne2kPci => "ne2k_pci",
            NicModel::Pcnet => "pcnet",
            NicModel::Rtl8139 => "rtl8139",
            NicModel::Igb => "igb",
        }
    }

    pub fn from_kubevirt(s: &str) -> Option<NicModel> {
        NicModel::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for NicModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the NIC is bound to its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Binding {
    Bridge,
    Masquerade,
    Slirp,
    Sriov,
    Macvtap,
    Passt,
    /// petrel extension: wired to an existing tap (`petrel.io/tap.<iface>`).
    Tap,
}

impl Binding {
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::Bridge => "bridge",
            Binding::Masquerade => "masquerade",
            Binding::Slirp => "slirp",
            Binding::Sriov => "sriov",
            Binding::Macvtap => "macvtap",
            Binding::Passt => "passt",
            Binding::Tap => "tap",
        }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The network a NIC is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum NetworkPlan {
    /// The pod network (`eth0`). CIDRs are set for masquerade.
    Pod {
        ipv4_cidr: Option<Ipv4Cidr>,
        ipv6_cidr: Option<Ipv6Cidr>,
    },
    /// A Multus network; `pod_iface` is `eth0` for the default network,
    /// else `net1`, `net2`, … in `spec.networks` order.
    Multus {
        network_name: String,
        default: bool,
        pod_iface: String,
    },
    /// A Genie network; `pod_iface` is `eth0`, `eth1`, … in order.
    Genie {
        network_name: String,
        pod_iface: String,
    },
    /// A device-plugin resource network; pod side `net-<network name>`.
    Resource {
        resource_name: String,
        pod_iface: String,
    },
}

/// What carries the NIC's frames on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Backend {
    Tap {
        name: String,
    },
    Macvtap {
        iface: String,
    },
    /// VFIO passthrough; `resource` is the device-plugin resource name when
    /// a NetworkAttachmentDefinition in the file gives it.
    Vfio {
        resource: Option<String>,
    },
    /// User-space networking: the passt program, one per NIC (the passt
    /// and slirp bindings).
    Userspace,
}

/// Port protocol: net's, the one the nftables rules take.
pub use ::net::Protocol;

/// Serializes a value as its `Display` text (for types from crates
/// without serde).
fn as_text<T: fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A port forwarded into the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortPlan {
    pub name: Option<String>,
    pub port: u16,
    #[serde(serialize_with = "as_text")]
    pub protocol: Protocol,
}

/// One guest NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NicPlan {
    /// Interface name from the spec; the device id everywhere.
    pub name: String,
    /// Where the interface is in the spec (`spec.domain.devices.interfaces[0]`),
    /// for errors found later against the host.
    #[serde(skip)]
    pub path: String,
    /// Where its binding is (`….masquerade`, `….binding`).
    #[serde(skip)]
    pub binding_path: String,
    /// Where its network's source is (`spec.networks[1].multus`).
    #[serde(skip)]
    pub network_path: String,
    pub model: NicModel,
    pub binding: Binding,
    pub network: NetworkPlan,
    pub backend: Backend,
    pub mac: MacAddr,
    /// The spec gave the MAC (otherwise it was generated); backends that
    /// come with a MAC of their own (macvtap) keep theirs unless given one.
    pub mac_from_spec: bool,
    pub queue_pairs: u16,
    pub pci_address: PciAddress,
    pub ports: Vec<PortPlan>,
    /// Has no effect: petrel has no firmware that boots from a NIC.
    pub boot_order: Option<u32>,
    /// `dhcpOptions`, served by petrel's DHCP server (bridge, masquerade).
    pub dhcp: DhcpPlan,
    /// False for `state: down`: the NIC is attached with its link down.
    pub link_up: bool,
}

/// KubeVirt `dhcpOptions`, checked: what petrel's DHCP server adds to its
/// OFFER and ACK.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DhcpPlan {
    /// Option 67 (and the BOOTP `file` field).
    pub boot_file_name: Option<String>,
    /// Option 66 (and the BOOTP `sname` field).
    pub tftp_server_name: Option<String>,
    /// Option 42.
    pub ntp_servers: Vec<std::net::Ipv4Addr>,
    /// Site-specific options 224-254, each with its text value.
    pub private_options: Vec<PrivateOption>,
}

/// One `dhcpOptions.privateOptions` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivateOption {
    pub code: u8,
    pub value: String,
}

/// Everything petrel needs to build the VM.
#[derive(Debug, Clone, Serialize)]
pub struct VmPlan {
    pub name: String,
    pub kind: SpecKind,
    pub vcpus: u8,
    pub topology: Topology,
    pub memory_bytes: u64,
    pub boot: BootPlan,
    pub nics: Vec<NicPlan>,
    /// Seconds SIGTERM waits for the guest to power off after pressing the
    /// power button (`terminationGracePeriodSeconds`, default 30).
    pub termination_grace_seconds: u64,
    /// Every ignored or out-of-scope field, and every default filled in that
    /// the user may not expect.
    pub warnings: Vec<String>,
}

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: u64 = 30;

impl VmPlan {
    /// Human-readable multi-line summary (for `petrel validate`).
    pub fn to_text(&self) -> String {
        text::render(self)
    }
}

/// Validates `spec` and resolves it into a plan, applying `overrides`;
/// refuses what petrel cannot build, so a plan returned here runs.
pub fn resolve(spec: &VmSpec, overrides: &Overrides) -> Result<VmPlan, PlanErrors> {
    resolve_with(spec, overrides, true)
}

/// What the spec means, whether or not petrel can build it (for tests of
/// the upstream rules of features petrel does not implement yet).
#[cfg(test)]
fn resolve_meaning(spec: &VmSpec, overrides: &Overrides) -> Result<VmPlan, PlanErrors> {
    resolve_with(spec, overrides, false)
}

fn resolve_with(
    spec: &VmSpec,
    overrides: &Overrides,
    check_support: bool,
) -> Result<VmPlan, PlanErrors> {
    let mut errors = Vec::new();
    let mut warnings = spec.warnings.clone();
    let topology = validate::topology(spec, &mut errors);
    let memory_bytes = validate::memory(spec, &mut errors, &mut warnings);
    let boot = validate::boot(spec, overrides, &mut warnings);
    let vcpus = topology
        .map(|t| t.sockets.saturating_mul(t.cores).saturating_mul(t.threads))
        .unwrap_or(1);
    let nics = net::resolve_nics(spec, vcpus, &mut errors, &mut warnings);
    if check_support {
        support::check(&nics, &mut errors);
    }
    match topology {
        Some(topology) if errors.is_empty() => Ok(VmPlan {
            name: spec.name.clone(),
            kind: spec.kind,
            vcpus,
            topology,
            memory_bytes,
            boot,
            nics,
            termination_grace_seconds: spec
                .termination_grace_period
                .as_ref()
                .map_or(DEFAULT_GRACE_SECONDS, |f| f.value.max(0) as u64),
            warnings,
        }),
        _ => Err(PlanErrors(errors)),
    }
}

#[cfg(test)]
mod tests;
