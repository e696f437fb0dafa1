//! NICs from the plan onto the PCI bus: open each NIC's backend, build the
//! device model behind the virtio-pci transport, place its BARs, and wire
//! its queue kicks (ioeventfd) and interrupts (MSI-X → irqfd) into KVM.

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use devices::e1000::E1000;
use devices::pci::{BarAllocator, PciBarRegion, PciBus, PciDevice};
use devices::virtio::net::Net;
use devices::virtio::transport::{VirtioPciDevice, BAR0_SIZE};
use devices::Bus;
use kvm_ioctls::{IoEventAddress, NoDatamatch};
use net::{FrameBackend, Tap};
use tracing::info;

use crate::intx::{KvmIntx, INTX_FIRST_GSI, INTX_LAST_GSI};
use crate::irq::IrqError;
use crate::msi::KvmMsiVectors;
use crate::plan::{Backend, NetworkPlan, NicModel, NicPlan};
use crate::vm::Vm;

/// MTU offered to the guest until bindings bring the pod's.
const DEFAULT_MTU: u16 = 1500;

#[derive(Debug, thiserror::Error)]
pub enum NicError {
    #[error("interface {nic}: {what} is not implemented yet")]
    Unsupported { nic: String, what: String },
    #[error("interface {nic}: cannot open tap {tap}")]
    Tap {
        nic: String,
        tap: String,
        #[source]
        source: net::TapError,
    },
    #[error("interface {nic}: cannot create the device")]
    Device {
        nic: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("interface {nic}: macvtap")]
    Macvtap {
        nic: String,
        #[source]
        source: net::macvtap::MacvtapError,
    },
    #[error("interface {nic}: netlink")]
    Netlink {
        nic: String,
        #[source]
        source: net::netlink::NetlinkError,
    },
    #[error("pod network")]
    PodNet(#[from] crate::pod_net::PodNetError),
    #[error("SR-IOV: cannot read the pod's downward-API files")]
    PodInfo(#[source] net::sriov::PodInfoError),
    #[error("SR-IOV: {0}")]
    Sriov(net::sriov::SriovErrors),
    #[error("interface {nic}: SR-IOV VF {addr}")]
    Vfio {
        nic: String,
        addr: String,
        #[source]
        source: crate::vfio::VfioAttachError,
    },
    #[error("interface {nic}: {got} tap descriptors given, it has {want} queue pairs (one descriptor each)")]
    TapFdCount { nic: String, got: usize, want: u16 },
    #[error("interface {nic}: descriptor {fd} is not open in petrel")]
    TapFdClosed { nic: String, fd: i32 },
    #[error("interface {nic}: no room for its BAR in the PCI window")]
    NoBarSpace { nic: String },
    #[error("interface {nic}: no free IOAPIC pin for INTx (petrel has {count})")]
    NoIntx { nic: String, count: u32 },
    #[error("interface {nic}: model e1000 has one queue; networkInterfaceMultiqueue applies to virtio only")]
    Multiqueue { nic: String },
    #[error("interface {nic}: MSI-X vectors")]
    Msi {
        nic: String,
        #[source]
        source: IrqError,
    },
    #[error("interface {nic}: KVM_IOEVENTFD at {addr:#x} failed")]
    IoEvent {
        nic: String,
        addr: u64,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("interface {nic}: PCI address {addr} (petrel has one PCI bus, function 0 only)")]
    PciAddress { nic: String, addr: String },
    #[error("interface {nic}: cannot place it on the bus")]
    Bus {
        nic: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The PCI side of the machine: root bus (with the 0xcf8 config ports on
/// the port-I/O bus), the BAR windows, and the INTx lines handed out.
pub struct PciSetup {
    pub bus: Arc<Mutex<PciBus>>,
    alloc: BarAllocator,
    io_alloc: BarAllocator,
    next_intx_gsi: u32,
    /// INTx lines whose resample events the control loop serves.
    pub intx: Vec<Arc<KvmIntx>>,
    /// MP table entries for those lines.
    pub mp_intx: Vec<arch::PciIntx>,
    /// Pod bindings set up for NICs: DHCP servers and undo guards.
    pub pod: Vec<crate::pod_net::PodBinding>,
    /// VFIO container and BAR mappings of passed-through VFs.
    pub vfio: crate::vfio::VfioState,
}

/// Port-I/O window for I/O BARs (above the legacy ISA ports).
const PCI_IO_START: u64 = 0xc000;
const PCI_IO_SIZE: u64 = 0x4000;

impl PciSetup {
    pub fn new(pio: &mut Bus) -> Result<Self, devices::BusError> {
        let bus = Arc::new(Mutex::new(PciBus::new()));
        pio.insert(
            Arc::new(Mutex::new(devices::pci::PciConfigIo::new(bus.clone()))),
            devices::pci::PCI_CONFIG_IO_BASE,
            devices::pci::PCI_CONFIG_IO_LEN,
        )?;
        Ok(Self {
            bus,
            alloc: BarAllocator::new(
                arch::layout::PCI_MMIO32_START,
                arch::layout::PCI_MMIO32_SIZE,
            ),
            io_alloc: BarAllocator::new(PCI_IO_START, PCI_IO_SIZE),
            next_intx_gsi: INTX_FIRST_GSI,
            intx: Vec::new(),
            mp_intx: Vec::new(),
            pod: Vec::new(),
            vfio: crate::vfio::VfioState::default(),
        })
    }
}

/// Adopts descriptors passed by the parent (`--tap-fd NIC=FD,...`): they
/// must be taps opened with IFF_NO_PI|IFF_VNET_HDR, one per queue pair.
fn adopt_fds(nic: &NicPlan, fds: &[i32]) -> Result<Vec<Box<dyn FrameBackend>>, NicError> {
    if fds.len() != usize::from(nic.queue_pairs) {
        return Err(NicError::TapFdCount {
            nic: nic.name.clone(),
            got: fds.len(),
            want: nic.queue_pairs,
        });
    }
    let mut taps: Vec<Box<dyn FrameBackend>> = Vec::with_capacity(fds.len());
    for &fd in fds {
        // A descriptor number must be open in this process before it may be
        // owned: F_GETFD fails with EBADF otherwise.
        // SAFETY: fcntl(F_GETFD) only queries the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(NicError::TapFdClosed {
                nic: nic.name.clone(),
                fd,
            });
        }
        // SAFETY: the descriptor is open (checked above) and was handed to
        // petrel for this NIC alone; nothing else in the process owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let tap = Tap::from_fd(owned).map_err(|source| NicError::Tap {
            nic: nic.name.clone(),
            tap: format!("fd {fd}"),
            source,
        })?;
        taps.push(Box::new(tap));
    }
    Ok(taps)
}

/// A NIC's opened backend: one frame backend per queue pair, the MTU and
/// MAC the guest must use.
struct Backends {
    queues: Vec<Box<dyn FrameBackend>>,
    mtu: u16,
    mac: [u8; 6],
}

fn open_backends(
    pci: &mut PciSetup,
    vm_name: &str,
    nic: &NicPlan,
    tap_fds: &[(String, Vec<i32>)],
) -> Result<Backends, NicError> {
    let plain = |queues| Backends {
        queues,
        mtu: DEFAULT_MTU,
        mac: nic.mac.0,
    };
    if let Some((_, fds)) = tap_fds.iter().find(|(n, _)| *n == nic.name) {
        return Ok(plain(adopt_fds(nic, fds)?));
    }
    if crate::pod_net::is_pod_binding(nic) {
        let bound = crate::pod_net::bind(vm_name, nic)?;
        let queues = bound
            .taps
            .into_iter()
            .map(|t| Box::new(t) as Box<dyn FrameBackend>)
            .collect();
        pci.pod.push(bound.state);
        return Ok(Backends {
            queues,
            mtu: bound.mtu,
            mac: nic.mac.0,
        });
    }
    if let Backend::Macvtap { .. } = &nic.backend {
        let iface = crate::pod_net::pod_iface(nic).unwrap_or_default();
        return open_macvtap(nic, &iface);
    }
    Ok(plain(open_named_taps(nic)?))
}

/// KubeVirt's macvtap binding: the guest uses the macvtap link's MAC unless
/// the spec gives one, in which case the link takes the spec's MAC (a
/// macvtap only receives frames for its own address).
fn open_macvtap(nic: &NicPlan, iface: &str) -> Result<Backends, NicError> {
    let mverr = |source| NicError::Macvtap {
        nic: nic.name.clone(),
        source,
    };
    let mac = if nic.mac_from_spec {
        let mut nl = net::netlink::Netlink::new().map_err(|source| NicError::Netlink {
            nic: nic.name.clone(),
            source,
        })?;
        nl.set_mac(iface, nic.mac.0)
            .map_err(|source| NicError::Netlink {
                nic: nic.name.clone(),
                source,
            })?;
        nic.mac.0
    } else {
        net::macvtap::interface_mac(iface).map_err(mverr)?
    };
    let taps = net::macvtap::open(iface, nic.queue_pairs).map_err(mverr)?;
    info!(nic = %nic.name, macvtap = iface, queues = taps.len(), "macvtap opened");
    Ok(Backends {
        queues: taps
            .into_iter()
            .map(|t| Box::new(t) as Box<dyn FrameBackend>)
            .collect(),
        mtu: DEFAULT_MTU,
        mac,
    })
}

fn open_named_taps(nic: &NicPlan) -> Result<Vec<Box<dyn FrameBackend>>, NicError> {
    match &nic.backend {
        Backend::Tap { name } => {
            let taps = Tap::open_named(name, nic.queue_pairs).map_err(|source| NicError::Tap {
                nic: nic.name.clone(),
                tap: name.clone(),
                source,
            })?;
            Ok(taps
                .into_iter()
                .map(|t| Box::new(t) as Box<dyn FrameBackend>)
                .collect())
        }
        other => Err(NicError::Unsupported {
            nic: nic.name.clone(),
            what: format!("backend {other:?}"),
        }),
    }
}

/// Finds the VF of every `sriov` NIC at once (two NICs on one device-plugin
/// pool must get different VFs), from the pod's env and the downward-API
/// files in `pod_info`.
fn resolve_vfs(
    nics: &[NicPlan],
    pod_info: &Path,
) -> Result<BTreeMap<String, net::sriov::VfDevice>, NicError> {
    let sriov: Vec<&NicPlan> = nics
        .iter()
        .filter(|n| matches!(n.backend, Backend::Vfio { .. }))
        .collect();
    if sriov.is_empty() {
        return Ok(BTreeMap::new());
    }
    let info = net::sriov::PodInfo::from_process(pod_info).map_err(NicError::PodInfo)?;
    let reqs: Vec<net::sriov::VfRequest<'_>> = sriov
        .iter()
        .map(|n| {
            let (multus_network, pod_iface) = match &n.network {
                NetworkPlan::Multus {
                    network_name,
                    pod_iface,
                    ..
                } => (network_name.as_str(), pod_iface.as_str()),
                _ => (n.name.as_str(), ""),
            };
            net::sriov::VfRequest {
                network: &n.name,
                multus_network,
                pod_iface,
                resource: match &n.backend {
                    Backend::Vfio { resource } => resource.as_deref(),
                    _ => None,
                },
            }
        })
        .collect();
    let vfs = net::sriov::resolve_all(&info, &reqs).map_err(NicError::Sriov)?;
    Ok(sriov
        .iter()
        .map(|n| n.name.clone())
        .zip(vfs)
        .inspect(|(nic, vf)| {
            info!(nic = %nic, vf = %vf.address, from = %vf.resolved_from, "SR-IOV VF resolved")
        })
        .collect())
}

/// Adds every NIC of the plan; `cpus[i]` is the host CPU of vCPU i when
/// vCPUs are pinned (queue pair i's worker follows it). `pod_info` is the
/// downward-API directory SR-IOV NICs are resolved with.
pub fn attach_nics(
    vm: &mut Vm,
    pci: &mut PciSetup,
    vm_name: &str,
    nics: &[NicPlan],
    cpus: &[usize],
    tap_fds: &[(String, Vec<i32>)],
    pod_info: &Path,
) -> Result<(), NicError> {
    let vfs = resolve_vfs(nics, pod_info)?;
    for (name, _) in tap_fds {
        if !nics.iter().any(|n| &n.name == name) {
            return Err(NicError::Unsupported {
                nic: name.clone(),
                what: "--tap-fd for an interface the spec does not have".into(),
            });
        }
    }
    for nic in nics {
        let addr = &nic.pci_address;
        if addr.domain != 0 || addr.bus != 0 || addr.function != 0 {
            return Err(NicError::PciAddress {
                nic: nic.name.clone(),
                addr: addr.to_string(),
            });
        }
        if let Some(vf) = vfs.get(&nic.name) {
            attach_sriov(vm, pci, nic, vf)?;
            continue;
        }
        match nic.model {
            NicModel::VirtioNet => attach_virtio_net(vm, pci, vm_name, nic, cpus, tap_fds)?,
            NicModel::E1000 => attach_e1000(vm, pci, vm_name, nic, tap_fds)?,
            other => {
                return Err(NicError::Unsupported {
                    nic: nic.name.clone(),
                    what: format!("model {other:?}"),
                })
            }
        }
    }
    Ok(())
}

/// Adds `dev` at the plan's slot and maps its BARs: memory BARs on the MMIO
/// bus, I/O BARs on the port-I/O bus.
fn place(
    vm: &mut Vm,
    pci: &mut PciSetup,
    nic: &NicPlan,
    dev: Arc<Mutex<dyn PciDevice>>,
) -> Result<(), NicError> {
    place_at(vm, pci, &nic.name, nic.pci_address.device, dev)
}

fn place_at(
    vm: &mut Vm,
    pci: &mut PciSetup,
    name: &str,
    slot: u8,
    dev: Arc<Mutex<dyn PciDevice>>,
) -> Result<(), NicError> {
    let bus_error = |e: devices::BusError| NicError::Bus {
        nic: name.to_string(),
        source: Box::new(e),
    };
    pci.bus
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .add_device(slot, dev.clone())
        .map_err(|e| NicError::Bus {
            nic: name.to_string(),
            source: Box::new(e),
        })?;
    for (bar, region) in PciBarRegion::for_device(&dev) {
        let region = Arc::new(Mutex::new(region));
        if bar.is_mmio() {
            vm.mmio
                .insert(region, bar.addr, bar.size)
                .map_err(bus_error)?;
        } else {
            vm.pio
                .insert(region, bar.addr, bar.size)
                .map_err(bus_error)?;
        }
    }
    Ok(())
}

/// Passes the NIC's VF through: the guest drives the VF with its own
/// driver (the interface's `model` does not apply, as in KubeVirt).
fn attach_sriov(
    vm: &mut Vm,
    pci: &mut PciSetup,
    nic: &NicPlan,
    vf: &net::sriov::VfDevice,
) -> Result<(), NicError> {
    let (place, vfio) = pci.passthrough_parts();
    let attached =
        crate::vfio::attach(vm, vfio, &nic.name, &vf.sysfs_path, place).map_err(|source| {
            NicError::Vfio {
                nic: nic.name.clone(),
                addr: vf.address.to_string(),
                source,
            }
        })?;
    if nic.mac_from_spec {
        // The VF's MAC is the PF's to set (`ip link set PF vf N mac`), which
        // the SR-IOV CNI does on the node from the same spec; the PF is not
        // in the pod.
        info!(nic = %nic.name, mac = %nic.mac, "the VF's MAC is set by the SR-IOV CNI, not petrel");
    }
    pci.finish_passthrough(vm, &nic.name, nic.pci_address.device, attached)?;
    info!(nic = %nic.name, pci = %nic.pci_address, vf = %vf.address, "SR-IOV VF passed through");
    Ok(())
}

impl PciSetup {
    /// Where a passthrough device's BARs and INTx go, and the VFIO state
    /// its host side lives in.
    fn passthrough_parts(&mut self) -> (crate::vfio::PciPlace<'_>, &mut crate::vfio::VfioState) {
        let place = crate::vfio::PciPlace {
            mmio: &mut self.alloc,
            io: &mut self.io_alloc,
            intx_gsi: (self.next_intx_gsi <= INTX_LAST_GSI).then_some(self.next_intx_gsi),
        };
        (place, &mut self.vfio)
    }

    /// Takes the INTx pin the device uses and puts it on the bus at `slot`.
    fn finish_passthrough(
        &mut self,
        vm: &mut Vm,
        name: &str,
        slot: u8,
        attached: crate::vfio::Attached,
    ) -> Result<(), NicError> {
        if let Some(gsi) = attached.intx_gsi {
            self.next_intx_gsi += 1;
            self.mp_intx.push(arch::PciIntx {
                device: slot,
                pin: attached.probe.intx_pin.saturating_sub(1),
                gsi: gsi as u8,
            });
        }
        place_at(vm, self, name, slot, attached.device)
    }

    /// Passes a device that speaks the VFIO interface through at `slot`:
    /// for programs embedding the vmm library (the petrel CLI passes VFs
    /// through from the spec's sriov interfaces).
    pub fn attach_passthrough(
        &mut self,
        vm: &mut Vm,
        name: &str,
        slot: u8,
        ops: Arc<dyn devices::vfio::VfioOps>,
    ) -> Result<(), NicError> {
        let (place, _) = self.passthrough_parts();
        let attached =
            crate::vfio::attach_ops(vm, name, ops, place).map_err(|source| NicError::Vfio {
                nic: name.to_string(),
                addr: format!("slot {slot}"),
                source,
            })?;
        self.finish_passthrough(vm, name, slot, attached)
    }
}

fn attach_e1000(
    vm: &mut Vm,
    pci: &mut PciSetup,
    vm_name: &str,
    nic: &NicPlan,
    tap_fds: &[(String, Vec<i32>)],
) -> Result<(), NicError> {
    if nic.queue_pairs != 1 {
        return Err(NicError::Multiqueue {
            nic: nic.name.clone(),
        });
    }
    let opened = open_backends(pci, vm_name, nic, tap_fds)?;
    let mac = opened.mac;
    let mut backends = opened.queues;
    let backend = backends.pop().ok_or_else(|| NicError::Unsupported {
        nic: nic.name.clone(),
        what: "a backend without queues".into(),
    })?;
    if pci.next_intx_gsi > INTX_LAST_GSI {
        return Err(NicError::NoIntx {
            nic: nic.name.clone(),
            count: INTX_LAST_GSI - INTX_FIRST_GSI + 1,
        });
    }
    let gsi = pci.next_intx_gsi;
    pci.next_intx_gsi += 1;
    let intx = KvmIntx::new(&vm.irq, gsi).map_err(|source| NicError::Msi {
        nic: nic.name.clone(),
        source,
    })?;
    let no_space = || NicError::NoBarSpace {
        nic: nic.name.clone(),
    };
    let bar0 = pci
        .alloc
        .allocate(devices::e1000::BAR0_SIZE, devices::e1000::BAR0_SIZE)
        .ok_or_else(no_space)?;
    let bar1 = pci
        .io_alloc
        .allocate(devices::e1000::BAR1_SIZE, devices::e1000::BAR1_SIZE)
        .ok_or_else(no_space)?;
    let mut dev = E1000::new(
        nic.name.clone(),
        mac,
        backend,
        vm.mem.clone(),
        intx.clone(),
        bar0,
        bar1,
    )
    .map_err(|e| NicError::Device {
        nic: nic.name.clone(),
        source: Box::new(e),
    })?;
    // Interrupt line register = the IOAPIC pin, as firmware would leave it.
    dev.config_write(15, 0, &[gsi as u8]);
    dev.activate().map_err(|e| NicError::Device {
        nic: nic.name.clone(),
        source: Box::new(e),
    })?;
    let dev: Arc<Mutex<dyn PciDevice>> = Arc::new(Mutex::new(dev));
    place(vm, pci, nic, dev)?;
    pci.mp_intx.push(arch::PciIntx {
        device: nic.pci_address.device,
        pin: 0,
        gsi: gsi as u8,
    });
    pci.intx.push(intx);
    info!(
        nic = %nic.name,
        pci = %nic.pci_address,
        mac = %nic.mac,
        bar0 = format_args!("{bar0:#x}"),
        io = format_args!("{bar1:#x}"),
        gsi,
        "e1000 attached"
    );
    Ok(())
}

fn attach_virtio_net(
    vm: &mut Vm,
    pci: &mut PciSetup,
    vm_name: &str,
    nic: &NicPlan,
    cpus: &[usize],
    tap_fds: &[(String, Vec<i32>)],
) -> Result<(), NicError> {
    let addr = &nic.pci_address;
    {
        let opened = open_backends(pci, vm_name, nic, tap_fds)?;
        let (backends, mtu, mac) = (opened.queues, opened.mtu, opened.mac);
        let affinity: Vec<Option<Vec<usize>>> = (0..backends.len())
            .map(|i| (!cpus.is_empty()).then(|| vec![cpus[i % cpus.len()]]))
            .collect();
        let net = Net::new(nic.name.clone(), mac, mtu, backends, affinity).map_err(|e| {
            NicError::Device {
                nic: nic.name.clone(),
                source: Box::new(e),
            }
        })?;
        let vectors = VirtioPciDevice::msix_vectors_needed(&net);
        let msix = KvmMsiVectors::new(vm.irq.clone(), vectors).map_err(|source| NicError::Msi {
            nic: nic.name.clone(),
            source,
        })?;
        let gsis = msix.gsis();
        let bar0 =
            pci.alloc
                .allocate(BAR0_SIZE, BAR0_SIZE)
                .ok_or_else(|| NicError::NoBarSpace {
                    nic: nic.name.clone(),
                })?;
        let dev = VirtioPciDevice::new(
            nic.name.clone(),
            Box::new(net),
            vm.mem.clone(),
            Arc::new(msix),
            bar0,
        )
        .map_err(|e| NicError::Device {
            nic: nic.name.clone(),
            source: Box::new(e),
        })?;
        for (addr, evt) in dev.ioeventfds() {
            vm.fd
                .register_ioevent(evt, &IoEventAddress::Mmio(addr), NoDatamatch)
                .map_err(|source| NicError::IoEvent {
                    nic: nic.name.clone(),
                    addr,
                    source,
                })?;
        }
        let dev: Arc<Mutex<dyn PciDevice>> = Arc::new(Mutex::new(dev));
        place(vm, pci, nic, dev)?;
        info!(
            nic = %nic.name,
            pci = %addr,
            mac = %nic.mac,
            queue_pairs = nic.queue_pairs,
            bar0 = format_args!("{bar0:#x}"),
            msix_gsis = ?gsis,
            "virtio-net attached"
        );
    }
    Ok(())
}
