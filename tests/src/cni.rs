//! A pod network made by the real CNI bridge plugin (Debian's
//! `containernetworking-plugins`), the way a kubelet leaves a pod: the
//! plugin runs inside a `node` namespace the test creates (so its bridge
//! `cni0` is there, never in the host's namespace), moves the veth end
//! into the `pod` namespace as `eth0` and gives it an address from
//! `host-local` IPAM (state in a scratch directory). A `server` namespace
//! hangs off the node at [`SERVER_IP`]. Everything goes on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cluster::{peer_established, SERVER_IP};
use crate::netns::{sh, NetNs};

/// Where Debian installs the CNI plugins.
pub const CNI_PATH: &str = "/usr/lib/cni";
/// The pod subnet the IPAM hands out from; the bridge is its gateway.
pub const POD_SUBNET: &str = "10.244.7.0/24";
pub const POD_GATEWAY: &str = "10.244.7.1";
pub const POD_MTU: u32 = 1450;
const NETWORK: &str = "petrel-test";
const CONTAINER_ID: &str = "petrel-test-pod";

/// Why the CNI plugins cannot be used here, if they cannot.
pub fn skip_reason() -> Option<String> {
    ["bridge", "host-local"]
        .iter()
        .find(|p| !Path::new(CNI_PATH).join(p).is_file())
        .map(|p| format!("{CNI_PATH}/{p} missing (apt-get install containernetworking-plugins)"))
}

pub struct CniPod {
    pub node: NetNs,
    pub pod: NetNs,
    pub server: NetNs,
    /// The address the IPAM gave the pod's eth0.
    pub pod_ip: String,
    state: PathBuf,
}

impl CniPod {
    /// Creates the namespaces and runs the bridge plugin's ADD; `state` is
    /// a scratch directory for the IPAM's leases.
    pub fn new(state: &Path) -> Self {
        let node = NetNs::new("cninode");
        let pod = NetNs::new("cnipod");
        let server = NetNs::new("cnisrv");
        let tag = std::process::id() % 100_000;
        let vs = format!("cs{tag}");
        sh(&format!(
            "ip -n {node} link add {vs} type veth peer name eth0 netns {srv} && \
             ip -n {node} link set {vs} up && ip -n {node} addr add 10.0.50.1/24 dev {vs} && \
             ip -n {srv} link set eth0 up && ip -n {srv} addr add {SERVER_IP}/24 dev eth0 && \
             ip -n {srv} route add default via 10.0.50.1",
            node = node.name(),
            srv = server.name(),
        ));
        let mut cni = Self {
            node,
            pod,
            server,
            pod_ip: String::new(),
            state: state.to_path_buf(),
        };
        let result = cni.plugin("ADD");
        cni.pod_ip = first_ipv4(&result)
            .unwrap_or_else(|| panic!("no IPv4 address in the CNI result:\n{result}"));
        cni
    }

    fn config(&self) -> String {
        format!(
            r#"{{"cniVersion": "1.0.0", "name": "{NETWORK}", "type": "bridge",
 "bridge": "cni0", "isGateway": true, "ipMasq": false, "mtu": {POD_MTU},
 "ipam": {{"type": "host-local", "dataDir": "{}",
   "ranges": [[{{"subnet": "{POD_SUBNET}", "gateway": "{POD_GATEWAY}"}}]],
   "routes": [{{"dst": "0.0.0.0/0"}}]}}}}"#,
            self.state.join("ipam").display()
        )
    }

    /// Runs the bridge plugin with `CNI_COMMAND=command` inside the node
    /// namespace; returns its stdout (the CNI result).
    fn plugin(&self, command: &str) -> String {
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.node.name()])
            .arg(Path::new(CNI_PATH).join("bridge"))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", CONTAINER_ID)
            .env("CNI_NETNS", format!("/run/netns/{}", self.pod.name()))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run the CNI bridge plugin: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.config().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "CNI {command} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Waits (up to a minute) until the server has an established TCP
    /// connection from the pod's address; panics otherwise.
    pub fn wait_server_sees_pod(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !peer_established(&self.server, &self.pod_ip) {
            assert!(
                std::time::Instant::now() < deadline,
                "the server never saw a connection from the pod IP {}",
                self.pod_ip
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// The first `"address": "a.b.c.d/len"` of a CNI result, without the length.
fn first_ipv4(result: &str) -> Option<String> {
    let rest = &result[result.find("\"address\"")? + "\"address\"".len()..];
    let start = rest.find('"')? + 1;
    let addr = &rest[start..];
    let addr = &addr[..addr.find('"')?];
    let ip = addr.split('/').next()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(|a| a.to_string())
}

impl Drop for CniPod {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.plugin("DEL")));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn first_ipv4_of_a_result() {
        let r = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0"}],
            "ips":[{"interface":2,"address":"10.244.7.2/24","gateway":"10.244.7.1"}]}"#;
        assert_eq!(super::first_ipv4(r).as_deref(), Some("10.244.7.2"));
        assert_eq!(super::first_ipv4("{}"), None);
    }
}
