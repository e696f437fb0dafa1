//! KubeVirt's macvtap binding with a real guest: the macvtap link (named the
//! way newer KubeVirt names secondary interfaces)
//! (bridge mode) sits on a veth in the pod namespace whose peer is in a
//! server namespace; the guest, with 2 vCPUs and multiqueue, gets DHCP from
//! the server side, keeps the macvtap's MAC, pings, and downloads data
//! with the md5 checked.

use petrel_tests::guestnet::md5;
use petrel_tests::netns::{sh, NetNs};
use petrel_tests::{Scratch, Vmm, BOOT_TIMEOUT};

const SERVER: &str = "10.0.60.1";
const GUEST: &str = "10.0.60.2";
/// KubeVirt's hashed pod interface name for network "mvt" ("pod" + the
/// first 11 hex digits of its SHA-256): the multiqueue test uses it, the
/// three-NIC test the ordinal names.
const HASHED: &str = "pode32c04ddf04";

#[test]
fn macvtap_multiqueue_dhcp_ping_and_download() {
    let dir = Scratch::new("mvt");
    let pod = NetNs::new("mvpod");
    let mut server = NetNs::new("mvsrv");
    let tag = std::process::id() % 100_000;
    sh(&format!(
        "ip -n {pod} link add ml{tag} type veth peer name eth0 netns {srv} && \
         ip -n {pod} link set ml{tag} up && \
         ip -n {pod} link add link ml{tag} name {HASHED} type macvtap mode bridge && \
         ip -n {pod} link set {HASHED} up && \
         ip -n {srv} link set eth0 up && ip -n {srv} addr add {SERVER}/24 dev eth0",
        pod = pod.name(),
        srv = server.name(),
    ));
    let macvtap_mac = pod
        .exec(&format!("cat /sys/class/net/{HASHED}/address"))
        .trim()
        .to_string();
    server.start_udhcpd(dir.path(), "eth0", GUEST, SERVER);
    sh(&format!(
        "head -c 1048576 /dev/urandom > {}/blob",
        dir.path().display()
    ));
    let sum = md5(&dir.path().join("blob"));
    server.spawn(&format!(
        "exec busybox httpd -f -p {SERVER}:8080 -h {}",
        dir.path().display()
    ));
    let spec = dir.write(
        "vmi.yaml",
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: mvt
spec:
  domain:
    cpu: {cores: 2}
    memory: {guest: 128Mi}
    devices:
      networkInterfaceMultiqueue: true
      interfaces:
        - name: mvt
          model: virtio
          macvtap: {}
  networks:
    - name: mvt
      multus:
        networkName: macvtapnet
"#,
    );
    let guest_cmd = format!(
        "for q in /sys/class/net/eth0/queues/rx-*; do echo $q; done; \
         ping -c 2 -W 5 {SERVER} && echo PING-OK; \
         wget -q -O /tmp/blob http://{SERVER}:8080/blob && md5sum /tmp/blob; sleep 5"
    );
    let mut vm = Vmm::boot_in(Some(pod.name()), &spec, "", Some(&guest_cmd), &[]);
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains(&format!("ip={GUEST}/24")), "{lease}");
    assert!(
        lease.contains(&format!("mac={macvtap_mac}")),
        "the guest must use the macvtap's MAC {macvtap_mac}: {lease}"
    );
    vm.wait_for("PING-OK", BOOT_TIMEOUT);
    server.exec(&format!("busybox ping -c 2 -W 5 {GUEST}"));
    let line = vm.wait_for(" /tmp/blob", BOOT_TIMEOUT);
    assert!(line.starts_with(&sum), "guest md5 {line} != {sum}");
    let st = vm.wait_exit(BOOT_TIMEOUT);
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    let console = vm.console();
    assert!(
        console
            .iter()
            .any(|l| l.trim() == "/sys/class/net/eth0/queues/rx-1"),
        "{console:?}"
    );
    assert!(!console.iter().any(|l| l.contains("queues/rx-2")));
}

/// Three NICs of different kinds at once: masquerade on the pod network,
/// a multus bridge (L2, DHCP from its own network) and a macvtap; each guest
/// interface gets its lease from and reaches its own network, and the pod
/// is clean afterwards.
#[test]
fn three_nics_masquerade_multus_bridge_and_macvtap() {
    use petrel_tests::cluster::{Cluster, SERVER_IP};
    let dir = Scratch::new("multi");
    let mut cluster = Cluster::new();
    let mut l2 = NetNs::new("l2srv");
    let mut mv = NetNs::new("mvsrv");
    let tag = std::process::id() % 100_000;
    sh(&format!(
        "ip -n {pod} link add net1 type veth peer name eth0 netns {l2} && \
         ip -n {pod} link set net1 up && \
         ip -n {l2} link set eth0 up && ip -n {l2} addr add 10.0.70.1/24 dev eth0 && \
         ip -n {pod} link add mm{tag} type veth peer name eth0 netns {mv} && \
         ip -n {pod} link set mm{tag} up && \
         ip -n {pod} link add link mm{tag} name net2 type macvtap mode bridge && \
         ip -n {pod} link set net2 up && \
         ip -n {mv} link set eth0 up && ip -n {mv} addr add {SERVER}/24 dev eth0",
        pod = cluster.pod.name(),
        l2 = l2.name(),
        mv = mv.name(),
    ));
    l2.start_udhcpd_with(dir.path(), "eth0", "10.0.70.2", "10.0.70.1", false);
    mv.start_udhcpd_with(dir.path(), "eth0", GUEST, SERVER, false);
    std::fs::write(dir.path().join("hello"), "HELLO-FROM-SERVER\n").unwrap();
    cluster.server.spawn(&format!(
        "exec busybox httpd -f -p {SERVER_IP}:80 -h {}",
        dir.path().display()
    ));
    let spec = dir.write(
        "vmi.yaml",
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: multi
spec:
  domain:
    memory: {guest: 128Mi}
    devices:
      interfaces:
        - name: default
          masquerade: {}
        - name: br2
          bridge: {}
        - name: mvt
          macvtap: {}
  networks:
    - name: default
      pod: {}
    - name: br2
      multus:
        networkName: nadbr
    - name: mvt
      multus:
        networkName: macvtapnet
"#,
    );
    let guest_cmd = format!(
        "wget -q -O - http://{SERVER_IP}/hello; \
         ping -c 1 -W 5 10.0.70.1 && echo L2-OK; \
         ping -c 1 -W 5 {SERVER} && echo MACVTAP-OK"
    );
    let mut vm = Vmm::boot_in(Some(cluster.pod.name()), &spec, "", Some(&guest_cmd), &[]);
    let e0 = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    let e1 = vm.wait_for("GUEST-NET eth1", BOOT_TIMEOUT);
    let e2 = vm.wait_for("GUEST-NET eth2", BOOT_TIMEOUT);
    assert!(e0.contains("ip=10.0.2.2/24"), "{e0}");
    assert!(e1.contains("ip=10.0.70.2/24"), "{e1}");
    assert!(e2.contains(&format!("ip={GUEST}/24")), "{e2}");
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    vm.wait_for("L2-OK", BOOT_TIMEOUT);
    vm.wait_for("MACVTAP-OK", BOOT_TIMEOUT);
    let st = vm.wait_exit(BOOT_TIMEOUT);
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    let links = cluster.pod.exec("ip -o link show");
    assert!(!links.contains("k6t-"), "bridges left behind:\n{links}");
    assert!(!links.contains("tap-"), "taps left behind:\n{links}");
}
