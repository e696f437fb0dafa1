//! The binding of each interface and the network plan it implies.

use super::*;

pub(super) fn binding_names(kind: SpecKind) -> &'static str {
    match kind {
        SpecKind::Virtink => "bridge, masquerade, sriov (vdpa and vhostUser are not supported)",
        _ => "bridge, masquerade, slirp, sriov, macvtap, passt",
    }
}

/// The binding actually used, or None after recording an error.
pub(super) fn pick_binding<'a>(
    spec: &VmSpec,
    iface: &'a InterfaceSpec,
    tapped: bool,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> (Option<Binding>, Option<&'a BindingSpec>) {
    let names = binding_names(spec.kind);
    let chosen = match iface.bindings.as_slice() {
        [] if tapped => return (Some(Binding::Tap), None),
        // Virtink's mutating webhook makes such an interface bridge.
        [] if spec.kind == SpecKind::Virtink => {
            warnings.push(format!(
                "{}: no binding; using bridge, as Virtink's webhook does",
                iface.path
            ));
            return (Some(Binding::Bridge), None);
        }
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
        BindingKind::Vdpa | BindingKind::VhostUser => {
            let key = chosen.path.rsplit('.').next().unwrap_or_default();
            errors.push(FieldError::new(
                &chosen.path,
                "",
                format!(
                    "asks for the {key} binding, which petrel does not support (it has no vDPA \
                     or vhost-user backend); use bridge, masquerade or sriov"
                ),
            ));
            return (None, Some(chosen));
        }
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
pub(super) fn network_plan(
    spec: &VmSpec,
    binding: Binding,
    binding_spec: Option<&BindingSpec>,
    info: &NetInfo<'_>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> Option<NetworkPlan> {
    let need = match binding {
        Binding::Masquerade | Binding::Slirp if !info.is_pod => Some("the pod network"),
        // DCE5's passt mode: one passt per pod interface (eth0, or the
        // ipvlan/macvlan links of multus networks).
        Binding::Passt
            if !info.is_pod && !matches!(info.source.kind, NetworkSourceKind::Multus { .. }) =>
        {
            Some("the pod network or a multus network")
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
            let cidrs = PodCidrs {
                ipv4: ipv4_cidr.as_ref(),
                ipv6: ipv6_cidr.as_ref(),
                virtink: binding_spec.and_then(|b| b.cidr.as_ref()),
            };
            pod_network_plan(spec, binding, cidrs, errors, warnings)
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

/// The CIDR fields a pod network may carry.
#[derive(Clone, Copy)]
struct PodCidrs<'a> {
    /// KubeVirt `pod.vmNetworkCIDR`.
    ipv4: Option<&'a Field<String>>,
    /// KubeVirt `pod.vmIPv6NetworkCIDR`.
    ipv6: Option<&'a Field<String>>,
    /// Virtink `masquerade.cidr`.
    virtink: Option<&'a Field<String>>,
}

/// The pod network's plan: masquerade gets its guest networks (the
/// upstream defaults when unset), other bindings none.
fn pod_network_plan(
    spec: &VmSpec,
    binding: Binding,
    cidrs: PodCidrs<'_>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> NetworkPlan {
    let masquerade = binding == Binding::Masquerade;
    for f in [cidrs.ipv4, cidrs.ipv6].into_iter().flatten() {
        if !masquerade {
            warnings.push(format!(
                "{}: ignored (only used with masquerade binding)",
                f.path
            ));
        }
    }
    if let Some(c) = cidrs.virtink {
        if let Err(m) = check_ipv4(&c.value) {
            errors.push(FieldError::new(&c.path, &c.value, m));
        }
    }
    // Invalid CIDRs were reported; they leave no plan.
    let text = |f: Option<&Field<String>>, default: &str| {
        f.map_or_else(|| default.to_string(), |f| f.value.clone())
    };
    let v4 = |t: String| Ipv4Cidr::parse(&t).ok();
    let v6 = |t: String| Ipv6Cidr::parse(&t).ok();
    match (masquerade, spec.kind) {
        (false, _) => NetworkPlan::Pod {
            ipv4_cidr: None,
            ipv6_cidr: None,
        },
        (true, SpecKind::Virtink) => NetworkPlan::Pod {
            ipv4_cidr: v4(text(cidrs.virtink, VIRTINK_DEFAULT_CIDR)),
            ipv6_cidr: None,
        },
        (true, _) => NetworkPlan::Pod {
            ipv4_cidr: v4(text(cidrs.ipv4, KUBEVIRT_DEFAULT_IPV4_CIDR)),
            ipv6_cidr: v6(text(cidrs.ipv6, KUBEVIRT_DEFAULT_IPV6_CIDR)),
        },
    }
}
