//! seccomp filters, one allow-list per thread class (Cloud Hypervisor's
//! `seccomp_filters.rs` shape, built with `seccompiler`).
//!
//! Each thread installs its class's filter itself, after its setup and
//! before its loop ([`crate::sandbox::enter`]); `PR_SET_NO_NEW_PRIVS` is
//! set by the install. A call outside the list is, per `--seccomp`:
//! `enforce` (default) a SIGSYS whose handler ([`sigsys`]) writes the
//! thread, the call's number and name to stderr and exits 1; `log` allowed
//! and logged by the kernel (`dmesg`: `audit: type=1326 … syscall=N`);
//! `off` no filter.
//!
//! A filter is inherited by every thread (and process) its thread spawns,
//! and the kernel then runs both: a spawned thread can do only what both
//! lists allow. So a class's list is its own calls **plus the lists of
//! every class it spawns** ([`ThreadClass::spawns`]): the control thread
//! starts the vCPUs (and forks `nft`), and a vCPU thread starts the NIC
//! queue workers when the guest activates a NIC.
//!
//! To extend:
//! - a feature on an existing thread: add its calls to that class's module
//!   (`control.rs`, `vcpu.rs`, `worker.rs`, `api.rs`, `console.rs`,
//!   `child.rs`), with a comment saying which code makes them;
//! - a new thread class: a module with its `rules()`, a [`ThreadClass`]
//!   variant, and the variant added to the `spawns` of the class whose
//!   thread starts it; the new thread calls `sandbox::enter(class)` after
//!   its setup;
//! - a child process (like `nft`): it runs under its parent thread's
//!   filter, so list what it needs after `fork` (dynamic loader included)
//!   in a class spawned by that thread ([`ThreadClass::NftChild`]).
//!
//! `--seccomp log` plus `dmesg`, or `strace -f`, shows what a new path
//! needs; the real-guest tests run with the default `enforce`.

mod api;
mod base;
mod child;
mod console;
mod control;
mod names;
pub mod sigsys;
mod vcpu;
mod worker;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

/// What `--seccomp` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SeccompMode {
    /// A call outside the thread's list stops petrel (exit 1), naming it.
    #[default]
    Enforce,
    /// Calls outside the list are allowed and logged by the kernel.
    Log,
    /// No filters.
    Off,
}

/// The kinds of threads petrel runs, each with its own allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadClass {
    /// The main thread: the control loop (signals, DHCP/RA, API actions,
    /// console socket, VM reset) and teardown.
    Control,
    /// A vCPU thread (`vcpu<i>`): KVM_RUN and the devices' exits.
    Vcpu,
    /// A virtio-net queue pair worker (`<nic>-q<i>`).
    VirtioNetQueue,
    /// An e1000 receive worker (`<nic>-rx`).
    E1000Rx,
    /// The API and metrics threads (`api`, `metrics`) and tiny_http's
    /// accept and connection threads they start.
    Api,
    /// The console writer (`console`): guest output to stdout or a file.
    Console,
    /// `nft`, forked from the control thread: not a thread of petrel's,
    /// but it runs under the control thread's filter.
    NftChild,
}

impl ThreadClass {
    /// The classes whose threads (or processes) this class's threads
    /// start: their calls must pass this class's filter too.
    pub fn spawns(self) -> &'static [ThreadClass] {
        match self {
            ThreadClass::Control => &[ThreadClass::Vcpu, ThreadClass::NftChild],
            ThreadClass::Vcpu => &[ThreadClass::VirtioNetQueue, ThreadClass::E1000Rx],
            _ => &[],
        }
    }

    /// The calls this class's own code makes.
    fn own_rules(self) -> Rules {
        match self {
            ThreadClass::Control => control::rules(),
            ThreadClass::Vcpu => vcpu::rules(),
            ThreadClass::VirtioNetQueue => worker::virtio_net_queue(),
            ThreadClass::E1000Rx => worker::e1000_rx(),
            ThreadClass::Api => api::rules(),
            ThreadClass::Console => console::rules(),
            ThreadClass::NftChild => child::nft(),
        }
    }

    /// The class's full list: its own calls and those of what it spawns.
    pub fn rules(self) -> Rules {
        self.spawns()
            .iter()
            .fold(self.own_rules(), |acc, c| acc.merge(c.rules()))
    }

    pub fn name(self) -> &'static str {
        match self {
            ThreadClass::Control => "control",
            ThreadClass::Vcpu => "vcpu",
            ThreadClass::VirtioNetQueue => "virtio-net queue worker",
            ThreadClass::E1000Rx => "e1000 receive worker",
            ThreadClass::Api => "api",
            ThreadClass::Console => "console",
            ThreadClass::NftChild => "nft child",
        }
    }
}

impl fmt::Display for ThreadClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot build the {class} seccomp filter")]
    Build {
        class: ThreadClass,
        #[source]
        source: seccompiler::BackendError,
    },
    #[error("cannot compile the {class} seccomp filter")]
    Compile {
        class: ThreadClass,
        #[source]
        source: seccompiler::BackendError,
    },
    #[error("cannot install the {class} seccomp filter")]
    Install {
        class: ThreadClass,
        #[source]
        source: seccompiler::Error,
    },
}

/// An allow-list: system call number → conditions (none: any arguments).
#[derive(Debug, Clone, Default)]
pub struct Rules(BTreeMap<i64, Vec<SeccompRule>>);

impl Rules {
    /// Allows `calls` with any arguments.
    pub fn allow(mut self, calls: &[i64]) -> Self {
        for &nr in calls {
            self.0.insert(nr, Vec::new());
        }
        self
    }

    /// Allows `nr` only when one of `rules` matches its arguments (unless
    /// it is already allowed with any arguments).
    pub fn allow_if(mut self, nr: i64, rules: Vec<SeccompRule>) -> Self {
        self = self.merge(Rules(BTreeMap::from([(nr, rules)])));
        self
    }

    /// Everything either list allows.
    pub fn merge(mut self, other: Rules) -> Self {
        for (nr, rules) in other.0 {
            match self.0.get_mut(&nr) {
                // No conditions on either side: any arguments.
                Some(mine) if mine.is_empty() => {}
                Some(mine) if rules.is_empty() => mine.clear(),
                Some(mine) => mine.extend(rules),
                None => {
                    self.0.insert(nr, rules);
                }
            }
        }
        self
    }

    /// Whether `nr` is allowed in any form.
    pub fn allows(&self, nr: i64) -> bool {
        self.0.contains_key(&nr)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The BPF program of `class`'s filter for `mode` (`None` when off).
pub fn program(class: ThreadClass, mode: SeccompMode) -> Result<Option<BpfProgram>, SeccompError> {
    let mismatch = match mode {
        SeccompMode::Off => return Ok(None),
        SeccompMode::Enforce => SeccompAction::Trap,
        SeccompMode::Log => SeccompAction::Log,
    };
    let filter = SeccompFilter::new(
        class.rules().0,
        mismatch,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|source| SeccompError::Build { class, source })?;
    let prog: BpfProgram = filter
        .try_into()
        .map_err(|source| SeccompError::Compile { class, source })?;
    Ok(Some(prog))
}

/// The classes on the way to the first KVM_RUN: their programs are
/// compiled ahead ([`Precompile`]) instead of by the thread that enters.
const PRECOMPILED: [ThreadClass; 2] = [ThreadClass::Control, ThreadClass::Vcpu];

/// A compiled program of a [`PRECOMPILED`] class (by index there) and its
/// mode. A `OnceLock`, so a thread that enters while its program is still
/// being compiled waits for it instead of compiling it again.
type Slot = OnceLock<Option<(SeccompMode, BpfProgram)>>;
static COMPILED: [Slot; 2] = [OnceLock::new(), OnceLock::new()];

/// `class`'s program for `mode`: the precompiled one when there is one
/// (`None` in the slot: compiling failed, and compiling again gives the
/// error).
fn cached_program(
    class: ThreadClass,
    mode: SeccompMode,
) -> Result<Option<BpfProgram>, SeccompError> {
    let slot = PRECOMPILED
        .iter()
        .position(|c| *c == class)
        .and_then(|i| COMPILED.get(i));
    let Some(slot) = slot else {
        return program(class, mode);
    };
    let compiled = slot.get_or_init(|| program(class, mode).ok()?.map(|p| (mode, p)));
    match compiled {
        Some((m, prog)) if *m == mode => Ok(Some(prog.clone())),
        _ => program(class, mode),
    }
}

/// The [`PRECOMPILED`] programs being compiled on a `seccomp-compile`
/// thread while the VM is set up (it takes a few ms that would otherwise
/// sit between the set-up and the first KVM_RUN). The thread only
/// computes; [`Precompile::wait`] joins it before any filter goes on.
pub struct Precompile(Option<std::thread::JoinHandle<()>>);

impl Precompile {
    /// Starts compiling for `mode` (nothing to do when it is `Off`; if the
    /// thread cannot start, each thread compiles its own program).
    pub fn start(mode: SeccompMode) -> Self {
        if mode == SeccompMode::Off {
            return Self(None);
        }
        let compile = move || {
            for class in PRECOMPILED {
                let _ = cached_program(class, mode);
            }
        };
        let handle = std::thread::Builder::new()
            .name("seccomp-compile".into())
            .spawn(compile)
            .ok();
        Self(handle)
    }

    pub fn wait(self) {
        if let Some(h) = self.0 {
            let _ = h.join();
        }
    }
}

/// Installs `class`'s filter on the calling thread (with
/// `PR_SET_NO_NEW_PRIVS`).
pub fn install(class: ThreadClass, mode: SeccompMode) -> Result<(), SeccompError> {
    let Some(prog) = cached_program(class, mode)? else {
        return Ok(());
    };
    sigsys::set_thread_class(class);
    seccompiler::apply_filter(&prog).map_err(|source| SeccompError::Install { class, source })?;
    if class == ThreadClass::Vcpu {
        let deny =
            opens_fail_program().map_err(|source| SeccompError::Compile { class, source })?;
        seccompiler::apply_filter(&deny)
            .map_err(|source| SeccompError::Install { class, source })?;
    }
    Ok(())
}

/// A second filter for the vCPU threads: `open`/`openat` fail with EACCES
/// instead of stopping the VM. A vCPU opens no file of its own, but a
/// library path it runs rarely does (seen twice in CI, at a guest's
/// shutdown, and not yet traced to its caller); failing the call keeps
/// the thread without file access and the VM running. The class's own
/// list allows the two calls so that this filter's EACCES (which the
/// kernel ranks above ALLOW, below TRAP) decides them.
fn opens_fail_program() -> Result<BpfProgram, seccompiler::BackendError> {
    let rules = [libc::SYS_open, libc::SYS_openat]
        .into_iter()
        .map(|nr| (nr, Vec::new()))
        .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        TargetArch::x86_64,
    )?;
    filter.try_into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ThreadClass; 7] = [
        ThreadClass::Control,
        ThreadClass::Vcpu,
        ThreadClass::VirtioNetQueue,
        ThreadClass::E1000Rx,
        ThreadClass::Api,
        ThreadClass::Console,
        ThreadClass::NftChild,
    ];

    #[test]
    fn every_class_compiles_in_both_modes() {
        for class in ALL {
            for mode in [SeccompMode::Enforce, SeccompMode::Log] {
                let prog = program(class, mode).unwrap().unwrap();
                assert!(!prog.is_empty(), "{class}");
            }
            assert!(program(class, SeccompMode::Off).unwrap().is_none());
        }
    }

    #[test]
    fn a_precompiled_program_is_the_one_compiled_for_its_mode() {
        Precompile::start(SeccompMode::Enforce).wait();
        for class in PRECOMPILED {
            for mode in [SeccompMode::Enforce, SeccompMode::Log] {
                let cached = cached_program(class, mode).unwrap().unwrap();
                assert_eq!(
                    cached,
                    program(class, mode).unwrap().unwrap(),
                    "{class} {mode:?}"
                );
            }
            assert!(cached_program(class, SeccompMode::Off).unwrap().is_none());
        }
        let log = program(ThreadClass::Vcpu, SeccompMode::Log)
            .unwrap()
            .unwrap();
        let enforce = program(ThreadClass::Vcpu, SeccompMode::Enforce)
            .unwrap()
            .unwrap();
        assert_ne!(
            log, enforce,
            "the modes' programs must differ for this test to mean anything"
        );
    }

    #[test]
    fn a_class_allows_what_the_classes_it_spawns_need() {
        for class in ALL {
            let full = class.rules();
            for spawned in class.spawns() {
                for nr in spawned.rules().0.keys() {
                    assert!(full.allows(*nr), "{class} lacks {nr} that {spawned} needs");
                }
            }
        }
    }

    #[test]
    fn every_class_can_exit_and_report_a_denied_call() {
        for class in ALL {
            let r = class.rules();
            for nr in [libc::SYS_exit, libc::SYS_exit_group, libc::SYS_write] {
                assert!(r.allows(nr), "{class} cannot make call {nr}");
            }
        }
    }

    #[test]
    fn the_workers_cannot_spawn_processes_or_open_files() {
        for class in [ThreadClass::VirtioNetQueue, ThreadClass::E1000Rx] {
            let r = class.rules();
            for nr in [
                libc::SYS_execve,
                libc::SYS_fork,
                libc::SYS_openat,
                libc::SYS_socket,
                libc::SYS_ptrace,
                libc::SYS_ioctl,
            ] {
                assert!(!r.allows(nr), "{class} allows {nr}");
            }
        }
        assert!(!ThreadClass::Vcpu.rules().allows(libc::SYS_execve));
    }

    #[test]
    fn every_class_may_query_a_descriptor_it_closes() {
        // The console class has no other fcntl: only F_GETFD's one rule.
        let console = ThreadClass::Console.rules();
        assert_eq!(console.0[&libc::SYS_fcntl].len(), 1);
        // Classes with their event loop's fcntl keep any arguments.
        assert!(ThreadClass::Vcpu.rules().0[&libc::SYS_fcntl].is_empty());
    }

    #[test]
    fn merging_keeps_the_wider_rule() {
        use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition};
        let cond = SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            1,
        )
        .unwrap()])
        .unwrap();
        let narrow = Rules::default().allow_if(libc::SYS_ioctl, vec![cond.clone()]);
        assert_eq!(narrow.0[&libc::SYS_ioctl].len(), 1);
        let wide = narrow
            .clone()
            .merge(Rules::default().allow(&[libc::SYS_ioctl]));
        assert!(wide.0[&libc::SYS_ioctl].is_empty());
        let both = narrow.clone().merge(narrow);
        assert_eq!(both.0[&libc::SYS_ioctl].len(), 2);
    }

    #[test]
    fn syscall_names() {
        assert_eq!(names::syscall_name(0), Some("read"));
        assert_eq!(names::syscall_name(libc::SYS_execve), Some("execve"));
        assert_eq!(names::syscall_name(-1), None);
        assert_eq!(names::syscall_name(100_000), None);
    }
}
