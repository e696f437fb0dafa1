//! virtio-net over a tap, with a real guest: DHCP from udhcpd on the host
//! side of the tap, ping both ways, data each way with md5 checked on both
//! ends, and multiqueue with two vCPUs. Everything runs in a network
//! namespace the test creates.

use petrel_tests::guestnet::{host_side, nic_spec, HOST_IP};
use petrel_tests::netns::sh;
use petrel_tests::{Scratch, Vmm, BOOT_TIMEOUT};

#[test]
fn dhcp_ping_and_transfer_each_way_with_md5() {
    petrel_tests::guestnet::dhcp_ping_transfer("virtio");
}

#[test]
fn multiqueue_over_handed_over_tap_fds_two_queue_pairs_both_carry_traffic() {
    let dir = Scratch::new("vnetmq");
    let mut ns = host_side(&dir, true);
    ns.spawn(&format!(
        "exec busybox httpd -f -p {HOST_IP}:8080 -h {}",
        dir.path().display()
    ));
    sh(&format!(
        "head -c 1048576 /dev/urandom > {}/blob",
        dir.path().display()
    ));
    let spec = dir.write("vmi.yaml", &nic_spec("vnetmq", 2, true, "virtio"));
    // One download pinned to each vCPU: XPS maps CPU i to TX queue i.
    let guest_cmd = format!(
        "for q in /sys/class/net/eth0/queues/rx-*; do echo $q; done; \
         taskset 1 wget -q -O /tmp/a http://{HOST_IP}:8080/blob && echo DL0-OK; \
         taskset 2 wget -q -O /tmp/b http://{HOST_IP}:8080/blob && echo DL1-OK; \
         taskset 1 ping -c 3 {HOST_IP} >/dev/null; taskset 2 ping -c 3 {HOST_IP} >/dev/null; echo PINGS-DONE"
    );
    // The tap's queues are opened here and handed over as descriptors, the
    // way a parent process (virt-launcher) would pass them.
    let fds = ns.open_tap_fds("ptap0", 2);
    let raw: Vec<i32> = fds.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    let tap_fd = format!("default={},{}", raw[0], raw[1]);
    let mut vm = Vmm::boot_with_fds(
        Some(ns.name()),
        &spec,
        "",
        Some(&guest_cmd),
        &["--tap-fd", &tap_fd],
        &raw,
    );
    drop(fds);
    vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    vm.wait_for("DL0-OK", BOOT_TIMEOUT);
    vm.wait_for("DL1-OK", BOOT_TIMEOUT);
    vm.wait_for("PINGS-DONE", BOOT_TIMEOUT);
    let st = vm.wait_exit(BOOT_TIMEOUT);
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    let console = vm.console();
    assert!(console
        .iter()
        .any(|l| l.trim() == "/sys/class/net/eth0/queues/rx-0"));
    assert!(console
        .iter()
        .any(|l| l.trim() == "/sys/class/net/eth0/queues/rx-1"));
    assert!(!console.iter().any(|l| l.contains("queues/rx-2")));
    // petrel logs per-queue-pair counters when the NIC stops.
    let err = vm.stderr();
    for q in 0..2 {
        let line = err
            .lines()
            .find(|l| l.contains("queue pair counters") && l.contains(&format!("queue={q}")))
            .unwrap_or_else(|| panic!("no counters for queue {q} in:\n{err}"));
        let tx = field(line, "tx_frames");
        let rx = field(line, "rx_frames");
        assert!(tx > 0 && rx > 0, "queue {q} carried no traffic: {line}");
    }
}

fn field(line: &str, name: &str) -> u64 {
    let key = format!("{name}=");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("{name} missing in {line}"))
        + key.len();
    line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}
