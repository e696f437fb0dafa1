//! The checks that a VF can be passed through.

use std::fs;

use super::support::{assert_mentions, errors, one_error, req, Host};
use crate::sriov::*;

/// The VF network-status gives to network `a` in [`host_with`].
const VF: &str = "0000:65:00.2";

/// A host whose network-status gives [`VF`] to network `a`'s pod interface
/// `net1`, after `setup` has put (or not) the VF into sysfs.
fn host_with(setup: impl FnOnce(&Host)) -> Host {
    let mut h = Host::new();
    setup(&h);
    h.status("ns/a", "net1", Some(VF));
    h
}

/// The one error resolving network `a` on `h` gives.
fn error_of_a(h: &Host) -> SriovError {
    one_error(&h.info(), &[req("a", "a", "net1")])
}

#[test]
fn device_missing_from_sysfs_is_an_error() {
    let e = error_of_a(&host_with(|_| {}));
    assert!(matches!(e, SriovError::NotInSysfs { .. }), "{e}");
    assert_mentions(&e, &[VF]);
}

#[test]
fn wrong_driver_and_no_driver_are_errors() {
    let mut h = host_with(|h| h.device(VF, Some("iavf"), Some(42), true));
    h.device("0000:65:00.3", None, Some(43), true);
    h.status("ns/b", "net2", Some("0000:65:00.3"));
    let errs = errors(
        &h.info(),
        &[req("a", "a", "net1"), req("b", "b", "net2")],
        2,
    );
    match &errs[0] {
        SriovError::WrongDriver { driver, .. } => assert_eq!(driver.as_deref(), Some("iavf")),
        other => panic!("{other}"),
    }
    assert_mentions(
        &errs[0],
        &[
            "bound to iavf",
            "driver/unbind",
            "echo vfio-pci > /sys/bus/pci/devices/0000:65:00.2/driver_override; \
             echo 0000:65:00.2 > /sys/bus/pci/drivers_probe",
        ],
    );
    match &errs[1] {
        SriovError::WrongDriver { driver, .. } => assert_eq!(driver, &None),
        other => panic!("{other}"),
    }
    assert_mentions(&errs[1], &["bound to no driver"]);
    assert!(!errs[1].to_string().contains("unbind"), "{}", errs[1]);
}

#[test]
fn missing_iommu_group_is_an_error() {
    let e = error_of_a(&host_with(|h| h.device(VF, Some(VFIO_DRIVER), None, false)));
    assert!(matches!(e, SriovError::NoIommuGroup { .. }), "{e}");
    assert_mentions(&e, &["iommu_group"]);
}

#[test]
fn missing_vfio_group_node_is_an_error() {
    let h = host_with(|h| h.device(VF, Some(VFIO_DRIVER), Some(42), false));
    match error_of_a(&h) {
        SriovError::NoVfioGroupNode { group, path, .. } => {
            assert_eq!(group, 42);
            assert_eq!(path, h.tmp.0.join("dev/vfio/42"));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn bad_sysfs_content_is_an_error() {
    let h = host_with(|h| h.vf(VF, 42));
    let vendor = h.dev_dir(VF).join("vendor");
    fs::write(&vendor, "8086\n").unwrap();
    let e = error_of_a(&h);
    assert!(matches!(e, SriovError::BadSysfsValue { .. }), "{e}");
    fs::remove_file(&vendor).unwrap();
    let e = error_of_a(&h);
    assert!(matches!(e, SriovError::Io { .. }), "{e}");
}
