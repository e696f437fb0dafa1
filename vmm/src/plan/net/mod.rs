//! Interfaces and networks → NIC plans: each interface is paired with its
//! network, given a binding, ports and a backend, then MACs and PCI slots.

mod assign;
mod backend;
mod bindings;
mod dhcp;
mod fields;
mod interface;
mod networks;
mod ports;

use std::collections::BTreeMap;

use crate::spec::{
    BindingKind, BindingSpec, Field, InterfaceSpec, NetworkSource, NetworkSourceKind, NetworkSpec,
    PortSpec, PrivateOptionSpec, SpecKind, VmSpec,
};

use crate::plan::cidr::{check_ipv4, check_ipv6, Ipv4Cidr, Ipv6Cidr};
use crate::plan::mac::{generate_mac, MacAddr};
use crate::plan::pci::{PciAddress, SlotAllocator};
use crate::plan::{
    Backend, Binding, DhcpPlan, FieldError, NetworkPlan, NicModel, NicPlan, PortPlan, Protocol,
    KUBEVIRT_DEFAULT_IPV4_CIDR, KUBEVIRT_DEFAULT_IPV6_CIDR, MAX_IFNAME_LEN, TAP_ANNOTATION_PREFIX,
    VIRTINK_DEFAULT_CIDR,
};
use assign::{assign_macs, assign_pci};
use backend::{backend, check_tap_names, tap_annotations};
use bindings::{network_plan, pick_binding};
use dhcp::dhcp_options;
use fields::{check_unique, note_name, report_extras, required};
use interface::{boot_order, link_state, model, LinkState};
use networks::{describe, resolve_networks};
use ports::ports;

/// A network whose source was valid, with its pod-side interface name.
pub(super) struct NetInfo<'a> {
    spec: &'a NetworkSpec,
    source: &'a NetworkSource,
    is_pod: bool,
    pod_iface: String,
}

/// Per-interface results before MACs and PCI slots are assigned.
pub(super) struct Draft<'a> {
    iface: &'a InterfaceSpec,
    binding: Option<Binding>,
    binding_path: String,
    network_path: String,
    network: Option<NetworkPlan>,
    model: NicModel,
    ports: Vec<PortPlan>,
    boot_order: Option<u32>,
    dhcp: DhcpPlan,
    link: LinkState,
    backend: Option<Backend>,
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
        let mut iface =
            InterfaceSpec::named(&ip, Field::new("default".to_string(), format!("{ip}.name")));
        iface.bindings = vec![BindingSpec {
            kind: BindingKind::Bridge,
            path: format!("{ip}.bridge"),
            cidr: None,
        }];
        interfaces.push(iface);
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
    check_networks_used(spec, &interfaces, &networks, errors);

    let taps = tap_annotations(spec, &interfaces, errors);
    let mut boot_orders = BTreeMap::new();
    let drafts: Vec<Draft<'_>> = interfaces
        .iter()
        .map(|iface| {
            let net = Networks {
                specs: &networks,
                infos: &infos,
            };
            draft(spec, iface, net, &taps, &mut boot_orders, errors, warnings)
        })
        .collect();

    check_tap_names(&drafts, &taps, errors);
    let macs = assign_macs(spec, &drafts, errors);
    let pcis = assign_pci(&drafts, errors);
    let mut nics = Vec::new();
    for ((d, mac), pci) in drafts.into_iter().zip(macs).zip(pcis) {
        // Checked like the others, but KubeVirt does not attach it.
        let absent = d.link == LinkState::Absent;
        if let Some(nic) = finish(spec, vcpus, d, mac, pci, errors) {
            if !absent {
                nics.push(nic);
            }
        }
    }
    nics
}

/// Every network needs the interface of the same name.
fn check_networks_used(
    spec: &VmSpec,
    interfaces: &[InterfaceSpec],
    networks: &[NetworkSpec],
    errors: &mut Vec<FieldError>,
) {
    for n in networks {
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
}

/// The spec's networks and what [`resolve_networks`] made of each.
#[derive(Clone, Copy)]
struct Networks<'n, 'a> {
    specs: &'a [NetworkSpec],
    infos: &'n [Option<NetInfo<'a>>],
}

/// One interface's binding, network, backend, model, ports and boot order.
fn draft<'a>(
    spec: &VmSpec,
    iface: &'a InterfaceSpec,
    net: Networks<'_, 'a>,
    taps: &BTreeMap<String, Field<String>>,
    boot_orders: &mut BTreeMap<u32, String>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> Draft<'a> {
    let tapped = taps.contains_key(&iface.name.value);
    let (binding, binding_spec) = pick_binding(spec, iface, tapped, errors, warnings);
    let net_idx = net
        .specs
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
    let info = net_idx
        .and_then(|i| net.infos.get(i))
        .and_then(Option::as_ref);
    let network = match (binding, info) {
        (Some(b), Some(info)) => network_plan(spec, b, binding_spec, info, errors, warnings),
        _ => None,
    };
    let backend = match (binding, &network) {
        (Some(b), Some(n)) => backend(spec, iface, b, n, taps, errors),
        _ => None,
    };
    let dhcp = dhcp_options(iface, binding, network.as_ref(), errors, warnings);
    let ports = ports(iface, binding, network.as_ref(), errors, warnings);
    Draft {
        iface,
        binding,
        binding_path: binding_spec.map_or_else(|| iface.path.clone(), |b| b.path.clone()),
        network_path: info.map_or_else(String::new, |i| i.source.path.clone()),
        network,
        model: model(iface, errors),
        ports,
        boot_order: boot_order(iface, boot_orders, errors, warnings),
        dhcp,
        link: link_state(iface, errors, warnings),
        backend,
    }
}

/// The NIC plan of a draft whose every part resolved.
fn finish(
    spec: &VmSpec,
    vcpus: u8,
    d: Draft<'_>,
    mac: Option<MacAddr>,
    pci: Option<PciAddress>,
    errors: &mut Vec<FieldError>,
) -> Option<NicPlan> {
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
        return None;
    };
    // passt serves one socket per NIC: one queue pair, whatever
    // networkInterfaceMultiqueue says (QEMU's passt netdev is single-queue too).
    let queue_pairs = if spec.network_interface_multiqueue
        && d.model == NicModel::VirtioNet
        && backend != Backend::Userspace
    {
        u16::from(vcpus)
    } else {
        1
    };
    Some(NicPlan {
        name: d.iface.name.value.clone(),
        path: d.iface.path.clone(),
        binding_path: d.binding_path,
        network_path: d.network_path,
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
        dhcp: d.dhcp,
        link_up: d.link == LinkState::Up,
    })
}
