//! `vm.info`'s `config`, in Cloud Hypervisor's `VmConfig` shape: `cpus`,
//! `memory`, `payload` and `net[]` with `id` = the spec's interface name
//! and the MAC the guest sees. Built once from the two plans; the state
//! comes from the control loop per request.

use serde_json::{json, Value};

use crate::host::{HostBackend, HostPlan};
use crate::plan::VmPlan;

/// CH's `VmConfig` subset petrel can fill.
pub fn vm_config(plan: &VmPlan, host: &HostPlan) -> Value {
    let net: Vec<Value> = plan
        .nics
        .iter()
        .map(|nic| {
            let h = host.nic(&nic.name);
            let mac = h.map_or(nic.mac, |h| h.guest_mac);
            let mut v = json!({
                "id": nic.name,
                "mac": mac.to_string(),
                "num_queues": 2 * u32::from(nic.queue_pairs),
                "model": nic.model.to_string(),
                "pci_bdf": nic.pci_address.to_string(),
            });
            if let Some(HostBackend::Tap { name }) = h.map(|h| &h.backend) {
                v["tap"] = json!(name);
            }
            v
        })
        .collect();
    json!({
        "cpus": {
            "boot_vcpus": plan.vcpus,
            "max_vcpus": plan.vcpus,
            "topology": {
                "threads_per_core": plan.topology.threads,
                "cores_per_die": plan.topology.cores,
                "dies_per_package": 1,
                "packages": plan.topology.sockets,
            },
        },
        "memory": { "size": plan.memory_bytes },
        "payload": {
            "kernel": plan.boot.kernel,
            "initramfs": plan.boot.initrd,
            "cmdline": plan.boot.cmdline,
        },
        "net": net,
    })
}
