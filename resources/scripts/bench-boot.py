#!/usr/bin/env python3
"""Boot benchmark: petrel vs. QEMU microvm on the test guest (guestkit).

Both VMMs boot the same vmlinux (PVH entry), initramfs and command line
(cmdline.txt + " guest.net=0") with the same vCPU count and memory. Runs of
the two VMMs are interleaved (the order alternates per round) so that host
noise hits both alike. Metrics, per VMM and vCPU count:

  (a) start -> first KVM_RUN: the VMM runs under
      `strace -f -ttt -e trace=execve,ioctl -e signal=none` and the time of the
      first KVM_RUN ioctl (0xae80) is taken relative to the execve; the VMM is
      killed right after. These are separate short runs, so strace overhead
      never touches (b) and (c). petrel's own `first KVM_RUN since_start_us=N`
      log line (from the boots of (b), not traced) is printed as a cross-check.
  (b) start -> `GUEST-INIT-OK` on the console (the VMM's stdout is a pipe; the
      time is taken when the bytes arrive) and start -> process exit after the
      guest's reset (`reboot=k` -> i8042 reset; QEMU runs with -no-reboot).
      "start" is the moment just before the VMM process is spawned.
  (c) memory overhead at GUEST-INIT-OK: the VMM's RSS (sum of Rss in
      /proc/PID/smaps) minus the resident part of the guest RAM mapping (the
      largest private read-write anonymous mapping).

  (d) the KVM floor (tests/src/bin/kvm-floor.rs, --floor; skipped with a
      warning when not built): the fewest ioctls any VMM makes before a
      guest's first instruction (KVM_CREATE_VM, irqchip, PIT, one memory
      slot, one vCPU, CPUID, registers, KVM_RUN), no file loaded. It runs
      in the same rotation as (a), under the same strace, and once more per
      round untraced for its own `since_start_us` (taken, like petrel's,
      just before KVM_RUN). Its column says what part of a start-up time is
      this host's KVM alone.

Output: a table of medians with petrel/QEMU ratios and the floor, the raw numbers, and with
--json FILE all of it as JSON. Logs of every run (console with timestamps,
stderr, strace output) go to --log-dir. Exit status: 0 if every run worked,
1 if a VMM failed (no GUEST-INIT-OK within --timeout s, non-zero exit, no
KVM_RUN seen, ...), 2 for bad usage or a missing prerequisite.

Standard library only (Python >= 3.9). Run as root (KVM; strace/QEMU are
installed with apt-get when missing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
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
INIT_MARKER = b"GUEST-INIT-OK"
POWEROFF_MARKER = b"GUEST-POWEROFF"
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# strace -f -ttt -o FILE: "PID SECONDS.MICROS syscall(...".
STRACE_LINE_RE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
STRACE_EXECVE_RE = re.compile(r'^execve\("([^"]*)"')
# KVM_RUN = _IO(0xae, 0x80); KVM_CREATE_VM = _IO(0xae, 0x01).
STRACE_KVM_RUN_RE = re.compile(r"^ioctl\(\d+,\s*(KVM_RUN\b|_IOC\(_IOC_NONE,\s*0xae,\s*0x80\b|0xae80\b)")
STRACE_CREATE_VM_RE = re.compile(r"^ioctl\(\d+,\s*(KVM_CREATE_VM\b|_IOC\(_IOC_NONE,\s*0xae,\s*0x1\b|0xae01\b)")
SINCE_START_RE = re.compile(r"first KVM_RUN.*?since_start_us=(\d+)")
FLOOR_RE = re.compile(r"kvm floor: first KVM_RUN since_start_us=(\d+) first_exit_us=(\d+) rss_kib=(\d+)")
SMAPS_HDR_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+)\s+(\S+)\s+\S+\s+\S+\s+(\d+)\s*(.*)$")

VMMS = ("petrel", "qemu")
FLOOR = "floor"

# Every process group started here; killed in finally blocks and on exit.
_LIVE: dict[int, subprocess.Popen] = {}
_LIVE_LOCK = threading.Lock()


class BenchFailure(Exception):
    """A VMM run failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"[bench-boot {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def spawn(argv: list[str], **kw) -> subprocess.Popen:
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    with _LIVE_LOCK:
        _LIVE[p.pid] = p
    return p


def kill_group(p: subprocess.Popen) -> None:
    """SIGKILL the process group of p (the VMM, or strace and its tracee) and reap it."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log(f"WARNING: pid {p.pid} did not die after SIGKILL")
    with _LIVE_LOCK:
        _LIVE.pop(p.pid, None)


def kill_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for p in procs:
        kill_group(p)


def _on_term(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------
# prerequisites


def apt_install(pkg: str) -> None:
    if os.geteuid() != 0:
        raise SystemExit(f"bench-boot: {pkg} is missing and this is not root: apt-get install {pkg}")
    log(f"installing {pkg} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=600", "--no-install-recommends", pkg]
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-o", "DPkg::Lock::Timeout=600"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)


def need_tool(name: str, pkg: str) -> str:
    path = shutil.which(name)
    if path is None:
        apt_install(pkg)
        path = shutil.which(name)
    if path is None:
        raise SystemExit(f"bench-boot: {name} not found even after installing {pkg}")
    return path


def wait_for_guest(out: Path, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    announced = False
    while not (out / "SHA256SUMS").exists():
        if time.monotonic() >= deadline:
            raise SystemExit(
                f"bench-boot: no {out}/SHA256SUMS: build the guest first "
                "(resources/guest/build.sh, or make setup)")
        if not announced:
            log(f"waiting up to {wait_s:.0f} s for the guest build ({out}/SHA256SUMS)")
            announced = True
        time.sleep(min(20.0, max(0.1, deadline - time.monotonic())))
    for f in ("vmlinux", "initramfs.cpio", "cmdline.txt"):
        if not (out / f).is_file():
            raise SystemExit(f"bench-boot: missing {out / f}")


def read_cmdline(out: Path) -> str:
    words = []
    for line in (out / "cmdline.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            words.extend(line.split())
    return " ".join(words + ["guest.net=0"])


def tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (r.stdout or r.stderr).splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def head_commit_time() -> float | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        return float(out) if out else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def warm_page_cache(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass


# --------------------------------------------------------------------------
# VMM command lines


SPEC_TEMPLATE = """\
# generated by resources/scripts/bench-boot.py
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata:
  name: {name}
spec:
  domain:
    cpu:
      cores: {vcpus}
    memory:
      guest: {mem}Mi
    firmware:
      kernelBoot:
        kernelArgs: {cmdline}
        container:
          image: registry.example.com/petrel/guestkit:latest
          kernelPath: {kernel}
          initrdPath: {initrd}
    devices:
{devices}
"""
NICLESS_DEVICES = "      autoattachPodInterface: false"


class Setup:
    def __init__(self, args, tmp: Path):
        self.args = args
        self.out = Path(args.guest_dir)
        self.kernel = self.out / "vmlinux"
        self.initrd = self.out / "initramfs.cpio"
        self.cmdline = read_cmdline(self.out)
        self.tmp = tmp
        self.petrel = args.petrel
        self.qemu = args.qemu
        self.strace = args.strace

    def spec(self, vcpus: int) -> Path:
        path = self.tmp / f"vmi-bench-{vcpus}cpu.yaml"
        if not path.exists():
            path.write_text(SPEC_TEMPLATE.format(
                name=f"bench-boot-{vcpus}cpu", devices=NICLESS_DEVICES,
                vcpus=vcpus, mem=self.args.mem, cmdline=json.dumps(self.cmdline),
                kernel=json.dumps(str(self.kernel)), initrd=json.dumps(str(self.initrd))))
        return path

    def argv(self, vmm: str, vcpus: int) -> list[str]:
        if vmm == FLOOR:
            # Held after its first KVM_RUN until the strace run kills it.
            return [self.args.floor, "--mem-mib", str(self.args.mem), "--hold-ms", "60000"]
        if vmm == "petrel":
            return [self.petrel, "run", str(self.spec(vcpus)), "--kernel", str(self.kernel),
                    "--initrd", str(self.initrd), "--cmdline", self.cmdline, "--console", "stdout"]
        # As resources/guest's run-qemu.sh (microvm): qboot, PVH vmlinux, no
        # network; -cpu host,-arch-capabilities (plain -cpu host aborts on this
        # KVM); i8042 so that reboot=k resets, -no-reboot so the reset exits.
        return [self.qemu, "-enable-kvm", "-cpu", "host,-arch-capabilities",
                "-m", f"{self.args.mem}M", "-smp", str(vcpus),
                "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot",
                "-M", "microvm,acpi=off,rtc=on", "-device", "i8042",
                "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", self.cmdline]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PETREL_LOG", "info")
        env["NO_COLOR"] = "1"
        return env


# --------------------------------------------------------------------------
# (a) start -> first KVM_RUN under strace


def strace_first_run(st: Setup, vmm: str, vcpus: int, tag: str) -> dict:
    logdir = Path(st.args.log_dir)
    trace = logdir / f"{tag}.strace"
    errlog = logdir / f"{tag}.stderr"
    argv = [st.strace, "-f", "-ttt", "-e", "trace=execve,ioctl", "-e", "signal=none"]
    if st.args.strace_seccomp:
        argv.append("--seccomp-bpf")
    argv += ["-o", str(trace), "--"] + st.argv(vmm, vcpus)
    with open(errlog, "wb") as err:
        p = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=st.env())
    exec_t = create_t = run_t = None
    exec_pid = None
    deadline = time.monotonic() + st.args.strace_timeout
    pos = 0
    partial = ""
    try:
        while run_t is None:
            if trace.exists():
                with open(trace, "r", errors="replace") as f:
                    f.seek(pos)
                    data = f.read()
                    pos = f.tell()
                lines = (partial + data).split("\n")
                partial = lines.pop()
                for line in lines:
                    m = STRACE_LINE_RE.match(line)
                    if not m:
                        continue
                    pid, ts, call = int(m.group(1)), float(m.group(2)), m.group(3)
                    if exec_t is None:
                        if STRACE_EXECVE_RE.match(call):
                            exec_t, exec_pid = ts, pid
                        continue
                    if create_t is None and STRACE_CREATE_VM_RE.match(call):
                        create_t = ts
                    if STRACE_KVM_RUN_RE.match(call):
                        run_t = ts
                        break
            if run_t is not None:
                break
            if p.poll() is not None:
                raise BenchFailure(f"{vmm} ({vcpus} vCPU) exited with {p.returncode} under strace "
                                   f"before its first KVM_RUN; see {trace} and {errlog}")
            if time.monotonic() > deadline:
                raise BenchFailure(f"{vmm} ({vcpus} vCPU): no KVM_RUN within {st.args.strace_timeout} s "
                                   f"under strace; see {trace}")
            time.sleep(0.005)
    finally:
        kill_group(p)
    return {
        "loadavg1": os.getloadavg()[0],
        "first_kvm_run_ms": (run_t - exec_t) * 1e3,
        "create_vm_ms": (create_t - exec_t) * 1e3 if create_t is not None else None,
        "pid": exec_pid,
    }


def floor_run(st: Setup, vmm: str, vcpus: int, tag: str) -> dict:
    """(d) untraced: the floor's own line (it exits after its first KVM_RUN)."""
    r = subprocess.run([st.args.floor, "--mem-mib", str(st.args.mem)], capture_output=True, text=True,
                       timeout=st.args.strace_timeout)
    (Path(st.args.log_dir) / f"{tag}.stdout").write_text(r.stdout + r.stderr)
    m = FLOOR_RE.search(r.stdout)
    if r.returncode != 0 or not m:
        raise BenchFailure(f"kvm-floor exited with {r.returncode}: {(r.stdout + r.stderr).strip()[-300:]}")
    return {"loadavg1": os.getloadavg()[0], "since_start_us": int(m.group(1)),
            "first_exit_us": int(m.group(2)), "rss_kib": int(m.group(3))}


# --------------------------------------------------------------------------
# (b), (c): a full boot


def smaps_sample(pid: int) -> dict:
    """Total Rss and the guest RAM mapping (largest rw private anonymous) of pid, in KiB."""
    total = 0
    best = None  # (size_kib, rss_kib, range)
    cur = None
    with open(f"/proc/{pid}/smaps", "r", errors="replace") as f:
        for line in f:
            m = SMAPS_HDR_RE.match(line)
            if m:
                start, end, perms, inode, name = m.groups()
                anon = inode == "0" and (name == "" or name.startswith("[anon"))
                rw_private = perms.startswith("rw") and perms[3] == "p"
                cur = {"size": (int(end, 16) - int(start, 16)) // 1024,
                       "cand": anon and rw_private, "range": f"{start}-{end}"}
                continue
            if line.startswith("Rss:") and cur is not None:
                rss = int(line.split()[1])
                total += rss
                if cur["cand"] and (best is None or cur["size"] > best[0]):
                    best = (cur["size"], rss, cur["range"])
    vmrss = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                vmrss = int(line.split()[1])
    if best is None:
        raise BenchFailure(f"pid {pid}: no anonymous mapping found in smaps")
    return {"rss_kib": total, "vmrss_kib": vmrss, "guest_map_size_kib": best[0],
            "guest_rss_kib": best[1], "guest_map": best[2], "overhead_kib": total - best[1]}


def boot_run(st: Setup, vmm: str, vcpus: int, tag: str) -> dict:
    logdir = Path(st.args.log_dir)
    argv = st.argv(vmm, vcpus)
    res: dict = {"loadavg1": os.getloadavg()[0], "init_ok_s": None, "poweroff_s": None, "exit_s": None, "exit_code": None,
                 "since_start_us": None, "mem": None, "mem_error": None}
    console: list[tuple[float, str]] = []
    errlines: list[tuple[float, str]] = []
    init_ev = threading.Event()
    exit_ev = threading.Event()

    t0 = time.monotonic()
    p = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=st.env())

    def read_console():
        buf = b""
        line = b""
        fd = p.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            now = time.monotonic() - t0
            if not chunk:
                break
            scan_from = max(0, len(buf) - len(POWEROFF_MARKER))
            buf += chunk
            if res["init_ok_s"] is None and buf.find(INIT_MARKER, scan_from) >= 0:
                res["init_ok_s"] = now
                try:
                    res["mem"] = smaps_sample(p.pid)
                except (OSError, BenchFailure) as e:
                    res["mem_error"] = str(e)
                init_ev.set()
            if res["poweroff_s"] is None and buf.find(POWEROFF_MARKER, scan_from) >= 0:
                res["poweroff_s"] = now
            line += chunk
            while b"\n" in line:
                one, line = line.split(b"\n", 1)
                console.append((now, one.decode("utf-8", "replace").rstrip("\r")))
            if len(buf) > (1 << 20):  # keep the scan window bounded
                buf = buf[-4096:]
        if line:
            console.append((time.monotonic() - t0, line.decode("utf-8", "replace")))

    def read_stderr():
        for raw in p.stderr:
            now = time.monotonic() - t0
            text = ANSI_RE.sub("", raw.decode("utf-8", "replace").rstrip("\n"))
            errlines.append((now, text))
            if res["since_start_us"] is None:
                m = SINCE_START_RE.search(text)
                if m:
                    res["since_start_us"] = int(m.group(1))

    def wait_exit():
        rc = p.wait()
        res["exit_s"] = time.monotonic() - t0
        res["exit_code"] = rc
        exit_ev.set()
        init_ev.set()  # wake the main thread if the VMM died early

    threads = [threading.Thread(target=f, daemon=True) for f in (read_console, read_stderr, wait_exit)]
    for t in threads:
        t.start()
    failure = None
    try:
        init_ev.wait(max(0.0, st.args.timeout - (time.monotonic() - t0)))
        if res["init_ok_s"] is None and exit_ev.is_set():
            threads[0].join(timeout=5)  # the console's last bytes may still be in the pipe
        if res["init_ok_s"] is None:
            if exit_ev.is_set():
                failure = f"exited with {res['exit_code']} before GUEST-INIT-OK"
            else:
                failure = f"no GUEST-INIT-OK within {st.args.timeout:.0f} s"
        elif not exit_ev.wait(st.args.exit_timeout):
            failure = f"did not exit within {st.args.exit_timeout:.0f} s after GUEST-INIT-OK"
        elif res["exit_code"] != 0:
            failure = f"exit code {res['exit_code']} after the guest's reset"
        elif res["mem"] is None:
            failure = f"no memory sample at GUEST-INIT-OK ({res['mem_error']})"
    finally:
        kill_group(p)
        for t in threads:
            t.join(timeout=5)
        with open(logdir / f"{tag}.console", "w") as f:
            f.writelines(f"[{t:9.3f}] {s}\n" for t, s in console)
        with open(logdir / f"{tag}.stderr", "w") as f:
            f.writelines(f"[{t:9.3f}] {s}\n" for t, s in errlines)
    if failure:
        tail = "\n".join(f"    {s}" for _, s in (console[-5:] + errlines[-5:]))
        raise BenchFailure(f"{vmm} ({vcpus} vCPU) {failure}; logs {logdir}/{tag}.*\n{tail}")
    return res


# --------------------------------------------------------------------------
# report

METRICS = [
    # key, label, unit, scale (from the raw unit)
    ("first_kvm_run_ms", "start -> first KVM_RUN (strace)", "ms", 1.0),
    ("create_vm_ms", "  of which start -> KVM_CREATE_VM", "ms", 1.0),
    ("init_ok_s", "start -> GUEST-INIT-OK", "s", 1.0),
    ("exit_s", "start -> exit after reset", "s", 1.0),
    ("overhead_mib", "RSS - guest RAM at INIT-OK", "MiB", 1.0),
    ("rss_mib", "  VMM RSS at INIT-OK", "MiB", 1.0),
    ("guest_rss_mib", "  guest RAM resident", "MiB", 1.0),
    ("since_start_ms", "own since_start_us (petrel: boots)", "ms", 1.0),
    ("floor_rss_mib", "floor's VmRSS at its first exit", "MiB", 1.0),
]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, unit):
    if x is None:
        return "-"
    if unit == "s":
        return f"{x:.2f}"
    if unit == "ms":
        return f"{x:.1f}"
    return f"{x:.1f}"


def flatten(raw: dict) -> dict:
    """raw[vmm] = {"start": [...], "boot": [...]} -> metric -> list of numbers."""
    out = {}
    for vmm, runs in raw.items():
        m = {k: [] for k, *_ in METRICS}
        for s in runs["start"]:
            m["first_kvm_run_ms"].append(s["first_kvm_run_ms"])
            m["create_vm_ms"].append(s["create_vm_ms"])
        for b in runs["boot"]:
            m["init_ok_s"].append(b["init_ok_s"])
            m["exit_s"].append(b["exit_s"])
            mem = b["mem"] or {}
            m["overhead_mib"].append(mem["overhead_kib"] / 1024 if mem else None)
            m["rss_mib"].append(mem["rss_kib"] / 1024 if mem else None)
            m["guest_rss_mib"].append(mem["guest_rss_kib"] / 1024 if mem else None)
            if vmm == "petrel":
                us = b["since_start_us"]
                m["since_start_ms"].append(us / 1e3 if us is not None else None)
        for f in runs.get("own", []):
            m["since_start_ms"].append(f["since_start_us"] / 1e3)
            m["floor_rss_mib"].append(f["rss_kib"] / 1024)
        out[vmm] = m
    return out


def print_report(results: dict, args) -> dict:
    summary = {}
    for vcpus, raw in results.items():
        flat = flatten(raw)
        n_start = len(raw["petrel"]["start"])
        n_boot = len(raw["petrel"]["boot"])
        print()
        print(f"== {vcpus} vCPU, {args.mem} MiB: medians of {n_start} start runs (strace) "
              f"and {n_boot} boots per VMM; ratio = petrel / QEMU")
        has_floor = FLOOR in flat
        print(f"{'metric':<38} {'unit':>4} {'petrel':>9} {'QEMU':>9} {'ratio':>7}"
              + (f" {'KVM floor':>10}" if has_floor else ""))
        rows = {}
        for key, label, unit, _ in METRICS:
            a, b = med(flat["petrel"][key]), med(flat["qemu"][key])
            c = med(flat[FLOOR][key]) if has_floor else None
            if a is None and b is None and c is None:
                continue
            ratio = a / b if a is not None and b not in (None, 0) else None
            rows[key] = {"petrel": a, "qemu": b, "ratio": ratio, "unit": unit}
            if has_floor:
                rows[key]["floor"] = c
            print(f"{label:<38} {unit:>4} {fmt(a, unit):>9} {fmt(b, unit):>9} "
                  f"{(f'{ratio:.2f}' if ratio is not None else '-'):>7}"
                  + (f" {fmt(c, unit):>10}" if has_floor else ""))
        print(f"raw ({vcpus} vCPU):")
        for key, label, unit, _ in METRICS:
            for vmm in flat:
                xs = flat[vmm][key]
                if xs and any(x is not None for x in xs):
                    print(f"  {key:<18} {vmm:<6} [{unit}] " + ", ".join(fmt(x, unit) for x in xs))
        summary[str(vcpus)] = rows
    return summary


# --------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--runs", type=int, default=3, help="boots (and strace start runs) per VMM and vCPU count (3)")
    ap.add_argument("--vcpus", default="1", help="comma-separated vCPU counts (default 1)")
    ap.add_argument("--smp2", action="store_true", help="same as --vcpus 1,2")
    ap.add_argument("--mem", type=int, default=128, help="guest memory in MiB (128)")
    ap.add_argument("--vmm", default="petrel,qemu", help=argparse.SUPPRESS)
    ap.add_argument("--guest-dir", default=os.environ.get("PETREL_GUEST_DIR", "/var/cache/petrel-guest/out"),
                    help="guest build output (vmlinux, initramfs.cpio, cmdline.txt)")
    ap.add_argument("--wait-guest", type=float, default=0.0, metavar="S",
                    help="wait up to S seconds for the guest build's SHA256SUMS (0)")
    ap.add_argument("--petrel", default=str(ROOT / "target/release/petrel"), help="petrel binary")
    ap.add_argument("--build", action="store_true", help="cargo build --release -p vmm first")
    ap.add_argument("--qemu", default="qemu-system-x86_64", help="QEMU binary")
    ap.add_argument("--floor", default=str(ROOT / "target/release/kvm-floor"),
                    help="the KVM floor program (cargo build --release -p petrel-tests --bin kvm-floor)")
    ap.add_argument("--no-floor", dest="floor", action="store_const", const=None,
                    help="leave the KVM floor column out")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to GUEST-INIT-OK before failing (180)")
    ap.add_argument("--exit-timeout", type=float, default=60.0,
                    help="seconds from GUEST-INIT-OK to the VMM's exit before failing (60)")
    ap.add_argument("--strace-timeout", type=float, default=60.0, help="seconds to the first KVM_RUN under strace (60)")
    ap.add_argument("--no-strace-seccomp", dest="strace_seccomp", action="store_false",
                    help="do not pass --seccomp-bpf to strace (stop the tracee at every syscall)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed strace start runs per VMM before measuring (warms page cache) (1)")
    ap.add_argument("--only", choices=("start", "boot"),
                    help="measure only (a) start -> first KVM_RUN, or only the boots (b)+(c)")
    ap.add_argument("--keep-going", action="store_true", help="continue after a failed run (still exits 1)")
    ap.add_argument("--log-dir", help="where run logs go (default: a new /tmp/bench-boot-* directory)")
    ap.add_argument("--json", metavar="FILE", help="write results as JSON")
    args = ap.parse_args(argv)
    if args.smp2:
        args.vcpus = "1,2"
    try:
        args.vcpu_list = [int(v) for v in args.vcpus.split(",") if v.strip()]
    except ValueError:
        ap.error(f"--vcpus: not a list of numbers: {args.vcpus}")
    if not args.vcpu_list or any(v < 1 or v > 255 for v in args.vcpu_list) or args.runs < 1:
        ap.error("need --runs >= 1 and vCPU counts in 1..255")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)

    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("bench-boot: /dev/kvm is not accessible", file=sys.stderr)
        return 2
    wait_for_guest(Path(args.guest_dir), args.wait_guest)
    if args.build:
        log("cargo build --release -p vmm -p petrel-tests --bin petrel --bin kvm-floor")
        subprocess.run(["cargo", "build", "--release", "-p", "vmm", "-p", "petrel-tests", "--bin", "petrel",
                        "--bin", "kvm-floor"], cwd=ROOT, check=True)
    if not os.access(args.petrel, os.X_OK):
        print(f"bench-boot: no petrel binary at {args.petrel}: cargo build --release -p vmm "
              "(or pass --build)", file=sys.stderr)
        return 2
    args.petrel = str(Path(args.petrel).resolve())
    if args.floor and not os.access(args.floor, os.X_OK):
        log(f"WARNING: no KVM floor program at {args.floor} (cargo build --release -p petrel-tests "
            "--bin kvm-floor); its column is left out")
        args.floor = None
    args.qemu = need_tool(args.qemu, "qemu-system-x86")
    args.strace = need_tool("strace", "strace")
    if args.strace_seccomp and subprocess.run([args.strace, "--seccomp-bpf", "-f", "-e", "trace=execve", "-o",
                                               "/dev/null", "true"], capture_output=True).returncode != 0:
        log("strace does not support --seccomp-bpf here; tracing every syscall")
        args.strace_seccomp = False

    stamp = time.strftime("%Y%m%d-%H%M%S")
    if not args.log_dir:
        args.log_dir = tempfile.mkdtemp(prefix=f"bench-boot-{stamp}-", dir="/tmp")
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)

    started = dt.datetime.now(dt.timezone.utc)
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        "host": {"kernel": platform.release(), "nproc": os.cpu_count(),
                 "loadavg_start": os.getloadavg(),
                 "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                              if l.startswith("model name")), "?")},
        "petrel": {"binary": args.petrel, "tree_head": git_rev(),
                   "binary_mtime": dt.datetime.fromtimestamp(os.stat(args.petrel).st_mtime,
                                                            dt.timezone.utc).isoformat(timespec="seconds")},
        "qemu": {"binary": args.qemu, "version": tool_version([args.qemu, "--version"])},
        "strace": {"version": tool_version([args.strace, "-V"]), "seccomp_bpf": args.strace_seccomp},
        "runs": args.runs, "vcpus": args.vcpu_list, "mem_mib": args.mem,
        "guest_dir": args.guest_dir, "log_dir": args.log_dir,
    }
    results: dict = {}
    failures: list[str] = []
    rc = 0
    with tempfile.TemporaryDirectory(prefix="bench-boot-spec-") as tmp:
        st = Setup(args, Path(tmp))
        meta["cmdline"] = st.cmdline
        meta["argv"] = {str(v): {vmm: st.argv(vmm, v) for vmm in VMMS} for v in args.vcpu_list}
        head_t = head_commit_time()
        if head_t is not None and os.stat(args.petrel).st_mtime < head_t:
            log(f"WARNING: {args.petrel} is older than the tree's HEAD commit; rebuild "
                "(cargo build --release -p vmm, or --build) to measure HEAD")
        log(f"petrel {args.petrel} (tree {meta['petrel']['tree_head']}, built "
            f"{meta['petrel']['binary_mtime']}), {meta['qemu']['version']}, "
            f"{meta['strace']['version']}; logs in {args.log_dir}")
        warm_page_cache([st.kernel, st.initrd, Path(args.petrel), Path(args.qemu)])
        try:
            for vcpus in args.vcpu_list:
                start_vmms = VMMS + ((FLOOR,) if args.floor else ())
                raw = {vmm: {"start": [], "boot": []} for vmm in start_vmms}
                if args.floor:
                    raw[FLOOR]["own"] = []
                results[vcpus] = raw

                def attempt(fn, vmm, kind, i):
                    tag = f"{vmm}-{vcpus}cpu-{kind}{i}"
                    try:
                        return fn(st, vmm, vcpus, tag)
                    except BenchFailure as e:
                        msg = f"FAIL {tag}: {e}"
                        print(msg, file=sys.stderr, flush=True)
                        failures.append(msg)
                        if not args.keep_going:
                            raise
                        return None

                for i in range(args.warmup if args.only != "boot" else 0):
                    for vmm in start_vmms:
                        log(f"{vcpus} vCPU warm-up {vmm}")
                        attempt(strace_first_run, vmm, "warmup", i)
                for i in range(args.runs if args.only != "boot" else 0):
                    k = i % len(start_vmms)
                    for vmm in start_vmms[k:] + start_vmms[:k]:
                        r = attempt(strace_first_run, vmm, "start", i)
                        if r:
                            raw[vmm]["start"].append(r)
                            log(f"{vcpus} vCPU start {i + 1}/{args.runs} {vmm}: first KVM_RUN "
                                f"{r['first_kvm_run_ms']:.1f} ms after execve")
                    if args.floor:
                        r = attempt(floor_run, FLOOR, "own", i)
                        if r:
                            raw[FLOOR]["own"].append(r)
                            log(f"{vcpus} vCPU floor {i + 1}/{args.runs} untraced: since_start_us="
                                f"{r['since_start_us']}")
                for i in range(args.runs if args.only != "start" else 0):
                    for vmm in (VMMS if i % 2 == 0 else VMMS[::-1]):
                        log(f"{vcpus} vCPU boot {i + 1}/{args.runs} {vmm} ...")
                        r = attempt(boot_run, vmm, "boot", i)
                        if r:
                            raw[vmm]["boot"].append(r)
                            mem = r["mem"]
                            extra = (f", since_start_us={r['since_start_us']}"
                                     if r["since_start_us"] is not None else "")
                            log(f"  GUEST-INIT-OK {r['init_ok_s']:.2f} s, exit {r['exit_s']:.2f} s, "
                                f"RSS {mem['rss_kib'] / 1024:.1f} MiB - guest {mem['guest_rss_kib'] / 1024:.1f}"
                                f" MiB (map {mem['guest_map_size_kib'] / 1024:.0f} MiB) = "
                                f"{mem['overhead_kib'] / 1024:.1f} MiB{extra}")
                            if mem["guest_map_size_kib"] < 0.9 * args.mem * 1024:
                                log(f"  WARNING: the largest anonymous mapping ({mem['guest_map']}) is "
                                    f"smaller than the guest RAM; the overhead number is suspect")
        except BenchFailure:
            rc = 1
        except KeyboardInterrupt as e:
            print(f"bench-boot: interrupted ({e})", file=sys.stderr)
            rc = 130
        finally:
            kill_all()

    meta["loadavg_end"] = os.getloadavg()
    meta["duration_s"] = round((dt.datetime.now(dt.timezone.utc) - started).total_seconds(), 1)
    summary = print_report(results, args) if results else {}
    print(f"\nduration {meta['duration_s']:.0f} s; load average start {meta['host']['loadavg_start'][0]:.2f} "
          f"end {meta['loadavg_end'][0]:.2f}; logs {args.log_dir}")
    if failures:
        rc = rc or 1
        print(f"\n{len(failures)} FAILED run(s):", file=sys.stderr)
        for f in failures:
            print("  " + f.splitlines()[0], file=sys.stderr)
    if args.json:
        doc = {"meta": meta, "summary": summary, "failures": failures,
               "raw": {str(v): r for v, r in results.items()}}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results written to {args.json}")
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_all()
