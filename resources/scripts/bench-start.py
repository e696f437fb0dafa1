#!/usr/bin/env python3
"""Start-up benchmark: petrel builds (and the KVM floor) interleaved, untraced.

Each run starts a binary on the bench-boot guest (1 vCPU, --mem MiB, PVH
vmlinux + initramfs from --guest-dir), reads petrel's `start-up phases`
and `first KVM_RUN since_start_us` log lines from its stderr, samples
/proc/PID/smaps when the first KVM_RUN line arrives, and kills the process
--hold-ms later. The KVM floor (tests/src/bin/kvm-floor.rs, --floor) is
run alike and its own line parsed. Binaries are run in a rotating order
each round, after --warmup untimed rounds.

  --bin NAME=PATH    a petrel binary (repeatable; e.g. before=/tmp/petrel-base)
  --masquerade       give the VM a masquerade virtio NIC, in a scratch
                     network namespace (petrel-bs-PID: eth0 10.99.0.2/24,
                     a veth with its peer eth0p, default route), its bridge, tap and nft
                     table removed between runs
  --rounds N         timed rounds (10)

RSS - guest RAM: the sum of Rss over all mappings minus the Rss of every
mapping inside the guest RAM range (the largest private anonymous rw
mapping, extended over mappings placed inside it, e.g. file pages mapped
over guest RAM).

Output: per binary and metric the median, minimum and every value; --json
FILE writes them all. Run as root.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# bench-boot's guest spec and command line, shared (its main() only runs
# as a script).
_spec = importlib.util.spec_from_file_location(
    "bench_boot", Path(__file__).with_name("bench-boot.py"))
bench_boot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_boot)
SMAPS_HDR_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+)\s+(\S+)\s+\S+\s+\S+\s+(\d+)\s*(.*)$")
SINCE_RE = re.compile(r"first KVM_RUN.*?since_start_us=(\d+)")
PHASES_RE = re.compile(r"start-up phases")
KV_RE = re.compile(r"(\w+)=(\d+)")
FLOOR_RE = re.compile(r"kvm floor: first KVM_RUN since_start_us=(\d+) first_exit_us=(\d+) rss_kib=(\d+)")
SETUP_US_RE = re.compile(r"(load_us|setup_us)=(\d+)")

MASQ = """\
      interfaces:
        - name: default
          model: virtio
          masquerade: {}
  networks:
    - name: default
      pod: {}"""


def log(msg: str) -> None:
    print(f"[bench-start {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str], check: bool = True) -> None:
    subprocess.run(cmd, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def smaps_overhead(pid: int) -> dict:
    maps = []  # (start, end, perms, anon, rss_kib)
    cur = None
    with open(f"/proc/{pid}/smaps", errors="replace") as f:
        for line in f:
            m = SMAPS_HDR_RE.match(line)
            if m:
                start, end, perms, inode, name = m.groups()
                cur = [int(start, 16), int(end, 16), perms, inode == "0" and (name == "" or name.startswith("[anon")), 0]
                maps.append(cur)
            elif line.startswith("Rss:") and cur is not None:
                cur[4] = int(line.split()[1])
    total = sum(m[4] for m in maps)
    cands = [m for m in maps if m[3] and m[2].startswith("rw") and m[2][3] == "p"]
    if not cands:
        return {"rss_kib": total, "guest_kib": 0, "overhead_kib": total}
    ram = max(cands, key=lambda m: m[1] - m[0])
    lo, hi = ram[0], ram[1]
    # Mappings placed over guest RAM (MAP_FIXED) split it: grow the range
    # over adjacent pieces as long as they touch it.
    grew = True
    while grew:
        grew = False
        for m in maps:
            if m[1] == lo and m[2].startswith("r"):
                lo, grew = m[0], True
            elif m[0] == hi and m[2].startswith("r") and m[2][3] == "p" and m[3]:
                hi, grew = m[1], True
    guest = sum(m[4] for m in maps if m[0] >= lo and m[1] <= hi)
    return {"rss_kib": total, "guest_kib": guest, "overhead_kib": total - guest,
            "guest_map_kib": (hi - lo) // 1024}


def run_once(argv: list[str], env: dict, hold: float, timeout: float, floor: bool) -> dict:
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, start_new_session=True)
    res: dict = {}
    done = threading.Event()
    lines: list[str] = []

    def reader(stream):
        for raw in stream:
            line = raw.decode(errors="replace")
            lines.append(line)
            if floor:
                m = FLOOR_RE.search(line)
                if m:
                    res.update(since_start_us=int(m.group(1)), first_exit_us=int(m.group(2)),
                               overhead_kib=int(m.group(3)) - 4, rss_kib=int(m.group(3)))
                    done.set()
                continue
            if PHASES_RE.search(line):
                tail = line.split("phases_us=", 1)[-1]
                res["phases"] = {k: int(v) for k, v in KV_RE.findall(tail)}
            m = SETUP_US_RE.search(line)
            if m:
                res[m.group(1)] = int(m.group(2))
            m = SINCE_RE.search(line)
            if m and "since_start_us" not in res:
                res["since_start_us"] = int(m.group(1))
                try:
                    res.update(smaps_overhead(p.pid))
                except OSError as e:
                    res["smaps_error"] = str(e)
                done.set()

    threads = [threading.Thread(target=reader, args=(s,), daemon=True) for s in (p.stdout, p.stderr)]
    for t in threads:
        t.start()
    ok = done.wait(timeout)
    time.sleep(hold)
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()
    for t in threads:
        t.join(timeout=2)
    if not ok:
        raise RuntimeError(f"{argv[0]}: no first KVM_RUN within {timeout} s:\n" + "".join(lines[-10:]))
    return res


class Netns:
    def __init__(self):
        self.name = f"petrel-bs-{os.getpid()}"
        sh(["ip", "netns", "del", self.name], check=False)
        sh(["ip", "netns", "add", self.name])
        for cmd in ("ip link set lo up", "ip link add eth0 type veth peer name eth0p",
                    "ip addr add 10.99.0.2/24 dev eth0", "ip link set eth0p up", "ip link set eth0 up", "ip route add default via 10.99.0.1"):
            sh(["ip", "netns", "exec", self.name] + cmd.split())

    def clean(self):
        """Remove what a killed petrel left: every link but lo and the veth pair, every nft table."""
        out = subprocess.run(["ip", "netns", "exec", self.name, "ip", "-o", "link", "show"],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name not in ("lo", "eth0", "eth0p"):
                sh(["ip", "netns", "exec", self.name, "ip", "link", "del", name], check=False)
        sh(["ip", "netns", "exec", self.name, "nft", "flush", "ruleset"], check=False)

    def close(self):
        sh(["ip", "netns", "del", self.name], check=False)


def summarize(results: dict) -> dict:
    out = {}
    for name, runs in results.items():
        metrics: dict[str, list] = {}
        for r in runs:
            flat = {"since_start_ms": r["since_start_us"] / 1e3}
            if "first_exit_us" in r:
                flat["first_exit_ms"] = r["first_exit_us"] / 1e3
            if "overhead_kib" in r:
                flat["rss_minus_ram_mib"] = r["overhead_kib"] / 1024
            for k in ("load_us", "setup_us"):
                if k in r:
                    flat[k.replace("_us", "_ms")] = r[k] / 1e3
            for k, v in r.get("phases", {}).items():
                flat[f"phase_{k}_ms"] = v / 1e3
            for k, v in flat.items():
                metrics.setdefault(k, []).append(v)
        out[name] = {k: {"median": statistics.median(v), "min": min(v), "values": v} for k, v in metrics.items()}
    return out


def print_summary(summary: dict) -> None:
    for name, metrics in summary.items():
        print(f"== {name}")
        for k, s in metrics.items():
            vals = ", ".join(f"{v:.2f}" for v in s["values"])
            print(f"  {k:<28} median {s['median']:8.2f}  min {s['min']:8.2f}   [{vals}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--bin", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--floor", help="kvm-floor binary (target/release/kvm-floor)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--mem", type=int, default=128)
    ap.add_argument("--hold-ms", type=float, default=50.0)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--masquerade", action="store_true")
    ap.add_argument("--guest-dir", default=os.environ.get("PETREL_GUEST_DIR", "/var/cache/petrel-guest/out"))
    ap.add_argument("--json")
    args = ap.parse_args()
    bins = {}
    for b in args.bin:
        name, _, path = b.partition("=")
        bins[name] = str(Path(path or name).resolve())
    if args.floor:
        bins["kvm-floor"] = str(Path(args.floor).resolve())
    if not bins:
        ap.error("nothing to run: give --bin NAME=PATH and/or --floor PATH")
    out = Path(args.guest_dir)
    env = dict(os.environ, PETREL_LOG="info", NO_COLOR="1")
    netns = Netns() if args.masquerade else None
    results: dict[str, list] = {n: [] for n in bins}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
            spec = Path(tmp) / "vmi.yaml"
            spec.write_text(bench_boot.SPEC_TEMPLATE.format(
                name="bench-start", vcpus=1, mem=args.mem,
                cmdline=json.dumps(bench_boot.read_cmdline(out)),
                kernel=json.dumps(str(out / "vmlinux")),
                initrd=json.dumps(str(out / "initramfs.cpio")),
                devices=MASQ if args.masquerade else bench_boot.NICLESS_DEVICES))
            names = list(bins)
            log(f"load {os.getloadavg()[0]:.2f}; {args.warmup} warm-up + {args.rounds} rounds of {names}")
            for rnd in range(args.warmup + args.rounds):
                k = rnd % len(names)
                for name in names[k:] + names[:k]:
                    floor = name == "kvm-floor"
                    argv = [bins[name], "--mem-mib", str(args.mem)] if floor else [
                        bins[name], "run", str(spec), "--console", "stdout"]
                    if netns and not floor:
                        netns.clean()
                        argv = ["ip", "netns", "exec", netns.name] + argv
                    r = run_once(argv, env, args.hold_ms / 1e3, args.timeout, floor)
                    r["loadavg1"] = os.getloadavg()[0]
                    if rnd >= args.warmup:
                        results[name].append(r)
                        log(f"round {rnd - args.warmup + 1} {name}: since_start {r['since_start_us'] / 1e3:.2f} ms"
                            f", RSS-RAM {r.get('overhead_kib', 0) / 1024:.2f} MiB, phases {r.get('phases', '')}")
    finally:
        if netns:
            netns.clean()
            netns.close()
    summary = summarize(results)
    print_summary(summary)
    print(f"load average at end {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "raw": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
