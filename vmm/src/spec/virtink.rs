//! Virtink (`virt.virtink.smartx.com/v1alpha1`) `VirtualMachine` spec extraction.

use serde_yaml::Value;

use super::common::{self, named_item, Layout};
use super::model::*;
use super::walk::Walker;

const SPEC_OUT_OF_SCOPE: &[(&str, &str)] = &[
    ("volumes", "volumes are outside petrel's scope"),
    (
        "resources",
        "pod resources do not apply; use spec.instance.memory",
    ),
    ("runPolicy", "petrel runs the VM when asked"),
    ("nodeSelector", "Kubernetes scheduling does not apply"),
    ("nodeAffinity", "Kubernetes scheduling does not apply"),
    ("affinity", "Kubernetes scheduling does not apply"),
    ("tolerations", "Kubernetes scheduling does not apply"),
    ("livenessProbe", "probes are outside petrel's scope"),
    ("readinessProbe", "probes are outside petrel's scope"),
    (
        "enableLiveMigration",
        "live migration is outside petrel's scope",
    ),
];

const INSTANCE_OUT_OF_SCOPE: &[(&str, &str)] = &[
    ("disks", "disks are outside petrel's scope"),
    ("fileSystems", "filesystems are outside petrel's scope"),
];

const LAYOUT: Layout = Layout {
    machine: "instance",
    interfaces: "instance.interfaces",
    cpu: "instance.cpu",
    memory: "instance.memory.size",
    kubevirt_networks: false,
    out_of_scope: SPEC_OUT_OF_SCOPE,
};

pub(crate) fn parse_spec(v: &Value, path: &str, spec: &mut VmSpec, w: &mut Walker) {
    common::parse_spec(v, path, spec, w, &LAYOUT, parse_instance);
}

fn parse_instance(v: &Value, path: &str, spec: &mut VmSpec, w: &mut Walker) {
    let Some(mut m) = w.map(v, path) else {
        return;
    };
    if let Some((cv, cp)) = m.take("cpu") {
        if let Some(mut c) = w.map(cv, &cp) {
            spec.cpu.sockets = c.take("sockets").and_then(|(v, p)| w.int(v, &p));
            spec.cpu.cores = c.take("coresPerSocket").and_then(|(v, p)| w.int(v, &p));
            c.finish(
                w,
                &[(
                    "dedicatedCPUPlacement",
                    "CPU pinning is outside petrel's scope",
                )],
            );
        }
    }
    if let Some((mv, mp)) = m.take("memory") {
        if let Some(mut mem) = w.map(mv, &mp) {
            spec.memory = mem.take("size").and_then(|(v, p)| w.scalar_text(v, &p));
            mem.finish(w, &[("hugepages", "hugepages are outside petrel's scope")]);
        }
    }
    if let Some((kv, kp)) = m.take("kernel") {
        if let Some(mut k) = w.map(kv, &kp) {
            spec.kernel.image = k.take("image").and_then(|(v, p)| w.string(v, &p));
            spec.kernel.cmdline = k.take("cmdline").and_then(|(v, p)| w.string(v, &p));
            k.finish(w, &[("imagePullPolicy", "petrel does not pull images")]);
        }
    }
    let interfaces = w.list(&mut m, "interfaces", parse_interface);
    spec.interfaces.extend(interfaces);
    m.finish(w, INSTANCE_OUT_OF_SCOPE);
}

fn parse_interface(v: &Value, path: &str, w: &mut Walker) -> Option<InterfaceSpec> {
    let (mut m, name) = named_item(v, path, w)?;
    let name = name?;
    let mut bindings = Vec::new();
    for (key, kind) in [
        ("bridge", BindingKind::Bridge),
        ("masquerade", BindingKind::Masquerade),
        ("sriov", BindingKind::Sriov),
        ("vdpa", BindingKind::Vdpa),
        ("vhostUser", BindingKind::VhostUser),
    ] {
        // take() also makes the key known, for typo hints.
        let taken = m.take(key);
        if !m.has(key) {
            continue;
        }
        if let Some((bv, bp)) = taken {
            let mut cidr = None;
            if let Some(mut b) = w.map(bv, &bp) {
                if kind == BindingKind::Masquerade {
                    cidr = b.take("cidr").and_then(|(v, p)| w.string(v, &p));
                }
                b.finish(w, &[]);
            }
            bindings.push(BindingSpec {
                kind,
                path: bp,
                cidr,
            });
        }
    }
    let mac = m.take("mac").and_then(|(v, p)| w.string(v, &p));
    m.finish(w, &[]);
    let mut iface = InterfaceSpec::named(path, name);
    iface.bindings = bindings;
    iface.mac = mac;
    Some(iface)
}
