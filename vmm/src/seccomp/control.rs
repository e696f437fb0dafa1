//! The control thread (main): its event loop (exit event, stop signals,
//! the pod networks' DHCPv4/DHCPv6/RA sockets and timer, INTx resample
//! events, console input and the console socket, API actions), the
//! in-place VM reset (KVM ioctls, guest memory, reloading the kernel
//! files), stopping and joining the other threads, and the teardown of the
//! pod networks (netlink, `nft` through fork/exec/wait: the child's own
//! calls come from `child.rs`).

use super::base;
use super::Rules;

pub(super) fn rules() -> Rules {
    base::common()
        .merge(base::spawn_threads())
        .merge(base::event_loop())
        .allow(&[
            // KVM and tap ioctls (VM reset, teardown), terminal modes.
            libc::SYS_ioctl,
            // DHCP, RA, netlink, the console and API sockets.
            libc::SYS_socket,
            libc::SYS_bind,
            libc::SYS_connect,
            libc::SYS_listen,
            libc::SYS_accept4,
            libc::SYS_sendto,
            libc::SYS_sendmsg,
            libc::SYS_recvfrom,
            libc::SYS_recvmsg,
            libc::SYS_setsockopt,
            libc::SYS_getsockopt,
            libc::SYS_getsockname,
            libc::SYS_shutdown,
            // Timers (RA schedule, SIGTERM grace), the signalfd, stdin.
            libc::SYS_timerfd_create,
            libc::SYS_timerfd_settime,
            libc::SYS_timerfd_gettime,
            libc::SYS_signalfd4,
            libc::SYS_poll,
            libc::SYS_ppoll,
            libc::SYS_readv,
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            // Files: the kernel and initramfs on a VM reset, sysfs/procfs
            // reads and sysctl restores in teardown, stale socket files.
            libc::SYS_openat,
            libc::SYS_newfstatat,
            libc::SYS_fstat,
            libc::SYS_statx,
            libc::SYS_lseek,
            libc::SYS_getdents64,
            libc::SYS_readlink,
            libc::SYS_readlinkat,
            libc::SYS_unlink,
            libc::SYS_unlinkat,
            libc::SYS_dup2,
            libc::SYS_dup3,
            libc::SYS_pipe2,
            libc::SYS_close_range,
            libc::SYS_fsync,
            // Running `nft` (std's Command: clone3/vfork, exec in the
            // child, wait for it) and the vCPU kick.
            libc::SYS_vfork,
            libc::SYS_execve,
            libc::SYS_wait4,
            libc::SYS_waitid,
            libc::SYS_kill,
            libc::SYS_tgkill,
            libc::SYS_rt_sigaction,
            libc::SYS_sched_getaffinity,
            libc::SYS_getuid,
            libc::SYS_geteuid,
            libc::SYS_getgid,
            libc::SYS_getegid,
            libc::SYS_prlimit64,
            libc::SYS_sysinfo,
            libc::SYS_uname,
            // Snapshots and migration (vmm::migration): the snapshot
            // directory and memory file, and the pending-signal check
            // while a job blocks the event loop.
            libc::SYS_mkdir,
            libc::SYS_mkdirat,
            libc::SYS_ftruncate,
            libc::SYS_rt_sigpending,
        ])
}
