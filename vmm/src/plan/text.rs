//! Human-readable rendering of a [`VmPlan`].

use std::fmt::Write;

use super::{Backend, DhcpPlan, NetworkPlan, NicPlan, VmPlan};

fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "Ti"),
        (1 << 30, "Gi"),
        (1 << 20, "Mi"),
        (1 << 10, "Ki"),
    ];
    for (unit, suffix) in UNITS {
        if bytes >= unit && bytes & (unit - 1) == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

fn network(n: &NetworkPlan) -> String {
    match n {
        NetworkPlan::Pod {
            ipv4_cidr,
            ipv6_cidr,
        } => {
            let cidrs: Vec<String> = ipv4_cidr
                .iter()
                .map(ToString::to_string)
                .chain(ipv6_cidr.iter().map(ToString::to_string))
                .collect();
            if cidrs.is_empty() {
                "pod network (eth0)".to_string()
            } else {
                format!("pod network (eth0, {})", cidrs.join(", "))
            }
        }
        NetworkPlan::Multus {
            network_name,
            default,
            pod_iface,
        } => format!(
            "multus {network_name}{} ({pod_iface})",
            if *default { " [default]" } else { "" }
        ),
        NetworkPlan::Genie {
            network_name,
            pod_iface,
        } => format!("genie {network_name} ({pod_iface})"),
        NetworkPlan::Resource {
            resource_name,
            pod_iface,
        } => format!("resource {resource_name} ({pod_iface})"),
    }
}

fn backend(b: &Backend) -> String {
    match b {
        Backend::Tap { name } => format!("tap {name}"),
        Backend::Macvtap { iface } => format!("macvtap on {iface}"),
        Backend::Vfio { resource: Some(r) } => format!("vfio ({r})"),
        Backend::Vfio { resource: None } => "vfio".to_string(),
        Backend::Userspace => "passt".to_string(),
    }
}

fn nic(out: &mut String, n: &NicPlan) {
    let _ = writeln!(
        out,
        "  - {}: {} {}, {}",
        n.name,
        n.model,
        n.binding,
        network(&n.network)
    );
    let _ = writeln!(
        out,
        "      backend {}, mac {}, pci {}, queue pairs {}",
        backend(&n.backend),
        n.mac,
        n.pci_address,
        n.queue_pairs
    );
    if !n.ports.is_empty() {
        let ports: Vec<String> = n
            .ports
            .iter()
            .map(|p| match &p.name {
                Some(name) => format!("{name} {}/{}", p.port, p.protocol),
                None => format!("{}/{}", p.port, p.protocol),
            })
            .collect();
        let _ = writeln!(out, "      ports {}", ports.join(", "));
    }
    let mut boot = Vec::new();
    if let Some(o) = n.boot_order {
        boot.push(format!("boot order {o}"));
    }
    if !n.link_up {
        boot.push("link down".to_string());
    }
    if !boot.is_empty() {
        let _ = writeln!(out, "      {}", boot.join(", "));
    }
    dhcp(out, &n.dhcp);
}

fn dhcp(out: &mut String, d: &DhcpPlan) {
    let mut opts = Vec::new();
    if let Some(f) = &d.boot_file_name {
        opts.push(format!("boot file {f}"));
    }
    if let Some(t) = &d.tftp_server_name {
        opts.push(format!("tftp server {t}"));
    }
    if !d.ntp_servers.is_empty() {
        let ntp: Vec<String> = d.ntp_servers.iter().map(ToString::to_string).collect();
        opts.push(format!("ntp {}", ntp.join(" ")));
    }
    for o in &d.private_options {
        opts.push(format!("option {} {:?}", o.code, o.value));
    }
    if !opts.is_empty() {
        let _ = writeln!(out, "      dhcp {}", opts.join(", "));
    }
}

pub(crate) fn render(p: &VmPlan) -> String {
    let mut out = String::new();
    let t = p.topology;
    let _ = writeln!(out, "VM {} ({})", p.name, p.kind.describe());
    let _ = writeln!(
        out,
        "vcpus:   {} ({} sockets x {} cores x {} threads)",
        p.vcpus, t.sockets, t.cores, t.threads
    );
    let _ = writeln!(
        out,
        "memory:  {} ({} bytes)",
        size(p.memory_bytes),
        p.memory_bytes
    );
    let path = |v: &Option<std::path::PathBuf>| {
        v.as_ref()
            .map_or_else(|| "(none)".to_string(), |p| p.display().to_string())
    };
    let _ = writeln!(out, "kernel:  {}", path(&p.boot.kernel));
    if let Some(image) = &p.boot.kernel_image {
        let _ = writeln!(out, "image:   {image}");
    }
    let _ = writeln!(out, "initrd:  {}", path(&p.boot.initrd));
    let _ = writeln!(out, "cmdline: {}", p.boot.cmdline);
    if p.nics.is_empty() {
        let _ = writeln!(out, "nics:    none");
    } else {
        let _ = writeln!(out, "nics:");
        for n in &p.nics {
            nic(&mut out, n);
        }
    }
    if !p.warnings.is_empty() {
        let _ = writeln!(out, "warnings:");
        for w in &p.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}
