//! Which VF each NIC gets, and the errors when there is none.

use std::path::PathBuf;

use super::support::{addr, assert_mentions, errors, one_error, pool_req, req, resolved, Host};
use crate::sriov::resolve::multus_name_matches;
use crate::sriov::*;

#[test]
fn dashed_resource_found_under_either_env_spelling() {
    for env in [
        "PCIDEVICE_EXAMPLE_ORG_SRIOV-A",
        "PCIDEVICE_EXAMPLE_ORG_SRIOV_A",
    ] {
        let mut h = Host::new();
        h.vf("0000:65:00.2", 42);
        h.env(env, "0000:65:00.2");
        let devs = resolved(
            &h,
            &[pool_req("example.org/sriov-a", "a", "sriov-a", "net1")],
        );
        assert_eq!(
            devs[0].resolved_from,
            Source::DevicePlugin {
                resource: "example.org/sriov-a".into(),
                env: env.into()
            }
        );
    }
}

// --- rule 1: network-status --------------------------------------------

#[test]
fn network_status_gives_the_address() {
    let mut h = Host::new();
    h.vf("0000:65:00.2", 42);
    h.status("kindnet", "eth0", None);
    h.status("default/sriov-a", "net1", Some("0000:65:00.2"));
    for multus in ["sriov-a", "default/sriov-a"] {
        let devs = resolved(&h, &[req("sriov", multus, "net1")]);
        let d = &devs[0];
        assert_eq!(d.network, "sriov");
        assert_eq!(d.address, addr("0000:65:00.2"));
        assert_eq!(d.sysfs_path, h.dev_dir("0000:65:00.2"));
        assert_eq!(d.iommu_group, 42);
        assert_eq!(d.group_path, h.tmp.0.join("dev/vfio/42"));
        assert_eq!((d.vendor, d.device), (0x8086, 0x154c));
        assert_eq!(
            d.resolved_from,
            Source::NetworkStatus {
                file: Some(PathBuf::from("/etc/podinfo/network-status"))
            }
        );
    }
}

#[test]
fn network_status_must_match_interface_and_name() {
    let mut h = Host::new();
    h.vf("0000:65:00.2", 42);
    h.vf("0000:65:00.3", 43);
    h.status("default/sriov-a", "net2", Some("0000:65:00.2")); // other iface
    h.status("other/sriov-a", "net1", Some("0000:65:00.2")); // other namespace
    h.env("PCIDEVICE_INTEL_COM_A", "0000:65:00.3");
    let devs = resolved(
        &h,
        &[pool_req("intel.com/a", "sriov", "default/sriov-a", "net1")],
    );
    assert_eq!(devs[0].address, addr("0000:65:00.3"));
    assert!(matches!(devs[0].resolved_from, Source::DevicePlugin { .. }));

    assert!(multus_name_matches("ns/a", "a"));
    assert!(multus_name_matches("ns/a", "ns/a"));
    assert!(multus_name_matches("a", "a"));
    assert!(!multus_name_matches("ns/a", "other/a"));
    assert!(!multus_name_matches("ns/ab", "a"));
}

#[test]
fn interface_without_device_info_falls_through_to_the_pool() {
    let mut h = Host::new();
    h.vf("0000:65:00.3", 43);
    h.status("default/sriov-a", "net1", None);
    h.env("KUBEVIRT_RESOURCE_NAME_sriov", "intel.com/sriov_net");
    h.env("PCIDEVICE_INTEL_COM_SRIOV_NET", "0000:65:00.3");
    let devs = resolved(&h, &[req("sriov", "sriov-a", "net1")]);
    assert_eq!(devs[0].address, addr("0000:65:00.3"));
}

// --- rule 2: device plugin ---------------------------------------------

#[test]
fn kubevirt_env_names_the_resource_and_wins_over_the_spec() {
    let mut h = Host::new();
    h.vf("0000:65:00.2", 42);
    h.env("KUBEVIRT_RESOURCE_NAME_sriov-net", "intel.com/sriov_net");
    h.env("PCIDEVICE_INTEL_COM_SRIOV_NET", "0000:65:00.2");
    h.env("PCIDEVICE_OTHER_COM_X", "0000:99:00.0");
    let r = pool_req("other.com/x", "sriov-net", "sriov-a", "pod1a2b3c4d5e6");
    let devs = resolved(&h, &[r]);
    assert_eq!(devs[0].address, addr("0000:65:00.2"));
    assert_eq!(
        devs[0].resolved_from,
        Source::DevicePlugin {
            resource: "intel.com/sriov_net".into(),
            env: "PCIDEVICE_INTEL_COM_SRIOV_NET".into()
        }
    );
}

#[test]
fn spec_resource_is_used_without_kubevirt_env() {
    let mut h = Host::new();
    h.vf("0000:65:00.2", 42);
    h.env("PCIDEVICE_INTEL_COM_SRIOV_NET", " , 0000:65:00.2 ,");
    let r = pool_req("intel.com/sriov_net", "sriov", "sriov-a", "net1");
    let devs = resolved(&h, &[r]);
    assert_eq!(devs[0].address, addr("0000:65:00.2"));
}

/// A host with two VFs in the pool of resource `intel.com/sriov_net`, which
/// KubeVirt names as the resource of networks `a` and `b`.
fn shared_pool() -> Host {
    let mut h = Host::new();
    h.vf("0000:65:00.2", 42);
    h.vf("0000:65:00.3", 43);
    h.env("KUBEVIRT_RESOURCE_NAME_a", "intel.com/sriov_net");
    h.env("KUBEVIRT_RESOURCE_NAME_b", "intel.com/sriov_net");
    h.env("PCIDEVICE_INTEL_COM_SRIOV_NET", "0000:65:00.2,0000:65:00.3");
    h
}

/// The NICs of networks `a` (pod interface `net1`) and `b` (`net2`), both
/// on Multus network `sriov`.
fn a_and_b() -> [VfRequest<'static>; 2] {
    [req("a", "sriov", "net1"), req("b", "sriov", "net2")]
}

#[test]
fn nics_sharing_a_pool_get_distinct_vfs() {
    let devs = resolved(&shared_pool(), &a_and_b());
    assert_eq!(devs[0].address, addr("0000:65:00.2"));
    assert_eq!(devs[1].address, addr("0000:65:00.3"));
    assert_eq!(devs[1].iommu_group, 43);
}

#[test]
fn network_status_wins_and_its_vf_leaves_the_pool() {
    let mut h = shared_pool();
    // Only b has device-info, and it names the pool's first VF; a comes
    // first but must not take it.
    h.status("default/sriov", "net2", Some("0000:65:00.2"));
    let devs = resolved(&h, &a_and_b());
    assert_eq!(devs[0].address, addr("0000:65:00.3"));
    assert!(matches!(devs[0].resolved_from, Source::DevicePlugin { .. }));
    assert_eq!(devs[1].address, addr("0000:65:00.2"));
    assert!(matches!(
        devs[1].resolved_from,
        Source::NetworkStatus { .. }
    ));
}

// --- errors ------------------------------------------------------------

#[test]
fn no_source_says_to_request_the_resource() {
    let h = Host::new();
    let mut info = h.info();
    info.network_status_file = None;
    let e = one_error(&info, &[req("sriov", "ns/sriov-a", "net1")]);
    assert!(matches!(e, SriovError::NoSource { .. }), "{e}");
    assert_mentions(
        &e,
        &[
            "network sriov",
            "net1",
            "KUBEVIRT_RESOURCE_NAME_sriov",
            "k8s.v1.cni.cncf.io/resourceName",
            "ns/sriov-a",
            "not projected",
        ],
    );
}

#[test]
fn missing_pool_env_is_an_error() {
    let mut h = Host::new();
    h.env("KUBEVIRT_RESOURCE_NAME_sriov", "intel.com/sriov_net");
    let e = one_error(&h.info(), &[req("sriov", "a", "net1")]);
    assert!(matches!(e, SriovError::PoolMissing { .. }), "{e}");
    assert_mentions(
        &e,
        &[
            "PCIDEVICE_INTEL_COM_SRIOV_NET",
            "KUBEVIRT_RESOURCE_NAME_sriov",
            "resources.limits",
        ],
    );
}

#[test]
fn exhausted_pool_is_an_error() {
    let mut h = Host::new();
    h.vf("0000:65:00.2", 42);
    h.env("PCIDEVICE_INTEL_COM_X", "0000:65:00.2");
    let r = |net| pool_req("intel.com/x", net, "x", net);
    let e = one_error(&h.info(), &[r("a"), r("b")]);
    match &e {
        SriovError::PoolExhausted { network, size, .. } => {
            assert_eq!((network.as_str(), *size), ("b", 1));
        }
        other => panic!("{other}"),
    }
    assert_mentions(&e, &["all 1 VFs of resource intel.com/x"]);
}

#[test]
fn bad_addresses_are_errors() {
    let mut h = Host::new();
    h.status("ns/a", "net1", Some("65:00.2"));
    h.env("PCIDEVICE_INTEL_COM_X", "0000:65:00.2,bogus");
    let rb = pool_req("intel.com/x", "b", "b", "net2");
    let errs = errors(&h.info(), &[req("a", "a", "net1"), rb], 2);
    match &errs[0] {
        SriovError::BadAddress { origin, source, .. } => {
            assert!(origin.contains("network-status entry ns/a"), "{origin}");
            assert_eq!(source.input, "65:00.2");
        }
        other => panic!("{other}"),
    }
    match &errs[1] {
        SriovError::BadAddress { origin, source, .. } => {
            assert_eq!(origin, "PCIDEVICE_INTEL_COM_X");
            assert_eq!(source.input, "bogus");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn same_address_twice_in_network_status_is_an_error() {
    let mut h = Host::new();
    h.vf("0000:65:00.2", 42);
    h.status("ns/a", "net1", Some("0000:65:00.2"));
    h.status("ns/b", "net2", Some("0000:65:00.2"));
    let e = one_error(&h.info(), &[req("a", "a", "net1"), req("b", "b", "net2")]);
    match &e {
        SriovError::DuplicateAddress {
            network,
            first_network,
            ..
        } => assert_eq!((network.as_str(), first_network.as_str()), ("b", "a")),
        other => panic!("{other}"),
    }
}

#[test]
fn all_errors_are_reported_together() {
    let mut h = Host::new();
    h.vf("0000:65:00.2", 42);
    h.device("0000:65:00.3", Some("iavf"), Some(43), true);
    h.status("ns/ok", "net1", Some("0000:65:00.2"));
    h.status("ns/drv", "net2", Some("0000:65:00.3"));
    let reqs = [
        req("ok", "ok", "net1"),
        req("drv", "drv", "net2"),
        req("none", "none", "net3"),
    ];
    let err = resolve_all(&h.info(), &reqs).unwrap_err();
    assert_eq!(err.errors().len(), 2);
    assert!(matches!(err.errors()[0], SriovError::WrongDriver { .. }));
    assert!(matches!(err.errors()[1], SriovError::NoSource { .. }));
    let msg = err.to_string();
    assert!(msg.starts_with("2 SR-IOV NICs cannot be set up:"), "{msg}");
    assert_mentions(&err, &["network drv", "network none"]);
    assert!(std::error::Error::source(&err).is_none());
}

#[test]
fn no_requests_need_nothing() {
    assert_eq!(resolve_all(&PodInfo::default(), &[]).unwrap(), vec![]);
}
