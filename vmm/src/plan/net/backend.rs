//! What carries each NIC's frames on the host: taps (named, annotated),
//! macvtap, VFIO, userspace.

use super::*;

/// Checks that a Linux interface name is usable; returns what is wrong.
pub(crate) fn ifname_problem(name: &str) -> Option<&'static str> {
    use net_backend::IfNameError;
    net_backend::validate_ifname(name).err().map(|e| match e {
        IfNameError::Empty { .. } => "is empty",
        IfNameError::TooLong { .. } => "is longer than 15 bytes",
        IfNameError::Reserved { .. } => "is not a valid name",
        IfNameError::BadChar { .. } => "contains '/', ':' or whitespace",
    })
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

/// Tap names from `petrel.io/tap.<iface>` annotations, by interface name.
pub(super) fn tap_annotations(
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

pub(super) fn backend(
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
pub(super) fn sriov_resource(spec: &VmSpec, network_name: &str) -> Option<String> {
    let (ns, name) = match network_name.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, network_name),
    };
    spec.network_attachments
        .iter()
        .find(|a| a.name == name && (ns.is_none() || a.namespace.as_deref() == ns))
        .and_then(|a| a.resource_name.clone())
}

/// Two NICs must not share a tap device.
pub(super) fn check_tap_names(
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
