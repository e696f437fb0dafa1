//! `spec.networks`: one source each, at most one pod network, pod-side
//! interface names.

use super::*;

pub(super) fn source_names(kind: SpecKind) -> &'static str {
    match kind {
        SpecKind::Virtink => "pod, multus",
        _ => "pod, multus, genie, resource",
    }
}

pub(super) fn source_key(s: &NetworkSourceKind) -> &'static str {
    match s {
        NetworkSourceKind::Pod { .. } => "pod",
        NetworkSourceKind::Multus { .. } => "multus",
        NetworkSourceKind::Genie { .. } => "genie",
        NetworkSourceKind::Resource { .. } => "resource",
    }
}

pub(super) fn describe(info: &NetInfo<'_>) -> String {
    let what = match &info.source.kind {
        NetworkSourceKind::Pod { .. } => "the pod network",
        NetworkSourceKind::Multus { default: true, .. } => "the default multus network",
        NetworkSourceKind::Multus { .. } => "a multus network",
        NetworkSourceKind::Genie { .. } => "a genie network",
        NetworkSourceKind::Resource { .. } => "a resource network",
    };
    format!("{what} ({})", info.spec.path)
}

/// Checks each network's source and names pod-side interfaces.
pub(super) fn resolve_networks<'a>(
    spec: &VmSpec,
    networks: &'a [NetworkSpec],
    errors: &mut Vec<FieldError>,
) -> Vec<Option<NetInfo<'a>>> {
    let mut out = Vec::new();
    let mut pod_network: Option<&str> = None;
    let mut counters = IfaceCounters::default();
    for n in networks {
        let Some(source) = single_source(spec, n, errors) else {
            out.push(None);
            continue;
        };
        let Some((pod_iface, is_pod)) = source_iface(n, source, &mut counters, errors) else {
            out.push(None);
            continue;
        };
        let mut ok = true;
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

/// The network's one source, or None after reporting none or several.
fn single_source<'a>(
    spec: &VmSpec,
    n: &'a NetworkSpec,
    errors: &mut Vec<FieldError>,
) -> Option<&'a NetworkSource> {
    match n.sources.as_slice() {
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
    }
}

/// Ordinals of secondary pod interfaces handed out so far.
#[derive(Default)]
struct IfaceCounters {
    multus: u32,
    genie: u32,
}

/// The pod-side interface of a source and whether it is the pod network;
/// None after reporting a missing required field.
fn source_iface(
    n: &NetworkSpec,
    source: &NetworkSource,
    counters: &mut IfaceCounters,
    errors: &mut Vec<FieldError>,
) -> Option<(String, bool)> {
    let mut ok = true;
    let named = match &source.kind {
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
            ("eth0".to_string(), true)
        }
        NetworkSourceKind::Multus {
            network_name,
            default,
        } => {
            let what = "name the NetworkAttachmentDefinition as [namespace/]name";
            let path = format!("{}.networkName", source.path);
            ok &= required(network_name, &path, what, errors).is_some();
            if *default {
                ("eth0".to_string(), true)
            } else {
                counters.multus += 1;
                (format!("net{}", counters.multus), false)
            }
        }
        NetworkSourceKind::Genie { network_name } => {
            let path = format!("{}.networkName", source.path);
            ok &= required(network_name, &path, "name the CNI network", errors).is_some();
            counters.genie += 1;
            (format!("eth{}", counters.genie - 1), false)
        }
        NetworkSourceKind::Resource { resource_name } => {
            let path = format!("{}.resourceName", source.path);
            let what = "use <device-plugin-name>/<network-name>";
            ok &= required(resource_name, &path, what, errors).is_some();
            (format!("net-{}", n.name.value), false)
        }
    };
    ok.then_some(named)
}
