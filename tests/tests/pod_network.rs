//! Pod bindings with a real guest inside a pod-like network namespace:
//! masquerade (NAT, port allow-list) and bridge (the guest takes the pod IP
//! over petrel's own DHCP), and cleanup after the VMM exits.

use std::time::Duration;

use petrel_tests::cluster::{
    pod_vmi_yaml, Cluster, HTTP_8080_PORTS, POD_DNS, POD_IP, POD_IP6_HEX, POD_MTU, SERVER_IP,
    SERVER_IP6,
};
use petrel_tests::guestnet::WAIT_DAD;
use petrel_tests::{Scratch, Vmm, BOOT_TIMEOUT};

fn serve_server(cluster: &mut Cluster, dir: &Scratch) {
    std::fs::write(dir.path().join("hello"), "HELLO-FROM-SERVER\n").unwrap();
    cluster.server.spawn(&format!(
        "exec busybox httpd -f -p {SERVER_IP}:80 -h {}",
        dir.path().display()
    ));
    cluster
        .server
        .spawn("sleep 3600 | busybox nc -l -p 7000 > /dev/null");
    cluster.server.spawn(&format!(
        "exec python3 {}/scripts/udp-dns-responder.py {SERVER_IP} {}",
        env!("CARGO_MANIFEST_DIR"),
        dir.path().join("udp.log").display()
    ));
}

fn assert_pod_clean(cluster: &Cluster) {
    let links = cluster.pod.exec("ip -o link show");
    assert!(!links.contains("k6t-"), "bridge left behind:\n{links}");
    assert!(!links.contains("tap-"), "tap left behind:\n{links}");
    let tables = cluster.pod.exec("nft list tables");
    assert!(
        !tables.contains("petrel"),
        "nft table left behind:\n{tables}"
    );
}

/// The guest reaches the server from behind NAT (the server sees the pod
/// IP), gets 10.0.2.2 from petrel's DHCP, and only the listed port is
/// forwarded in; SIGTERM cleans everything up.
#[test]
fn masquerade_nat_port_allow_list_and_cleanup() {
    let dir = Scratch::new("masq");
    let mut cluster = Cluster::new();
    serve_server(&mut cluster, &dir);
    let spec_path = dir.write(
        "vmi.yaml",
        &pod_vmi_yaml("masq", "masquerade", HTTP_8080_PORTS),
    );
    let guest_cmd = format!(
        "mkdir -p /tmp/www && echo HELLO-FROM-GUEST > /tmp/www/index.html; \
         httpd -p 8080 -h /tmp/www; httpd -p 8081 -h /tmp/www; \
         wget -q -O - http://{SERVER_IP}/hello; \
         nslookup udp.test {SERVER_IP}; \
         (sleep 20 | nc {SERVER_IP} 7000 &); \
         echo GUEST-READY; sleep 600"
    );
    let mut vm = Vmm::boot_in(
        Some(cluster.pod.name()),
        &spec_path,
        "",
        Some(&guest_cmd),
        &[],
    );
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains("ip=10.0.2.2/24"), "{lease}");
    assert!(lease.contains("gw=10.0.2.1"), "{lease}");
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    // UDP both ways: the DNS answer came back, and the query arrived from
    // the pod IP (source NAT).
    vm.wait_for("10.1.2.3", BOOT_TIMEOUT);
    let udp_log = std::fs::read_to_string(dir.path().join("udp.log")).unwrap_or_default();
    assert!(
        udp_log.lines().any(|l| l == POD_IP),
        "UDP sources: {udp_log:?}"
    );
    vm.wait_for("GUEST-READY", BOOT_TIMEOUT);
    cluster.wait_server_sees(POD_IP, |c| c.server_sees_peer(POD_IP));
    // inbound to the listed port reaches the guest's listener
    let body = cluster
        .node
        .exec(&format!("curl -sS -m 20 http://{POD_IP}:8080/index.html"));
    assert_eq!(body.trim(), "HELLO-FROM-GUEST");
    // an unlisted port is not forwarded
    let refused = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            cluster.node.name(),
            "curl",
            "-sS",
            "-m",
            "5",
        ])
        .arg(format!("http://{POD_IP}:8081/index.html"))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "port 8081 must not reach the guest"
    );
    vm.signal(libc::SIGTERM);
    let st = vm.wait_exit(Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert_teardown_order(&vm.stderr());
    assert_pod_clean(&cluster);
}

/// The vCPUs and the queue workers stop before the pod plumbing (tap,
/// bridge, nft table) goes: nothing is removed under a running guest. (A
/// guest that powers off cleanly resets its NIC first, so its workers may
/// stop before the vCPUs do.)
fn assert_teardown_order(log: &str) {
    let first = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("no {what:?} in:\n{log}"))
    };
    let last = |what: &str| {
        log.rfind(what)
            .unwrap_or_else(|| panic!("no {what:?} in:\n{log}"))
    };
    let vcpus = last("vCPUs stopped");
    let workers = last("worker stopped");
    let plumbing = first("pod network plumbing removed");
    assert!(
        vcpus < plumbing && workers < plumbing,
        "teardown out of order (vCPUs at {vcpus}, last worker at {workers}, plumbing at \
         {plumbing}):\n{log}"
    );
}

/// The guest takes the pod IP, MTU and DNS from petrel's DHCP server and
/// reaches the server with the pod IP as its source; afterwards the pod's
/// eth0 has its address and route back.
#[test]
fn bridge_guest_gets_pod_ip_mtu_dns_and_pod_is_restored() {
    let dir = Scratch::new("bridge");
    let mut cluster = Cluster::new();
    serve_server(&mut cluster, &dir);
    let spec_path = dir.write("vmi.yaml", &pod_vmi_yaml("brvm", "bridge", ""));
    let guest_cmd = format!(
        "cat /etc/resolv.conf; wget -q -O - http://{SERVER_IP}/hello; \
         sleep 20 | nc {SERVER_IP} 7000; echo GUEST-DONE"
    );
    let mut vm = Vmm::boot_in(
        Some(cluster.pod.name()),
        &spec_path,
        "",
        Some(&guest_cmd),
        &[],
    );
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains(&format!("ip={POD_IP}/24")), "{lease}");
    assert!(lease.contains(&format!("mtu={POD_MTU}")), "{lease}");
    vm.wait_for(&format!("nameserver {POD_DNS}"), BOOT_TIMEOUT);
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    cluster.wait_server_sees(POD_IP, |c| c.server_sees_peer(POD_IP));
    vm.wait_for("GUEST-DONE", BOOT_TIMEOUT);
    let st = vm.wait_exit(BOOT_TIMEOUT);
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert_pod_clean(&cluster);
    let addr = cluster.pod.exec("ip -4 -o addr show dev eth0");
    assert!(
        addr.contains(&format!("{POD_IP}/24")),
        "pod IP not restored: {addr}"
    );
    let routes = cluster.pod.exec("ip route show default");
    assert!(
        routes.contains("10.244.1.1"),
        "default route not restored: {routes}"
    );
}

/// Virtink's masquerade with a custom `cidr`: the guest gets the second
/// address of it and reaches the server through NAT.
#[test]
fn virtink_masquerade_custom_cidr() {
    let dir = Scratch::new("vtk");
    let mut cluster = Cluster::new();
    serve_server(&mut cluster, &dir);
    let spec_path = dir.write(
        "vm.yaml",
        r#"apiVersion: virt.virtink.smartx.com/v1alpha1
kind: VirtualMachine
metadata:
  name: vtk
spec:
  instance:
    cpu: {sockets: 1, coresPerSocket: 1}
    memory: {size: 128Mi}
    interfaces:
      - name: pod
        masquerade:
          cidr: 10.11.0.0/28
  networks:
    - name: pod
      pod: {}
"#,
    );
    let guest_cmd = format!("wget -q -O - http://{SERVER_IP}/hello");
    let mut vm = Vmm::boot_in(
        Some(cluster.pod.name()),
        &spec_path,
        "",
        Some(&guest_cmd),
        &[],
    );
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains("ip=10.11.0.2/28"), "{lease}");
    assert!(lease.contains("gw=10.11.0.1"), "{lease}");
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    let st = vm.wait_exit(BOOT_TIMEOUT);
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert_pod_clean(&cluster);
}

/// IPv6 masquerade when the pod has IPv6: petrel's router advertisement
/// gives the guest its default route, the guest uses fd10:0:2::2 (the
/// address petrel's DHCPv6 server leases; this guest has no DHCPv6 client,
/// so it configures the address itself), and NAT66 makes the server see
/// the pod's IPv6 address.
#[test]
fn masquerade_ipv6_router_advertisement_and_nat66() {
    let dir = Scratch::new("masq6");
    let mut cluster = Cluster::new();
    cluster.add_ipv6();
    serve_server(&mut cluster, &dir);
    cluster.server.spawn(&format!(
        "exec busybox httpd -f -p 8066 -h {}",
        dir.path().display()
    ));
    let spec_path = dir.write("vmi.yaml", &pod_vmi_yaml("masq6", "masquerade", ""));
    // The guest's first neighbour resolution of the gateway may fail while
    // its address is still tentative (one CI run): retry as a client would.
    let guest_cmd = format!(
        "ip -6 addr add fd10:0:2::2/120 dev eth0; {WAIT_DAD} \
         for i in 1 2 3 4 5 6 7 8 9 10; do ip -6 route | grep -q '^default' && break; sleep 1; done; \
         ip -6 route | grep '^default' | sed 's/^/ROUTE6 /'; \
         for i in 1 2 3; do wget -q -O - http://[{SERVER_IP6}]:8066/hello && break; sleep 2; done; \
         sleep 20 | nc {SERVER_IP6} 7000; echo GUEST6-DONE"
    );
    let mut vm = Vmm::boot_in(
        Some(cluster.pod.name()),
        &spec_path,
        "",
        Some(&guest_cmd),
        &[],
    );
    vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    let route = vm.wait_for("ROUTE6 default", BOOT_TIMEOUT);
    assert!(
        route.contains("via fe80::"),
        "default route from the RA: {route}"
    );
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    cluster.wait_server_sees("the pod's IPv6 address", |c| {
        c.server_sees_peer6_hex(POD_IP6_HEX)
    });
    vm.wait_for("GUEST6-DONE", BOOT_TIMEOUT);
    let st = vm.wait_exit(BOOT_TIMEOUT);
    let stderr = vm.stderr();
    assert_eq!(st.code(), Some(0), "stderr:\n{stderr}");
    // The run lasts well over the 16 s of the first unsolicited
    // advertisement (RFC 4861 §6.2.4), which petrel sends on its own.
    let unsolicited: u32 = stderr
        .split("unsolicited=")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no router advertisement summary in:\n{stderr}"));
    assert!(unsolicited >= 1, "no unsolicited RA was sent:\n{stderr}");
    assert_pod_clean(&cluster);
}

/// Bridge on the pod network without `macAddress`: the guest gets the pod
/// interface's original MAC (KubeVirt delegates it), so the node's
/// neighbour entry pinned to that MAC reaches the guest; petrel's DHCP
/// server sends the spec's dhcpOptions (66, 67, 42), which the guest's
/// udhcpc sees. Afterwards eth0 has its MAC back.
#[test]
fn bridge_delegates_the_pod_mac_and_serves_dhcp_options() {
    let dir = Scratch::new("bridge-mac");
    let cluster = Cluster::new();
    let pod_mac = cluster.pod.exec("cat /sys/class/net/eth0/address");
    let pod_mac = pod_mac.trim().to_string();
    let spec_path = dir.write(
        "vmi.yaml",
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: brmac
spec:
  domain:
    cpu: {cores: 1}
    memory: {guest: 128Mi}
    devices:
      interfaces:
        - name: default
          bridge: {}
          dhcpOptions:
            bootFileName: pxelinux.0
            tftpServerName: tftp.example.com
            ntpServers: [192.0.2.123, 192.0.2.124]
  networks:
    - name: default
      pod: {}
"#,
    );
    // A second udhcpc run asks for and prints the options (the guest
    // kit's own run configures the link).
    let guest_cmd = "echo GUEST-MAC $(cat /sys/class/net/eth0/address); \
         printf '#!/bin/sh\\necho \"DHCP-OPTS $1 tftp=$tftp bootfile=$bootfile ntpsrv=$ntpsrv\"\\n' > /tmp/o.sh; \
         chmod +x /tmp/o.sh; \
         udhcpc -i eth0 -s /tmp/o.sh -q -n -f -t 5 -T 1 -O tftp -O bootfile -O ntpsrv; \
         echo GUEST-WAITING; sleep 40; echo GUEST-DONE";
    let mut vm = Vmm::boot_in(
        Some(cluster.pod.name()),
        &spec_path,
        "",
        Some(guest_cmd),
        &[],
    );
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains(&format!("ip={POD_IP}/24")), "{lease}");
    let mac = vm.wait_for("GUEST-MAC ", BOOT_TIMEOUT);
    assert!(
        mac.contains(&format!("GUEST-MAC {pod_mac}")),
        "{mac} vs pod {pod_mac}"
    );
    let moved = cluster.pod.exec("cat /sys/class/net/eth0/address");
    assert_ne!(moved.trim(), pod_mac, "the pod interface kept its MAC");
    let opts = vm.wait_for("DHCP-OPTS bound", BOOT_TIMEOUT);
    for needle in [
        "tftp=tftp.example.com",
        "bootfile=pxelinux.0",
        "ntpsrv=192.0.2.123 192.0.2.124",
    ] {
        assert!(opts.contains(needle), "missing {needle} in {opts}");
    }
    vm.wait_for("GUEST-WAITING", BOOT_TIMEOUT);
    // The node knows the pod by its original MAC, pinned: the guest answers.
    cluster.node.exec(&format!(
        "ip neigh replace {POD_IP} lladdr {pod_mac} nud permanent dev \
         $(ip -o link | awk -F': ' '/^[0-9]+: vp/ {{split($2,a,\"@\"); print a[1]}}')"
    ));
    let ping = cluster.server.exec(&format!(
        "busybox ping -c 3 -W 5 {POD_IP} && echo PING-OK || echo PING-FAILED"
    ));
    let diag = format!(
        "node:\n{}\npod:\n{}",
        cluster.node.exec("ip neigh; ip -o link; ip route"),
        cluster.pod.exec("bridge fdb show; ip -o link; ip -o addr")
    );
    assert!(ping.contains("PING-OK"), "{ping}\n{diag}");
    vm.wait_for("GUEST-DONE", BOOT_TIMEOUT);
    let st = vm.wait_exit(BOOT_TIMEOUT);
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert_pod_clean(&cluster);
    let back = cluster.pod.exec("cat /sys/class/net/eth0/address");
    assert_eq!(back.trim(), pod_mac, "pod MAC not restored");
}
