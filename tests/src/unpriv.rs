//! Running petrel (or any program) the way KubeVirt's compute container
//! does: as an unprivileged uid (107) with no capabilities but the listed
//! ones, in a pod network namespace, with /dev/kvm usable by that uid.
//!
//! The machine's own /dev/kvm and /dev/net/tun are never touched: inside a
//! private mount namespace fresh character nodes (10:232 and 10:200, owned
//! by the uid, as KubeVirt's device plugins hand them to the compute
//! container) are bind-mounted over them, then `setpriv` drops to the uid. The scratch
//! directories the program reads or writes must be reachable by the uid
//! ([`Scratch::share_with`]).

use std::path::Path;
use std::process::Command;

use crate::{base64, guest_cmdline, guest_dir, petrel_bin, run_args, Scratch};

/// KubeVirt's `qemu` user and group in virt-launcher.
pub const QEMU_UID: u32 = 107;

/// A command that runs `program args…` as `uid`/`uid` with exactly `caps`
/// (names as setpriv spells them, e.g. `net_bind_service`) in the ambient,
/// inheritable and bounding sets, no supplementary groups, no_new_privs,
/// inside netns `netns` (when given) and with private /dev/kvm and
/// /dev/net/tun nodes owned by `uid`. `node_dir` holds the node (it must not be on a nodev
/// mount: /tmp is fine).
pub fn command(
    netns: Option<&str>,
    uid: u32,
    caps: &[&str],
    node_dir: &Path,
    program: &Path,
) -> Command {
    let set: String = caps.iter().map(|c| format!(",+{c}")).collect();
    let node = node_dir.join("kvm");
    let tun = node_dir.join("tun");
    let netns_exec = netns
        .map(|ns| format!("ip netns exec {ns} "))
        .unwrap_or_default();
    let script = format!(
        "set -e; rm -f {node}; mknod {node} c 10 232; chown {uid}:{uid} {node}; chmod 0600 {node}; \
         mount --bind {node} /dev/kvm; \
         rm -f {tun}; mknod {tun} c 10 200; chown {uid}:{uid} {tun}; chmod 0600 {tun}; \
         mount --bind {tun} /dev/net/tun; \
         exec {netns_exec}setpriv --reuid {uid} --regid {uid} --clear-groups --no-new-privs \
         --inh-caps=-all{set} --ambient-caps=-all{set} --bounding-set=-all{set} -- \"$@\"",
        node = node.display(),
        tun = tun.display(),
    );
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(script)
        .arg("sh")
        .arg(program);
    c
}

impl Scratch {
    /// Makes the scratch directory (and its parents up to /tmp) reachable
    /// and writable by `uid`, so a dropped-privilege program can use it.
    pub fn share_with(&self, uid: u32) {
        let p = self.path().display().to_string();
        crate::netns::sh(&format!("chown {uid}:{uid} {p} && chmod 0755 {p}"));
    }
}

/// Panics unless every path in `paths` is readable by `uid` (the guest
/// kit, the petrel binary and their parent directories must be).
pub fn assert_readable(uid: u32, paths: &[&Path]) {
    for p in paths {
        let ok = Command::new("setpriv")
            .args([
                "--reuid",
                &uid.to_string(),
                "--regid",
                &uid.to_string(),
                "--clear-groups",
            ])
            .args(["test", "-r"])
            .arg(p)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "{} is not readable by uid {uid}", p.display());
    }
}

/// `petrel run SPEC` with the guest kit as `uid` with exactly `caps` inside
/// `netns` (private device nodes in `node_dir`); the guest runs `guest_cmd`.
/// stdin is closed and stdout/stderr are piped, as `crate::Vmm::spawn` wants;
/// the caller adds its own flags (`--run-dir` …) before spawning.
pub fn petrel_run(
    netns: &str,
    uid: u32,
    caps: &[&str],
    node_dir: &Path,
    spec: &Path,
    guest_cmd: &str,
) -> Command {
    let kit = guest_dir();
    let mut c = command(Some(netns), uid, caps, node_dir, &petrel_bin());
    run_args(&mut c, spec, &kit);
    c.arg("--cmdline")
        .arg(format!(
            "{} guest.cmd={}",
            guest_cmdline(),
            base64(guest_cmd.as_bytes())
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}
