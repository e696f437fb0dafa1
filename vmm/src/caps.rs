//! Per-thread capabilities (`capset` acts on the calling thread only):
//! vCPU and worker threads drop every capability; the control thread keeps
//! only what teardown needs.

use std::io;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

/// CAP_NET_ADMIN: teardown removes links, addresses and the nft table.
pub const CAP_NET_ADMIN: u32 = 12;

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> io::Result<[Data; 2]> {
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: both pointers are live, writable and of the v3 layout the
    // header announces.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data)
}

fn capset(data: &[Data; 2]) -> io::Result<()> {
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    // SAFETY: both pointers are live and of the v3 layout the header
    // announces; pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Keeps, on the calling thread, only those of `keep` it holds now
/// (effective and permitted; inheritable and ambient cleared). An empty
/// `keep` drops everything.
pub fn keep_only(keep: &[u32]) -> io::Result<()> {
    let now = capget()?;
    let mut want = [Data::default(); 2];
    for &cap in keep {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        if let (Some(w), Some(n)) = (want.get_mut(word), now.get(word)) {
            if n.permitted & bit != 0 {
                w.permitted |= bit;
                w.effective |= bit;
            }
        }
    }
    capset(&want)
}

/// The calling thread's effective set, as /proc's CapEff shows it.
pub fn effective() -> io::Result<u64> {
    let d = capget()?;
    Ok(u64::from(d[0].effective) | (u64::from(d[1].effective) << 32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_on_a_thread_leaves_the_others() {
        let before = effective().unwrap();
        let after = std::thread::spawn(|| {
            keep_only(&[]).unwrap();
            effective().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(after, 0);
        assert_eq!(effective().unwrap(), before);
    }

    #[test]
    fn keeping_a_capability_the_thread_lacks_gives_nothing() {
        let kept = std::thread::spawn(|| {
            keep_only(&[]).unwrap();
            keep_only(&[CAP_NET_ADMIN]).unwrap();
            effective().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(kept, 0);
    }
}
