//! Spec parsing tests: every seed example, multi-document files, errors.

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        ($name, include_str!(concat!("testdata/", $name)))
    };
}

/// Every YAML example from the seed docs (see the comment atop each file).
pub(crate) const FIXTURES: &[(&str, &str)] = &[
    fixture!("virtink_pod_bridge.yaml"),
    fixture!("virtink_multus_ovs.yaml"),
    fixture!("virtink_masquerade.yaml"),
    fixture!("virtink_sriov.yaml"),
    fixture!("kubevirt_pod_red_e1000_mac.yaml"),
    fixture!("kubevirt_resource_network.yaml"),
    fixture!("kubevirt_bridge_e1000_ports.yaml"),
    fixture!("kubevirt_autoattach_false.yaml"),
    fixture!("kubevirt_bridge_red_pod.yaml"),
    fixture!("kubevirt_slirp_red_pod.yaml"),
    fixture!("kubevirt_pod_default_masquerade.yaml"),
    fixture!("kubevirt_multus_ovs_pxe.yaml"),
    fixture!("kubevirt_multus_default.yaml"),
    fixture!("kubevirt_genie.yaml"),
    fixture!("kubevirt_masquerade_e1000_ports.yaml"),
    fixture!("kubevirt_nad_ptp_mac.yaml"),
    fixture!("kubevirt_bridge_red_multus.yaml"),
    fixture!("kubevirt_configmap_permit_bridge.yaml"),
    fixture!("kubevirt_masquerade_port80.yaml"),
    fixture!("kubevirt_masquerade_ipv6_cloudinit.yaml"),
    fixture!("kubevirt_multiqueue.yaml"),
    fixture!("kubevirt_sriov.yaml"),
    fixture!("vendor_masquerade_eth0.yaml"),
    fixture!("vendor_passt_macvlan.yaml"),
    fixture!("vendor_bridge_ovs_multi_nic.yaml"),
];

pub(crate) fn fixture(name: &str) -> VmSpec {
    let (_, text) = FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fixture {name}"));
    parse_str(text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn testdata_dir_matches_fixture_list() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/spec/testdata");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn every_seed_example_parses() {
    for (name, text) in FIXTURES {
        let spec = parse_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expect = if name.starts_with("virtink") {
            SpecKind::Virtink
        } else if name.starts_with("vendor") {
            SpecKind::KubeVirtVm
        } else {
            SpecKind::KubeVirtVmi // VirtualMachineInstance or the legacy `kind: VM`
        };
        assert_eq!(spec.kind, expect, "{name}");
        assert!(!spec.name.is_empty(), "{name}");
    }
}

#[test]
fn legacy_kind_vm_without_metadata_warns() {
    let spec = fixture("kubevirt_pod_red_e1000_mac.yaml");
    assert_eq!(spec.kind, SpecKind::KubeVirtVmi);
    assert_eq!(spec.name, DEFAULT_VM_NAME);
    assert!(spec
        .warnings
        .iter()
        .any(|w| w.starts_with("apiVersion: missing")));
    assert!(spec.warnings.iter().any(|w| w.starts_with("kind: \"VM\"")));
    assert!(spec
        .warnings
        .iter()
        .any(|w| w.starts_with("metadata.name: missing")));
    let i = &spec.interfaces[0];
    assert_eq!(i.path, "spec.domain.devices.interfaces[0]");
    assert_eq!(i.name.value, "red");
    assert_eq!(
        i.mac,
        Some(Field::new(
            "de:ad:00:00:be:af".to_string(),
            "spec.domain.devices.interfaces[0].macAddress"
        ))
    );
    assert_eq!(i.model.as_ref().unwrap().value, "e1000");
    assert_eq!(i.bindings.len(), 1);
    assert_eq!(i.bindings[0].kind, BindingKind::Bridge);
    assert_eq!(spec.networks[0].path, "spec.networks[0]");
    assert!(matches!(
        spec.networks[0].sources[0].kind,
        NetworkSourceKind::Pod { .. }
    ));
}

#[test]
fn seed_details_are_parsed() {
    let pxe = fixture("kubevirt_multus_ovs_pxe.yaml");
    assert_eq!(pxe.document, 2);
    assert_eq!(pxe.network_attachments.len(), 1);
    assert_eq!(pxe.network_attachments[0].name, "ovs-vlan-100");
    assert!(pxe.network_attachments[0]
        .config
        .as_deref()
        .unwrap()
        .contains("\"vlan\": 100"));
    let d = &pxe.interfaces[0];
    assert_eq!(d.boot_order.as_ref().unwrap().value, 1);
    assert_eq!(
        d.boot_file_name.as_ref().unwrap().value,
        "default_image.bin"
    );
    assert_eq!(
        d.tftp_server_name.as_ref().unwrap().value,
        "tftp.example.com"
    );

    let genie = fixture("kubevirt_genie.yaml");
    assert!(matches!(
        &genie.networks[1].sources[0].kind,
        NetworkSourceKind::Genie { network_name: Some(n) } if n.value == "ovs"
    ));

    let res = fixture("kubevirt_resource_network.yaml");
    assert!(matches!(
        &res.networks[0].sources[0].kind,
        NetworkSourceKind::Resource { resource_name: Some(n) }
            if n.value == "bridge.network.kubevirt.io/red"
    ));

    let aa = fixture("kubevirt_autoattach_false.yaml");
    assert_eq!(aa.autoattach_pod_interface, Some(false));
    assert!(aa.interfaces.is_empty() && aa.networks.is_empty());

    let mq = fixture("kubevirt_multiqueue.yaml");
    assert!(mq.network_interface_multiqueue);

    let ports = fixture("kubevirt_masquerade_e1000_ports.yaml");
    let p = &ports.interfaces[0].ports[0];
    assert_eq!(p.name.as_ref().unwrap().value, "http");
    assert_eq!(p.port.as_ref().unwrap().value, 80);
    assert_eq!(p.protocol, None);
}

#[test]
fn out_of_scope_fields_are_warnings_with_paths() {
    let spec = fixture("kubevirt_masquerade_ipv6_cloudinit.yaml");
    assert!(spec.warnings.contains(
        &"spec.domain.devices.disks: ignored (disks are outside petrel's scope)".to_string()
    ));
    assert!(spec
        .warnings
        .contains(&"spec.volumes: ignored (volumes are outside petrel's scope)".to_string()));
    let vm = fixture("vendor_masquerade_eth0.yaml");
    assert!(vm
        .warnings
        .iter()
        .any(|w| w.starts_with("spec.runStrategy: ignored")));
}

#[test]
fn unknown_fields_do_not_fail_the_parse() {
    let spec = parse_str(
        r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: x, labels: {a: b}, uid: "1"}
spec:
  frobnicate: 3
  domain:
    devices:
      interfaces:
      - name: a
        bridge: {}
        sparkle: true
        dhcpOptions: {ntpServers: [1.2.3.4], bootFileNme: x}
        masqurade: {}
    rng: {}
  networks:
  - name: a
    pod: {}
    extra: 1
status: {phase: Running}
"#,
    )
    .unwrap();
    let w = &spec.warnings;
    for expected in [
        "spec.frobnicate: unknown field, ignored",
        "spec.domain.devices.interfaces[0].sparkle: unknown field, ignored",
        "spec.domain.devices.interfaces[0].dhcpOptions.bootFileNme: unknown field bootFileNme, ignored; did you mean bootFileName?",
        "spec.domain.devices.interfaces[0].masqurade: unknown field masqurade, ignored; did you mean masquerade?",
        "spec.domain.rng: unknown field, ignored",
        "spec.networks[0].extra: unknown field, ignored",
        "status: ignored (status is written by the cluster)",
    ] {
        assert!(w.contains(&expected.to_string()), "missing {expected:?} in {w:#?}");
    }
    assert!(!w.iter().any(|w| w.starts_with("metadata")), "{w:#?}");
}

#[test]
fn kubevirt_vm_uses_template() {
    let spec = parse_str(
        r#"
apiVersion: kubevirt.io/v1alpha3
kind: VirtualMachine
metadata:
  name: outer
  annotations: {petrel.io/tap.net0: tap0, keep: outer}
spec:
  running: true
  template:
    metadata:
      name: ignored-name
      annotations: {keep: inner}
    spec:
      domain:
        cpu: {sockets: 2, cores: 3, threads: 1, model: host-passthrough}
        memory: {guest: 512Mi}
        resources: {requests: {memory: 1Gi, cpu: "2"}}
        firmware:
          kernelBoot:
            kernelArgs: console=ttyS0
            container:
              image: quay.io/x/kernel:1
              kernelPath: /boot/vmlinuz
              initrdPath: /boot/initrd
              imagePullPolicy: Always
        devices:
          interfaces: [{name: net0, bridge: {}}]
      networks: [{name: net0, pod: {}}]
"#,
    )
    .unwrap();
    assert_eq!(spec.kind, SpecKind::KubeVirtVm);
    assert_eq!(spec.name, "outer");
    assert_eq!(spec.api_version, "kubevirt.io/v1alpha3");
    assert_eq!(spec.annotations["keep"].value, "inner");
    assert_eq!(
        spec.annotations["petrel.io/tap.net0"].path,
        "metadata.annotations[\"petrel.io/tap.net0\"]"
    );
    assert_eq!(spec.cpu.path, "spec.template.spec.domain.cpu");
    assert_eq!(spec.cpu.cores.as_ref().unwrap().value, 3);
    let mem = spec.memory.as_ref().unwrap();
    assert_eq!(
        (mem.value.as_str(), mem.path.as_str()),
        ("512Mi", "spec.template.spec.domain.memory.guest")
    );
    assert_eq!(spec.kernel.cmdline.as_ref().unwrap().value, "console=ttyS0");
    assert_eq!(
        spec.kernel.kernel_path.as_ref().unwrap().value,
        "/boot/vmlinuz"
    );
    assert_eq!(
        spec.kernel.initrd_path.as_ref().unwrap().value,
        "/boot/initrd"
    );
    assert_eq!(
        spec.kernel.image.as_ref().unwrap().value,
        "quay.io/x/kernel:1"
    );
    assert_eq!(
        spec.interfaces[0].path,
        "spec.template.spec.domain.devices.interfaces[0]"
    );
    assert_eq!(spec.networks_path, "spec.template.spec.networks");
    for w in [
        "spec.running: ignored (petrel runs the VM when asked)",
        "spec.template.spec.domain.cpu.model: ignored (petrel passes the host CPU model)",
        "spec.template.spec.domain.resources.requests.cpu: ignored (only the memory resource is used)",
        "spec.template.spec.domain.firmware.kernelBoot.container.imagePullPolicy: ignored (petrel does not pull images)",
    ] {
        assert!(spec.warnings.contains(&w.to_string()), "{w}: {:#?}", spec.warnings);
    }
}

#[test]
fn memory_falls_back_to_requests_then_limits() {
    let base = |res: &str| {
        parse_str(&format!(
            "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: m}}\nspec:\n  domain:\n    resources: {res}\n"
        ))
        .unwrap()
        .memory
    };
    let m = base("{requests: {memory: 64Mi}, limits: {memory: 128Mi}}").unwrap();
    assert_eq!(
        (m.value.as_str(), m.path.as_str()),
        ("64Mi", "spec.domain.resources.requests.memory")
    );
    let m = base("{limits: {memory: 128Mi}}").unwrap();
    assert_eq!(m.path, "spec.domain.resources.limits.memory");
    let m = base("{requests: {memory: 134217728}}").unwrap();
    assert_eq!(m.value, "134217728");
}

#[test]
fn kernel_boot_cmdline_alias() {
    let spec = parse_str(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: k}\nspec:\n  domain:\n    firmware: {kernelBoot: {cmdline: quiet}}\n",
    )
    .unwrap();
    let c = spec.kernel.cmdline.unwrap();
    assert_eq!(
        (c.value.as_str(), c.path.as_str()),
        ("quiet", "spec.domain.firmware.kernelBoot.cmdline")
    );
}

#[test]
fn virtink_cpu_memory_kernel() {
    let spec = parse_str(
        r#"
apiVersion: virt.virtink.smartx.com/v1alpha1
kind: VirtualMachine
metadata: {name: vk, namespace: ns1}
spec:
  runPolicy: Always
  instance:
    cpu: {sockets: 2, coresPerSocket: 2}
    memory: {size: 1Gi}
    kernel: {image: smartxworks/virtink-kernel-5.15.12, cmdline: "console=ttyS0 root=/dev/vda rw"}
    disks: [{name: root}]
    interfaces:
    - name: pod
      mac: 52-54-00-12-34-56
      masquerade: {cidr: 10.1.0.0/29}
  networks:
  - name: pod
    pod: {}
"#,
    )
    .unwrap();
    assert_eq!(spec.kind, SpecKind::Virtink);
    assert_eq!(spec.namespace.as_deref(), Some("ns1"));
    assert_eq!(spec.cpu.sockets.as_ref().unwrap().value, 2);
    assert_eq!(
        spec.cpu.cores.as_ref().unwrap().path,
        "spec.instance.cpu.coresPerSocket"
    );
    assert_eq!(
        spec.memory.as_ref().unwrap().path,
        "spec.instance.memory.size"
    );
    assert_eq!(
        spec.kernel.image.as_ref().unwrap().value,
        "smartxworks/virtink-kernel-5.15.12"
    );
    let i = &spec.interfaces[0];
    assert_eq!(
        i.mac.as_ref().unwrap().path,
        "spec.instance.interfaces[0].mac"
    );
    assert_eq!(i.bindings[0].kind, BindingKind::Masquerade);
    assert_eq!(
        i.bindings[0].cidr.as_ref().unwrap().path,
        "spec.instance.interfaces[0].masquerade.cidr"
    );
    assert!(spec
        .warnings
        .iter()
        .any(|w| w.starts_with("spec.instance.disks: ignored")));
    assert!(spec
        .warnings
        .iter()
        .any(|w| w.starts_with("spec.runPolicy: ignored")));
}

#[test]
fn virtink_without_api_version_is_detected_by_shape() {
    let spec = parse_str("kind: VirtualMachine\nspec: {instance: {}}\n").unwrap();
    assert_eq!(spec.kind, SpecKind::Virtink);
    let spec = parse_str("kind: VirtualMachine\nspec: {template: {spec: {}}}\n").unwrap();
    assert_eq!(spec.kind, SpecKind::KubeVirtVm);
}

#[test]
fn multi_document_with_nad_and_configmap() {
    let spec = parse_str(
        r#"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: b}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: sriov-a
  namespace: net
  annotations: {k8s.v1.cni.cncf.io/resourceName: intel.com/sriov_a}
spec:
  config: '{"type": "sriov"}'
---
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: multi}
spec:
  domain: {devices: {autoattachPodInterface: false}}
---
"#,
    )
    .unwrap();
    assert_eq!(spec.name, "multi");
    assert_eq!(spec.document, 3);
    let nad = &spec.network_attachments[0];
    assert_eq!(nad.name, "sriov-a");
    assert_eq!(nad.namespace.as_deref(), Some("net"));
    assert_eq!(nad.resource_name.as_deref(), Some("intel.com/sriov_a"));
    assert!(spec
        .warnings
        .contains(&"document 1 (ConfigMap cfg): not a VM object, ignored".to_string()));
}

#[test]
fn no_vm_object_is_an_error() {
    let err = parse_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n").unwrap_err();
    assert!(
        matches!(err, SpecError::NoVmObject { documents: 1 }),
        "{err}"
    );
    assert!(matches!(parse_str(""), Err(SpecError::NoVmObject { .. })));
}

#[test]
fn several_vm_objects_is_an_error() {
    let err = parse_str(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: a}\nspec: {}\n---\n\
         apiVersion: virt.virtink.smartx.com/v1alpha1\nkind: VirtualMachine\nmetadata: {name: b}\nspec: {}\n",
    )
    .unwrap_err();
    match &err {
        SpecError::SeveralVmObjects { objects } => assert_eq!(
            objects,
            &[
                "VirtualMachineInstance/a (document 1)".to_string(),
                "VirtualMachine/b (document 2)".to_string()
            ]
        ),
        other => panic!("{other}"),
    }
}

#[test]
fn unsupported_api_version_is_an_error() {
    let err =
        parse_str("apiVersion: kubevirt.io/v2\nkind: VirtualMachine\nspec: {}\n").unwrap_err();
    let text = err.to_string();
    assert!(matches!(
        err,
        SpecError::UnsupportedApiVersion { document: 1, .. }
    ));
    assert!(text.contains("apiVersion: \"kubevirt.io/v2\""), "{text}");
    assert!(
        text.contains("kubevirt.io/v1, kubevirt.io/v1alpha3, virt.virtink.smartx.com/v1alpha1"),
        "{text}"
    );
    let err = parse_str(
        "apiVersion: virt.virtink.smartx.com/v1alpha1\nkind: VirtualMachineInstance\nspec: {}\n",
    )
    .unwrap_err();
    assert!(matches!(err, SpecError::UnsupportedApiVersion { .. }));
}

#[test]
fn yaml_syntax_error_has_document_and_location() {
    let err = parse_str("kind: ConfigMap\n---\nkind: VM\nspec: [unclosed\n").unwrap_err();
    match &err {
        SpecError::Yaml { document, line, .. } => {
            assert_eq!(*document, 2);
            assert!(line.is_some());
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string().starts_with("YAML error in document 2"),
        "{err}"
    );
}

#[test]
fn type_errors_are_collected_with_paths() {
    let err = parse_str(
        r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: t}
spec:
  domain:
    cpu: {cores: two}
    devices:
      networkInterfaceMultiqueue: "yes"
      interfaces:
      - name: a
        bootOrder: 1.5
        ports: [{port: "80"}]
      - bridge: {}
  networks: {name: a}
"#,
    )
    .unwrap_err();
    let SpecError::Schema { document, issues } = &err else {
        panic!("{err}");
    };
    assert_eq!(*document, 1);
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.domain.cpu.cores",
            "spec.domain.devices.interfaces[0].bootOrder",
            "spec.domain.devices.interfaces[0].ports[0].port",
            "spec.domain.devices.interfaces[1].name",
            "spec.domain.devices.networkInterfaceMultiqueue",
            "spec.networks",
        ]
    );
    assert!(err
        .to_string()
        .contains("spec.domain.cpu.cores: expected an integer, found a string"));
}

#[test]
fn load_file_reads_and_reports_io_errors() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/spec/testdata");
    let spec = load_file(&std::path::Path::new(dir).join("virtink_sriov.yaml")).unwrap();
    assert_eq!(spec.kind, SpecKind::Virtink);
    let err = load_file(std::path::Path::new("/nonexistent/petrel.yaml")).unwrap_err();
    assert!(matches!(err, SpecError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/petrel.yaml"));
}

#[test]
fn yaml_merge_keys_and_tags_are_accepted() {
    let spec = parse_str(
        r#"
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: merge}
spec:
  domain:
    devices:
      interfaces:
      - &base {name: a, bridge: {}}
      - <<: *base
        name: b
  networks:
  - {name: a, pod: {}}
  - {name: b, multus: {networkName: !custom n}}
"#,
    )
    .unwrap();
    assert_eq!(spec.interfaces[1].name.value, "b");
    assert_eq!(spec.interfaces[1].bindings[0].kind, BindingKind::Bridge);
}

#[test]
fn odd_documents_give_errors_not_panics() {
    for text in [
        "- a\n- b\n",
        "just a string\n",
        "kind: VM\nspec: 5\n",
        "kind: VM\nmetadata: 5\nspec: {domain: []}\n",
        "kind: VirtualMachineInstance\nspec: {domain: {devices: {interfaces: [5, {name: [x]}]}}, networks: [null]}\n",
        "kind: VM\nspec: {domain: {cpu: {cores: 99999999999999999999}}}\n",
        "kind: VM\nspec: {domain: {devices: {interfaces: {name: a}}}}\n",
        "{: }\n",
        "\t",
        "kind: VM\nspec:\n  domain: {memory: {guest: [1]}}\n",
    ] {
        let result = parse_str(text);
        if let Ok(spec) = result {
            let _ = crate::plan::resolve(&spec, &crate::plan::Overrides::default());
        }
    }
    let err =
        parse_str("kind: VirtualMachineInstance\nspec: {domain: {devices: {interfaces: [5]}}}\n")
            .unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.domain.devices.interfaces[0]: expected a mapping"),
        "{err}"
    );
}

#[test]
fn kubectl_list_bom_and_out_of_range_integers() {
    let list = "\u{feff}apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  \
                metadata: {name: c}\n- apiVersion: kubevirt.io/v1\n  kind: VirtualMachineInstance\n  \
                metadata: {name: listed}\n  spec: {domain: {devices: {}}}\nmetadata: {resourceVersion: \"\"}\n";
    let spec = parse_str(list).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.name, "listed");
    assert_eq!(spec.kind, SpecKind::KubeVirtVmi);
    let big = "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: x}\n\
               spec: {domain: {cpu: {cores: 99999999999999999999}, devices: {}}}\n";
    match parse_str(big) {
        Err(SpecError::Schema { issues, .. }) => assert_eq!(
            issues[0].to_string(),
            "spec.domain.cpu.cores: 99999999999999999999 is out of range"
        ),
        other => panic!("{other:?}"),
    }
    let float = big.replace("99999999999999999999", "1e30");
    match parse_str(&float) {
        Err(SpecError::Schema { issues, .. }) => assert_eq!(
            issues[0].to_string(),
            "spec.domain.cpu.cores: 1e30 is out of range"
        ),
        other => panic!("{other:?}"),
    }
    let frac = big.replace("99999999999999999999", "1.5");
    match parse_str(&frac) {
        Err(SpecError::Schema { issues, .. }) => assert_eq!(
            issues[0].to_string(),
            "spec.domain.cpu.cores: expected an integer, found 1.5"
        ),
        other => panic!("{other:?}"),
    }
}
