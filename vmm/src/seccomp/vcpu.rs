//! The vCPU threads: KVM_RUN and what the devices do inside a port or MMIO
//! exit — irqfd/eventfd writes, the serial console (into the console
//! writer's buffer), the e1000's transmit (`writev` to its tap inside the
//! TDT write), a NIC's activation (its workers start here: their calls are
//! merged in through `ThreadClass::spawns`) and reset (joining them).

use super::base;
use super::Rules;

pub(super) fn rules() -> Rules {
    base::common()
        .merge(base::spawn_threads())
        .merge(base::event_loop())
        .allow(&[
            // KVM_RUN, KVM_IRQFD/IOEVENTFD and MSI routing on activation,
            // TUNSETOFFLOAD when the guest negotiates offloads.
            libc::SYS_ioctl,
            // e1000 transmit to the tap (datagram backends too).
            libc::SYS_sendto,
            libc::SYS_sendmsg,
            // The kick signal between vCPUs (pause).
            libc::SYS_tgkill,
        ])
}
