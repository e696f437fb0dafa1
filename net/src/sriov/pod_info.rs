//! The pod's facts a VF is resolved from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{load_network_status, parse_network_status, NetworkStatus, PodInfoError};

/// Virtink's prerunner gets Multus' network status in this variable; when
/// set it wins over the downward-API files.
pub const NETWORK_STATUS_ENV: &str = "NETWORK_STATUS";

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

/// Network-status entries and where they came from.
pub type StatusWithOrigin = (Vec<NetworkStatus>, Option<PathBuf>);

/// The network status in [`NETWORK_STATUS_ENV`], if set and not empty;
/// errors name the variable as their "file".
pub fn network_status_from_env(
    env: &BTreeMap<String, String>,
) -> Result<Option<StatusWithOrigin>, PodInfoError> {
    let Some(json) = env
        .get(NETWORK_STATUS_ENV)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let origin = PathBuf::from(format!("${NETWORK_STATUS_ENV}"));
    let status = parse_network_status(json).map_err(|reason| PodInfoError::Malformed {
        path: origin.clone(),
        reason,
    })?;
    Ok(Some((status, Some(origin))))
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
        let (network_status, network_status_file) = match network_status_from_env(&env)? {
            Some(status) => status,
            None => load_network_status(podinfo_dir)?,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_status_env_wins_and_is_checked() {
        let mut env = BTreeMap::new();
        assert!(network_status_from_env(&env).unwrap().is_none());
        env.insert(NETWORK_STATUS_ENV.to_string(), "  ".to_string());
        assert!(network_status_from_env(&env).unwrap().is_none());
        env.insert(
            NETWORK_STATUS_ENV.to_string(),
            r#"[{"name":"ns/sriov","interface":"net1","device-info":{"type":"pci","version":"1.0.0","pci":{"pci-address":"0000:3b:02.1"}}}]"#.to_string(),
        );
        let (status, origin) = network_status_from_env(&env).unwrap().unwrap();
        assert_eq!(status.len(), 1);
        assert_eq!(origin.unwrap(), PathBuf::from("$NETWORK_STATUS"));
        env.insert(NETWORK_STATUS_ENV.to_string(), "[{".to_string());
        assert!(network_status_from_env(&env).is_err());
    }
}
