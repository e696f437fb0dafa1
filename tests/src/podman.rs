//! petrel's OCI image under podman: building it with the same script
//! `make image` runs, and the `podman run` line a pod would amount to on
//! this host (runc, cgroupfs, bounded ulimits, the pod's network namespace
//! — never podman's own default network, which would change the host's
//! firewall and add a bridge on the host).

use std::path::Path;
use std::process::Command;

use crate::netns::sh;

/// Why podman cannot be used here, if it cannot.
pub fn skip_reason() -> Option<String> {
    for tool in ["podman", "runc"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Some(format!(
                "{tool} is not installed (apt-get install podman runc)"
            ));
        }
    }
    None
}

/// podman with the global options this host needs.
pub fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    c
}

/// An image built by resources/scripts/build-image.sh, removed on drop.
pub struct Image {
    pub tag: String,
    /// Its size in bytes, as podman reports it.
    pub size: u64,
}

impl Image {
    /// Builds the image around `binary` (the petrel the tests use) under a
    /// tag of its own.
    pub fn build(binary: &Path) -> Self {
        let tag = format!("localhost/petrel-test:{}", std::process::id());
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../resources/scripts/build-image.sh");
        let out = sh(&format!(
            "{} --binary {} --tag {tag}",
            script.display(),
            binary.display()
        ));
        let size = out
            .split_whitespace()
            .last()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no size from build-image.sh: {out:?}"));
        Self { tag, size }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rmi", "--force", &self.tag])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// `podman run` of `image` as container `name` joined to network
/// namespace `netns`, with KVM and tun devices and petrel's arguments to
/// follow.
pub fn run_in_netns(image: &Image, name: &str, netns: &str, extra: &[&str]) -> Command {
    let mut c = podman();
    c.args(["run", "--rm", "--name", name])
        .arg(format!("--network=ns:/run/netns/{netns}"))
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1000:1000",
        ])
        .args(["--device", "/dev/kvm", "--device", "/dev/net/tun"])
        .args(extra)
        .arg(&image.tag);
    c
}

/// `podman stop -t secs name`: SIGTERM, then SIGKILL after the grace period.
pub fn stop(name: &str, secs: u32) {
    sh(&format!(
        "podman --runtime runc --cgroup-manager cgroupfs stop -t {secs} {name}"
    ));
}
