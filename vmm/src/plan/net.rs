//! Interfaces and networks → NIC plans.

use std::collections::BTreeMap;

use crate::spec::{
    BindingKind, BindingSpec, Field, InterfaceSpec, NetworkSource, NetworkSourceKind, NetworkSpec,
    SpecKind, VmSpec,
};

use super::cidr::{check_ipv4, check_ipv6};
use super::mac::MacAddr;
use super::pci::{PciAddress, SlotAllocator};
use super::{
    Backend, Binding, FieldError, NetworkPlan, NicModel, NicPlan, PortPlan, Protocol,
    KUBEVIRT_DEFAULT_IPV4_CIDR, KUBEVIRT_DEFAULT_IPV6_CIDR, MAX_IFNAME_LEN, TAP_ANNOTATION_PREFIX,
    VIRTINK_DEFAULT_CIDR,
};

/// A network whose source was valid, with its pod-side interface name.
struct NetInfo<'a> {
    spec: &'a NetworkSpec,
    source: &'a NetworkSource,
    is_pod: bool,
    pod_iface: String,
}

/// Per-interface results before MACs and PCI slots are assigned.
struct Draft<'a> {
    iface: &'a InterfaceSpec,
    binding: Option<Binding>,
    network: Option<NetworkPlan>,
    model: NicModel,
    ports: Vec<PortPlan>,
    boot_order: Option<u32>,
    backend: Option<Backend>,
}

fn binding_names(kind: SpecKind) -> &'static str {
    match kind {
        SpecKind::Virtink => "bridge, masquerade, sriov",
        _ => "bridge, masquerade, slirp, sriov, macvtap, passt",
    }
}

fn source_names(kind: SpecKind) -> &'static str {
    match kind {
        SpecKind::Virtink => "pod, multus",
        _ => "pod, multus, genie, resource",
    }
}

fn source_key(s: &NetworkSourceKind) -> &'static str {
    match s {
        NetworkSourceKind::Pod { .. } => "pod",
        NetworkSourceKind::Multus { .. } => "multus",
        NetworkSourceKind::Genie { .. } => "genie",
        NetworkSourceKind::Resource { .. } => "resource",
    }
}

fn describe(info: &NetInfo<'_>) -> String {
    let what = match &info.source.kind {
        NetworkSourceKind::Pod { .. } => "the pod network",
        NetworkSourceKind::Multus { default: true, .. } => "the default multus network",
        NetworkSourceKind::Multus { .. } => "a multus network",
        NetworkSourceKind::Genie { .. } => "a genie network",
        NetworkSourceKind::Resource { .. } => "a resource network",
    };
    format!("{what} ({})", info.spec.path)
}

/// The interfaces and networks to plan, with KubeVirt's default interface
/// added when the spec has neither.
fn effective(spec: &VmSpec, warnings: &mut Vec<String>) -> (Vec<InterfaceSpec>, Vec<NetworkSpec>) {
    let mut interfaces = spec.interfaces.clone();
    let mut networks = spec.networks.clone();
    let kubevirt = matches!(spec.kind, SpecKind::KubeVirtVm | SpecKind::KubeVirtVmi);
    if kubevirt
        && interfaces.is_empty()
        && networks.is_empty()
        && spec.autoattach_pod_interface != Some(false)
    {
        let ip = format!("{}[0]", spec.interfaces_path);
        let np = format!("{}[0]", spec.networks_path);
        interfaces.push(InterfaceSpec {
            path: ip.clone(),
            name: Field::new("default".to_string(), format!("{ip}.name")),
            bindings: vec![BindingSpec {
                kind: BindingKind::Bridge,
                path: format!("{ip}.bridge"),
                cidr: None,
            }],
            model: None,
            mac: None,
            ports: Vec::new(),
            pci_address: None,
            boot_order: None,
            boot_file_name: None,
            tftp_server_name: None,
        });
        networks.push(NetworkSpec {
            path: np.clone(),
            name: Field::new("default".to_string(), format!("{np}.name")),
            sources: vec![NetworkSource {
                path: format!("{np}.pod"),
                kind: NetworkSourceKind::Pod {
                    ipv4_cidr: None,
                    ipv6_cidr: None,
                },
            }],
        });
        warnings.push(format!(
            "{}: absent; added interface \"default\" with bridge binding on the pod network, \
             as KubeVirt does (set autoattachPodInterface: false for a VM without NICs)",
            spec.interfaces_path
        ));
    }
    (interfaces, networks)
}

/// Reports names used twice (at the later occurrence).
fn check_unique<'a>(
    names: impl Iterator<Item = &'a Field<String>>,
    what: &str,
    errors: &mut Vec<FieldError>,
) {
    let mut seen = BTreeMap::new();
    for f in names {
        note_name(&mut seen, f, what, errors);
    }
}

/// Records the name `f`, or reports it when `seen` already has it; `seen`
/// maps each name to where it was first used.
fn note_name<'a>(
    seen: &mut BTreeMap<&'a str, &'a str>,
    f: &'a Field<String>,
    what: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some(first) = seen.get(f.value.as_str()) {
        errors.push(FieldError::new(
            &f.path,
            &f.value,
            format!("is used by two {what}s (also {first}); {what} names must be unique"),
        ));
    } else {
        seen.insert(&f.value, &f.path);
    }
}

fn required(
    f: &Option<Field<String>>,
    path: &str,
    what: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match f {
        Some(f) if !f.value.is_empty() => Some(f.value.clone()),
        Some(f) => {
            errors.push(FieldError::new(&f.path, "", format!("is empty; {what}")));
            None
        }
        None => {
            errors.push(FieldError::new(path, "", format!("is missing; {what}")));
            None
        }
    }
}

/// Reports each of `extras` (paths) as a second `what` of `owner`, which
/// already has `first`: a network takes one source, an interface one
/// binding.
fn report_extras<'p>(
    extras: impl Iterator<Item = &'p str>,
    what: &str,
    owner: &str,
    first: &str,
    errors: &mut Vec<FieldError>,
) {
    for path in extras {
        errors.push(FieldError::new(
            path,
            "",
            format!("is a second {what} for {owner} (it already has {first}); keep exactly one"),
        ));
    }
}

/// Checks each network's source and names pod-side interfaces.
fn resolve_networks<'a>(
    spec: &VmSpec,
    networks: &'a [NetworkSpec],
    errors: &mut Vec<FieldError>,
) -> Vec<Option<NetInfo<'a>>> {
    let mut out = Vec::new();
    let mut pod_network: Option<&str> = None;
    let (mut multus_idx, mut genie_idx) = (0, 0);
    for n in networks {
        let source = match n.sources.as_slice() {
            [] => {
                errors.push(FieldError::new(
                    &n.path,
                    "",
                    format!(
                        "network {:?} has no source; set exactly one of {}",
                        n.name.value,
                        source_names(spec.kind)
                    ),
                ));
                None
            }
            [one] => Some(one),
            [first, rest @ ..] => {
                report_extras(
                    rest.iter().map(|e| e.path.as_str()),
                    "source",
                    &format!("network {:?}", n.name.value),
                    source_key(&first.kind),
                    errors,
                );
                None
            }
        };
        let Some(source) = source else {
            out.push(None);
            continue;
        };
        let mut ok = true;
        let mut is_pod = false;
        let pod_iface = match &source.kind {
            NetworkSourceKind::Pod {
                ipv4_cidr,
                ipv6_cidr,
            } => {
                if let Some(f) = ipv4_cidr {
                    if let Err(m) = check_ipv4(&f.value) {
                        errors.push(FieldError::new(&f.path, &f.value, m));
                    }
                }
                if let Some(f) = ipv6_cidr {
                    if let Err(m) = check_ipv6(&f.value) {
                        errors.push(FieldError::new(&f.path, &f.value, m));
                    }
                }
                is_pod = true;
                "eth0".to_string()
            }
            NetworkSourceKind::Multus {
                network_name,
                default,
            } => {
                let what = "name the NetworkAttachmentDefinition as [namespace/]name";
                let path = format!("{}.networkName", source.path);
                ok &= required(network_name, &path, what, errors).is_some();
                if *default {
                    is_pod = true;
                    "eth0".to_string()
                } else {
                    multus_idx += 1;
                    format!("net{multus_idx}")
                }
            }
            NetworkSourceKind::Genie { network_name } => {
                let path = format!("{}.networkName", source.path);
                ok &= required(network_name, &path, "name the CNI network", errors).is_some();
                genie_idx += 1;
                format!("eth{}", genie_idx - 1)
            }
            NetworkSourceKind::Resource { resource_name } => {
                let path = format!("{}.resourceName", source.path);
                let what = "use <device-plugin-name>/<network-name>";
                ok &= required(resource_name, &path, what, errors).is_some();
                format!("net-{}", n.name.value)
            }
        };
        if is_pod {
            if let Some(first) = pod_network {
                errors.push(FieldError::new(
                    &source.path,
                    "",
                    format!(
                        "makes network {:?} a second pod network ({first} already is one); \
                         only one pod network is allowed, and a multus network with \
                         default: true counts as the pod network",
                        n.name.value
                    ),
                ));
                ok = false;
            } else {
                pod_network = Some(&n.path);
            }
        }
        out.push(ok.then_some(NetInfo {
            spec: n,
            source,
            is_pod,
            pod_iface,
        }));
    }
    out
}

/// Checks that a Linux interface name is usable; returns what is wrong.
pub(crate) fn ifname_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_IFNAME_LEN {
        Some("is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("is not a valid name")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("contains '/', ':' or whitespace")
    } else {
        None
    }
}

/// `tap-<name>` cut to 15 bytes (on a character boundary).
pub(crate) fn derived_tap_name(iface: &str) -> String {
    let mut out = String::from("tap-");
    for c in iface.chars() {
        if out.len() + c.len_utf8() > MAX_IFNAME_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// The binding actually used, or None after recording an error.
fn pick_binding<'a>(
    spec: &VmSpec,
    iface: &'a InterfaceSpec,
    tapped: bool,
    errors: &mut Vec<FieldError>,
) -> (Option<Binding>, Option<&'a BindingSpec>) {
    let names = binding_names(spec.kind);
    let chosen = match iface.bindings.as_slice() {
        [] if tapped => return (Some(Binding::Tap), None),
        [] => {
            errors.push(FieldError::new(
                &iface.path,
                "",
                format!(
                    "interface {:?} has no binding; set exactly one of {names}",
                    iface.name.value
                ),
            ));
            return (None, None);
        }
        [one] => one,
        [first, rest @ ..] => {
            report_extras(
                rest.iter().map(|e| e.path.as_str()),
                "binding",
                &format!("interface {:?}", iface.name.value),
                first.path.rsplit('.').next().unwrap_or_default(),
                errors,
            );
            return (None, None);
        }
    };
    let binding = match &chosen.kind {
        BindingKind::Bridge => Binding::Bridge,
        BindingKind::Masquerade => Binding::Masquerade,
        BindingKind::Slirp => Binding::Slirp,
        BindingKind::Sriov => Binding::Sriov,
        BindingKind::Macvtap => Binding::Macvtap,
        BindingKind::Passt => Binding::Passt,
        BindingKind::Plugin(name) => {
            errors.push(FieldError::new(
                format!("{}.name", chosen.path),
                name,
                format!("is not a network binding petrel implements; use passt, slirp, macvtap or one of {names}"),
            ));
            return (None, Some(chosen));
        }
    };
    if tapped {
        (Some(Binding::Tap), Some(chosen))
    } else {
        (Some(binding), Some(chosen))
    }
}

/// Checks the binding against the network; returns the network plan.
fn network_plan(
    spec: &VmSpec,
    binding: Binding,
    binding_spec: Option<&BindingSpec>,
    info: &NetInfo<'_>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> Option<NetworkPlan> {
    let need = match binding {
        Binding::Masquerade | Binding::Slirp | Binding::Passt if !info.is_pod => {
            Some("the pod network")
        }
        Binding::Sriov | Binding::Macvtap
            if !matches!(info.source.kind, NetworkSourceKind::Multus { .. }) =>
        {
            Some("a multus network")
        }
        _ => None,
    };
    if let Some(need) = need {
        let path = binding_spec.map_or_else(|| info.spec.path.clone(), |b| b.path.clone());
        errors.push(FieldError::new(
            path,
            &info.spec.name.value,
            format!("is {}; {binding} binding needs {need}", describe(info)),
        ));
        return None;
    }
    let text = |f: &Option<Field<String>>| f.as_ref().map(|f| f.value.clone());
    Some(match &info.source.kind {
        NetworkSourceKind::Pod {
            ipv4_cidr,
            ipv6_cidr,
        } => {
            let masquerade = binding == Binding::Masquerade;
            for f in [ipv4_cidr, ipv6_cidr].into_iter().flatten() {
                if !masquerade {
                    warnings.push(format!(
                        "{}: ignored (only used with masquerade binding)",
                        f.path
                    ));
                }
            }
            let virtink_cidr = binding_spec.and_then(|b| b.cidr.as_ref());
            if let Some(c) = virtink_cidr {
                if let Err(m) = check_ipv4(&c.value) {
                    errors.push(FieldError::new(&c.path, &c.value, m));
                }
            }
            match (masquerade, spec.kind) {
                (false, _) => NetworkPlan::Pod {
                    ipv4_cidr: None,
                    ipv6_cidr: None,
                },
                (true, SpecKind::Virtink) => NetworkPlan::Pod {
                    ipv4_cidr: Some(
                        virtink_cidr
                            .map_or_else(|| VIRTINK_DEFAULT_CIDR.to_string(), |c| c.value.clone()),
                    ),
                    ipv6_cidr: None,
                },
                (true, _) => NetworkPlan::Pod {
                    ipv4_cidr: Some(
                        text(ipv4_cidr).unwrap_or_else(|| KUBEVIRT_DEFAULT_IPV4_CIDR.into()),
                    ),
                    ipv6_cidr: Some(
                        text(ipv6_cidr).unwrap_or_else(|| KUBEVIRT_DEFAULT_IPV6_CIDR.into()),
                    ),
                },
            }
        }
        NetworkSourceKind::Multus {
            network_name,
            default,
        } => NetworkPlan::Multus {
            network_name: text(network_name).unwrap_or_default(),
            default: *default,
            pod_iface: info.pod_iface.clone(),
        },
        NetworkSourceKind::Genie { network_name } => NetworkPlan::Genie {
            network_name: text(network_name).unwrap_or_default(),
            pod_iface: info.pod_iface.clone(),
        },
        NetworkSourceKind::Resource { resource_name } => NetworkPlan::Resource {
            resource_name: text(resource_name).unwrap_or_default(),
            pod_iface: info.pod_iface.clone(),
        },
    })
}

fn ports(
    iface: &InterfaceSpec,
    binding: Option<Binding>,
    errors: &mut Vec<FieldError>,
) -> Vec<PortPlan> {
    if iface.ports.is_empty() {
        return Vec::new();
    }
    if let Some(b) = binding {
        if !matches!(b, Binding::Masquerade | Binding::Slirp) {
            errors.push(FieldError::new(
                format!("{}.ports", iface.path),
                "",
                format!(
                    "are only allowed with masquerade or slirp binding; interface {:?} uses {b}",
                    iface.name.value
                ),
            ));
        }
    }
    let mut out = Vec::new();
    let mut names = BTreeMap::new();
    for p in &iface.ports {
        let port = match &p.port {
            None => {
                errors.push(FieldError::new(
                    format!("{}.port", p.path),
                    "",
                    "is missing; use 1-65535",
                ));
                None
            }
            Some(f) => match u16::try_from(f.value) {
                Ok(v) if v >= 1 => Some(v),
                _ => {
                    errors.push(FieldError::new(
                        &f.path,
                        f.value.to_string(),
                        "is out of range; use 1-65535",
                    ));
                    None
                }
            },
        };
        let protocol = match &p.protocol {
            None => Some(Protocol::Tcp),
            Some(f) => match f.value.to_ascii_uppercase().as_str() {
                "TCP" => Some(Protocol::Tcp),
                "UDP" => Some(Protocol::Udp),
                _ => {
                    errors.push(FieldError::new(
                        &f.path,
                        &f.value,
                        "is not a supported protocol; use TCP or UDP",
                    ));
                    None
                }
            },
        };
        if let Some(n) = &p.name {
            note_name(&mut names, n, "port", errors);
        }
        if let (Some(port), Some(protocol)) = (port, protocol) {
            out.push(PortPlan {
                name: p.name.as_ref().map(|n| n.value.clone()),
                port,
                protocol,
            });
        }
    }
    out
}

fn model(iface: &InterfaceSpec, errors: &mut Vec<FieldError>) -> NicModel {
    let Some(f) = &iface.model else {
        return NicModel::VirtioNet;
    };
    NicModel::from_kubevirt(&f.value).unwrap_or_else(|| {
        let all: Vec<&str> = NicModel::ALL.iter().map(|m| m.as_str()).collect();
        errors.push(FieldError::new(
            &f.path,
            &f.value,
            format!("is not a known NIC model; use one of {}", all.join(", ")),
        ));
        NicModel::VirtioNet
    })
}

fn boot_order(
    iface: &InterfaceSpec,
    seen: &mut BTreeMap<u32, String>,
    errors: &mut Vec<FieldError>,
) -> Option<u32> {
    let f = iface.boot_order.as_ref()?;
    match u32::try_from(f.value) {
        Ok(v) if v >= 1 => {
            if let Some(first) = seen.get(&v) {
                errors.push(FieldError::new(
                    &f.path,
                    v.to_string(),
                    format!("is used twice (also {first}); boot orders must be unique"),
                ));
            } else {
                seen.insert(v, f.path.clone());
            }
            Some(v)
        }
        _ => {
            errors.push(FieldError::new(
                &f.path,
                f.value.to_string(),
                "is out of range; use 1 or greater",
            ));
            None
        }
    }
}

/// Tap names from `petrel.io/tap.<iface>` annotations, by interface name.
fn tap_annotations(
    spec: &VmSpec,
    interfaces: &[InterfaceSpec],
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, Field<String>> {
    let mut out = BTreeMap::new();
    for (key, f) in &spec.annotations {
        let Some(iface) = key.strip_prefix(TAP_ANNOTATION_PREFIX) else {
            continue;
        };
        if let Some(problem) = ifname_problem(&f.value) {
            errors.push(FieldError::new(
                &f.path,
                &f.value,
                format!(
                    "{problem}; a tap device name needs 1-15 bytes without '/', ':' or whitespace"
                ),
            ));
            continue;
        }
        if !interfaces.iter().any(|i| i.name.value == iface) {
            let names: Vec<&str> = interfaces.iter().map(|i| i.name.value.as_str()).collect();
            errors.push(FieldError::new(
                &f.path,
                &f.value,
                format!(
                    "is set for interface {iface:?}, which does not exist; interfaces: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
            continue;
        }
        out.insert(iface.to_string(), f.clone());
    }
    out
}

fn backend(
    spec: &VmSpec,
    iface: &InterfaceSpec,
    binding: Binding,
    network: &NetworkPlan,
    taps: &BTreeMap<String, Field<String>>,
    errors: &mut Vec<FieldError>,
) -> Option<Backend> {
    Some(match binding {
        Binding::Tap => Backend::Tap {
            name: taps.get(&iface.name.value)?.value.clone(),
        },
        Binding::Bridge | Binding::Masquerade => {
            let name = derived_tap_name(&iface.name.value);
            if let Some(problem) = ifname_problem(&name) {
                errors.push(FieldError::new(
                    &iface.name.path,
                    &iface.name.value,
                    format!(
                        "gives the tap device name {name:?}, which {problem}; rename the interface \
                         or set the annotation {TAP_ANNOTATION_PREFIX}{}",
                        iface.name.value
                    ),
                ));
                return None;
            }
            Backend::Tap { name }
        }
        Binding::Macvtap => Backend::Macvtap {
            iface: match network {
                NetworkPlan::Multus { pod_iface, .. } => pod_iface.clone(),
                _ => return None,
            },
        },
        Binding::Sriov => Backend::Vfio {
            resource: match network {
                NetworkPlan::Multus { network_name, .. } => sriov_resource(spec, network_name),
                _ => None,
            },
        },
        Binding::Slirp | Binding::Passt => Backend::Userspace,
    })
}

/// Device-plugin resource of the NetworkAttachmentDefinition named by a
/// multus `networkName` (`name` or `namespace/name`), if it is in the file.
fn sriov_resource(spec: &VmSpec, network_name: &str) -> Option<String> {
    let (ns, name) = match network_name.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, network_name),
    };
    spec.network_attachments
        .iter()
        .find(|a| a.name == name && (ns.is_none() || a.namespace.as_deref() == ns))
        .and_then(|a| a.resource_name.clone())
}

/// Validates interfaces and networks and builds the NIC plans.
pub(crate) fn resolve_nics(
    spec: &VmSpec,
    vcpus: u8,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> Vec<NicPlan> {
    let (interfaces, networks) = effective(spec, warnings);
    check_unique(interfaces.iter().map(|i| &i.name), "interface", errors);
    check_unique(networks.iter().map(|n| &n.name), "network", errors);
    let infos = resolve_networks(spec, &networks, errors);

    for n in &networks {
        if !interfaces.iter().any(|i| i.name.value == n.name.value) {
            errors.push(FieldError::new(
                &n.name.path,
                &n.name.value,
                format!(
                    "has no interface with the same name in {}; each network needs exactly one interface",
                    spec.interfaces_path
                ),
            ));
        }
    }

    let taps = tap_annotations(spec, &interfaces, errors);
    let mut boot_orders = BTreeMap::new();
    let mut drafts = Vec::new();
    for iface in &interfaces {
        let tapped = taps.contains_key(&iface.name.value);
        let (binding, binding_spec) = pick_binding(spec, iface, tapped, errors);
        let net_idx = networks
            .iter()
            .position(|n| n.name.value == iface.name.value);
        if net_idx.is_none() {
            errors.push(FieldError::new(
                &iface.name.path,
                &iface.name.value,
                format!(
                    "has no network with the same name in {}; add one, e.g. {{name: {}, pod: {{}}}}",
                    spec.networks_path, iface.name.value
                ),
            ));
        }
        let info = net_idx.and_then(|i| infos.get(i)).and_then(Option::as_ref);
        let network = match (binding, info) {
            (Some(b), Some(info)) => network_plan(spec, b, binding_spec, info, errors, warnings),
            _ => None,
        };
        let backend = match (binding, &network) {
            (Some(b), Some(n)) => backend(spec, iface, b, n, &taps, errors),
            _ => None,
        };
        drafts.push(Draft {
            iface,
            binding,
            network,
            model: model(iface, errors),
            ports: ports(iface, binding, errors),
            boot_order: boot_order(iface, &mut boot_orders, errors),
            backend,
        });
    }

    check_tap_names(&drafts, &taps, errors);
    let macs = assign_macs(spec, &drafts, errors);
    let pcis = assign_pci(&drafts, errors);

    let mut nics = Vec::new();
    for ((d, mac), pci) in drafts.into_iter().zip(macs).zip(pcis) {
        let (Some(binding), Some(network), Some(backend), Some(mac), Some(pci_address)) =
            (d.binding, d.network, d.backend, mac, pci)
        else {
            // Every path to a missing part records an error; make sure of it.
            if errors.is_empty() {
                errors.push(FieldError::new(
                    &d.iface.path,
                    "",
                    "could not be planned (internal error; please report)",
                ));
            }
            continue;
        };
        let queue_pairs = if spec.network_interface_multiqueue && d.model == NicModel::VirtioNet {
            u16::from(vcpus)
        } else {
            1
        };
        nics.push(NicPlan {
            name: d.iface.name.value.clone(),
            model: d.model,
            binding,
            network,
            backend,
            mac,
            mac_from_spec: d.iface.mac.is_some(),
            queue_pairs,
            pci_address,
            ports: d.ports,
            boot_order: d.boot_order,
            boot_file_name: d.iface.boot_file_name.as_ref().map(|f| f.value.clone()),
            tftp_server_name: d.iface.tftp_server_name.as_ref().map(|f| f.value.clone()),
        });
    }
    nics
}

/// Two NICs must not share a tap device.
fn check_tap_names(
    drafts: &[Draft<'_>],
    taps: &BTreeMap<String, Field<String>>,
    errors: &mut Vec<FieldError>,
) {
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for d in drafts {
        let Some(Backend::Tap { name }) = &d.backend else {
            continue;
        };
        let at = taps
            .get(&d.iface.name.value)
            .map_or(&d.iface.name.path, |f| &f.path);
        if let Some(first) = seen.get(name.as_str()) {
            errors.push(FieldError::new(
                at,
                name,
                format!(
                    "is the tap device of two interfaces ({first} and {}); rename one or set \
                     {TAP_ANNOTATION_PREFIX}<interface> to pick tap names",
                    d.iface.path
                ),
            ));
        } else {
            seen.insert(name, &d.iface.path);
        }
    }
}

/// Parses the values interfaces set in one field (`field`), reporting bad
/// ones and repeats (at the later occurrence). Returns each draft's value
/// and the valid values with the path that first set each, so the caller
/// can fill in the rest without clashing.
fn parse_explicit<'a, T: Ord + Copy, E: std::fmt::Display>(
    drafts: &[Draft<'a>],
    field: impl Fn(&'a InterfaceSpec) -> Option<&'a Field<String>>,
    parse: impl Fn(&str) -> Result<T, E>,
    plural: &str,
    errors: &mut Vec<FieldError>,
) -> (Vec<Option<T>>, BTreeMap<T, &'a str>) {
    let mut out = Vec::new();
    let mut used = BTreeMap::new();
    for d in drafts {
        let Some(f) = field(d.iface) else {
            out.push(None);
            continue;
        };
        match parse(&f.value) {
            Ok(v) => {
                if let Some(first) = used.get(&v) {
                    errors.push(FieldError::new(
                        &f.path,
                        &f.value,
                        format!("is used twice (also {first}); {plural} must be unique"),
                    ));
                } else {
                    used.insert(v, f.path.as_str());
                }
                out.push(Some(v));
            }
            Err(e) => {
                errors.push(FieldError::new(&f.path, &f.value, e.to_string()));
                out.push(None);
            }
        }
    }
    (out, used)
}

/// Explicit MACs are checked; the others are derived from the names.
fn assign_macs(
    spec: &VmSpec,
    drafts: &[Draft<'_>],
    errors: &mut Vec<FieldError>,
) -> Vec<Option<MacAddr>> {
    let (mut out, mut used) = parse_explicit(
        drafts,
        |i| i.mac.as_ref(),
        MacAddr::parse_unicast,
        "MAC addresses",
        errors,
    );
    for (d, slot) in drafts.iter().zip(out.iter_mut()) {
        if d.iface.mac.is_some() {
            continue;
        }
        let mut salt = 0;
        let mut mac = MacAddr::generate(&spec.name, &d.iface.name.value, salt);
        while used.contains_key(&mac) {
            salt += 1;
            mac = MacAddr::generate(&spec.name, &d.iface.name.value, salt);
        }
        used.insert(mac, &d.iface.path);
        *slot = Some(mac);
    }
    out
}

/// Explicit PCI addresses are checked; the others get free slots in order.
fn assign_pci(drafts: &[Draft<'_>], errors: &mut Vec<FieldError>) -> Vec<Option<PciAddress>> {
    let (mut out, used) = parse_explicit(
        drafts,
        |i| i.pci_address.as_ref(),
        PciAddress::parse_for_device,
        "PCI addresses",
        errors,
    );
    let mut alloc = SlotAllocator::new(used.keys().copied());
    for (d, slot) in drafts.iter().zip(out.iter_mut()) {
        if d.iface.pci_address.is_some() {
            continue;
        }
        *slot = alloc.allocate();
        if slot.is_none() {
            errors.push(FieldError::new(
                &d.iface.path,
                "",
                "gets no PCI slot: bus 0000:00 slots 02-1f are all used; give some interfaces \
                 an explicit pciAddress on another bus",
            ));
        }
    }
    out
}
