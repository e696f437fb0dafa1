//! What cannot be saved or migrated, with the reason the API returns.
//! KubeVirt itself refuses to migrate a bridge binding on the pod network
//! (the guest owns the pod's IP), SR-IOV (VF state is the hardware's) and
//! macvtap; petrel also cannot move e1000, multi-queue virtio-net or
//! passthrough device state yet.

use crate::plan::{Binding, NetworkPlan, NicModel, VmPlan};

/// Why this VM cannot be saved or migrated, if it cannot.
pub fn refusal(plan: &VmPlan, extra_pci: usize) -> Option<String> {
    for nic in &plan.nics {
        let why = match (nic.binding, &nic.network) {
            (Binding::Bridge, NetworkPlan::Pod { .. }) => {
                "a bridge binding on the pod network cannot migrate: the guest holds the pod's IP, which the target pod does not have (KubeVirt refuses it too)"
            }
            (Binding::Sriov, _) => {
                "an SR-IOV VF cannot migrate: its state lives in the host NIC (KubeVirt refuses it too)"
            }
            (Binding::Macvtap, _) => {
                "a macvtap binding cannot migrate: the guest's MAC lives on the source node's parent link (KubeVirt refuses it too)"
            }
            _ if nic.model != NicModel::VirtioNet => {
                "only virtio-net NICs can be saved: e1000 register and ring state is not saved yet"
            }
            _ if nic.queue_pairs > 1 => {
                "a multi-queue virtio-net NIC cannot be saved yet (its control-queue state is not kept)"
            }
            _ => continue,
        };
        return Some(format!("interface {}: {why}", nic.name));
    }
    if extra_pci > 0 {
        return Some("passthrough PCI devices cannot be snapshotted or migrated".to_string());
    }
    None
}
