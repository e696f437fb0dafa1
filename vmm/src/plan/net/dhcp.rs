//! `dhcpOptions`: what petrel's DHCP server adds for the interface, as
//! KubeVirt's DHCP server does.

use std::net::Ipv4Addr;

use super::*;
use crate::plan::PrivateOption;

/// Site-specific DHCP option codes (RFC 2132 §2), the ones KubeVirt allows.
const PRIVATE_CODES: std::ops::RangeInclusive<i64> = 224..=254;

pub(super) fn dhcp_options(
    iface: &InterfaceSpec,
    binding: Option<Binding>,
    network: Option<&NetworkPlan>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> DhcpPlan {
    let text = |f: &Option<Field<String>>| f.as_ref().map(|f| f.value.clone());
    let mut plan = DhcpPlan {
        boot_file_name: text(&iface.boot_file_name),
        tftp_server_name: text(&iface.tftp_server_name),
        ntp_servers: Vec::new(),
        private_options: Vec::new(),
    };
    for f in &iface.ntp_servers {
        match f.value.parse::<Ipv4Addr>() {
            Ok(ip) => plan.ntp_servers.push(ip),
            Err(_) => errors.push(FieldError::new(
                &f.path,
                &f.value,
                "is not an IPv4 address; DHCP option 42 takes addresses, e.g. 192.0.2.123",
            )),
        }
    }
    let mut seen = BTreeMap::new();
    for o in &iface.private_options {
        if let Some(option) = private_option(o, &mut seen, errors) {
            plan.private_options.push(option);
        }
    }
    let served = matches!(binding, Some(Binding::Bridge | Binding::Masquerade))
        && matches!(
            network,
            Some(NetworkPlan::Pod { .. } | NetworkPlan::Multus { .. })
        );
    if plan != DhcpPlan::default() && !served {
        if let (Some(b), Some(path)) = (binding, pod_dhcp_path(iface)) {
            warnings.push(format!(
                "{path}: has no effect with {b} binding; petrel serves DHCP only for bridge and \
                 masquerade"
            ));
        }
    }
    plan
}

fn pod_dhcp_path(iface: &InterfaceSpec) -> Option<&str> {
    iface.dhcp_options_path.as_deref().or_else(|| {
        [&iface.boot_file_name, &iface.tftp_server_name]
            .into_iter()
            .flatten()
            .map(|f| f.path.as_str())
            .next()
    })
}

fn private_option(
    o: &PrivateOptionSpec,
    seen: &mut BTreeMap<i64, String>,
    errors: &mut Vec<FieldError>,
) -> Option<PrivateOption> {
    let Some(code) = &o.option else {
        errors.push(FieldError::new(
            format!("{}.option", o.path),
            "",
            "is missing; use an option code from 224 to 254",
        ));
        return None;
    };
    let value = match &o.value {
        Some(v) => v.value.clone(),
        None => {
            errors.push(FieldError::new(
                format!("{}.value", o.path),
                "",
                "is missing; give the option's text",
            ));
            return None;
        }
    };
    if !PRIVATE_CODES.contains(&code.value) {
        errors.push(FieldError::new(
            &code.path,
            code.value.to_string(),
            "is not a private DHCP option; use 224 to 254",
        ));
        return None;
    }
    if let Some(first) = seen.get(&code.value) {
        errors.push(FieldError::new(
            &code.path,
            code.value.to_string(),
            format!("is used twice (also {first}); each private option once"),
        ));
        return None;
    }
    seen.insert(code.value, code.path.clone());
    if value.len() > 255 {
        errors.push(FieldError::new(
            format!("{}.value", o.path),
            &value,
            "is longer than 255 bytes, which a DHCP option cannot carry",
        ));
        return None;
    }
    Some(PrivateOption {
        code: u8::try_from(code.value).ok()?,
        value,
    })
}
