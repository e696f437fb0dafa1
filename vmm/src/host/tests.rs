//! Host-plan rules against a made-up pod.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use net::binding::DnsInfo;
use net::sriov::{VfDevice, VfRequest};

use super::*;
use crate::plan::{resolve as plan, Overrides, VmPlan};

#[derive(Default)]
struct FakePod {
    links: BTreeMap<String, String>,
    ipv6: Vec<String>,
    open_fds: Vec<i32>,
    not_taps: Vec<i32>,
    vf_errors: Vec<String>,
    resources: Vec<(String, String)>,
    addrs: BTreeMap<String, PodAddrs>,
    no_passt: bool,
    nofile: Option<u64>,
}

impl FakePod {
    fn with_links(links: &[(&str, &str)]) -> Self {
        FakePod {
            links: links
                .iter()
                .map(|(n, m)| (n.to_string(), m.to_string()))
                .collect(),
            ..Default::default()
        }
    }
}

impl HostView for FakePod {
    fn link_exists(&self, name: &str) -> bool {
        self.links.contains_key(name)
    }
    fn link_mac(&self, name: &str) -> Result<String, String> {
        self.links
            .get(name)
            .cloned()
            .ok_or_else(|| "no such link".into())
    }
    fn has_global_ipv6(&self, iface: &str) -> bool {
        self.ipv6.iter().any(|i| i == iface)
    }
    fn dns(&self) -> DnsInfo {
        DnsInfo {
            servers: vec![Ipv4Addr::new(10, 96, 0, 10)],
            search: vec!["default.svc.cluster.local".into()],
        }
    }
    fn network_resources(&self) -> Vec<(String, String)> {
        self.resources.clone()
    }
    fn pod_addrs(&self, iface: &str) -> Result<PodAddrs, String> {
        Ok(self.addrs.get(iface).copied().unwrap_or_default())
    }
    fn nofile_limit(&self) -> Option<u64> {
        Some(self.nofile.unwrap_or(1 << 20))
    }
    fn ephemeral_ports(&self) -> Option<(u16, u16)> {
        Some((32768, 60999))
    }
    fn find_program(&self, program: &str) -> Option<std::path::PathBuf> {
        (!self.no_passt).then(|| std::path::Path::new("/usr/bin").join(program))
    }
    fn fd_is_open(&self, fd: i32) -> bool {
        self.open_fds.contains(&fd)
    }
    fn fd_is_tap(&self, fd: i32) -> Result<(), String> {
        if self.not_taps.contains(&fd) {
            Err("not a tap (TUNGETIFF: Inappropriate ioctl for device)".into())
        } else {
            Ok(())
        }
    }
    fn resolve_vfs(&self, _reqs: &[VfRequest<'_>]) -> Result<Vec<VfDevice>, Vec<String>> {
        Err(self.vf_errors.clone())
    }
}

fn plan_of(yaml: &str) -> VmPlan {
    let spec = crate::spec::parse_str(yaml).unwrap();
    plan(&spec, &Overrides::default()).unwrap()
}

fn vmi(interfaces: &str, networks: &str) -> VmPlan {
    plan_of(&format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: vm1}}\n\
         spec:\n  domain:\n    devices:\n      interfaces: {interfaces}\n  networks: {networks}\n"
    ))
}

fn errors(r: Result<HostPlan, HostErrors>) -> Vec<String> {
    r.unwrap_err().0.iter().map(ToString::to_string).collect()
}

#[test]
fn masquerade_takes_ipv6_only_when_the_pod_has_it() {
    let p = vmi("[{name: a, masquerade: {}}]", "[{name: a, pod: {}}]");
    let mut pod = FakePod::with_links(&[("eth0", "0a:58:0a:f4:00:05")]);
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    let HostBackend::Pod(pp) = &h.nics[0].backend else {
        panic!("{h:?}")
    };
    assert_eq!(pp.pod_iface, "eth0");
    assert_eq!(pp.ipv4.unwrap().to_string(), "10.0.2.0/24");
    assert_eq!(pp.ipv6, None);
    assert_eq!(pp.dns_servers, [Ipv4Addr::new(10, 96, 0, 10)]);
    pod.ipv6.push("eth0".into());
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    let HostBackend::Pod(pp) = &h.nics[0].backend else {
        panic!("{h:?}")
    };
    assert_eq!(pp.ipv6.unwrap().to_string(), "fd10:0:2::/120");
    assert!(h
        .to_text()
        .contains("masquerade binding on eth0 via tap tap-a"));
}

#[test]
fn a_pod_without_the_interface_is_refused_with_the_names_tried() {
    let p = vmi(
        "[{name: a, masquerade: {}}, {name: br, bridge: {}}]",
        "[{name: a, pod: {}}, {name: br, multus: {networkName: l2}}]",
    );
    let errs = errors(resolve(&p, &HostInputs::default(), &FakePod::default()));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].starts_with(
        "spec.domain.devices.interfaces[0]: \"a\" arrives on pod interface eth0, which this pod does not have"
    ), "{errs:#?}");
    assert!(
        errs[1].contains(&format!("net1 or {}", resolve::hashed_iface_name("br"))),
        "{errs:#?}"
    );
}

#[test]
fn multus_falls_back_to_the_hashed_name() {
    let p = vmi(
        "[{name: mvt, macvtap: {}}]",
        "[{name: mvt, multus: {networkName: m}}]",
    );
    let hashed = resolve::hashed_iface_name("mvt");
    let pod = FakePod::with_links(&[(hashed.as_str(), "aa:bb:cc:00:11:22")]);
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    assert_eq!(
        h.nics[0].backend,
        HostBackend::Macvtap {
            iface: hashed,
            set_link_mac: false
        }
    );
    // The guest takes the link's MAC when the spec gives none.
    assert_eq!(h.nics[0].guest_mac.to_string(), "aa:bb:cc:00:11:22");
}

#[test]
fn macvtap_with_a_spec_mac_gives_it_to_the_link() {
    let p = vmi(
        "[{name: m, macvtap: {}, macAddress: '02:00:00:00:00:09'}]",
        "[{name: m, multus: {networkName: m}}]",
    );
    let pod = FakePod::with_links(&[("net1", "aa:bb:cc:00:11:22")]);
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    assert_eq!(h.nics[0].guest_mac.to_string(), "02:00:00:00:00:09");
    assert!(matches!(
        h.nics[0].backend,
        HostBackend::Macvtap {
            set_link_mac: true,
            ..
        }
    ));
}

#[test]
fn tap_fds_are_checked_for_name_count_and_openness() {
    let p = vmi("[{name: a, masquerade: {}}]", "[{name: a, pod: {}}]");
    let pod = FakePod {
        open_fds: vec![5],
        ..FakePod::with_links(&[("eth0", "0a:58:0a:f4:00:05")])
    };
    let fds = [("a".to_string(), vec![5])];
    let h = resolve(
        &p,
        &HostInputs {
            tap_fds: &fds,
            ..Default::default()
        },
        &pod,
    )
    .unwrap();
    assert_eq!(h.nics[0].backend, HostBackend::TapFds { fds: vec![5] });
    let fds = [("b".to_string(), vec![9]), ("a".to_string(), vec![5, 6])];
    let errs = errors(resolve(
        &p,
        &HostInputs {
            tap_fds: &fds,
            ..Default::default()
        },
        &pod,
    ));
    assert_eq!(
        errs,
        [
            "--tap-fd: \"b\" is not an interface of the spec; use one of: a",
            "--tap-fd a: \"5,6\" gives 2 descriptors; interface a has 1 queue pairs, give one tap queue each",
        ]
    );
    let fds = [("a".to_string(), vec![7])];
    let errs = errors(resolve(
        &p,
        &HostInputs {
            tap_fds: &fds,
            ..Default::default()
        },
        &pod,
    ));
    assert_eq!(
        errs,
        ["--tap-fd a: \"7\" names descriptor 7, which is not open in petrel; pass it open to petrel"]
    );
}

#[test]
fn tap_fds_refuse_duplicates_and_descriptors_that_are_not_taps() {
    let p = vmi(
        "[{name: a, masquerade: {}}, {name: b, bridge: {}}]",
        "[{name: a, pod: {}}, {name: b, multus: {networkName: x}}]",
    );
    let pod = FakePod {
        open_fds: vec![5, 6, 8],
        not_taps: vec![8],
        ..FakePod::with_links(&[("eth0", "0a:58:0a:f4:00:05"), ("net1", "0a:58:0a:f4:00:06")])
    };
    let errs = errors(resolve(
        &p,
        &HostInputs {
            tap_fds: &[("a".to_string(), vec![5]), ("b".to_string(), vec![5])],
            ..Default::default()
        },
        &pod,
    ));
    assert_eq!(
        errs,
        ["--tap-fd b: \"5\" names descriptor 5, which --tap-fd a already uses; each queue pair needs its own tap queue"]
    );
    let errs = errors(resolve(
        &p,
        &HostInputs {
            tap_fds: &[("a".to_string(), vec![5]), ("a".to_string(), vec![6])],
            ..Default::default()
        },
        &pod,
    ));
    assert_eq!(
        errs,
        ["--tap-fd a: \"a\" is given twice; give all of its descriptors at once: --tap-fd a=FD[,FD...]"]
    );
    let errs = errors(resolve(
        &p,
        &HostInputs {
            tap_fds: &[("a".to_string(), vec![8]), ("b".to_string(), vec![6])],
            ..Default::default()
        },
        &pod,
    ));
    assert_eq!(
        errs,
        ["--tap-fd a: \"8\" names descriptor 8, which is not a tap (TUNGETIFF: Inappropriate ioctl for device); pass a tap queue opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR"]
    );
}

#[test]
fn sriov_errors_land_on_their_interface() {
    let p = vmi(
        "[{name: s1, sriov: {}}, {name: s2, sriov: {}}]",
        "[{name: s1, multus: {networkName: n1}}, {name: s2, multus: {networkName: n2}}]",
    );
    let pod = FakePod {
        vf_errors: vec![
            "network s2: resource r was not allocated".into(),
            "something else".into(),
        ],
        ..Default::default()
    };
    let errs = errors(resolve(&p, &HostInputs::default(), &pod));
    assert!(
        errs.contains(
            &"spec.domain.devices.interfaces[1].sriov: network s2: resource r was not allocated"
                .to_string()
        ),
        "{errs:#?}"
    );
    assert!(
        errs.contains(&"SR-IOV: something else".to_string()),
        "{errs:#?}"
    );
}

#[test]
fn host_plan_serializes_with_typed_backends() {
    let p = vmi("[{name: a, bridge: {}}]", "[{name: a, pod: {}}]");
    let pod = FakePod::with_links(&[("eth0", "0a:58:0a:f4:00:05")]);
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    let json = serde_json::to_value(&h).unwrap();
    assert_eq!(json["nics"][0]["backend"]["type"], "pod");
    assert_eq!(json["nics"][0]["backend"]["pod_iface"], "eth0");
    assert_eq!(json["nics"][0]["backend"]["ipv4"], serde_json::Value::Null);
}

#[test]
fn kubevirt_hashed_interface_names() {
    // sha256("mvt") = e32c04ddf04…, as KubeVirt's namescheme computes it
    assert_eq!(resolve::hashed_iface_name("mvt"), "pode32c04ddf04");
    assert_eq!(resolve::hashed_iface_name("br2"), "pod6c87f847df0");
    assert!(resolve::hashed_iface_name("a-very-long-network-name").len() <= 15);
}

fn pod_of(h: &HostPlan, i: usize) -> &PodPlan {
    match &h.nics[i].backend {
        HostBackend::Pod(p) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn bridge_without_mac_delegates_the_pod_mac() {
    let pod = FakePod::with_links(&[("eth0", "0a:58:0a:f4:00:05"), ("net1", "0a:58:0a:01:00:07")]);
    let p = vmi(
        "[{name: a, bridge: {}, ports: [{port: 80}]}, {name: b, bridge: {}}]",
        "[{name: a, pod: {}}, {name: b, multus: {networkName: x}}]",
    );
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    assert_eq!(h.nics[0].guest_mac.to_string(), "0a:58:0a:f4:00:05");
    assert!(pod_of(&h, 0).delegate_mac);
    // Bridge ports are informational: nothing forwards them.
    assert!(pod_of(&h, 0).ports.is_empty());
    assert_eq!(h.nics[1].guest_mac.to_string(), "0a:58:0a:01:00:07");
    assert!(h
        .to_text()
        .contains("the guest takes eth0's MAC (the pod interface gets another)"));

    // A spec MAC is kept; masquerade never delegates.
    let p = vmi(
        "[{name: a, bridge: {}, macAddress: \"02:00:00:00:00:01\"}]",
        "[{name: a, pod: {}}]",
    );
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    assert_eq!(h.nics[0].guest_mac.to_string(), "02:00:00:00:00:01");
    assert!(!pod_of(&h, 0).delegate_mac);
    let p = vmi("[{name: a, masquerade: {}}]", "[{name: a, pod: {}}]");
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    assert_eq!(h.nics[0].guest_mac, p.nics[0].mac);
    assert!(!pod_of(&h, 0).delegate_mac);

    // Virtink: no binding is bridge, and bridge delegates.
    let vk = plan_of(
        "apiVersion: virt.virtink.smartx.com/v1alpha1\nkind: VirtualMachine\nmetadata: {name: vk}\n\
         spec:\n  instance:\n    interfaces: [{name: pod}]\n  networks: [{name: pod, pod: {}}]\n",
    );
    let h = resolve(&vk, &HostInputs::default(), &pod).unwrap();
    assert_eq!(h.nics[0].guest_mac.to_string(), "0a:58:0a:f4:00:05");

    // A pod interface whose MAC cannot be a guest's is refused.
    let bad = FakePod::with_links(&[("eth0", "00:00:00:00:00:00")]);
    let p = vmi("[{name: a, bridge: {}}]", "[{name: a, pod: {}}]");
    assert_eq!(
        errors(resolve(&p, &HostInputs::default(), &bad)),
        ["spec.domain.devices.interfaces[0]: \"a\" pod interface eth0 has MAC 00:00:00:00:00:00, \
          which a guest cannot use; set macAddress on the interface"]
    );
}

#[test]
fn resource_network_maps_through_the_device_plugin_variable() {
    let p = vmi(
        "[{name: red, bridge: {}}]",
        "[{name: red, resource: {resourceName: bridge.network.kubevirt.io/red}}]",
    );
    let mut pod = FakePod::with_links(&[("eth-red01", "02:11:22:33:44:55")]);
    let missing = errors(resolve(&p, &HostInputs::default(), &pod));
    assert_eq!(
        missing,
        [
            "spec.networks[0].resource: \"bridge.network.kubevirt.io/red\" has no device plugin \
          interface: no NETWORK_INTERFACE_RESOURCES_* variable names this resource (there are \
          none); the pod must request the resource so its device plugin sets one"
        ]
    );
    pod.resources = vec![(
        "NETWORK_INTERFACE_RESOURCES_RED".into(),
        r#"{"name": "bridge.network.kubevirt.io/red", "interfaces": [{"name": "eth-red01", "protocol": "Ethernet"}, {"name": "eth-red02", "protocol": "Ethernet"}]}"#.into(),
    )];
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    let pp = pod_of(&h, 0);
    assert_eq!(pp.pod_iface, "eth-red01");
    // Ethernet: bridged without delegating the MAC.
    assert!(!pp.delegate_mac);
    assert_eq!(h.nics[0].guest_mac, p.nics[0].mac);
}

#[test]
fn passt_copies_the_pod_interface_and_maps_ports() {
    let p = vmi(
        "[{name: a, passtBinding: {}, ports: [{port: 80}, {port: 53, protocol: UDP}]}]",
        "[{name: a, pod: {}}]",
    );
    let mut pod = FakePod::with_links(&[("eth0", "0a:58:0a:f4:00:05")]);
    pod.addrs.insert(
        "eth0".into(),
        PodAddrs {
            ipv4: Some((Ipv4Addr::new(10, 244, 0, 5), 24)),
            gateway4: Some(Ipv4Addr::new(10, 244, 0, 1)),
            mtu: 1450,
        },
    );
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    let HostBackend::Passt(pp) = &h.nics[0].backend else {
        panic!("{h:?}")
    };
    assert_eq!(pp.pod_iface, "eth0");
    assert_eq!(pp.mtu, 1450);
    assert_eq!(pp.gateway, Some(Ipv4Addr::new(10, 244, 0, 1)));
    assert_eq!(
        pp.args.join(" "),
        "--foreground --quiet --stderr --interface eth0 --mtu 1450 --address 10.244.0.5 \
         --netmask 24 --gateway 10.244.0.1 --tcp-ports 80 --udp-ports 53 --no-map-gw --ipv4-only"
    );
    let text = h.to_text();
    assert!(
        text.contains("passt binding on eth0 through /usr/bin/passt, guest 10.244.0.5/24 via 10.244.0.1, MTU 1450, ports 80/TCP 53/UDP"),
        "{text}"
    );
}

#[test]
fn slirp_gets_slirps_addresses() {
    let p = vmi("[{name: a, slirp: {}}]", "[{name: a, pod: {}}]");
    let mut pod = FakePod::with_links(&[("eth0", "0a:58:0a:f4:00:05")]);
    pod.addrs.insert(
        "eth0".into(),
        PodAddrs {
            ipv4: Some((Ipv4Addr::new(10, 244, 0, 5), 24)),
            gateway4: None,
            mtu: 1500,
        },
    );
    pod.ipv6.push("eth0".into());
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    let HostBackend::Passt(pp) = &h.nics[0].backend else {
        panic!("{h:?}")
    };
    let args = pp.args.join(" ");
    assert!(
        args.contains("--address 10.0.2.15 --netmask 24 --gateway 10.0.2.2 --dns-forward 10.0.2.3 --tcp-ports all --udp-ports all --ipv4-only"),
        "{args}"
    );
    assert!(!pp.ipv6);
}

#[test]
fn passt_refuses_a_pod_without_address_or_passt() {
    let p = vmi("[{name: a, passt: {}}]", "[{name: a, pod: {}}]");
    let mut pod = FakePod::with_links(&[("eth0", "0a:58:0a:f4:00:05")]);
    let errs = errors(resolve(&p, &HostInputs::default(), &pod));
    assert!(
        errs[0].contains("needs an address on pod interface eth0, which has none"),
        "{errs:?}"
    );
    pod.no_passt = true;
    let errs = errors(resolve(&p, &HostInputs::default(), &pod));
    assert!(
        errs[0].contains("needs the passt program, which is not on PATH; install passt"),
        "{errs:?}"
    );
    let errs = errors(resolve(&p, &HostInputs::default(), &FakePod::default()));
    assert!(
        errs[0].contains("arrives on pod interface eth0, which this pod does not have"),
        "{errs:?}"
    );
}

#[test]
fn forwarding_every_port_needs_the_descriptors_for_it() {
    let p = vmi("[{name: a, passt: {}}]", "[{name: a, pod: {}}]");
    let mut pod = FakePod::with_links(&[("eth0", "0a:58:0a:f4:00:05")]);
    pod.addrs.insert(
        "eth0".into(),
        PodAddrs {
            ipv4: Some((Ipv4Addr::new(10, 244, 0, 5), 24)),
            gateway4: None,
            mtu: 1500,
        },
    );
    pod.nofile = Some(20_000);
    let errs = errors(resolve(&p, &HostInputs::default(), &pod));
    assert!(
        errs[0].contains(
            "lists no ports, so passt forwards every port and needs 75630 descriptors, but \
             RLIMIT_NOFILE is 20000"
        ),
        "{errs:?}"
    );
    // Listing the ports needs no more than a handful.
    let listed = vmi(
        "[{name: a, passt: {}, ports: [{port: 80}]}]",
        "[{name: a, pod: {}}]",
    );
    resolve(&listed, &HostInputs::default(), &pod).unwrap();
}

#[test]
fn passt_on_a_multus_network_uses_its_interface() {
    // DCE5 with ipvlan: one passt per pod interface.
    let p = vmi(
        "[{name: a, passt: {}, ports: [{port: 22}]}, {name: b, binding: {name: passt}}]",
        "[{name: a, pod: {}}, {name: b, multus: {networkName: ipvlan-b}}]",
    );
    let mut pod =
        FakePod::with_links(&[("eth0", "0a:58:0a:f4:00:05"), ("net1", "0a:58:0a:f4:01:05")]);
    for (iface, last) in [("eth0", 5), ("net1", 6)] {
        pod.addrs.insert(
            iface.into(),
            PodAddrs {
                ipv4: Some((Ipv4Addr::new(10, 6, 0, last), 24)),
                gateway4: Some(Ipv4Addr::new(10, 6, 0, 1)),
                mtu: 1500,
            },
        );
    }
    let h = resolve(&p, &HostInputs::default(), &pod).unwrap();
    let ifaces: Vec<(&str, String)> = h
        .nics
        .iter()
        .map(|n| match &n.backend {
            HostBackend::Passt(pp) => (pp.pod_iface.as_str(), pp.args.join(" ")),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ifaces[0].0, "eth0");
    assert_eq!(ifaces[1].0, "net1");
    assert!(
        ifaces[1].1.contains("--interface net1") && ifaces[1].1.contains("--address 10.6.0.6"),
        "{}",
        ifaces[1].1
    );
    assert_eq!(p.nics[1].queue_pairs, 1);
}
