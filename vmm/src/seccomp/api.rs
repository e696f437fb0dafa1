//! The API and metrics threads and tiny_http's accept and connection
//! threads (started on the `api`/`metrics` thread after its filter, so they
//! inherit it): accept, read requests, write answers, wake the control
//! loop through the request eventfd.

use super::base;
use super::Rules;

pub(super) fn rules() -> Rules {
    base::common().merge(base::spawn_threads()).allow(&[
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_read,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_shutdown,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_setsockopt,
        libc::SYS_getsockopt,
        libc::SYS_fcntl,
        libc::SYS_ioctl,
        libc::SYS_poll,
        libc::SYS_ppoll,
        libc::SYS_dup,
    ])
}
