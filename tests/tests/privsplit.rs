//! KubeVirt's privilege split: `petrel net-setup` as root in the pod's
//! network namespace plumbs the masquerade binding for uid 107, `petrel
//! run` as uid 107 with only CAP_NET_BIND_SERVICE attaches to it and
//! serves DHCP, and `petrel net-teardown` leaves the pod as the CNI made it.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use petrel_tests::cluster::{
    pod_vmi_yaml, Cluster, HTTP_8080_PORTS, POD_IP, SERVER_IP, SERVER_IP6,
};
use petrel_tests::guestnet::WAIT_DAD;
use petrel_tests::unpriv::{self, QEMU_UID};
use petrel_tests::{guest_dir, petrel_bin, run_args, Scratch, Vmm};
use petrel_tests::{netns::NetNs, BOOT_TIMEOUT};

const VM: &str = "split";

/// `petrel run SPEC` as uid 107 with only NET_BIND_SERVICE in the pod's
/// netns (a private /dev/kvm node in `node_dir`), attaching to what
/// `net-setup` recorded in `runs`; the guest runs `guest_cmd`.
fn boot_as_qemu(
    cluster: &Cluster,
    node_dir: &Path,
    runs: &Path,
    spec: &Path,
    guest_cmd: &str,
) -> Vmm {
    let mut c = unpriv::petrel_run(
        cluster.pod.name(),
        QEMU_UID,
        &["net_bind_service"],
        node_dir,
        spec,
        guest_cmd,
    );
    c.arg("--run-dir").arg(runs);
    Vmm::spawn(c)
}

/// `petrel ARGS…` as root inside `ns`.
fn petrel_in(ns: &NetNs, args: &[&str]) -> Output {
    ns.command(&petrel_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run petrel")
}

fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every link of the pod namespace: name, MTU, master, flags and for a
/// tap its owner and tun flags (no index, MAC or timer that a re-creation
/// changes), sorted.
fn pod_links(ns: &NetNs) -> String {
    ns.exec(
        "for d in /sys/class/net/*; do n=${d##*/}; m=$(readlink $d/master); \
         echo \"$n mtu=$(cat $d/mtu) master=${m##*/} flags=$(cat $d/flags) \
         owner=$(cat $d/owner 2>/dev/null) tun=$(cat $d/tun_flags 2>/dev/null)\"; done | sort",
    )
}

fn net_setup(cluster: &Cluster, spec: &Path, run_dir: &Path) -> Output {
    petrel_in(
        &cluster.pod,
        &[
            "net-setup",
            spec.to_str().unwrap(),
            "--uid",
            "107",
            "--run-dir",
            run_dir.to_str().unwrap(),
        ],
    )
}

/// net-setup (twice: the second re-creates the same plumbing), then the
/// guest under `run` as uid 107 with only NET_BIND_SERVICE leases
/// 10.0.2.2, reaches the server from the pod IP and serves the listed port
/// to it; SIGTERM ends the run (exit 0) and net-teardown leaves the pod
/// with lo and eth0 only, no nft table and no record.
#[test]
fn net_setup_then_unprivileged_run_then_teardown() {
    let dir = Scratch::new("split");
    let runs = Scratch::new("split-runs");
    let node_dir = Scratch::new("split-kvm");
    let mut cluster = Cluster::new();
    std::fs::write(dir.path().join("hello"), "HELLO-FROM-SERVER\n").unwrap();
    cluster.server.spawn(&format!(
        "exec busybox httpd -f -p {SERVER_IP}:80 -h {}",
        dir.path().display()
    ));
    cluster
        .server
        .spawn("sleep 3600 | busybox nc -l -p 7000 > /dev/null");
    let spec_path = dir.write("vmi.yaml", &pod_vmi_yaml(VM, "masquerade", HTTP_8080_PORTS));
    let kit = guest_dir();
    unpriv::assert_readable(QEMU_UID, &[&spec_path, &petrel_bin(), &kit.join("vmlinux")]);

    assert_ok("net-setup", &net_setup(&cluster, &spec_path, runs.path()));
    let first = pod_links(&cluster.pod);
    assert_ok(
        "second net-setup",
        &net_setup(&cluster, &spec_path, runs.path()),
    );
    let second = pod_links(&cluster.pod);
    let state_file = runs.path().join(VM).join("net.json");
    let state = std::fs::read_to_string(&state_file).expect("net-setup wrote its record");
    assert!(state.contains("\"uid\": 107"), "{state}");
    let tap = state
        .split("\"tap\": \"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_else(|| panic!("no tap in {state}"))
        .to_string();
    // Re-created identically: the same links, the tap owned by 107 and a
    // port of the bridge.
    assert_eq!(first, second, "a second net-setup changed the pod");
    assert!(second.contains("k6t-eth0 mtu=1450"), "{second}");
    assert!(
        second.contains(&format!("{tap} mtu=1450 master=k6t-eth0")),
        "{second}"
    );
    let owner = cluster.pod.exec(&format!("cat /sys/class/net/{tap}/owner"));
    assert_eq!(owner.trim(), "107", "tap owner");
    let master = cluster.pod.exec(&format!("ip -o link show {tap}"));
    assert!(master.contains("master k6t-eth0"), "{master}");
    let tables = cluster.pod.exec("nft list tables");
    assert!(tables.contains("petrel_split"), "{tables}");

    let guest_cmd = format!(
        "mkdir -p /tmp/www && echo HELLO-FROM-GUEST > /tmp/www/index.html; \
         httpd -p 8080 -h /tmp/www; \
         wget -q -O - http://{SERVER_IP}/hello; \
         (sleep 30 | nc {SERVER_IP} 7000 &); \
         echo GUEST-READY; sleep 600"
    );
    let mut vm = boot_as_qemu(
        &cluster,
        node_dir.path(),
        runs.path(),
        &spec_path,
        &guest_cmd,
    );
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains("ip=10.0.2.2/24"), "{lease}");
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    vm.wait_for("GUEST-READY", BOOT_TIMEOUT);
    cluster.wait_server_sees(POD_IP, |c| c.server_sees_peer(POD_IP));
    let body = cluster
        .server
        .exec(&format!("curl -sS -m 30 http://{POD_IP}:8080/index.html"));
    assert_eq!(body.trim(), "HELLO-FROM-GUEST");
    vm.signal(libc::SIGTERM);
    let st = vm.wait_exit(Duration::from_secs(60));
    let stderr = vm.stderr();
    assert_eq!(st.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("attaching to the pod network net-setup prepared"),
        "{stderr}"
    );
    // The unprivileged run removed nothing: the plumbing is net-teardown's.
    let after_run = cluster.pod.exec("ip -o link show");
    assert!(after_run.contains("k6t-eth0"), "{after_run}");

    let out = petrel_in(
        &cluster.pod,
        &[
            "net-teardown",
            spec_path.to_str().unwrap(),
            "--run-dir",
            runs.path().to_str().unwrap(),
        ],
    );
    assert_ok("net-teardown", &out);
    let links: Vec<String> = cluster
        .pod
        .exec("ip -o link show")
        .lines()
        .map(|l| {
            l.split(": ")
                .nth(1)
                .unwrap_or("")
                .split('@')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(links, ["lo", "eth0"], "links left in the pod");
    let tables = cluster.pod.exec("nft list tables");
    assert!(tables.trim().is_empty(), "nft tables left: {tables}");
    assert!(
        !runs.path().join(VM).exists(),
        "the record's directory is still there"
    );
}

/// `run` as uid 107 without net-setup: a clear refusal naming net-setup
/// (exit 2), before anything is built.
#[test]
fn unprivileged_run_without_net_setup_says_what_to_run() {
    let dir = Scratch::new("split-none");
    let runs = Scratch::new("split-none-runs");
    let node_dir = Scratch::new("split-none-kvm");
    let cluster = Cluster::new();
    let spec_path = dir.write("vmi.yaml", &pod_vmi_yaml(VM, "masquerade", HTTP_8080_PORTS));
    let kit = guest_dir();
    let mut c: Command = unpriv::command(
        Some(cluster.pod.name()),
        QEMU_UID,
        &["net_bind_service"],
        node_dir.path(),
        &petrel_bin(),
    );
    run_args(&mut c, &spec_path, &kit);
    c.arg("--run-dir").arg(runs.path()).stdin(Stdio::null());
    let out = c.output().expect("run petrel");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("petrel net-setup SPEC --uid 107"),
        "stderr:\n{stderr}"
    );
    assert!(stderr.contains("net.json"), "stderr:\n{stderr}");
    // Nothing was created in the pod.
    let links = cluster.pod.exec("ip -o link show");
    assert!(!links.contains("k6t-"), "{links}");

    // net-setup refuses a bad spec the way validate does (exit 2), before
    // touching the pod.
    let bad = dir.write(
        "bad.yaml",
        &pod_vmi_yaml(VM, "masquerade", HTTP_8080_PORTS).replace("masquerade: {}", "masqurade: {}"),
    );
    let out = net_setup(&cluster, &bad, runs.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("did you mean masquerade"), "{stderr}");
    assert!(!runs.path().join(VM).exists());
}

/// An IPv6 pod in the split: `run` as uid 107 without CAP_NET_RAW sends
/// no router advertisement (it says so) but serves DHCPv6 on port 547;
/// a guest given its default route by hand reaches the server over NAT66.
#[test]
fn ipv6_pod_split_without_net_raw_serves_dhcpv6_and_warns() {
    let dir = Scratch::new("split6");
    let runs = Scratch::new("split6-runs");
    let node_dir = Scratch::new("split6-kvm");
    let mut cluster = Cluster::new();
    cluster.add_ipv6();
    std::fs::write(dir.path().join("hello"), "HELLO-FROM-SERVER6\n").unwrap();
    cluster.server.spawn(&format!(
        "exec busybox httpd -f -p 8066 -h {}",
        dir.path().display()
    ));
    let spec_path = dir.write("vmi.yaml", &pod_vmi_yaml(VM, "masquerade", HTTP_8080_PORTS));
    assert_ok("net-setup", &net_setup(&cluster, &spec_path, runs.path()));
    let state = std::fs::read_to_string(runs.path().join(VM).join("net.json")).unwrap();
    assert!(state.contains("fd10:0:2::/120"), "{state}");
    let guest_cmd = format!(
        "ip -6 addr add fd10:0:2::2/120 dev eth0; {WAIT_DAD} \
         ip -6 route add default via fd10:0:2::1 dev eth0; \
         wget -q -O - http://[{SERVER_IP6}]:8066/hello; echo GUEST6-DONE; sleep 600"
    );
    let mut vm = boot_as_qemu(
        &cluster,
        node_dir.path(),
        runs.path(),
        &spec_path,
        &guest_cmd,
    );
    vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    vm.wait_for("HELLO-FROM-SERVER6", BOOT_TIMEOUT);
    let udp6 = cluster.pod.exec("cat /proc/net/udp6");
    assert!(
        udp6.lines().any(|l| l.contains(":0223 ")),
        "no DHCPv6 socket on port 547:\n{udp6}"
    );
    vm.signal(libc::SIGTERM);
    let st = vm.wait_exit(Duration::from_secs(60));
    let stderr = vm.stderr();
    assert_eq!(st.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("no router advertisements without CAP_NET_RAW"),
        "{stderr}"
    );
    assert_ok(
        "net-teardown",
        &petrel_in(
            &cluster.pod,
            &[
                "net-teardown",
                spec_path.to_str().unwrap(),
                "--run-dir",
                runs.path().to_str().unwrap(),
            ],
        ),
    );
}
