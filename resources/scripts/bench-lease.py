#!/usr/bin/env python3
"""DHCP lease benchmark: petrel's pod bindings vs. QEMU + busybox udhcpd.

Times, from just before the VMM process is spawned, the test guest's
`GUEST-INIT-OK` line and its first `GUEST-NET eth0 ip=...` line (the guest
runs DHCP on every ethN after init; the console is the VMM's stdout, read
through a pipe, and a line is stamped when it arrives). "dhcp" is lease
minus init: the guest's DHCP exchange plus link/driver setup, without the
kernel boot. Configurations:

  petrel-bridge  petrel, bridge binding, in a fresh pod namespace set up as
                 tests/src/cluster.rs does (node/pod/srv namespaces, veths,
                 pod eth0 10.244.1.5/24 MTU 1450, default route via
                 10.244.1.1, /etc/netns/<pod>/resolv.conf). The guest gets the
                 pod IP from petrel's own DHCP server.
  petrel-masq    the same, masquerade binding: the guest gets 10.0.2.2 from
                 petrel's DHCP server, NAT to the pod IP.
  qemu-tap       the reference: QEMU -M pc, virtio-net-pci (romfile=) on tap
                 ptap0 (-netdev tap,vhost=off) in a namespace with
                 10.0.99.1/24 and busybox udhcpd -a 50 leasing 10.0.99.2, as in
                 /work/shared/guestkit/run-qemu.sh.
  petrel-tap     petrel on the very same tap + udhcpd setup (spec annotation
                 petrel.io/tap.default: ptap0, as in tests/src/guestnet.rs).

All VMs: 1 vCPU, 128 MiB, the same vmlinux, initramfs.cpio and cmdline.txt
(from $PETREL_GUEST_DIR or /var/cache/petrel-guest/out), the same MAC on the
tap setups. Rounds are interleaved (the order rotates per round). Every
namespace is created and deleted here (names start with `pbl-`); nothing is
done to the host's own interfaces. Every process started is killed in a
finally block.

Output: a table of medians (init, lease, dhcp = lease - init, VMM exit) with
petrel/QEMU ratios, the raw numbers, and with --json FILE all of it as JSON.
Console logs go to --log-dir. Exit status 0 if every run leased, 1 if a run
failed, 2 for bad usage or a missing prerequisite.

Standard library only. Run as root.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ("petrel-bridge", "petrel-masq", "qemu-tap", "petrel-tap")
REFERENCE = "qemu-tap"

NODE_POD_IP = "10.244.1.1"
POD_IP = "10.244.1.5"
POD_MTU = 1450
SERVER_IP = "10.0.50.10"
POD_DNS = "10.96.0.10"
POD_SEARCH = "default.svc.cluster.local"
TAP = "ptap0"
TAP_HOST_IP = "10.0.99.1"
TAP_GUEST_IP = "10.0.99.2"
GUEST_MAC = "02:aa:bb:cc:dd:01"

_LIVE: dict[int, subprocess.Popen] = {}
_LIVE_LOCK = threading.Lock()
_NS_SEQ = [0]


class BenchFailure(Exception):
    pass


def log(msg: str) -> None:
    print(f"[bench-lease {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: str) -> str:
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchFailure(f"`{cmd}` failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def spawn(argv: list[str], **kw) -> subprocess.Popen:
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    with _LIVE_LOCK:
        _LIVE[p.pid] = p
    return p


def kill(p: subprocess.Popen | None) -> None:
    if p is None:
        return
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    with _LIVE_LOCK:
        _LIVE.pop(p.pid, None)


def kill_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for p in procs:
        kill(p)


class Namespaces:
    """Namespaces (and /etc/netns dirs) made for one run; close() removes them."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.etc_dirs: list[Path] = []
        self.procs: list[subprocess.Popen] = []

    def add(self, tag: str) -> str:
        _NS_SEQ[0] += 1
        name = f"pbl-{tag}-{os.getpid()}-{_NS_SEQ[0]}"
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
        self.names.append(name)  # before creation: always cleaned up
        sh(f"ip netns add {name} && ip -n {name} link set lo up")
        return name

    def close(self) -> None:
        for p in self.procs:
            kill(p)
        self.procs.clear()
        for d in self.etc_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.etc_dirs.clear()
        for n in reversed(self.names):
            subprocess.run(["ip", "netns", "del", n], stderr=subprocess.DEVNULL)
        self.names.clear()


def pod_setup(nss: Namespaces) -> str:
    """The cluster of tests/src/cluster.rs; returns the pod namespace."""
    node, pod, srv = nss.add("node"), nss.add("pod"), nss.add("srv")
    tag = os.getpid() % 100_000
    vp, vs = f"vp{tag}", f"vs{tag}"
    sh(
        f"ip -n {node} link add {vp} type veth peer name eth0 netns {pod} && "
        f"ip -n {node} link add {vs} type veth peer name eth0 netns {srv} && "
        f"ip -n {node} link set {vp} mtu {POD_MTU} up && ip -n {node} addr add {NODE_POD_IP}/24 dev {vp} && "
        f"ip -n {node} link set {vs} up && ip -n {node} addr add 10.0.50.1/24 dev {vs} && "
        f"ip netns exec {node} sysctl -qw net.ipv4.ip_forward=1 && "
        f"ip -n {pod} link set eth0 mtu {POD_MTU} up && ip -n {pod} addr add {POD_IP}/24 dev eth0 && "
        f"ip -n {pod} route add default via {NODE_POD_IP} && "
        f"ip -n {srv} link set eth0 up && ip -n {srv} addr add {SERVER_IP}/24 dev eth0 && "
        f"ip -n {srv} route add default via 10.0.50.1"
    )
    d = Path("/etc/netns") / pod
    nss.etc_dirs.append(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "resolv.conf").write_text(f"nameserver {POD_DNS}\nsearch {POD_SEARCH}\n")
    return pod


def tap_setup(nss: Namespaces, work: Path) -> str:
    """Namespace with tap ptap0 (10.0.99.1/24) and udhcpd leasing 10.0.99.2."""
    ns = nss.add("tap")
    sh(
        f"ip -n {ns} tuntap add dev {TAP} mode tap vnet_hdr && "
        f"ip -n {ns} addr add {TAP_HOST_IP}/24 dev {TAP} && ip -n {ns} link set {TAP} up"
    )
    leases = work / f"{ns}.leases"
    leases.write_text("")
    conf = work / f"{ns}.udhcpd.conf"
    conf.write_text(
        f"interface {TAP}\nstart {TAP_GUEST_IP}\nend {TAP_GUEST_IP}\nmax_leases 1\n"
        f"lease_file {leases}\npidfile {work / (ns + '.udhcpd.pid')}\n"
        f"option subnet 255.255.255.0\noption router {TAP_HOST_IP}\n"
        f"option dns {TAP_HOST_IP}\noption lease 3600\n"
    )
    ulog = open(work / f"{ns}.udhcpd.log", "wb")
    nss.procs.append(
        spawn(["ip", "netns", "exec", ns, "busybox", "udhcpd", "-f", "-a", "50", str(conf)],
              stdin=subprocess.DEVNULL, stdout=ulog, stderr=subprocess.STDOUT)
    )
    ulog.close()
    # udhcpd must be listening before the guest asks; it takes milliseconds,
    # the guest tens of seconds, but wait for the socket anyway.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/udp"],
                             capture_output=True, text=True).stdout
        if ":0043 " in out:
            break
        time.sleep(0.05)
    return ns


def vmi_spec(name: str, binding: str | None) -> str:
    ann = "" if binding else f"  annotations:\n    petrel.io/tap.default: {TAP}\n"
    iface = f"          {binding}: {{}}\n" if binding else f'          macAddress: "{GUEST_MAC}"\n'
    return (
        "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata:\n"
        f"  name: {name}\n{ann}spec:\n  domain:\n    cpu: {{cores: 1}}\n"
        "    memory: {guest: 128Mi}\n    devices:\n      interfaces:\n"
        f"        - name: default\n          model: virtio\n{iface}"
        "  networks:\n    - name: default\n      pod: {}\n"
    )


def timed_boot(argv: list[str], logf: Path, timeout: float) -> dict:
    """Spawns argv; stamps console lines; returns init/lease/poweroff/exit times."""
    res: dict = {"init": None, "lease": None, "lease_line": None, "poweroff": None,
                 "exit": None, "rc": None}
    p = None
    out = open(logf, "w", errors="replace")
    try:
        t0 = time.monotonic()
        p = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT)

        def reader() -> None:
            assert p is not None and p.stdout is not None
            for raw in p.stdout:
                t = time.monotonic() - t0
                line = raw.decode("utf-8", "replace").rstrip("\r\n").replace("\r", "")
                out.write(f"[{t:9.3f}] {line}\n")
                if res["init"] is None and "GUEST-INIT-OK" in line:
                    res["init"] = t
                if res["lease"] is None and "GUEST-NET eth0" in line and " ip=" in line \
                        and "ip=-" not in line:
                    res["lease"], res["lease_line"] = t, line[line.index("GUEST-NET"):]
                if res["poweroff"] is None and "GUEST-POWEROFF" in line:
                    res["poweroff"] = t

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        try:
            res["rc"] = p.wait(timeout=timeout)
            res["exit"] = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            res["rc"] = "timeout"
        kill(p)
        th.join(timeout=5)
    finally:
        kill(p)
        out.close()
    return res


def run_one(cfg: str, args, work: Path, n: int) -> dict:
    gd = args.guest_dir
    cmdline = (gd / "cmdline.txt").read_text().strip()
    nss = Namespaces()
    try:
        if cfg in ("petrel-bridge", "petrel-masq"):
            ns = pod_setup(nss)
            binding = "bridge" if cfg == "petrel-bridge" else "masquerade"
            spec = work / f"{cfg}-{n}.yaml"
            spec.write_text(vmi_spec(f"pbl{binding[:4]}", binding))
        else:
            ns = tap_setup(nss, work)
            spec = work / f"{cfg}-{n}.yaml"
            spec.write_text(vmi_spec("pbltap", None))
        if cfg == "qemu-tap":
            vmm = ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host,-arch-capabilities",
                   "-m", "128M", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
                   "-serial", "stdio", "-no-reboot", "-M", "pc",
                   "-kernel", str(gd / "vmlinux"), "-initrd", str(gd / "initramfs.cpio"),
                   "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no,vhost=off",
                   "-device", f"virtio-net-pci,netdev=n0,mac={GUEST_MAC},romfile=",
                   "-append", cmdline]
        else:
            vmm = [str(args.petrel), "run", str(spec), "--kernel", str(gd / "vmlinux"),
                   "--initrd", str(gd / "initramfs.cpio"), "--cmdline", cmdline]
        logf = args.log_dir / f"{cfg}-{n}.log"
        res = timed_boot(["ip", "netns", "exec", ns] + vmm, logf, args.timeout)
        res["log"] = str(logf)
        expect = {"petrel-bridge": f"ip={POD_IP}/24", "petrel-masq": "ip=10.0.2.2/",
                  "qemu-tap": f"ip={TAP_GUEST_IP}/", "petrel-tap": f"ip={TAP_GUEST_IP}/"}[cfg]
        if res["init"] is None or res["lease"] is None:
            res["status"] = "FAIL-no-init" if res["init"] is None else "FAIL-no-lease"
        elif expect not in (res["lease_line"] or ""):
            res["status"] = f"FAIL-wrong-lease (want {expect})"
        elif res["rc"] != 0:
            res["status"] = f"FAIL-exit-{res['rc']}"
        else:
            res["status"] = "ok"
        if res["init"] is not None and res["lease"] is not None:
            res["dhcp"] = res["lease"] - res["init"]
        else:
            res["dhcp"] = None
        return res
    finally:
        nss.close()


def med(vals):
    v = [x for x in vals if x is not None]
    return statistics.median(v) if v else None


def fmt(x, unit="s"):
    return "-" if x is None else f"{x:.2f}{unit}" if unit else f"{x:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--runs", type=int, default=2, help="boots per configuration (default 2)")
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help=f"comma-separated subset of {','.join(CONFIGS)}")
    ap.add_argument("--timeout", type=float, default=180, help="seconds per boot (default 180)")
    ap.add_argument("--petrel", type=Path,
                    default=Path(os.environ.get("PETREL_BIN", ROOT / "target/release/petrel")))
    ap.add_argument("--guest-dir", type=Path,
                    default=Path(os.environ.get("PETREL_GUEST_DIR", "/var/cache/petrel-guest/out")))
    ap.add_argument("--log-dir", type=Path, default=None, help="default: a new /tmp/pbl-logs-* dir")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    cfgs = [c.strip() for c in args.configs.split(",") if c.strip()]
    bad = [c for c in cfgs if c not in CONFIGS]
    if bad or args.runs < 1:
        print(f"bad --configs {bad} or --runs", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("run as root (namespaces, taps, KVM)", file=sys.stderr)
        return 2
    missing = [f for f in ("vmlinux", "initramfs.cpio", "cmdline.txt")
               if not (args.guest_dir / f).is_file()]
    if missing:
        print(f"guest kit incomplete in {args.guest_dir}: {missing}", file=sys.stderr)
        return 2
    if any(c.startswith("petrel") for c in cfgs) and not args.petrel.is_file():
        print(f"no petrel binary at {args.petrel} (cargo build --release -p vmm)", file=sys.stderr)
        return 2
    for tool in ["ip"] + (["qemu-system-x86_64"] if "qemu-tap" in cfgs else []) + \
            (["busybox"] if {"qemu-tap", "petrel-tap"} & set(cfgs) else []):
        if not shutil.which(tool):
            print(f"missing {tool}", file=sys.stderr)
            return 2
    if args.log_dir is None:
        args.log_dir = Path(tempfile.mkdtemp(prefix="pbl-logs-"))
    args.log_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pbl-work-"))

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    results: dict[str, list[dict]] = {c: [] for c in cfgs}
    started = dt.datetime.now().astimezone()
    try:
        for r in range(args.runs):
            order = cfgs[r % len(cfgs):] + cfgs[:r % len(cfgs)]
            for cfg in order:
                res = run_one(cfg, args, work, r)
                results[cfg].append(res)
                log(f"{cfg} run {r + 1}: init={fmt(res['init'])} lease={fmt(res['lease'])} "
                    f"dhcp={fmt(res['dhcp'])} exit={fmt(res['exit'])} {res['status']} "
                    f"[{res['lease_line'] or '-'}]")
    except KeyboardInterrupt:
        log("interrupted")
        return 1
    finally:
        kill_all()
        shutil.rmtree(work, ignore_errors=True)

    summary: dict[str, dict] = {}
    for c in cfgs:
        rs = results[c]
        ok_rs = [x for x in rs if x["status"] == "ok"]  # failed runs: raw numbers only
        summary[c] = {k: med([x[k] for x in ok_rs]) for k in ("init", "lease", "dhcp", "exit")}
    ref = summary.get(REFERENCE)

    def ratio(c, k):
        if not ref or c == REFERENCE or summary[c][k] is None or not ref[k]:
            return None
        return summary[c][k] / ref[k]

    print(f"DHCP lease benchmark, {started:%Y-%m-%d %H:%M %Z}, {args.runs} run(s) each, "
          f"medians of ok runs; times from VMM spawn; dhcp = lease - init; "
          f"loadavg at end {os.getloadavg()[0]:.2f}")
    print()
    hdr = ("| config | init | lease | dhcp (lease-init) | VMM exit | init/QEMU | lease/QEMU "
           "| dhcp/QEMU | ok |")
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for c in cfgs:
        s = summary[c]
        ok = sum(1 for x in results[c] if x["status"] == "ok")
        print(f"| {c} | {fmt(s['init'])} | {fmt(s['lease'])} | {fmt(s['dhcp'])} | "
              f"{fmt(s['exit'])} | {fmt(ratio(c, 'init'), '')} | {fmt(ratio(c, 'lease'), '')} | "
              f"{fmt(ratio(c, 'dhcp'), '')} | {ok}/{len(results[c])} |")
    print()
    print("raw (init / lease / dhcp, s):")
    for c in cfgs:
        print(f"  {c:14} " + "  ".join(
            f"{fmt(x['init'], '')}/{fmt(x['lease'], '')}/{fmt(x['dhcp'], '')}"
            + ("" if x["status"] == "ok" else f"({x['status']})") for x in results[c]))
    for c in cfgs:
        leases = sorted({x["lease_line"] for x in results[c] if x["lease_line"]})
        for line in leases:
            print(f"  {c:14} {line}")
    print(f"logs: {args.log_dir}")
    if args.json:
        args.json.write_text(json.dumps({
            "date": started.isoformat(), "runs": args.runs, "reference": REFERENCE,
            "summary": summary,
            "ratios": {c: {k: ratio(c, k) for k in ("init", "lease", "dhcp", "exit")} for c in cfgs},
            "results": results,
        }, indent=2))
    failed = [c for c in cfgs for x in results[c] if x["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_all()
