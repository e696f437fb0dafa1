//! Ports forwarded into the guest (masquerade, slirp).

use super::*;

pub(super) fn ports(
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
