//! Pod bindings: petrel plumbs the pod interface itself.

use super::{boxed, BackendError, Opened};
use crate::host::{HostNic, PodPlan};
use crate::plan::NicPlan;

pub(super) fn bind(
    vm_name: &str,
    nic: &NicPlan,
    host: &HostNic,
    pod: &PodPlan,
) -> Result<Opened, BackendError> {
    let bound = crate::pod_net::bind(vm_name, nic, pod)?;
    // A delegated MAC is the pod link's, read by the host plan; the
    // binding read it again. They differ only if the link changed since.
    if bound.guest_mac != host.guest_mac.0 {
        return Err(BackendError::GuestMac {
            nic: nic.name.clone(),
            planned: host.guest_mac,
            bound: net_backend::MacAddr(bound.guest_mac),
        });
    }
    Ok(Opened {
        queues: boxed(bound.taps),
        mtu: bound.mtu,
        pod: Some(bound.service),
        passt: None,
    })
}
