//! VM lifecycle on the project's ACPI guest: reboot in the same process
//! (`--on-guest-reset restart`), the ACPI power button (SIGTERM with a
//! grace period), a guest that ignores the button, and the console socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use petrel_tests::guestnet::{host_side, nic_spec, GUEST_IP};
use petrel_tests::{vmi_yaml, Scratch, Vmm, BOOT_TIMEOUT};

/// Guest command that runs one line typed on the console, then powers off.
const RUN_TYPED_LINE: &str = "echo WAITING-FOR-INPUT; read -r line; eval \"$line\"; poweroff -f";

fn connect(path: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("cannot connect to {}: {e}", path.display()),
        }
    }
}

/// Reads lines from the console socket until one contains `marker`.
fn read_until(r: &mut BufReader<UnixStream>, marker: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).unwrap_or(0);
        assert!(n > 0, "console socket closed before {marker:?}: {seen:?}");
        let hit = line.contains(marker);
        seen.push(line);
        if hit {
            return seen;
        }
    }
}

#[test]
fn guest_reboot_restarts_the_vm_in_the_same_process() {
    let dir = Scratch::new("reboot");
    let ns = host_side(&dir, false);
    let spec = dir.write("vmi.yaml", &nic_spec("reboot", 1, false, "virtio"));
    let sock = dir.path().join("console.sock");
    let console = format!("socket:{}", sock.display());
    let mut vm = Vmm::boot_in(
        Some(ns.name()),
        &spec,
        "",
        Some(RUN_TYPED_LINE),
        &["--on-guest-reset", "restart", "--console", &console],
    );
    let first = vm.wait_for_nth("GUEST-NET eth0", 1, BOOT_TIMEOUT);
    assert!(first.contains(&format!("ip={GUEST_IP}/24")), "{first}");
    vm.wait_for_nth("WAITING-FOR-INPUT", 1, BOOT_TIMEOUT);
    let mut s = connect(&sock);
    s.write_all(b"echo REBOOTING; reboot -f\n").unwrap();
    // The second boot: init again, a new DHCP lease on the same NIC.
    vm.wait_for_nth("GUEST-INIT-OK", 2, BOOT_TIMEOUT);
    let second = vm.wait_for_nth("GUEST-NET eth0", 2, BOOT_TIMEOUT);
    assert!(second.contains(&format!("ip={GUEST_IP}/24")), "{second}");
    vm.wait_for_nth("WAITING-FOR-INPUT", 2, BOOT_TIMEOUT);
    s.write_all(b"echo SECOND-BOOT-DONE\n").unwrap();
    vm.wait_for("SECOND-BOOT-DONE", BOOT_TIMEOUT);
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    let err = vm.stderr();
    assert!(err.contains("resetting the VM"), "{err}");
    assert!(err.contains("ACPI S5"), "{err}");
}

#[test]
fn sigterm_presses_the_power_button_and_the_acpi_guest_shuts_down() {
    let dir = Scratch::new("pwrbtn");
    let spec = dir.write("vmi.yaml", &vmi_yaml("pwrbtn", 1, "128Mi"));
    let mut vm = Vmm::boot(&spec, "guest.net=0", Some("echo READY; sleep 600"), &[]);
    vm.wait_for("READY", BOOT_TIMEOUT);
    vm.signal(libc::SIGTERM);
    vm.wait_for("GUEST-POWER-BUTTON", Duration::from_secs(60));
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    let err = vm.stderr();
    assert!(err.contains("power button pressed"), "{err}");
    assert!(err.contains("ACPI S5"), "{err}");
    assert!(!err.contains("grace period"), "{err}");
}

/// `PUT vm.power-button` on the API socket: the ACPI guest shuts down and
/// petrel exits 0.
#[test]
fn api_power_button_shuts_the_acpi_guest_down() {
    let dir = Scratch::new("apibtn");
    let spec = dir.write("vmi.yaml", &vmi_yaml("apibtn", 1, "128Mi"));
    let sock = dir.path().join("api.sock");
    let sock_arg = sock.to_string_lossy().into_owned();
    let mut vm = Vmm::boot(
        &spec,
        "guest.net=0",
        Some("echo READY; sleep 600"),
        &["--api-socket", &sock_arg],
    );
    vm.wait_for("READY", BOOT_TIMEOUT);
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .arg("--unix-socket")
        .arg(&sock)
        .arg("http://localhost/api/v1/vm.power-button")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "204");
    vm.wait_for("GUEST-POWER-BUTTON", Duration::from_secs(60));
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert!(vm.stderr().contains("ACPI S5"), "{}", vm.stderr());
}

#[test]
fn sigterm_stops_a_guest_that_ignores_the_button_after_the_grace_period() {
    let dir = Scratch::new("grace");
    let yaml = vmi_yaml("grace", 1, "128Mi") + "  terminationGracePeriodSeconds: 5\n";
    let spec = dir.write("vmi.yaml", &yaml);
    let mut vm = Vmm::boot(
        &spec,
        "guest.net=0 guest.acpid=0",
        Some("echo READY; sleep 600"),
        &[],
    );
    vm.wait_for("READY", BOOT_TIMEOUT);
    let t0 = Instant::now();
    vm.signal(libc::SIGTERM);
    let st = vm.wait_exit(Duration::from_secs(60));
    let waited = t0.elapsed();
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert!(waited >= Duration::from_secs(5), "stopped after {waited:?}");
    let err = vm.stderr();
    assert!(err.contains("within the grace period"), "{err}");
    assert!(!vm
        .console()
        .iter()
        .any(|l| l.contains("GUEST-POWER-BUTTON")));
}

#[test]
fn console_socket_shows_boot_output_and_takes_input() {
    let dir = Scratch::new("consock");
    let spec = dir.write("vmi.yaml", &vmi_yaml("consock", 1, "128Mi"));
    let sock = dir.path().join("console.sock");
    let console = format!("socket:{}", sock.display());
    let mut vm = Vmm::boot(
        &spec,
        "guest.net=0",
        Some(RUN_TYPED_LINE),
        &["--console", &console],
    );
    let s = connect(&sock);
    let mut r = BufReader::new(s.try_clone().unwrap());
    // Boot output (from the backlog or live), then the prompt.
    let boot = read_until(&mut r, "WAITING-FOR-INPUT");
    assert!(boot.iter().any(|l| l.contains("GUEST-INIT-OK")), "{boot:?}");
    let mut w = s;
    w.write_all(b"echo typed-$((6*7))\n").unwrap();
    read_until(&mut r, "typed-42");
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    // The console log (stdout) has it too.
    assert!(vm.console().iter().any(|l| l.trim() == "typed-42"));
    assert!(!sock.exists(), "the socket file is removed on exit");
}
