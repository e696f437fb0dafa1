//! The parsed VM spec model, common to KubeVirt and Virtink objects.
//!
//! Values are kept close to the source (strings, raw integers) together with
//! the path of the field they came from; the plan validates them and reports
//! errors against those paths.

use std::collections::BTreeMap;

use serde::Serialize;

/// Which kind of object the VM was described with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SpecKind {
    /// `kubevirt.io` `VirtualMachineInstance` (also the legacy `kind: VM`).
    KubeVirtVmi,
    /// `kubevirt.io` `VirtualMachine` (the VMI lives in `spec.template`).
    KubeVirtVm,
    /// `virt.virtink.smartx.com` `VirtualMachine`.
    Virtink,
}

impl SpecKind {
    /// Human-readable name, e.g. for `petrel validate`.
    pub fn describe(self) -> &'static str {
        match self {
            SpecKind::KubeVirtVmi => "KubeVirt VirtualMachineInstance",
            SpecKind::KubeVirtVm => "KubeVirt VirtualMachine",
            SpecKind::Virtink => "Virtink VirtualMachine",
        }
    }
}

/// A value together with the path of the field it was read from,
/// e.g. `spec.domain.devices.interfaces[1].macAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field<T> {
    pub value: T,
    pub path: String,
}

impl<T> Field<T> {
    pub fn new(value: T, path: impl Into<String>) -> Self {
        Field {
            value,
            path: path.into(),
        }
    }
}

/// The VM object found in a spec file.
#[derive(Debug, Clone, Serialize)]
pub struct VmSpec {
    pub kind: SpecKind,
    /// `metadata.name` (`"vm"` with a warning when absent).
    pub name: String,
    pub namespace: Option<String>,
    /// The object's `apiVersion` (empty when it was absent).
    pub api_version: String,
    /// 1-based index of the YAML document that holds the VM object.
    pub document: usize,
    /// Annotations of the VM object (for a KubeVirt VirtualMachine, the
    /// template's annotations override the VM's).
    pub annotations: BTreeMap<String, Field<String>>,
    pub cpu: CpuSpec,
    /// The memory quantity as written, e.g. `128Mi`.
    pub memory: Option<Field<String>>,
    pub kernel: KernelSpec,
    pub interfaces: Vec<InterfaceSpec>,
    pub networks: Vec<NetworkSpec>,
    /// Path of the interfaces list, e.g. `spec.domain.devices.interfaces`.
    pub interfaces_path: String,
    /// Path of the networks list, e.g. `spec.networks`.
    pub networks_path: String,
    /// Path where the memory size belongs, e.g. `spec.domain.memory.guest`
    /// (used in messages when it is absent).
    pub memory_path: String,
    /// KubeVirt `devices.autoattachPodInterface` (None when absent).
    pub autoattach_pod_interface: Option<bool>,
    /// KubeVirt `devices.networkInterfaceMultiqueue`.
    pub network_interface_multiqueue: bool,
    /// `spec.terminationGracePeriodSeconds` (KubeVirt VMI spec, Virtink
    /// spec): how long SIGTERM waits after pressing the power button.
    pub termination_grace_period: Option<Field<i64>>,
    /// `NetworkAttachmentDefinition` objects found in the same file.
    pub network_attachments: Vec<NetworkAttachment>,
    /// Ignored, unknown and out-of-scope fields found while parsing.
    pub warnings: Vec<String>,
}

/// CPU topology as written (each count defaults to 1 in the plan).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuSpec {
    /// Path of the CPU section, e.g. `spec.domain.cpu`.
    pub path: String,
    pub sockets: Option<Field<i64>>,
    /// KubeVirt `cores`, Virtink `coresPerSocket`.
    pub cores: Option<Field<i64>>,
    pub threads: Option<Field<i64>>,
}

/// Direct kernel boot settings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KernelSpec {
    /// Container image holding the kernel (KubeVirt `container.image`,
    /// Virtink `kernel.image`).
    pub image: Option<Field<String>>,
    /// KubeVirt `container.kernelPath`, taken as a local path.
    pub kernel_path: Option<Field<String>>,
    /// KubeVirt `container.initrdPath`, taken as a local path.
    pub initrd_path: Option<Field<String>>,
    /// KubeVirt `kernelArgs` (or its alias `cmdline`), Virtink `cmdline`.
    pub cmdline: Option<Field<String>>,
}

/// How an interface is connected to its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum BindingKind {
    Bridge,
    Masquerade,
    Slirp,
    Sriov,
    Macvtap,
    Passt,
    /// Virtink `vdpa`: a vDPA device.
    Vdpa,
    /// Virtink `vhostUser`: a vhost-user socket.
    VhostUser,
    /// A KubeVirt network binding plugin (`binding: {name: ...}`) that petrel
    /// does not implement.
    Plugin(String),
}

/// One binding key found on an interface (`bridge: {}` etc.).
#[derive(Debug, Clone, Serialize)]
pub struct BindingSpec {
    pub kind: BindingKind,
    /// Path of the binding key, e.g. `spec.instance.interfaces[0].masquerade`.
    pub path: String,
    /// Virtink `masquerade.cidr`.
    pub cidr: Option<Field<String>>,
}

/// A port forwarded into the VM.
#[derive(Debug, Clone, Serialize)]
pub struct PortSpec {
    pub path: String,
    pub name: Option<Field<String>>,
    pub port: Option<Field<i64>>,
    pub protocol: Option<Field<String>>,
}

/// A VM network interface (frontend).
#[derive(Debug, Clone, Serialize)]
pub struct InterfaceSpec {
    /// Path of the list item, e.g. `spec.domain.devices.interfaces[0]`.
    pub path: String,
    pub name: Field<String>,
    /// Every binding key present; the plan requires exactly one.
    pub bindings: Vec<BindingSpec>,
    pub model: Option<Field<String>>,
    /// KubeVirt `macAddress`, Virtink `mac`.
    pub mac: Option<Field<String>>,
    pub ports: Vec<PortSpec>,
    pub pci_address: Option<Field<String>>,
    pub boot_order: Option<Field<i64>>,
    /// `dhcpOptions.bootFileName` (or the interface-level key the old
    /// user guide shows).
    pub boot_file_name: Option<Field<String>>,
    pub tftp_server_name: Option<Field<String>>,
    /// `dhcpOptions.ntpServers`.
    pub ntp_servers: Vec<Field<String>>,
    /// `dhcpOptions.privateOptions`.
    pub private_options: Vec<PrivateOptionSpec>,
    /// Path of `dhcpOptions`, when present.
    pub dhcp_options_path: Option<String>,
    /// KubeVirt `state` (`up`, `down`, `absent`).
    pub state: Option<Field<String>>,
    /// KubeVirt `portRanges`, as written (petrel refuses it).
    pub port_ranges: Option<Field<String>>,
}

impl InterfaceSpec {
    /// An interface with only a name and a path; the parsers fill in the rest.
    pub fn named(path: &str, name: Field<String>) -> Self {
        InterfaceSpec {
            path: path.to_string(),
            name,
            bindings: Vec::new(),
            model: None,
            mac: None,
            ports: Vec::new(),
            pci_address: None,
            boot_order: None,
            boot_file_name: None,
            tftp_server_name: None,
            ntp_servers: Vec::new(),
            private_options: Vec::new(),
            dhcp_options_path: None,
            state: None,
            port_ranges: None,
        }
    }
}

/// One `dhcpOptions.privateOptions` item: a site-specific option (224-254)
/// and its text value.
#[derive(Debug, Clone, Serialize)]
pub struct PrivateOptionSpec {
    pub path: String,
    pub option: Option<Field<i64>>,
    pub value: Option<Field<String>>,
}

/// Where a network comes from.
#[derive(Debug, Clone, Serialize)]
pub enum NetworkSourceKind {
    Pod {
        /// KubeVirt `vmNetworkCIDR`.
        ipv4_cidr: Option<Field<String>>,
        /// KubeVirt `vmIPv6NetworkCIDR`.
        ipv6_cidr: Option<Field<String>>,
    },
    Multus {
        network_name: Option<Field<String>>,
        default: bool,
    },
    Genie {
        network_name: Option<Field<String>>,
    },
    Resource {
        resource_name: Option<Field<String>>,
    },
}

/// One network source key found on a network (`pod: {}` etc.).
#[derive(Debug, Clone, Serialize)]
pub struct NetworkSource {
    pub path: String,
    pub kind: NetworkSourceKind,
}

/// A network (backend).
#[derive(Debug, Clone, Serialize)]
pub struct NetworkSpec {
    pub path: String,
    pub name: Field<String>,
    /// Every source key present; the plan requires exactly one.
    pub sources: Vec<NetworkSource>,
}

/// A `k8s.cni.cncf.io` `NetworkAttachmentDefinition` from the same file.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkAttachment {
    pub name: String,
    pub namespace: Option<String>,
    /// `k8s.v1.cni.cncf.io/resourceName` annotation (SR-IOV device pools).
    pub resource_name: Option<String>,
    /// The CNI config JSON text, as written.
    pub config: Option<String>,
}
