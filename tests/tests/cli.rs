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
