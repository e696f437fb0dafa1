//! The sandbox with a real guest on a masquerade NIC: every petrel thread
//! runs under its seccomp filter with no_new_privs, the vCPU, worker,
//! console and API threads hold no capabilities (the control thread only
//! CAP_NET_ADMIN), descriptors are close-on-exec and core dumps are off;
//! a denied system call and a panicking thread stop the VM with exit 1,
//! naming the call or the thread, and the pod is still cleaned up; SIGKILLs
//! at random moments leave state the next run removes.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use petrel_tests::cluster::{pod_vmi_yaml, Cluster};
use petrel_tests::{
    base64, guest_cmdline, guest_dir, petrel_bin, run_args, Scratch, Vmm, BOOT_TIMEOUT,
};

/// petrel in the pod's netns with `env` set (for the debug-build test
/// triggers), booting the guest kit with `guest_cmd`.
fn boot(
    cluster: &Cluster,
    spec: &std::path::Path,
    guest_cmd: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Vmm {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", cluster.pod.name()])
        .arg(petrel_bin());
    run_args(&mut c, spec, &guest_dir());
    let cmdline = format!(
        "{} guest.cmd={}",
        guest_cmdline(),
        base64(guest_cmd.as_bytes())
    );
    c.arg("--cmdline")
        .arg(cmdline)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Vmm::spawn(c)
}

fn assert_pod_clean(cluster: &Cluster) {
    let links = cluster.pod.exec("ip -o link show");
    assert!(!links.contains("k6t-"), "bridge left behind:\n{links}");
    assert!(!links.contains("tap-"), "tap left behind:\n{links}");
    let tables = cluster.pod.exec("nft list tables");
    assert!(
        !tables.contains("petrel"),
        "nft table left behind:\n{tables}"
    );
}

/// One thread's name and the status fields the test reads.
#[derive(Debug)]
struct Task {
    tid: u32,
    comm: String,
    seccomp: String,
    no_new_privs: String,
    cap_eff: u64,
}

fn tasks(pid: u32) -> Vec<Task> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = entry.unwrap().path();
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue; // the thread ended meanwhile
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        out.push(Task {
            tid: dir.file_name().unwrap().to_str().unwrap().parse().unwrap(),
            comm: comm.trim().to_string(),
            seccomp: field("Seccomp:"),
            no_new_privs: field("NoNewPrivs:"),
            cap_eff: u64::from_str_radix(&field("CapEff:"), 16).unwrap(),
        });
    }
    out
}

/// `Seccomp: 2`, `NoNewPrivs: 1` on every thread, no capabilities but on
/// the control thread (CAP_NET_ADMIN only), every descriptor close-on-exec,
/// core dumps off; then SIGTERM still tears the pod network down.
#[test]
fn every_thread_is_sandboxed_while_a_masquerade_vm_runs() {
    let dir = Scratch::new("hard-threads");
    let cluster = Cluster::new();
    let spec = dir.write("vmi.yaml", &pod_vmi_yaml("hard", "masquerade", ""));
    let api = dir.path().join("api.sock");
    let api_arg = api.display().to_string();
    let mut vm = boot(
        &cluster,
        &spec,
        "ping -c 2 10.0.2.1; echo GUEST-READY; sleep 600",
        &["--api-socket", &api_arg],
        &[],
    );
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains("ip=10.0.2.2/24"), "{lease}");
    vm.wait_for("GUEST-READY", BOOT_TIMEOUT);
    // An API request, so tiny_http's connection threads exist too.
    let ping = petrel_tests::netns::sh(&format!(
        "curl -sS --unix-socket {} http://localhost/api/v1/vmm.ping",
        api.display()
    ));
    assert!(ping.contains("\"pid\""), "{ping}");

    let pid = vm.pid();
    let tasks = tasks(pid);
    eprintln!("threads: {tasks:#?}");
    for t in &tasks {
        assert_eq!(t.seccomp, "2", "{t:?}");
        assert_eq!(t.no_new_privs, "1", "{t:?}");
    }
    let named = |prefix: &str| -> Vec<&Task> {
        tasks
            .iter()
            .filter(|t| t.comm.starts_with(prefix))
            .collect()
    };
    for class in ["vcpu", "default-q", "console", "api"] {
        let threads = named(class);
        assert!(!threads.is_empty(), "no {class} thread in {tasks:#?}");
        for t in threads {
            assert_eq!(t.cap_eff, 0, "{t:?} holds capabilities");
        }
    }
    // The main thread (the control loop) keeps only CAP_NET_ADMIN.
    let main = tasks.iter().find(|t| t.tid == pid).unwrap();
    assert_eq!(main.cap_eff, 1 << 12, "{main:?}");

    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    let mut fds = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let entry = entry.unwrap();
        let fd: u32 = entry.file_name().to_str().unwrap().parse().unwrap();
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .unwrap()
            .trim();
        let flags = u32::from_str_radix(flags, 8).unwrap();
        if fd > 2 {
            fds += 1;
            let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
            assert_ne!(
                flags & libc::O_CLOEXEC as u32,
                0,
                "fd {fd} ({target:?}) is not close-on-exec"
            );
        }
    }
    assert!(fds > 10, "only {fds} descriptors?");

    vm.signal(libc::SIGTERM);
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert_pod_clean(&cluster);
}

/// A system call outside a thread's allow-list (the debug build's
/// `PETREL_TEST_DENIED_SYSCALL` makes the vCPU try `setns`) ends petrel
/// with exit 1 and a line naming the thread and the call.
#[test]
fn a_denied_system_call_is_named_and_exits_1() {
    let dir = Scratch::new("hard-denied");
    let cluster = Cluster::new();
    let spec = dir.write("vmi.yaml", &pod_vmi_yaml("denied", "masquerade", ""));
    let mut vm = boot(
        &cluster,
        &spec,
        "true",
        &[],
        &[("PETREL_TEST_DENIED_SYSCALL", "vcpu0")],
    );
    let st = vm.wait_exit(Duration::from_secs(60));
    let err = vm.stderr();
    assert_eq!(st.code(), Some(1), "stderr:\n{err}");
    assert!(
        err.contains("petrel: seccomp: thread vcpu0 (vcpu) made system call setns (308), which its filter does not allow"),
        "{err}"
    );
    // `log` lets the same call through (the kernel logs it).
    let mut vm = boot(
        &cluster,
        &spec,
        "echo GUEST-READY",
        &["--seccomp", "log"],
        &[("PETREL_TEST_DENIED_SYSCALL", "vcpu0")],
    );
    vm.wait_for("GUEST-READY", BOOT_TIMEOUT);
    vm.signal(libc::SIGTERM);
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert_pod_clean(&cluster);
}

/// A panic on a vCPU thread or a queue worker (the debug build's
/// `PETREL_TEST_PANIC=<thread>`) stops the VM with exit 1 and a message
/// naming the thread, and the pod network is still torn down.
#[test]
fn a_panicking_thread_stops_the_vm_and_the_pod_is_cleaned() {
    let dir = Scratch::new("hard-panic");
    let cluster = Cluster::new();
    let spec = dir.write("vmi.yaml", &pod_vmi_yaml("panic", "masquerade", ""));
    for (thread, wait) in [
        ("vcpu0", Duration::from_secs(60)),
        ("default-q0", BOOT_TIMEOUT),
    ] {
        let mut vm = boot(
            &cluster,
            &spec,
            "sleep 600",
            &[],
            &[("PETREL_TEST_PANIC", thread)],
        );
        let st = vm.wait_exit(wait);
        let err = vm.stderr();
        assert_eq!(st.code(), Some(1), "{thread}: stderr:\n{err}");
        assert!(
            err.contains(&format!(
                "petrel: thread {thread} panicked: PETREL_TEST_PANIC={thread}"
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!("petrel's thread {thread} panicked")),
            "{err}"
        );
        assert!(err.contains("pod network plumbing removed"), "{err}");
        assert_pod_clean(&cluster);
    }
}

/// A small xorshift generator: the kill moments differ per run and are
/// printed, so a failing round can be retried with its delays.
fn delays(seed: u64, n: usize, max_ms: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % max_ms
        })
        .collect()
}

/// Five SIGKILLs at random moments from start to the guest's networking,
/// then a clean run: it removes the stale bridge, tap and nft table, boots,
/// leases, and leaves the pod as it found it.
#[test]
fn sigkills_at_random_moments_leave_nothing_the_next_run_does_not_clean() {
    let dir = Scratch::new("hard-kill");
    let cluster = Cluster::new();
    let spec = dir.write("vmi.yaml", &pod_vmi_yaml("killed", "masquerade", ""));
    let seed = std::env::var("PETREL_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let delays = delays(seed, 5, 20_000);
    eprintln!("PETREL_KILL_SEED={seed}: kills after {delays:?} ms");
    for (round, ms) in delays.iter().enumerate() {
        let mut vm = boot(&cluster, &spec, "echo GUEST-READY; sleep 600", &[], &[]);
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(*ms));
        vm.signal(libc::SIGKILL);
        let st = vm.wait_exit(Duration::from_secs(30));
        eprintln!(
            "round {round}: killed after {:?} ({st:?}); pod links:\n{}",
            start.elapsed(),
            cluster.pod.exec("ip -br link")
        );
    }
    let mut vm = boot(
        &cluster,
        &spec,
        "ping -c 2 10.0.2.1 && echo GUEST-PING-OK; echo GUEST-READY; sleep 600",
        &[],
        &[],
    );
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains("ip=10.0.2.2/24"), "{lease}");
    vm.wait_for("GUEST-PING-OK", BOOT_TIMEOUT);
    vm.signal(libc::SIGTERM);
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert_pod_clean(&cluster);
}
