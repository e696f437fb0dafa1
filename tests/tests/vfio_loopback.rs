//! A real guest drives a device through petrel's VFIO passthrough model:
//! petrel's own virtio-net or e1000, exposed through the VFIO interface
//! (see `petrel_tests::vfio_loopback`), placed at slot 7 by the same path
//! an SR-IOV VF takes. The guest's stock driver must size and read the
//! shadowed BARs, walk the passed-through capabilities, program the trapped
//! MSI-X table (virtio-net) or take INTx through KVM's resample (e1000),
//! and then move DHCP, ping and data over it.

use std::process::Stdio;
use std::time::Duration;

use petrel_tests::guestnet::{host_side, serve_blob, transfer_bytes, GUEST_IP, HOST_IP};
use petrel_tests::{base64, guest_cmdline, guest_dir, vmi_yaml, Scratch, Vmm, BOOT_TIMEOUT};

/// What one run expects of the guest and of petrel.
struct Expect {
    model: &'static str,
    /// `LOOP-IDS` line: vendor, device, bound driver.
    ids: &'static str,
    /// /proc/interrupts lines of the device.
    irq_pattern: &'static str,
    min_irq_lines: u32,
    /// What petrel logs about the device's interrupts.
    log: &'static str,
}

fn number_after(line: &str, tag: &str) -> u64 {
    line.trim()
        .trim_start_matches(tag)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn passthrough_loopback(e: Expect) {
    let dir = Scratch::new(&format!("vfio-loop-{}", e.model));
    let mut ns = host_side(&dir, false);
    let sum = serve_blob(&dir, &mut ns);
    let spec = dir.write("vmi.yaml", &vmi_yaml("vfio-loop", 1, "128Mi"));
    let pat = e.irq_pattern;
    let guest_cmd = format!(
        "d=/sys/bus/pci/devices/0000:00:07.0; \
         echo LOOP-IDS $(cat $d/vendor) $(cat $d/device) driver=$(basename $(readlink $d/driver)); \
         ping -c 2 -W 5 {HOST_IP} && echo PING-OK; \
         wget -q -O /tmp/blob http://{HOST_IP}:8080/blob && md5sum /tmp/blob; \
         echo LOOP-IRQ-LINES $(grep -E '{pat}' /proc/interrupts | wc -l); \
         echo LOOP-IRQS $(grep -E '{pat}' /proc/interrupts | awk '{{s += $2}} END {{print s}}')"
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
        .arg(e.model)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut vm = Vmm::spawn(c);
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains(&format!("ip={GUEST_IP}/24")), "{lease}");
    let ids = vm.wait_for("LOOP-IDS", BOOT_TIMEOUT);
    assert_eq!(
        ids.trim(),
        format!("LOOP-IDS {}", e.ids),
        "the guest's own driver owns the passed-through function"
    );
    vm.wait_for("PING-OK", BOOT_TIMEOUT);
    ns.exec(&format!("busybox ping -c 2 -W 5 {GUEST_IP}"));
    let transfer_timeout = BOOT_TIMEOUT + Duration::from_secs(transfer_bytes() / 10_000);
    let line = vm.wait_for(" /tmp/blob", transfer_timeout);
    assert!(line.starts_with(&sum), "guest md5 {line} != host md5 {sum}");
    let lines = vm.wait_for("LOOP-IRQ-LINES", BOOT_TIMEOUT);
    assert!(
        number_after(&lines, "LOOP-IRQ-LINES") >= u64::from(e.min_irq_lines),
        "interrupt lines matching {pat:?}: {lines}"
    );
    let irqs = vm.wait_for("LOOP-IRQS", BOOT_TIMEOUT);
    assert!(
        number_after(&irqs, "LOOP-IRQS") > 0,
        "interrupts arrived through the passthrough routes: {irqs}"
    );
    let st = vm.wait_exit(BOOT_TIMEOUT);
    let stderr = vm.stderr();
    assert_eq!(st.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("VFIO device attached") && stderr.contains(e.log),
        "{stderr}"
    );
}

/// MSI-X: the table is trapped, each entry becomes a KVM route.
#[test]
fn virtio_net_through_the_passthrough_model_with_msix() {
    passthrough_loopback(Expect {
        model: "virtio",
        ids: "0x1af4 0x1041 driver=virtio-pci",
        irq_pattern: "PCI-MSI.*virtio",
        min_irq_lines: 2,
        log: "msix=4",
    });
}

/// INTx: level-triggered through an irqfd whose resample unmasks the line.
#[test]
fn e1000_through_the_passthrough_model_with_intx() {
    passthrough_loopback(Expect {
        model: "e1000",
        ids: "0x8086 0x100e driver=e1000",
        irq_pattern: "IO-APIC.*eth0",
        min_irq_lines: 1,
        log: "intx_gsi=16",
    });
}
