//! vCPU ↔ host CPU placement. vCPU i is pinned to the i-th CPU the process
//! may run on (its cpuset in a pod), wrapping around; NIC queue pair i's
//! worker gets the same CPU, so a queue's backend work, its interrupt and
//! the vCPU the guest steers it to share a cache.

use std::io;

/// The host CPUs this process may use (sched_getaffinity), in order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed; pid 0 is self.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut cpus = Vec::new();
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: `cpu` is below CPU_SETSIZE and `set` is initialised.
        if unsafe { libc::CPU_ISSET(cpu, &set) } {
            cpus.push(cpu);
        }
    }
    Ok(cpus)
}

/// Host CPU for vCPU `vcpu` given the allowed set.
pub fn cpu_for_vcpu(allowed: &[usize], vcpu: usize) -> Option<usize> {
    (!allowed.is_empty()).then(|| allowed[vcpu % allowed.len()])
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    devices::pin_current_thread(&[cpu])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_around_the_allowed_set() {
        assert_eq!(cpu_for_vcpu(&[2, 5], 0), Some(2));
        assert_eq!(cpu_for_vcpu(&[2, 5], 1), Some(5));
        assert_eq!(cpu_for_vcpu(&[2, 5], 2), Some(2));
        assert_eq!(cpu_for_vcpu(&[], 0), None);
        assert!(!allowed_cpus().unwrap().is_empty());
    }
}
