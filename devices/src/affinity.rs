//! Host CPU pinning, for every thread petrel pins (vCPUs, NIC workers).

use std::io;

/// Host CPUs a `cpu_set_t` can name: CPUs at or above this cannot be
/// pinned to.
pub const MAX_CPUS: usize = 8 * std::mem::size_of::<libc::cpu_set_t>();

/// Pins the calling thread to `cpus` (sched_setaffinity). An empty list
/// or a CPU at or above [`MAX_CPUS`] is refused with `InvalidInput`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    if cpus.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no host CPU to pin to",
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= MAX_CPUS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("host CPU {cpu} is out of range"),
            ));
        }
        // SAFETY: `cpu` is below the set's capacity (checked above) and
        // `set` is a live cpu_set_t.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of
    // the size passed and is only read.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_sets() {
        let e = pin_current_thread(&[]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = pin_current_thread(&[MAX_CPUS]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
