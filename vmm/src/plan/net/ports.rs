//! Ports of an interface on the pod network: forwarded into the guest
//! (masquerade, slirp, passt) or informational (bridge), as in KubeVirt.

use super::*;

pub(super) fn ports(
    iface: &InterfaceSpec,
    binding: Option<Binding>,
    network: Option<&NetworkPlan>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> Vec<PortPlan> {
    if let Some(f) = &iface.port_ranges {
        errors.push(FieldError::new(
            &f.path,
            &f.value,
            "is not supported by petrel; list each port under ports instead (or leave both out \
             to forward every port with masquerade)",
        ));
    }
    if iface.ports.is_empty() {
        return Vec::new();
    }
    let on_pod = matches!(network, Some(NetworkPlan::Pod { .. }))
        || matches!(network, Some(NetworkPlan::Multus { default: true, .. }));
    let path = format!("{}.ports", iface.path);
    match binding {
        Some(Binding::Masquerade | Binding::Slirp | Binding::Passt) => {}
        Some(Binding::Bridge) if on_pod => warnings.push(format!(
            "{path}: informational with bridge binding; the guest has the pod IP and \
             receives every port"
        )),
        Some(b) if network.is_some() => errors.push(FieldError::new(
            &path,
            "",
            format!(
                "are only allowed on the pod network with bridge, masquerade, slirp or passt \
                 binding; interface {:?} uses {b}{}",
                iface.name.value,
                if on_pod {
                    ""
                } else {
                    " on a secondary network"
                }
            ),
        )),
        _ => {}
    }
    let mut out = Vec::new();
    let mut names = BTreeMap::new();
    for p in &iface.ports {
        let port = port_number(p, errors);
        let protocol = port_protocol(p, errors);
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

/// The port's number, 1-65535, or None after reporting it.
fn port_number(p: &PortSpec, errors: &mut Vec<FieldError>) -> Option<u16> {
    match &p.port {
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
    }
}

/// The port's protocol (TCP when absent), or None after reporting it.
fn port_protocol(p: &PortSpec, errors: &mut Vec<FieldError>) -> Option<Protocol> {
    match &p.protocol {
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
    }
}
