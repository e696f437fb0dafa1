//! The migration endpoints Cloud Hypervisor's API takes: `unix:PATH` (what
//! KubeVirt and Virtink proxy node-to-node traffic onto) and `tcp:HOST:PORT`,
//! and the `file://` directories of snapshots.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

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
        Ok(match self {
            Self::Unix(p) => Conn::Unix(UnixStream::connect(p)?),
            Self::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
        })
    }

    /// Listens and accepts one connection (the receiving side); a stale
    /// socket file is replaced and the new one removed afterwards.
    pub fn accept(&self) -> std::io::Result<Conn> {
        Ok(match self {
            Self::Unix(p) => {
                let _ = std::fs::remove_file(p);
                let l = std::os::unix::net::UnixListener::bind(p)?;
                let r = l.accept();
                let _ = std::fs::remove_file(p);
                Conn::Unix(r?.0)
            }
            Self::Tcp(a) => {
                let l = std::net::TcpListener::bind(a)?;
                let s = l.accept()?.0;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
        })
    }
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
