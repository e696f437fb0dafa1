//! Calls every petrel thread makes whatever its job: memory (the
//! allocator), locks and condvars, signals, time, logging to stderr and
//! thread exit. Classes build on [`common`]; [`spawn_threads`] is for the
//! classes that start threads.

use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

use super::Rules;

/// The calls of every thread.
pub(super) fn common() -> Rules {
    let rules = Rules::default().allow(&[
        // The allocator and thread stacks.
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        // Mutexes, condvars, parking, joins.
        libc::SYS_futex,
        libc::SYS_sched_yield,
        // Logging (tracing to stderr) and the SIGSYS report.
        libc::SYS_write,
        libc::SYS_writev,
        // Signals: the vCPU kick, blocked stop signals, the SIGSYS handler.
        libc::SYS_rt_sigreturn,
        libc::SYS_rt_sigprocmask,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        // Time (the vDSO falls back to these) and sleeps.
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        // Thread identity (tracing's thread names, std's thread ids).
        libc::SYS_gettid,
        libc::SYS_getpid,
        libc::SYS_getrandom,
        // Closing descriptors it owns, and ending.
        libc::SYS_close,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ]);
    // Debug builds of std check each descriptor an `OwnedFd` closes with
    // fcntl(F_GETFD) first (its I/O-safety assertion): a thread that drops
    // a file (the console writer at exit) needs that one query, nothing else.
    match fd_flags_query() {
        Some(rule) => rules.allow_if(libc::SYS_fcntl, vec![rule]),
        None => rules.allow(&[libc::SYS_fcntl]),
    }
}

/// fcntl(_, F_GETFD): reads the close-on-exec flag, changes nothing.
fn fd_flags_query() -> Option<SeccompRule> {
    let cmd = SeccompCondition::new(
        1,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::F_GETFD as u64,
    )
    .ok()?;
    SeccompRule::new(vec![cmd]).ok()
}

/// What starting (and naming, pinning) a thread takes, on the starting
/// side and on the new thread before it installs its own filter.
pub(super) fn spawn_threads() -> Rules {
    Rules::default().allow(&[
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_prctl,
        libc::SYS_sched_getaffinity,
        libc::SYS_sched_setaffinity,
        // Installing the new thread's filter and dropping its capabilities.
        libc::SYS_seccomp,
        libc::SYS_capget,
        libc::SYS_capset,
    ])
}

/// Event loops (event-manager over epoll) and eventfds.
pub(super) fn event_loop() -> Rules {
    Rules::default().allow(&[
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_eventfd2,
        libc::SYS_read,
        libc::SYS_dup,
        libc::SYS_fcntl,
    ])
}
