//! nftables rules for masquerade (NAT) networking, as libnftables JSON.
//!
//! With masquerade networking the guest sits on a private subnet behind the
//! tap: the pod's own address stays on the pod interface, the host side of
//! the tap is the guest's gateway, and nftables translates between the two,
//! the way KubeVirt's masquerade binding does
//! (`pkg/network/setup/masquerade`). Everything lives in one `inet` table
//! named by the caller, so IPv4 and IPv6 share it and removing it removes
//! every rule:
//!
//! ```text
//! table inet <table> {
//!   chain fromguest   { type filter hook prerouting priority -300; # raw
//!     iifname <tap> ip daddr 127.0.0.0/8 drop              # pod loopback
//!     iifname <tap> ip6 daddr ::1 drop
//!     iifname <tap> ip saddr != { <guest>, 0.0.0.0 } drop  # spoofing
//!     iifname <tap> ip6 saddr != { <guest6>, fe80::/10, :: } drop }
//!   chain prerouting  { type nat hook prerouting priority -100;   # dstnat
//!     iifname <pod_iface> jump preinbound }
//!   chain preinbound  {                                   # inbound -> guest
//!     tcp dport <reserved> return                         # petrel's own
//!     [tcp|udp dport <ports>] dnat ip[6] to <guest> }
//!   chain postrouting { type nat hook postrouting priority 100;  # srcnat
//!     ip[6] saddr <guest subnet> oifname <pod_iface> masquerade }
//!   chain forward     { type filter hook forward priority 0;
//!     iifname <tap> oifname <pod_iface> accept
//!     iifname <pod_iface> oifname <tap> accept }
//! }
//! ```
//!
//! - What the guest sends is checked first, before conntrack sees it: a
//!   destination in the pod's loopback (`127.0.0.0/8`, `::1`) is dropped,
//!   as kube-proxy drops it for CVE-2020-8558 (the kernel also drops it
//!   while `route_localnet` is off, which petrel never turns on; the rule
//!   makes it hold whatever the sysctl says), and so is any source but the
//!   addresses petrel leases the guest (plus `0.0.0.0` for DHCP and the
//!   link-local and unspecified IPv6 sources neighbour discovery, MLD and
//!   DHCPv6 use): a guest cannot spoof other sources out of the pod.
//! - Inbound traffic arriving on the pod interface for the listed ports (all
//!   ports and protocols when the list is empty, as KubeVirt does) is
//!   DNATed to the guest. Its source is kept, so the guest sees real client
//!   addresses; replies come back through the gateway because it is the
//!   guest's default route. The `reserved` TCP ports (petrel's own metrics
//!   listener) are never forwarded, so petrel stays reachable on them.
//! - Traffic from the pod's own loopback (`127.0.0.1`, `::1`) is *not*
//!   forwarded to the guest. KubeVirt does that with an output-chain DNAT,
//!   which for IPv4 only works with `net.ipv4.conf.<bridge>.route_localnet=1`
//!   — the setting that lets other hosts reach the pod's loopback services
//!   (the CVE-2020-8558 pattern) — and for IPv6 not at all (the kernel
//!   drops `::1` leaving a non-loopback link). Reach the guest on the pod
//!   IP instead.
//! - Guest traffic leaving through the pod interface is masqueraded to the
//!   pod's address.
//! - The forward chain accepts tap <-> pod interface traffic, in case the
//!   namespace has a restrictive forward policy elsewhere (an accept here
//!   does not override a drop in another table).
//!
//! Forwarding itself (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`)
//! is also the caller's to enable.
//!
//! [`apply`] feeds the JSON to the `nft` command (`nft -j -f -`): libnftables
//! has no maintained Rust binding, and the CLI applies a whole document as
//! one atomic transaction, the same way the library would.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// Name of the nft binary, for messages.
pub const NFT_BIN: &str = "nft";

/// Where Debian (and petrel's image) installs nft.
const NFT_DEFAULT: &str = "/usr/sbin/nft";

/// The nft binary [`apply`] runs, by absolute path: `/usr/sbin/nft`, else
/// the first `nft` on `PATH`, looked up once (the first call; the VMM
/// makes it at start) so nothing later can swap the program.
pub fn nft_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| find_nft(Path::new(NFT_DEFAULT), std::env::var_os("PATH")))
}

/// `default` if it is a file, else the first `nft` file in `path_var`'s
/// directories, else `default` (running it then fails with its name).
fn find_nft(default: &Path, path_var: Option<std::ffi::OsString>) -> PathBuf {
    if default.is_file() {
        return default.to_path_buf();
    }
    path_var
        .iter()
        .flat_map(std::env::split_paths)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(NFT_BIN))
        .find(|p| p.is_file())
        .unwrap_or_else(|| default.to_path_buf())
}

/// Chain names inside the table.
pub mod chains {
    /// Base chain: `type nat hook prerouting priority -100`.
    pub const PREROUTING: &str = "prerouting";
    /// Regular chain holding the inbound DNAT rules.
    pub const PREINBOUND: &str = "preinbound";
    /// Base chain: `type filter hook prerouting priority -300`, checking
    /// what arrives from the guest (loopback destinations, spoofing).
    pub const FROM_GUEST: &str = "fromguest";
    /// Base chain: `type nat hook postrouting priority 100`.
    pub const POSTROUTING: &str = "postrouting";
    /// Base chain: `type filter hook forward priority 0`.
    pub const FORWARD: &str = "forward";
}

/// Transport protocol of a forwarded port: the one type for it in petrel
/// (the VM spec's `protocol`, the plan and the nft rules). Displays as the
/// spec spells it (`TCP`, `UDP`) and parses that, case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The nftables protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// A protocol name other than TCP or UDP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}; use TCP or UDP")]
pub struct UnknownProtocol(pub String);

impl std::str::FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("tcp") {
            Ok(Protocol::Tcp)
        } else if s.eq_ignore_ascii_case("udp") {
            Ok(Protocol::Udp)
        } else {
            Err(UnknownProtocol(s.to_owned()))
        }
    }
}

/// The masquerade setup of one VM interface; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqueradeRules {
    /// Name of the `inet` table holding every rule, e.g. `petrel_<vm>`.
    pub table: String,
    /// The pod's interface (e.g. `eth0`) that carries the pod's address.
    pub pod_iface: String,
    /// The VM's tap interface.
    pub tap: String,
    /// `(guest address, gateway address, prefix length)` for IPv4.
    pub guest_v4: Option<(Ipv4Addr, Ipv4Addr, u8)>,
    /// `(guest address, gateway address, prefix length)` for IPv6.
    pub guest_v6: Option<(Ipv6Addr, Ipv6Addr, u8)>,
    /// Ports forwarded to the guest; empty forwards every port.
    pub ports: Vec<(u16, Protocol)>,
    /// TCP ports never forwarded (petrel serves them in the pod itself).
    pub reserved: Vec<u16>,
}

/// One address family's view of the configuration.
struct Family {
    /// `ip` or `ip6`, for payload matches and NAT statements.
    name: &'static str,
    /// `ipv4` or `ipv6`, for `meta nfproto`.
    nfproto: &'static str,
    guest: IpAddr,
    network: IpAddr,
    prefix_len: u8,
}

impl MasqueradeRules {
    /// The families that are configured, IPv4 first.
    fn families(&self) -> Vec<Family> {
        let mut families = Vec::with_capacity(2);
        if let Some((guest, _gateway, len)) = self.guest_v4 {
            let len = len.min(32);
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            families.push(Family {
                name: "ip",
                nfproto: "ipv4",
                guest: guest.into(),
                network: Ipv4Addr::from(u32::from(guest) & mask).into(),
                prefix_len: len,
            });
        }
        if let Some((guest, _gateway, len)) = self.guest_v6 {
            let len = len.min(128);
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            families.push(Family {
                name: "ip6",
                nfproto: "ipv6",
                guest: guest.into(),
                network: Ipv6Addr::from(u128::from(guest) & mask).into(),
                prefix_len: len,
            });
        }
        families
    }

    /// The listed ports grouped by protocol, sorted and deduplicated.
    fn ports_by_protocol(&self) -> Vec<(Protocol, Vec<u16>)> {
        let mut groups: Vec<(Protocol, Vec<u16>)> = Vec::new();
        for proto in [Protocol::Tcp, Protocol::Udp] {
            let mut ports: Vec<u16> = self
                .ports
                .iter()
                .filter(|(_, p)| *p == proto)
                .map(|(port, _)| *port)
                .collect();
            ports.sort_unstable();
            ports.dedup();
            if !ports.is_empty() {
                groups.push((proto, ports));
            }
        }
        groups
    }

    fn table_obj(&self) -> Value {
        json!({ "family": "inet", "name": self.table })
    }

    fn base_chain(&self, name: &str, kind: &str, hook: &str, prio: i32) -> Value {
        json!({ "add": { "chain": {
            "family": "inet", "table": self.table, "name": name,
            "type": kind, "hook": hook, "prio": prio, "policy": "accept",
        }}})
    }

    fn chain(&self, name: &str) -> Value {
        json!({ "add": { "chain": { "family": "inet", "table": self.table, "name": name }}})
    }

    fn rule(&self, chain: &str, expr: Vec<Value>) -> Value {
        json!({ "add": { "rule": {
            "family": "inet", "table": self.table, "chain": chain, "expr": expr,
        }}})
    }

    /// The whole ruleset as an `nft -j -f -` document.
    ///
    /// The document first adds and deletes the table, then creates it anew,
    /// so applying it replaces any earlier version in one transaction.
    pub fn to_json(&self) -> Value {
        let mut cmds = vec![
            json!({ "metainfo": { "json_schema_version": 1 } }),
            json!({ "add": { "table": self.table_obj() } }),
            json!({ "delete": { "table": self.table_obj() } }),
            json!({ "add": { "table": self.table_obj() } }),
            self.base_chain(chains::PREROUTING, "nat", "prerouting", -100),
            self.chain(chains::PREINBOUND),
            self.base_chain(chains::POSTROUTING, "nat", "postrouting", 100),
            self.base_chain(chains::FORWARD, "filter", "forward", 0),
            self.base_chain(chains::FROM_GUEST, "filter", "prerouting", -300),
        ];
        self.push_from_guest_rules(&mut cmds);

        let families = self.families();
        if !families.is_empty() {
            self.push_jump_rules(&mut cmds);
        }
        let ports = self.ports_by_protocol();
        for fam in &families {
            self.push_family_rules(&mut cmds, fam, &ports);
        }
        self.push_forward_rules(&mut cmds);

        json!({ "nftables": cmds })
    }

    /// What the guest may not send: packets for the pod's loopback, and
    /// packets from any source petrel did not lease it (per family; with no
    /// IPv6 guest network only link-local IPv6 is let through).
    fn push_from_guest_rules(&self, cmds: &mut Vec<Value>) {
        let from_tap = || match_meta("iifname", json!(self.tap));
        let drop = |cmds: &mut Vec<Value>, m: Vec<Value>| {
            let mut expr = vec![from_tap()];
            expr.extend(m);
            expr.push(counter());
            expr.push(json!({ "drop": null }));
            cmds.push(self.rule(chains::FROM_GUEST, expr));
        };
        let prefix = |addr: &str, len: u8| json!({ "prefix": { "addr": addr, "len": len } });
        drop(
            cmds,
            vec![match_payload("ip", "daddr", prefix("127.0.0.0", 8))],
        );
        drop(cmds, vec![match_payload("ip6", "daddr", json!("::1"))]);
        let mut v4: Vec<Value> = vec![json!("0.0.0.0")];
        v4.extend(self.guest_v4.map(|(g, _, _)| json!(g.to_string())));
        drop(
            cmds,
            vec![
                match_meta("nfproto", json!("ipv4")),
                match_payload_op("!=", "ip", "saddr", json!({ "set": v4 })),
            ],
        );
        let mut v6: Vec<Value> = vec![json!("::"), prefix("fe80::", 10)];
        v6.extend(self.guest_v6.map(|(g, _, _)| json!(g.to_string())));
        drop(
            cmds,
            vec![
                match_meta("nfproto", json!("ipv6")),
                match_payload_op("!=", "ip6", "saddr", json!({ "set": v6 })),
            ],
        );
    }

    /// The jump from the prerouting base chain to the inbound chain for
    /// traffic arriving on the pod interface.
    fn push_jump_rules(&self, cmds: &mut Vec<Value>) {
        cmds.push(self.rule(
            chains::PREROUTING,
            vec![
                match_meta("iifname", json!(self.pod_iface)),
                counter(),
                json!({ "jump": { "target": chains::PREINBOUND } }),
            ],
        ));
        let mut reserved = self.reserved.clone();
        reserved.sort_unstable();
        reserved.dedup();
        if !reserved.is_empty() {
            cmds.push(self.rule(
                chains::PREINBOUND,
                vec![
                    match_payload("tcp", "dport", port_set(&reserved)),
                    counter(),
                    json!({ "return": null }),
                ],
            ));
        }
    }

    /// One family's rules: the guest masqueraded to the pod's address, and
    /// the inbound NAT rules per protocol (or one catch-all without ports).
    fn push_family_rules(
        &self,
        cmds: &mut Vec<Value>,
        fam: &Family,
        ports: &[(Protocol, Vec<u16>)],
    ) {
        // Guest -> world: masquerade to the pod's address.
        cmds.push(self.rule(
            chains::POSTROUTING,
            vec![
                match_payload(
                    fam.name,
                    "saddr",
                    json!({ "prefix": { "addr": fam.network.to_string(), "len": fam.prefix_len } }),
                ),
                match_meta("oifname", json!(self.pod_iface)),
                counter(),
                json!({ "masquerade": null }),
            ],
        ));

        // One rule per protocol, or a single catch-all when no port is listed.
        let port_matches: Vec<Option<Value>> = if ports.is_empty() {
            vec![None]
        } else {
            ports
                .iter()
                .map(|(proto, list)| Some(match_payload(proto.as_str(), "dport", port_set(list))))
                .collect()
        };
        for port_match in port_matches {
            self.push_port_rules(cmds, fam, port_match);
        }
    }

    /// The inbound DNAT rule of one family for one port match (`None`: all
    /// ports).
    fn push_port_rules(&self, cmds: &mut Vec<Value>, fam: &Family, port_match: Option<Value>) {
        let mut expr = vec![match_meta("nfproto", json!(fam.nfproto))];
        expr.extend(port_match);
        expr.push(counter());
        expr.push(nat("dnat", fam.name, fam.guest));
        cmds.push(self.rule(chains::PREINBOUND, expr));
    }

    /// Forwarding between the tap and the pod interface, both ways.
    fn push_forward_rules(&self, cmds: &mut Vec<Value>) {
        for (from, to) in [(&self.tap, &self.pod_iface), (&self.pod_iface, &self.tap)] {
            cmds.push(self.rule(
                chains::FORWARD,
                vec![
                    match_meta("iifname", json!(from)),
                    match_meta("oifname", json!(to)),
                    counter(),
                    json!({ "accept": null }),
                ],
            ));
        }
    }

    /// A document deleting the table and everything in it. Adding the
    /// (empty) table first makes it succeed when the table is absent.
    pub fn delete_json(&self) -> Value {
        json!({ "nftables": [
            { "metainfo": { "json_schema_version": 1 } },
            { "add": { "table": self.table_obj() } },
            { "delete": { "table": self.table_obj() } },
        ]})
    }
}

fn match_meta(key: &str, right: Value) -> Value {
    json!({ "match": { "op": "==", "left": { "meta": { "key": key } }, "right": right } })
}

fn match_payload(protocol: &str, field: &str, right: Value) -> Value {
    match_payload_op("==", protocol, field, right)
}

fn match_payload_op(op: &str, protocol: &str, field: &str, right: Value) -> Value {
    json!({ "match": {
        "op": op,
        "left": { "payload": { "protocol": protocol, "field": field } },
        "right": right,
    }})
}

fn port_set(ports: &[u16]) -> Value {
    match ports {
        [one] => json!(one),
        many => json!({ "set": many }),
    }
}

fn counter() -> Value {
    json!({ "counter": null })
}

fn nat(kind: &str, family: &str, addr: IpAddr) -> Value {
    json!({ kind: { "family": family, "addr": addr.to_string() } })
}

/// Errors from running `nft`.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The `nft` binary could not be started.
    #[error("cannot run {path}: {0} (is the nftables package installed?)", path = nft_path().display())]
    Spawn(#[source] io::Error),
    /// Writing the document to `nft` or waiting for it failed.
    #[error("cannot talk to {NFT_BIN}: {0}")]
    Io(#[source] io::Error),
    /// `nft` rejected the document.
    #[error("{NFT_BIN} failed ({status}): {stderr}")]
    Failed {
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// Applies a JSON document (from [`MasqueradeRules::to_json`] or
/// [`MasqueradeRules::delete_json`]) with `nft -j -f -`, as one transaction.
///
/// Runs in the network namespace of the calling thread: the child is
/// forked from it. Needs CAP_NET_ADMIN.
pub fn apply(json: &Value) -> Result<(), NftError> {
    run_nft(&["-j", "-f", "-"], Some(json.to_string().as_bytes())).map(|_| ())
}

/// [`apply`] without waiting: `nft -j -f -` is started and given the
/// document, and the caller does other work while it loads it.
/// [`PendingNft::wait`] says whether it did. Dropped without a wait, the
/// [`PendingNft`] still waits for `nft` to exit, so that whatever the caller
/// does next (say, deleting the table on a failed set-up) cannot run ahead
/// of the load.
pub fn spawn_apply(json: &Value) -> Result<PendingNft, NftError> {
    spawn_nft(&["-j", "-f", "-"], Some(json.to_string().as_bytes()))
        .map(|child| PendingNft(Some(child)))
}

/// An `nft` run from [`spawn_apply`], not yet waited for.
#[derive(Debug)]
pub struct PendingNft(Option<Child>);

impl PendingNft {
    /// Waits for `nft`; its error if it failed.
    pub fn wait(mut self) -> Result<(), NftError> {
        match self.0.take() {
            Some(child) => finish_nft(child).map(|_| ()),
            None => Ok(()),
        }
    }
}

impl Drop for PendingNft {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            if let Err(e) = finish_nft(child) {
                tracing::debug!(error = %e, "an nft run nobody waited for failed");
            }
        }
    }
}

/// Runs `nft args...`, optionally with `stdin`, and returns its stdout.
pub(crate) fn run_nft(args: &[&str], stdin: Option<&[u8]>) -> Result<String, NftError> {
    finish_nft(spawn_nft(args, stdin)?)
}

/// Starts `nft args...` and writes `stdin` to it (then closes it).
fn spawn_nft(args: &[&str], stdin: Option<&[u8]>) -> Result<Child, NftError> {
    let mut child = Command::new(nft_path())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // nft reads all of stdin before it writes anything, so writing
        // first and collecting the output later cannot deadlock. The pipe
        // closes when `pipe` drops.
        pipe.write_all(input).map_err(NftError::Io)?;
    }
    Ok(child)
}

/// Waits for an `nft` from [`spawn_nft`]; its stdout, or why it failed.
fn finish_nft(child: Child) -> Result<String, NftError> {
    let output = child.wait_with_output().map_err(NftError::Io)?;
    if !output.status.success() {
        return Err(NftError::Failed {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_is_found_by_absolute_path() {
        let dir = std::env::temp_dir().join(format!("petrel-nft-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nft"), b"").unwrap();
        let missing = Path::new("/nonexistent/nft");
        let path = std::env::join_paths(["relative/dir".into(), dir.clone()]).unwrap();
        assert_eq!(find_nft(missing, Some(path)), dir.join("nft"));
        assert_eq!(find_nft(missing, None), missing);
        assert_eq!(find_nft(&dir.join("nft"), None), dir.join("nft"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(nft_path().is_absolute());
    }

    #[test]
    fn protocol_names() {
        assert_eq!(Protocol::Tcp.to_string(), "TCP");
        assert_eq!(Protocol::Udp.to_string(), "UDP");
        assert_eq!("TCP".parse(), Ok(Protocol::Tcp));
        assert_eq!("udp".parse(), Ok(Protocol::Udp));
        assert!("sctp".parse::<Protocol>().is_err());
        assert_eq!(Protocol::Tcp.as_str(), "tcp");
    }

    fn v4_rules(ports: Vec<(u16, Protocol)>) -> MasqueradeRules {
        MasqueradeRules {
            table: "petrel_vm1".into(),
            pod_iface: "eth0".into(),
            tap: "tap0".into(),
            guest_v4: Some((Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::new(10, 0, 2, 1), 24)),
            guest_v6: None,
            ports,
            reserved: Vec::new(),
        }
    }

    fn cmds(doc: &Value) -> &Vec<Value> {
        doc["nftables"].as_array().unwrap()
    }

    /// The `expr` lists of every rule added to `chain`.
    fn rules<'a>(doc: &'a Value, chain: &str) -> Vec<&'a Vec<Value>> {
        cmds(doc)
            .iter()
            .filter_map(|c| c.get("add")?.get("rule"))
            .filter(|r| r["chain"] == chain)
            .map(|r| r["expr"].as_array().unwrap())
            .collect()
    }

    fn has(expr: &[Value], needle: &Value) -> bool {
        expr.iter().any(|e| e == needle)
    }

    #[test]
    fn ipv4_all_ports() {
        let doc = v4_rules(vec![]).to_json();
        let c = cmds(&doc);
        assert_eq!(c[0]["metainfo"]["json_schema_version"], 1);
        // add, delete, add: replace atomically.
        assert_eq!(
            c[1]["add"]["table"],
            json!({"family": "inet", "name": "petrel_vm1"})
        );
        assert_eq!(
            c[2]["delete"]["table"],
            json!({"family": "inet", "name": "petrel_vm1"})
        );
        assert_eq!(
            c[3]["add"]["table"],
            json!({"family": "inet", "name": "petrel_vm1"})
        );

        let base: Vec<&Value> = c
            .iter()
            .filter_map(|c| c.get("add")?.get("chain"))
            .collect();
        let find = |name: &str| base.iter().find(|ch| ch["name"] == name).copied().unwrap();
        assert_eq!(find("prerouting")["type"], "nat");
        assert_eq!(find("prerouting")["hook"], "prerouting");
        assert_eq!(find("prerouting")["prio"], -100);
        assert_eq!(find("postrouting")["hook"], "postrouting");
        assert_eq!(find("postrouting")["prio"], 100);
        assert_eq!(find("forward")["type"], "filter");
        assert!(find("preinbound").get("hook").is_none());
        // No loopback forwarding: no output NAT chain, no SNAT into the tap.
        assert!(!base.iter().any(|ch| ch["name"] == "output"));
        assert!(!base.iter().any(|ch| ch["name"] == "postinbound"));
        assert!(!doc.to_string().contains("127.0.0.1"));

        let pre = rules(&doc, "prerouting");
        assert_eq!(pre.len(), 1);
        assert!(has(pre[0], &match_meta("iifname", json!("eth0"))));
        assert!(has(pre[0], &json!({"jump": {"target": "preinbound"}})));

        let inbound = rules(&doc, "preinbound");
        assert_eq!(inbound.len(), 1, "one catch-all rule");
        assert!(has(inbound[0], &match_meta("nfproto", json!("ipv4"))));
        assert!(has(
            inbound[0],
            &json!({"dnat": {"family": "ip", "addr": "10.0.2.2"}})
        ));
        assert!(!inbound[0].iter().any(|e| e.to_string().contains("dport")));

        let post = rules(&doc, "postrouting");
        assert_eq!(post.len(), 1);
        let masq = post[0];
        assert!(has(masq, &json!({"masquerade": null})));
        assert!(has(
            masq,
            &match_payload(
                "ip",
                "saddr",
                json!({"prefix": {"addr": "10.0.2.0", "len": 24}})
            )
        ));
        assert!(has(masq, &match_meta("oifname", json!("eth0"))));

        let fwd = rules(&doc, "forward");
        assert_eq!(fwd.len(), 2);
        assert!(fwd.iter().all(|e| has(e, &json!({"accept": null}))));

        // No IPv6 NAT (the guest checks cover IPv6 always).
        let text = nat_text(&doc);
        assert!(!text.contains("ip6"));
        assert!(!text.contains("ipv6"));
    }

    /// Every NAT and forward rule, without the guest checks.
    fn nat_text(doc: &Value) -> String {
        ["prerouting", "preinbound", "postrouting", "forward"]
            .iter()
            .flat_map(|c| rules(doc, c))
            .map(|e| Value::Array(e.clone()).to_string())
            .collect()
    }

    #[test]
    fn guest_may_not_reach_loopback_or_spoof() {
        let mut r = v4_rules(vec![]);
        let doc = r.to_json();
        let guard = rules(&doc, "fromguest");
        assert_eq!(guard.len(), 4, "{guard:?}");
        assert!(guard
            .iter()
            .all(|e| has(e, &match_meta("iifname", json!("tap0")))));
        assert!(guard.iter().all(|e| has(e, &json!({"drop": null}))));
        assert!(has(
            guard[0],
            &match_payload(
                "ip",
                "daddr",
                json!({"prefix": {"addr": "127.0.0.0", "len": 8}})
            )
        ));
        assert!(has(guard[1], &match_payload("ip6", "daddr", json!("::1"))));
        assert!(has(
            guard[2],
            &match_payload_op("!=", "ip", "saddr", json!({"set": ["0.0.0.0", "10.0.2.2"]}))
        ));
        // Without an IPv6 guest network only link-local and unspecified.
        let v6_none = json!({"set": ["::", {"prefix": {"addr": "fe80::", "len": 10}}]});
        assert!(has(
            guard[3],
            &match_payload_op("!=", "ip6", "saddr", v6_none)
        ));
        let chain = cmds(&doc)
            .iter()
            .filter_map(|c| c.get("add")?.get("chain"))
            .find(|c| c["name"] == "fromguest")
            .unwrap();
        assert_eq!(chain["hook"], "prerouting");
        assert_eq!(chain["prio"], -300);
        r.guest_v6 = Some((
            "fd10:0:2::2".parse().unwrap(),
            "fd10:0:2::1".parse().unwrap(),
            120,
        ));
        let doc = r.to_json();
        let guard = rules(&doc, "fromguest");
        let v6 = json!({"set": ["::", {"prefix": {"addr": "fe80::", "len": 10}}, "fd10:0:2::2"]});
        assert!(has(guard[3], &match_payload_op("!=", "ip6", "saddr", v6)));
    }

    #[test]
    fn reserved_ports_are_never_forwarded() {
        let mut r = v4_rules(vec![]);
        r.reserved = vec![9090, 8443, 9090];
        let doc = r.to_json();
        let inbound = rules(&doc, "preinbound");
        assert_eq!(inbound.len(), 2);
        // First, before any DNAT.
        assert!(has(
            inbound[0],
            &match_payload("tcp", "dport", json!({"set": [8443, 9090]}))
        ));
        assert!(has(inbound[0], &json!({"return": null})));
        assert!(has(
            inbound[1],
            &json!({"dnat": {"family": "ip", "addr": "10.0.2.2"}})
        ));
    }

    #[test]
    fn tcp_and_udp_ports() {
        let doc = v4_rules(vec![
            (443, Protocol::Tcp),
            (80, Protocol::Tcp),
            (53, Protocol::Udp),
            (80, Protocol::Tcp),
        ])
        .to_json();
        let inbound = rules(&doc, "preinbound");
        assert_eq!(inbound.len(), 2);
        assert!(has(
            inbound[0],
            &match_payload("tcp", "dport", json!({"set": [80, 443]}))
        ));
        assert!(has(inbound[1], &match_payload("udp", "dport", json!(53))));
        for rule in &inbound {
            assert!(has(
                rule,
                &json!({"dnat": {"family": "ip", "addr": "10.0.2.2"}})
            ));
        }
        // Masquerade of outbound guest traffic does not depend on ports.
        assert_eq!(rules(&doc, "postrouting").len(), 1);
    }

    #[test]
    fn ipv6_only_when_configured() {
        let mut r = v4_rules(vec![(22, Protocol::Tcp)]);
        assert!(!nat_text(&r.to_json()).contains("ip6"));
        r.guest_v6 = Some((
            "fd10:0:2::2".parse().unwrap(),
            "fd10:0:2::1".parse().unwrap(),
            120,
        ));
        let doc = r.to_json();
        let inbound = rules(&doc, "preinbound");
        assert_eq!(inbound.len(), 2);
        assert!(has(inbound[1], &match_meta("nfproto", json!("ipv6"))));
        assert!(has(
            inbound[1],
            &json!({"dnat": {"family": "ip6", "addr": "fd10:0:2::2"}})
        ));
        let post = rules(&doc, "postrouting");
        assert!(post.iter().any(|e| has(
            e,
            &match_payload(
                "ip6",
                "saddr",
                json!({"prefix": {"addr": "fd10:0:2::", "len": 120}})
            )
        )));
        assert!(!nat_text(&doc).contains("\"::1\""));

        // IPv6 only.
        r.guest_v4 = None;
        let text = nat_text(&r.to_json());
        assert!(!text.contains("\"ip\""));
        assert!(!text.contains("ipv4"));
    }

    #[test]
    fn custom_cidr() {
        let mut r = v4_rules(vec![]);
        r.guest_v4 = Some((
            Ipv4Addr::new(172, 20, 33, 77),
            Ipv4Addr::new(172, 20, 32, 1),
            22,
        ));
        let doc = r.to_json();
        let post = rules(&doc, "postrouting");
        assert!(post.iter().any(|e| has(
            e,
            &match_payload(
                "ip",
                "saddr",
                json!({"prefix": {"addr": "172.20.32.0", "len": 22}})
            )
        )));
        assert!(has(
            rules(&doc, "preinbound")[0],
            &json!({"dnat": {"family": "ip", "addr": "172.20.33.77"}})
        ));
    }

    #[test]
    fn no_family_means_no_nat_rules() {
        let mut r = v4_rules(vec![]);
        r.guest_v4 = None;
        let doc = r.to_json();
        assert!(rules(&doc, "prerouting").is_empty());
        assert!(rules(&doc, "postrouting").is_empty());
        assert_eq!(rules(&doc, "forward").len(), 2);
    }

    #[test]
    fn delete_document() {
        let doc = v4_rules(vec![]).delete_json();
        let c = cmds(&doc);
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[2]["delete"]["table"],
            json!({"family": "inet", "name": "petrel_vm1"})
        );
    }

    /// Runs `f` on a fresh thread inside a new network namespace.
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare(2) takes a flag word and touches no memory; it
            // moves only this thread into a new network namespace.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET): {}",
                io::Error::last_os_error()
            );
            f()
        })
        .join()
        .unwrap()
    }

    fn skip_reason() -> Option<&'static str> {
        // SAFETY: geteuid(2) has no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Some("needs root");
        }
        if run_nft(&["--version"], None).is_err() {
            return Some("nft is not installed");
        }
        None
    }

    #[test]
    fn apply_and_delete_in_netns() {
        if let Some(reason) = skip_reason() {
            println!("skipped: {reason}");
            return;
        }
        in_new_netns(|| {
            let mut r = v4_rules(vec![
                (80, Protocol::Tcp),
                (8443, Protocol::Tcp),
                (53, Protocol::Udp),
            ]);
            r.guest_v6 = Some((
                "fd10:0:2::2".parse().unwrap(),
                "fd10:0:2::1".parse().unwrap(),
                120,
            ));
            r.reserved = vec![9090];
            apply(&r.to_json()).unwrap();
            // Re-applying replaces the table rather than failing or duplicating.
            apply(&r.to_json()).unwrap();
            let listing = run_nft(&["list", "table", "inet", "petrel_vm1"], None).unwrap();
            for needle in [
                "type nat hook prerouting priority dstnat",
                "iifname \"eth0\"",
                "dnat ip to 10.0.2.2",
                "dnat ip6 to fd10:0:2::2",
                "masquerade",
                "tcp dport { 80, 8443 }",
                "udp dport 53",
                "ip saddr 10.0.2.0/24",
                "type filter hook prerouting priority raw",
                "iifname \"tap0\" ip daddr 127.0.0.0/8 counter packets 0 bytes 0 drop",
                "iifname \"tap0\" ip6 daddr ::1 counter packets 0 bytes 0 drop",
                "ip saddr != { 0.0.0.0, 10.0.2.2 }",
                "ip6 saddr != { ::, fd10:0:2::2, fe80::/10 }",
                "tcp dport 9090 counter packets 0 bytes 0 return",
            ] {
                assert!(
                    listing.contains(needle),
                    "{needle:?} missing from:\n{listing}"
                );
            }
            assert_eq!(listing.matches("masquerade").count(), 2, "{listing}");
            assert!(!listing.contains("127.0.0.1"), "{listing}");
            assert!(!listing.contains("snat"), "{listing}");

            apply(&r.delete_json()).unwrap();
            assert!(run_nft(&["list", "table", "inet", "petrel_vm1"], None).is_err());
            // Deleting an absent table succeeds.
            apply(&r.delete_json()).unwrap();

            // The all-ports variant is accepted by the kernel too.
            apply(&v4_rules(vec![]).to_json()).unwrap();
            apply(&r.delete_json()).unwrap();
        });
        // The rules never reached the test's own namespace.
        assert!(run_nft(&["list", "table", "inet", "petrel_vm1"], None).is_err());
    }
}
