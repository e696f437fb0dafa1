//! petrel in a real container: the image `make image` builds, run by
//! podman (runc) in a pod network namespace whose eth0 the real CNI bridge
//! plugin made, with `/proc/sys` read-only as in any container and the
//! forwarding sysctl passed the way a pod declares it.

use std::time::Duration;

use petrel_tests::cluster::SERVER_IP;
use petrel_tests::cni::{self, CniPod};
use petrel_tests::netns::NetNs;
use petrel_tests::podman::{self, Image};
use petrel_tests::{base64, guest_cmdline, guest_dir, petrel_bin, Scratch, Vmm, BOOT_TIMEOUT};

const SPEC: &str = r#"apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: ctr
spec:
  domain:
    cpu: {cores: 1}
    memory: {guest: 128Mi}
    devices:
      interfaces:
        - name: default
          model: virtio
          masquerade: {}
          ports:
            - {name: http, port: 8080}
  networks:
    - name: default
      pod: {}
"#;

/// What a Virtink pod gives its VMM container.
const CAPS: &[&str] = &["--cap-add", "NET_ADMIN,SYS_ADMIN,SYS_RESOURCE"];

fn skip_reason() -> Option<String> {
    podman::skip_reason().or_else(cni::skip_reason)
}

fn assert_pod_clean(pod: &NetNs) {
    let links = pod.exec("ip -o link show");
    assert!(!links.contains("k6t-"), "bridge left behind:\n{links}");
    assert!(!links.contains("tap"), "tap left behind:\n{links}");
    let tables = pod.exec("nft list tables");
    assert!(
        tables.trim().is_empty(),
        "nft tables left behind:\n{tables}"
    );
}

/// `podman run` of petrel with the guest kit and the spec mounted in.
fn petrel_container(
    image: &Image,
    name: &str,
    cni: &CniPod,
    dir: &Scratch,
    extra: &[&str],
    guest_cmd: &str,
) -> Vmm {
    let kit = guest_dir();
    let mut opts: Vec<String> = CAPS.iter().map(|s| (*s).to_string()).collect();
    opts.extend(extra.iter().map(|s| (*s).to_string()));
    opts.push(format!("--volume={}:/guest:ro", kit.display()));
    opts.push(format!("--volume={}:/spec:ro", dir.path().display()));
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let mut c = podman::run_in_netns(image, name, cni.pod.name(), &opts);
    let cmdline = format!(
        "{} guest.cmd={}",
        guest_cmdline(),
        base64(guest_cmd.as_bytes())
    );
    c.args(["run", "/spec/vmi.yaml", "--kernel", "/guest/vmlinux"])
        .args(["--initrd", "/guest/initramfs.cpio", "--cmdline", &cmdline])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    Vmm::spawn(c)
}

/// Without the sysctl declared, petrel in the container cannot turn
/// forwarding on (`/proc/sys` is read-only), says which sysctl and how a
/// pod declares it, and leaves nothing behind. With `--sysctl` (what
/// `securityContext.sysctls` amounts to) the masquerade VM leases
/// 10.0.2.2, reaches the server as the pod's CNI address, is reachable on
/// its listed port, and `podman stop` ends it with exit 0 and a clean pod.
#[test]
fn podman_cni_pod_masquerade_vm_and_clean_stop() {
    if let Some(reason) = skip_reason() {
        println!("SKIPPED podman_cni_pod_masquerade_vm_and_clean_stop: {reason}");
        return;
    }
    let dir = Scratch::new("ctr");
    let image = Image::build(&petrel_bin());
    println!("image {}: {} KiB", image.tag, image.size / 1024);
    let mut cni = CniPod::new(dir.path());
    let pod_ip = cni.pod_ip.clone();
    dir.write("vmi.yaml", SPEC);
    std::fs::write(dir.path().join("hello"), "HELLO-FROM-SERVER\n").unwrap();
    cni.server.spawn(&format!(
        "exec busybox httpd -f -p {SERVER_IP}:80 -h {}",
        dir.path().display()
    ));
    cni.server
        .spawn("sleep 3600 | busybox nc -l -p 7000 > /dev/null");
    let name = format!("petrel-t-ctr-{}", std::process::id());

    // 1. Forwarding off and not declared: a clear error, nothing left.
    cni.pod.exec("sysctl -qw net.ipv4.ip_forward=0");
    let mut vm = petrel_container(&image, &name, &cni, &dir, &[], "true");
    let st = vm.wait_exit(Duration::from_secs(120));
    let stderr = vm.stderr();
    assert_eq!(st.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("net.ipv4.ip_forward is 0 and must be 1")
            && stderr.contains("securityContext.sysctls"),
        "stderr:\n{stderr}"
    );
    if let Some(line) = stderr.lines().find(|l| l.contains("must be 1")) {
        println!("without the sysctl: {line}");
    }
    assert_pod_clean(&cni.pod);

    // 2. Declared: the VM runs behind NAT on the CNI pod address.
    let guest_cmd = format!(
        "mkdir -p /tmp/www && echo HELLO-FROM-GUEST > /tmp/www/index.html; \
         httpd -p 8080 -h /tmp/www; wget -q -O - http://{SERVER_IP}/hello; \
         (sleep 30 | nc {SERVER_IP} 7000 &); echo GUEST-READY; sleep 600"
    );
    let sysctl = ["--sysctl", "net.ipv4.ip_forward=1"];
    let mut vm = petrel_container(&image, &name, &cni, &dir, &sysctl, &guest_cmd);
    let lease = vm.wait_for("GUEST-NET eth0", BOOT_TIMEOUT);
    assert!(lease.contains("ip=10.0.2.2/24"), "{lease}");
    vm.wait_for("HELLO-FROM-SERVER", BOOT_TIMEOUT);
    vm.wait_for("GUEST-READY", BOOT_TIMEOUT);
    cni.wait_server_sees_pod();
    let body = cni
        .node
        .exec(&format!("curl -sS -m 20 http://{pod_ip}:8080/index.html"));
    assert_eq!(body.trim(), "HELLO-FROM-GUEST");

    podman::stop(&name, 30);
    let st = vm.wait_exit(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "stderr:\n{}", vm.stderr());
    assert!(
        vm.stderr().contains("pod network plumbing removed"),
        "stderr:\n{}",
        vm.stderr()
    );
    assert_pod_clean(&cni.pod);
}
