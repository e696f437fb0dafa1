//! What KubeVirt and Virtink VM specs have in common: a `spec` holding a
//! machine mapping and a `networks` list (under different key names), and
//! lists of named items.

use serde_yaml::Value;

use super::kubevirt::parse_network;
use super::model::{Field, VmSpec};
use super::walk::{MapView, Walker};

/// Where one kind of VM keeps, below its `spec`, what both kinds have.
pub(crate) struct Layout {
    /// The machine mapping: KubeVirt's `domain`, Virtink's `instance`.
    pub machine: &'static str,
    /// Where interfaces, CPU and memory sit, for messages about them even
    /// when the file leaves them out.
    pub interfaces: &'static str,
    pub cpu: &'static str,
    pub memory: &'static str,
    /// Whether networks may use KubeVirt's extra sources and CIDR fields.
    pub kubevirt_networks: bool,
    /// Keys of `spec` petrel knowingly ignores, with the reason.
    pub out_of_scope: &'static [(&'static str, &'static str)],
}

/// A VM's `spec`: `parse_machine` reads the machine mapping.
pub(crate) fn parse_spec(
    v: &Value,
    path: &str,
    spec: &mut VmSpec,
    w: &mut Walker,
    layout: &Layout,
    parse_machine: fn(&Value, &str, &mut VmSpec, &mut Walker),
) {
    spec.networks_path = format!("{path}.networks");
    spec.interfaces_path = format!("{path}.{}", layout.interfaces);
    spec.cpu.path = format!("{path}.{}", layout.cpu);
    spec.memory_path = format!("{path}.{}", layout.memory);
    let Some(mut m) = w.map(v, path) else {
        return;
    };
    if let Some((mv, mp)) = m.take(layout.machine) {
        parse_machine(mv, &mp, spec, w);
    }
    spec.termination_grace_period = m
        .take("terminationGracePeriodSeconds")
        .and_then(|(v, p)| w.int(v, &p));
    let kubevirt = layout.kubevirt_networks;
    let networks = w.list(&mut m, "networks", |v, p, w| {
        parse_network(v, p, w, kubevirt)
    });
    spec.networks.extend(networks);
    m.finish(w, layout.out_of_scope);
}

/// A list item that must be a mapping with a `name`: the mapping and the
/// name, if any; what is missing is reported.
pub(crate) fn named_item<'a>(
    v: &'a Value,
    path: &str,
    w: &mut Walker,
) -> Option<(MapView<'a>, Option<Field<String>>)> {
    let Some(mut m) = w.map(v, path) else {
        w.issue(path, "expected a mapping with at least a name");
        return None;
    };
    let name_path = format!("{}.name", m.path);
    let name = m.take("name").and_then(|(v, p)| w.string(v, &p));
    // A name of the wrong type is already reported at the same path.
    if name.is_none() && !w.issues.iter().any(|i| i.path == name_path) {
        w.issue(&name_path, "required field missing");
    }
    Some((m, name))
}
