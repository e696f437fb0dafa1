//! The passt and slirp bindings with a real guest, petrel running as
//! KubeVirt's uid 107 with no capabilities at all, in a pod network
//! namespace prepared the way KubeVirt prepares a passt pod
//! (`ip_unprivileged_port_start=0`, `ping_group_range` covering gid 107).
//! passt (Debian's) is started by petrel, one per NIC, and must be gone
//! when petrel is.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use petrel_tests::cluster::{
    Cluster, POD_IP, POD_IP6, POD_IP6_HEX, POD_MTU, SERVER_IP, SERVER_IP6,
};
use petrel_tests::guestnet::WAIT_DAD;
use petrel_tests::netns::{sh, NetNs};
use petrel_tests::unpriv::{self, QEMU_UID};
use petrel_tests::{guest_dir, petrel_bin, Scratch, Vmm, BOOT_TIMEOUT};

fn spec(name: &str, binding: &str, ports: &str, network: &str) -> String {
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
          {binding}
{ports}
  networks:
    - name: default
      {network}
"#
    )
}

/// What KubeVirt sets in a passt pod's network namespace.
fn prepare_pod_sysctls(pod: &NetNs) {
    sh(&format!(
        "ip netns exec {ns} sysctl -qw net.ipv4.ip_unprivileged_port_start=0 && \
         ip netns exec {ns} sysctl -qw net.ipv4.ping_group_range='0 2147483647'",
        ns = pod.name()
    ));
}

/// petrel as uid 107 without capabilities inside `pod`, booting `spec`.
fn boot_unprivileged(pod: &NetNs, dir: &Scratch, spec: &Path, guest_cmd: &str) -> Vmm {
    let kit = guest_dir();
    unpriv::assert_readable(
        QEMU_UID,
        &[
            &petrel_bin(),
            spec,
            &kit.join("vmlinux"),
            &kit.join("initramfs.cpio"),
        ],
    );
    Vmm::spawn(unpriv::petrel_run(
        pod.name(),
        QEMU_UID,
        &[],
        dir.path(),
        spec,
        guest_cmd,
    ))
}

/// The passt processes whose parent is `pid`, waiting up to a minute for
/// `want` of them.
fn passt_children(pid: u32, want: usize) -> Vec<u32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("pgrep")
            // Debian's passt re-executes itself as passt.avx2 where it can.
            .args(["-P", &pid.to_string(), "^passt"])
            .output()
            .unwrap();
        let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.len() >= want || std::time::Instant::now() > deadline {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn gone(pid: u32) -> bool {
    !PathBuf::from(format!("/proc/{pid}")).exists()
}

fn serve_server(server: &mut NetNs, dir: &Scratch, ip: &str) {
    std::fs::write(dir.path().join("hello"), "HELLO-FROM-SERVER\n").unwrap();
    server.spawn(&format!(
        "exec busybox httpd -f -p {ip}:80 -h {}",
        dir.path().display()
    ));
    server.spawn("sleep 3600 | busybox nc -l -p 7000 > /dev/null");
}

/// SIGTERM: petrel exits 0 and its passt is gone.
fn stop_and_check_passt_gone(vm: &mut Vmm, passt: &[u32]) {
    vm.signal(libc::SIGTERM);
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    for &pid in passt {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !gone(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "passt {pid} outlived petrel"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(vm.stderr().contains("passt"), "stderr:\n{}", vm.stderr());
}

fn curl(from: &NetNs, url: &str, timeout_s: u32) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", from.name(), "curl", "-sS", "-m"])
        .arg(timeout_s.to_string())
        .arg(url)
        .output()
        .unwrap()
}

/// passt: the guest leases the pod's own IP, gateway and MTU; its egress
/// leaves with the pod IP; inbound :80 (listed) reaches the guest, :81
/// (unlisted) does not; SIGTERM → exit 0 and no passt left.
#[test]
fn passt_guest_has_the_pod_ip_and_only_listed_ports() {
    let dir = Scratch::new("passt");
    dir.share_with(QEMU_UID);
    let mut cluster = Cluster::new();
    prepare_pod_sysctls(&cluster.pod);
    serve_server(&mut cluster.server, &dir, SERVER_IP);
    let ports = "          ports:\n            - name: http\n              port: 80";
    let spec_path = dir.write(
        "vmi.yaml",
        &spec("pt", "passtBinding: {}", ports, "pod: {}"),
    );
    let guest_cmd = format!(
        "mkdir -p /tmp/www && echo HELLO-FROM-GUEST > /tmp/www/index.html; \
         httpd -p 80 -h /tmp/www; httpd -p 81 -h /tmp/www; \
         wget -q -O - http://{SERVER_IP}/hello; \
         (sleep 30 | nc {SERVER_IP} 7000 &); \
         echo GUEST-READY; sleep 600"
    );
    let mut vm = boot_unprivileged(&cluster.pod, &dir, &spec_path, &guest_cmd);
    let passt = passt_children(vm.pid(), 1);
    assert_eq!(
        passt.len(),
        1,
        "passt children of petrel: {passt:?}\n{}",
        vm.stderr()
    );
    assert_eq!(uid_of(passt[0]), Some(QEMU_UID));
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains(&format!("ip={POD_IP}/24")), "{lease}");
    assert!(lease.contains("gw=10.244.1.1"), "{lease}");
    assert!(lease.contains(&format!("mtu={POD_MTU}")), "{lease}");
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    vm.wait_for("GUEST-READY", BOOT_TIMEOUT);
    cluster.wait_server_sees(POD_IP, |c| c.server_sees_peer(POD_IP));
    let ok = curl(&cluster.node, &format!("http://{POD_IP}:80/index.html"), 30);
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "HELLO-FROM-GUEST",
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = curl(&cluster.node, &format!("http://{POD_IP}:81/index.html"), 5);
    assert!(
        !refused.status.success(),
        "port 81 must not reach the guest"
    );
    stop_and_check_passt_gone(&mut vm, &passt);
}

/// passt with an IPv6 pod: passt's router advertisement gives the guest
/// its default route, the guest takes the pod's IPv6 address (what passt's
/// DHCPv6 leases; this guest has no DHCPv6 client, so it sets it itself)
/// and the server sees the pod's IPv6 address.
#[test]
fn passt_ipv6_when_the_pod_has_it() {
    let dir = Scratch::new("passt6");
    dir.share_with(QEMU_UID);
    let mut cluster = Cluster::new();
    cluster.add_ipv6();
    prepare_pod_sysctls(&cluster.pod);
    serve_server(&mut cluster.server, &dir, SERVER_IP);
    cluster.server.spawn(&format!(
        "exec busybox httpd -f -p [{SERVER_IP6}]:8066 -h {}",
        dir.path().display()
    ));
    let ports = "          ports:\n            - port: 80";
    let spec_path = dir.write("vmi.yaml", &spec("pt6", "passt: {}", ports, "pod: {}"));
    let guest_cmd = format!(
        "ip -6 addr add {POD_IP6}/64 dev eth0; {WAIT_DAD} \
         for i in $(seq 1 30); do ip -6 route | grep -q '^default' && break; sleep 1; done; \
         ip -6 route | grep '^default' | sed 's/^/ROUTE6 /'; \
         wget -q -O - http://[{SERVER_IP6}]:8066/hello; \
         (sleep 30 | nc {SERVER_IP6} 7000 &); echo GUEST6-READY; sleep 600"
    );
    let mut vm = boot_unprivileged(&cluster.pod, &dir, &spec_path, &guest_cmd);
    let passt = passt_children(vm.pid(), 1);
    assert_eq!(passt.len(), 1, "{}", vm.stderr());
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains(&format!("ip={POD_IP}/24")), "{lease}");
    let route = vm.wait_for("ROUTE6 default", BOOT_TIMEOUT);
    assert!(
        route.contains("via fe80::"),
        "default route from the RA: {route}"
    );
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    cluster.wait_server_sees("the pod's IPv6 address", |c| {
        c.server_sees_peer6_hex(POD_IP6_HEX)
    });
    stop_and_check_passt_gone(&mut vm, &passt);
}

/// The e1000 model over passt too (it checksums in the device and gives
/// the backend complete frames): lease of the pod IP, egress with it.
#[test]
fn passt_with_the_e1000_model() {
    let dir = Scratch::new("passt-e1000");
    dir.share_with(QEMU_UID);
    let mut cluster = Cluster::new();
    prepare_pod_sysctls(&cluster.pod);
    serve_server(&mut cluster.server, &dir, SERVER_IP);
    let ports = "          ports:\n            - port: 80";
    let yaml =
        spec("pte", "passtBinding: {}", ports, "pod: {}").replace("model: virtio", "model: e1000");
    let spec_path = dir.write("vmi.yaml", &yaml);
    let guest_cmd = format!(
        "wget -q -O - http://{SERVER_IP}/hello; (sleep 30 | nc {SERVER_IP} 7000 &); \
         echo GUEST-READY; sleep 600"
    );
    let mut vm = boot_unprivileged(&cluster.pod, &dir, &spec_path, &guest_cmd);
    let passt = passt_children(vm.pid(), 1);
    assert_eq!(passt.len(), 1, "{}", vm.stderr());
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains(&format!("ip={POD_IP}/24")), "{lease}");
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    cluster.wait_server_sees(POD_IP, |c| c.server_sees_peer(POD_IP));
    stop_and_check_passt_gone(&mut vm, &passt);
}

/// slirp on the same engine: the guest leases 10.0.2.15/24 via 10.0.2.2,
/// DNS to 10.0.2.3 reaches the pod's resolver, it reaches the
/// server (which sees the pod IP) and the listed port comes in. When passt
/// dies under the running guest, petrel stops with an error naming it.
#[test]
fn slirp_guest_gets_slirp_addresses_and_reaches_the_server() {
    let dir = Scratch::new("slirp");
    dir.share_with(QEMU_UID);
    let mut cluster = Cluster::new();
    prepare_pod_sysctls(&cluster.pod);
    serve_server(&mut cluster.server, &dir, SERVER_IP);
    // The pod's resolver is a DNS responder on the server.
    std::fs::write(
        format!("/etc/netns/{}/resolv.conf", cluster.pod.name()),
        format!("nameserver {SERVER_IP}\n"),
    )
    .unwrap();
    cluster.server.spawn(&format!(
        "exec python3 {}/scripts/udp-dns-responder.py {SERVER_IP} {}",
        env!("CARGO_MANIFEST_DIR"),
        dir.path().join("udp.log").display()
    ));
    let ports = "          ports:\n            - port: 8080";
    let spec_path = dir.write("vmi.yaml", &spec("sl", "slirp: {}", ports, "pod: {}"));
    let guest_cmd = format!(
        "mkdir -p /tmp/www && echo HELLO-FROM-GUEST > /tmp/www/index.html; \
         httpd -p 8080 -h /tmp/www; \
         sed 's/^/GUEST-RESOLV /' /etc/resolv.conf; \
         nslookup udp.test 10.0.2.3; \
         wget -q -O - http://{SERVER_IP}/hello; \
         (sleep 30 | nc {SERVER_IP} 7000 &); \
         echo GUEST-READY; sleep 600"
    );
    let mut vm = boot_unprivileged(&cluster.pod, &dir, &spec_path, &guest_cmd);
    let passt = passt_children(vm.pid(), 1);
    assert_eq!(passt.len(), 1, "{}", vm.stderr());
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains("ip=10.0.2.15/24"), "{lease}");
    assert!(lease.contains("gw=10.0.2.2"), "{lease}");
    // Debian bookworm's passt (2023-03) announces the pod's resolver by
    // DHCP (reachable through passt too) rather than 10.0.2.3; a query to
    // 10.0.2.3 is answered by the pod's resolver.
    let resolv = vm.wait_for("GUEST-RESOLV nameserver", BOOT_TIMEOUT);
    assert!(resolv.contains(SERVER_IP), "{resolv}");
    vm.wait_for("10.1.2.3", BOOT_TIMEOUT);
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    vm.wait_for("GUEST-READY", BOOT_TIMEOUT);
    cluster.wait_server_sees(POD_IP, |c| c.server_sees_peer(POD_IP));
    let ok = curl(
        &cluster.node,
        &format!("http://{POD_IP}:8080/index.html"),
        30,
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "HELLO-FROM-GUEST"
    );
    // passt dies: petrel stops the VM (exit 1) and says why.
    sh(&format!("kill -KILL {}", passt[0]));
    let st = vm.wait_exit(Duration::from_secs(60));
    let stderr = vm.stderr();
    assert_eq!(st.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("interface default: passt signal: 9 (SIGKILL) while the guest ran"),
        "stderr:\n{stderr}"
    );
    assert!(gone(passt[0]));
}

/// DCE5's "Passt (Direct)" mode: the pod's eth0 is a macvlan link the
/// real CNI macvlan plugin made with a static IP (as from a Spiderpool
/// pool); the guest gets that IP and reaches the server with it.
#[test]
fn dce5_passt_on_a_cni_macvlan_with_a_static_ip() {
    const STATIC_IP: &str = "10.0.60.5";
    const GATEWAY: &str = "10.0.60.1";
    const PEER: &str = "10.0.60.10";
    let cni = Path::new(petrel_tests::cni::CNI_PATH);
    for plugin in ["macvlan", "static"] {
        assert!(
            cni.join(plugin).is_file(),
            "{}/{plugin} missing (apt-get install containernetworking-plugins)",
            cni.display()
        );
    }
    let dir = Scratch::new("dce5");
    dir.share_with(QEMU_UID);
    let node = NetNs::new("dnode");
    let pod = NetNs::new("dpod");
    let mut server = NetNs::new("dsrv");
    let tag = std::process::id() % 100_000;
    let master = format!("mv{tag}");
    // The macvlan master is a veth whose other end is the server (and the
    // gateway address): the "underlay" the Multus CR names.
    sh(&format!(
        "ip -n {node} link add {master} type veth peer name eth0 netns {srv} && \
         ip -n {node} link set {master} up && \
         ip -n {srv} link set eth0 up && ip -n {srv} addr add {PEER}/24 dev eth0 && \
         ip -n {srv} addr add {GATEWAY}/24 dev eth0",
        node = node.name(),
        srv = server.name(),
    ));
    let config = format!(
        r#"{{"cniVersion": "1.0.0", "name": "dce5-macvlan", "type": "macvlan",
 "master": "{master}", "mode": "bridge",
 "ipam": {{"type": "static",
   "addresses": [{{"address": "{STATIC_IP}/24", "gateway": "{GATEWAY}"}}],
   "routes": [{{"dst": "0.0.0.0/0"}}]}}}}"#
    );
    let cni_result = run_cni(&node, &pod, "ADD", &config);
    assert!(cni_result.contains(STATIC_IP), "{cni_result}");
    let link = pod.exec("ip -d link show eth0");
    assert!(link.contains("macvlan"), "{link}");
    prepare_pod_sysctls(&pod);
    serve_server(&mut server, &dir, PEER);
    let ports = "          ports:\n            - port: 80";
    let spec_path = dir.write(
        "vmi.yaml",
        &spec("dce5", "binding: {name: passt}", ports, "pod: {}"),
    );
    let guest_cmd = format!(
        "mkdir -p /tmp/www && echo HELLO-FROM-GUEST > /tmp/www/index.html; \
         httpd -p 80 -h /tmp/www; \
         wget -q -O - http://{PEER}/hello; (sleep 30 | nc {PEER} 7000 &); \
         echo GUEST-READY; sleep 600"
    );
    let mut vm = boot_unprivileged(&pod, &dir, &spec_path, &guest_cmd);
    let passt = passt_children(vm.pid(), 1);
    assert_eq!(passt.len(), 1, "{}", vm.stderr());
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains(&format!("ip={STATIC_IP}/24")), "{lease}");
    assert!(lease.contains(&format!("gw={GATEWAY}")), "{lease}");
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !petrel_tests::cluster::peer_established(&server, STATIC_IP) {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never saw {STATIC_IP}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    vm.wait_for("GUEST-READY", BOOT_TIMEOUT);
    // Inbound on the static IP, from the underlay.
    let ok = curl(&server, &format!("http://{STATIC_IP}:80/index.html"), 30);
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "HELLO-FROM-GUEST"
    );
    stop_and_check_passt_gone(&mut vm, &passt);
    run_cni(&node, &pod, "DEL", &config);
}

/// Runs the macvlan plugin with `CNI_COMMAND=command` in `node` for `pod`.
fn run_cni(node: &NetNs, pod: &NetNs, command: &str, config: &str) -> String {
    use std::io::Write;
    let cni = petrel_tests::cni::CNI_PATH;
    let mut child = Command::new("ip")
        .args(["netns", "exec", node.name()])
        .arg(Path::new(cni).join("macvlan"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "petrel-dce5")
        .env("CNI_NETNS", format!("/run/netns/{}", pod.name()))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "CNI macvlan {command} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Without `ports` passt forwards every port, a socket each: a pod whose
/// descriptor limit is too small for that is refused by the host plan
/// (exit 2, naming the limit and the fix) before anything starts.
#[test]
fn all_ports_with_too_few_descriptors_is_refused_up_front() {
    let dir = Scratch::new("passt-nofile");
    dir.share_with(QEMU_UID);
    let cluster = Cluster::new();
    let spec_path = dir.write("vmi.yaml", &spec("pn", "passt: {}", "", "pod: {}"));
    let mut c = unpriv::command(
        Some(cluster.pod.name()),
        QEMU_UID,
        &[],
        dir.path(),
        Path::new("/usr/bin/prlimit"),
    );
    c.args(["--nofile=4096:4096", "--"])
        .arg(petrel_bin())
        .args(["validate", "--host"])
        .arg(&spec_path);
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("lists no ports, so passt forwards every port and needs")
            && stderr.contains("RLIMIT_NOFILE is 4096"),
        "{stderr}"
    );
}
