//! Small syscall wrappers and /proc readers: interface index, socket
//! options, poll, process CPU time, interface counters, the private network
//! namespace and the host's description.

use std::io;
use std::os::fd::RawFd;
use std::thread;

pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub fn ifindex(name: &str) -> io::Result<libc::c_int> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: if_nametoindex reads the NUL-terminated string, which lives
    // until the end of this statement.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    libc::c_int::try_from(idx).map_err(io::Error::other)
}

pub fn set_sockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    let ptr: *const libc::c_void = (&v as *const libc::c_int).cast();
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: setsockopt reads `len` bytes from `ptr`, a live local int.
    cvt(unsafe { libc::setsockopt(fd, level, opt, ptr, len) }).map(drop)
}

/// Waits until `fd` is readable or `timeout_ms` passed.
pub fn wait_readable(fd: RawFd, timeout_ms: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes exactly one pollfd, a live local.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
}

/// User + system CPU seconds of the whole process (all threads, the
/// device's workers included).
pub fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain integers; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the live local `ru`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// User + system CPU seconds of this process's threads whose name starts
/// with `prefix` (e.g. the virtio-net workers, "pbench-q0", …), from
/// /proc/self/task/*/stat (clock-tick resolution).
pub fn threads_cpu_seconds(prefix: &str) -> f64 {
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ppid …": comm may hold spaces, so split at the
        // last ')'; utime and stime are the 12th and 13th fields after it.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += field(11) + field(12);
    }
    ticks as f64 / hz
}

/// Counters of interface `name` from /proc/self/net/dev (this process's
/// network namespace): (rx_packets, rx_dropped, tx_packets, tx_dropped).
pub fn if_counters(name: &str) -> Option<[u64; 4]> {
    let text = std::fs::read_to_string("/proc/self/net/dev").ok()?;
    for line in text.lines() {
        let Some((ifname, rest)) = line.split_once(':') else {
            continue;
        };
        if ifname.trim() != name {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() >= 12 {
            return Some([v[1], v[3], v[9], v[11]]);
        }
    }
    None
}

pub fn enter_private_netns() -> io::Result<()> {
    // SAFETY: geteuid takes no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(io::Error::other(
            "netbench needs root (CAP_NET_ADMIN) to create a network namespace and taps",
        ));
    }
    // SAFETY: unshare takes an integer flag set and touches no memory of
    // ours; it runs before any thread is spawned, so every later thread
    // (and the device's workers) inherits the new namespace.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    // No IPv6 autoconfiguration (DAD, router solicitations, MLD): those
    // frames would show up on the tap next to the benchmark's.
    for p in [
        "/proc/sys/net/ipv6/conf/all/disable_ipv6",
        "/proc/sys/net/ipv6/conf/default/disable_ipv6",
    ] {
        let _ = std::fs::write(p, "1");
    }
    Ok(())
}

pub fn host_description() -> String {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    format!("{cpus} CPUs ({model}), Linux {kernel}")
}

/// Nanoseconds on `clock` (a CPU-time clock), 0 if it cannot be read.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the live local `ts`.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU nanoseconds (user + system) of the calling thread, exact (the
/// scheduler's runtime, not clock ticks).
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU nanoseconds of the whole process (all threads), exact.
pub fn process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// CPU nanoseconds of another live thread of this process, read at this
/// instant (its CPU-time clock), 0 if it cannot be read.
pub fn pthread_cpu_ns(thread: libc::pthread_t) -> u64 {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the caller passes a thread that has not been joined; the
    // call writes one clockid_t into the live local `clock`.
    if unsafe { libc::pthread_getcpuclockid(thread, &mut clock) } != 0 {
        return 0;
    }
    clock_ns(clock)
}
