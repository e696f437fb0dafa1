//! What a masquerade guest must not do, with a real guest: reach the pod's
//! loopback services, or send packets out of the pod from a source other
//! than the address petrel leased it. And what it gets without `ports`:
//! every port forwarded in, except petrel's own metrics port.

use std::time::Duration;

use petrel_tests::cluster::{pod_vmi_yaml, Cluster, POD_IP, SERVER_IP, SERVER_IP6};
use petrel_tests::guestnet::WAIT_DAD;
use petrel_tests::netns::NetNs;
use petrel_tests::{Scratch, Vmm, BOOT_TIMEOUT};

const VM: &str = "msec";

/// The packet count of the first rule of `table` (in `ns`) whose listing
/// line contains `needle`.
fn counter(ns: &NetNs, table: &str, needle: &str) -> u64 {
    let listing = ns.exec(&format!("nft list table inet {table}"));
    listing
        .lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split("packets ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter for {needle:?} in:\n{listing}"))
}

/// One guest: (1) a listener on the pod's loopback (127.0.0.5:8080) is not
/// reachable although the guest routes 127.0.0.5 to its gateway — the
/// packet reaches the bridge and petrel's rule drops it; (2) pings from a
/// second address in the guest subnet (which masquerade would otherwise
/// rewrite; IPv4 and IPv6) and from an address outside it never reach the
/// server, while pings from the leased addresses do; (3) with no `ports` an arbitrary port
/// of the pod IP reaches the guest, but the metrics port stays petrel's.
#[test]
fn masquerade_guest_cannot_reach_pod_loopback_or_spoof() {
    let dir = Scratch::new("msec");
    let mut cluster = Cluster::new();
    cluster.add_ipv6();
    std::fs::write(dir.path().join("secret"), "LOOPBACK-SECRET\n").unwrap();
    cluster.pod.spawn(&format!(
        "exec busybox httpd -f -p 127.0.0.5:8080 -h {}",
        dir.path().display()
    ));
    // The server counts echo requests by IP length: 84 = the guest's own
    // pings (56-byte payload), 151 and 152 = the spoofed ones.
    cluster.server.exec(
        "nft add table inet cnt && \
         nft add chain inet cnt in '{ type filter hook input priority 0; }' && \
         nft add rule inet cnt in icmp type echo-request ip length 84 counter && \
         nft add rule inet cnt in icmp type echo-request ip length 151 counter && \
         nft add rule inet cnt in icmp type echo-request ip length 152 counter && \
         nft add rule inet cnt in icmpv6 type echo-request ip6 length 64 counter && \
         nft add rule inet cnt in icmpv6 type echo-request ip6 length 133 counter",
    );
    let spec_path = dir.write("vmi.yaml", &pod_vmi_yaml(VM, "masquerade", ""));
    let guest_cmd = format!(
        "mkdir -p /tmp/www && echo HELLO-FROM-GUEST > /tmp/www/index.html; httpd -p 8081 -h /tmp/www; \
         ping -c 2 -W 5 {SERVER_IP} && echo CONTROL-PING-OK; \
         ip -6 addr add fd10:0:2::2/120 dev eth0; {WAIT_DAD} \
         for i in 1 2 3 4 5 6 7 8 9 10; do ip -6 route | grep -q '^default' && break; sleep 1; done; \
         ping6 -c 2 -W 5 {SERVER_IP6} && echo CONTROL-PING6-OK; \
         ip -6 addr add fd10:0:2::99/120 dev eth0; {WAIT_DAD} \
         ping6 -c 3 -W 2 -s 125 -I fd10:0:2::99 {SERVER_IP6}; echo SPOOF6-DONE; \
         sysctl -w net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1; \
         ip route del local 127.0.0.0/8 dev lo table local; \
         ip route add 127.0.0.5/32 via 10.0.2.1 dev eth0; \
         ip route get 127.0.0.5 | sed 's/^/LOROUTE /'; \
         if timeout 15 wget -q -O - http://127.0.0.5:8080/secret; then echo LOOPBACK-REACHED; \
         else echo LOOPBACK-BLOCKED; fi; \
         ip addr add 10.0.2.99/24 dev eth0; ping -c 3 -W 2 -s 123 -I 10.0.2.99 {SERVER_IP}; \
         ip addr add 192.0.2.7/32 dev eth0; ping -c 3 -W 2 -s 124 -I 192.0.2.7 {SERVER_IP}; \
         echo SPOOF-DONE; sleep 600"
    );
    let mut vm = Vmm::boot_in(
        Some(cluster.pod.name()),
        &spec_path,
        "",
        Some(&guest_cmd),
        &["--metrics-address", "0.0.0.0:9090"],
    );
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains("ip=10.0.2.2/24"), "{lease}");
    vm.wait_for("CONTROL-PING-OK", BOOT_TIMEOUT);
    vm.wait_for("CONTROL-PING6-OK", BOOT_TIMEOUT);
    vm.wait_for("SPOOF6-DONE", BOOT_TIMEOUT);
    // The first echo may be lost while the guest resolves its gateway
    // (CONTROL-PING6-OK needs one reply): at least one must arrive.
    assert!(counter(&cluster.server, "cnt", "ip6 length 64") >= 1);
    assert_eq!(
        counter(&cluster.server, "cnt", "ip6 length 133"),
        0,
        "a ping from fd10:0:2::99 left the pod"
    );
    assert!(counter(&cluster.pod, &format!("petrel_{VM}"), "ip6 saddr != {") >= 3);
    let route = vm.wait_for("LOROUTE", BOOT_TIMEOUT);
    assert!(
        route.contains("via 10.0.2.1"),
        "the guest routes 127.0.0.5 out: {route}"
    );
    let verdict = vm.wait_for("LOOPBACK-", BOOT_TIMEOUT);
    assert!(verdict.contains("LOOPBACK-BLOCKED"), "{verdict}");
    assert!(!vm.console().iter().any(|l| l.contains("LOOPBACK-SECRET")));
    let table = format!("petrel_{VM}");
    let to_loopback = counter(&cluster.pod, &table, "ip daddr 127.0.0.0/8");
    assert!(
        to_loopback > 0,
        "the guest's packets never reached the bridge"
    );

    vm.wait_for("SPOOF-DONE", BOOT_TIMEOUT);
    let spoofed = counter(&cluster.pod, &table, "ip saddr != {");
    assert!(
        spoofed >= 6,
        "petrel dropped {spoofed} spoofed packets, expected 6"
    );
    assert!(counter(&cluster.server, "cnt", "ip length 84") >= 2);
    assert_eq!(
        counter(&cluster.server, "cnt", "ip length 151"),
        0,
        "a ping from 10.0.2.99 left the pod"
    );
    assert_eq!(
        counter(&cluster.server, "cnt", "ip length 152"),
        0,
        "a ping from 192.0.2.7 left the pod"
    );

    // No ports listed: every port of the pod IP reaches the guest, as in
    // KubeVirt, except the one petrel serves its metrics on.
    let body = cluster
        .server
        .exec(&format!("curl -sS -m 30 http://{POD_IP}:8081/index.html"));
    assert_eq!(body.trim(), "HELLO-FROM-GUEST");
    let metrics = cluster
        .server
        .exec(&format!("curl -sS -m 30 http://{POD_IP}:9090/metrics"));
    assert!(metrics.contains("kubevirt_vmi_network"), "{metrics}");
    // The pod's own loopback is not forwarded to the guest (no
    // route_localnet): 127.0.0.1:8081 in the pod is nothing.
    let local = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            cluster.pod.name(),
            "curl",
            "-sS",
            "-m",
            "5",
        ])
        .arg("http://127.0.0.1:8081/index.html")
        .output()
        .unwrap();
    assert!(
        !local.status.success(),
        "the pod's loopback reached the guest"
    );

    vm.signal(libc::SIGTERM);
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
}
