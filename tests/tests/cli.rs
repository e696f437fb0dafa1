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
