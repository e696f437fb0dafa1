//! KubeVirt's macvtap binding with a real guest: the macvtap link `net1`
//! (bridge mode) sits on a veth in the pod namespace whose peer is in a
//! server namespace; the guest, with 2 vCPUs and multiqueue, gets DHCP from
//! the server side, keeps the macvtap's MAC, pings, and downloads data
//! with the md5 checked.

use petrel_tests::guestnet::md5;
use petrel_tests::netns::{sh, NetNs};
use petrel_tests::{Scratch, Vmm, BOOT_TIMEOUT};

const SERVER: &str = "10.0.60.1";
const GUEST: &str = "10.0.60.2";

#[test]
fn macvtap_multiqueue_dhcp_ping_and_download() {
    let dir = Scratch::new("mvt");
    let pod = NetNs::new("mvpod");
    let mut server = NetNs::new("mvsrv");
    let tag = std::process::id() % 100_000;
    sh(&format!(
        "ip -n {pod} link add ml{tag} type veth peer name eth0 netns {srv} && \
         ip -n {pod} link set ml{tag} up && \
         ip -n {pod} link add link ml{tag} name net1 type macvtap mode bridge && \
         ip -n {pod} link set net1 up && \
         ip -n {srv} link set eth0 up && ip -n {srv} addr add {SERVER}/24 dev eth0",
        pod = pod.name(),
        srv = server.name(),
    ));
    let macvtap_mac = pod
        .exec("cat /sys/class/net/net1/address")
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
