//! Confining petrel: process-wide hardening at start ([`harden_process`]:
//! not dumpable, no core file, so guest RAM never lands on disk; the
//! SIGSYS reporter; close-on-exec on every inherited descriptor) and, per
//! thread after its setup, [`enter`]: drop the capabilities the class does
//! not need, then install its seccomp filter ([`crate::seccomp`]).
//!
//! | class | capabilities kept | filter |
//! | --- | --- | --- |
//! | control (main) | CAP_NET_ADMIN, if held (teardown of links and the nft table) | `seccomp/control.rs` + what it spawns |
//! | vCPU, NIC workers, api, console | none | their own |

use std::io;
use std::sync::OnceLock;

use crate::caps;
use crate::seccomp::{self, SeccompError, SeccompMode, ThreadClass};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot make the process non-dumpable")]
    Dumpable(#[source] io::Error),
    #[error("cannot set RLIMIT_CORE to 0")]
    CoreLimit(#[source] io::Error),
    #[error("cannot install the SIGSYS handler")]
    Sigsys(#[source] io::Error),
    #[error("cannot drop the {class} thread's capabilities")]
    Caps {
        class: ThreadClass,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
}

/// The `--seccomp` mode of this process, set once by [`harden_process`].
static MODE: OnceLock<SeccompMode> = OnceLock::new();

fn mode() -> SeccompMode {
    MODE.get().copied().unwrap_or_default()
}

/// Whether [`harden_process`] ran: the library used without a `Vmm` (unit
/// tests) confines nothing.
fn hardened() -> bool {
    MODE.get().is_some()
}

/// Process-wide hardening before guest RAM exists; records `mode` for
/// every later [`enter`] and hands the devices crate the worker hook.
pub fn harden_process(mode: SeccompMode) -> Result<(), SandboxError> {
    let _ = MODE.set(mode);
    // SAFETY: PR_SET_DUMPABLE takes an integer argument; no memory is
    // passed.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(SandboxError::Dumpable(io::Error::last_os_error()));
    }
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `zero` is a live rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(SandboxError::CoreLimit(io::Error::last_os_error()));
    }
    seccomp::sigsys::install_handler().map_err(SandboxError::Sigsys)?;
    fix_malloc_arenas();
    // Looked up once, before anything is confined.
    let _ = net::nft::nft_path();
    devices::sandbox::set_worker_sandbox(enter_worker);
    cloexec_inherited();
    Ok(())
}

/// Marks every descriptor but stdin/stdout/stderr close-on-exec: petrel's
/// own are (std, KVM, timerfds, epoll), but descriptors petrel inherited
/// (a `--tap-fd` is used, not inherited by children) and `dup`s are not.
pub fn cloexec_inherited() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on the
    // calling process's descriptors; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "close_range(CLOEXEC) failed");
    }
}

/// glibc's malloc counts the CPUs (opening /sys/devices/system/cpu/online)
/// the first time a thread needs a new arena past the eighth, which can be
/// a confined thread that may not open files; a fixed arena limit, set
/// before any filter, means it never counts. Eight per CPU is glibc's own
/// default limit.
fn fix_malloc_arenas() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let arenas = libc::c_int::try_from(cpus.saturating_mul(8)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt takes two integers; M_ARENA_MAX only sets a limit.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) } != 1 {
        tracing::debug!("mallopt(M_ARENA_MAX) failed");
    }
}

/// The capabilities a class keeps.
fn kept_caps(class: ThreadClass) -> &'static [u32] {
    match class {
        ThreadClass::Control => &[caps::CAP_NET_ADMIN],
        _ => &[],
    }
}

/// Confines the calling thread as `class`: capabilities, then its filter
/// (the capset must still pass).
pub fn enter(class: ThreadClass) -> Result<(), SandboxError> {
    if !hardened() {
        return Ok(());
    }
    caps::keep_only(kept_caps(class)).map_err(|source| SandboxError::Caps { class, source })?;
    seccomp::install(class, mode())?;
    tracing::debug!(%class, seccomp = ?mode(), "thread sandboxed");
    test_panic();
    Ok(())
}

/// The devices crate's hook, run on each worker thread after its setup.
fn enter_worker(kind: devices::sandbox::WorkerKind) -> io::Result<()> {
    let class = match kind {
        devices::sandbox::WorkerKind::VirtioNetQueue => ThreadClass::VirtioNetQueue,
        devices::sandbox::WorkerKind::E1000Rx => ThreadClass::E1000Rx,
    };
    enter(class).map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        io::Error::other(msg)
    })
}

/// Debug builds only, for the real-guest tests: once sandboxed, the
/// thread named by `PETREL_TEST_DENIED_SYSCALL` makes a call no filter
/// allows (`setns`), and the one named by `PETREL_TEST_PANIC` panics.
/// Release builds have no such triggers.
#[cfg(debug_assertions)]
#[allow(clippy::panic, reason = "the test trigger's whole purpose")]
fn test_panic() {
    let me = std::thread::current().name().map(str::to_string);
    let named = |var: &str| {
        std::env::var(var)
            .ok()
            .is_some_and(|v| Some(&v) == me.as_ref())
    };
    if named("PETREL_TEST_DENIED_SYSCALL") {
        // SAFETY: setns on an invalid descriptor changes nothing; it fails
        // with EBADF where the filter lets it through.
        unsafe { libc::syscall(libc::SYS_setns, -1, 0) };
    }
    if named("PETREL_TEST_PANIC") {
        panic!("PETREL_TEST_PANIC={}", me.unwrap_or_default());
    }
}

#[cfg(not(debug_assertions))]
fn test_panic() {}
