//! The migration endpoints Cloud Hypervisor's API takes: `unix:PATH` (what
//! KubeVirt and Virtink proxy node-to-node traffic onto) and `tcp:HOST:PORT`,
//! and the `file://` directories of snapshots.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use super::MigrationError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationUrl {
    Unix(PathBuf),
    Tcp(String),
}

impl MigrationUrl {
    pub fn parse(url: &str) -> Result<Self, MigrationError> {
        let bad = |reason| MigrationError::Url {
            url: url.to_string(),
            reason,
        };
        if let Some(p) = url.strip_prefix("unix:") {
            let p = p.strip_prefix("//").unwrap_or(p);
            if p.is_empty() {
                return Err(bad("no socket path"));
            }
            return Ok(Self::Unix(PathBuf::from(p)));
        }
        if let Some(a) = url.strip_prefix("tcp:") {
            let a = a.strip_prefix("//").unwrap_or(a);
            if !a.contains(':') {
                return Err(bad("expected tcp:HOST:PORT"));
            }
            return Ok(Self::Tcp(a.to_string()));
        }
        Err(bad("expected unix:PATH or tcp:HOST:PORT"))
    }

    /// Connects (the sending side).
    pub fn connect(&self) -> std::io::Result<Conn> {
        let c = match self {
            Self::Unix(p) => Conn::Unix(UnixStream::connect(p)?),
            Self::Tcp(a) => Conn::Tcp(TcpStream::connect(a)?),
        };
        c.configure()?;
        Ok(c)
    }

    /// Listens and accepts one connection (the receiving side); a stale
    /// socket file is replaced and the new one removed afterwards. Gives
    /// up when SIGTERM or SIGINT is pending (the control loop, which reads
    /// them, does not run meanwhile), so a target whose source never comes
    /// can still be stopped.
    pub fn accept(&self) -> Result<Conn, MigrationError> {
        let c = match self {
            Self::Unix(p) => {
                let _ = std::fs::remove_file(p);
                let l = std::os::unix::net::UnixListener::bind(p)?;
                let r = accept_until_signal(&l, || l.accept().map(|(s, _)| Conn::Unix(s)));
                let _ = std::fs::remove_file(p);
                r?
            }
            Self::Tcp(a) => {
                let l = std::net::TcpListener::bind(a)?;
                accept_until_signal(&l, || l.accept().map(|(s, _)| Conn::Tcp(s)))?
            }
        };
        c.configure()?;
        Ok(c)
    }
}

/// How long a migration socket may make no progress before the migration
/// fails (a hung peer must not hold the source's guest stopped forever).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `listener` until a peer connects or a stop signal is pending.
fn accept_until_signal(
    listener: &impl AsRawFd,
    accept: impl Fn() -> std::io::Result<Conn>,
) -> Result<Conn, MigrationError> {
    loop {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live, initialised pollfd and its count.
        let n = unsafe { libc::poll(&mut pfd, 1, 200) };
        if n > 0 {
            return Ok(accept()?);
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e.into());
            }
        }
        if stop_signal_pending() {
            return Err(MigrationError::Stopped);
        }
    }
}

/// Whether SIGTERM or SIGINT waits in the (blocked) pending set.
fn stop_signal_pending() -> bool {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: sigpending fills the owned, zero-initialised sigset_t.
    if unsafe { libc::sigpending(set.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: zero-initialised and filled by sigpending: a valid sigset_t.
    let set = unsafe { set.assume_init() };
    let has = |sig| {
        // SAFETY: only reads the initialised set.
        unsafe { libc::sigismember(&set, sig) == 1 }
    };
    has(libc::SIGTERM) || has(libc::SIGINT)
}

/// A `file://` URL's directory.
pub fn file_dir(url: &str) -> Result<PathBuf, MigrationError> {
    let p = url.strip_prefix("file://").ok_or(MigrationError::Url {
        url: url.to_string(),
        reason: "expected file:///DIRECTORY",
    })?;
    if !p.starts_with('/') {
        return Err(MigrationError::Url {
            url: url.to_string(),
            reason: "the directory must be absolute (file:///DIR)",
        });
    }
    Ok(PathBuf::from(p))
}

/// A connected migration socket.
pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn configure(&self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => {
                s.set_read_timeout(Some(STALL_TIMEOUT))?;
                s.set_write_timeout(Some(STALL_TIMEOUT))
            }
            Conn::Tcp(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(STALL_TIMEOUT))?;
                s.set_write_timeout(Some(STALL_TIMEOUT))
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ch_urls() {
        assert_eq!(
            MigrationUrl::parse("unix:/run/m.sock").unwrap(),
            MigrationUrl::Unix("/run/m.sock".into())
        );
        assert_eq!(
            MigrationUrl::parse("tcp:10.0.0.1:6000").unwrap(),
            MigrationUrl::Tcp("10.0.0.1:6000".into())
        );
        assert!(MigrationUrl::parse("unix:").is_err());
        assert!(MigrationUrl::parse("http://x").is_err());
        assert_eq!(file_dir("file:///tmp/s").unwrap(), PathBuf::from("/tmp/s"));
        assert!(file_dir("file://rel").is_err());
        assert!(file_dir("/tmp/s").is_err());
    }
}
