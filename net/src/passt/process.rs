//! The passt process of one NIC: started in the foreground with its end of
//! the socket pair, waited for until it wrote its pid file (its
//! initialisation, port bindings included, is done), watched through a
//! pidfd by the VMM's control loop, and killed and reaped when dropped.
//!
//! passt cannot outlive petrel: it gets `SIGKILL` when petrel dies
//! (`PR_SET_PDEATHSIG`) and, given its socket with `--fd`, quits by itself
//! once petrel's end closes.

use std::fs;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use net_backend::PasstStream;
use tracing::{info, warn};

use crate::sys;

/// How long passt may take to start (binding every port for `-t all`
/// takes a moment on a loaded host).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors starting passt.
#[derive(Debug, thiserror::Error)]
pub enum PasstError {
    #[error(
        "interface {nic}: {} is not there; install passt (Debian package `passt`) \
         or put it on PATH",
        program.display()
    )]
    Missing { nic: String, program: PathBuf },
    #[error("interface {nic}: cannot start {}", program.display())]
    Spawn {
        nic: String,
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("interface {nic}: cannot make passt's socket pair")]
    Socket {
        nic: String,
        #[source]
        source: io::Error,
    },
    #[error("interface {nic}: cannot watch passt (pid {pid})")]
    Watch {
        nic: String,
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error(
        "interface {nic}: passt {status} before it was ready (its messages are on \
         petrel's stderr above)"
    )]
    ExitedEarly { nic: String, status: ExitStatus },
    #[error(
        "interface {nic}: passt (pid {pid}) did not get ready within {}s",
        READY_TIMEOUT.as_secs()
    )]
    NotReady { nic: String, pid: u32 },
}

/// A running passt, owned: dropping it kills and reaps the process.
#[derive(Debug)]
pub struct Passt {
    nic: String,
    child: Child,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
}

impl Passt {
    /// Starts `program` with `args` (see [`super::PasstArgs::to_args`])
    /// for NIC `nic`, connected to the returned stream, and waits until it
    /// is ready.
    pub fn spawn(
        nic: &str,
        program: &Path,
        args: &[String],
    ) -> Result<(Passt, PasstStream), PasstError> {
        let (stream, theirs) = PasstStream::pair().map_err(|source| PasstError::Socket {
            nic: nic.to_string(),
            source,
        })?;
        let pid_file = pid_file_path(nic);
        let _ = fs::remove_file(&pid_file);
        let mut cmd = Command::new(program);
        cmd.args(args)
            .arg("--fd")
            .arg(theirs.as_raw_fd().to_string())
            .arg("--pid")
            .arg(&pid_file)
            // petrel's stdout is the guest console; passt logs to stderr.
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        sys::keep_fd_and_die_with_parent(&mut cmd, theirs.as_raw_fd());
        let child = cmd.spawn().map_err(|source| {
            if source.kind() == ErrorKind::NotFound {
                PasstError::Missing {
                    nic: nic.to_string(),
                    program: program.to_path_buf(),
                }
            } else {
                PasstError::Spawn {
                    nic: nic.to_string(),
                    program: program.to_path_buf(),
                    source,
                }
            }
        })?;
        // passt has its own copy now.
        drop(theirs);
        let pid = child.id();
        let pidfd = match sys::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(source) => {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                return Err(PasstError::Watch {
                    nic: nic.to_string(),
                    pid,
                    source,
                });
            }
        };
        let mut passt = Passt {
            nic: nic.to_string(),
            child,
            pidfd,
            status: None,
        };
        let ready = passt.wait_ready(&pid_file);
        let _ = fs::remove_file(&pid_file);
        ready?;
        info!(nic, pid, program = %program.display(), args = %args.join(" "), "passt started");
        Ok((passt, stream))
    }

    /// Waits for the pid file, or for passt to exit.
    fn wait_ready(&mut self, pid_file: &Path) -> Result<(), PasstError> {
        let start = Instant::now();
        loop {
            if fs::read_to_string(pid_file).is_ok_and(|s| !s.trim().is_empty()) {
                return Ok(());
            }
            if let Some(status) = self.try_reap() {
                return Err(PasstError::ExitedEarly {
                    nic: self.nic.clone(),
                    status,
                });
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(PasstError::NotReady {
                    nic: self.nic.clone(),
                    pid: self.pid(),
                });
            }
            // Wakes early when passt exits.
            let _ = sys::poll_readable(self.pidfd.as_fd(), 20);
        }
    }

    /// The NIC this passt serves.
    pub fn nic(&self) -> &str {
        &self.nic
    }

    /// passt's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A descriptor that becomes readable when passt exits.
    pub fn exit_fd(&self) -> RawFd {
        self.pidfd.as_raw_fd()
    }

    /// passt's exit status once it has exited (it is then reaped).
    pub fn try_reap(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        if let Some(status) = self.try_reap() {
            info!(nic = %self.nic, %status, "passt had exited");
            return;
        }
        if let Err(e) = self.child.kill() {
            warn!(nic = %self.nic, error = %e, "cannot kill passt");
        }
        match self.child.wait() {
            Ok(status) => info!(nic = %self.nic, %status, "passt stopped"),
            Err(e) => warn!(nic = %self.nic, error = %e, "cannot reap passt"),
        }
    }
}

/// Where passt writes its pid once ready: private to this petrel and NIC.
fn pid_file_path(nic: &str) -> PathBuf {
    let safe: String = nic
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    static SPAWNS: AtomicU64 = AtomicU64::new(0);
    let n = SPAWNS.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "petrel-{}-passt-{safe}-{n}.pid",
        std::process::id()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use net_backend::{FrameBackend, VNET_HDR_LEN};
    use std::io::IoSlice;

    /// A stand-in for passt: `sh -c SCRIPT sh --fd N --pid FILE`, so the
    /// script sees the descriptor as `$2` and the pid file as `$4`.
    fn fake(script: &str) -> Result<(Passt, PasstStream), PasstError> {
        Passt::spawn(
            "net0",
            Path::new("/bin/sh"),
            &["-c".into(), script.into(), "sh".into()],
        )
    }

    fn alive(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn a_missing_program_is_named() {
        let err = Passt::spawn("net0", Path::new("/nonexistent/passt"), &[]).unwrap_err();
        assert!(matches!(err, PasstError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("install passt"), "{err}");
    }

    #[test]
    fn an_early_exit_is_reported_with_its_status() {
        let err = fake("exit 3").unwrap_err();
        assert!(matches!(err, PasstError::ExitedEarly { .. }), "{err:?}");
        assert!(err.to_string().contains("exit status: 3"), "{err}");
    }

    #[test]
    fn frames_flow_and_drop_kills_and_reaps() {
        // An echo peer on the inherited socket, ready once its pid is out.
        let (passt, mut stream) = fake(r#"echo $$ > "$4"; exec cat <&"$2" >&"$2""#).unwrap();
        let pid = passt.pid();
        assert!(alive(pid));
        let hdr = [0u8; VNET_HDR_LEN];
        let frame = [0x5au8; 60];
        stream
            .write_frame(&[IoSlice::new(&hdr), IoSlice::new(&frame)])
            .unwrap();
        let mut buf = [0u8; 256];
        let start = Instant::now();
        let n = loop {
            match stream.read_frame(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(start.elapsed() < Duration::from_secs(10));
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(&buf[VNET_HDR_LEN..n], &frame);
        drop(passt);
        // Reaped, not a zombie: the /proc entry is gone.
        assert!(!alive(pid));
    }

    #[test]
    fn exit_fd_turns_readable_when_passt_dies() {
        let (mut passt, _stream) = fake(r#"echo $$ > "$4"; exec sleep 30"#).unwrap();
        assert!(!sys::poll_readable(passt.pidfd.as_fd(), 0).unwrap());
        assert!(passt.try_reap().is_none());
        // SAFETY: kill(2) of our own child, integers only.
        assert_eq!(unsafe { libc::kill(passt.pid() as i32, libc::SIGKILL) }, 0);
        assert!(sys::poll_readable(passt.pidfd.as_fd(), 10_000).unwrap());
        assert!(passt.try_reap().is_some());
    }
}
