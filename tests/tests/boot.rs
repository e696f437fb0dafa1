//! Real-guest boots through petrel's own KVM code (root + /dev/kvm).

use std::time::Duration;

use petrel_tests::{vmi_yaml, Scratch, Vmm, BOOT_TIMEOUT};

#[test]
fn one_vcpu_runs_guest_command_and_exits_on_reset() {
    let dir = Scratch::new("boot1");
    let spec = dir.write("vmi.yaml", &vmi_yaml("boot1", 1, "128Mi"));
    let mut vm = Vmm::boot(
        &spec,
        "guest.net=0",
        Some("echo hello-from-$(uname -s); grep -c ^processor /proc/cpuinfo; grep MemTotal /proc/meminfo"),
        &[],
    );
    vm.wait_for("GUEST-INIT-OK", BOOT_TIMEOUT);
    vm.wait_for("GUEST-CMD-EXIT 0", BOOT_TIMEOUT);
    vm.wait_for("GUEST-POWEROFF", BOOT_TIMEOUT);
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    let console = vm.console();
    let begin = console
        .iter()
        .position(|l| l.contains("GUEST-CMD-BEGIN"))
        .unwrap();
    let out: Vec<&String> = console[begin..].iter().collect();
    assert!(
        out.iter().any(|l| l.trim() == "hello-from-Linux"),
        "{out:?}"
    );
    assert!(
        out.iter().any(|l| l.trim() == "1"),
        "one processor expected: {out:?}"
    );
    // 128 MiB of RAM minus what the kernel keeps: the e820 map reached it.
    let mem = out.iter().find(|l| l.starts_with("MemTotal")).unwrap();
    let kb: u64 = mem.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((100_000..=131_072).contains(&kb), "{mem}");
}

#[test]
fn two_vcpus_come_up_through_the_mp_table() {
    let dir = Scratch::new("boot2");
    let spec = dir.write("vmi.yaml", &vmi_yaml("boot2", 2, "128Mi"));
    let mut vm = Vmm::boot(
        &spec,
        "guest.net=0",
        Some("nproc; cat /sys/devices/system/cpu/online"),
        &[],
    );
    vm.wait_for("GUEST-INIT-OK", BOOT_TIMEOUT);
    vm.wait_for("GUEST-CMD-EXIT 0", BOOT_TIMEOUT);
    let st = vm.wait_exit(BOOT_TIMEOUT);
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    let console = vm.console();
    let begin = console
        .iter()
        .position(|l| l.contains("GUEST-CMD-BEGIN"))
        .unwrap();
    assert_eq!(console[begin + 1].trim(), "2", "{console:?}");
    assert_eq!(console[begin + 2].trim(), "0-1", "{console:?}");
}

#[test]
fn linux64_boot_protocol_reaches_init() {
    let dir = Scratch::new("boot64");
    let spec = dir.write("vmi.yaml", &vmi_yaml("boot64", 1, "128Mi"));
    let mut vm = Vmm::boot(&spec, "guest.net=0", None, &["--boot-protocol", "linux64"]);
    vm.wait_for("GUEST-INIT-OK", BOOT_TIMEOUT);
    vm.wait_for("GUEST-POWEROFF", BOOT_TIMEOUT);
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
}

/// `--console FILE`: the console writer thread owns the file and closes it
/// at exit under its seccomp filter (debug builds check every closed
/// descriptor with fcntl(F_GETFD) first).
#[test]
fn console_file_holds_the_boot_and_the_run_ends_cleanly() {
    let dir = Scratch::new("confile");
    let spec = dir.write("vmi.yaml", &vmi_yaml("confile", 1, "128Mi"));
    let file = dir.path().join("console.log");
    let mut vm = Vmm::boot(
        &spec,
        "guest.net=0",
        None,
        &["--console", &file.display().to_string()],
    );
    let st = vm.wait_exit(BOOT_TIMEOUT);
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("GUEST-INIT-OK"), "{text}");
    assert!(text.contains("GUEST-POWEROFF"), "{text}");
}

#[test]
fn guest_panic_is_a_failure_with_a_clear_message() {
    let dir = Scratch::new("panic");
    let spec = dir.write("vmi.yaml", &vmi_yaml("panic", 1, "128Mi"));
    // init exits at once, so the kernel panics ("Attempted to kill init")
    // and, with panic=-1, resets immediately.
    let mut vm = Vmm::boot(&spec, "rdinit=/bin/false", None, &[]);
    let st = vm.wait_exit(BOOT_TIMEOUT);
    assert_eq!(st.code(), Some(1), "stderr:\n{}", vm.stderr());
    let err = vm.stderr();
    assert!(
        err.contains("the guest kernel panicked") && err.contains("Attempted to kill init"),
        "{err}"
    );
}

#[test]
fn sigterm_stops_the_vm_cleanly() {
    let dir = Scratch::new("sigterm");
    // A zero grace period: SIGTERM stops at once, without the power button
    // (tests/tests/lifecycle.rs covers the button and the grace period).
    let yaml = vmi_yaml("sigterm", 1, "128Mi") + "  terminationGracePeriodSeconds: 0\n";
    let spec = dir.write("vmi.yaml", &yaml);
    // the guest would sleep for a long time; petrel must not wait for it
    let mut vm = Vmm::boot(&spec, "guest.net=0", Some("sleep 600"), &[]);
    vm.wait_for("GUEST-CMD-BEGIN", BOOT_TIMEOUT);
    vm.signal(libc::SIGTERM);
    let st = vm.wait_exit(Duration::from_secs(20));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert!(vm.stderr().contains("stop requested"), "{}", vm.stderr());
}
