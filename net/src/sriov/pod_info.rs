//! The pod's facts a VF is resolved from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{load_network_status, NetworkStatus, PodInfoError};

/// Everything about the pod the resolution depends on, gathered in one
/// place so tests can replace the process env, the downward API and sysfs.
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    /// Environment variables; the process env in production.
    pub env: BTreeMap<String, String>,
    /// Multus' network-status entries, empty if the downward API did not
    /// provide them.
    pub network_status: Vec<NetworkStatus>,
    /// The file [`network_status`](Self::network_status) came from, quoted
    /// in errors and in [`Source::NetworkStatus`](super::Source::NetworkStatus).
    pub network_status_file: Option<PathBuf>,
    /// sysfs root, `/sys` in production.
    pub sysfs: PathBuf,
    /// VFIO group nodes, `/dev/vfio` in production.
    pub dev_vfio: PathBuf,
}

impl PodInfo {
    /// The real pod: the process env, the network status projected under
    /// `podinfo_dir` (usually `/etc/podinfo`), `/sys` and `/dev/vfio`.
    pub fn from_process(podinfo_dir: &Path) -> Result<PodInfo, PodInfoError> {
        // vars_os, not vars: one non-UTF-8 variable of some sidecar injector
        // must not abort the launcher; such variables cannot be ours anyway.
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let (network_status, network_status_file) = load_network_status(podinfo_dir)?;
        Ok(PodInfo {
            env,
            network_status,
            network_status_file,
            sysfs: PathBuf::from("/sys"),
            dev_vfio: PathBuf::from("/dev/vfio"),
        })
    }

    /// An env value, with an empty value counting as unset (kubelet sets
    /// empty variables when a referenced value is missing).
    pub(super) fn env(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }
}
