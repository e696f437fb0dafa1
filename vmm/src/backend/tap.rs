//! Taps: handed over by the parent process, or opened by name.

use std::os::fd::{FromRawFd, OwnedFd};

use net_backend::{FrameBackend, Tap};

use super::{boxed, BackendError};
use crate::plan::NicPlan;

/// Adopts descriptors passed by the parent (`--tap-fd NIC=FD,...`), which
/// the host plan checked: open, one per queue pair. They must be taps
/// opened with IFF_NO_PI|IFF_VNET_HDR.
pub(super) fn adopt(
    nic: &NicPlan,
    fds: &[i32],
) -> Result<Vec<Box<dyn FrameBackend>>, BackendError> {
    let mut taps = Vec::with_capacity(fds.len());
    for &fd in fds {
        // SAFETY: the host plan checked the descriptor is open, and it was
        // handed to petrel for this NIC alone: nothing else owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let tap = Tap::from_fd(owned).map_err(|source| BackendError::Tap {
            nic: nic.name.clone(),
            tap: format!("fd {fd}"),
            source,
        })?;
        taps.push(tap);
    }
    Ok(boxed(taps))
}

/// Attaches to tap `name` (created when absent), one queue per pair.
pub(super) fn open_named(
    nic: &NicPlan,
    name: &str,
) -> Result<Vec<Box<dyn FrameBackend>>, BackendError> {
    let taps = Tap::open_named(name, nic.queue_pairs).map_err(|source| BackendError::Tap {
        nic: nic.name.clone(),
        tap: name.to_string(),
        source,
    })?;
    Ok(boxed(taps))
}
