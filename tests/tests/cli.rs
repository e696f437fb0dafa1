//! The CLI's contract: `validate` output, error reporting and exit codes.

use std::process::Command;

use petrel_tests::{petrel_bin, Scratch};

fn petrel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(petrel_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../resources/examples/vmi-guestkit.yaml"
);

#[test]
fn validate_prints_the_plan_as_json() {
    let (code, out, err) = petrel(&["validate", EXAMPLE, "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"vcpus\""), "{out}");
    assert!(out.contains("\"memory_bytes\""), "{out}");
}

#[test]
fn bad_spec_reports_every_error_with_its_field_path_and_exits_2() {
    let dir = Scratch::new("cli-bad");
    let spec = dir.write(
        "bad.yaml",
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: bad
spec:
  domain:
    devices:
      interfaces:
        - name: default
          masquerade: {}
          macAddress: "01:00:5e:00:00:01"
          ports:
            - port: 70000
        - name: extra
          model: virtio9
          bridge: {}
  networks:
    - name: default
      pod: {}
"#,
    );
    let (code, _out, err) = petrel(&["validate", spec.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    for needle in [
        "spec.domain.devices.interfaces[0].macAddress",
        "spec.domain.devices.interfaces[0].ports[0].port",
        "spec.domain.devices.interfaces[1].model",
        "virtio9",
        "extra",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn yaml_syntax_error_exits_2() {
    let dir = Scratch::new("cli-yaml");
    let spec = dir.write("broken.yaml", "apiVersion: kubevirt.io/v1\nkind: [\n");
    let (code, _out, err) = petrel(&["validate", spec.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("error"), "{err}");
}

#[test]
fn run_without_kernel_exits_2() {
    let dir = Scratch::new("cli-nokernel");
    let spec = dir.write("vmi.yaml", &petrel_tests::vmi_yaml("nok", 1, "128Mi"));
    let (code, _out, err) = petrel(&["run", spec.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--kernel"), "{err}");
}

/// The spec can come as base64 JSON (Virtink's VM_DATA, without
/// apiVersion/kind as its controller marshals it), by flag or variable.
#[test]
fn run_takes_the_spec_as_base64_json_by_flag_or_vm_data() {
    let json = r#"{"metadata":{"name":"b64"},"spec":{"instance":{"memory":{"size":"128Mi"}}}}"#;
    let b64 = petrel_tests::base64(json.as_bytes());
    let (code, _out, err) = petrel(&["run", "--spec-base64", &b64]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--kernel"),
        "the spec loaded, only the kernel is missing: {err}"
    );
    let out = Command::new(petrel_bin())
        .arg("run")
        .env("VM_DATA", &b64)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--kernel"), "{err}");
    let out = Command::new(petrel_bin())
        .arg("run")
        .env_remove("VM_DATA")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no VM spec"), "{err}");
    let (code, _out, err) = petrel(&["run", "--spec-base64", "@@not-base64"]);
    assert_eq!(code, 2, "{err}");
}

/// A pod-network NIC in a pod namespace: `validate --host` shows the host
/// plan; without the pod interface it refuses, as `run` would, with exit 2.
#[test]
fn validate_host_prints_the_host_plan_or_refuses_a_pod_that_does_not_fit() {
    let dir = Scratch::new("cli-host");
    let spec = dir.write(
        "vmi.yaml",
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: hp}\n\
         spec:\n  domain:\n    devices:\n      interfaces: [{name: default, masquerade: {}, \
         ports: [{port: 80}]}]\n  networks: [{name: default, pod: {}}]\n",
    );
    let ns = petrel_tests::netns::NetNs::new("clihost");
    let run = |ns: &petrel_tests::netns::NetNs, args: &[&str]| {
        let out = ns.command(&petrel_bin()).args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let path = spec.to_str().unwrap();
    let (code, _out, err) = run(&ns, &["validate", "--host", path]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("spec.domain.devices.interfaces[0]: \"default\" arrives on pod interface eth0, which this pod does not have"),
        "{err}"
    );
    // The spec plan alone does not look at the pod.
    assert_eq!(run(&ns, &["validate", path]).0, 0);
    ns.exec("ip link add eth0 type veth peer name peer0 && ip link set eth0 up");
    let (code, out, err) = run(&ns, &["validate", "--host", path]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("host:\n  default: guest MAC "), "{out}");
    assert!(
        out.contains("masquerade binding on eth0 via tap tap-default, guest network 10.0.2.0/24, ports 80/TCP"),
        "{out}"
    );
    let (code, out, err) = run(&ns, &["validate", "--host", "--output", "json", path]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"pod_iface\": \"eth0\""), "{out}");
    // --tap-fd for an interface the spec does not have.
    let (code, _out, err) = run(&ns, &["validate", "--host", "--tap-fd", "nope=3", path]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--tap-fd: \"nope\" is not an interface of the spec; use one of: default"),
        "{err}"
    );
}

fn petrel_stdin(args: &[&str], input: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(petrel_bin())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const TYPO: &str =
    "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {name: t}\n\
    spec:\n  domain:\n    devices:\n      interfaces: [{name: default, masqurade: {}}]\n  \
    networks: [{name: default, pod: {}}]\n";

/// A typo's hint comes with the error it causes; each error is printed once.
#[test]
fn warnings_come_with_errors_and_each_error_prints_once() {
    let (code, _out, err) = petrel_stdin(&["validate", "-"], TYPO);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "spec.domain.devices.interfaces[0].masqurade: unknown field masqurade, ignored; did you mean masquerade?"
        ),
        "{err}"
    );
    let e = "spec.domain.devices.interfaces[0]: interface \"default\" has no binding";
    assert_eq!(err.matches(e).count(), 1, "{err}");
    assert!(!err.contains("caused by"), "{err}");
}

#[test]
fn json_output_gives_json_on_error_too() {
    let (code, out, err) = petrel_stdin(&["validate", "-", "--output", "json"], TYPO);
    assert_eq!(code, 2, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let e = &v["errors"][0];
    assert_eq!(e["path"], "spec.domain.devices.interfaces[0]");
    assert_eq!(e["value"], "");
    assert!(
        e["message"].as_str().unwrap().contains("has no binding"),
        "{v}"
    );
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("did you mean masquerade?"),
        "{v}"
    );
    // A YAML error is JSON too.
    let (code, out, _) = petrel_stdin(&["validate", "-", "--output", "json"], "kind: [\n");
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("YAML error"),
        "{v}"
    );
}

#[test]
fn stdin_kubectl_list_and_bom_are_read() {
    let list = format!(
        "\u{feff}apiVersion: v1\nkind: List\nitems:\n- {}\n",
        petrel_tests::vmi_yaml("listed", 1, "128Mi").replace('\n', "\n  ")
    );
    let (code, out, err) = petrel_stdin(&["validate", "-"], &list);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("VM listed "), "{out}");
}

/// Every spec `run` would refuse is refused by `validate` first, with the
/// same words and exit 2.
#[test]
fn every_refusal_run_can_make_validate_makes_first() {
    let vmi = |iface: &str, net: &str| {
        format!(
            "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata: {{name: r}}\n\
             spec:\n  domain:\n    devices:\n      interfaces: [{iface}]\n  networks: [{net}]\n"
        )
    };
    let pod = "{name: a, pod: {}}";
    let cases = [
        (vmi("{name: a, bridge: {}, model: igb}", pod), "interfaces[0].model: \"igb\" is not emulated by petrel"),
        (vmi("{name: a, bridge: {}, model: e1000e}", pod), "interfaces[0].model: \"e1000e\" is not emulated"),
        (vmi("{name: a, bridge: {}, model: rtl8139}", pod), "interfaces[0].model: \"rtl8139\" is not emulated"),
        (vmi("{name: a, slirp: {}}", "{name: a, multus: {networkName: n}}"), "interfaces[0].slirp: \"a\" is a multus network"),
        (vmi("{name: a, passt: {}}", "{name: a, genie: {networkName: g}}"), "interfaces[0].passt: \"a\" is a genie network"),
        (vmi("{name: a, binding: {name: l2bridge}}", pod), "interfaces[0].binding.name: \"l2bridge\" is not a network binding petrel implements"),
        (vmi("{name: a, bridge: {}}", "{name: a, genie: {networkName: flannel}}"), "networks[0].genie: \"flannel\" is a genie network"),
        (vmi("{name: a, bridge: {}, pciAddress: \"0000:01:02.0\"}", pod), "interfaces[0].pciAddress: \"0000:01:02.0\""),
        (vmi("{name: a, bridge: {}, pciAddress: \"0000:00:02.1\"}", pod), "interfaces[0].pciAddress: \"0000:00:02.1\""),
        (vmi("{name: a, masquerade: {}, portRanges: [{start: 1, end: 2}]}", pod), "interfaces[0].portRanges:"),
        (
            "apiVersion: virt.virtink.smartx.com/v1alpha1\nkind: VirtualMachine\nmetadata: {name: v}\n\
             spec:\n  instance:\n    interfaces: [{name: a, vdpa: {device: /dev/vhost-vdpa-0}}]\n  networks: [{name: a, pod: {}}]\n"
                .to_string(),
            "spec.instance.interfaces[0].vdpa: asks for the vdpa binding",
        ),
        (
            "apiVersion: virt.virtink.smartx.com/v1alpha1\nkind: VirtualMachine\nmetadata: {name: v}\n\
             spec:\n  instance:\n    interfaces: [{name: a, vhostUser: {}}]\n  networks: [{name: a, pod: {}}]\n"
                .to_string(),
            "spec.instance.interfaces[0].vhostUser: asks for the vhostUser binding",
        ),
    ];
    let dir = Scratch::new("cli-refusals");
    for (i, (yaml, expected)) in cases.iter().enumerate() {
        let spec = dir.write(&format!("r{i}.yaml"), yaml);
        let path = spec.to_str().unwrap();
        let (vcode, _, verr) = petrel(&["validate", path]);
        assert_eq!(vcode, 2, "validate {expected}: {verr}");
        assert!(
            verr.contains(expected),
            "validate: missing {expected:?} in {verr}"
        );
        let (rcode, _, rerr) = petrel(&["run", path, "--kernel", "/nonexistent"]);
        assert_eq!(rcode, 2, "run {expected}: {rerr}");
        assert_eq!(verr, rerr, "run refuses in other words than validate");
    }
}

/// Real upstream VM objects (resources/upstream/SOURCES.md) validate with
/// their upstream meaning, or name what petrel does not support.
#[test]
fn upstream_specs_validate_with_their_upstream_meaning() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../resources/upstream");
    let cases: &[(&str, Result<&[&str], &str>)] = &[
        (
            "kubevirt/vmi-masquerade.yaml",
            Ok(&[
                "testmasquerade: virtio masquerade, pod network (eth0, 10.0.2.0/24",
                "ports http 80/TCP",
            ]),
        ),
        (
            "kubevirt/vmi-multus-multiple-net.yaml",
            Ok(&[
                "default: virtio bridge, pod network (eth0)",
                "ptp: virtio bridge, multus ptp-conf (net1)",
            ]),
        ),
        (
            "kubevirt/vmi-sriov.yaml",
            Ok(&["sriov-net: virtio sriov, multus sriov/sriov-network (net1)"]),
        ),
        (
            "kubevirt/vmi-macvtap.yaml",
            Ok(&["macvtap: virtio macvtap, multus macvtapnetwork (net1)"]),
        ),
        (
            "kubevirt/vm-cirros.yaml",
            Ok(&[
                "default: virtio bridge, pod network (eth0)",
                "memory:  128Mi",
            ]),
        ),
        (
            "kubevirt/vmi-slirp.yaml",
            Ok(&[
                "testSlirp: virtio slirp, pod network (eth0)",
                "backend passt",
            ]),
        ),
        (
            "kubevirt/vmi-genie-ptp.yaml",
            Err("spec.networks[0].genie: \"ptp\" is a genie network"),
        ),
        (
            "virtink/ubuntu-container-disk.yaml",
            Ok(&[
                "pod: virtio bridge, pod network (eth0)",
                "no binding; using bridge, as Virtink's webhook does",
            ]),
        ),
        (
            "virtink/ubuntu-masquerade.yaml",
            Ok(&["pod: virtio masquerade, pod network (eth0, 10.0.2.0/30)"]),
        ),
        (
            "virtink/ubuntu-sriov.yaml",
            Ok(&[
                "pod: virtio bridge, pod network (eth0)",
                "sriov: virtio sriov, multus intel-10g-sriov-vfio (net1)",
                "vfio (intel.com/intel_10g_sriov_vfio)",
            ]),
        ),
    ];
    for (file, expected) in cases {
        let path = format!("{root}/{file}");
        let (code, out, err) = petrel(&["validate", &path]);
        match expected {
            Ok(needles) => {
                assert_eq!(code, 0, "{file}: {err}");
                for n in *needles {
                    assert!(out.contains(n), "{file}: missing {n:?} in\n{out}");
                }
            }
            Err(needle) => {
                assert_eq!(code, 2, "{file}: {out}");
                assert!(err.contains(needle), "{file}: missing {needle:?} in\n{err}");
            }
        }
    }
}
