//! What cannot be saved or migrated, with the reason the API returns.
//! KubeVirt itself refuses to migrate a bridge binding on the pod network
//! (the guest owns the pod's IP), SR-IOV (VF state is the hardware's) and
//! macvtap; petrel also cannot move passthrough device state.

use crate::plan::{Binding, NetworkPlan, VmPlan};

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
            _ => continue,
        };
        return Some(format!("interface {}: {why}", nic.name));
    }
    if extra_pci > 0 {
        return Some("passthrough PCI devices cannot be snapshotted or migrated".to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{resolve, Overrides};
    use crate::spec::parse_str;

    fn plan(interfaces: &str, networks: &str) -> VmPlan {
        let yaml = format!(
            "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: vm1}}\n\
             spec:\n  domain:\n    devices:\n      interfaces: {interfaces}\n  networks: {networks}\n"
        );
        resolve(&parse_str(&yaml).unwrap(), &Overrides::default()).unwrap()
    }

    const POD: &str = "[{name: a, pod: {}}]";
    const MULTUS: &str = "[{name: a, multus: {networkName: n}}]";

    #[test]
    fn what_kubevirt_refuses_is_refused_with_a_reason() {
        let refused = |i: &str, n: &str| refusal(&plan(i, n), 0).unwrap_or_default();
        assert!(refused("[{name: a, bridge: {}}]", POD).contains("pod's IP"));
        assert!(refused("[{name: a, sriov: {}}]", MULTUS).contains("SR-IOV"));
        assert!(refused("[{name: a, macvtap: {}}]", MULTUS).contains("macvtap"));
        assert!(refusal(&plan("[{name: a, masquerade: {}, model: e1000}]", POD), 0).is_none());
        assert!(refusal(&plan("[{name: a, masquerade: {}}]", POD), 0).is_none());
        assert!(refusal(&plan("[{name: a, bridge: {}}]", MULTUS), 0).is_none());
        assert!(refusal(&plan("[{name: a, masquerade: {}}]", POD), 1)
            .unwrap_or_default()
            .contains("passthrough"));
    }
}
