//! Network namespaces and host-side helpers the networking tests create and
//! remove: everything lives inside namespaces named `petrel-t-*`, never on
//! the machine's own interfaces.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs a command to completion and panics with its output on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace removed (with everything in it) on drop.
pub struct NetNs {
    name: String,
    children: Vec<Child>,
}

impl NetNs {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("petrel-t-{tag}-{}-{n}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        sh(&format!("ip netns add {name}"));
        let ns = Self {
            name,
            children: Vec::new(),
        };
        ns.exec("ip link set lo up");
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `cmd` (sh syntax) inside the namespace; panics on failure.
    pub fn exec(&self, cmd: &str) -> String {
        sh(&format!(
            "ip netns exec {} sh -c '{}'",
            self.name,
            cmd.replace('\'', "'\\''")
        ))
    }

    /// Opens `queues` queues of tap `tap` inside the namespace (from a
    /// thread that enters it) and returns the descriptors, close-on-exec,
    /// for handing to petrel with `--tap-fd`.
    pub fn open_tap_fds(&self, tap: &str, queues: u16) -> Vec<std::os::fd::OwnedFd> {
        let path = format!("/run/netns/{}", self.name);
        let tap = tap.to_string();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns(2) on a namespace fd we own; it only changes this
            // thread's network namespace.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            net_backend::Tap::open_named(&tap, queues)
                .unwrap()
                .iter()
                .map(|t| std::os::fd::AsFd::as_fd(t).try_clone_to_owned().unwrap())
                .collect()
        })
        .join()
        .unwrap()
    }

    /// A command object that runs `program args` inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Starts a background helper (sh syntax) in the namespace, killed on drop.
    pub fn spawn(&mut self, cmd: &str) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            // its own process group, so drop can end a whole pipeline
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        self.children.push(child);
    }

    /// Starts `udhcpd` leasing exactly `guest_ip` on `iface` with `router`.
    pub fn start_udhcpd(&mut self, dir: &Path, iface: &str, guest_ip: &str, router: &str) {
        self.start_udhcpd_with(dir, iface, guest_ip, router, true);
    }

    /// Like [`NetNs::start_udhcpd`]; without `with_router` the lease has no
    /// router option (a secondary network must not take the default route).
    pub fn start_udhcpd_with(
        &mut self,
        dir: &Path,
        iface: &str,
        guest_ip: &str,
        router: &str,
        with_router: bool,
    ) {
        let conf = dir.join(format!("udhcpd-{}-{iface}.conf", self.name));
        let leases = dir.join(format!("udhcpd-{}-{iface}.leases", self.name));
        std::fs::write(&leases, b"").unwrap();
        std::fs::write(
            &conf,
            format!(
                "start {guest_ip}\nend {guest_ip}\ninterface {iface}\nlease_file {}\noption subnet 255.255.255.0\n{}option dns {router}\noption lease 3600\n",
                leases.display(),
                if with_router { format!("option router {router}\n") } else { String::new() }
            ),
        )
        .unwrap();
        self.spawn(&format!("exec busybox udhcpd -f -a 50 {}", conf.display()));
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for c in &mut self.children {
            // SAFETY: kill(2) on the process group we created for this
            // child; no memory is involved.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
