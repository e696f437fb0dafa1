//! Multus' network-status annotation, as the downward API projects it into
//! the pod.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::go_quote::go_unquote;
use super::PodInfoError;

/// The annotation Multus writes the attachment results to.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// The name Multus used for [`NETWORK_STATUS_ANNOTATION`] before v3.7;
/// still read so that older clusters work.
pub const OLD_NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks-status";

/// File name (under the downward-API directory) of the network-status
/// annotation projected on its own.
const NETWORK_STATUS_FILE: &str = "network-status";
/// File name (under the downward-API directory) of all annotations
/// projected together (`fieldRef: metadata.annotations`).
const ANNOTATIONS_FILE: &str = "annotations";

/// One entry of Multus' network-status annotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkStatus {
    /// `namespace/nad-name` for attachments, the CNI network name for the
    /// cluster network.
    pub name: String,
    /// The interface inside the pod, e.g. `net1`.
    pub interface: Option<String>,
    pub ips: Vec<String>,
    pub mac: Option<String>,
    /// Whether this is the pod's default (cluster) network.
    pub default: bool,
    /// `device-info.type`: `pci` for SR-IOV VFs, also `vdpa`, `vhost-user`…
    pub device_type: Option<String>,
    /// `device-info.pci.pci-address`, only kept for `pci` devices: a vDPA
    /// device's PCI address is not something VFIO can take.
    pub pci_address: Option<String>,
}

/// Reads Multus' network status from the downward-API directory `dir`:
/// `network-status` (the annotation projected on its own) if present, else
/// the network-status key of `annotations` (all annotations projected).
///
/// Returns the entries and the file they came from. No directory, no file
/// or no key all mean "no status" (the pod may simply not project it), but a
/// file that is there and unreadable or malformed is an error, as guessing
/// would hand the guest the wrong VF.
pub fn load_network_status(
    dir: &Path,
) -> Result<(Vec<NetworkStatus>, Option<PathBuf>), PodInfoError> {
    let single = dir.join(NETWORK_STATUS_FILE);
    if let Some(text) = read_optional(&single)? {
        // kubelet writes an empty file when the annotation is not set (yet).
        if text.trim().is_empty() {
            return Ok((Vec::new(), None));
        }
        let status = parse_network_status(&text).map_err(|reason| PodInfoError::Malformed {
            path: single.clone(),
            reason,
        })?;
        return Ok((status, Some(single)));
    }

    let all = dir.join(ANNOTATIONS_FILE);
    let Some(text) = read_optional(&all)? else {
        return Ok((Vec::new(), None));
    };
    let malformed = |reason: String| PodInfoError::Malformed {
        path: all.clone(),
        reason,
    };
    let annotations = parse_annotations(&text).map_err(malformed)?;
    let value = annotations
        .get(NETWORK_STATUS_ANNOTATION)
        .or_else(|| annotations.get(OLD_NETWORK_STATUS_ANNOTATION));
    match value {
        Some(json) if !json.trim().is_empty() => {
            let status = parse_network_status(json).map_err(malformed)?;
            Ok((status, Some(all)))
        }
        _ => Ok((Vec::new(), None)),
    }
}

/// The file's text, `None` if it (or its directory) does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, PodInfoError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PodInfoError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parses the network-status annotation's JSON value.
///
/// Only `name` is required: Multus always sets it, and without it an entry
/// cannot be matched. Everything else is optional, since CNIs fill in
/// different subsets and unknown fields are expected as the spec evolves.
pub fn parse_network_status(json: &str) -> Result<Vec<NetworkStatus>, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let entries = value
        .as_array()
        .ok_or_else(|| "expected a JSON array of network status entries".to_string())?;
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("entry {i} has no string \"name\""))?;
            let string = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_string);
            let device_info = entry.get("device-info");
            let device_type = device_info
                .and_then(|d| d.get("type"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let pci_address = device_info
                .filter(|_| matches!(device_type.as_deref(), None | Some("pci")))
                .and_then(|d| d.get("pci"))
                .and_then(|p| p.get("pci-address"))
                .and_then(Value::as_str)
                .map(str::to_string);
            Ok(NetworkStatus {
                name: name.to_string(),
                interface: string("interface"),
                ips: entry
                    .get("ips")
                    .and_then(Value::as_array)
                    .map(|ips| {
                        ips.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                mac: string("mac"),
                default: entry
                    .get("default")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                device_type,
                pci_address,
            })
        })
        .collect()
}

/// Parses the kubelet's rendering of a map annotation set: one `key="value"`
/// per line, the value quoted like Go's `%q`.
///
/// Lines that are not `key=...` are skipped: the kubelet never writes them,
/// and a stray line must not hide the one we need. A quoted value that does
/// not unquote is an error, since it means the file is not what we think.
pub fn parse_annotations(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let Some((key, quoted)) = line.split_once('=') else {
            continue;
        };
        let value = go_unquote(quoted)
            .ok_or_else(|| format!("line {}: bad quoted value for {key}", n + 1))?;
        map.insert(key.to_string(), value);
    }
    Ok(map)
}
