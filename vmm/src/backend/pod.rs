//! Pod bindings: petrel plumbs the pod interface itself.

use super::{boxed, BackendError, Opened};
use crate::host::PodPlan;
use crate::plan::NicPlan;

pub(super) fn bind(vm_name: &str, nic: &NicPlan, pod: &PodPlan) -> Result<Opened, BackendError> {
    let bound = crate::pod_net::bind(vm_name, nic, pod)?;
    Ok(Opened {
        queues: boxed(bound.taps),
        mtu: bound.mtu,
        pod: Some(bound.service),
    })
}
