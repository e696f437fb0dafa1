//! e1000 (82540EM) with the guest's Linux e1000 driver over a tap: DHCP,
//! carrier, ping both ways, data each way with md5 checked on both ends.

#[test]
fn e1000_dhcp_ping_and_transfer_each_way_with_md5() {
    petrel_tests::guestnet::dhcp_ping_transfer("e1000");
}

/// The e1000 behind the masquerade binding in a pod-like namespace: the
/// guest's e1000 driver gets 10.0.2.2 from petrel's DHCP server, and its
/// traffic reaches a server through the NAT with the pod IP as source.
#[test]
fn e1000_with_masquerade_binding() {
    use petrel_tests::cluster::{Cluster, POD_IP, SERVER_IP};
    use petrel_tests::{Scratch, Vmm, BOOT_TIMEOUT};
    let dir = Scratch::new("e1000-masq");
    let mut cluster = Cluster::new();
    std::fs::write(dir.path().join("hello"), "HELLO-FROM-SERVER\n").unwrap();
    cluster.server.spawn(&format!(
        "exec busybox httpd -f -p {SERVER_IP}:80 -h {}",
        dir.path().display()
    ));
    cluster
        .server
        .spawn("sleep 3600 | busybox nc -l -p 7000 > /dev/null");
    let spec = dir.write(
        "vmi.yaml",
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: e1000masq
spec:
  domain:
    memory: {guest: 128Mi}
    devices:
      interfaces:
        - name: default
          model: e1000
          masquerade: {}
  networks:
    - name: default
      pod: {}
"#,
    );
    let guest_cmd = format!(
        "wget -q -O - http://{SERVER_IP}/hello; sleep 15 | nc {SERVER_IP} 7000; echo E1000-DONE"
    );
    let mut vm = Vmm::boot_in(Some(cluster.pod.name()), &spec, "", Some(&guest_cmd), &[]);
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains("ip=10.0.2.2/24"), "{lease}");
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    cluster.wait_server_sees(POD_IP, |c| c.server_sees_peer(POD_IP));
    vm.wait_for("E1000-DONE", BOOT_TIMEOUT);
    let st = vm.wait_exit(BOOT_TIMEOUT);
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
}
