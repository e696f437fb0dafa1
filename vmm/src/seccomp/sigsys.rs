//! The SIGSYS handler of `--seccomp enforce`: a call outside the thread's
//! filter traps here; the handler writes the thread, the class and the
//! call to stderr and exits 1 (Cloud Hypervisor reports the same way).
//!
//! It runs in signal context on a sandboxed thread, so it uses only
//! `write` and `exit_group` (allowed in every filter) on data prepared
//! before the filter went on: no allocation, no locks.

use std::cell::Cell;
use std::sync::Once;

use super::names::syscall_name;
use super::ThreadClass;

thread_local! {
    /// This thread's class and name, set when its filter is installed.
    /// Const-initialised without a destructor, so the handler may read it.
    static THREAD: Cell<(Option<ThreadClass>, [u8; 16])> = const { Cell::new((None, [0; 16])) };
}

/// `si_syscall`'s offset in a SIGSYS `siginfo_t` (x86_64: three ints, a
/// pad, `si_call_addr`, then the call number).
const SI_SYSCALL_OFFSET: usize = 24;
/// `si_code` of a seccomp SIGSYS.
const SYS_SECCOMP: i32 = 1;

/// Records the calling thread's class and name for the report.
pub(super) fn set_thread_class(class: ThreadClass) {
    let mut name = [0u8; 16];
    if let Some(n) = std::thread::current().name() {
        for (d, s) in name.iter_mut().zip(n.bytes().take(15)) {
            *d = s;
        }
    }
    THREAD.with(|t| t.set((Some(class), name)));
}

/// Installs the handler (once per process).
pub fn install_handler() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut res = Ok(());
    ONCE.call_once(|| {
        // SAFETY: sigaction is plain data; zeroed is a valid empty set of
        // flags and an empty mask.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = handler as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        // SAFETY: `sa` is initialised and names an async-signal-safe
        // handler; the old action is not wanted (null).
        let rc = unsafe { libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) };
        if rc != 0 {
            res = Err(std::io::Error::last_os_error());
        }
    });
    res
}

/// A fixed buffer the report is built in (no allocation in the handler).
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    fn push(&mut self, s: &[u8]) {
        for &b in s {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    fn push_num(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            if let Some(d) = digits.get_mut(i) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        self.push(digits.get(i..).unwrap_or(&[]));
    }
}

/// The report for call `nr` on a thread of `class` named `name`.
fn report(class: Option<ThreadClass>, name: &[u8; 16], nr: i64) -> Line {
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    line.push(b"petrel: seccomp: thread ");
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    line.push(name.get(..end).unwrap_or(&[]));
    line.push(b" (");
    line.push(
        class
            .map_or("not sandboxed yet: its parent's filter", ThreadClass::name)
            .as_bytes(),
    );
    line.push(b") made system call ");
    line.push(syscall_name(nr).unwrap_or("unknown").as_bytes());
    line.push(b" (");
    line.push_num(u64::try_from(nr).unwrap_or(0));
    line.push(b"), which its filter does not allow; stopping (exit 1)\n");
    line
}

extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    if sig != libc::SIGSYS || info.is_null() {
        return;
    }
    // SAFETY: the kernel passes a valid siginfo_t for SA_SIGINFO handlers.
    let code = unsafe { (*info).si_code };
    if code != SYS_SECCOMP {
        return;
    }
    // `si_syscall` (an int) at this offset of the 128-byte siginfo_t the
    // kernel passed, which it fills for a seccomp SIGSYS.
    let at = info
        .cast::<u8>()
        .wrapping_add(SI_SYSCALL_OFFSET)
        .cast::<i32>();
    // SAFETY: `at` points inside the live siginfo_t (see above).
    let nr = unsafe { std::ptr::read_unaligned(at) };
    let (class, name) = THREAD.with(Cell::get);
    let line = report(class, &name, i64::from(nr));
    let bytes = line.buf.get(..line.len).unwrap_or(&[]);
    // SAFETY: writes a live buffer to stderr; write is async-signal-safe.
    unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
    // SAFETY: _exit is async-signal-safe and ends the process.
    unsafe { libc::_exit(1) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_thread_class_and_call() {
        let mut name = [0u8; 16];
        name[..5].copy_from_slice(b"vcpu0");
        let line = report(Some(ThreadClass::Vcpu), &name, libc::SYS_execve);
        let text = std::str::from_utf8(&line.buf[..line.len]).unwrap();
        assert_eq!(
            text,
            "petrel: seccomp: thread vcpu0 (vcpu) made system call execve (59), which its filter does not allow; stopping (exit 1)\n"
        );
        let line = report(None, &[0; 16], 9999);
        let text = std::str::from_utf8(&line.buf[..line.len]).unwrap();
        assert!(
            text.contains(
                "(not sandboxed yet: its parent's filter) made system call unknown (9999)"
            ),
            "{text}"
        );
    }
}
