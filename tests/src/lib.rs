//! Fixtures for petrel's real-guest integration tests: where the guest
//! build and the `petrel` binary are, spec files in a scratch directory, and
//! a running VMM whose console is collected line by line and which is killed
//! when the fixture drops.

pub mod cluster;
pub mod cni;
pub mod guestnet;
pub mod netns;
pub mod podman;
pub mod unpriv;
pub mod vfio_loopback;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous: a guest boot takes 20–50 s on the PVM host, more under load.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The guest kit built by resources/guest/build.sh.
pub fn guest_dir() -> PathBuf {
    let dir = std::env::var_os("PETREL_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/cache"));
            cache.join("petrel-guest/out")
        });
    assert!(
        dir.join("vmlinux").is_file() && dir.join("initramfs.cpio").is_file(),
        "guest kit missing in {}: run resources/guest/build.sh (or `make test`, which does)",
        dir.display()
    );
    dir
}

pub fn guest_cmdline() -> String {
    let p = guest_dir().join("cmdline.txt");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The petrel binary: $PETREL_BIN, else target/{debug,release}/petrel.
pub fn petrel_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PETREL_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join("petrel");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "petrel binary not found under {}: build it first (cargo build -p vmm) or set PETREL_BIN",
        target.display()
    );
}

/// Standard base64 (RFC 4648), what the guest's /init decodes.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A scratch directory removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("petrel-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Adds `run SPEC --kernel … --initrd …` (the guest kit in `kit`) to a
/// petrel command.
pub fn run_args(c: &mut Command, spec: &Path, kit: &Path) {
    c.arg("run")
        .arg(spec)
        .arg("--kernel")
        .arg(kit.join("vmlinux"))
        .arg("--initrd")
        .arg(kit.join("initramfs.cpio"));
}

/// A minimal KubeVirt VMI for the guest kit, without NICs.
pub fn vmi_yaml(name: &str, cores: u32, memory: &str) -> String {
    format!(
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata:\n  name: {name}\nspec:\n  domain:\n    cpu:\n      cores: {cores}\n    memory:\n      guest: {memory}\n    devices:\n      autoattachPodInterface: false\n"
    )
}

#[derive(Default)]
struct Output {
    lines: Vec<String>,
    closed: bool,
}

/// A running `petrel run`; its stdout (the guest console) is collected.
pub struct Vmm {
    child: Child,
    stdout: Arc<(Mutex<Output>, Condvar)>,
    stderr: Arc<Mutex<String>>,
    started: Instant,
}

impl Vmm {
    /// Boots `spec` with the guest kit's kernel and initramfs; `extra_cmdline`
    /// is appended to the kit's command line; `guest_cmd` runs in the guest.
    pub fn boot(spec: &Path, extra_cmdline: &str, guest_cmd: Option<&str>, args: &[&str]) -> Self {
        Self::boot_in(None, spec, extra_cmdline, guest_cmd, args)
    }

    /// Like [`Vmm::boot`], with petrel running inside network namespace `netns`.
    pub fn boot_in(
        netns: Option<&str>,
        spec: &Path,
        extra_cmdline: &str,
        guest_cmd: Option<&str>,
        args: &[&str],
    ) -> Self {
        Self::boot_with_fds(netns, spec, extra_cmdline, guest_cmd, args, &[])
    }

    /// Like [`Vmm::boot_in`]; the descriptors `fds` stay open (same numbers)
    /// in petrel, for `--tap-fd`.
    pub fn boot_with_fds(
        netns: Option<&str>,
        spec: &Path,
        extra_cmdline: &str,
        guest_cmd: Option<&str>,
        args: &[&str],
        fds: &[i32],
    ) -> Self {
        let dir = guest_dir();
        let mut cmdline = guest_cmdline();
        if !extra_cmdline.is_empty() {
            cmdline.push(' ');
            cmdline.push_str(extra_cmdline);
        }
        if let Some(cmd) = guest_cmd {
            cmdline.push_str(" guest.cmd=");
            cmdline.push_str(&base64(cmd.as_bytes()));
        }
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(petrel_bin());
                c
            }
            None => Command::new(petrel_bin()),
        };
        run_args(&mut c, spec, &dir);
        c.arg("--cmdline")
            .arg(&cmdline)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !fds.is_empty() {
            let fds = fds.to_vec();
            // SAFETY: the closure runs in the forked child before exec and
            // only calls fcntl(2), which is async-signal-safe.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                    for &fd in &fds {
                        if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        Self::spawn(c)
    }

    pub fn spawn(mut c: Command) -> Self {
        let started = Instant::now();
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start petrel: {e}"));
        let stdout = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            let s = stdout.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(out);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                            eprintln!("[guest +{:6.2}s] {line}", started.elapsed().as_secs_f64());
                            let (m, cv) = &*s;
                            m.lock().unwrap().lines.push(line);
                            cv.notify_all();
                        }
                    }
                }
                let (m, cv) = &*s;
                m.lock().unwrap().closed = true;
                cv.notify_all();
            });
        }
        if let Some(mut err) = child.stderr.take() {
            let s = stderr.clone();
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                s.lock().unwrap().push_str(&text);
            });
        }
        Self {
            child,
            stdout,
            stderr,
            started,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until a console line contains `marker`; returns that line.
    pub fn wait_for(&self, marker: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.stdout;
        let mut out = m.lock().unwrap();
        loop {
            if let Some(l) = out.lines.iter().find(|l| l.contains(marker)) {
                return l.clone();
            }
            let now = Instant::now();
            if out.closed || now >= deadline {
                let why = if out.closed {
                    "petrel's console closed"
                } else {
                    "timed out"
                };
                let lines = out.lines.join("\n");
                drop(out);
                panic!(
                    "{why} waiting for {marker:?} after {:?}\nconsole:\n{lines}\nstderr:\n{}",
                    self.started.elapsed(),
                    self.stderr()
                );
            }
            out = cv.wait_timeout(out, deadline - now).unwrap().0;
        }
    }

    /// Waits until `n` console lines contain `marker` (e.g. the second
    /// boot's markers after a VM reset); returns the n-th.
    pub fn wait_for_nth(&self, marker: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.console();
            let seen: Vec<&String> = lines.iter().filter(|l| l.contains(marker)).collect();
            if let Some(l) = seen.get(n.saturating_sub(1)) {
                return (*l).clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out waiting for {marker:?} #{n}\nconsole:\n{}\nstderr:\n{}",
                    lines.join("\n"),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn console(&self) -> Vec<String> {
        self.stdout.0.lock().unwrap().lines.clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for petrel to exit and for its console to be drained.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let (m, cv) = &*self.stdout;
                let mut out = m.lock().unwrap();
                while !out.closed {
                    out = cv.wait_timeout(out, Duration::from_secs(5)).unwrap().0;
                }
                drop(out);
                // give the stderr reader a moment to finish
                std::thread::sleep(Duration::from_millis(100));
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "petrel did not exit within {timeout:?}\nconsole:\n{}\nstderr:\n{}",
                    self.console().join("\n"),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
