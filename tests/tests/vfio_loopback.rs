//! A real guest drives a device through petrel's VFIO passthrough model:
//! petrel's own virtio-net, exposed through the VFIO interface (see
//! `petrel_tests::vfio_loopback`), placed at slot 7 by the same path an
//! SR-IOV VF takes. The guest's stock virtio-pci driver must size and read
//! the shadowed BARs, walk the passed-through capabilities, program the
//! trapped MSI-X table, and then move DHCP, ping and data over it.

use std::process::Stdio;
use std::time::Duration;

use petrel_tests::guestnet::{host_side, md5, transfer_bytes, GUEST_IP, HOST_IP};
use petrel_tests::netns::sh;
use petrel_tests::{base64, guest_cmdline, guest_dir, vmi_yaml, Scratch, Vmm, BOOT_TIMEOUT};

#[test]
fn guest_drives_a_device_through_the_vfio_passthrough_model() {
    let dir = Scratch::new("vfio-loop");
    let mut ns = host_side(&dir, false);
    let blob = dir.path().join("blob");
    sh(&format!(
        "head -c {} /dev/urandom > {}",
        transfer_bytes(),
        blob.display()
    ));
    let sum = md5(&blob);
    ns.spawn(&format!(
        "exec busybox httpd -f -p {HOST_IP}:8080 -h {}",
        dir.path().display()
    ));
    let spec = dir.write("vmi.yaml", &vmi_yaml("vfio-loop", 1, "128Mi"));
    let guest_cmd = format!(
        "d=/sys/bus/pci/devices/0000:00:07.0; \
         echo LOOP-IDS $(cat $d/vendor) $(cat $d/device) driver=$(basename $(readlink $d/driver)); \
         echo LOOP-MSIX $(grep -c 'PCI-MSI.*virtio' /proc/interrupts); \
         ping -c 2 -W 5 {HOST_IP} && echo PING-OK; \
         wget -q -O /tmp/blob http://{HOST_IP}:8080/blob && md5sum /tmp/blob; \
         echo LOOP-IRQS $(grep 'PCI-MSI.*virtio0-input' /proc/interrupts | awk '{{print $2}}')"
    );
    let cmdline = format!(
        "{} guest.cmd={}",
        guest_cmdline(),
        base64(guest_cmd.as_bytes())
    );
    let kit = guest_dir();
    let mut c = ns.command(std::path::Path::new(env!("CARGO_BIN_EXE_vfio-loopback")));
    c.arg(&spec)
        .arg(kit.join("vmlinux"))
        .arg(kit.join("initramfs.cpio"))
        .arg(&cmdline)
        .arg("ptap0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut vm = Vmm::spawn(c);
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains(&format!("ip={GUEST_IP}/24")), "{lease}");
    let ids = vm.wait_for("LOOP-IDS", BOOT_TIMEOUT);
    assert_eq!(
        ids.trim(),
        "LOOP-IDS 0x1af4 0x1041 driver=virtio-pci",
        "the guest's virtio-pci driver owns the passed-through function"
    );
    let msix = vm.wait_for("LOOP-MSIX", BOOT_TIMEOUT);
    let n: u32 = msix
        .trim()
        .trim_start_matches("LOOP-MSIX ")
        .parse()
        .unwrap_or(0);
    assert!(
        n >= 2,
        "the driver uses MSI-X vectors through the trapped table: {msix}"
    );
    vm.wait_for("PING-OK", BOOT_TIMEOUT);
    ns.exec(&format!("busybox ping -c 2 -W 5 {GUEST_IP}"));
    let transfer_timeout = BOOT_TIMEOUT + Duration::from_secs(transfer_bytes() / 10_000);
    let line = vm.wait_for(" /tmp/blob", transfer_timeout);
    assert!(line.starts_with(&sum), "guest md5 {line} != host md5 {sum}");
    let irqs = vm.wait_for("LOOP-IRQS", BOOT_TIMEOUT);
    let count: u64 = irqs
        .trim()
        .trim_start_matches("LOOP-IRQS ")
        .parse()
        .unwrap_or(0);
    assert!(
        count > 0,
        "rx interrupts arrived through the passthrough routes: {irqs}"
    );
    let st = vm.wait_exit(BOOT_TIMEOUT);
    let stderr = vm.stderr();
    assert_eq!(st.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("VFIO device attached") && stderr.contains("msix=4"),
        "{stderr}"
    );
}
