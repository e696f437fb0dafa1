//! `/metrics` in the OpenMetrics text format (prometheus-client), with
//! KubeVirt's metric names so its dashboards work on a petrel VM:
//! `kubevirt_vmi_network_{receive,transmit}_{bytes,packets,errors,packets_dropped}_total`
//! labelled `interface` (the spec's interface name), `name`, `namespace`;
//! petrel's own figures (vCPU exits, per-queue counters) under `petrel_`.
//! A registry is built per scrape from the counters' current values.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::nic::queue_entries;
use super::{NicSource, NicTotals, VcpuExits};

/// What `/metrics` answers with.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The VM's `name` and `namespace` labels.
#[derive(Debug, Clone, Default)]
pub struct MetricLabels {
    pub name: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NicLabels {
    interface: String,
    name: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    interface: String,
    queue: String,
    name: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VcpuLabels {
    vcpu: String,
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VmLabels {
    name: String,
    namespace: String,
}

/// KubeVirt's network metrics (registered without `_total`, which the
/// encoder appends to counters) and which total each one reports.
type NetMetric = (&'static str, &'static str, fn(&NicTotals) -> u64);

const KUBEVIRT_NET: [NetMetric; 8] = [
    (
        "kubevirt_vmi_network_receive_bytes",
        "Received bytes.",
        |t| t.rx_bytes,
    ),
    (
        "kubevirt_vmi_network_transmit_bytes",
        "Transmitted bytes.",
        |t| t.tx_bytes,
    ),
    (
        "kubevirt_vmi_network_receive_packets",
        "Received packets.",
        |t| t.rx_frames,
    ),
    (
        "kubevirt_vmi_network_transmit_packets",
        "Transmitted packets.",
        |t| t.tx_frames,
    ),
    (
        "kubevirt_vmi_network_receive_errors",
        "Receive errors.",
        |t| t.rx_errors,
    ),
    (
        "kubevirt_vmi_network_transmit_errors",
        "Transmit errors.",
        |t| t.tx_errors,
    ),
    (
        "kubevirt_vmi_network_receive_packets_dropped",
        "Received packets dropped.",
        |t| t.rx_dropped,
    ),
    (
        "kubevirt_vmi_network_transmit_packets_dropped",
        "Transmitted packets dropped.",
        |t| t.tx_dropped,
    ),
];

fn kubevirt_nics(reg: &mut Registry, vm: &MetricLabels, nics: &[NicSource]) {
    let totals: Vec<(String, NicTotals)> =
        nics.iter().map(|n| (n.id.clone(), n.totals())).collect();
    for (name, help, pick) in KUBEVIRT_NET {
        let family = Family::<NicLabels, Counter>::default();
        for (id, t) in &totals {
            let labels = NicLabels {
                interface: id.clone(),
                name: vm.name.clone(),
                namespace: vm.namespace.clone(),
            };
            family.get_or_create(&labels).inc_by(pick(t));
        }
        reg.register(name, help, family);
    }
}

fn petrel_queues(reg: &mut Registry, vm: &MetricLabels, nics: &[NicSource]) {
    let empty = queue_entries(&Default::default());
    for (i, (counter, _)) in empty.iter().enumerate() {
        let family = Family::<QueueLabels, Counter>::default();
        for nic in nics {
            for (q, c) in nic.queues().iter().enumerate() {
                let labels = QueueLabels {
                    interface: nic.id.clone(),
                    queue: q.to_string(),
                    name: vm.name.clone(),
                    namespace: vm.namespace.clone(),
                };
                family.get_or_create(&labels).inc_by(queue_entries(c)[i].1);
            }
        }
        let help = format!("virtio-net queue pair counter {counter}.");
        reg.register(format!("petrel_net_queue_{counter}"), help, family);
    }
}

fn petrel_vcpus(reg: &mut Registry, vm: &MetricLabels, exits: &VcpuExits, paused: bool) {
    let family = Family::<VcpuLabels, Counter>::default();
    for (vcpu, kinds) in exits.snapshot() {
        for (kind, n) in kinds {
            let labels = VcpuLabels {
                vcpu: vcpu.to_string(),
                kind: kind.to_string(),
                name: vm.name.clone(),
                namespace: vm.namespace.clone(),
            };
            family.get_or_create(&labels).inc_by(n);
        }
    }
    reg.register("petrel_vcpu_exits", "KVM_RUN exits by kind.", family);
    let vm_labels = VmLabels {
        name: vm.name.clone(),
        namespace: vm.namespace.clone(),
    };
    let count = Family::<VmLabels, Gauge>::default();
    count
        .get_or_create(&vm_labels)
        .set(i64::try_from(exits.len()).unwrap_or(i64::MAX));
    reg.register("petrel_vcpus", "vCPUs of the VM.", count);
    let state = Family::<VmLabels, Gauge>::default();
    state.get_or_create(&vm_labels).set(i64::from(paused));
    reg.register("petrel_vm_paused", "1 while the VM is paused.", state);
}

/// The whole `/metrics` page.
pub fn render(vm: &MetricLabels, nics: &[NicSource], exits: &VcpuExits, paused: bool) -> String {
    let mut reg = Registry::default();
    kubevirt_nics(&mut reg, vm, nics);
    petrel_queues(&mut reg, vm, nics);
    petrel_vcpus(&mut reg, vm, exits, paused);
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &reg) {
        tracing::warn!(error = %e, "cannot encode the metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::virtio::net::NetMetrics;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    #[test]
    fn kubevirt_names_and_labels() {
        let m = Arc::new(NetMetrics::new(1));
        m.pair(0)
            .unwrap()
            .rx_bytes
            .fetch_add(1234, Ordering::Relaxed);
        let nics = [NicSource::virtio("default", m)];
        let vm = MetricLabels {
            name: "vm1".into(),
            namespace: "ns1".into(),
        };
        let text = render(&vm, &nics, &VcpuExits::new(2), false);
        let line = text
            .lines()
            .find(|l| l.starts_with("kubevirt_vmi_network_receive_bytes_total{"))
            .unwrap();
        assert!(line.contains(r#"interface="default""#), "{line}");
        assert!(line.contains(r#"name="vm1""#) && line.contains(r#"namespace="ns1""#));
        assert!(line.ends_with(" 1234"), "{line}");
        for name in [
            "kubevirt_vmi_network_transmit_bytes_total{",
            "kubevirt_vmi_network_receive_packets_dropped_total{",
            "kubevirt_vmi_network_transmit_errors_total{",
            "petrel_net_queue_rx_bytes_total{",
            "petrel_vcpu_exits_total{",
            "petrel_vcpus{",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
    }
}
