//! Read-only views of the device and vCPU counters for the API
//! (`vm.counters`) and `/metrics`. The devices keep their counters in
//! atomics (virtio-net's [`NetMetrics`]) or behind their register lock
//! (e1000); a [`NicSource`] is an `Arc` clone taken when the NIC is
//! attached, so the API thread reads them without touching the VM.

mod nic;
mod prometheus;
mod vcpu;

pub use nic::{NicCounterSource, NicSource, NicTotals};
pub use prometheus::{render, MetricLabels, OPENMETRICS_CONTENT_TYPE};
pub use vcpu::VcpuExits;
