//! The privilege split's record: what `petrel net-setup` (root, in the
//! pod's network namespace) prepared for each pod-bound NIC, so that
//! `petrel run` as the unprivileged uid finds it and only attaches.
//!
//! The record is a JSON file `<run dir>/<vm>/net.json` (default run dir
//! `/var/run/petrel`), written atomically, readable by everyone (mode 0644
//! in a 0755 directory: it holds names, not secrets). `run` compares it
//! with what the spec and the pod say now; any difference is refused with
//! the commands to run, never attached half-way.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::host::{HostBackend, HostPlan, PodPlan};
use crate::plan::{MacAddr, VmPlan};

/// Where the state of every VM lives unless `--run-dir` says otherwise.
pub const DEFAULT_RUN_DIR: &str = "/var/run/petrel";
/// The record's file name inside the VM's directory.
pub const STATE_FILE: &str = "net.json";
/// Format version; a record of another version is refused.
pub const STATE_VERSION: u32 = 1;

/// What `net-setup` did, for all pod-bound NICs of one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    pub version: u32,
    /// The VM's name (from the spec).
    pub vm: String,
    /// The uid and gid that own the taps.
    pub uid: u32,
    pub gid: u32,
    pub nics: Vec<PreparedNic>,
}

/// One NIC's prepared plumbing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedNic {
    /// The spec's interface name.
    pub nic: String,
    /// `bridge` or `masquerade`.
    pub binding: String,
    pub pod_iface: String,
    pub bridge: String,
    pub tap: String,
    pub queues: u16,
    /// The MAC the guest must use (for a delegated bridge MAC, the pod
    /// interface's original one, which it no longer has).
    pub guest_mac: String,
    pub mtu: u16,
    /// Masquerade: the guest networks and forwarded ports, as planned.
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub ports: Vec<String>,
    /// TCP ports left to petrel itself (`--metrics-address`).
    #[serde(default)]
    pub reserved_ports: Vec<u16>,
}

impl PreparedNic {
    /// The record of `pod` (NIC `nic` with `queues` pairs) before
    /// plumbing: `guest_mac` and `mtu` are filled in by the caller.
    pub fn planned(nic: &str, queues: u16, pod: &PodPlan) -> Self {
        PreparedNic {
            nic: nic.to_string(),
            binding: pod.binding.to_string(),
            pod_iface: pod.pod_iface.clone(),
            bridge: net::binding::default_bridge_name(&pod.pod_iface),
            tap: pod.tap.clone(),
            queues,
            guest_mac: String::new(),
            mtu: 0,
            ipv4: pod.ipv4.map(|c| format!("{}/{}", c.addr, c.prefix)),
            ipv6: pod.ipv6.map(|c| format!("{}/{}", c.addr, c.prefix)),
            ports: pod
                .ports
                .iter()
                .map(|p| format!("{}/{}", p.port, p.protocol))
                .collect(),
            reserved_ports: pod.reserved_ports.clone(),
        }
    }

    /// The first field in which `self` (recorded) differs from `planned`;
    /// MAC and MTU are what plumbing found, so they are not compared.
    fn difference(&self, planned: &PreparedNic) -> Option<String> {
        let fields: [(&str, String, String); 9] = [
            ("binding", self.binding.clone(), planned.binding.clone()),
            (
                "pod interface",
                self.pod_iface.clone(),
                planned.pod_iface.clone(),
            ),
            ("bridge", self.bridge.clone(), planned.bridge.clone()),
            ("tap", self.tap.clone(), planned.tap.clone()),
            (
                "queues",
                self.queues.to_string(),
                planned.queues.to_string(),
            ),
            (
                "IPv4 network",
                format!("{:?}", self.ipv4),
                format!("{:?}", planned.ipv4),
            ),
            (
                "IPv6 network",
                format!("{:?}", self.ipv6),
                format!("{:?}", planned.ipv6),
            ),
            ("ports", self.ports.join(","), planned.ports.join(",")),
            (
                "ports kept for petrel (--metrics-address)",
                format!("{:?}", self.reserved_ports),
                format!("{:?}", planned.reserved_ports),
            ),
        ];
        fields
            .into_iter()
            .find(|(_, had, want)| had != want)
            .map(|(what, had, want)| {
                format!(
                    "interface {}: {what} was {had:?} at net-setup, the spec now gives {want:?}",
                    self.nic
                )
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetStateError {
    #[error(
        "the pod network of VM {vm} was not prepared: no {path}, and petrel has no CAP_NET_ADMIN \
         to plumb it itself; run `petrel net-setup SPEC --uid {uid}` as root in the pod's network \
         namespace first (same --run-dir), or run petrel with CAP_NET_ADMIN"
    )]
    NotPrepared { vm: String, path: PathBuf, uid: u32 },
    #[error(
        "{path} does not match the spec: {reason}; run `petrel net-teardown SPEC` and `petrel \
         net-setup SPEC --uid UID` again"
    )]
    Mismatch { path: PathBuf, reason: String },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {path}: not a petrel net-setup record")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl NetStateError {
    /// 2 when the user must run a command first, 1 for a broken file.
    pub fn exit_code(&self) -> i32 {
        match self {
            NetStateError::NotPrepared { .. } | NetStateError::Mismatch { .. } => 2,
            NetStateError::Io { .. } | NetStateError::Parse { .. } => 1,
        }
    }
}

/// The VM's directory under `run_dir`: its name with every byte outside
/// `[A-Za-z0-9._-]` replaced by `_` (no path can escape `run_dir`).
pub fn vm_dir(run_dir: &Path, vm: &str) -> PathBuf {
    let safe: String = vm
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = if safe.chars().all(|c| c == '.') {
        format!("_{safe}")
    } else {
        safe
    };
    run_dir.join(safe)
}

/// The record's path for VM `vm`.
pub fn state_path(run_dir: &Path, vm: &str) -> PathBuf {
    vm_dir(run_dir, vm).join(STATE_FILE)
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> NetStateError + 'a {
    move |source| NetStateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `state` atomically (temporary file, then rename); the directory
/// is made 0755 and the file 0644, so the unprivileged uid can read them.
pub fn write(run_dir: &Path, state: &NetState) -> Result<PathBuf, NetStateError> {
    let dir = vm_dir(run_dir, &state.vm);
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", &dir))?;
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!(".{STATE_FILE}.tmp"));
    let text = serde_json::to_string_pretty(state).map_err(|source| NetStateError::Parse {
        path: path.clone(),
        source,
    })?;
    fs::write(&tmp, text + "\n").map_err(io_err("write", &tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).map_err(io_err("chmod", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("rename into", &path))?;
    Ok(path)
}

/// The record of VM `vm`, `None` when there is none.
pub fn read(run_dir: &Path, vm: &str) -> Result<Option<NetState>, NetStateError> {
    let path = state_path(run_dir, vm);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let state: NetState = serde_json::from_str(&text).map_err(|source| NetStateError::Parse {
        path: path.clone(),
        source,
    })?;
    if state.version != STATE_VERSION || state.vm != vm {
        return Err(NetStateError::Mismatch {
            path,
            reason: format!(
                "it is version {} for VM {:?}; this petrel writes version {STATE_VERSION} for VM {vm:?}",
                state.version, state.vm
            ),
        });
    }
    Ok(Some(state))
}

/// Removes VM `vm`'s directory and record; absent is fine.
pub fn remove(run_dir: &Path, vm: &str) -> Result<(), NetStateError> {
    let dir = vm_dir(run_dir, vm);
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &dir)(e)),
        _ => Ok(()),
    }
}

/// The pod-bound NICs of `host` with their plans' queue counts.
pub fn pod_nics<'a>(plan: &'a VmPlan, host: &'a HostPlan) -> Vec<(&'a str, u16, &'a PodPlan)> {
    plan.nics
        .iter()
        .filter_map(|nic| match host.nic(&nic.name).map(|h| &h.backend) {
            Some(HostBackend::Pod(pod)) => Some((nic.name.as_str(), nic.queue_pairs, pod)),
            _ => None,
        })
        .collect()
}

/// Marks every pod NIC of `host` prepared (attach only) after checking it
/// against `state`, and gives it the recorded guest MAC.
pub fn apply(
    run_dir: &Path,
    state: &NetState,
    plan: &VmPlan,
    host: &mut HostPlan,
) -> Result<(), NetStateError> {
    let path = state_path(run_dir, &state.vm);
    let mismatch = |reason: String| NetStateError::Mismatch {
        path: path.clone(),
        reason,
    };
    let planned: Vec<PreparedNic> = pod_nics(plan, host)
        .into_iter()
        .map(|(name, queues, pod)| PreparedNic::planned(name, queues, pod))
        .collect();
    let recorded: Vec<&str> = state.nics.iter().map(|n| n.nic.as_str()).collect();
    let wanted: Vec<&str> = planned.iter().map(|n| n.nic.as_str()).collect();
    if recorded != wanted {
        return Err(mismatch(format!(
            "it prepared interfaces [{}], the spec binds [{}]",
            recorded.join(", "),
            wanted.join(", ")
        )));
    }
    for (had, want) in state.nics.iter().zip(&planned) {
        if let Some(reason) = had.difference(want) {
            return Err(mismatch(reason));
        }
        let mac: MacAddr = had.guest_mac.parse().map_err(|_| {
            mismatch(format!(
                "interface {}: guest MAC {:?} is not a MAC",
                had.nic, had.guest_mac
            ))
        })?;
        if let Some(h) = host.nics.iter_mut().find(|h| h.name == had.nic) {
            if let HostBackend::Pod(pod) = &mut h.backend {
                if !pod.delegate_mac && h.guest_mac != mac {
                    return Err(mismatch(format!(
                        "interface {}: guest MAC was {mac} at net-setup, the spec now gives {}",
                        had.nic, h.guest_mac
                    )));
                }
                pod.prepared = true;
                h.guest_mac = mac;
            }
        }
    }
    Ok(())
}

/// Whether this process may plumb the pod itself: CAP_NET_ADMIN in its
/// effective set (`CapEff` in /proc/self/status).
pub fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// For `run`: the record of this VM applied to `host` when there is one;
/// without one, an error naming `net-setup` when the VM has pod bindings
/// and this process cannot plumb them itself.
pub fn prepare_run(
    run_dir: &Path,
    plan: &VmPlan,
    host: &mut HostPlan,
) -> Result<(), NetStateError> {
    match read(run_dir, &plan.name)? {
        Some(state) => {
            tracing::info!(
                path = %state_path(run_dir, &plan.name).display(), nics = state.nics.len(),
                "attaching to the pod network net-setup prepared"
            );
            apply(run_dir, &state, plan, host)
        }
        None if !pod_nics(plan, host).is_empty() && !has_net_admin() => {
            Err(NetStateError::NotPrepared {
                vm: plan.name.clone(),
                path: state_path(run_dir, &plan.name),
                uid: effective_uid(),
            })
        }
        None => Ok(()),
    }
}

/// This process's effective uid (`Uid:` in /proc/self/status).
fn effective_uid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_dir_cannot_escape() {
        let d = Path::new("/run/p");
        assert_eq!(vm_dir(d, "vm1"), Path::new("/run/p/vm1"));
        assert_eq!(vm_dir(d, "../x"), Path::new("/run/p/.._x"));
        assert_eq!(vm_dir(d, ".."), Path::new("/run/p/_.."));
        assert_eq!(vm_dir(d, "a/b"), Path::new("/run/p/a_b"));
    }

    #[test]
    fn write_read_remove_round_trip() {
        let dir = std::env::temp_dir().join(format!("petrel-netstate-{}", std::process::id()));
        let state = NetState {
            version: STATE_VERSION,
            vm: "vm1".into(),
            uid: 107,
            gid: 107,
            nics: vec![PreparedNic {
                nic: "default".into(),
                binding: "masquerade".into(),
                pod_iface: "eth0".into(),
                bridge: "k6t-eth0".into(),
                tap: "tap0".into(),
                queues: 2,
                guest_mac: "02:00:00:00:00:01".into(),
                mtu: 1450,
                ipv4: Some("10.0.2.0/24".into()),
                ipv6: None,
                ports: vec!["8080/TCP".into()],
                reserved_ports: vec![9090],
            }],
        };
        assert_eq!(read(&dir, "vm1").unwrap(), None);
        let path = write(&dir, &state).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(read(&dir, "vm1").unwrap(), Some(state.clone()));
        // Another VM's record under this name is refused.
        assert!(matches!(read(&dir, "vm2"), Ok(None)));
        fs::write(state_path(&dir, "vm2"), "{").ok();
        remove(&dir, "vm1").unwrap();
        assert_eq!(read(&dir, "vm1").unwrap(), None);
        remove(&dir, "vm1").unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn not_prepared_names_the_command() {
        let e = NetStateError::NotPrepared {
            vm: "vm1".into(),
            path: PathBuf::from("/var/run/petrel/vm1/net.json"),
            uid: 107,
        };
        let msg = e.to_string();
        assert!(msg.contains("petrel net-setup SPEC --uid 107"), "{msg}");
        assert!(msg.contains("/var/run/petrel/vm1/net.json"), "{msg}");
        assert_eq!(e.exit_code(), 2);
    }
}
