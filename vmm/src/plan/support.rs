//! What petrel can build today. Some spec features parse and mean something
//! upstream but `run` cannot do them yet; they are refused here, with the
//! plan's other errors, so `validate` refuses whatever `run` would.

use super::{Binding, FieldError, NetworkPlan, NicModel, NicPlan};

/// NIC models petrel emulates.
const MODELS: [NicModel; 2] = [NicModel::VirtioNet, NicModel::E1000];

/// Refusals for every NIC that asks for something petrel cannot build.
pub(super) fn check(nics: &[NicPlan], errors: &mut Vec<FieldError>) {
    for nic in nics {
        if nic.binding != Binding::Sriov && !MODELS.contains(&nic.model) {
            errors.push(FieldError::new(
                format!("{}.model", nic.path),
                nic.model.as_str(),
                "is not emulated by petrel; use virtio (the fastest) or e1000",
            ));
        }
        if let NetworkPlan::Genie { network_name, .. } = &nic.network {
            errors.push(FieldError::new(
                &nic.network_path,
                network_name,
                "is a genie network, which petrel does not support (CNI-Genie names no pod \
                 interface petrel could find); use a multus network",
            ));
        }
    }
}
