//! A small "cluster" of network namespaces, the way a CNI would leave a
//! virt-launcher pod: `node` routes between a `pod` (eth0 with the pod IP,
//! default route and MTU, its own resolv.conf) and a `server` with services.
//! petrel runs inside `pod`. Everything is removed on drop.

use crate::netns::{sh, NetNs};

pub const NODE_POD_IP: &str = "10.244.1.1";
pub const POD_IP: &str = "10.244.1.5";
pub const POD_MTU: u32 = 1450;
pub const SERVER_IP: &str = "10.0.50.10";
pub const POD_DNS: &str = "10.96.0.10";
pub const POD_SEARCH: &str = "default.svc.cluster.local";
pub const POD_IP6: &str = "fd00:244::5";
/// POD_IP6 as /proc/net/tcp6 prints it (four little-endian words).
pub const POD_IP6_HEX: &str = "440200FD000000000000000005000000";
pub const SERVER_IP6: &str = "fd00:50::10";

pub struct Cluster {
    pub node: NetNs,
    pub pod: NetNs,
    pub server: NetNs,
    resolv_dir: String,
}

impl Cluster {
    pub fn new() -> Self {
        let node = NetNs::new("node");
        let pod = NetNs::new("pod");
        let server = NetNs::new("srv");
        let tag = std::process::id() % 100_000;
        let (vp, vs) = (format!("vp{tag}"), format!("vs{tag}"));
        sh(&format!(
            "ip -n {node} link add {vp} type veth peer name eth0 netns {pod} && \
             ip -n {node} link add {vs} type veth peer name eth0 netns {srv} && \
             ip -n {node} link set {vp} mtu {POD_MTU} up && ip -n {node} addr add {NODE_POD_IP}/24 dev {vp} && \
             ip -n {node} link set {vs} up && ip -n {node} addr add 10.0.50.1/24 dev {vs} && \
             ip netns exec {node} sysctl -qw net.ipv4.ip_forward=1 && \
             ip -n {pod} link set eth0 mtu {POD_MTU} up && ip -n {pod} addr add {POD_IP}/24 dev eth0 && \
             ip -n {pod} route add default via {NODE_POD_IP} && \
             ip -n {srv} link set eth0 up && ip -n {srv} addr add {SERVER_IP}/24 dev eth0 && \
             ip -n {srv} route add default via 10.0.50.1",
            node = node.name(),
            pod = pod.name(),
            srv = server.name(),
        ));
        // `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf over
        // /etc/resolv.conf: the pod's DNS as the kubelet would write it.
        let resolv_dir = format!("/etc/netns/{}", pod.name());
        std::fs::create_dir_all(&resolv_dir).unwrap();
        std::fs::write(
            format!("{resolv_dir}/resolv.conf"),
            format!("nameserver {POD_DNS}\nsearch {POD_SEARCH}\n"),
        )
        .unwrap();
        Self {
            node,
            pod,
            server,
            resolv_dir,
        }
    }

    /// Adds IPv6 to the cluster: pod fd00:244::5/64 (default route via the
    /// node), server fd00:50::10/64, the node forwarding between them.
    pub fn add_ipv6(&self) {
        sh(&format!(
            "ip netns exec {node} sysctl -qw net.ipv6.conf.all.forwarding=1 && \
             ip -n {node} -6 addr add fd00:244::1/64 dev $(ip -n {node} -o link | awk -F': ' '/^[0-9]+: vp/ {{split($2,a,\"@\"); print a[1]}}') nodad && \
             ip -n {node} -6 addr add fd00:50::1/64 dev $(ip -n {node} -o link | awk -F': ' '/^[0-9]+: vs/ {{split($2,a,\"@\"); print a[1]}}') nodad && \
             ip -n {pod} -6 addr add {POD_IP6}/64 dev eth0 nodad && ip -n {pod} -6 route add default via fd00:244::1 && \
             ip -n {srv} -6 addr add {SERVER_IP6}/64 dev eth0 nodad && ip -n {srv} -6 route add default via fd00:50::1",
            node = self.node.name(),
            pod = self.pod.name(),
            srv = self.server.name(),
        ));
    }

    /// True while the server has an established TCP connection from IPv6
    /// address `ip` (given as the 32 hex digits /proc/net/tcp6 prints).
    pub fn server_sees_peer6_hex(&self, hex: &str) -> bool {
        let tcp = self.server.exec("cat /proc/net/tcp6");
        tcp.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[3] == "01" && f[2].starts_with(hex)
        })
    }

    /// Waits (up to a minute) until `sees` holds for the server, e.g. an
    /// established connection from the pod's address; panics otherwise.
    pub fn wait_server_sees(&self, what: &str, sees: impl Fn(&Self) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !sees(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "the server never saw a connection from {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// True while the server has an established TCP connection from `ip`.
    pub fn server_sees_peer(&self, ip: &str) -> bool {
        peer_established(&self.server, ip)
    }
}

/// True while `server` has an established TCP connection from IPv4 `ip`.
pub fn peer_established(server: &NetNs, ip: &str) -> bool {
    let octets: Vec<u8> = ip.split('.').map(|o| o.parse().unwrap()).collect();
    let hex = format!(
        "{:02X}{:02X}{:02X}{:02X}",
        octets[3], octets[2], octets[1], octets[0]
    );
    // busybox nc listens dual-stack: IPv4 peers show up in tcp6 as
    // ::ffff:a.b.c.d, whose last word is the same hex.
    let tcp = server.exec("cat /proc/net/tcp /proc/net/tcp6");
    tcp.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[3] == "01" && f[2].split(':').next().is_some_and(|a| a.ends_with(&hex))
    })
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.resolv_dir);
    }
}

/// A KubeVirt VMI for the guest kit with one virtio NIC `default` on the
/// pod network, bound by `binding` (`masquerade`, `bridge`, …); `ports` is
/// the interface's `ports:` block as YAML lines (indented 10), or empty.
pub fn pod_vmi_yaml(name: &str, binding: &str, ports: &str) -> String {
    format!(
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: {name}
spec:
  domain:
    cpu: {{cores: 1}}
    memory: {{guest: 128Mi}}
    devices:
      interfaces:
        - name: default
          model: virtio
          {binding}: {{}}
{ports}
  networks:
    - name: default
      pod: {{}}
"#
    )
}

/// The `ports:` block of [`pod_vmi_yaml`] listing TCP `port` as `http`.
pub const HTTP_8080_PORTS: &str =
    "          ports:\n            - name: http\n              port: 8080";
