//! The control API with a real guest, driven through its UNIX socket the
//! way Virtink drives Cloud Hypervisor: ping, info (Running, the spec's
//! MAC), counters rising with traffic, /metrics with KubeVirt's names,
//! bad requests answered 4xx without disturbing the VM, pause (console and
//! datapath stop, state Paused), resume (the guest continues) and
//! vmm.shutdown from Paused (exit 0); /metrics also over TCP.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use petrel_tests::guestnet::{host_side, nic_spec, GUEST_IP, GUEST_MAC, HOST_IP};
use petrel_tests::{Scratch, Vmm, BOOT_TIMEOUT};
use serde_json::Value;

/// `curl` over the UNIX socket: (status, body).
fn http(sock: &Path, method: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "--unix-socket"])
        .arg(sock)
        .args(["-X", method, "-w", "\n%{http_code}"])
        .arg(format!("http://localhost{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn json(sock: &Path, path: &str) -> Value {
    let (status, body) = http(sock, "GET", path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn counter(sock: &Path, name: &str) -> u64 {
    json(sock, "/api/v1/vm.counters")["default"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}"))
}

fn ticks(vm: &Vmm) -> usize {
    vm.console()
        .iter()
        .filter(|l| l.starts_with("TICK "))
        .count()
}

fn wait_ticks(vm: &Vmm, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while ticks(vm) < n {
        assert!(Instant::now() < deadline, "no tick {n}:\n{}", vm.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of the first sample of `name` whose labels contain `labels`.
fn sample(metrics: &str, name: &str, labels: &str) -> u64 {
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .unwrap_or_else(|| panic!("no {name} with {labels} in:\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn assert_bad_requests_are_4xx(sock: &Path) {
    for (method, path, want) in [
        ("GET", "/api/v1/vm.pause", 405),
        ("PUT", "/api/v1/vm.info", 405),
        ("POST", "/api/v1/vm.shutdown", 405),
        ("GET", "/api/v1/vm.nonsense", 404),
        ("GET", "/", 404),
        ("PUT", "/api/v1/vm.resume", 405),
    ] {
        let (status, body) = http(sock, method, path);
        assert_eq!(status, want, "{method} {path}: {body}");
        assert!(
            !body.trim().is_empty(),
            "{method} {path}: errors carry a message"
        );
    }
}

/// `curl` to the TCP metrics listener inside the VM's namespace.
fn tcp_get(netns: &str, path: &str) -> (u16, String) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "curl",
            "-s",
            "-m",
            "20",
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("http://{METRICS_ADDR}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

const METRICS_ADDR: &str = "127.0.0.1:19090";

fn assert_metrics(sock: &Path, netns: &str) {
    let (status, metrics) = http(sock, "GET", "/metrics");
    assert_eq!(status, 200);
    let (status, tcp) = tcp_get(netns, "/metrics");
    assert_eq!(status, 200, "{tcp}");
    assert!(
        tcp.contains("kubevirt_vmi_network_receive_bytes_total{"),
        "{tcp}"
    );
    assert_eq!(
        tcp_get(netns, "/api/v1/vmm.ping").0,
        404,
        "TCP serves only /metrics"
    );
    let labels = r#"interface="default",name="api""#;
    for name in [
        "kubevirt_vmi_network_receive_bytes_total",
        "kubevirt_vmi_network_transmit_bytes_total",
        "kubevirt_vmi_network_receive_packets_total",
        "kubevirt_vmi_network_transmit_packets_total",
    ] {
        assert!(sample(&metrics, name, labels) > 0, "{name} is zero");
    }
    for name in [
        "kubevirt_vmi_network_receive_errors_total",
        "kubevirt_vmi_network_transmit_errors_total",
        "kubevirt_vmi_network_receive_packets_dropped_total",
        "kubevirt_vmi_network_transmit_packets_dropped_total",
    ] {
        sample(&metrics, name, labels);
    }
    assert!(sample(&metrics, "petrel_net_queue_rx_frames_total", r#"queue="0""#) > 0);
    assert!(sample(&metrics, "petrel_vcpu_exits_total", r#"kind="io""#) > 0);
}

/// Pauses, checks that the console and the datapath stand still (the
/// host pings the guest meanwhile), resumes and sees the guest go on.
fn pause_and_resume(vm: &Vmm, sock: &Path, netns: &str) {
    assert_eq!(http(sock, "PUT", "/api/v1/vm.pause").0, 204);
    assert_eq!(json(sock, "/api/v1/vm.info")["state"], "Paused");
    assert_eq!(
        http(sock, "PUT", "/api/v1/vm.pause").0,
        405,
        "already paused"
    );
    std::thread::sleep(Duration::from_millis(500));
    let (paused_ticks, rx) = (ticks(vm), counter(sock, "rx_frames"));
    let tx = counter(sock, "tx_frames");
    let _ = Command::new("ip")
        .args([
            "netns", "exec", netns, "busybox", "ping", "-c", "3", "-W", "1", GUEST_IP,
        ])
        .output();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ticks(vm), paused_ticks, "the guest ran while paused");
    assert_eq!(
        counter(sock, "rx_frames"),
        rx,
        "a frame was delivered while paused"
    );
    assert_eq!(
        counter(sock, "tx_frames"),
        tx,
        "a frame was sent while paused"
    );
    let (status, body) = http(sock, "PUT", "/api/v1/vm.resume");
    assert_eq!(status, 204, "{body}");
    assert_eq!(json(sock, "/api/v1/vm.info")["state"], "Running");
    wait_ticks(vm, paused_ticks + 2, Duration::from_secs(60));
    // The frames held during the pause (host pings) arrive now.
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(sock, "rx_frames") <= rx {
        assert!(Instant::now() < deadline, "receive did not resume");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn api_ping_info_counters_metrics_pause_resume_shutdown() {
    let dir = Scratch::new("api");
    let ns = host_side(&dir, false);
    let sock = dir.path().join("api.sock");
    let spec = dir.write("vmi.yaml", &nic_spec("api", 1, false, "virtio"));
    let guest_cmd = format!(
        "i=0; while true; do i=$((i+1)); echo TICK $i; ping -c 1 -W 1 {HOST_IP} >/dev/null; sleep 1; done"
    );
    let sock_arg = sock.to_string_lossy().into_owned();
    let mut vm = Vmm::boot_in(
        Some(ns.name()),
        &spec,
        "",
        Some(&guest_cmd),
        &["--api-socket", &sock_arg, "--metrics-address", METRICS_ADDR],
    );
    vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    wait_ticks(&vm, 2, BOOT_TIMEOUT);

    let ping = json(&sock, "/api/v1/vmm.ping");
    assert!(ping["version"].is_string(), "{ping}");
    let info = json(&sock, "/api/v1/vm.info");
    assert_eq!(info["state"], "Running", "{info}");
    assert_eq!(info["config"]["net"][0]["id"], "default", "{info}");
    assert_eq!(info["config"]["net"][0]["mac"], GUEST_MAC, "{info}");
    assert_eq!(info["config"]["cpus"]["boot_vcpus"], 1, "{info}");
    assert_eq!(info["config"]["memory"]["size"], 128u64 << 20, "{info}");

    let (tx0, rx0) = (counter(&sock, "tx_frames"), counter(&sock, "rx_frames"));
    wait_ticks(&vm, ticks(&vm) + 3, Duration::from_secs(60));
    assert!(counter(&sock, "tx_frames") > tx0, "tx_frames did not rise");
    assert!(counter(&sock, "rx_frames") > rx0, "rx_frames did not rise");
    assert!(counter(&sock, "rx_bytes") > 0 && counter(&sock, "tx_bytes") > 0);
    assert_metrics(&sock, ns.name());

    assert_bad_requests_are_4xx(&sock);
    assert_eq!(json(&sock, "/api/v1/vm.info")["state"], "Running");
    wait_ticks(&vm, ticks(&vm) + 1, Duration::from_secs(60));

    pause_and_resume(&vm, &sock, ns.name());

    // Shut down from Paused: parked vCPUs and held workers still tear
    // down in order.
    assert_eq!(http(&sock, "PUT", "/api/v1/vm.pause").0, 204);
    assert_eq!(http(&sock, "PUT", "/api/v1/vmm.shutdown").0, 204);
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert!(!sock.exists(), "the socket is removed");
    let err = vm.stderr();
    assert!(err.contains("VM paused") && err.contains("VM resumed"));
    let at = |what: &str| {
        err.find(what)
            .unwrap_or_else(|| panic!("no {what:?}:\n{err}"))
    };
    assert!(
        at("vCPUs stopped") < at("worker stopped"),
        "vCPUs stop before the queue workers:\n{err}"
    );
}
