//! Reading the network status from the downward API.

use std::fs;
use std::path::Path;

use super::support::{addr, req, Host, STATUS_JSON};
use crate::sriov::go_quote::go_quote;
use crate::sriov::*;

#[test]
fn network_status_json_is_parsed() {
    let s = parse_network_status(STATUS_JSON).unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].name, "kindnet");
    assert!(s[0].default);
    assert_eq!(s[0].ips, ["10.244.1.5"]);
    assert_eq!(s[0].pci_address, None);
    assert_eq!(s[1].interface.as_deref(), Some("net1"));
    assert_eq!(s[1].mac.as_deref(), Some("ce:4e:9c:d3:1f:a0"));
    assert_eq!(s[1].device_type.as_deref(), Some("pci"));
    assert_eq!(s[1].pci_address.as_deref(), Some("0000:65:00.2"));
    // A vDPA device is not a VFIO VF even if it reports a PCI address.
    assert_eq!(s[2].device_type.as_deref(), Some("vdpa"));
    assert_eq!(s[2].pci_address, None);

    assert!(parse_network_status("{}").is_err());
    assert!(parse_network_status(r#"[{"interface":"net1"}]"#).is_err());
    assert!(parse_network_status("[").is_err());
}

#[test]
fn annotations_file_is_parsed() {
    let h = Host::new();
    let dir = h.podinfo();
    let text = format!(
        "kubectl.kubernetes.io/default-container=\"compute\"\n\
         {NETWORK_STATUS_ANNOTATION}={}\n\
         k8s.v1.cni.cncf.io/networks=\"[{{\\\"name\\\":\\\"sriov-a\\\"}}]\"\n",
        go_quote(STATUS_JSON)
    );
    assert!(!text.lines().nth(1).unwrap().contains('\n'));
    fs::write(dir.join("annotations"), &text).unwrap();
    let (status, file) = load_network_status(&dir).unwrap();
    assert_eq!(file, Some(dir.join("annotations")));
    assert_eq!(status, parse_network_status(STATUS_JSON).unwrap());

    let map = parse_annotations(&text).unwrap();
    assert_eq!(map["kubectl.kubernetes.io/default-container"], "compute");
    assert_eq!(
        map["k8s.v1.cni.cncf.io/networks"],
        r#"[{"name":"sriov-a"}]"#
    );
    assert_eq!(map[NETWORK_STATUS_ANNOTATION], STATUS_JSON);
}

/// Writes `annotations` into the downward-API directory `dir` the way the
/// kubelet projects `metadata.annotations`: `key="value"` lines.
fn write_annotations(dir: &Path, annotations: &[(&str, &str)]) {
    let text: String = annotations
        .iter()
        .map(|(key, value)| format!("{key}={}\n", go_quote(value)))
        .collect();
    fs::write(dir.join("annotations"), text).unwrap();
}

#[test]
fn old_annotation_key_is_accepted_and_new_one_preferred() {
    let h = Host::new();
    let dir = h.podinfo();
    let old = (
        OLD_NETWORK_STATUS_ANNOTATION,
        r#"[{"name":"ns/old","interface":"net1"}]"#,
    );
    let new = (
        NETWORK_STATUS_ANNOTATION,
        r#"[{"name":"ns/new","interface":"net1"}]"#,
    );
    write_annotations(&dir, &[old]);
    assert_eq!(load_network_status(&dir).unwrap().0[0].name, "ns/old");
    write_annotations(&dir, &[old, new]);
    assert_eq!(load_network_status(&dir).unwrap().0[0].name, "ns/new");
}

#[test]
fn single_network_status_file_is_preferred() {
    let h = Host::new();
    let dir = h.podinfo();
    fs::write(dir.join("network-status"), STATUS_JSON).unwrap();
    fs::write(dir.join("annotations"), "broken=\"\n").unwrap();
    let (status, file) = load_network_status(&dir).unwrap();
    assert_eq!(file, Some(dir.join("network-status")));
    assert_eq!(status.len(), 3);
}

#[test]
fn absent_status_is_empty() {
    let h = Host::new();
    let nothing = (Vec::new(), None);
    assert_eq!(load_network_status(&h.tmp.0.join("nope")).unwrap(), nothing);

    let dir = h.podinfo();
    write_annotations(&dir, &[("a", "b")]);
    assert_eq!(load_network_status(&dir).unwrap(), nothing);

    fs::write(dir.join("network-status"), "").unwrap();
    assert_eq!(load_network_status(&dir).unwrap(), nothing);
}

/// Asserts that the network status in `dir` is malformed, and that the
/// error says so of `file`.
fn assert_malformed(dir: &Path, file: &str) {
    let e = load_network_status(dir).unwrap_err();
    assert!(matches!(e, PodInfoError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains(file), "{e}");
}

#[test]
fn malformed_files_are_errors_naming_the_file() {
    let h = Host::new();
    let dir = h.podinfo();
    fs::write(
        dir.join("annotations"),
        format!("{NETWORK_STATUS_ANNOTATION}=\"[\\\"\n"),
    )
    .unwrap();
    assert_malformed(&dir, "annotations");

    write_annotations(&dir, &[(NETWORK_STATUS_ANNOTATION, "[{")]);
    assert_malformed(&dir, "annotations");

    fs::write(dir.join("network-status"), "not json").unwrap();
    assert_malformed(&dir, "network-status");
}

#[test]
fn from_process_reads_the_podinfo_dir() {
    let h = Host::new();
    let dir = h.podinfo();
    fs::write(dir.join("network-status"), STATUS_JSON).unwrap();
    let info = PodInfo::from_process(&dir).unwrap();
    assert_eq!(info.network_status.len(), 3);
    assert_eq!(info.sysfs, Path::new("/sys"));
    assert_eq!(info.dev_vfio, Path::new("/dev/vfio"));
    if let Ok(path) = std::env::var("PATH") {
        assert_eq!(info.env.get("PATH"), Some(&path));
    }
}

#[test]
fn end_to_end_from_downward_api() {
    let h = Host::new();
    h.vf("0000:65:00.2", 42);
    let dir = h.podinfo();
    write_annotations(&dir, &[(NETWORK_STATUS_ANNOTATION, STATUS_JSON)]);
    let (network_status, network_status_file) = load_network_status(&dir).unwrap();
    let info = PodInfo {
        network_status,
        network_status_file,
        ..h.info()
    };
    let devs = resolve_all(&info, &[req("sriov", "sriov-a", "net1")]).unwrap();
    assert_eq!(devs[0].address, addr("0000:65:00.2"));
    assert_eq!(
        devs[0].resolved_from,
        Source::NetworkStatus {
            file: Some(dir.join("annotations"))
        }
    );
}
