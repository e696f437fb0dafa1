//! Plan tests: seed examples resolved, every validation rule good and bad.

use std::path::PathBuf;

use super::*;
use crate::spec::{parse_str, SpecKind};

fn plan_of(yaml: &str) -> VmPlan {
    let spec = parse_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    resolve(&spec, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn errors_of(yaml: &str) -> Vec<String> {
    let spec = parse_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    match resolve(&spec, &Overrides::default()) {
        Ok(p) => panic!("expected errors, got plan:\n{}", p.to_text()),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// What the spec means upstream, for features petrel refuses to build yet.
fn meaning_of(yaml: &str) -> VmPlan {
    let spec = parse_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    resolve_meaning(&spec, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn fixture_plan(name: &str) -> VmPlan {
    let spec = crate::spec::tests::fixture(name);
    resolve(&spec, &Overrides::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A KubeVirt VMI named vm1 with the given flow-style interfaces and networks.
fn vmi(interfaces: &str, networks: &str) -> String {
    vmi_with(interfaces, networks, "")
}

fn vmi_with(interfaces: &str, networks: &str, devices_extra: &str) -> String {
    format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: vm1}}\n\
         spec:\n  domain:\n    cpu: {{cores: 2}}\n    memory: {{guest: 256Mi}}\n    devices:\n      \
         interfaces: {interfaces}\n{devices_extra}  networks: {networks}\n"
    )
}

/// A Virtink VM named vk with the given flow-style interfaces and networks.
fn virtink(interfaces: &str, networks: &str) -> String {
    format!(
        "apiVersion: virt.virtink.smartx.com/v1alpha1\nkind: VirtualMachine\nmetadata: {{name: vk}}\n\
         spec:\n  instance:\n    memory: {{size: 256Mi}}\n    interfaces: {interfaces}\n  networks: {networks}\n"
    )
}

fn assert_error(errors: &[String], expected_start: &str) {
    assert!(
        errors.iter().any(|e| e.starts_with(expected_start)),
        "no error starting with {expected_start:?} in {errors:#?}"
    );
}

const POD: &str = "[{name: a, pod: {}}]";

// ---- seed examples -------------------------------------------------------

#[test]
fn every_seed_example_resolves_or_reports() {
    for (name, _) in crate::spec::tests::FIXTURES {
        let spec = crate::spec::tests::fixture(name);
        let result = resolve(&spec, &Overrides::default());
        if *name == "kubevirt_bridge_e1000_ports.yaml" {
            // KubeVirt allows ports on a bridge: they are informational.
            let plan = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(plan.nics[0].ports.len(), 1);
            assert!(plan.warnings.iter().any(|w| w.starts_with(
                "spec.domain.devices.interfaces[0].ports: informational with bridge binding"
            )));
        } else if *name == "kubevirt_genie.yaml" {
            let e = result.unwrap_err().to_string();
            assert!(
                e.contains("is a genie network, which petrel does not support"),
                "{e}"
            );
        } else {
            let plan = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!plan.to_text().is_empty());
        }
    }
}

#[test]
fn seed_virtink_masquerade_gets_default_cidr() {
    let p = fixture_plan("virtink_masquerade.yaml");
    let nic = &p.nics[0];
    assert_eq!(p.kind, SpecKind::Virtink);
    assert_eq!(nic.binding, Binding::Masquerade);
    assert_eq!(
        nic.network,
        NetworkPlan::Pod {
            ipv4_cidr: Some(Ipv4Cidr::parse("10.0.2.0/30").unwrap()),
            ipv6_cidr: None
        }
    );
    assert_eq!(
        nic.backend,
        Backend::Tap {
            name: "tap-pod".into()
        }
    );
    assert_eq!(nic.pci_address.to_string(), "0000:00:02.0");
    assert_eq!(nic.model, NicModel::VirtioNet);
}

#[test]
fn seed_virtink_sriov_takes_resource_from_nad() {
    let p = fixture_plan("virtink_sriov.yaml");
    let nic = &p.nics[0];
    assert_eq!(nic.binding, Binding::Sriov);
    assert_eq!(
        nic.backend,
        Backend::Vfio {
            resource: Some("intel.com/mellanox_SRIOV_25G".into())
        }
    );
    assert_eq!(
        nic.network,
        NetworkPlan::Multus {
            network_name: "mellanox-sriov-25g".into(),
            default: false,
            pod_iface: "net1".into()
        }
    );
    let p = fixture_plan("kubevirt_sriov.yaml");
    assert_eq!(p.nics[0].backend, Backend::Vfio { resource: None });
}

#[test]
fn seed_kubevirt_pod_masquerade_gets_default_cidrs() {
    let p = fixture_plan("kubevirt_pod_default_masquerade.yaml");
    assert_eq!(
        p.nics[0].network,
        NetworkPlan::Pod {
            ipv4_cidr: Some(Ipv4Cidr::parse("10.0.2.0/24").unwrap()),
            ipv6_cidr: Some(Ipv6Cidr::parse("fd10:0:2::/120").unwrap())
        }
    );
    assert_eq!(p.memory_bytes, 128 << 20);
    assert!(p
        .warnings
        .contains(&"spec.domain.memory.guest: missing; using 128Mi".to_string()));
}

#[test]
fn seed_kubevirt_pxe_and_multus() {
    let p = fixture_plan("kubevirt_multus_ovs_pxe.yaml");
    let (d, o) = (&p.nics[0], &p.nics[1]);
    assert_eq!(d.boot_order, Some(1));
    assert_eq!(d.dhcp.boot_file_name.as_deref(), Some("default_image.bin"));
    assert_eq!(d.dhcp.tftp_server_name.as_deref(), Some("tftp.example.com"));
    assert_eq!(o.boot_order, Some(2));
    assert_eq!(
        o.network,
        NetworkPlan::Multus {
            network_name: "ovs-vlan-100".into(),
            default: false,
            pod_iface: "net1".into()
        }
    );
    assert_eq!(
        o.backend,
        Backend::Tap {
            name: "tap-ovs-net".into()
        }
    );
    assert_eq!(o.pci_address.to_string(), "0000:00:03.0");
}

#[test]
fn seed_kubevirt_e1000_mac_genie_resource() {
    let p = fixture_plan("kubevirt_pod_red_e1000_mac.yaml");
    assert_eq!(p.nics[0].mac.to_string(), "de:ad:00:00:be:af");
    assert_eq!(p.nics[0].model, NicModel::E1000);
    assert_eq!(p.name, "vm");

    let g = crate::spec::tests::fixture("kubevirt_genie.yaml");
    let g = resolve_meaning(&g, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
    let ifaces: Vec<_> = g
        .nics
        .iter()
        .map(|n| match &n.network {
            NetworkPlan::Genie { pod_iface, .. } => pod_iface.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ifaces, ["eth0", "eth1"]);

    let r = fixture_plan("kubevirt_resource_network.yaml");
    assert_eq!(
        r.nics[0].network,
        NetworkPlan::Resource {
            resource_name: "bridge.network.kubevirt.io/red".into(),
            pod_iface: "net-red".into()
        }
    );
}

#[test]
fn seed_multus_default_and_vendor_scenarios() {
    let p = fixture_plan("kubevirt_multus_default.yaml");
    assert_eq!(
        p.nics[0].network,
        NetworkPlan::Multus {
            network_name: "macvlan-test".into(),
            default: true,
            pod_iface: "eth0".into()
        }
    );
    let spec = crate::spec::tests::fixture("vendor_passt_macvlan.yaml");
    let passt = resolve_meaning(&spec, &Overrides::default()).unwrap();
    assert_eq!(passt.kind, SpecKind::KubeVirtVm);
    assert_eq!(passt.nics[0].binding, Binding::Passt);
    assert_eq!(passt.nics[0].backend, Backend::Userspace);
    assert_eq!(passt.memory_bytes, 1 << 30);
    let ovs = fixture_plan("vendor_bridge_ovs_multi_nic.yaml");
    let pod_ifaces: Vec<_> = ovs
        .nics
        .iter()
        .map(|n| match &n.network {
            NetworkPlan::Multus { pod_iface, .. } => pod_iface.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(pod_ifaces, ["eth0", "net1"]);
    let nat = fixture_plan("vendor_masquerade_eth0.yaml");
    assert_eq!((nat.vcpus, nat.memory_bytes), (2, 2 << 30));
}

#[test]
fn seed_autoattach_false_has_no_nics() {
    let p = fixture_plan("kubevirt_autoattach_false.yaml");
    assert!(p.nics.is_empty());
    assert!(!p.warnings.iter().any(|w| w.contains("added interface")));
}

#[test]
fn seed_multiqueue_adds_default_interface_with_queues() {
    let p = fixture_plan("kubevirt_multiqueue.yaml");
    assert_eq!(p.vcpus, 4);
    let nic = &p.nics[0];
    assert_eq!(nic.name, "default");
    assert_eq!(nic.binding, Binding::Bridge);
    assert_eq!(
        nic.network,
        NetworkPlan::Pod {
            ipv4_cidr: None,
            ipv6_cidr: None
        }
    );
    assert_eq!(nic.queue_pairs, 4);
    assert!(p.warnings.iter().any(|w| w.starts_with(
        "spec.domain.devices.interfaces: absent; added interface \"default\" with bridge binding"
    )));
}

// ---- defaults and allocation ---------------------------------------------

#[test]
fn default_interface_only_when_no_networks() {
    let p = plan_of(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: d}\nspec: {domain: {}}\n",
    );
    assert_eq!(p.nics.len(), 1);
    assert_eq!(
        p.nics[0].backend,
        Backend::Tap {
            name: "tap-default".into()
        }
    );
    // Networks but no interfaces: KubeVirt adds nothing, the network is unmatched.
    let errs = errors_of(&vmi("[]", POD));
    assert_error(
        &errs,
        "spec.networks[0].name: \"a\" has no interface with the same name",
    );
    // Virtink never adds one.
    assert!(plan_of(&virtink("[]", "[]")).nics.is_empty());
}

#[test]
fn mac_generation_is_stable_and_local() {
    let yaml = vmi(
        "[{name: a, bridge: {}}, {name: b, bridge: {}}]",
        "[{name: a, pod: {}}, {name: b, multus: {networkName: n}}]",
    );
    let p1 = plan_of(&yaml);
    let p2 = plan_of(&yaml);
    assert_eq!(p1.nics[0].mac, p2.nics[0].mac);
    assert_ne!(p1.nics[0].mac, p1.nics[1].mac);
    for n in &p1.nics {
        assert_eq!(n.mac.0[0], 0x02);
        assert_eq!(n.mac, generate_mac("vm1", &n.name, 0));
    }
    let other = plan_of(&yaml.replace("name: vm1", "name: vm2"));
    assert_ne!(p1.nics[0].mac, other.nics[0].mac);
}

#[test]
fn generated_mac_steps_around_explicit_one() {
    let taken = generate_mac("vm1", "b", 0).to_string();
    let p = plan_of(&vmi(
        &format!("[{{name: a, bridge: {{}}, macAddress: \"{taken}\"}}, {{name: b, bridge: {{}}}}]"),
        "[{name: a, pod: {}}, {name: b, multus: {networkName: n}}]",
    ));
    assert_eq!(p.nics[0].mac.to_string(), taken);
    assert_eq!(p.nics[1].mac, generate_mac("vm1", "b", 1));
}

#[test]
fn pci_slots_honour_explicit_addresses() {
    let p = plan_of(&vmi(
        "[{name: a, bridge: {}}, {name: b, bridge: {}, pciAddress: '0000:00:02.0'}, \
          {name: c, bridge: {}}, {name: d, bridge: {}, pciAddress: '0000:00:04.0'}, {name: e, bridge: {}}]",
        "[{name: a, pod: {}}, {name: b, multus: {networkName: b}}, {name: c, multus: {networkName: c}}, \
          {name: d, multus: {networkName: d}}, {name: e, multus: {networkName: e}}]",
    ));
    let addrs: Vec<String> = p.nics.iter().map(|n| n.pci_address.to_string()).collect();
    assert_eq!(
        addrs,
        [
            "0000:00:03.0",
            "0000:00:02.0",
            "0000:00:05.0",
            "0000:00:04.0",
            "0000:00:06.0"
        ]
    );
}

#[test]
fn pci_address_rules() {
    let nets = "[{name: a, pod: {}}, {name: b, multus: {networkName: b}}]";
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}, pciAddress: '0000:00:20.0'}, {name: b, bridge: {}, pciAddress: '0:0:3.0'}]",
        nets,
    ));
    assert_error(
        &errs,
        "spec.domain.devices.interfaces[0].pciAddress: \"0000:00:20.0\" is not a PCI address; use dddd:bb:dd.f",
    );
    assert_error(
        &errs,
        "spec.domain.devices.interfaces[1].pciAddress: \"0:0:3.0\" is not a PCI address",
    );
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}, pciAddress: '0000:00:05.0'}, {name: b, bridge: {}, pciAddress: '0000:00:05.0'}]",
        nets,
    ));
    assert_eq!(
        errs,
        [
            "spec.domain.devices.interfaces[1].pciAddress: \"0000:00:05.0\" is used twice \
          (also spec.domain.devices.interfaces[0].pciAddress); PCI addresses must be unique"
        ]
    );
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}, pciAddress: '0000:00:00.0'}]",
        POD,
    ));
    assert_error(
        &errs,
        "spec.domain.devices.interfaces[0].pciAddress: \"0000:00:00.0\" is the host bridge slot",
    );
    for addr in ["0000:81:00.0", "0000:00:03.1", "0001:00:03.0"] {
        let errs = errors_of(&vmi(
            &format!("[{{name: a, bridge: {{}}, pciAddress: '{addr}'}}]"),
            POD,
        ));
        assert_eq!(
            errs,
            [format!(
                "spec.domain.devices.interfaces[0].pciAddress: \"{addr}\" is not on petrel's PCI \
                 bus; petrel has one bus and puts each NIC at function 0: use 0000:00:dd.0 with dd \
                 from 01 to 1f"
            )]
        );
    }
}

#[test]
fn queue_pairs_follow_multiqueue_and_model() {
    let mq = "      networkInterfaceMultiqueue: true\n";
    let nets = "[{name: a, pod: {}}, {name: b, multus: {networkName: b}}]";
    let p = plan_of(&vmi_with(
        "[{name: a, bridge: {}}, {name: b, bridge: {}, model: e1000}]",
        nets,
        mq,
    ));
    assert_eq!(p.vcpus, 2);
    assert_eq!((p.nics[0].queue_pairs, p.nics[1].queue_pairs), (2, 1));
    let p = plan_of(&vmi("[{name: a, bridge: {}}]", POD));
    assert_eq!(p.nics[0].queue_pairs, 1);
}

#[test]
fn multus_pod_ifaces_follow_network_order() {
    let p = plan_of(&vmi(
        "[{name: c, bridge: {}}, {name: a, masquerade: {}}, {name: b, bridge: {}}]",
        "[{name: a, pod: {}}, {name: b, multus: {networkName: nb}}, {name: c, multus: {networkName: ns/nc}}]",
    ));
    let ifaces: Vec<(&str, String)> = p
        .nics
        .iter()
        .map(|n| {
            let i = match &n.network {
                NetworkPlan::Pod { .. } => "eth0".to_string(),
                NetworkPlan::Multus { pod_iface, .. } => pod_iface.clone(),
                other => panic!("{other:?}"),
            };
            (n.name.as_str(), i)
        })
        .collect();
    assert_eq!(
        ifaces,
        [
            ("c", "net2".into()),
            ("a", "eth0".into()),
            ("b", "net1".into())
        ]
    );
}

// ---- interfaces and networks ---------------------------------------------

#[test]
fn interfaces_and_networks_pair_by_name() {
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}}, {name: b, bridge: {}}]",
        "[{name: a, pod: {}}, {name: c, multus: {networkName: c}}]",
    ));
    assert_error(&errs, "spec.domain.devices.interfaces[1].name: \"b\" has no network with the same name in spec.networks");
    assert_error(&errs, "spec.networks[1].name: \"c\" has no interface with the same name in spec.domain.devices.interfaces");
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}}, {name: a, bridge: {}}]",
        "[{name: a, pod: {}}, {name: a, pod: {}}]",
    ));
    assert_error(&errs, "spec.domain.devices.interfaces[1].name: \"a\" is used by two interfaces (also spec.domain.devices.interfaces[0].name)");
    assert_error(
        &errs,
        "spec.networks[1].name: \"a\" is used by two networks",
    );
    let errs = errors_of(&virtink("[{name: x, bridge: {}}]", "[{name: y, pod: {}}]"));
    assert_error(&errs, "spec.instance.interfaces[0].name: \"x\" has no network with the same name in spec.networks");
}

#[test]
fn at_most_one_pod_network() {
    let ifaces = "[{name: a, bridge: {}}, {name: b, bridge: {}}]";
    let errs = errors_of(&vmi(ifaces, "[{name: a, pod: {}}, {name: b, pod: {}}]"));
    assert_error(&errs, "spec.networks[1].pod: makes network \"b\" a second pod network (spec.networks[0] already is one)");
    let errs = errors_of(&vmi(
        ifaces,
        "[{name: a, pod: {}}, {name: b, multus: {networkName: n, default: true}}]",
    ));
    assert_error(
        &errs,
        "spec.networks[1].multus: makes network \"b\" a second pod network",
    );
    plan_of(&vmi(
        ifaces,
        "[{name: a, pod: {}}, {name: b, multus: {networkName: n}}]",
    ));
}

#[test]
fn network_needs_exactly_one_source() {
    let errs = errors_of(&vmi("[{name: a, bridge: {}}]", "[{name: a}]"));
    assert_eq!(
        errs,
        ["spec.networks[0]: network \"a\" has no source; set exactly one of pod, multus, genie, resource"]
    );
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}}]",
        "[{name: a, pod: {}, multus: {networkName: x}}]",
    ));
    assert_error(
        &errs,
        "spec.networks[0].multus: is a second source for network \"a\" (it already has pod)",
    );
    let errs = errors_of(&vmi("[{name: a, bridge: {}}]", "[{name: a, multus: {}}]"));
    assert_error(&errs, "spec.networks[0].multus.networkName: is missing");
}

#[test]
fn interface_needs_exactly_one_binding() {
    let errs = errors_of(&vmi("[{name: a}]", POD));
    assert_eq!(
        errs,
        ["spec.domain.devices.interfaces[0]: interface \"a\" has no binding; set exactly one of \
          bridge, masquerade, slirp, sriov, macvtap, passt"]
    );
    let errs = errors_of(&vmi("[{name: a, bridge: {}, masquerade: {}}]", POD));
    assert_error(&errs, "spec.domain.devices.interfaces[0].masquerade: is a second binding for interface \"a\" (it already has bridge)");
    let errs = errors_of(&vmi("[{name: a, binding: {name: sidecar}}]", POD));
    assert_error(&errs, "spec.domain.devices.interfaces[0].binding.name: \"sidecar\" is not a network binding petrel implements");
    let p = meaning_of(&vmi("[{name: a, binding: {name: passt}}]", POD));
    assert_eq!(p.nics[0].binding, Binding::Passt);
    // passt and slirp plan: one queue pair even with multiqueue (one
    // socket per passt).
    let mq = plan_of(&format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: vm1}}\n\
         spec:\n  domain:\n    cpu: {{cores: 2}}\n    devices:\n      networkInterfaceMultiqueue: true\n      \
         interfaces: [{{name: a, binding: {{name: passt}}}}]\n  networks: {POD}\n"
    ));
    assert_eq!(mq.nics[0].backend, Backend::Userspace);
    assert_eq!(mq.nics[0].queue_pairs, 1);
}

#[test]
fn binding_network_rules() {
    let multus = "[{name: a, multus: {networkName: n}}]";
    let cases = [
        ("sriov", POD, Some("spec.domain.devices.interfaces[0].sriov: \"a\" is the pod network (spec.networks[0]); sriov binding needs a multus network")),
        ("macvtap", POD, Some("spec.domain.devices.interfaces[0].macvtap: \"a\" is the pod network (spec.networks[0]); macvtap binding needs a multus network")),
        ("masquerade", multus, Some("spec.domain.devices.interfaces[0].masquerade: \"a\" is a multus network (spec.networks[0]); masquerade binding needs the pod network")),
        ("slirp", multus, Some("spec.domain.devices.interfaces[0].slirp: \"a\" is a multus network")),
        ("passt", "[{name: a, genie: {networkName: g}}]", Some("spec.domain.devices.interfaces[0].passt: \"a\" is a genie network (spec.networks[0]); passt binding needs the pod network or a multus network")),
        ("passt", multus, None),
        ("sriov", "[{name: a, genie: {networkName: g}}]", Some("spec.domain.devices.interfaces[0].sriov: \"a\" is a genie network")),
        ("masquerade", "[{name: a, resource: {resourceName: r/x}}]", Some("spec.domain.devices.interfaces[0].masquerade: \"a\" is a resource network")),
        ("bridge", POD, None),
        ("bridge", multus, None),
        ("sriov", multus, None),
        ("macvtap", multus, None),
        ("masquerade", POD, None),
        ("slirp", POD, None),
        ("passt", POD, None),
        ("masquerade", "[{name: a, multus: {networkName: n, default: true}}]", None),
    ];
    for (binding, nets, expected) in cases {
        let yaml = vmi(&format!("[{{name: a, {binding}: {{}}}}]"), nets);
        match expected {
            Some(e) => assert_error(&errors_of(&yaml), e),
            None => {
                meaning_of(&yaml);
            }
        }
    }
    let p = plan_of(&vmi("[{name: a, macvtap: {}}]", multus));
    assert_eq!(
        p.nics[0].backend,
        Backend::Macvtap {
            iface: "net1".into()
        }
    );
    let errs = errors_of(&virtink("[{name: a, sriov: {}}]", "[{name: a, pod: {}}]"));
    assert_error(
        &errs,
        "spec.instance.interfaces[0].sriov: \"a\" is the pod network",
    );
}

#[test]
fn mac_rules() {
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}, macAddress: '01:00:5e:00:00:01'}]",
        POD,
    ));
    assert_eq!(
        errs,
        ["spec.domain.devices.interfaces[0].macAddress: \"01:00:5e:00:00:01\" is a multicast address; \
          use a unicast MAC such as 02:00:00:00:00:01"]
    );
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}, macAddress: 'de:ad:be:ef'}]",
        POD,
    ));
    assert_error(
        &errs,
        "spec.domain.devices.interfaces[0].macAddress: \"de:ad:be:ef\" is not a MAC address",
    );
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}, macAddress: '00:00:00:00:00:00'}]",
        POD,
    ));
    assert_error(&errs, "spec.domain.devices.interfaces[0].macAddress: \"00:00:00:00:00:00\" is the all-zero address");
    let errs = errors_of(&virtink(
        "[{name: a, bridge: {}, mac: 'FF-FF-FF-FF-FF-FF'}]",
        POD,
    ));
    assert_error(
        &errs,
        "spec.instance.interfaces[0].mac: \"FF-FF-FF-FF-FF-FF\" is a multicast address",
    );
    let p = plan_of(&virtink(
        "[{name: a, bridge: {}, mac: 'DE-AD-00-00-BE-AF'}]",
        POD,
    ));
    assert_eq!(p.nics[0].mac.to_string(), "de:ad:00:00:be:af");
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}, macAddress: '02:00:00:00:00:01'}, {name: b, bridge: {}, macAddress: '02-00-00-00-00-01'}]",
        "[{name: a, pod: {}}, {name: b, multus: {networkName: b}}]",
    ));
    assert_error(
        &errs,
        "spec.domain.devices.interfaces[1].macAddress: \"02-00-00-00-00-01\" is used twice",
    );
}

#[test]
fn port_rules() {
    let p = plan_of(&vmi(
        "[{name: a, masquerade: {}, ports: [{name: http, port: 80}, {port: 53, protocol: udp}]}]",
        POD,
    ));
    assert_eq!(
        p.nics[0].ports,
        [
            PortPlan {
                name: Some("http".into()),
                port: 80,
                protocol: Protocol::Tcp
            },
            PortPlan {
                name: None,
                port: 53,
                protocol: Protocol::Udp
            },
        ]
    );
    meaning_of(&vmi(
        "[{name: a, slirp: {}, ports: [{port: 22, protocol: TCP}]}]",
        POD,
    ));
    let errs = errors_of(&vmi(
        "[{name: a, masquerade: {}, ports: [{name: x, port: 0}, {name: x, port: 65536}, {protocol: SCTP, port: 1}, {name: y}]}]",
        POD,
    ));
    let p = "spec.domain.devices.interfaces[0].ports";
    assert_error(
        &errs,
        &format!("{p}[0].port: \"0\" is out of range; use 1-65535"),
    );
    assert_error(&errs, &format!("{p}[1].port: \"65536\" is out of range"));
    assert_error(
        &errs,
        &format!("{p}[1].name: \"x\" is used by two ports (also {p}[0].name)"),
    );
    assert_error(
        &errs,
        &format!("{p}[2].protocol: \"SCTP\" is not a supported protocol; use TCP or UDP"),
    );
    assert_error(&errs, &format!("{p}[3].port: is missing; use 1-65535"));
    assert_eq!(errs.len(), 5, "{errs:#?}");
    // Bridge on the pod network: KubeVirt allows ports, informational.
    let b = plan_of(&vmi("[{name: a, bridge: {}, ports: [{port: 80}]}]", POD));
    assert_eq!(b.nics[0].ports.len(), 1);
    assert!(b
        .warnings
        .iter()
        .any(|w| w.starts_with(&format!("{p}: informational with bridge binding"))));
    // passt forwards the listed ports.
    let passt = meaning_of(&vmi(
        "[{name: a, passtBinding: {}, ports: [{port: 80}]}]",
        POD,
    ));
    assert_eq!(passt.nics[0].binding, Binding::Passt);
    assert_eq!(passt.nics[0].ports[0].port, 80);
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}, ports: [{port: 80}]}]",
        "[{name: a, multus: {networkName: br}}]",
    ));
    assert_eq!(
        errs,
        [format!(
            "{p}: are only allowed on the pod network with bridge, masquerade, slirp or passt \
             binding; interface \"a\" uses bridge on a secondary network"
        )]
    );
    let errs = errors_of(&vmi(
        "[{name: a, masquerade: {}, portRanges: [{start: 8000, end: 8080}]}]",
        POD,
    ));
    assert_error(
        &errs,
        "spec.domain.devices.interfaces[0].portRanges: \"[{\\\"start\\\":8000,\\\"end\\\":8080}]\" is not \
         supported by petrel; list each port under ports",
    );
}

#[test]
fn boot_order_and_model_rules() {
    let nets = "[{name: a, pod: {}}, {name: b, multus: {networkName: b}}]";
    let errs = errors_of(&vmi(
        "[{name: a, bridge: {}, bootOrder: 1}, {name: b, bridge: {}, bootOrder: 1}]",
        nets,
    ));
    assert_error(&errs, "spec.domain.devices.interfaces[1].bootOrder: \"1\" is used twice (also spec.domain.devices.interfaces[0].bootOrder)");
    let errs = errors_of(&vmi("[{name: a, bridge: {}, bootOrder: 0}]", POD));
    assert_error(
        &errs,
        "spec.domain.devices.interfaces[0].bootOrder: \"0\" is out of range; use 1 or greater",
    );
    let errs = errors_of(&vmi("[{name: a, bridge: {}, model: virtio-net}]", POD));
    assert_error(
        &errs,
        "spec.domain.devices.interfaces[0].model: \"virtio-net\" is not a known NIC model; use one of virtio, e1000, e1000e, ne2k_pci, pcnet, rtl8139",
    );
    for m in ["e1000e", "ne2k_pci", "pcnet", "rtl8139"] {
        let errs = errors_of(&vmi(
            &format!("[{{name: a, bridge: {{}}, model: {m}}}]"),
            POD,
        ));
        assert_eq!(
            errs,
            [format!(
                "spec.domain.devices.interfaces[0].model: \"{m}\" is not emulated by petrel; \
                 use virtio (the fastest) or e1000"
            )]
        );
    }
    for m in ["virtio", "e1000", "e1000e", "ne2k_pci", "pcnet", "rtl8139"] {
        let p = meaning_of(&vmi(
            &format!("[{{name: a, bridge: {{}}, model: {m}}}]"),
            POD,
        ));
        assert_eq!(p.nics[0].model.as_str(), m);
    }
}

#[test]
fn cidr_rules() {
    let ok = plan_of(&vmi(
        "[{name: a, masquerade: {}}]",
        "[{name: a, pod: {vmNetworkCIDR: 10.11.0.0/30, vmIPv6NetworkCIDR: 'fd00::/126'}}]",
    ));
    assert_eq!(
        ok.nics[0].network,
        NetworkPlan::Pod {
            ipv4_cidr: Some(Ipv4Cidr::parse("10.11.0.0/30").unwrap()),
            ipv6_cidr: Some(Ipv6Cidr::parse("fd00::/126").unwrap())
        }
    );
    let errs = errors_of(&vmi(
        "[{name: a, masquerade: {}}]",
        "[{name: a, pod: {vmNetworkCIDR: 10.11.0.0/31, vmIPv6NetworkCIDR: 'fd00::/127'}}]",
    ));
    assert_error(&errs, "spec.networks[0].pod.vmNetworkCIDR: \"10.11.0.0/31\" is too small; use a prefix of /30 or shorter");
    assert_error(&errs, "spec.networks[0].pod.vmIPv6NetworkCIDR: \"fd00::/127\" is too small; use a prefix of /126 or shorter");
    let errs = errors_of(&vmi(
        "[{name: a, masquerade: {}}]",
        "[{name: a, pod: {vmNetworkCIDR: 'fd00::/64'}}]",
    ));
    assert_error(
        &errs,
        "spec.networks[0].pod.vmNetworkCIDR: \"fd00::/64\" is not an IPv4 CIDR",
    );
    // Virtink masquerade cidr.
    let p = plan_of(&virtink(
        "[{name: a, masquerade: {cidr: 192.168.7.0/29}}]",
        POD,
    ));
    assert_eq!(
        p.nics[0].network,
        NetworkPlan::Pod {
            ipv4_cidr: Some(Ipv4Cidr::parse("192.168.7.0/29").unwrap()),
            ipv6_cidr: None
        }
    );
    let errs = errors_of(&virtink(
        "[{name: a, masquerade: {cidr: 192.168.7.0/31}}]",
        POD,
    ));
    assert_eq!(errs, ["spec.instance.interfaces[0].masquerade.cidr: \"192.168.7.0/31\" is too small; use a prefix of /30 or shorter (at least 4 addresses)"]);
    // CIDRs on a bridge-bound pod network are only warned about.
    let p = plan_of(&vmi(
        "[{name: a, bridge: {}}]",
        "[{name: a, pod: {vmNetworkCIDR: 10.0.0.0/24}}]",
    ));
    assert!(p.warnings.contains(
        &"spec.networks[0].pod.vmNetworkCIDR: ignored (only used with masquerade binding)"
            .to_string()
    ));
}

// ---- CPU, memory, boot ---------------------------------------------------

#[test]
fn topology_rules() {
    let cpu = |c: &str| {
        format!("apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: c}}\nspec:\n  domain: {{cpu: {c}, devices: {{autoattachPodInterface: false}}}}\n")
    };
    let p = plan_of(&cpu("{sockets: 2, cores: 4, threads: 2}"));
    assert_eq!(
        (p.vcpus, p.topology),
        (
            16,
            Topology {
                sockets: 2,
                cores: 4,
                threads: 2
            }
        )
    );
    let p = plan_of(&cpu("{}"));
    assert_eq!(p.vcpus, 1);
    let errs = errors_of(&cpu("{cores: 0, threads: -1}"));
    assert_eq!(
        errs,
        [
            "spec.domain.cpu.cores: \"0\" is out of range; use 1 to 254",
            "spec.domain.cpu.threads: \"-1\" is out of range; use 1 to 254"
        ]
    );
    let errs = errors_of(&cpu("{sockets: 2, cores: 128}"));
    assert_eq!(errs, ["spec.domain.cpu: \"sockets=2 cores=128 threads=1\" gives 256 vCPUs; petrel supports 1 to 254"]);
    plan_of(&cpu("{sockets: 2, cores: 127}"));
    let errs =
        errors_of(&virtink("[]", "[]").replace("instance:", "instance:\n    cpu: {sockets: 255}"));
    assert_error(&errs, "spec.instance.cpu.sockets: \"255\" is out of range");
}

#[test]
fn memory_rules() {
    let mem = |m: &str| {
        format!("apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: m}}\nspec:\n  domain: {{memory: {{guest: {m}}}, devices: {{autoattachPodInterface: false}}}}\n")
    };
    assert_eq!(plan_of(&mem("1Gi")).memory_bytes, 1 << 30);
    assert_eq!(plan_of(&mem("1024M")).memory_bytes, 1_024_000_000);
    assert_eq!(plan_of(&mem("16Mi")).memory_bytes, 16 << 20);
    assert_eq!(
        errors_of(&mem("15Mi")),
        ["spec.domain.memory.guest: \"15Mi\" is too little memory; petrel needs at least 16Mi"]
    );
    assert_error(
        &errors_of(&mem("1GB")),
        "spec.domain.memory.guest: \"1GB\" has an unknown suffix \"GB\"",
    );
    assert_error(
        &errors_of(&mem("lots")),
        "spec.domain.memory.guest: \"lots\" is not a Kubernetes quantity",
    );
    let errs = errors_of(&virtink("[]", "[]").replace("256Mi", "12x"));
    assert_error(
        &errs,
        "spec.instance.memory.size: \"12x\" has an unknown suffix",
    );
}

#[test]
fn boot_from_spec_and_overrides() {
    let yaml = "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: b}\nspec:\n  domain:\n    devices: {autoattachPodInterface: false}\n    firmware:\n      kernelBoot:\n        kernelArgs: console=ttyS0 quiet\n        container: {image: 'quay.io/k:1', kernelPath: /k/vmlinux, initrdPath: /k/initrd}\n";
    let spec = parse_str(yaml).unwrap();
    let p = resolve(&spec, &Overrides::default()).unwrap();
    assert_eq!(
        p.boot,
        BootPlan {
            kernel: Some(PathBuf::from("/k/vmlinux")),
            initrd: Some(PathBuf::from("/k/initrd")),
            cmdline: "console=ttyS0 quiet".into(),
            kernel_image: Some("quay.io/k:1".into()),
        }
    );
    assert!(p
        .warnings
        .iter()
        .any(|w| w.starts_with("spec.domain.firmware.kernelBoot.container.image: not pulled")));
    let o = Overrides {
        kernel: Some("/tmp/bzImage".into()),
        initrd: Some("/tmp/initramfs".into()),
        cmdline: Some("console=hvc0".into()),
    };
    let p = resolve(&spec, &o).unwrap();
    assert_eq!(p.boot.kernel, o.kernel);
    assert_eq!(p.boot.initrd, o.initrd);
    assert_eq!(p.boot.cmdline, "console=hvc0");
    // No kernel at all is not a plan error.
    let p = plan_of(&vmi("[{name: a, bridge: {}}]", POD));
    assert_eq!(p.boot.kernel, None);
    assert_eq!(p.boot.cmdline, DEFAULT_CMDLINE);
    let v = plan_of(&virtink("[]", "[]").replace(
        "instance:",
        "instance:\n    kernel: {image: k:1, cmdline: ro}",
    ));
    assert_eq!(
        (v.boot.kernel_image.as_deref(), v.boot.cmdline.as_str()),
        (Some("k:1"), "ro")
    );
}

// ---- tap extension -------------------------------------------------------

fn with_annotations(yaml: &str, annotations: &str) -> String {
    yaml.replace(
        "metadata: {name: vm1}",
        &format!("metadata: {{name: vm1, annotations: {annotations}}}"),
    )
}

#[test]
fn tap_annotation_wires_interface_to_tap() {
    let yaml = with_annotations(
        &vmi(
            "[{name: a, bridge: {}}, {name: b, masquerade: {}}]",
            "[{name: a, multus: {networkName: x}}, {name: b, pod: {}}]",
        ),
        "{'petrel.io/tap.a': tap7}",
    );
    let p = plan_of(&yaml);
    assert_eq!(p.nics[0].binding, Binding::Tap);
    assert_eq!(
        p.nics[0].backend,
        Backend::Tap {
            name: "tap7".into()
        }
    );
    assert_eq!(p.nics[1].binding, Binding::Masquerade);
    // A tapped interface needs no binding of its own.
    let p = plan_of(&with_annotations(
        &vmi("[{name: a}]", POD),
        "{'petrel.io/tap.a': t0}",
    ));
    assert_eq!(p.nics[0].binding, Binding::Tap);
}

#[test]
fn tap_name_rules() {
    let base = vmi("[{name: a, bridge: {}}]", POD);
    for (bad, why) in [
        ("averyveryverylongtap", "is longer than 15 bytes"),
        ("'tap 0'", "contains '/', ':' or whitespace"),
        ("'a/b'", "contains '/', ':' or whitespace"),
        ("''", "is empty"),
    ] {
        let errs = errors_of(&with_annotations(
            &base,
            &format!("{{'petrel.io/tap.a': {bad}}}"),
        ));
        assert_error(&errs, "metadata.annotations[\"petrel.io/tap.a\"]: ");
        assert!(errs[0].contains(why), "{errs:?}");
    }
    let errs = errors_of(&with_annotations(&base, "{'petrel.io/tap.zz': tap0}"));
    assert_eq!(
        errs,
        ["metadata.annotations[\"petrel.io/tap.zz\"]: \"tap0\" is set for interface \"zz\", which does not exist; interfaces: a"]
    );
    // Derived names are cut to 15 bytes; collisions are reported.
    let p = plan_of(&vmi(
        "[{name: averyverylongname, bridge: {}}]",
        "[{name: averyverylongname, pod: {}}]",
    ));
    assert_eq!(
        p.nics[0].backend,
        Backend::Tap {
            name: "tap-averyverylo".into()
        }
    );
    let errs = errors_of(&vmi(
        "[{name: net-long-name-a, bridge: {}}, {name: net-long-name-b, bridge: {}}]",
        "[{name: net-long-name-a, pod: {}}, {name: net-long-name-b, multus: {networkName: x}}]",
    ));
    assert_eq!(
        errs,
        ["spec.domain.devices.interfaces[1].name: \"tap-net-long-na\" is the tap device of two interfaces \
          (spec.domain.devices.interfaces[0] and spec.domain.devices.interfaces[1]); rename one or set \
          petrel.io/tap.<interface> to pick tap names"]
    );
    // ... which the annotation resolves.
    let ok = plan_of(&with_annotations(
        &vmi(
            "[{name: net-long-name-a, bridge: {}}, {name: net-long-name-b, bridge: {}}]",
            "[{name: net-long-name-a, pod: {}}, {name: net-long-name-b, multus: {networkName: x}}]",
        ),
        "{'petrel.io/tap.net-long-name-b': tapb}",
    ));
    assert_eq!(ok.nics.len(), 2);
}

// ---- reporting -------------------------------------------------------------

#[test]
fn all_errors_are_collected() {
    let yaml = vmi(
        "[{name: a, bridge: {}, macAddress: 'ff:ff:ff:ff:ff:ff', pciAddress: bad, bootOrder: 0, model: x}, {name: b, sriov: {}}]",
        "[{name: a, pod: {}}, {name: b, pod: {}}]",
    )
    .replace("cores: 2", "cores: 0")
    .replace("256Mi", "1Ki");
    let errs = errors_of(&yaml);
    for start in [
        "spec.domain.cpu.cores:",
        "spec.domain.memory.guest:",
        "spec.networks[1].pod:",
        "spec.domain.devices.interfaces[0].macAddress:",
        "spec.domain.devices.interfaces[0].pciAddress:",
        "spec.domain.devices.interfaces[0].bootOrder:",
        "spec.domain.devices.interfaces[0].model:",
    ] {
        assert_error(&errs, start);
    }
    let spec = parse_str(&yaml).unwrap();
    let e = resolve(&spec, &Overrides::default()).unwrap_err();
    assert_eq!(e.to_string().lines().count(), e.0.len());
    assert!(e.0.len() >= 7);
}

#[test]
fn field_error_display() {
    let e = FieldError::new(
        "spec.domain.devices.interfaces[1].macAddress",
        "01:00:00:00:00:00",
        "is a multicast address; use a unicast MAC such as 02:00:00:00:00:01",
    );
    assert_eq!(
        e.to_string(),
        "spec.domain.devices.interfaces[1].macAddress: \"01:00:00:00:00:00\" is a multicast address; use a unicast MAC such as 02:00:00:00:00:01"
    );
    assert_eq!(
        FieldError::new("spec.x", "", "is missing").to_string(),
        "spec.x: is missing"
    );
}

#[test]
fn text_and_json_rendering() {
    let p = plan_of(&vmi(
        "[{name: a, masquerade: {}, ports: [{name: http, port: 80}], bootOrder: 1, macAddress: '02:00:00:00:00:01'}]",
        POD,
    ));
    let text = p.to_text();
    for line in [
        "VM vm1 (KubeVirt VirtualMachineInstance)",
        "vcpus:   2 (1 sockets x 2 cores x 1 threads)",
        "memory:  256Mi (268435456 bytes)",
        "kernel:  (none)",
        "  - a: virtio masquerade, pod network (eth0, 10.0.2.0/24, fd10:0:2::/120)",
        "      backend tap tap-a, mac 02:00:00:00:00:01, pci 0000:00:02.0, queue pairs 1",
        "      ports http 80/TCP",
        "      boot order 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let json = serde_json::to_value(&p).unwrap();
    let nic = &json["nics"][0];
    assert_eq!(nic["mac"], "02:00:00:00:00:01");
    assert_eq!(nic["pci_address"], "0000:00:02.0");
    assert_eq!(nic["model"], "virtio");
    assert_eq!(nic["binding"], "masquerade");
    assert_eq!(nic["ports"][0]["protocol"], "TCP");
    assert_eq!(json["kind"], "KubeVirtVmi");
}

// ---- upstream defaults and fields that must have their effect ------------

#[test]
fn virtink_interface_without_binding_is_bridge() {
    let p = plan_of(&virtink("[{name: pod}]", "[{name: pod, pod: {}}]"));
    assert_eq!(p.nics[0].binding, Binding::Bridge);
    assert!(p
        .warnings
        .iter()
        .any(|w| w.contains("no binding; using bridge, as Virtink's webhook does")));
    let m = plan_of(&virtink(
        "[{name: pod, masquerade: {}}]",
        "[{name: pod, pod: {}}]",
    ));
    assert_eq!(
        m.nics[0].network,
        NetworkPlan::Pod {
            ipv4_cidr: Some(Ipv4Cidr::parse("10.0.2.0/30").unwrap()),
            ipv6_cidr: None
        }
    );
    for key in ["vdpa", "vhostUser"] {
        let errs = errors_of(&virtink(
            &format!("[{{name: pod, {key}: {{}}}}]"),
            "[{name: pod, pod: {}}]",
        ));
        assert_error(
            &errs,
            &format!(
                "spec.instance.interfaces[0].{key}: asks for the {key} binding, which petrel \
                 does not support"
            ),
        );
    }
}

#[test]
fn unbuildable_models_are_refused_by_name() {
    for model in ["igb", "e1000e", "ne2k_pci", "pcnet", "rtl8139"] {
        let errs = errors_of(&vmi(
            &format!("[{{name: a, bridge: {{}}, model: {model}}}]"),
            POD,
        ));
        assert_eq!(
            errs,
            [format!(
                "spec.domain.devices.interfaces[0].model: \"{model}\" is not emulated by petrel; \
                 use virtio (the fastest) or e1000"
            )]
        );
    }
}

#[test]
fn interface_state_absent_and_down() {
    let p = plan_of(&vmi(
        "[{name: a, bridge: {}, state: absent}, {name: b, bridge: {}, state: down}, {name: c, bridge: {}, state: up}]",
        "[{name: a, pod: {}}, {name: b, multus: {networkName: x}}, {name: c, multus: {networkName: y}}]",
    ));
    let names: Vec<_> = p
        .nics
        .iter()
        .map(|n| (n.name.as_str(), n.link_up))
        .collect();
    assert_eq!(names, [("b", false), ("c", true)]);
    assert!(p
        .warnings
        .iter()
        .any(|w| w
            == "spec.domain.devices.interfaces[0].state: absent; interface \"a\" is not attached"));
    assert!(p.to_text().contains("link down"), "{}", p.to_text());
    let errs = errors_of(&vmi("[{name: a, bridge: {}, state: sleepy}]", POD));
    assert_eq!(
        errs,
        ["spec.domain.devices.interfaces[0].state: \"sleepy\" is not an interface state; use up, down or absent"]
    );
}

#[test]
fn boot_order_warns_that_it_has_no_effect() {
    let p = plan_of(&vmi("[{name: a, bridge: {}, bootOrder: 1}]", POD));
    assert_eq!(p.nics[0].boot_order, Some(1));
    assert!(p.warnings.iter().any(|w| w.starts_with(
        "spec.domain.devices.interfaces[0].bootOrder: has no effect; petrel boots the kernel directly"
    )));
}

#[test]
fn dhcp_options_are_planned_and_checked() {
    let p = plan_of(&vmi(
        "[{name: a, masquerade: {}, dhcpOptions: {bootFileName: pxe.0, tftpServerName: tftp.x, \
         ntpServers: [192.0.2.1, 192.0.2.2], privateOptions: [{option: 240, value: hello}]}}]",
        POD,
    ));
    assert_eq!(
        p.nics[0].dhcp,
        DhcpPlan {
            boot_file_name: Some("pxe.0".into()),
            tftp_server_name: Some("tftp.x".into()),
            ntp_servers: vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()],
            private_options: vec![PrivateOption {
                code: 240,
                value: "hello".into()
            }],
        }
    );
    assert!(p.to_text().contains(
        "dhcp boot file pxe.0, tftp server tftp.x, ntp 192.0.2.1 192.0.2.2, option 240 \"hello\""
    ));
    let errs = errors_of(&vmi(
        "[{name: a, masquerade: {}, dhcpOptions: {ntpServers: [ntp.example], \
         privateOptions: [{option: 12, value: x}, {option: 250, value: a}, {option: 250, value: b}, {value: c}]}}]",
        POD,
    ));
    let d = "spec.domain.devices.interfaces[0].dhcpOptions";
    assert_error(
        &errs,
        &format!("{d}.ntpServers[0]: \"ntp.example\" is not an IPv4 address"),
    );
    assert_error(
        &errs,
        &format!(
            "{d}.privateOptions[0].option: \"12\" is not a private DHCP option; use 224 to 254"
        ),
    );
    assert_error(&errs, &format!("{d}.privateOptions[2].option: \"250\" is used twice (also {d}.privateOptions[1].option)"));
    assert_error(&errs, &format!("{d}.privateOptions[3].option: is missing"));
    assert_eq!(errs.len(), 4, "{errs:#?}");
    // No DHCP server on an SR-IOV VF: said, not silently dropped.
    let s = plan_of(&vmi(
        "[{name: a, sriov: {}, dhcpOptions: {bootFileName: x}}]",
        "[{name: a, multus: {networkName: vf}}]",
    ));
    assert!(s.warnings.iter().any(|w| w
        == &format!(
        "{d}: has no effect with sriov binding; petrel serves DHCP only for bridge and masquerade"
    )));
}

#[test]
fn generated_macs_differ_between_namespaces() {
    let in_ns = |ns: &str| {
        plan_of(&vmi("[{name: a, bridge: {}}]", POD).replace(
            "metadata: {name: vm1}",
            &format!("metadata: {{name: web, namespace: {ns}}}"),
        ))
        .nics[0]
            .mac
    };
    assert_ne!(in_ns("prod"), in_ns("staging"));
    assert_eq!(in_ns("prod"), generate_mac("prod/web", "a", 0));
}
