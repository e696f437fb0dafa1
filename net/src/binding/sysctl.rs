//! Network-namespace sysctls the bindings need, read before they are
//! written.
//!
//! In a container `/proc/sys` is mounted read-only and petrel may run
//! without the capability to write it; the pod then has to declare the
//! value (`securityContext.sysctls`, `podman run --sysctl`). So a sysctl
//! that already has the wanted value is left alone, and one that must
//! change but cannot be written fails with [`SysctlError::ReadOnly`], whose
//! message names the sysctl and how a pod declares it.

use std::fs;
use std::io;

/// A sysctl could not be read, or must change and could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// Reading its `/proc/sys` file failed.
    #[error("sysctl {name}: cannot read {path}")]
    Read {
        /// Dotted name (`net.ipv4.ip_forward`).
        name: String,
        /// Its `/proc/sys` file.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The value must change and `/proc/sys` is read-only (or not ours to
    /// write) here.
    #[error(
        "sysctl {name} is {current} and must be {wanted}, but /proc/sys is read-only in this \
         container; declare it in the pod: securityContext.sysctls: [{{name: {name}, value: \
         \"{wanted}\"}}] (an unsafe sysctl: the kubelet needs --allowed-unsafe-sysctls={name}; \
         podman: --sysctl {name}={wanted})"
    )]
    ReadOnly {
        /// Dotted name.
        name: String,
        /// The value it has.
        current: String,
        /// The value the binding needs.
        wanted: String,
        /// The write's error (EROFS, EACCES or EPERM).
        #[source]
        source: io::Error,
    },
    /// Writing failed for another reason.
    #[error("sysctl {name}: cannot set it to {wanted}")]
    Write {
        /// Dotted name.
        name: String,
        /// The value the binding needs.
        wanted: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The `/proc/sys` file of dotted sysctl `name` (`net.ipv4.ip_forward` →
/// `/proc/sys/net/ipv4/ip_forward`).
pub fn sysctl_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// Makes sysctl `name` (dotted) have `wanted` in the calling thread's
/// network namespace: reads it, and writes only when it differs.
pub fn ensure_sysctl(name: &str, wanted: &str) -> Result<(), SysctlError> {
    ensure_at(name, &sysctl_path(name), wanted)
}

/// [`ensure_sysctl`] on an explicit file (tests use a scratch file).
pub(super) fn ensure_at(name: &str, path: &str, wanted: &str) -> Result<(), SysctlError> {
    let current = fs::read_to_string(path).map_err(|source| SysctlError::Read {
        name: name.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    let current = current.trim();
    if current == wanted {
        tracing::debug!(sysctl = name, value = wanted, "sysctl already set");
        return Ok(());
    }
    if let Err(source) = fs::write(path, wanted) {
        let read_only = matches!(
            source.raw_os_error(),
            Some(libc::EROFS | libc::EACCES | libc::EPERM)
        );
        return Err(if read_only {
            SysctlError::ReadOnly {
                name: name.to_owned(),
                current: current.to_owned(),
                wanted: wanted.to_owned(),
                source,
            }
        } else {
            SysctlError::Write {
                name: name.to_owned(),
                wanted: wanted.to_owned(),
                source,
            }
        });
    }
    tracing::info!(sysctl = name, value = wanted, "sysctl set");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn scratch(tag: &str, content: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("petrel-sysctl-{tag}-{}", std::process::id()));
        fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn dotted_name_to_path() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(
            sysctl_path("net.ipv6.conf.all.forwarding"),
            "/proc/sys/net/ipv6/conf/all/forwarding"
        );
    }

    #[test]
    fn right_value_is_not_written() {
        let p = scratch("same", "1\n");
        // Read-only for everyone: a write would fail (root bypasses the
        // mode, so also check the content stays byte for byte).
        fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
        ensure_at("net.ipv4.ip_forward", p.to_str().unwrap(), "1").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "1\n");
        fs::remove_file(&p).unwrap();
    }

    #[test]
    fn different_value_is_written() {
        let p = scratch("diff", "0\n");
        ensure_at("net.ipv4.ip_forward", p.to_str().unwrap(), "1").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "1");
        fs::remove_file(&p).unwrap();
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = ensure_at("net.x", "/nonexistent/petrel/sysctl", "1").unwrap_err();
        assert!(matches!(err, SysctlError::Read { .. }), "{err}");
    }

    #[test]
    fn read_only_message_says_how_a_pod_declares_it() {
        let err = SysctlError::ReadOnly {
            name: "net.ipv4.ip_forward".into(),
            current: "0".into(),
            wanted: "1".into(),
            source: io::Error::from_raw_os_error(libc::EROFS),
        };
        let msg = err.to_string();
        assert!(
            msg.contains("net.ipv4.ip_forward is 0 and must be 1"),
            "{msg}"
        );
        assert!(msg.contains("read-only"), "{msg}");
        assert!(
            msg.contains("securityContext.sysctls: [{name: net.ipv4.ip_forward, value: \"1\"}]"),
            "{msg}"
        );
        assert!(msg.contains("--sysctl net.ipv4.ip_forward=1"), "{msg}");
    }
}
