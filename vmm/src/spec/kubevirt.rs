//! KubeVirt `VirtualMachineInstance` / `VirtualMachine` spec extraction.

use serde_yaml::Value;

use super::common::{named_item, parse_spec, Layout};
use super::model::*;
use super::walk::{MapView, Walker};

const VMI_SPEC_OUT_OF_SCOPE: &[(&str, &str)] = &[
    ("volumes", "volumes are outside petrel's scope"),
    ("nodeSelector", "Kubernetes scheduling does not apply"),
    ("affinity", "Kubernetes scheduling does not apply"),
    ("tolerations", "Kubernetes scheduling does not apply"),
    (
        "topologySpreadConstraints",
        "Kubernetes scheduling does not apply",
    ),
    ("schedulerName", "Kubernetes scheduling does not apply"),
    ("priorityClassName", "Kubernetes scheduling does not apply"),
    (
        "evictionStrategy",
        "live migration is outside petrel's scope",
    ),
    ("hostname", "guest configuration is outside petrel's scope"),
    ("subdomain", "guest configuration is outside petrel's scope"),
    ("dnsConfig", "guest configuration is outside petrel's scope"),
    ("dnsPolicy", "guest configuration is outside petrel's scope"),
    (
        "accessCredentials",
        "guest configuration is outside petrel's scope",
    ),
    ("livenessProbe", "probes are outside petrel's scope"),
    ("readinessProbe", "probes are outside petrel's scope"),
    ("startStrategy", "petrel starts VMs on request"),
    ("architecture", "petrel runs x86_64 guests only"),
    ("resourceClaims", "Kubernetes resource claims do not apply"),
];

const VM_SPEC_OUT_OF_SCOPE: &[(&str, &str)] = &[
    ("running", "petrel runs the VM when asked"),
    ("runStrategy", "petrel runs the VM when asked"),
    ("dataVolumeTemplates", "volumes are outside petrel's scope"),
    (
        "instancetype",
        "instance types are not expanded; set spec.template.spec.domain.cpu/memory",
    ),
    (
        "preference",
        "preferences are not expanded; set the fields directly",
    ),
    (
        "updateVolumesStrategy",
        "volumes are outside petrel's scope",
    ),
];

const DOMAIN_OUT_OF_SCOPE: &[(&str, &str)] = &[
    ("machine", "petrel has a single machine type"),
    ("features", "hypervisor features are outside petrel's scope"),
    ("clock", "clock configuration is outside petrel's scope"),
    ("chassis", "SMBIOS chassis is outside petrel's scope"),
    ("ioThreadsPolicy", "I/O threads are outside petrel's scope"),
    ("ioThreads", "I/O threads are outside petrel's scope"),
    (
        "launchSecurity",
        "confidential computing is outside petrel's scope",
    ),
];

const CPU_OUT_OF_SCOPE: &[(&str, &str)] = &[
    ("model", "petrel passes the host CPU model"),
    (
        "features",
        "CPU feature selection is outside petrel's scope",
    ),
    (
        "dedicatedCpuPlacement",
        "CPU pinning is outside petrel's scope",
    ),
    (
        "isolateEmulatorThread",
        "CPU pinning is outside petrel's scope",
    ),
    ("numa", "NUMA is outside petrel's scope"),
    ("realtime", "realtime tuning is outside petrel's scope"),
    ("maxSockets", "CPU hotplug is outside petrel's scope"),
];

const DEVICES_OUT_OF_SCOPE: &[(&str, &str)] = &[
    ("disks", "disks are outside petrel's scope"),
    ("rng", "rng devices are outside petrel's scope"),
    ("inputs", "input devices are outside petrel's scope"),
    ("gpus", "GPUs are outside petrel's scope"),
    ("hostDevices", "host devices are outside petrel's scope"),
    ("filesystems", "filesystems are outside petrel's scope"),
    ("watchdog", "watchdogs are outside petrel's scope"),
    ("sound", "sound devices are outside petrel's scope"),
    ("tpm", "TPM is outside petrel's scope"),
    (
        "clientPassthrough",
        "USB passthrough is outside petrel's scope",
    ),
    ("blockMultiQueue", "disks are outside petrel's scope"),
    ("useVirtioTransitional", "petrel uses modern virtio"),
    ("disableHotplug", "hotplug is outside petrel's scope"),
    (
        "downwardMetrics",
        "downward metrics are outside petrel's scope",
    ),
    ("autoattachGraphicsDevice", "petrel has no graphics device"),
    (
        "autoattachSerialConsole",
        "petrel always has a serial console",
    ),
    ("logSerialConsole", "petrel always has a serial console"),
    (
        "autoattachMemBalloon",
        "memory balloon is outside petrel's scope",
    ),
    (
        "autoattachInputDevice",
        "input devices are outside petrel's scope",
    ),
    ("autoattachVSOCK", "vsock is outside petrel's scope"),
];

/// `spec` of a `VirtualMachine`: the VMI is in `spec.template`.
pub(crate) fn parse_vm_spec(v: &Value, path: &str, spec: &mut VmSpec, w: &mut Walker) {
    let Some(mut m) = w.map(v, path) else {
        w.issue(path, "required field missing");
        return;
    };
    match m.take("template") {
        Some((tv, tp)) => match w.map(tv, &tp) {
            Some(mut t) => {
                if let Some((mv, mp)) = t.take("metadata") {
                    template_annotations(mv, &mp, spec, w);
                }
                match t.take("spec") {
                    Some((sv, sp)) => parse_vmi_spec(sv, &sp, spec, w),
                    None => w.issue(&format!("{tp}.spec"), "required field missing"),
                }
                t.finish(w, &[]);
            }
            None => w.issue(&tp, "required field missing"),
        },
        None => w.issue(&format!("{path}.template"), "required field missing"),
    }
    m.finish(w, VM_SPEC_OUT_OF_SCOPE);
}

fn template_annotations(v: &Value, path: &str, spec: &mut VmSpec, w: &mut Walker) {
    let Some(mut meta) = w.map(v, path) else {
        return;
    };
    if let Some((av, ap)) = meta.take("annotations") {
        for (k, f) in w.string_map(av, &ap) {
            spec.annotations.insert(k, f);
        }
    }
}

const VMI_LAYOUT: Layout = Layout {
    machine: "domain",
    interfaces: "domain.devices.interfaces",
    cpu: "domain.cpu",
    memory: "domain.memory.guest",
    kubevirt_networks: true,
    out_of_scope: VMI_SPEC_OUT_OF_SCOPE,
};

/// `spec` of a `VirtualMachineInstance` (or a VM's `spec.template.spec`).
pub(crate) fn parse_vmi_spec(v: &Value, path: &str, spec: &mut VmSpec, w: &mut Walker) {
    parse_spec(v, path, spec, w, &VMI_LAYOUT, parse_domain);
}

fn parse_domain(v: &Value, path: &str, spec: &mut VmSpec, w: &mut Walker) {
    let Some(mut d) = w.map(v, path) else {
        return;
    };
    if let Some((cv, cp)) = d.take("cpu") {
        if let Some(mut c) = w.map(cv, &cp) {
            spec.cpu.sockets = c.take("sockets").and_then(|(v, p)| w.int(v, &p));
            spec.cpu.cores = c.take("cores").and_then(|(v, p)| w.int(v, &p));
            spec.cpu.threads = c.take("threads").and_then(|(v, p)| w.int(v, &p));
            c.finish(w, CPU_OUT_OF_SCOPE);
        }
    }
    let mut guest = None;
    if let Some((mv, mp)) = d.take("memory") {
        if let Some(mut mem) = w.map(mv, &mp) {
            guest = mem.take("guest").and_then(|(v, p)| w.scalar_text(v, &p));
            mem.finish(
                w,
                &[
                    ("hugepages", "hugepages are outside petrel's scope"),
                    ("maxGuest", "memory hotplug is outside petrel's scope"),
                ],
            );
        }
    }
    let (mut requests, mut limits) = (None, None);
    if let Some((rv, rp)) = d.take("resources") {
        if let Some(mut r) = w.map(rv, &rp) {
            requests = r.take("requests").and_then(|(v, p)| memory_of(v, &p, w));
            limits = r.take("limits").and_then(|(v, p)| memory_of(v, &p, w));
            r.finish(
                w,
                &[(
                    "overcommitGuestOverhead",
                    "overhead accounting does not apply",
                )],
            );
        }
    }
    spec.memory = guest.or(requests).or(limits);
    if let Some((fv, fp)) = d.take("firmware") {
        parse_firmware(fv, &fp, spec, w);
    }
    if let Some((dv, dp)) = d.take("devices") {
        parse_devices(dv, &dp, spec, w);
    }
    d.finish(w, DOMAIN_OUT_OF_SCOPE);
}

/// `memory` out of a `requests`/`limits` map; other resources are warned about.
fn memory_of(v: &Value, path: &str, w: &mut Walker) -> Option<Field<String>> {
    let mut m = w.map(v, path)?;
    let mem = m.take("memory").and_then(|(v, p)| w.scalar_text(v, &p));
    finish_resources(m, w);
    mem
}

fn finish_resources(m: MapView<'_>, w: &mut Walker) {
    let before = w.warnings.len();
    m.finish(w, &[]);
    // Every other resource (cpu, device plugin resources...) is not used.
    for warning in &mut w.warnings[before..] {
        *warning = warning.replace(
            "unknown field, ignored",
            "ignored (only the memory resource is used)",
        );
    }
}

fn parse_firmware(v: &Value, path: &str, spec: &mut VmSpec, w: &mut Walker) {
    let Some(mut f) = w.map(v, path) else {
        return;
    };
    if let Some((kv, kp)) = f.take("kernelBoot") {
        if let Some(mut kb) = w.map(kv, &kp) {
            let args = kb.take("kernelArgs").and_then(|(v, p)| w.string(v, &p));
            let alias = kb.take("cmdline").and_then(|(v, p)| w.string(v, &p));
            spec.kernel.cmdline = match (args, alias) {
                (Some(a), Some(c)) => {
                    w.warnings.push(format!(
                        "{}: ignored (kernelArgs is set; cmdline is only an alias)",
                        c.path
                    ));
                    Some(a)
                }
                (a, c) => a.or(c),
            };
            if let Some((cv, cp)) = kb.take("container") {
                if let Some(mut c) = w.map(cv, &cp) {
                    spec.kernel.image = c.take("image").and_then(|(v, p)| w.string(v, &p));
                    spec.kernel.kernel_path =
                        c.take("kernelPath").and_then(|(v, p)| w.string(v, &p));
                    spec.kernel.initrd_path =
                        c.take("initrdPath").and_then(|(v, p)| w.string(v, &p));
                    c.finish(
                        w,
                        &[
                            ("imagePullPolicy", "petrel does not pull images"),
                            ("imagePullSecret", "petrel does not pull images"),
                        ],
                    );
                }
            }
            kb.finish(w, &[]);
        }
    }
    f.finish(
        w,
        &[
            ("uuid", "SMBIOS is outside petrel's scope"),
            ("serial", "SMBIOS is outside petrel's scope"),
            ("bootloader", "petrel boots a kernel directly"),
            ("acpi", "ACPI tables are outside petrel's scope"),
        ],
    );
}

fn parse_devices(v: &Value, path: &str, spec: &mut VmSpec, w: &mut Walker) {
    let Some(mut d) = w.map(v, path) else {
        return;
    };
    let interfaces = w.list(&mut d, "interfaces", parse_interface);
    spec.interfaces.extend(interfaces);
    spec.autoattach_pod_interface = d
        .take("autoattachPodInterface")
        .and_then(|(v, p)| w.bool(v, &p));
    spec.network_interface_multiqueue = d
        .take("networkInterfaceMultiqueue")
        .and_then(|(v, p)| w.bool(v, &p))
        .unwrap_or(false);
    d.finish(w, DEVICES_OUT_OF_SCOPE);
}

const BINDINGS: &[(&str, BindingKind)] = &[
    ("bridge", BindingKind::Bridge),
    ("masquerade", BindingKind::Masquerade),
    ("slirp", BindingKind::Slirp),
    ("sriov", BindingKind::Sriov),
    ("macvtap", BindingKind::Macvtap),
    ("passt", BindingKind::Passt),
    // Core since KubeVirt v1.8 (the plugin form is `binding: {name: passt}`).
    ("passtBinding", BindingKind::Passt),
];

/// The interface's binding sections: `bridge: {}` and its siblings, and
/// the plugin form `binding: {name: …}`.
fn parse_bindings(m: &mut MapView<'_>, w: &mut Walker) -> Vec<BindingSpec> {
    let mut bindings = Vec::new();
    for (key, kind) in BINDINGS {
        // take() also makes the key known, for typo hints.
        let taken = m.take(key);
        if m.has(key) {
            if let Some((bv, bp)) = taken {
                if let Some(b) = w.map(bv, &bp) {
                    b.finish(w, &[]);
                }
                bindings.push(BindingSpec {
                    kind: kind.clone(),
                    path: bp,
                    cidr: None,
                });
            }
        }
    }
    let taken = m.take("binding");
    if m.has("binding") {
        if let Some((bv, bp)) = taken {
            if let Some(mut b) = w.map(bv, &bp) {
                let plugin = b.take("name").and_then(|(v, p)| w.string(v, &p));
                b.finish(w, &[]);
                let kind = match plugin.as_ref().map(|f| f.value.as_str()) {
                    Some("passt") => BindingKind::Passt,
                    Some("slirp") => BindingKind::Slirp,
                    Some("macvtap") => BindingKind::Macvtap,
                    Some(other) => BindingKind::Plugin(other.to_string()),
                    None => BindingKind::Plugin(String::new()),
                };
                bindings.push(BindingSpec {
                    kind,
                    path: bp,
                    cidr: None,
                });
            }
        }
    }
    bindings
}

/// `dhcpOptions`: boot file (67), TFTP server (66), NTP servers (42) and
/// private options (224-254), all served by petrel's DHCP server.
fn parse_dhcp_options(m: &mut MapView<'_>, w: &mut Walker, iface: &mut InterfaceSpec) {
    let Some((dv, dp)) = m.take("dhcpOptions") else {
        return;
    };
    iface.dhcp_options_path = Some(dp.clone());
    let Some(mut d) = w.map(dv, &dp) else {
        return;
    };
    iface.boot_file_name = d.take("bootFileName").and_then(|(v, p)| w.string(v, &p));
    iface.tftp_server_name = d.take("tftpServerName").and_then(|(v, p)| w.string(v, &p));
    if let Some((nv, np)) = d.take("ntpServers") {
        for (v, p) in w.seq(nv, &np) {
            iface.ntp_servers.extend(w.string(v, &p));
        }
    }
    iface.private_options = w.list(&mut d, "privateOptions", parse_private_option);
    d.finish(w, &[]);
}

fn parse_private_option(v: &Value, path: &str, w: &mut Walker) -> Option<PrivateOptionSpec> {
    let mut m = w.map(v, path)?;
    let option = m.take("option").and_then(|(v, p)| w.int(v, &p));
    let value = m.take("value").and_then(|(v, p)| w.string(v, &p));
    m.finish(w, &[]);
    Some(PrivateOptionSpec {
        path: path.to_string(),
        option,
        value,
    })
}

fn parse_interface(v: &Value, path: &str, w: &mut Walker) -> Option<InterfaceSpec> {
    let (mut m, name) = named_item(v, path, w)?;
    let mut iface = InterfaceSpec::named(path, name?);
    iface.bindings = parse_bindings(&mut m, w);
    iface.model = m.take("model").and_then(|(v, p)| w.string(v, &p));
    iface.mac = m.take("macAddress").and_then(|(v, p)| w.string(v, &p));
    iface.pci_address = m.take("pciAddress").and_then(|(v, p)| w.string(v, &p));
    iface.boot_order = m.take("bootOrder").and_then(|(v, p)| w.int(v, &p));
    iface.state = m.take("state").and_then(|(v, p)| w.string(v, &p));
    // The user guide once showed the PXE keys on the interface itself.
    let boot_file_name = m.take("bootFileName").and_then(|(v, p)| w.string(v, &p));
    let tftp_server_name = m.take("tftpServerName").and_then(|(v, p)| w.string(v, &p));
    parse_dhcp_options(&mut m, w, &mut iface);
    iface.boot_file_name = boot_file_name.or(iface.boot_file_name.take());
    iface.tftp_server_name = tftp_server_name.or(iface.tftp_server_name.take());
    iface.ports = w.list(&mut m, "ports", parse_port);
    if let Some((rv, rp)) = m.take("portRanges") {
        let text = serde_json::to_string(rv).unwrap_or_default();
        iface.port_ranges = Some(Field::new(text, rp));
    }
    m.finish(
        w,
        &[
            ("tag", "device role tagging is outside petrel's scope"),
            ("acpiIndex", "ACPI is outside petrel's scope"),
        ],
    );
    Some(iface)
}

fn parse_port(v: &Value, path: &str, w: &mut Walker) -> Option<PortSpec> {
    let mut m = w.map(v, path)?;
    let port = PortSpec {
        path: path.to_string(),
        name: m.take("name").and_then(|(v, p)| w.string(v, &p)),
        port: m.take("port").and_then(|(v, p)| w.int(v, &p)),
        protocol: m.take("protocol").and_then(|(v, p)| w.string(v, &p)),
    };
    m.finish(w, &[]);
    Some(port)
}

/// A network entry. `kubevirt` enables the KubeVirt-only sources (genie,
/// resource) and pod CIDR fields.
pub(crate) fn parse_network(
    v: &Value,
    path: &str,
    w: &mut Walker,
    kubevirt: bool,
) -> Option<NetworkSpec> {
    let (mut m, name) = named_item(v, path, w)?;
    let mut sources = Vec::new();
    sources.extend(pod_source(&mut m, w, kubevirt));
    sources.extend(multus_source(&mut m, w, kubevirt));
    if kubevirt {
        sources.extend(named_source(&mut m, w, "genie", "networkName"));
        sources.extend(named_source(&mut m, w, "resource", "resourceName"));
    }
    m.finish(w, &[]);
    Some(NetworkSpec {
        path: path.to_string(),
        name: name?,
        sources,
    })
}

/// `pod: {}` (KubeVirt: with its masquerade CIDRs).
fn pod_source(m: &mut MapView<'_>, w: &mut Walker, kubevirt: bool) -> Option<NetworkSource> {
    if !m.has("pod") {
        return None;
    }
    let (pv, pp) = m.take("pod")?;
    let (mut ipv4_cidr, mut ipv6_cidr) = (None, None);
    if let Some(mut pod) = w.map(pv, &pp) {
        if kubevirt {
            ipv4_cidr = pod.take("vmNetworkCIDR").and_then(|(v, p)| w.string(v, &p));
            ipv6_cidr = pod
                .take("vmIPv6NetworkCIDR")
                .and_then(|(v, p)| w.string(v, &p));
        }
        pod.finish(w, &[]);
    }
    Some(NetworkSource {
        path: pp,
        kind: NetworkSourceKind::Pod {
            ipv4_cidr,
            ipv6_cidr,
        },
    })
}

/// `multus: {networkName}` (KubeVirt: also `default`).
fn multus_source(m: &mut MapView<'_>, w: &mut Walker, kubevirt: bool) -> Option<NetworkSource> {
    if !m.has("multus") {
        return None;
    }
    let (mv, mp) = m.take("multus")?;
    let (mut network_name, mut default) = (None, false);
    if let Some(mut mu) = w.map(mv, &mp) {
        network_name = mu.take("networkName").and_then(|(v, p)| w.string(v, &p));
        if kubevirt {
            default = mu
                .take("default")
                .and_then(|(v, p)| w.bool(v, &p))
                .unwrap_or(false);
        }
        mu.finish(w, &[]);
    }
    Some(NetworkSource {
        path: mp,
        kind: NetworkSourceKind::Multus {
            network_name,
            default,
        },
    })
}

/// A KubeVirt source with one name field: `genie: {networkName}` or
/// `resource: {resourceName}`.
fn named_source(
    m: &mut MapView<'_>,
    w: &mut Walker,
    key: &str,
    field: &str,
) -> Option<NetworkSource> {
    if !m.has(key) {
        return None;
    }
    let (v, p) = m.take(key)?;
    let mut name = None;
    if let Some(mut section) = w.map(v, &p) {
        name = section.take(field).and_then(|(v, p)| w.string(v, &p));
        section.finish(w, &[]);
    }
    let kind = match key {
        "genie" => NetworkSourceKind::Genie { network_name: name },
        _ => NetworkSourceKind::Resource {
            resource_name: name,
        },
    };
    Some(NetworkSource { path: p, kind })
}
