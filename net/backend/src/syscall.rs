//! Small safe helpers for raw system calls, shared with the `net` crate
//! (its socket calls use the same conventions).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use libc::{c_int, c_void};

/// Maps a `-1` return to the thread's `errno`.
pub fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Maps a `-1` return of a call that returns a byte count to `errno`.
pub fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// The size of `T` as a socket length.
pub fn socklen_of<T>() -> libc::socklen_t {
    // Socket option and address structs are a few bytes long.
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// Runs `call` again while it fails with `EINTR`.
pub fn retry_eintr<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// setsockopt(2) at `SOL_SOCKET` with an `int` value.
pub fn set_socket_int_opt(fd: BorrowedFd<'_>, opt: c_int, value: c_int) -> io::Result<()> {
    set_opt(fd, libc::SOL_SOCKET, opt, &value)
}

/// setsockopt(2) `(level, name)` to a plain-old-data `value` (an int or a
/// C struct).
pub fn set_opt<T: Copy>(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: &T,
) -> io::Result<()> {
    let ptr: *const c_void = (value as *const T).cast();
    // SAFETY: the kernel reads at most `size_of::<T>()` bytes through `ptr`,
    // which points to `value`, borrowed across the call.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, ptr, socklen_of::<T>()) }).map(drop)
}
