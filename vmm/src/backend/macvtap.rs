//! KubeVirt's macvtap binding: the link's character device, one descriptor
//! per queue pair.

use net_backend::FrameBackend;
use tracing::info;

use super::{boxed, BackendError};
use crate::plan::NicPlan;

/// Opens macvtap `iface`; first gives the link `link_mac` when the spec
/// set the guest's MAC (a macvtap only receives frames for its own
/// address).
pub(super) fn open(
    nic: &NicPlan,
    iface: &str,
    link_mac: Option<[u8; 6]>,
) -> Result<Vec<Box<dyn FrameBackend>>, BackendError> {
    if let Some(mac) = link_mac {
        let link_err = |source| BackendError::LinkMac {
            nic: nic.name.clone(),
            iface: iface.to_string(),
            source,
        };
        let mut nl = net::netlink::Netlink::new().map_err(link_err)?;
        nl.set_mac(iface, mac).map_err(link_err)?;
    }
    let taps = net_backend::macvtap::open(iface, nic.queue_pairs).map_err(|source| {
        BackendError::Macvtap {
            nic: nic.name.clone(),
            iface: iface.to_string(),
            source,
        }
    })?;
    info!(nic = %nic.name, macvtap = iface, queues = taps.len(), "macvtap opened");
    Ok(boxed(taps))
}
