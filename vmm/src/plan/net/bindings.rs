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
            // Invalid CIDRs were reported above; they leave no plan.
            let v4 = |t: String| Ipv4Cidr::parse(&t).ok();
            let v6 = |t: String| Ipv6Cidr::parse(&t).ok();
            match (masquerade, spec.kind) {
                (false, _) => NetworkPlan::Pod {
                    ipv4_cidr: None,
                    ipv6_cidr: None,
                },
                (true, SpecKind::Virtink) => NetworkPlan::Pod {
                    ipv4_cidr: v4(virtink_cidr
                        .map_or_else(|| VIRTINK_DEFAULT_CIDR.to_string(), |c| c.value.clone())),
                    ipv6_cidr: None,
                },
                (true, _) => NetworkPlan::Pod {
                    ipv4_cidr: v4(
                        text(ipv4_cidr).unwrap_or_else(|| KUBEVIRT_DEFAULT_IPV4_CIDR.into())
                    ),
                    ipv6_cidr: v6(
                        text(ipv6_cidr).unwrap_or_else(|| KUBEVIRT_DEFAULT_IPV6_CIDR.into())
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
