//! Which VF each `sriov` NIC gets: the requests, the rules that pick an
//! address for each, and the checked result.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::sysfs::check_device;
use super::{pool_env_names, resource_name_env, PciAddress, PodInfo, SriovError, SriovErrors};

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

/// An address picked for a NIC, not yet checked against sysfs.
pub(super) struct Claim {
    pub(super) address: PciAddress,
    pub(super) source: Source,
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
pub(super) fn multus_name_matches(entry: &str, wanted: &str) -> bool {
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
