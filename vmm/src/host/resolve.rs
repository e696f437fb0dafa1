//! The rules that turn a spec plan plus the pod into a host plan.

use std::collections::BTreeMap;

use net::sriov::{VfDevice, VfRequest};

use super::{HostBackend, HostErrors, HostNic, HostPlan, HostView, PodPlan};
use crate::plan::{Backend, Binding, FieldError, MacAddr, NetworkPlan, NicPlan, VmPlan};

/// What the command line adds to the spec for the host side.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostInputs<'a> {
    /// `--tap-fd IFACE=FD,…`: descriptors handed over per interface.
    pub tap_fds: &'a [(String, Vec<i32>)],
    /// TCP ports petrel serves in the pod itself (`--metrics-address`),
    /// which a masquerade binding must not forward to the guest.
    pub reserved_tcp_ports: &'a [u16],
}

/// Resolves every NIC of `plan` against `host`; all problems are reported
/// together.
pub fn resolve(
    plan: &VmPlan,
    inputs: &HostInputs<'_>,
    host: &dyn HostView,
) -> Result<HostPlan, HostErrors> {
    let mut errors = Vec::new();
    check_tap_fd_names(plan, inputs, &mut errors);
    let vfs = resolve_vfs(plan, inputs, host, &mut errors);
    let dns = host.dns();
    let mut nics = Vec::new();
    for nic in &plan.nics {
        let fds = inputs.tap_fds.iter().find(|(n, _)| *n == nic.name);
        let resolved = match fds {
            Some((_, fds)) => tap_fds(nic, fds, host),
            None => backend(nic, vfs.get(&nic.name), &dns, inputs, host),
        };
        match resolved {
            Ok((backend, guest_mac)) => nics.push(HostNic {
                name: nic.name.clone(),
                guest_mac,
                backend,
            }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(HostPlan { nics })
    } else {
        Err(crate::plan::PlanErrors(errors))
    }
}

fn check_tap_fd_names(plan: &VmPlan, inputs: &HostInputs<'_>, errors: &mut Vec<FieldError>) {
    check_tap_fd_duplicates(inputs, errors);
    for (name, _) in inputs.tap_fds {
        if !plan.nics.iter().any(|n| &n.name == name) {
            let known: Vec<&str> = plan.nics.iter().map(|n| n.name.as_str()).collect();
            errors.push(FieldError::new(
                "--tap-fd",
                name,
                format!(
                    "is not an interface of the spec; use one of: {}",
                    if known.is_empty() {
                        "(the spec has no interfaces)".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
}

/// An interface given twice, or a descriptor named twice (for one queue
/// pair or two): two queues on one descriptor would steal each other's
/// frames, and it would be closed twice.
fn check_tap_fd_duplicates(inputs: &HostInputs<'_>, errors: &mut Vec<FieldError>) {
    let mut seen_names = Vec::new();
    let mut seen_fds: Vec<(i32, &str)> = Vec::new();
    for (name, fds) in inputs.tap_fds {
        let at = format!("--tap-fd {name}");
        if seen_names.contains(&name) {
            errors.push(FieldError::new(
                &at,
                name,
                format!("is given twice; give all of its descriptors at once: --tap-fd {name}=FD[,FD...]"),
            ));
            continue;
        }
        seen_names.push(name);
        for &fd in fds {
            match seen_fds.iter().find(|(f, _)| *f == fd) {
                Some((_, first)) => errors.push(FieldError::new(
                    &at,
                    fd.to_string(),
                    if *first == name.as_str() {
                        format!("names descriptor {fd} twice; each queue pair needs its own tap queue")
                    } else {
                        format!("names descriptor {fd}, which --tap-fd {first} already uses; each queue pair needs its own tap queue")
                    },
                )),
                None => seen_fds.push((fd, name)),
            }
        }
    }
}

/// Handed-over tap descriptors: one per queue pair, each open here and a
/// tap.
fn tap_fds(
    nic: &NicPlan,
    fds: &[i32],
    host: &dyn HostView,
) -> Result<(HostBackend, MacAddr), FieldError> {
    let list = fds.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let at = format!("--tap-fd {}", nic.name);
    if fds.len() != usize::from(nic.queue_pairs) {
        return Err(FieldError::new(
            &at,
            &list,
            format!(
                "gives {} descriptors; interface {} has {} queue pairs, give one tap queue each",
                fds.len(),
                nic.name,
                nic.queue_pairs
            ),
        ));
    }
    if let Some(fd) = fds.iter().find(|&&fd| !host.fd_is_open(fd)) {
        return Err(FieldError::new(
            &at,
            &list,
            format!("names descriptor {fd}, which is not open in petrel; pass it open to petrel"),
        ));
    }
    for &fd in fds {
        if let Err(what) = host.fd_is_tap(fd) {
            return Err(FieldError::new(
                &at,
                &list,
                format!("names descriptor {fd}, which is {what}; pass a tap queue opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR"),
            ));
        }
    }
    Ok((HostBackend::TapFds { fds: fds.to_vec() }, nic.mac))
}

/// The VF of every `sriov` NIC at once (two NICs on one device-plugin pool
/// must get different VFs).
fn resolve_vfs(
    plan: &VmPlan,
    inputs: &HostInputs<'_>,
    host: &dyn HostView,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, VfDevice> {
    let sriov: Vec<&NicPlan> = plan
        .nics
        .iter()
        .filter(|n| matches!(n.backend, Backend::Vfio { .. }))
        .filter(|n| !inputs.tap_fds.iter().any(|(name, _)| *name == n.name))
        .collect();
    if sriov.is_empty() {
        return BTreeMap::new();
    }
    let reqs: Vec<VfRequest<'_>> = sriov.iter().map(|n| vf_request(n)).collect();
    match host.resolve_vfs(&reqs) {
        Ok(vfs) => sriov.iter().map(|n| n.name.clone()).zip(vfs).collect(),
        Err(messages) => {
            for m in messages {
                let nic = sriov.iter().find(|n| {
                    m.starts_with(&format!("network {} ", n.name))
                        || m.starts_with(&format!("network {}:", n.name))
                });
                let path = nic.map_or("SR-IOV", |n| n.binding_path.as_str());
                errors.push(FieldError::new(path, "", m));
            }
            BTreeMap::new()
        }
    }
}

fn vf_request(n: &NicPlan) -> VfRequest<'_> {
    let (multus_network, pod_iface) = match &n.network {
        NetworkPlan::Multus {
            network_name,
            pod_iface,
            ..
        } => (network_name.as_str(), pod_iface.as_str()),
        _ => (n.name.as_str(), ""),
    };
    VfRequest {
        network: &n.name,
        multus_network,
        pod_iface,
        resource: match &n.backend {
            Backend::Vfio { resource } => resource.as_deref(),
            _ => None,
        },
    }
}

/// KubeVirt's newer name for a secondary multus interface: "pod" and the
/// first 11 hex digits of the SHA-256 of the network's name.
pub fn hashed_iface_name(network: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(network.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("pod{}", &hex[..11])
}

/// The pod interface a NIC's network arrives on: `eth0` for the pod
/// network (or the default multus network); for other multus networks the
/// ordinal name (`net1`, `net2`, … in `spec.networks` order) when the pod
/// has it, else KubeVirt's hashed name; for a resource network the one its
/// device plugin names. None for networks petrel does not reach through a
/// pod interface (genie, which the plan refuses).
pub(super) fn pod_iface(nic: &NicPlan, host: &dyn HostView) -> Option<Result<String, FieldError>> {
    let (ordinal, tried) = match &nic.network {
        NetworkPlan::Resource { resource_name, .. } => {
            return Some(super::resource::pod_iface(nic, resource_name, host))
        }
        NetworkPlan::Pod { .. } => ("eth0".to_string(), None),
        NetworkPlan::Multus {
            pod_iface, default, ..
        } => {
            let hashed = (!*default).then(|| hashed_iface_name(&nic.name));
            (pod_iface.clone(), hashed)
        }
        _ => return None,
    };
    let found = std::iter::once(&ordinal)
        .chain(tried.as_ref())
        .find(|name| host.link_exists(name));
    Some(match found {
        Some(name) => Ok(name.clone()),
        None => Err(FieldError::new(
            &nic.path,
            &nic.name,
            format!(
                "arrives on pod interface {}, which this pod does not have; check the \
                 NetworkAttachmentDefinition and the pod's network annotation",
                match &tried {
                    Some(h) => format!("{ordinal} or {h}"),
                    None => ordinal.clone(),
                }
            ),
        )),
    })
}

fn backend(
    nic: &NicPlan,
    vf: Option<&VfDevice>,
    dns: &net::binding::DnsInfo,
    inputs: &HostInputs<'_>,
    host: &dyn HostView,
) -> Result<(HostBackend, MacAddr), FieldError> {
    match &nic.backend {
        Backend::Vfio { .. } => match vf {
            Some(vf) => Ok((
                HostBackend::Vfio {
                    address: vf.address.to_string(),
                    sysfs_path: vf.sysfs_path.clone(),
                    resolved_from: vf.resolved_from.to_string(),
                },
                nic.mac,
            )),
            // resolve_vfs reported why.
            None => Err(FieldError::new(
                &nic.binding_path,
                "",
                "has no VF (see above)",
            )),
        },
        Backend::Macvtap { .. } => macvtap(nic, host),
        Backend::Tap { name } if is_pod_binding(nic) => match pod_iface(nic, host) {
            Some(Ok(iface)) => pod_plan(nic, name, iface, dns, inputs, host),
            Some(Err(e)) => Err(e),
            None => Err(FieldError::new(
                &nic.network_path,
                "",
                "reaches no pod interface petrel can bind; use the pod network or a multus network",
            )),
        },
        Backend::Tap { name } => Ok((HostBackend::Tap { name: name.clone() }, nic.mac)),
        Backend::Userspace => super::passt::resolve(nic, host),
    }
}

/// Bridge and masquerade are plumbed by petrel on whatever network they
/// are on (the petrel.io/tap annotation wires a plain tap instead).
fn is_pod_binding(nic: &NicPlan) -> bool {
    matches!(nic.binding, Binding::Bridge | Binding::Masquerade)
}

/// Whose MAC the guest gets: the spec's, the generated one, or for a
/// bridge without a spec MAC the pod interface's own (KubeVirt: "the MAC
/// address from the relevant pod interface is delegated to the virtual
/// machine"; Virtink does the same). A resource network's device plugin
/// interface is bridged without delegation (seed: "bridged binding
/// without delegating the IP/MAC").
fn guest_mac(
    nic: &NicPlan,
    pod_iface: &str,
    host: &dyn HostView,
) -> Result<(MacAddr, bool), FieldError> {
    let delegate = nic.binding == Binding::Bridge
        && !nic.mac_from_spec
        && matches!(
            nic.network,
            NetworkPlan::Pod { .. } | NetworkPlan::Multus { .. }
        );
    if !delegate {
        return Ok((nic.mac, false));
    }
    let text = host.link_mac(pod_iface).map_err(|e| {
        FieldError::new(
            &nic.path,
            &nic.name,
            format!("pod interface {pod_iface}: {e}"),
        )
    })?;
    let mac = text.parse::<MacAddr>().map_err(|_| {
        FieldError::new(
            &nic.path,
            &nic.name,
            format!("pod interface {pod_iface} has MAC {text:?}, which petrel cannot parse"),
        )
    })?;
    if mac.is_multicast() || mac.0 == [0; 6] {
        return Err(FieldError::new(
            &nic.path,
            &nic.name,
            format!(
                "pod interface {pod_iface} has MAC {mac}, which a guest cannot use; set \
                 macAddress on the interface"
            ),
        ));
    }
    Ok((mac, true))
}

fn pod_plan(
    nic: &NicPlan,
    tap: &str,
    pod_iface: String,
    dns: &net::binding::DnsInfo,
    inputs: &HostInputs<'_>,
    host: &dyn HostView,
) -> Result<(HostBackend, MacAddr), FieldError> {
    let (mac, delegate_mac) = guest_mac(nic, &pod_iface, host)?;
    let (ipv4, ipv6) = match (&nic.network, nic.binding) {
        (
            NetworkPlan::Pod {
                ipv4_cidr,
                ipv6_cidr,
            },
            Binding::Masquerade,
        ) => {
            // IPv6 masquerade only when the pod itself has IPv6.
            let v6 = ipv6_cidr.filter(|_| host.has_global_ipv6(&pod_iface));
            (*ipv4_cidr, v6)
        }
        _ => (None, None),
    };
    // Bridge ports are informational: the guest has every port. A
    // masquerade binding never forwards the ports petrel itself serves.
    let (ports, reserved_ports) = if nic.binding == Binding::Masquerade {
        (nic.ports.clone(), inputs.reserved_tcp_ports.to_vec())
    } else {
        (Vec::new(), Vec::new())
    };
    let plan = PodPlan {
        binding: nic.binding,
        pod_iface,
        tap: tap.to_string(),
        ipv4,
        ipv6,
        ports,
        reserved_ports,
        dns_servers: dns.servers.clone(),
        dns_search: dns.search.clone(),
        delegate_mac,
        prepared: false,
    };
    Ok((HostBackend::Pod(plan), mac))
}

/// KubeVirt's macvtap binding: the guest uses the link's MAC unless the
/// spec gives one, which the link then takes.
fn macvtap(nic: &NicPlan, host: &dyn HostView) -> Result<(HostBackend, MacAddr), FieldError> {
    let iface = match pod_iface(nic, host) {
        Some(r) => r?,
        None => {
            return Err(FieldError::new(
                &nic.path,
                &nic.name,
                "has no pod interface",
            ))
        }
    };
    let mac = if nic.mac_from_spec {
        nic.mac
    } else {
        let text = host.link_mac(&iface).map_err(|e| {
            FieldError::new(&nic.path, &nic.name, format!("macvtap link {iface}: {e}"))
        })?;
        text.parse::<MacAddr>().map_err(|_| {
            FieldError::new(
                &nic.path,
                &nic.name,
                format!("macvtap link {iface} has MAC {text:?}, which petrel cannot parse"),
            )
        })?
    };
    Ok((
        HostBackend::Macvtap {
            iface,
            set_link_mac: nic.mac_from_spec,
        },
        mac,
    ))
}
