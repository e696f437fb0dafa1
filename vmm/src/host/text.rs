//! `petrel validate --host` text output.

use std::fmt::Write;

use super::{HostBackend, HostPlan, PasstPlan, PodPlan};

pub(super) fn render(plan: &HostPlan) -> String {
    let mut out = String::from("host:\n");
    if plan.nics.is_empty() {
        out.push_str("  (no NICs)\n");
    }
    for nic in &plan.nics {
        let _ = writeln!(out, "  {}: guest MAC {}", nic.name, nic.guest_mac);
        let _ = writeln!(out, "    {}", backend(&nic.backend));
    }
    out
}

fn backend(b: &HostBackend) -> String {
    match b {
        HostBackend::TapFds { fds } => format!(
            "tap descriptors {} (handed over)",
            fds.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
        ),
        HostBackend::Tap { name } => format!("tap {name} (opened by name, created if absent)"),
        HostBackend::Pod(p) => pod(p),
        HostBackend::Macvtap {
            iface,
            set_link_mac,
        } => format!(
            "macvtap {iface}{}",
            if *set_link_mac {
                " (the link takes the spec's MAC)"
            } else {
                " (the guest takes the link's MAC)"
            }
        ),
        HostBackend::Passt(p) => passt(p),
        HostBackend::Vfio {
            address,
            resolved_from,
            ..
        } => format!("SR-IOV VF {address} from {resolved_from}, passed through with VFIO"),
    }
}

fn pod(p: &PodPlan) -> String {
    let mut s = format!("{} binding on {} via tap {}", p.binding, p.pod_iface, p.tap);
    if p.delegate_mac {
        let _ = write!(
            s,
            ", the guest takes {}'s MAC (the pod interface gets another)",
            p.pod_iface
        );
    }
    if let Some(c) = p.ipv4 {
        let _ = write!(s, ", guest network {c}");
    }
    if let Some(c) = p.ipv6 {
        let _ = write!(s, ", {c}");
    }
    if !p.ports.is_empty() {
        let ports: Vec<String> = p
            .ports
            .iter()
            .map(|pp| format!("{}/{}", pp.port, pp.protocol))
            .collect();
        let _ = write!(s, ", ports {}", ports.join(" "));
    } else if p.binding == crate::plan::Binding::Masquerade {
        let _ = write!(s, ", every port forwarded");
    }
    if !p.reserved_ports.is_empty() {
        let ports: Vec<String> = p
            .reserved_ports
            .iter()
            .map(|p| format!("{p}/TCP"))
            .collect();
        let _ = write!(s, " except petrel's own {}", ports.join(" "));
    }
    if !p.dns_servers.is_empty() {
        let servers: Vec<String> = p.dns_servers.iter().map(ToString::to_string).collect();
        let _ = write!(s, ", DNS {}", servers.join(" "));
    }
    if !p.dns_search.is_empty() {
        let _ = write!(s, " search {}", p.dns_search.join(" "));
    }
    s
}

fn passt(p: &PasstPlan) -> String {
    let mut s = format!(
        "{} binding on {} through {}",
        p.binding,
        p.pod_iface,
        p.program.display()
    );
    if let Some(c) = p.ipv4 {
        let _ = write!(s, ", guest {}/{}", c.addr, c.prefix);
    }
    if let Some(gw) = p.gateway {
        let _ = write!(s, " via {gw}");
    }
    if p.ipv6 {
        s.push_str(", IPv6 as the pod has it");
    }
    let _ = write!(s, ", MTU {}", p.mtu);
    if p.ports.is_empty() {
        s.push_str(", every port forwarded");
    } else {
        let ports: Vec<String> = p
            .ports
            .iter()
            .map(|pp| format!("{}/{}", pp.port, pp.protocol))
            .collect();
        let _ = write!(s, ", ports {}", ports.join(" "));
    }
    let _ = write!(s, "\n    {} {}", p.program.display(), p.args.join(" "));
    s
}
