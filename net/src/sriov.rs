//! Which SR-IOV virtual function (VF) each `sriov` NIC of the VM gets, found
//! the way KubeVirt's virt-launcher finds it, and whether that VF can really
//! be passed through with VFIO.
//!
//! Nothing here touches KVM or VFIO itself: the pod's facts (environment,
//! Multus' network-status, sysfs, `/dev/vfio`) come in through [`PodInfo`]
//! so tests can fake them, and the result is a list of checked
//! [`VfDevice`]s for the VFIO code to open.
//!
//! The PCI address of a NIC's VF is taken from, in order:
//!
//! 1. Multus' `k8s.v1.cni.cncf.io/network-status` annotation: the SR-IOV CNI
//!    reports the VF it moved into the pod as `device-info` of the entry for
//!    that pod interface. This is the only source that ties a VF to one
//!    interface, so it wins whenever it is there.
//! 2. The SR-IOV device plugin: the pod requested N VFs of a resource and the
//!    plugin set `PCIDEVICE_<RESOURCE>` to their N addresses, in no useful
//!    order. The resource of a network comes from
//!    `KUBEVIRT_RESOURCE_NAME_<network>` (set by KubeVirt's virt-controller)
//!    or from the NetworkAttachmentDefinition in the spec (Virtink). Every
//!    NIC takes the first address no other NIC took, so all NICs of a VM are
//!    resolved together by [`resolve_all`].
//!
//! A misconfigured pod typically breaks every SR-IOV NIC at once, so
//! [`resolve_all`] reports the problems of all NICs together
//! ([`SriovErrors`]), each saying what was looked at and how to fix it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;

/// The annotation Multus writes the attachment results to.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// The name Multus used for [`NETWORK_STATUS_ANNOTATION`] before v3.7;
/// still read so that older clusters work.
pub const OLD_NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks-status";
/// The only driver through which a VF can be handed to the guest.
pub const VFIO_DRIVER: &str = "vfio-pci";

/// File name (under the downward-API directory) of the network-status
/// annotation projected on its own.
const NETWORK_STATUS_FILE: &str = "network-status";
/// File name (under the downward-API directory) of all annotations
/// projected together (`fieldRef: metadata.annotations`).
const ANNOTATIONS_FILE: &str = "annotations";
/// KubeVirt's virt-controller names the resource of spec network `<net>` in
/// this variable's `<net>`-suffixed form.
const RESOURCE_NAME_ENV_PREFIX: &str = "KUBEVIRT_RESOURCE_NAME_";
/// The SR-IOV device plugin's allocation variables start with this.
const POOL_ENV_PREFIX: &str = "PCIDEVICE";

// ---------------------------------------------------------------------------
// PCI addresses
// ---------------------------------------------------------------------------

/// A PCI function address, `domain:bus:device.function`.
///
/// Kept parsed rather than as a string so that the same VF spelled in
/// upper and lower case by two sources compares equal, and so the sysfs
/// name built from it is always the canonical, lower-case one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

/// A string that is not a `dddd:bb:dd.f` PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a PCI address (expected domain:bus:device.function, e.g. 0000:65:00.2)")]
pub struct ParsePciAddressError {
    pub input: String,
}

impl FromStr for PciAddress {
    type Err = ParsePciAddressError;

    /// Accepts what sysfs, the device plugin and the SR-IOV CNI write: a
    /// 4-digit (or, behind Intel VMD, longer) hex domain, 2-digit bus and
    /// device, 1-digit function. Shorter forms are refused because sysfs
    /// never uses them, so they would only hide a producer's bug.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParsePciAddressError {
            input: s.to_string(),
        };
        let hex = |part: &str, min: usize, max: usize| -> Option<u32> {
            let ok =
                (min..=max).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
            ok.then(|| u32::from_str_radix(part, 16).ok()).flatten()
        };
        let (domain, rest) = s.split_once(':').ok_or_else(bad)?;
        let (bus, rest) = rest.split_once(':').ok_or_else(bad)?;
        let (device, function) = rest.split_once('.').ok_or_else(bad)?;
        let domain = hex(domain, 4, 8).ok_or_else(bad)?;
        let bus = hex(bus, 2, 2).ok_or_else(bad)?;
        let device = hex(device, 2, 2).filter(|d| *d < 32).ok_or_else(bad)?;
        let function = hex(function, 1, 1).filter(|f| *f < 8).ok_or_else(bad)?;
        Ok(PciAddress {
            domain,
            bus: u8::try_from(bus).map_err(|_| bad())?,
            device: u8::try_from(device).map_err(|_| bad())?,
            function: u8::try_from(function).map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for PciAddress {
    /// The sysfs spelling, so the result can be joined to a sysfs path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// Everything about the pod the resolution depends on, gathered in one
/// place so tests can replace the process env, the downward API and sysfs.
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    /// Environment variables; the process env in production.
    pub env: BTreeMap<String, String>,
    /// Multus' network-status entries, empty if the downward API did not
    /// provide them.
    pub network_status: Vec<NetworkStatus>,
    /// The file [`network_status`](Self::network_status) came from, quoted
    /// in errors and in [`Source::NetworkStatus`].
    pub network_status_file: Option<PathBuf>,
    /// sysfs root, `/sys` in production.
    pub sysfs: PathBuf,
    /// VFIO group nodes, `/dev/vfio` in production.
    pub dev_vfio: PathBuf,
}

impl PodInfo {
    /// The real pod: the process env, the network status projected under
    /// `podinfo_dir` (usually `/etc/podinfo`), `/sys` and `/dev/vfio`.
    pub fn from_process(podinfo_dir: &Path) -> Result<PodInfo, PodInfoError> {
        // vars_os, not vars: one non-UTF-8 variable of some sidecar injector
        // must not abort the launcher; such variables cannot be ours anyway.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let (network_status, network_status_file) = load_network_status(podinfo_dir)?;
        Ok(PodInfo {
            env,
            network_status,
            network_status_file,
            sysfs: PathBuf::from("/sys"),
            dev_vfio: PathBuf::from("/dev/vfio"),
        })
    }

    /// An env value, with an empty value counting as unset (kubelet sets
    /// empty variables when a referenced value is missing).
    fn env(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// One entry of Multus' network-status annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkStatus {
    /// `namespace/nad-name` for attachments, the CNI network name for the
    /// cluster network.
    pub name: String,
    /// The interface inside the pod, e.g. `net1`.
    pub interface: Option<String>,
    pub ips: Vec<String>,
    pub mac: Option<String>,
    /// Whether this is the pod's default (cluster) network.
    pub default: bool,
    /// `device-info.type`: `pci` for SR-IOV VFs, also `vdpa`, `vhost-user`…
    pub device_type: Option<String>,
    /// `device-info.pci.pci-address`, only kept for `pci` devices: a vDPA
    /// device's PCI address is not something VFIO can take.
    pub pci_address: Option<String>,
}

/// What the VM spec says about one `sriov` NIC.
#[derive(Debug, Clone, Copy)]
pub struct VfRequest<'a> {
    /// Spec network name (`spec.networks[].name`), e.g. `sriov-net`.
    pub network: &'a str,
    /// Multus network name, `name` or `namespace/name`.
    pub multus_network: &'a str,
    /// The network's interface in the pod: `net1`, or KubeVirt's hashed
    /// `pod1a2b3c4d5e6`.
    pub pod_iface: &'a str,
    /// Device-plugin resource from a NetworkAttachmentDefinition in the
    /// spec (Virtink); KubeVirt passes it in the env instead.
    pub resource: Option<&'a str>,
}

// ---------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------

/// A VF checked to be ready for VFIO passthrough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfDevice {
    /// The spec network this VF is for.
    pub network: String,
    pub address: PciAddress,
    /// `<sysfs>/bus/pci/devices/<address>`.
    pub sysfs_path: PathBuf,
    pub iommu_group: u32,
    /// `<dev_vfio>/<iommu_group>`, the node VFIO opens.
    pub group_path: PathBuf,
    pub vendor: u16,
    pub device: u16,
    pub resolved_from: Source,
}

/// Where a VF's address came from; logged, and useful when a guest NIC ends
/// up on an unexpected port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The `device-info` of Multus' network-status entry for the interface.
    NetworkStatus { file: Option<PathBuf> },
    /// The device plugin's pool for `resource`, read from env var `env`.
    DevicePlugin { resource: String, env: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::NetworkStatus { file: Some(file) } => {
                write!(f, "network-status ({})", file.display())
            }
            Source::NetworkStatus { file: None } => write!(f, "network-status"),
            Source::DevicePlugin { resource, env } => {
                write!(f, "device plugin resource {resource} ({env})")
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why the downward-API files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PodInfoError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: malformed network status: {reason}", .path.display())]
    Malformed { path: PathBuf, reason: String },
}

/// Why one NIC has no usable VF.
#[derive(Debug, thiserror::Error)]
pub enum SriovError {
    #[error(
        "network {network} (pod interface {pod_iface}): no VF for it: {status} has no \
         entry for {pod_iface} with a PCI device-info, {env} is not set and the spec gives \
         no resourceName for {multus_network}; request the VF through the \
         k8s.v1.cni.cncf.io/resourceName annotation of NetworkAttachmentDefinition \
         {multus_network} (and project the network-status annotation into the pod)"
    )]
    NoSource {
        network: String,
        pod_iface: String,
        multus_network: String,
        /// `KUBEVIRT_RESOURCE_NAME_<network>`.
        env: String,
        /// The network-status file, or a note that there was none.
        status: String,
    },

    #[error(
        "network {network}: resource {resource} (from {origin}) was not allocated to the pod: \
         {env} is not set; add {resource} to the pod's resources.limits (one per NIC on it) \
         and check that the SR-IOV device plugin advertises it on the node"
    )]
    PoolMissing {
        network: String,
        resource: String,
        origin: String,
        env: String,
    },

    #[error(
        "network {network}: all {size} VFs of resource {resource} ({env}={value}) are already \
         taken by other NICs; request one {resource} per NIC using it in the pod's \
         resources.limits"
    )]
    PoolExhausted {
        network: String,
        resource: String,
        env: String,
        value: String,
        size: usize,
    },

    #[error("network {network}: bad VF address from {origin}")]
    BadAddress {
        network: String,
        /// Where the string was read, e.g. `PCIDEVICE_INTEL_COM_SRIOV` or the
        /// network-status file.
        origin: String,
        #[source]
        source: ParsePciAddressError,
    },

    #[error(
        "network {network}: network-status gives VF {address} to interface {pod_iface}, but \
         it already gives it to network {first_network}; the CNI result is inconsistent, \
         check the SR-IOV CNI and device plugin on the node"
    )]
    DuplicateAddress {
        network: String,
        pod_iface: String,
        address: PciAddress,
        first_network: String,
    },

    #[error(
        "network {network}: VF {address} (from {source_desc}) is not in sysfs ({} is missing); \
         the pod sees another host's devices or the VF was removed (SR-IOV numvfs changed?)",
        .path.display()
    )]
    NotInSysfs {
        network: String,
        address: PciAddress,
        source_desc: String,
        path: PathBuf,
    },

    #[error(
        "network {network}: VF {address} is bound to {}, not {VFIO_DRIVER}, so it cannot be \
         passed through; use deviceType: vfio-pci in the SR-IOV node policy, or on the node \
         {}run `echo {VFIO_DRIVER} > /sys/bus/pci/devices/{address}/driver_override; \
         echo {address} > /sys/bus/pci/drivers_probe`",
        .driver.as_deref().unwrap_or("no driver"),
        unbind_hint(.driver.as_deref(), .address)
    )]
    WrongDriver {
        network: String,
        address: PciAddress,
        /// The bound driver, `None` if unbound.
        driver: Option<String>,
    },

    #[error(
        "network {network}: VF {address} has no IOMMU group ({} is missing); enable the IOMMU \
         on the node (intel_iommu=on or amd_iommu=on on the kernel command line)",
        .path.display()
    )]
    NoIommuGroup {
        network: String,
        address: PciAddress,
        path: PathBuf,
    },

    #[error(
        "network {network}: VF {address} is in IOMMU group {group} but {} does not exist in \
         the container; the device plugin did not mount it (is the resource in the pod's \
         resources.limits?) or the container lacks access to /dev/vfio",
        .path.display()
    )]
    NoVfioGroupNode {
        network: String,
        address: PciAddress,
        group: u32,
        path: PathBuf,
    },

    #[error("network {network}: cannot read {}", .path.display())]
    Io {
        network: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("network {network}: {}: unexpected content {content:?}", .path.display())]
    BadSysfsValue {
        network: String,
        path: PathBuf,
        content: String,
    },
}

/// The extra step [`SriovError::WrongDriver`]'s fix needs when another
/// driver holds the VF: `driver_override` only applies at the next probe.
fn unbind_hint(driver: Option<&str>, address: &PciAddress) -> String {
    match driver {
        Some(_) => format!(
            "unbind it (`echo {address} > /sys/bus/pci/devices/{address}/driver/unbind`) and "
        ),
        None => String::new(),
    }
}

/// The problems of every NIC that could not be resolved; never empty.
///
/// One value for all NICs, because fixing them one failed start at a time
/// is slow when the cause (a policy, a missing limit) is usually shared.
#[derive(Debug)]
pub struct SriovErrors(pub Vec<SriovError>);

impl SriovErrors {
    pub fn errors(&self) -> &[SriovError] {
        &self.0
    }
}

impl fmt::Display for SriovErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} SR-IOV NICs cannot be set up:", many.len())?;
                for e in many {
                    write!(f, "\n  - {e}")?;
                    let mut src = std::error::Error::source(e);
                    while let Some(s) = src {
                        write!(f, ": {s}")?;
                        src = s.source();
                    }
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SriovErrors {
    /// With a single error, chain to it so `{:#}`-style reporters show its
    /// cause; with several, [`Display`](fmt::Display) already shows all.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.0.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------

/// An address picked for a NIC, not yet checked against sysfs.
struct Claim {
    address: PciAddress,
    source: Source,
}

/// Resolves and checks the VFs of all `sriov` NICs of the VM, in request
/// order.
///
/// All NICs are done at once so that NICs on the same device-plugin pool get
/// different VFs, and so that a VF network-status assigns to one NIC is never
/// handed out of the pool to another, whatever the NIC order.
pub fn resolve_all(info: &PodInfo, reqs: &[VfRequest<'_>]) -> Result<Vec<VfDevice>, SriovErrors> {
    // Pass 1: network-status, which names the VF of each interface.
    let mut taken: BTreeMap<PciAddress, &str> = BTreeMap::new();
    let mut claims: Vec<Result<Option<Claim>, SriovError>> = Vec::with_capacity(reqs.len());
    for req in reqs {
        let claim = match from_network_status(info, req) {
            Ok(Some(address)) => match taken.get(&address) {
                Some(first) => Err(SriovError::DuplicateAddress {
                    network: req.network.to_string(),
                    pod_iface: req.pod_iface.to_string(),
                    address,
                    first_network: (*first).to_string(),
                }),
                None => {
                    taken.insert(address, req.network);
                    Ok(Some(Claim {
                        address,
                        source: Source::NetworkStatus {
                            file: info.network_status_file.clone(),
                        },
                    }))
                }
            },
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        claims.push(claim);
    }

    // Pass 2: the device-plugin pools, for the NICs network-status left out.
    for (req, claim) in reqs.iter().zip(claims.iter_mut()) {
        if matches!(claim, Ok(None)) {
            *claim = from_device_plugin(info, req, &mut taken).map(Some);
        }
    }

    // Pass 3: is each VF actually usable?
    let mut devices = Vec::with_capacity(reqs.len());
    let mut errors = Vec::new();
    for (req, claim) in reqs.iter().zip(claims) {
        match claim.and_then(|c| {
            c.ok_or_else(|| no_source(info, req))
                .and_then(|c| check_device(info, req.network, c))
        }) {
            Ok(dev) => {
                tracing::info!(
                    network = req.network,
                    pod_iface = req.pod_iface,
                    address = %dev.address,
                    iommu_group = dev.iommu_group,
                    vendor = format_args!("{:04x}", dev.vendor),
                    device = format_args!("{:04x}", dev.device),
                    source = %dev.resolved_from,
                    "SR-IOV VF resolved"
                );
                devices.push(dev);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(devices)
    } else {
        Err(SriovErrors(errors))
    }
}

/// Rule 1: the PCI address in the network-status entry of the NIC's pod
/// interface, if there is one. `Ok(None)` means "ask the device plugin".
fn from_network_status(
    info: &PodInfo,
    req: &VfRequest<'_>,
) -> Result<Option<PciAddress>, SriovError> {
    let entry = info.network_status.iter().find(|s| {
        s.interface.as_deref() == Some(req.pod_iface)
            && multus_name_matches(&s.name, req.multus_network)
    });
    let Some(entry) = entry else {
        tracing::debug!(
            network = req.network,
            pod_iface = req.pod_iface,
            "no network-status entry for the interface"
        );
        return Ok(None);
    };
    let Some(raw) = entry.pci_address.as_deref() else {
        // Older SR-IOV CNIs do not report device-info; the pool still works.
        tracing::info!(
            network = req.network,
            pod_iface = req.pod_iface,
            device_type = entry.device_type.as_deref().unwrap_or("none"),
            "network-status entry has no PCI device-info; using the device plugin's pool"
        );
        return Ok(None);
    };
    raw.trim()
        .parse()
        .map(Some)
        .map_err(|source| SriovError::BadAddress {
            network: req.network.to_string(),
            origin: match &info.network_status_file {
                Some(f) => format!("network-status entry {} ({})", entry.name, f.display()),
                None => format!("network-status entry {}", entry.name),
            },
            source,
        })
}

/// Whether network-status entry `entry` (always `namespace/name` for
/// attachments) is the Multus network `wanted` names. Without a namespace
/// `wanted` means the pod's own, which the entry's name already carries.
fn multus_name_matches(entry: &str, wanted: &str) -> bool {
    if wanted.contains('/') {
        entry == wanted
    } else {
        entry.rsplit_once('/').map_or(entry, |(_, name)| name) == wanted
    }
}

/// Rule 2: the first address of the network's device-plugin pool that no
/// NIC took yet; records it in `taken`.
fn from_device_plugin<'r>(
    info: &PodInfo,
    req: &VfRequest<'r>,
    taken: &mut BTreeMap<PciAddress, &'r str>,
) -> Result<Claim, SriovError> {
    let resource_env = resource_name_env(req.network);
    let (resource, origin) = match (info.env(&resource_env), req.resource) {
        (Some(r), _) => (r.to_string(), resource_env),
        (None, Some(r)) if !r.trim().is_empty() => (
            r.trim().to_string(),
            format!("NetworkAttachmentDefinition {}", req.multus_network),
        ),
        _ => return Err(no_source(info, req)),
    };
    let candidates = pool_env_names(&resource);
    let Some((env, value)) = candidates
        .iter()
        .find_map(|name| info.env(name).map(|v| (name.clone(), v.to_string())))
    else {
        return Err(SriovError::PoolMissing {
            network: req.network.to_string(),
            resource,
            origin,
            env: candidates.join(" or "),
        });
    };
    let pool = value
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(PciAddress::from_str)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| SriovError::BadAddress {
            network: req.network.to_string(),
            origin: env.clone(),
            source,
        })?;
    let Some(address) = pool.iter().copied().find(|a| !taken.contains_key(a)) else {
        let size = pool.iter().collect::<BTreeSet<_>>().len();
        return Err(SriovError::PoolExhausted {
            network: req.network.to_string(),
            resource,
            env,
            value,
            size,
        });
    };
    taken.insert(address, req.network);
    Ok(Claim {
        address,
        source: Source::DevicePlugin { resource, env },
    })
}

/// The error for a NIC neither rule found a VF for.
fn no_source(info: &PodInfo, req: &VfRequest<'_>) -> SriovError {
    SriovError::NoSource {
        network: req.network.to_string(),
        pod_iface: req.pod_iface.to_string(),
        multus_network: req.multus_network.to_string(),
        env: resource_name_env(req.network),
        status: match &info.network_status_file {
            Some(f) => format!("network-status ({})", f.display()),
            None => "network-status (not projected into the pod)".to_string(),
        },
    }
}

/// The variable virt-controller puts the resource name of spec network
/// `network` in. The network name is used as is: env names may contain
/// `-`, and virt-controller does not rewrite it.
pub fn resource_name_env(network: &str) -> String {
    format!("{RESOURCE_NAME_ENV_PREFIX}{network}")
}

/// The variable the SR-IOV device plugin lists the addresses of `resource`
/// in: `PCIDEVICE_` + the name upper-cased, with `/` and `.` turned into
/// `_` (`intel.com/sriov_net` → `PCIDEVICE_INTEL_COM_SRIOV_NET`).
pub fn pool_env_name(resource: &str) -> String {
    let name: String = resource
        .to_ascii_uppercase()
        .chars()
        .map(|c| if c == '/' || c == '.' { '_' } else { c })
        .collect();
    format!("{POOL_ENV_PREFIX}_{name}")
}

/// The names the pool of `resource` may be under, most likely first: the
/// device plugin keeps `-`, but some deployments (and KubeVirt's own
/// helper, in places) turn it into `_` too.
pub fn pool_env_names(resource: &str) -> Vec<String> {
    let exact = pool_env_name(resource);
    let dashless = exact.replace('-', "_");
    if dashless == exact {
        vec![exact]
    } else {
        vec![exact, dashless]
    }
}

/// Rule 4: checks that the claimed VF exists, is bound to vfio-pci and has
/// an IOMMU group whose node is in the container.
fn check_device(info: &PodInfo, network: &str, claim: Claim) -> Result<VfDevice, SriovError> {
    let address = claim.address;
    let sysfs_path = info.sysfs.join("bus/pci/devices").join(address.to_string());
    if !sysfs_path.exists() {
        return Err(SriovError::NotInSysfs {
            network: network.to_string(),
            address,
            source_desc: claim.source.to_string(),
            path: sysfs_path,
        });
    }

    let driver = link_name(network, &sysfs_path.join("driver"))?;
    if driver.as_deref() != Some(VFIO_DRIVER) {
        return Err(SriovError::WrongDriver {
            network: network.to_string(),
            address,
            driver,
        });
    }

    let group_link = sysfs_path.join("iommu_group");
    let Some(group) = link_name(network, &group_link)? else {
        return Err(SriovError::NoIommuGroup {
            network: network.to_string(),
            address,
            path: group_link,
        });
    };
    let iommu_group = group
        .parse::<u32>()
        .map_err(|_| SriovError::BadSysfsValue {
            network: network.to_string(),
            path: group_link,
            content: group,
        })?;
    let group_path = info.dev_vfio.join(iommu_group.to_string());
    if !group_path.exists() {
        return Err(SriovError::NoVfioGroupNode {
            network: network.to_string(),
            address,
            group: iommu_group,
            path: group_path,
        });
    }

    let vendor = read_id(network, &sysfs_path.join("vendor"))?;
    let device = read_id(network, &sysfs_path.join("device"))?;
    Ok(VfDevice {
        network: network.to_string(),
        address,
        sysfs_path,
        iommu_group,
        group_path,
        vendor,
        device,
        resolved_from: claim.source,
    })
}

/// The file name a sysfs symlink points to (`driver` → `vfio-pci`), `None`
/// when the link is absent, which sysfs uses to say "none".
fn link_name(network: &str, link: &Path) -> Result<Option<String>, SriovError> {
    match fs::read_link(link) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SriovError::Io {
            network: network.to_string(),
            path: link.to_path_buf(),
            source,
        }),
    }
}

/// A sysfs PCI id file (`vendor`, `device`): `0x8086\n`.
fn read_id(network: &str, path: &Path) -> Result<u16, SriovError> {
    let content = fs::read_to_string(path).map_err(|source| SriovError::Io {
        network: network.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    let trimmed = content.trim();
    trimmed
        .strip_prefix("0x")
        .and_then(|hex| u16::from_str_radix(hex, 16).ok())
        .ok_or_else(|| SriovError::BadSysfsValue {
            network: network.to_string(),
            path: path.to_path_buf(),
            content: trimmed.to_string(),
        })
}

// ---------------------------------------------------------------------------
// Downward API
// ---------------------------------------------------------------------------

/// Reads Multus' network status from the downward-API directory `dir`:
/// `network-status` (the annotation projected on its own) if present, else
/// the network-status key of `annotations` (all annotations projected).
///
/// Returns the entries and the file they came from. No directory, no file
/// or no key all mean "no status" (the pod may simply not project it), but a
/// file that is there and unreadable or malformed is an error, as guessing
/// would hand the guest the wrong VF.
pub fn load_network_status(
    dir: &Path,
) -> Result<(Vec<NetworkStatus>, Option<PathBuf>), PodInfoError> {
    let single = dir.join(NETWORK_STATUS_FILE);
    if let Some(text) = read_optional(&single)? {
        // kubelet writes an empty file when the annotation is not set (yet).
        if text.trim().is_empty() {
            return Ok((Vec::new(), None));
        }
        let status = parse_network_status(&text).map_err(|reason| PodInfoError::Malformed {
            path: single.clone(),
            reason,
        })?;
        return Ok((status, Some(single)));
    }

    let all = dir.join(ANNOTATIONS_FILE);
    let Some(text) = read_optional(&all)? else {
        return Ok((Vec::new(), None));
    };
    let malformed = |reason: String| PodInfoError::Malformed {
        path: all.clone(),
        reason,
    };
    let annotations = parse_annotations(&text).map_err(malformed)?;
    let value = annotations
        .get(NETWORK_STATUS_ANNOTATION)
        .or_else(|| annotations.get(OLD_NETWORK_STATUS_ANNOTATION));
    match value {
        Some(json) if !json.trim().is_empty() => {
            let status = parse_network_status(json).map_err(malformed)?;
            Ok((status, Some(all)))
        }
        _ => Ok((Vec::new(), None)),
    }
}

/// The file's text, `None` if it (or its directory) does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, PodInfoError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PodInfoError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parses the network-status annotation's JSON value.
///
/// Only `name` is required: Multus always sets it, and without it an entry
/// cannot be matched. Everything else is optional, since CNIs fill in
/// different subsets and unknown fields are expected as the spec evolves.
pub fn parse_network_status(json: &str) -> Result<Vec<NetworkStatus>, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let entries = value
        .as_array()
        .ok_or_else(|| "expected a JSON array of network status entries".to_string())?;
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("entry {i} has no string \"name\""))?;
            let string = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_string);
            let device_info = entry.get("device-info");
            let device_type = device_info
                .and_then(|d| d.get("type"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let pci_address = device_info
                .filter(|_| matches!(device_type.as_deref(), None | Some("pci")))
                .and_then(|d| d.get("pci"))
                .and_then(|p| p.get("pci-address"))
                .and_then(Value::as_str)
                .map(str::to_string);
            Ok(NetworkStatus {
                name: name.to_string(),
                interface: string("interface"),
                ips: entry
                    .get("ips")
                    .and_then(Value::as_array)
                    .map(|ips| {
                        ips.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                mac: string("mac"),
                default: entry
                    .get("default")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                device_type,
                pci_address,
            })
        })
        .collect()
}

/// Parses the kubelet's rendering of a map annotation set: one `key="value"`
/// per line, the value quoted like Go's `%q`.
///
/// Lines that are not `key=...` are skipped: the kubelet never writes them,
/// and a stray line must not hide the one we need. A quoted value that does
/// not unquote is an error, since it means the file is not what we think.
pub fn parse_annotations(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let Some((key, quoted)) = line.split_once('=') else {
            continue;
        };
        let value = go_unquote(quoted)
            .ok_or_else(|| format!("line {}: bad quoted value for {key}", n + 1))?;
        map.insert(key.to_string(), value);
    }
    Ok(map)
}

/// Undoes Go's `strconv.Quote`: a double-quoted string with `\a \b \f \n \r
/// \t \v \\ \" \'`, `\xNN`, octal `\NNN`, `\uNNNN` and `\UNNNNNNNN` escapes.
/// `\x` and octal escapes are bytes, so they are collected as such and the
/// result must be valid UTF-8.
fn go_unquote(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.chars();
    let mut out: Vec<u8> = Vec::with_capacity(s.len());
    let push = |out: &mut Vec<u8>, c: char| {
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    let hex = |chars: &mut std::str::Chars<'_>, n: usize| -> Option<u32> {
        let digits: String = chars.by_ref().take(n).collect();
        (digits.len() == n && digits.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(&digits, 16).ok())
            .flatten()
    };
    loop {
        match chars.next()? {
            '"' => break,
            '\\' => match chars.next()? {
                'a' => out.push(0x07),
                'b' => out.push(0x08),
                'f' => out.push(0x0c),
                'n' => out.push(b'\n'),
                'r' => out.push(b'\r'),
                't' => out.push(b'\t'),
                'v' => out.push(0x0b),
                '\\' => out.push(b'\\'),
                '"' => out.push(b'"'),
                '\'' => out.push(b'\''),
                'x' => out.push(u8::try_from(hex(&mut chars, 2)?).ok()?),
                'u' => push(&mut out, char::from_u32(hex(&mut chars, 4)?)?),
                'U' => push(&mut out, char::from_u32(hex(&mut chars, 8)?)?),
                d @ '0'..='7' => {
                    let mut v = d.to_digit(8)?;
                    for _ in 0..2 {
                        v = v * 8 + chars.next()?.to_digit(8)?;
                    }
                    out.push(u8::try_from(v).ok()?);
                }
                _ => return None,
            },
            c => push(&mut out, c),
        }
    }
    // Nothing may follow the closing quote.
    if chars.next().is_some() {
        return None;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // --- fakes -------------------------------------------------------------

    /// A unique scratch directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("petrel-sriov-test-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A fake host: sysfs under `<tmp>/sys`, VFIO nodes under
    /// `<tmp>/dev/vfio`, the downward API under `<tmp>/podinfo`.
    struct Host {
        tmp: TempDir,
        env: BTreeMap<String, String>,
        status: Vec<NetworkStatus>,
    }

    impl Host {
        fn new() -> Host {
            let tmp = TempDir::new();
            fs::create_dir_all(tmp.0.join("sys/bus/pci/devices")).unwrap();
            fs::create_dir_all(tmp.0.join("dev/vfio")).unwrap();
            Host {
                tmp,
                env: BTreeMap::new(),
                status: Vec::new(),
            }
        }

        fn dev_dir(&self, addr: &str) -> PathBuf {
            self.tmp.0.join("sys/bus/pci/devices").join(addr)
        }

        /// A device bound to `driver` (or none) in IOMMU group `group` (or
        /// none), with the group's /dev/vfio node when `node` is set.
        fn device(&self, addr: &str, driver: Option<&str>, group: Option<u32>, node: bool) {
            let dir = self.dev_dir(addr);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("vendor"), "0x8086\n").unwrap();
            fs::write(dir.join("device"), "0x154c\n").unwrap();
            if let Some(driver) = driver {
                let target = self.tmp.0.join("sys/bus/pci/drivers").join(driver);
                fs::create_dir_all(target).unwrap();
                symlink(format!("../../drivers/{driver}"), dir.join("driver")).unwrap();
            }
            if let Some(group) = group {
                let target = self.tmp.0.join(format!("sys/kernel/iommu_groups/{group}"));
                fs::create_dir_all(target).unwrap();
                symlink(
                    format!("../../../../kernel/iommu_groups/{group}"),
                    dir.join("iommu_group"),
                )
                .unwrap();
                if node {
                    fs::write(self.tmp.0.join(format!("dev/vfio/{group}")), "").unwrap();
                }
            }
        }

        /// A VF ready for passthrough.
        fn vf(&self, addr: &str, group: u32) {
            self.device(addr, Some(VFIO_DRIVER), Some(group), true);
        }

        fn env(&mut self, k: &str, v: &str) {
            self.env.insert(k.to_string(), v.to_string());
        }

        fn status(&mut self, name: &str, iface: &str, pci: Option<&str>) {
            self.status.push(NetworkStatus {
                name: name.to_string(),
                interface: Some(iface.to_string()),
                device_type: pci.map(|_| "pci".to_string()),
                pci_address: pci.map(str::to_string),
                ..NetworkStatus::default()
            });
        }

        fn info(&self) -> PodInfo {
            PodInfo {
                env: self.env.clone(),
                network_status: self.status.clone(),
                network_status_file: Some(PathBuf::from("/etc/podinfo/network-status")),
                sysfs: self.tmp.0.join("sys"),
                dev_vfio: self.tmp.0.join("dev/vfio"),
            }
        }

        fn podinfo(&self) -> PathBuf {
            let dir = self.tmp.0.join("podinfo");
            fs::create_dir_all(&dir).unwrap();
            dir
        }
    }

    fn req<'a>(network: &'a str, multus: &'a str, iface: &'a str) -> VfRequest<'a> {
        VfRequest {
            network,
            multus_network: multus,
            pod_iface: iface,
            resource: None,
        }
    }

    fn addr(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    fn one_error(info: &PodInfo, reqs: &[VfRequest<'_>]) -> SriovError {
        let mut errs = resolve_all(info, reqs).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.remove(0)
    }

    // --- PCI addresses and env names --------------------------------------

    #[test]
    fn pci_address_parses_and_displays_canonically() {
        let a = addr("0000:65:00.2");
        assert_eq!(
            a,
            PciAddress {
                domain: 0,
                bus: 0x65,
                device: 0,
                function: 2
            }
        );
        assert_eq!(a.to_string(), "0000:65:00.2");
        assert_eq!(addr("0000:AF:1F.7").to_string(), "0000:af:1f.7");
        assert_eq!(addr("10000:01:00.0").to_string(), "10000:01:00.0");
        for bad in [
            "",
            "65:00.2",
            "0000:65:00",
            "0000:65:00.8",
            "0000:65:20.0",
            "000:65:00.2",
            "0000:6:00.2",
            "0000:65:00.2.1",
            "zzzz:65:00.2",
            "0000:65:00.2 ",
            "+000:65:00.2",
        ] {
            let err = bad.parse::<PciAddress>().unwrap_err();
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn env_names_follow_kubevirt_and_the_device_plugin() {
        assert_eq!(
            pool_env_name("intel.com/sriov_net"),
            "PCIDEVICE_INTEL_COM_SRIOV_NET"
        );
        assert_eq!(
            pool_env_name("openshift.io/mlxnics"),
            "PCIDEVICE_OPENSHIFT_IO_MLXNICS"
        );
        assert_eq!(
            pool_env_names("example.org/sriov-a"),
            [
                "PCIDEVICE_EXAMPLE_ORG_SRIOV-A",
                "PCIDEVICE_EXAMPLE_ORG_SRIOV_A"
            ]
        );
        assert_eq!(pool_env_names("intel.com/x"), ["PCIDEVICE_INTEL_COM_X"]);
        assert_eq!(
            resource_name_env("sriov-net"),
            "KUBEVIRT_RESOURCE_NAME_sriov-net"
        );
    }

    #[test]
    fn dashed_resource_found_under_either_env_spelling() {
        for env in [
            "PCIDEVICE_EXAMPLE_ORG_SRIOV-A",
            "PCIDEVICE_EXAMPLE_ORG_SRIOV_A",
        ] {
            let mut h = Host::new();
            h.vf("0000:65:00.2", 42);
            h.env(env, "0000:65:00.2");
            let r = VfRequest {
                resource: Some("example.org/sriov-a"),
                ..req("a", "sriov-a", "net1")
            };
            let devs = resolve_all(&h.info(), &[r]).unwrap();
            assert_eq!(
                devs[0].resolved_from,
                Source::DevicePlugin {
                    resource: "example.org/sriov-a".into(),
                    env: env.into()
                }
            );
        }
    }

    // --- rule 1: network-status --------------------------------------------

    #[test]
    fn network_status_gives_the_address() {
        let mut h = Host::new();
        h.vf("0000:65:00.2", 42);
        h.status("kindnet", "eth0", None);
        h.status("default/sriov-a", "net1", Some("0000:65:00.2"));
        let info = h.info();
        for multus in ["sriov-a", "default/sriov-a"] {
            let devs = resolve_all(&info, &[req("sriov", multus, "net1")]).unwrap();
            let d = &devs[0];
            assert_eq!(d.network, "sriov");
            assert_eq!(d.address, addr("0000:65:00.2"));
            assert_eq!(d.sysfs_path, h.dev_dir("0000:65:00.2"));
            assert_eq!(d.iommu_group, 42);
            assert_eq!(d.group_path, h.tmp.0.join("dev/vfio/42"));
            assert_eq!((d.vendor, d.device), (0x8086, 0x154c));
            assert_eq!(
                d.resolved_from,
                Source::NetworkStatus {
                    file: Some(PathBuf::from("/etc/podinfo/network-status"))
                }
            );
        }
    }

    #[test]
    fn network_status_must_match_interface_and_name() {
        let mut h = Host::new();
        h.vf("0000:65:00.2", 42);
        h.vf("0000:65:00.3", 43);
        h.status("default/sriov-a", "net2", Some("0000:65:00.2")); // other iface
        h.status("other/sriov-a", "net1", Some("0000:65:00.2")); // other namespace
        h.env("PCIDEVICE_INTEL_COM_A", "0000:65:00.3");
        let r = VfRequest {
            resource: Some("intel.com/a"),
            ..req("sriov", "default/sriov-a", "net1")
        };
        let devs = resolve_all(&h.info(), &[r]).unwrap();
        assert_eq!(devs[0].address, addr("0000:65:00.3"));
        assert!(matches!(devs[0].resolved_from, Source::DevicePlugin { .. }));

        assert!(multus_name_matches("ns/a", "a"));
        assert!(multus_name_matches("ns/a", "ns/a"));
        assert!(multus_name_matches("a", "a"));
        assert!(!multus_name_matches("ns/a", "other/a"));
        assert!(!multus_name_matches("ns/ab", "a"));
    }

    #[test]
    fn interface_without_device_info_falls_through_to_the_pool() {
        let mut h = Host::new();
        h.vf("0000:65:00.3", 43);
        h.status("default/sriov-a", "net1", None);
        h.env("KUBEVIRT_RESOURCE_NAME_sriov", "intel.com/sriov_net");
        h.env("PCIDEVICE_INTEL_COM_SRIOV_NET", "0000:65:00.3");
        let devs = resolve_all(&h.info(), &[req("sriov", "sriov-a", "net1")]).unwrap();
        assert_eq!(devs[0].address, addr("0000:65:00.3"));
    }

    // --- rule 2: device plugin ---------------------------------------------

    #[test]
    fn kubevirt_env_names_the_resource_and_wins_over_the_spec() {
        let mut h = Host::new();
        h.vf("0000:65:00.2", 42);
        h.env("KUBEVIRT_RESOURCE_NAME_sriov-net", "intel.com/sriov_net");
        h.env("PCIDEVICE_INTEL_COM_SRIOV_NET", "0000:65:00.2");
        h.env("PCIDEVICE_OTHER_COM_X", "0000:99:00.0");
        let r = VfRequest {
            resource: Some("other.com/x"),
            ..req("sriov-net", "sriov-a", "pod1a2b3c4d5e6")
        };
        let devs = resolve_all(&h.info(), &[r]).unwrap();
        assert_eq!(devs[0].address, addr("0000:65:00.2"));
        assert_eq!(
            devs[0].resolved_from,
            Source::DevicePlugin {
                resource: "intel.com/sriov_net".into(),
                env: "PCIDEVICE_INTEL_COM_SRIOV_NET".into()
            }
        );
    }

    #[test]
    fn spec_resource_is_used_without_kubevirt_env() {
        let mut h = Host::new();
        h.vf("0000:65:00.2", 42);
        h.env("PCIDEVICE_INTEL_COM_SRIOV_NET", " , 0000:65:00.2 ,");
        let r = VfRequest {
            resource: Some("intel.com/sriov_net"),
            ..req("sriov", "sriov-a", "net1")
        };
        let devs = resolve_all(&h.info(), &[r]).unwrap();
        assert_eq!(devs[0].address, addr("0000:65:00.2"));
    }

    #[test]
    fn nics_sharing_a_pool_get_distinct_vfs() {
        let mut h = Host::new();
        h.vf("0000:65:00.2", 42);
        h.vf("0000:65:00.3", 43);
        h.env("KUBEVIRT_RESOURCE_NAME_a", "intel.com/sriov_net");
        h.env("KUBEVIRT_RESOURCE_NAME_b", "intel.com/sriov_net");
        h.env("PCIDEVICE_INTEL_COM_SRIOV_NET", "0000:65:00.2,0000:65:00.3");
        let devs = resolve_all(
            &h.info(),
            &[req("a", "sriov", "net1"), req("b", "sriov", "net2")],
        )
        .unwrap();
        assert_eq!(devs[0].address, addr("0000:65:00.2"));
        assert_eq!(devs[1].address, addr("0000:65:00.3"));
        assert_eq!(devs[1].iommu_group, 43);
    }

    #[test]
    fn network_status_wins_and_its_vf_leaves_the_pool() {
        let mut h = Host::new();
        h.vf("0000:65:00.2", 42);
        h.vf("0000:65:00.3", 43);
        h.env("KUBEVIRT_RESOURCE_NAME_a", "intel.com/sriov_net");
        h.env("KUBEVIRT_RESOURCE_NAME_b", "intel.com/sriov_net");
        h.env("PCIDEVICE_INTEL_COM_SRIOV_NET", "0000:65:00.2,0000:65:00.3");
        // Only b has device-info, and it names the pool's first VF; a comes
        // first but must not take it.
        h.status("default/sriov", "net2", Some("0000:65:00.2"));
        let devs = resolve_all(
            &h.info(),
            &[req("a", "sriov", "net1"), req("b", "sriov", "net2")],
        )
        .unwrap();
        assert_eq!(devs[0].address, addr("0000:65:00.3"));
        assert!(matches!(devs[0].resolved_from, Source::DevicePlugin { .. }));
        assert_eq!(devs[1].address, addr("0000:65:00.2"));
        assert!(matches!(
            devs[1].resolved_from,
            Source::NetworkStatus { .. }
        ));
    }

    // --- errors ------------------------------------------------------------

    #[test]
    fn no_source_says_to_request_the_resource() {
        let h = Host::new();
        let mut info = h.info();
        info.network_status_file = None;
        let e = one_error(&info, &[req("sriov", "ns/sriov-a", "net1")]);
        assert!(matches!(e, SriovError::NoSource { .. }), "{e}");
        let msg = e.to_string();
        for part in [
            "network sriov",
            "net1",
            "KUBEVIRT_RESOURCE_NAME_sriov",
            "k8s.v1.cni.cncf.io/resourceName",
            "ns/sriov-a",
            "not projected",
        ] {
            assert!(msg.contains(part), "{part}: {msg}");
        }
    }

    #[test]
    fn missing_pool_env_is_an_error() {
        let mut h = Host::new();
        h.env("KUBEVIRT_RESOURCE_NAME_sriov", "intel.com/sriov_net");
        let e = one_error(&h.info(), &[req("sriov", "a", "net1")]);
        assert!(matches!(e, SriovError::PoolMissing { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("PCIDEVICE_INTEL_COM_SRIOV_NET"), "{msg}");
        assert!(msg.contains("KUBEVIRT_RESOURCE_NAME_sriov"), "{msg}");
        assert!(msg.contains("resources.limits"), "{msg}");
    }

    #[test]
    fn exhausted_pool_is_an_error() {
        let mut h = Host::new();
        h.vf("0000:65:00.2", 42);
        h.env("PCIDEVICE_INTEL_COM_X", "0000:65:00.2");
        let r = |net| VfRequest {
            resource: Some("intel.com/x"),
            ..req(net, "x", net)
        };
        let e = one_error(&h.info(), &[r("a"), r("b")]);
        match &e {
            SriovError::PoolExhausted { network, size, .. } => {
                assert_eq!((network.as_str(), *size), ("b", 1));
            }
            other => panic!("{other}"),
        }
        assert!(
            e.to_string().contains("all 1 VFs of resource intel.com/x"),
            "{e}"
        );
    }

    #[test]
    fn bad_addresses_are_errors() {
        let mut h = Host::new();
        h.status("ns/a", "net1", Some("65:00.2"));
        h.env("PCIDEVICE_INTEL_COM_X", "0000:65:00.2,bogus");
        let rb = VfRequest {
            resource: Some("intel.com/x"),
            ..req("b", "b", "net2")
        };
        let errs = resolve_all(&h.info(), &[req("a", "a", "net1"), rb])
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 2);
        match &errs[0] {
            SriovError::BadAddress { origin, source, .. } => {
                assert!(origin.contains("network-status entry ns/a"), "{origin}");
                assert_eq!(source.input, "65:00.2");
            }
            other => panic!("{other}"),
        }
        match &errs[1] {
            SriovError::BadAddress { origin, source, .. } => {
                assert_eq!(origin, "PCIDEVICE_INTEL_COM_X");
                assert_eq!(source.input, "bogus");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn same_address_twice_in_network_status_is_an_error() {
        let mut h = Host::new();
        h.vf("0000:65:00.2", 42);
        h.status("ns/a", "net1", Some("0000:65:00.2"));
        h.status("ns/b", "net2", Some("0000:65:00.2"));
        let e = one_error(&h.info(), &[req("a", "a", "net1"), req("b", "b", "net2")]);
        match &e {
            SriovError::DuplicateAddress {
                network,
                first_network,
                ..
            } => assert_eq!((network.as_str(), first_network.as_str()), ("b", "a")),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn device_missing_from_sysfs_is_an_error() {
        let mut h = Host::new();
        h.status("ns/a", "net1", Some("0000:65:00.2"));
        let e = one_error(&h.info(), &[req("a", "a", "net1")]);
        assert!(matches!(e, SriovError::NotInSysfs { .. }), "{e}");
        assert!(e.to_string().contains("0000:65:00.2"), "{e}");
    }

    #[test]
    fn wrong_driver_and_no_driver_are_errors() {
        let mut h = Host::new();
        h.device("0000:65:00.2", Some("iavf"), Some(42), true);
        h.device("0000:65:00.3", None, Some(43), true);
        h.status("ns/a", "net1", Some("0000:65:00.2"));
        h.status("ns/b", "net2", Some("0000:65:00.3"));
        let errs = resolve_all(&h.info(), &[req("a", "a", "net1"), req("b", "b", "net2")])
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 2);
        match &errs[0] {
            SriovError::WrongDriver { driver, .. } => assert_eq!(driver.as_deref(), Some("iavf")),
            other => panic!("{other}"),
        }
        let msg = errs[0].to_string();
        assert!(msg.contains("bound to iavf"), "{msg}");
        assert!(msg.contains("driver/unbind"), "{msg}");
        assert!(
            msg.contains(
                "echo vfio-pci > /sys/bus/pci/devices/0000:65:00.2/driver_override; \
                 echo 0000:65:00.2 > /sys/bus/pci/drivers_probe"
            ),
            "{msg}"
        );
        match &errs[1] {
            SriovError::WrongDriver { driver, .. } => assert_eq!(driver, &None),
            other => panic!("{other}"),
        }
        let msg = errs[1].to_string();
        assert!(msg.contains("bound to no driver"), "{msg}");
        assert!(!msg.contains("unbind"), "{msg}");
    }

    #[test]
    fn missing_iommu_group_is_an_error() {
        let mut h = Host::new();
        h.device("0000:65:00.2", Some(VFIO_DRIVER), None, false);
        h.status("ns/a", "net1", Some("0000:65:00.2"));
        let e = one_error(&h.info(), &[req("a", "a", "net1")]);
        assert!(matches!(e, SriovError::NoIommuGroup { .. }), "{e}");
        assert!(e.to_string().contains("iommu_group"), "{e}");
    }

    #[test]
    fn missing_vfio_group_node_is_an_error() {
        let mut h = Host::new();
        h.device("0000:65:00.2", Some(VFIO_DRIVER), Some(42), false);
        h.status("ns/a", "net1", Some("0000:65:00.2"));
        let e = one_error(&h.info(), &[req("a", "a", "net1")]);
        match &e {
            SriovError::NoVfioGroupNode { group, path, .. } => {
                assert_eq!(*group, 42);
                assert_eq!(path, &h.tmp.0.join("dev/vfio/42"));
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn bad_sysfs_content_is_an_error() {
        let mut h = Host::new();
        h.vf("0000:65:00.2", 42);
        fs::write(h.dev_dir("0000:65:00.2").join("vendor"), "8086\n").unwrap();
        h.status("ns/a", "net1", Some("0000:65:00.2"));
        let e = one_error(&h.info(), &[req("a", "a", "net1")]);
        assert!(matches!(e, SriovError::BadSysfsValue { .. }), "{e}");
        fs::remove_file(h.dev_dir("0000:65:00.2").join("vendor")).unwrap();
        let e = one_error(&h.info(), &[req("a", "a", "net1")]);
        assert!(matches!(e, SriovError::Io { .. }), "{e}");
    }

    #[test]
    fn all_errors_are_reported_together() {
        let mut h = Host::new();
        h.vf("0000:65:00.2", 42);
        h.device("0000:65:00.3", Some("iavf"), Some(43), true);
        h.status("ns/ok", "net1", Some("0000:65:00.2"));
        h.status("ns/drv", "net2", Some("0000:65:00.3"));
        let reqs = [
            req("ok", "ok", "net1"),
            req("drv", "drv", "net2"),
            req("none", "none", "net3"),
        ];
        let err = resolve_all(&h.info(), &reqs).unwrap_err();
        assert_eq!(err.errors().len(), 2);
        assert!(matches!(err.errors()[0], SriovError::WrongDriver { .. }));
        assert!(matches!(err.errors()[1], SriovError::NoSource { .. }));
        let msg = err.to_string();
        assert!(msg.starts_with("2 SR-IOV NICs cannot be set up:"), "{msg}");
        assert!(
            msg.contains("network drv") && msg.contains("network none"),
            "{msg}"
        );
        assert!(std::error::Error::source(&err).is_none());
    }

    #[test]
    fn no_requests_need_nothing() {
        assert_eq!(resolve_all(&PodInfo::default(), &[]).unwrap(), vec![]);
    }

    // --- downward API ------------------------------------------------------

    const STATUS_JSON: &str = r#"[{
    "name": "kindnet",
    "interface": "eth0",
    "ips": ["10.244.1.5"],
    "mac": "0a:58:0a:f4:01:05",
    "default": true,
    "dns": {}
},{
    "name": "default/sriov-a",
    "interface": "net1",
    "ips": ["192.168.1.10"],
    "mac": "ce:4e:9c:d3:1f:a0",
    "dns": {},
    "device-info": {
        "type": "pci",
        "version": "1.0.0",
        "pci": {"pci-address": "0000:65:00.2"}
    }
},{
    "name": "default/vdpa",
    "interface": "net2",
    "device-info": {"type": "vdpa", "vdpa": {"pci-address": "0000:65:00.4"}, "pci": {"pci-address": "0000:65:00.4"}}
}]"#;

    /// Quotes like Go's `%q` for the characters the tests use.
    fn go_quote(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn network_status_json_is_parsed() {
        let s = parse_network_status(STATUS_JSON).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "kindnet");
        assert!(s[0].default);
        assert_eq!(s[0].ips, ["10.244.1.5"]);
        assert_eq!(s[0].pci_address, None);
        assert_eq!(s[1].interface.as_deref(), Some("net1"));
        assert_eq!(s[1].mac.as_deref(), Some("ce:4e:9c:d3:1f:a0"));
        assert_eq!(s[1].device_type.as_deref(), Some("pci"));
        assert_eq!(s[1].pci_address.as_deref(), Some("0000:65:00.2"));
        // A vDPA device is not a VFIO VF even if it reports a PCI address.
        assert_eq!(s[2].device_type.as_deref(), Some("vdpa"));
        assert_eq!(s[2].pci_address, None);

        assert!(parse_network_status("{}").is_err());
        assert!(parse_network_status(r#"[{"interface":"net1"}]"#).is_err());
        assert!(parse_network_status("[").is_err());
    }

    #[test]
    fn go_quoted_values_unquote() {
        assert_eq!(go_unquote(r#""plain""#).as_deref(), Some("plain"));
        assert_eq!(
            go_unquote(r#""a\"b\\c\nd\te\x41\101\u00e9\U0001F600\a\v\f\r\b\'""#).as_deref(),
            Some("a\"b\\c\nd\teAA\u{e9}\u{1F600}\x07\x0b\x0c\r\x08'")
        );
        assert_eq!(go_unquote(r#""\xc3\xa9""#).as_deref(), Some("é"));
        assert_eq!(go_unquote(r#""héllo""#).as_deref(), Some("héllo"));
        for bad in [
            "",
            "plain",
            "\"open",
            "\"x\"y",
            r#""\q""#,
            r#""\x4""#,
            r#""\xff""#,
            r#""\400""#,
            r#""\uD800""#,
        ] {
            assert_eq!(go_unquote(bad), None, "{bad}");
        }
    }

    #[test]
    fn annotations_file_is_parsed() {
        let h = Host::new();
        let dir = h.podinfo();
        let text = format!(
            "kubectl.kubernetes.io/default-container=\"compute\"\n\
             {NETWORK_STATUS_ANNOTATION}={}\n\
             k8s.v1.cni.cncf.io/networks=\"[{{\\\"name\\\":\\\"sriov-a\\\"}}]\"\n",
            go_quote(STATUS_JSON)
        );
        assert!(!text.lines().nth(1).unwrap().contains('\n'));
        fs::write(dir.join("annotations"), &text).unwrap();
        let (status, file) = load_network_status(&dir).unwrap();
        assert_eq!(file, Some(dir.join("annotations")));
        assert_eq!(status, parse_network_status(STATUS_JSON).unwrap());

        let map = parse_annotations(&text).unwrap();
        assert_eq!(map["kubectl.kubernetes.io/default-container"], "compute");
        assert_eq!(
            map["k8s.v1.cni.cncf.io/networks"],
            r#"[{"name":"sriov-a"}]"#
        );
        assert_eq!(map[NETWORK_STATUS_ANNOTATION], STATUS_JSON);
    }

    #[test]
    fn old_annotation_key_is_accepted_and_new_one_preferred() {
        let h = Host::new();
        let dir = h.podinfo();
        let old = r#"[{"name":"ns/old","interface":"net1"}]"#;
        let new = r#"[{"name":"ns/new","interface":"net1"}]"#;
        fs::write(
            dir.join("annotations"),
            format!("{OLD_NETWORK_STATUS_ANNOTATION}={}\n", go_quote(old)),
        )
        .unwrap();
        assert_eq!(load_network_status(&dir).unwrap().0[0].name, "ns/old");
        fs::write(
            dir.join("annotations"),
            format!(
                "{OLD_NETWORK_STATUS_ANNOTATION}={}\n{NETWORK_STATUS_ANNOTATION}={}\n",
                go_quote(old),
                go_quote(new)
            ),
        )
        .unwrap();
        assert_eq!(load_network_status(&dir).unwrap().0[0].name, "ns/new");
    }

    #[test]
    fn single_network_status_file_is_preferred() {
        let h = Host::new();
        let dir = h.podinfo();
        fs::write(dir.join("network-status"), STATUS_JSON).unwrap();
        fs::write(dir.join("annotations"), "broken=\"\n").unwrap();
        let (status, file) = load_network_status(&dir).unwrap();
        assert_eq!(file, Some(dir.join("network-status")));
        assert_eq!(status.len(), 3);
    }

    #[test]
    fn absent_status_is_empty() {
        let h = Host::new();
        let (status, file) = load_network_status(&h.tmp.0.join("nope")).unwrap();
        assert!(status.is_empty() && file.is_none());

        let dir = h.podinfo();
        fs::write(dir.join("annotations"), "a=\"b\"\n").unwrap();
        let (status, file) = load_network_status(&dir).unwrap();
        assert!(status.is_empty() && file.is_none());

        fs::write(dir.join("network-status"), "").unwrap();
        let (status, file) = load_network_status(&dir).unwrap();
        assert!(status.is_empty() && file.is_none());
    }

    #[test]
    fn malformed_files_are_errors_naming_the_file() {
        let h = Host::new();
        let dir = h.podinfo();
        fs::write(
            dir.join("annotations"),
            format!("{NETWORK_STATUS_ANNOTATION}=\"[\\\"\n"),
        )
        .unwrap();
        let e = load_network_status(&dir).unwrap_err();
        assert!(matches!(e, PodInfoError::Malformed { .. }), "{e}");
        assert!(e.to_string().contains("annotations"), "{e}");

        fs::write(
            dir.join("annotations"),
            format!("{NETWORK_STATUS_ANNOTATION}={}\n", go_quote("[{")),
        )
        .unwrap();
        let e = load_network_status(&dir).unwrap_err();
        assert!(e.to_string().contains("annotations"), "{e}");

        fs::write(dir.join("network-status"), "not json").unwrap();
        let e = load_network_status(&dir).unwrap_err();
        assert!(matches!(e, PodInfoError::Malformed { .. }), "{e}");
        assert!(e.to_string().contains("network-status"), "{e}");
    }

    #[test]
    fn from_process_reads_the_podinfo_dir() {
        let h = Host::new();
        let dir = h.podinfo();
        fs::write(dir.join("network-status"), STATUS_JSON).unwrap();
        let info = PodInfo::from_process(&dir).unwrap();
        assert_eq!(info.network_status.len(), 3);
        assert_eq!(info.sysfs, Path::new("/sys"));
        assert_eq!(info.dev_vfio, Path::new("/dev/vfio"));
        if let Ok(path) = std::env::var("PATH") {
            assert_eq!(info.env.get("PATH"), Some(&path));
        }
    }

    #[test]
    fn end_to_end_from_downward_api() {
        let h = Host::new();
        h.vf("0000:65:00.2", 42);
        let dir = h.podinfo();
        fs::write(
            dir.join("annotations"),
            format!("{NETWORK_STATUS_ANNOTATION}={}\n", go_quote(STATUS_JSON)),
        )
        .unwrap();
        let (network_status, network_status_file) = load_network_status(&dir).unwrap();
        let info = PodInfo {
            network_status,
            network_status_file,
            ..h.info()
        };
        let devs = resolve_all(&info, &[req("sriov", "sriov-a", "net1")]).unwrap();
        assert_eq!(devs[0].address, addr("0000:65:00.2"));
        assert_eq!(
            devs[0].resolved_from,
            Source::NetworkStatus {
                file: Some(dir.join("annotations"))
            }
        );
    }
}
