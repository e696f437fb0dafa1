//! Opening each NIC's backend as its host plan says: taps handed over or
//! opened by name, a pod binding petrel plumbs, a macvtap link. Nothing is
//! decided here; every choice was made by the host plan.

mod macvtap;
mod passt;
mod pod;
mod tap;

use net_backend::FrameBackend;

use crate::host::{HostBackend, HostNic};
use crate::plan::NicPlan;
use net::PodNetService;

/// MTU offered to the guest when the backend brings none (the pod bindings
/// bring the pod interface's).
pub const DEFAULT_MTU: u16 = 1500;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("interface {nic}: cannot open tap {tap}")]
    Tap {
        nic: String,
        tap: String,
        #[source]
        source: net_backend::TapError,
    },
    #[error("interface {nic}: macvtap {iface}")]
    Macvtap {
        nic: String,
        iface: String,
        #[source]
        source: net_backend::macvtap::MacvtapError,
    },
    #[error("interface {nic}: cannot give macvtap {iface} the spec's MAC")]
    LinkMac {
        nic: String,
        iface: String,
        #[source]
        source: net::netlink::NetlinkError,
    },
    #[error("passt")]
    Passt(#[from] net::passt::PasstError),
    #[error("pod network")]
    PodNet(#[from] crate::pod_net::PodNetError),
    #[error(
        "interface {nic}: the host plan gives the guest MAC {planned}, but the pod binding \
         serves {bound}; the pod interface's MAC changed after the host plan read it"
    )]
    GuestMac {
        nic: String,
        planned: net_backend::MacAddr,
        bound: net_backend::MacAddr,
    },
    #[error("interface {nic}: its host plan has no frame backend ({what})")]
    NotFrames { nic: String, what: &'static str },
}

/// A NIC's opened backend: one frame backend per queue pair, the MTU the
/// guest gets, and the pod binding or passt process to keep alive while
/// the guest runs.
pub struct Opened {
    pub queues: Vec<Box<dyn FrameBackend>>,
    pub mtu: u16,
    pub pod: Option<PodNetService>,
    pub passt: Option<net::passt::Passt>,
}

impl Opened {
    fn plain(queues: Vec<Box<dyn FrameBackend>>) -> Self {
        Opened {
            queues,
            mtu: DEFAULT_MTU,
            pod: None,
            passt: None,
        }
    }
}

/// Opens `host`'s backend for `nic` of VM `vm_name`.
pub fn open(vm_name: &str, nic: &NicPlan, host: &HostNic) -> Result<Opened, BackendError> {
    match &host.backend {
        HostBackend::TapFds { fds } => Ok(Opened::plain(tap::adopt(nic, fds)?)),
        HostBackend::Tap { name } => Ok(Opened::plain(tap::open_named(nic, name)?)),
        HostBackend::Pod(pod) => pod::bind(vm_name, nic, host, pod),
        HostBackend::Passt(plan) => passt::start(nic, plan),
        HostBackend::Macvtap {
            iface,
            set_link_mac,
        } => Ok(Opened::plain(macvtap::open(
            nic,
            iface,
            set_link_mac.then_some(host.guest_mac.0),
        )?)),
        HostBackend::Vfio { .. } => Err(BackendError::NotFrames {
            nic: nic.name.clone(),
            what: "an SR-IOV VF is passed through, not opened",
        }),
    }
}

fn boxed<T: FrameBackend + 'static>(v: Vec<T>) -> Vec<Box<dyn FrameBackend>> {
    v.into_iter()
        .map(|t| Box::new(t) as Box<dyn FrameBackend>)
        .collect()
}
