//! CPU pinning of a case's threads: with `--pin core`, every thread of
//! pair q (the benchmark's driver and injector, the device's worker) runs
//! on CPU q, so one pair is measured on exactly one core.
//!
//! Threads inherit their creator's affinity, so the main thread pins
//! itself to CPU 0 before a case spawns anything (the e1000's worker, the
//! pair-0 threads); pair q > 0's benchmark thread is moved afterwards (it
//! waits at the start barrier until then) and its virtio-net worker is
//! pinned by the device itself (`Net::new`'s affinity).

use std::io;
use std::os::unix::thread::JoinHandleExt;
use std::thread::JoinHandle;

use crate::sys::cvt;

fn cpu_set(cpus: impl IntoIterator<Item = usize>) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in cpus {
        // SAFETY: CPU_SET ignores CPUs past the set's capacity (the libc
        // crate's version checks the index), `set` is a live local.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    set
}

/// Host CPUs online. Not `available_parallelism`: that follows the
/// caller's affinity, so once a pinned case had pinned the main thread to
/// CPU 0 it said 1, the "unpin" after the case kept the thread on CPU 0
/// and every later case (pinned pairs too: `q % 1`) ran on one core.
pub fn ncpus() -> usize {
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
}

/// Pins the calling thread to `cpus`.
pub fn pin_self(cpus: impl IntoIterator<Item = usize>) -> io::Result<()> {
    let set = cpu_set(cpus);
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: pid 0 is the calling thread; `set` is a live cpu_set_t of
    // the size passed, only read.
    cvt(unsafe { libc::sched_setaffinity(0, size, &set) }).map(drop)
}

/// The CPU pair `q`'s threads run on when pinned.
pub fn cpu_of_pair(q: usize) -> usize {
    q % ncpus()
}

/// Moves thread `h` to the CPU of pair `q`.
pub fn pin_thread<T>(h: &JoinHandle<T>, q: usize) -> io::Result<()> {
    let set = cpu_set([cpu_of_pair(q)]);
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: the pthread_t is a live thread (its JoinHandle is borrowed,
    // so it has not been joined); `set` is a live cpu_set_t, only read.
    let rc = unsafe { libc::pthread_setaffinity_np(h.as_pthread_t(), size, &set) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ncpus_ignores_the_callers_affinity() {
        let all = ncpus();
        // A thread of its own, so the harness's threads keep their mask.
        std::thread::spawn(move || {
            pin_self([0]).unwrap();
            assert_eq!(ncpus(), all);
            assert_eq!(cpu_of_pair(1), 1 % all);
        })
        .join()
        .unwrap();
    }
}
