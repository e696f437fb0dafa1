//! Snapshots and live migration with a real guest counting on its console,
//! driven through Cloud Hypervisor's API the way Virtink drives it:
//! `vm.snapshot` of a paused VM, a new petrel started with `--incoming`
//! and `vm.restore`d, the counter going on (same boot_id, no second boot);
//! `vm.receive-migration` on an `--incoming` target and
//! `vm.send-migration` on the source, with pre-copy; a target that dies
//! mid-migration leaves the source's guest running; a state file from
//! another format version is refused cleanly.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use petrel_tests::cluster::{Cluster, POD_IP, POD_MTU};
use petrel_tests::netns::{sh, NetNs};
use petrel_tests::{vmi_yaml, Scratch, Vmm, BOOT_TIMEOUT};

/// Counts once a second with the boot id on every line.
const COUNTER: &str = "b=$(cat /proc/sys/kernel/random/boot_id); i=0; while true; do i=$((i+1)); echo \"COUNT $i $b\"; sleep 1; done";

/// `curl` over the UNIX socket with a JSON body: (status, body).
fn http(sock: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-m", "600", "--unix-socket"])
        .arg(sock)
        .args(["-X", method, "-w", "\n%{http_code}"]);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = c
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn put(sock: &Path, path: &str, body: Option<&str>) -> (u16, String) {
    http(sock, "PUT", path, body)
}

fn state(sock: &Path) -> String {
    let (status, body) = http(sock, "GET", "/api/v1/vm.info", None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["state"].as_str().unwrap_or_default().to_string()
}

fn wait_socket(p: &Path) {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while UnixStream::connect(p).is_err() {
        assert!(Instant::now() < deadline, "no socket {}", p.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The (count, boot id) of every COUNT line.
fn counts(vm: &Vmm) -> Vec<(u64, String)> {
    vm.console()
        .iter()
        .filter_map(|l| {
            let rest = l.split("COUNT ").nth(1)?;
            let mut it = rest.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.to_string()))
        })
        .collect()
}

fn last_count(vm: &Vmm) -> (u64, String) {
    counts(vm).last().cloned().expect("no COUNT line yet")
}

/// Waits until `vm` printed a count above `above`.
fn wait_count_above(vm: &Vmm, above: u64, timeout: Duration) -> (u64, String) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(c) = counts(vm).into_iter().find(|c| c.0 > above) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "no count above {above}\nconsole:\n{}\nstderr:\n{}",
            vm.console().join("\n"),
            vm.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A counting guest with the API on `sock`.
fn boot_source(spec: &Path, sock: &Path) -> Vmm {
    let s = sock.to_str().unwrap();
    let vm = Vmm::boot(spec, "", Some(COUNTER), &["--api-socket", s]);
    vm.wait_for("COUNT 3 ", BOOT_TIMEOUT);
    vm
}

/// A petrel set up from the same spec that waits on `sock`.
fn start_incoming(spec: &Path, sock: &Path) -> Vmm {
    let s = sock.to_str().unwrap();
    let vm = Vmm::boot(spec, "", Some(COUNTER), &["--api-socket", s, "--incoming"]);
    wait_socket(sock);
    assert_eq!(state(sock), "Created");
    vm
}

/// The guest on `target` continues the count of `source_last` (same boot,
/// never booted again there).
fn assert_continues(target: &Vmm, source_last: &(u64, String)) {
    let next = wait_count_above(target, source_last.0, Duration::from_secs(120));
    assert_eq!(
        next.1, source_last.1,
        "another boot id: the guest booted again"
    );
    let first = counts(target).first().cloned().unwrap();
    assert!(
        first.0 >= source_last.0,
        "the target counted from {} (source was at {})",
        first.0,
        source_last.0
    );
    assert!(
        !target.console().iter().any(|l| l.contains("GUEST-INIT-OK")),
        "the target booted the guest:\n{}",
        target.console().join("\n")
    );
}

#[test]
fn snapshot_and_restore_continue_the_counting_guest() {
    let dir = Scratch::new("snap");
    let spec = dir.write("vmi.yaml", &vmi_yaml("snap", 1, "128Mi"));
    let a_sock = dir.path().join("a.sock");
    let mut a = boot_source(&spec, &a_sock);
    let snap = dir.path().join("snapshot");
    let url = format!(r#"{{"destination_url":"file://{}"}}"#, snap.display());
    // Cloud Hypervisor snapshots only a paused VM.
    assert_eq!(put(&a_sock, "/api/v1/vm.snapshot", Some(&url)).0, 405);
    assert_eq!(put(&a_sock, "/api/v1/vm.pause", None).0, 204);
    let last = last_count(&a);
    let (status, body) = put(&a_sock, "/api/v1/vm.snapshot", Some(&url));
    assert_eq!(status, 204, "{body}\n{}", a.stderr());
    assert_eq!(state(&a_sock), "Paused");
    assert_eq!(put(&a_sock, "/api/v1/vmm.shutdown", None).0, 204);
    assert_eq!(a.wait_exit(Duration::from_secs(60)).code(), Some(0));
    assert_eq!(last_count(&a), last, "the paused guest counted on");

    let b_sock = dir.path().join("b.sock");
    let mut b = start_incoming(&spec, &b_sock);
    // State of another format version is refused before anything changes.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let doc = std::fs::read_to_string(snap.join("state.json")).unwrap();
    std::fs::write(
        bad.join("state.json"),
        doc.replacen("\"version\":1", "\"version\":999", 1),
    )
    .unwrap();
    let bad_url = format!(r#"{{"source_url":"file://{}"}}"#, bad.display());
    let (status, body) = put(&b_sock, "/api/v1/vm.restore", Some(&bad_url));
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("version 999"), "{body}");
    assert_eq!(state(&b_sock), "Created");

    let url = format!(r#"{{"source_url":"file://{}"}}"#, snap.display());
    let (status, body) = put(&b_sock, "/api/v1/vm.restore", Some(&url));
    assert_eq!(status, 204, "{body}\n{}", b.stderr());
    assert_eq!(state(&b_sock), "Paused");
    assert_eq!(put(&b_sock, "/api/v1/vm.resume", None).0, 204);
    assert_continues(&b, &last);
    assert_eq!(put(&b_sock, "/api/v1/vmm.shutdown", None).0, 204);
    assert_eq!(b.wait_exit(Duration::from_secs(60)).code(), Some(0));
}

/// Runs `vm.receive-migration` on `target_sock` in a thread (it answers
/// when the migration is done).
fn receive_in_background(
    target_sock: &Path,
    receiver: &Path,
) -> std::thread::JoinHandle<(u16, String)> {
    let t = target_sock.to_path_buf();
    let body = format!(r#"{{"receiver_url":"unix:{}"}}"#, receiver.display());
    let h = std::thread::spawn(move || put(&t, "/api/v1/vm.receive-migration", Some(&body)));
    wait_socket_file(receiver);
    h
}

fn wait_socket_file(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.exists() {
        assert!(Instant::now() < deadline, "no {}", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn migrate_counting_guest(memory: &str) {
    let dir = Scratch::new("migrate");
    let spec = dir.write("vmi.yaml", &vmi_yaml("mig", 1, memory));
    let a_sock = dir.path().join("a.sock");
    let b_sock = dir.path().join("b.sock");
    let mut a = boot_source(&spec, &a_sock);
    let mut b = start_incoming(&spec, &b_sock);
    let mig = dir.path().join("migration.sock");
    let receiving = receive_in_background(&b_sock, &mig);
    let url = format!(r#"{{"destination_url":"unix:{}"}}"#, mig.display());
    let (status, body) = put(&a_sock, "/api/v1/vm.send-migration", Some(&url));
    assert_eq!(status, 204, "{body}\n{}", a.stderr());
    let (status, body) = receiving.join().unwrap();
    assert_eq!(status, 204, "{body}\n{}", b.stderr());
    assert_eq!(a.wait_exit(Duration::from_secs(60)).code(), Some(0));
    let last = last_count(&a);
    assert_continues(&b, &last);
    assert_eq!(state(&b_sock), "Running");
    let err = a.stderr();
    let line = err
        .lines()
        .find(|l| l.contains("migration complete: downtime"))
        .unwrap_or_else(|| panic!("no downtime line:\n{err}"));
    println!("{memory} guest: {line}");
    assert!(!a_sock.exists(), "the source left its API socket");
    assert_eq!(put(&b_sock, "/api/v1/vmm.shutdown", None).0, 204);
    assert_eq!(b.wait_exit(Duration::from_secs(60)).code(), Some(0));
}

#[test]
fn live_migration_moves_the_counting_guest_128m() {
    migrate_counting_guest("128Mi");
}

#[test]
fn live_migration_moves_the_counting_guest_1g() {
    migrate_counting_guest("1Gi");
}

/// A relay between the source and the target (the node-to-node proxy of
/// KubeVirt and Virtink) that kills the target petrel after `after` bytes.
fn relay_that_kills(
    listen: PathBuf,
    target: PathBuf,
    pid: u32,
    after: usize,
) -> std::thread::JoinHandle<usize> {
    let l = UnixListener::bind(&listen).unwrap();
    std::thread::spawn(move || {
        let (mut src, _) = l.accept().unwrap();
        let mut dst = UnixStream::connect(&target).unwrap();
        let mut back = dst.try_clone().unwrap();
        let mut src_w = src.try_clone().unwrap();
        // The target's answers go back to the source.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut back, &mut src_w);
        });
        let mut buf = vec![0u8; 64 << 10];
        let mut moved = 0;
        while moved < after {
            let n = src.read(&mut buf).unwrap_or(0);
            if n == 0 || dst.write_all(&buf[..n]).is_err() {
                break;
            }
            moved += n;
        }
        // SAFETY: kill(2) on the target petrel's pid; no memory involved.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        moved
    })
}

#[test]
fn a_target_dying_mid_migration_leaves_the_source_running() {
    let dir = Scratch::new("migdie");
    let spec = dir.write("vmi.yaml", &vmi_yaml("migdie", 1, "128Mi"));
    let a_sock = dir.path().join("a.sock");
    let b_sock = dir.path().join("b.sock");
    let mut a = boot_source(&spec, &a_sock);
    let mut b = start_incoming(&spec, &b_sock);
    let mig = dir.path().join("migration.sock");
    let receiving = receive_in_background(&b_sock, &mig);
    let relay = dir.path().join("relay.sock");
    let killer = relay_that_kills(relay.clone(), mig, b.pid(), 2 << 20);
    let url = format!(r#"{{"destination_url":"unix:{}"}}"#, relay.display());
    let (status, body) = put(&a_sock, "/api/v1/vm.send-migration", Some(&url));
    assert_eq!(status, 500, "{body}\n{}", a.stderr());
    let moved = killer.join().unwrap();
    assert!(moved >= 2 << 20, "the target died after {moved} bytes only");
    let _ = receiving.join();
    assert!(b.wait_exit(Duration::from_secs(30)).code().is_none());
    // The source's guest runs on and its API still answers.
    assert_eq!(state(&a_sock), "Running");
    let last = last_count(&a);
    let next = wait_count_above(&a, last.0, Duration::from_secs(60));
    assert_eq!(next.1, last.1);
    assert_eq!(put(&a_sock, "/api/v1/vmm.shutdown", None).0, 204);
    assert_eq!(a.wait_exit(Duration::from_secs(60)).code(), Some(0));
    assert!(
        a.stderr().contains("the guest runs on here"),
        "{}",
        a.stderr()
    );
}

/// A second pod on the same node: its own netns, a veth to the node on
/// 10.244.2.0/24 (the node routes between the pods), nothing else.
struct SecondPod {
    ns: NetNs,
}

const POD_B_IP: &str = "10.244.2.5";

impl SecondPod {
    fn new(cluster: &Cluster) -> Self {
        let ns = NetNs::new("podb");
        let vq = format!("vq{}", std::process::id() % 100_000);
        sh(&format!(
            "ip -n {node} link add {vq} type veth peer name eth0 netns {pod} && \
             ip -n {node} link set {vq} mtu {POD_MTU} up && ip -n {node} addr add 10.244.2.1/24 dev {vq} && \
             ip -n {pod} link set eth0 mtu {POD_MTU} up && ip -n {pod} addr add {POD_B_IP}/24 dev eth0 && \
             ip -n {pod} route add default via 10.244.2.1",
            node = cluster.node.name(),
            pod = ns.name(),
        ));
        Self { ns }
    }
}

fn masquerade_spec(name: &str) -> String {
    masquerade_spec_with(name, 1, false, "virtio")
}

/// A masquerade VM with `cores` vCPUs, KubeVirt's multi-queue (one queue
/// pair per vCPU) or not, and NIC `model`.
fn masquerade_spec_with(name: &str, cores: u32, multiqueue: bool, model: &str) -> String {
    format!(
        r#"apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: {name}
spec:
  domain:
    cpu: {{cores: {cores}}}
    memory: {{guest: 128Mi}}
    devices:
      networkInterfaceMultiqueue: {multiqueue}
      interfaces:
        - name: default
          model: {model}
          masquerade: {{}}
          ports:
            - name: http
              port: 80
  networks:
    - name: default
      pod: {{}}
"#
    )
}

/// GET http://ip/ from the node until the guest's page answers.
fn wait_http(cluster: &Cluster, ip: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let body = cluster.node.exec(&format!(
            "curl -sS -m 5 http://{ip}/index.html 2>&1 || true"
        ));
        if body.contains("HELLO-FROM-GUEST") {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "no answer from {ip}:80: {body}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn assert_pod_clean(pod: &NetNs) {
    let links = pod.exec("ip -o link show");
    assert!(!links.contains("k6t-"), "bridge left behind:\n{links}");
    assert!(!links.contains("tap"), "tap left behind:\n{links}");
    let tables = pod.exec("nft list tables");
    assert!(
        !tables.contains("petrel"),
        "nft table left behind:\n{tables}"
    );
}

/// The issue's scenario: a masquerade VM counting on its console and
/// serving :80 in pod A moves to pod B (started with `--incoming`) through
/// the API; the same guest serves :80 through pod B's IP, pod A's petrel
/// exits 0 and leaves nothing behind.
#[test]
fn masquerade_vm_migrates_between_pods_and_serves_through_the_new_pod_ip() {
    let b_stderr = migrate_masquerade_vm("migpod", &masquerade_spec("migpod"), true);
    assert!(b_stderr.contains("pairs=1"), "{b_stderr}");
}

/// The same with 2 vCPUs and KubeVirt's multi-queue: both queue pairs
/// (and the guest's VQ_PAIRS_SET) move with the VM.
#[test]
fn multiqueue_masquerade_vm_migrates_between_pods() {
    let spec = masquerade_spec_with("migmq", 2, true, "virtio");
    let b_stderr = migrate_masquerade_vm("migmq", &spec, true);
    // The target's device starts from the source's control-queue state.
    assert!(b_stderr.contains("pairs=2"), "{b_stderr}");
}

/// The same with an e1000 NIC: its registers and rings move; the e1000
/// driver has no announce feature, so only petrel's RARP announces it.
#[test]
fn e1000_masquerade_vm_migrates_between_pods() {
    let spec = masquerade_spec_with("mige1000", 1, false, "e1000");
    migrate_masquerade_vm("mige1000", &spec, false);
}

/// A masquerade VM snapshotted in its pod, its petrel gone, restored by a
/// new petrel in the same pod: after `vm.resume` the guest announces itself
/// (GUEST_ANNOUNCE raised while it was paused) and serves :80 again.
#[test]
fn masquerade_vm_snapshot_restore_announces_the_guest() {
    let dir = Scratch::new("snapnet");
    let cluster = Cluster::new();
    let spec = dir.write("vmi.yaml", &masquerade_spec("snapnet"));
    let guest_cmd = web_guest_cmd();
    let a_sock = dir.path().join("a.sock");
    let b_sock = dir.path().join("b.sock");
    let mut a = Vmm::boot_in(
        Some(cluster.pod.name()),
        &spec,
        "",
        Some(&guest_cmd),
        &["--api-socket", a_sock.to_str().unwrap()],
    );
    let lease = a.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    let mac = lease_mac(&lease);
    a.wait_for("COUNT 3 ", BOOT_TIMEOUT);
    wait_http(&cluster, POD_IP, Duration::from_secs(60));
    assert_eq!(put(&a_sock, "/api/v1/vm.pause", None).0, 204);
    let snap = dir.path().join("snapshot");
    let url = format!(r#"{{"destination_url":"file://{}"}}"#, snap.display());
    let (status, body) = put(&a_sock, "/api/v1/vm.snapshot", Some(&url));
    assert_eq!(status, 204, "{body}\n{}", a.stderr());
    let last = last_count(&a);
    assert_eq!(put(&a_sock, "/api/v1/vmm.shutdown", None).0, 204);
    assert_eq!(a.wait_exit(Duration::from_secs(60)).code(), Some(0));
    assert_pod_clean(&cluster.pod);

    cluster
        .pod
        .exec("sysctl -qw net.ipv4.conf.all.arp_accept=1");
    let mut b = Vmm::boot_in(
        Some(cluster.pod.name()),
        &spec,
        "",
        Some(&guest_cmd),
        &["--api-socket", b_sock.to_str().unwrap(), "--incoming"],
    );
    wait_socket(&b_sock);
    let url = format!(r#"{{"source_url":"file://{}"}}"#, snap.display());
    let (status, body) = put(&b_sock, "/api/v1/vm.restore", Some(&url));
    assert_eq!(status, 204, "{body}\n{}", b.stderr());
    assert_eq!(put(&b_sock, "/api/v1/vm.resume", None).0, 204);
    let arp_after = wait_guest_arp(&cluster.pod, &mac);
    assert_continues(&b, &last);
    let reachable_after = wait_http(&cluster, POD_IP, Duration::from_secs(120));
    println!(
        "snapshot/restore: gratuitous ARP {arp_after:?} after vm.resume, :80 after {reachable_after:?}"
    );
    assert_eq!(put(&b_sock, "/api/v1/vmm.shutdown", None).0, 204);
    assert_eq!(b.wait_exit(Duration::from_secs(60)).code(), Some(0));
    let b_err = b.stderr();
    assert!(
        b_err.contains("the guest announced itself (ANNOUNCE_ACK)"),
        "{b_err}"
    );
    assert_pod_clean(&cluster.pod);
}

/// Waits until pod B's bridge has a neighbour entry for the guest's IP
/// with its MAC: only the guest's own gratuitous ARP makes one before
/// anything talks to the guest (pod B accepts gratuitous ARPs, and the
/// VMM's RARP carries no IP).
fn wait_guest_arp(pod: &NetNs, mac: &str) -> Duration {
    let start = Instant::now();
    loop {
        let neigh = pod.exec("ip neigh show 10.0.2.2");
        if neigh.contains(&format!("lladdr {mac}")) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the guest's gratuitous ARP did not reach pod B: {neigh:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The guest serves a page on :80 and counts on its console.
fn web_guest_cmd() -> String {
    format!(
        "mkdir -p /tmp/www && echo HELLO-FROM-GUEST > /tmp/www/index.html; httpd -p 80 -h /tmp/www; {COUNTER}"
    )
}

/// The guest's MAC from its `GUEST-NET` line.
fn lease_mac(lease: &str) -> String {
    lease
        .split("mac=")
        .nth(1)
        .and_then(|m| m.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC in {lease}"))
        .to_string()
}

fn assert_bridge_learned(pod: &NetNs, mac: &str) {
    let fdb = pod.exec("bridge fdb show");
    assert!(
        fdb.lines()
            .any(|l| l.starts_with(mac) && l.contains("master k6t-")),
        "{mac} not learned on the pod's bridge:\n{fdb}"
    );
}

/// Moves a masquerade VM from pod A to pod B and checks it on the way:
/// the bridge learned its MAC (RARP), the guest announced itself
/// (gratuitous ARP) when its NIC can (`guest_announces`), counts on and
/// serves :80 through pod B. Returns pod B's petrel's stderr.
fn migrate_masquerade_vm(name: &str, spec_text: &str, guest_announces: bool) -> String {
    let dir = Scratch::new(name);
    let cluster = Cluster::new();
    let pod_b = SecondPod::new(&cluster);
    // Pod B takes gratuitous ARPs into its neighbour table.
    pod_b.ns.exec("sysctl -qw net.ipv4.conf.all.arp_accept=1");
    let spec = dir.write("vmi.yaml", spec_text);
    let guest_cmd = web_guest_cmd();
    let a_sock = dir.path().join("a.sock");
    let b_sock = dir.path().join("b.sock");
    let a_arg = a_sock.to_str().unwrap();
    let b_arg = b_sock.to_str().unwrap();
    let mut a = Vmm::boot_in(
        Some(cluster.pod.name()),
        &spec,
        "",
        Some(&guest_cmd),
        &["--api-socket", a_arg],
    );
    let lease = a.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains("ip=10.0.2.2/24"), "{lease}");
    a.wait_for("COUNT 3 ", BOOT_TIMEOUT);
    wait_http(&cluster, POD_IP, Duration::from_secs(60));

    let mut b = Vmm::boot_in(
        Some(pod_b.ns.name()),
        &spec,
        "",
        Some(&guest_cmd),
        &["--api-socket", b_arg, "--incoming"],
    );
    wait_socket(&b_sock);
    let mig = dir.path().join("migration.sock");
    let receiving = receive_in_background(&b_sock, &mig);
    let url = format!(r#"{{"destination_url":"unix:{}"}}"#, mig.display());
    let (status, body) = put(&a_sock, "/api/v1/vm.send-migration", Some(&url));
    assert_eq!(status, 204, "{body}\n{}", a.stderr());
    let (status, body) = receiving.join().unwrap();
    assert_eq!(status, 204, "{body}\n{}", b.stderr());
    assert_eq!(
        a.wait_exit(Duration::from_secs(60)).code(),
        Some(0),
        "{}",
        a.stderr()
    );
    assert_pod_clean(&cluster.pod);
    // Before anything talks to the guest, pod B's bridge already knows its
    // MAC: petrel announced it on the tap (RARP).
    let mac = lease_mac(&lease);
    assert_bridge_learned(&pod_b.ns, &mac);
    let arp_after = if guest_announces {
        format!("{:?}", wait_guest_arp(&pod_b.ns, &mac))
    } else {
        "(not expected)".to_string()
    };
    let last = last_count(&a);
    assert_continues(&b, &last);
    let reachable_after = wait_http(&cluster, POD_B_IP, Duration::from_secs(120));
    let err = a.stderr();
    let line = err
        .lines()
        .find(|l| l.contains("migration complete: downtime"))
        .unwrap_or_else(|| panic!("no downtime line:\n{err}"));
    println!(
        "{name}: {line}; guest's gratuitous ARP seen {arp_after} after the move; \
         :80 answered through pod B {reachable_after:?} after it"
    );
    assert_eq!(put(&b_sock, "/api/v1/vmm.shutdown", None).0, 204);
    assert_eq!(b.wait_exit(Duration::from_secs(60)).code(), Some(0));
    let b_err = b.stderr();
    assert!(b_err.contains("guest announced (RARP)"), "{b_err}");
    assert_eq!(
        b_err.contains("the guest announced itself (ANNOUNCE_ACK)"),
        guest_announces,
        "{b_err}"
    );
    assert_pod_clean(&pod_b.ns);
    b_err
}

/// The TCP transport (`tcp:HOST:PORT`), inside a network namespace of the
/// test's own: both petrels there, the migration over its loopback.
#[test]
fn live_migration_over_tcp() {
    let dir = Scratch::new("migtcp");
    let ns = NetNs::new("migtcp");
    ns.exec("ip link set lo up");
    let spec = dir.write("vmi.yaml", &vmi_yaml("migtcp", 1, "128Mi"));
    let a_sock = dir.path().join("a.sock");
    let b_sock = dir.path().join("b.sock");
    let (a_arg, b_arg) = (a_sock.to_str().unwrap(), b_sock.to_str().unwrap());
    let mut a = Vmm::boot_in(
        Some(ns.name()),
        &spec,
        "",
        Some(COUNTER),
        &["--api-socket", a_arg],
    );
    a.wait_for("COUNT 3 ", BOOT_TIMEOUT);
    let mut b = Vmm::boot_in(
        Some(ns.name()),
        &spec,
        "",
        Some(COUNTER),
        &["--api-socket", b_arg, "--incoming"],
    );
    wait_socket(&b_sock);
    let t = b_sock.clone();
    let receiving = std::thread::spawn(move || {
        put(
            &t,
            "/api/v1/vm.receive-migration",
            Some(r#"{"receiver_url":"tcp:127.0.0.1:47001"}"#),
        )
    });
    // The target listens once its run loop has taken the job.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ns.exec("ss -ltn").contains("127.0.0.1:47001") {
        assert!(Instant::now() < deadline, "the target never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = put(
        &a_sock,
        "/api/v1/vm.send-migration",
        Some(r#"{"destination_url":"tcp:127.0.0.1:47001"}"#),
    );
    assert_eq!(status, 204, "{body}");
    assert_eq!(receiving.join().unwrap().0, 204);
    assert_eq!(a.wait_exit(Duration::from_secs(60)).code(), Some(0));
    let last = last_count(&a);
    assert_continues(&b, &last);
    assert_eq!(put(&b_sock, "/api/v1/vmm.shutdown", None).0, 204);
    assert_eq!(b.wait_exit(Duration::from_secs(60)).code(), Some(0));
}

/// A target built from another spec (here: more memory) refuses the
/// header; the source answers 500 with the target's reason and its guest
/// runs on; the target stays `Created` and can be shut down.
#[test]
fn a_target_that_does_not_fit_refuses_and_the_source_runs_on() {
    let dir = Scratch::new("migfit");
    let spec_a = dir.write("a.yaml", &vmi_yaml("migfit", 1, "128Mi"));
    let spec_b = dir.write("b.yaml", &vmi_yaml("migfit", 1, "256Mi"));
    let a_sock = dir.path().join("a.sock");
    let b_sock = dir.path().join("b.sock");
    let mut a = boot_source(&spec_a, &a_sock);
    let mut b = start_incoming(&spec_b, &b_sock);
    let mig = dir.path().join("migration.sock");
    let receiving = receive_in_background(&b_sock, &mig);
    let url = format!(r#"{{"destination_url":"unix:{}"}}"#, mig.display());
    let (status, body) = put(&a_sock, "/api/v1/vm.send-migration", Some(&url));
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("does not fit"), "{body}");
    let (status, body) = receiving.join().unwrap();
    assert_eq!(status, 500, "{body}");
    assert_eq!(state(&b_sock), "Created");
    assert_eq!(state(&a_sock), "Running");
    let last = last_count(&a);
    wait_count_above(&a, last.0, Duration::from_secs(60));
    for (vm, sock) in [(&mut a, &a_sock), (&mut b, &b_sock)] {
        assert_eq!(put(sock, "/api/v1/vmm.shutdown", None).0, 204);
        assert_eq!(vm.wait_exit(Duration::from_secs(60)).code(), Some(0));
    }
}

/// An `--incoming` target waiting for a source that never comes still
/// stops on SIGTERM (exit 0, its pod network torn down like any run).
#[test]
fn sigterm_stops_a_target_waiting_for_its_source() {
    let dir = Scratch::new("migterm");
    let spec = dir.write("vmi.yaml", &vmi_yaml("migterm", 1, "128Mi"));
    let b_sock = dir.path().join("b.sock");
    let mut b = start_incoming(&spec, &b_sock);
    let mig = dir.path().join("migration.sock");
    let receiving = receive_in_background(&b_sock, &mig);
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(30)).code(), Some(0));
    let (status, body) = receiving.join().unwrap();
    assert_ne!(status, 204, "{body}");
    assert!(!mig.exists(), "the migration socket was left behind");
    assert!(
        !b.console().iter().any(|l| l.contains("GUEST-INIT-OK")),
        "an incoming VM booted"
    );
}
