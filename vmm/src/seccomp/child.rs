//! Child processes of the control thread. A forked child keeps its
//! parent thread's filter through `execve`, so what it needs is listed
//! here and merged into the control thread's list.

use super::base;
use super::Rules;

/// `nft -j -f -` (Debian's nftables, dynamically linked): the child side
/// of std's spawn (signal mask and dispositions reset, descriptors set up,
/// execve), the dynamic loader, libnftables' netlink transaction, and
/// reading its JSON from stdin.
pub(super) fn nft() -> Rules {
    base::common().allow(&[
        libc::SYS_execve,
        libc::SYS_rt_sigaction,
        libc::SYS_dup2,
        libc::SYS_dup3,
        libc::SYS_fcntl,
        libc::SYS_close_range,
        libc::SYS_arch_prctl,
        libc::SYS_set_tid_address,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_prlimit64,
        libc::SYS_access,
        libc::SYS_faccessat,
        libc::SYS_faccessat2,
        libc::SYS_openat,
        libc::SYS_read,
        libc::SYS_pread64,
        libc::SYS_newfstatat,
        libc::SYS_fstat,
        libc::SYS_statx,
        libc::SYS_lseek,
        libc::SYS_readlink,
        libc::SYS_getdents64,
        libc::SYS_ioctl,
        libc::SYS_uname,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_socket,
        libc::SYS_bind,
        libc::SYS_getsockname,
        libc::SYS_setsockopt,
        libc::SYS_getsockopt,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_select,
        libc::SYS_pselect6,
        libc::SYS_poll,
        libc::SYS_ppoll,
    ])
}
