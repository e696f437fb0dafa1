//! SR-IOV NICs: how petrel finds the VF (device-plugin env, network-status
//! from the downward API) and refuses devices VFIO cannot take, against
//! this machine's real sysfs; and, on a host with an SR-IOV NIC, a real VF
//! passed through to a guest (skipped with its reason where there is none;
//! see the README for running it).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use petrel_tests::{guest_cmdline, guest_dir, petrel_bin, run_args, Scratch, Vmm};

/// A VMI whose NICs are SR-IOV interfaces on multus networks
/// `(name, networkName, pciAddress)`.
fn sriov_vmi(name: &str, nics: &[(&str, &str, Option<&str>)]) -> String {
    let mut s = format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata:\n  name: {name}\nspec:\n  domain:\n    cpu:\n      cores: 1\n    memory:\n      guest: 128Mi\n    devices:\n      interfaces:\n"
    );
    for (n, _, pci) in nics {
        s.push_str(&format!("        - name: {n}\n          sriov: {{}}\n"));
        if let Some(p) = pci {
            s.push_str(&format!("          pciAddress: \"{p}\"\n"));
        }
    }
    s.push_str("  networks:\n");
    for (n, net, _) in nics {
        s.push_str(&format!(
            "    - name: {n}\n      multus:\n        networkName: {net}\n"
        ));
    }
    s
}

/// `petrel run` with a clean environment plus `env`; returns (exit code,
/// stderr).
fn run_with_env(spec: &Path, pod_info: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let dir = guest_dir();
    let mut c = Command::new(petrel_bin());
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied());
    run_args(&mut c, spec, &dir);
    c.arg("--pod-info").arg(pod_info);
    let out = c.output().unwrap();
    let run = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    // `validate --host` refuses what `run` refuses, with the same words.
    let out = Command::new(petrel_bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(["validate", "--host", "--pod-info"])
        .arg(pod_info)
        .arg(spec)
        .output()
        .unwrap();
    let validate = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(run.0),
        "validate --host:\n{validate}"
    );
    let body = |s: &str| {
        s.lines()
            .filter(|l| !l.contains(" WARN "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        body(&validate),
        body(&run.1),
        "validate --host and run differ"
    );
    run
}

/// A PCI function of this machine that is not bound to vfio-pci, and the
/// name of its driver (None: no driver).
fn non_vfio_device() -> (String, Option<String>) {
    let mut devs: Vec<_> = std::fs::read_dir("/sys/bus/pci/devices")
        .expect("this test needs /sys/bus/pci (a machine with PCI)")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    devs.sort();
    for d in devs {
        let driver = std::fs::read_link(format!("/sys/bus/pci/devices/{d}/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        if driver.as_deref() != Some("vfio-pci") {
            return (d, driver);
        }
    }
    panic!("every PCI function of this machine is bound to vfio-pci");
}

#[test]
fn every_sriov_nic_without_a_usable_vf_is_reported_at_once() {
    let dir = Scratch::new("sriov-errors");
    let pod_info = dir.path().join("podinfo");
    std::fs::create_dir_all(&pod_info).unwrap();
    let spec = dir.write(
        "vmi.yaml",
        &sriov_vmi(
            "sriov-err",
            &[
                ("sriov-a", "sriov-a-nad", None),
                ("sriov-b", "sriov-b-nad", None),
            ],
        ),
    );
    let (dev, driver) = non_vfio_device();
    let (code, err) = run_with_env(
        &spec,
        &pod_info,
        &[
            ("KUBEVIRT_RESOURCE_NAME_sriov-b", "petrel.test/vf_pool"),
            ("PCIDEVICE_PETREL_TEST_VF_POOL", &dev),
        ],
    );
    assert_eq!(code, 2, "{err}");
    // sriov-a: no source at all; the fix is named.
    for needle in ["sriov-a", "KUBEVIRT_RESOURCE_NAME_sriov-a", "resourceName"] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // sriov-b: found in the device plugin's pool, refused for its driver.
    let bound = driver.clone().unwrap_or_else(|| "no driver".into());
    for needle in [
        "sriov-b",
        dev.as_str(),
        "vfio-pci",
        bound.as_str(),
        "driver_override",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn network_status_from_the_downward_api_names_the_vf() {
    let dir = Scratch::new("sriov-status");
    let pod_info = dir.path().join("podinfo");
    std::fs::create_dir_all(&pod_info).unwrap();
    // The kubelet's format when all annotations are projected: key="value"
    // with the value Go-quoted.
    let status = r#"[{"name":"default/sriov-net","interface":"net1","device-info":{"type":"pci","version":"1.0.0","pci":{"pci-address":"0000:7f:1f.7"}}}]"#;
    let quoted = status.replace('\\', "\\\\").replace('"', "\\\"");
    std::fs::write(
        pod_info.join("annotations"),
        format!("kubevirt.io/domain=\"s\"\nk8s.v1.cni.cncf.io/network-status=\"{quoted}\"\n"),
    )
    .unwrap();
    let spec = dir.write(
        "vmi.yaml",
        &sriov_vmi("sriov-st", &[("sriov", "default/sriov-net", None)]),
    );
    let (code, err) = run_with_env(&spec, &pod_info, &[]);
    assert_eq!(code, 2, "{err}");
    for needle in ["0000:7f:1f.7", "sriov"] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(
        !err.contains("KUBEVIRT_RESOURCE_NAME"),
        "the network-status entry must have been used:\n{err}"
    );
}

/// Says why a test did not run, on the real stderr: libtest captures
/// `println!`/`eprintln!` of passing tests, and a skip must be visible in
/// `make test`'s output.
fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED real_vf_is_passed_through_to_the_guest: {why}"
    );
}

/// Runs on a host with VFIO and a VF bound to vfio-pci, named by
/// PETREL_TEST_VF (e.g. 0000:65:00.2); see the README.
#[test]
fn real_vf_is_passed_through_to_the_guest() {
    if !Path::new("/dev/vfio/vfio").exists() {
        skip(
            "/dev/vfio/vfio is absent (no VFIO on this host: load vfio-pci and bind a VF to it, \
             then set PETREL_TEST_VF)",
        );
        return;
    }
    let Ok(vf) = std::env::var("PETREL_TEST_VF") else {
        skip("PETREL_TEST_VF is not set (name a VF bound to vfio-pci, e.g. PETREL_TEST_VF=0000:65:00.2)");
        return;
    };
    let sys = format!("/sys/bus/pci/devices/{vf}");
    let read = |f: &str| {
        std::fs::read_to_string(format!("{sys}/{f}"))
            .unwrap_or_else(|e| panic!("{sys}/{f}: {e}"))
            .trim()
            .to_string()
    };
    let (vendor, device) = (read("vendor"), read("device"));
    let dir = Scratch::new("sriov-real");
    let pod_info = dir.path().join("podinfo");
    std::fs::create_dir_all(&pod_info).unwrap();
    let spec = dir.write(
        "vmi.yaml",
        &sriov_vmi(
            "sriov-real",
            &[("sriov", "sriov-net", Some("0000:00:05.0"))],
        ),
    );
    let guest = "d=/sys/bus/pci/devices/0000:00:05.0; \
                 echo VF-IDS $(cat $d/vendor) $(cat $d/device); \
                 echo VF-BARS $(head -6 $d/resource | grep -c -v '0x0000000000000000 0x0000000000000000')";
    let cmdline = format!(
        "{} guest.cmd={}",
        guest_cmdline(),
        petrel_tests::base64(guest.as_bytes())
    );
    let gd = guest_dir();
    let mut c = Command::new(petrel_bin());
    c.env("KUBEVIRT_RESOURCE_NAME_sriov", "petrel.test/vf")
        .env("PCIDEVICE_PETREL_TEST_VF", &vf);
    run_args(&mut c, &spec, &gd);
    c.arg("--cmdline")
        .arg(&cmdline)
        .arg("--pod-info")
        .arg(&pod_info)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut vmm = Vmm::spawn(c);
    let ids = vmm.wait_for("VF-IDS", Duration::from_secs(180));
    assert!(
        ids.contains(&format!("VF-IDS {vendor} {device}")),
        "guest sees {ids:?}, host VF is {vendor} {device}"
    );
    let host_bars = read("resource")
        .lines()
        .take(6)
        .filter(|l| !l.starts_with("0x0000000000000000 0x0000000000000000"))
        .count();
    let bars = vmm.wait_for("VF-BARS", Duration::from_secs(60));
    assert!(
        bars.contains(&format!("VF-BARS {host_bars}")),
        "guest sees {bars:?}, host VF has {host_bars} BARs"
    );
    let st = vmm.wait_exit(Duration::from_secs(120));
    assert!(st.success(), "{}", vmm.stderr());
}
