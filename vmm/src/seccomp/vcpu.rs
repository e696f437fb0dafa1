//! The vCPU threads: KVM_RUN and what the devices do inside a port or MMIO
//! exit — irqfd/eventfd writes, the serial console (into the console
//! writer's buffer), the e1000's transmit (`writev` to its tap inside the
//! TDT write; arming its interrupt moderation timer, `timerfd_settime`,
//! which comes with the e1000 worker's list), a NIC's activation (its
//! workers start here: their calls are merged in through
//! `ThreadClass::spawns`) and reset (joining them).

use super::base;
use super::Rules;

pub(super) fn rules() -> Rules {
    base::common()
        .merge(base::spawn_threads())
        .merge(base::event_loop())
        .allow(&[
            // Decided by the second vCPU filter, which fails them with
            // EACCES (see `opens_fail_program`).
            libc::SYS_open,
            libc::SYS_openat,
            // Seen on a masquerade boot: KVM_RUN; KVM_IRQFD and
            // KVM_SET_GSI_ROUTING (MSI-X vectors the guest programs);
            // TUNSETOFFLOAD (activation). VFIO_DEVICE_SET_IRQS for a
            // passthrough device's MSI/MSI-X. Not filtered by request yet.
            libc::SYS_ioctl,
            // e1000 transmit to the tap (datagram backends too).
            libc::SYS_sendto,
            libc::SYS_sendmsg,
            // The kick signal between vCPUs (pause).
            libc::SYS_tgkill,
            // A passthrough (VFIO) device's trapped config space and BAR
            // pages are read and written with pread/pwrite on its fd.
            libc::SYS_pread64,
            libc::SYS_pwrite64,
        ])
}
