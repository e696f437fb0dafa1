//! One NIC's counters, read from the device's shared state, and the
//! KubeVirt-style totals (`rx_bytes`, `rx_frames`, errors, drops) both
//! `vm.counters` and `/metrics` report.

use std::collections::BTreeMap;
use std::sync::Arc;

use devices::e1000::{E1000CounterSource, E1000Counters};
use devices::virtio::net::{NetMetrics, QueuePairCounters};

/// Where a NIC's counters live.
#[derive(Clone)]
pub enum NicCounterSource {
    VirtioNet(Arc<NetMetrics>),
    E1000(E1000CounterSource),
}

/// A NIC's counters under its device id (the spec's interface name).
#[derive(Clone)]
pub struct NicSource {
    pub id: String,
    pub source: NicCounterSource,
}

impl std::fmt::Debug for NicSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NicSource").field("id", &self.id).finish()
    }
}

/// Totals over a NIC's queues, in KubeVirt's terms (the libvirt
/// interface statistics its metrics come from).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NicTotals {
    pub rx_bytes: u64,
    pub rx_frames: u64,
    pub tx_bytes: u64,
    pub tx_frames: u64,
    /// Frames the device refused on receive (malformed chains or frames;
    /// e1000: RX ring errors).
    pub rx_errors: u64,
    /// Transmit failures (backend errors; e1000: also TX ring errors).
    pub tx_errors: u64,
    /// Frames dropped on receive (no guest buffer; e1000: receiver off,
    /// runts, too long, ring unusable).
    pub rx_dropped: u64,
    /// Frames dropped on transmit (malformed chains; e1000: unsendable
    /// packets).
    pub tx_dropped: u64,
}

fn virtio_totals(pairs: &[QueuePairCounters]) -> NicTotals {
    let mut t = NicTotals::default();
    for q in pairs {
        t.rx_bytes += q.rx_bytes;
        t.rx_frames += q.rx_frames;
        t.tx_bytes += q.tx_bytes;
        t.tx_frames += q.tx_frames;
        t.rx_errors += q.rx_malformed;
        t.tx_errors += q.backend_errors;
        t.rx_dropped += q.rx_dropped_no_buffer;
        t.tx_dropped += q.tx_malformed;
    }
    t
}

fn e1000_totals(c: &E1000Counters) -> NicTotals {
    NicTotals {
        rx_bytes: c.rx_bytes,
        rx_frames: c.rx_frames,
        tx_bytes: c.tx_bytes,
        tx_frames: c.tx_frames,
        rx_errors: c.rx_ring_errors,
        tx_errors: c.tx_ring_errors + c.backend_errors,
        rx_dropped: c.rx_dropped,
        tx_dropped: c.tx_dropped,
    }
}

impl NicTotals {
    fn entries(&self) -> [(&'static str, u64); 8] {
        [
            ("rx_bytes", self.rx_bytes),
            ("rx_frames", self.rx_frames),
            ("tx_bytes", self.tx_bytes),
            ("tx_frames", self.tx_frames),
            ("rx_errors", self.rx_errors),
            ("tx_errors", self.tx_errors),
            ("rx_dropped", self.rx_dropped),
            ("tx_dropped", self.tx_dropped),
        ]
    }
}

/// The named counters of one virtio-net queue pair.
pub(super) fn queue_entries(q: &QueuePairCounters) -> [(&'static str, u64); 9] {
    [
        ("rx_bytes", q.rx_bytes),
        ("rx_frames", q.rx_frames),
        ("tx_bytes", q.tx_bytes),
        ("tx_frames", q.tx_frames),
        ("rx_dropped_no_buffer", q.rx_dropped_no_buffer),
        ("rx_malformed", q.rx_malformed),
        ("tx_malformed", q.tx_malformed),
        ("notifications", q.notifications),
        ("backend_errors", q.backend_errors),
    ]
}

impl NicSource {
    pub fn virtio(id: &str, metrics: Arc<NetMetrics>) -> Self {
        Self {
            id: id.to_string(),
            source: NicCounterSource::VirtioNet(metrics),
        }
    }

    pub fn e1000(id: &str, counters: E1000CounterSource) -> Self {
        Self {
            id: id.to_string(),
            source: NicCounterSource::E1000(counters),
        }
    }

    pub fn totals(&self) -> NicTotals {
        match &self.source {
            NicCounterSource::VirtioNet(m) => virtio_totals(&m.snapshot()),
            NicCounterSource::E1000(c) => e1000_totals(&c.snapshot()),
        }
    }

    /// Per-queue-pair counters (virtio-net only; e1000 has one queue and
    /// reports it in [`Self::counters`]).
    pub fn queues(&self) -> Vec<QueuePairCounters> {
        match &self.source {
            NicCounterSource::VirtioNet(m) => m.snapshot(),
            NicCounterSource::E1000(_) => Vec::new(),
        }
    }

    /// `vm.counters`' map for this device: the totals, then petrel's own
    /// drop and error counters by name.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let mut map: BTreeMap<String, u64> = self
            .totals()
            .entries()
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        match &self.source {
            NicCounterSource::VirtioNet(m) => {
                let queues = m.snapshot();
                for (name, _) in queue_entries(&QueuePairCounters::default()) {
                    if map.contains_key(name) {
                        continue;
                    }
                    let sum = queues.iter().map(|q| lookup(&queue_entries(q), name)).sum();
                    map.insert(name.to_string(), sum);
                }
                let d = m.device_snapshot();
                map.insert("ctrl_commands".into(), d.ctrl_commands);
                map.insert("ctrl_errors".into(), d.ctrl_errors);
                map.insert("event_errors".into(), d.event_errors);
                map.insert("config_writes_refused".into(), d.config_writes_refused);
            }
            NicCounterSource::E1000(c) => {
                let c = c.snapshot();
                map.insert("rx_filtered".into(), c.rx_filtered);
                map.insert("rx_ring_errors".into(), c.rx_ring_errors);
                map.insert("tx_ring_errors".into(), c.tx_ring_errors);
                map.insert("backend_errors".into(), c.backend_errors);
                map.insert("unknown_reg_accesses".into(), c.unknown_reg_accesses);
            }
        }
        map
    }
}

fn lookup(entries: &[(&'static str, u64)], name: &str) -> u64 {
    entries
        .iter()
        .find(|(k, _)| *k == name)
        .map_or(0, |(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn virtio_counters_sum_the_queue_pairs() {
        let m = Arc::new(NetMetrics::new(2));
        for i in 0..2 {
            let q = m.pair(i).unwrap();
            q.rx_bytes.fetch_add(100, Ordering::Relaxed);
            q.rx_frames.fetch_add(2, Ordering::Relaxed);
            q.tx_malformed.fetch_add(1, Ordering::Relaxed);
            q.rx_dropped_no_buffer.fetch_add(3, Ordering::Relaxed);
        }
        let nic = NicSource::virtio("net0", m);
        let t = nic.totals();
        assert_eq!((t.rx_bytes, t.rx_frames), (200, 4));
        assert_eq!((t.tx_dropped, t.rx_dropped), (2, 6));
        let c = nic.counters();
        assert_eq!(c["rx_bytes"], 200);
        assert_eq!(c["tx_malformed"], 2);
        assert_eq!(c["rx_dropped_no_buffer"], 6);
        assert_eq!(c["ctrl_commands"], 0);
        assert_eq!(nic.queues().len(), 2);
    }
}
