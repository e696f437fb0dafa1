//! A VFIO device that is not a host device: one of petrel's own PCI
//! devices (virtio-net or e1000 over a tap) behind the [`VfioOps`]
//! interface, the way VFIO exposes a real function: configuration and BARs
//! as regions, MSI-X vectors and INTx as eventfds the "hardware" signals,
//! INTx masked after each assertion until the unmask eventfd fires. Passed
//! through with `vmm`'s passthrough path, it lets a real guest and its stock
//! drivers exercise petrel's VFIO model (BAR shadowing and sizing,
//! capability walking, the trapped MSI-X table and its KVM routes, INTx
//! with KVM's resample, interrupt-mode switching) on a host without VFIO
//! hardware.
//!
//! What it cannot prove is the host half (container, DMA mapping, BAR
//! mmap), which needs /dev/vfio.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, OnceLock};

use devices::pci::{IntxLine, MsiMessage, MsiVectors, PciDevice};
use devices::vfio::{IrqIndex, RegionInfo, VfioOps, CONFIG_REGION};
use vmm_sys_util::eventfd::EventFd;

const MSIX_CAP_ID: u8 = 0x11;

/// The inner device's MSI-X vectors. Like hardware behind VFIO, the
/// device signals the eventfds the host handed over when MSI-X was
/// enabled; routing is the passthrough model's business, so `update` does
/// nothing.
#[derive(Debug, Default)]
pub struct LoopbackVectors {
    count: u16,
    fds: OnceLock<Vec<EventFd>>,
}

impl LoopbackVectors {
    pub fn new(count: u16) -> Self {
        Self {
            count,
            fds: OnceLock::new(),
        }
    }
}

impl MsiVectors for LoopbackVectors {
    fn len(&self) -> u16 {
        self.count
    }

    fn update(&self, _index: u16, _msg: Option<MsiMessage>) -> io::Result<()> {
        Ok(())
    }

    fn notifier(&self, index: u16) -> Option<&EventFd> {
        self.fds.get()?.get(usize::from(index))
    }

    fn trigger(&self, index: u16) -> io::Result<()> {
        match self.notifier(index) {
            Some(fd) => fd.write(1),
            // Not enabled yet: like a function with MSI-X off, nothing is sent.
            None => Ok(()),
        }
    }
}

/// The inner device's INTx line, with VFIO's semantics: an assertion
/// signals the trigger eventfd and masks the line; the unmask eventfd
/// (KVM's resample, after the guest's EOI) unmasks it and re-signals while
/// the device still asserts.
#[derive(Debug, Default)]
pub struct LoopbackIntx {
    state: Mutex<IntxState>,
}

#[derive(Debug, Default)]
struct IntxState {
    asserted: bool,
    masked: bool,
    trigger: Option<EventFd>,
}

impl IntxState {
    fn fire(&mut self) {
        if self.asserted && !self.masked {
            if let Some(t) = &self.trigger {
                let _ = t.write(1);
                self.masked = true;
            }
        }
    }
}

impl LoopbackIntx {
    fn unmask(&self) {
        let mut st = self.state.lock().unwrap();
        st.masked = false;
        st.fire();
    }
}

impl IntxLine for LoopbackIntx {
    fn set_level(&self, asserted: bool) {
        let mut st = self.state.lock().unwrap();
        st.asserted = asserted;
        st.fire();
    }
}

/// [`VfioOps`] over one of petrel's own PCI devices.
pub struct LoopbackOps {
    inner: Mutex<Box<dyn PciDevice>>,
    vectors: Option<Arc<LoopbackVectors>>,
    intx: Option<Arc<LoopbackIntx>>,
    /// (MSI-X capability offset, table BAR, table offset) of the inner
    /// device.
    msix: Option<(usize, u8, u64)>,
    pub irq_log: Mutex<Vec<String>>,
}

impl LoopbackOps {
    /// `vectors`: the MSI-X vectors the inner device was built with;
    /// `intx`: its INTx line.
    pub fn new(
        mut inner: Box<dyn PciDevice>,
        vectors: Option<Arc<LoopbackVectors>>,
        intx: Option<Arc<LoopbackIntx>>,
    ) -> Self {
        let mut cap = usize::from(inner.config_read(13) as u8 & 0xfc);
        let mut msix = None;
        for _ in 0..48 {
            if cap < 0x40 {
                break;
            }
            let head = inner.config_read(cap / 4);
            if head as u8 == MSIX_CAP_ID {
                let table = inner.config_read(cap / 4 + 1);
                msix = Some((cap, (table & 0x7) as u8, u64::from(table & !0x7)));
                break;
            }
            cap = usize::from((head >> 8) as u8 & 0xfc);
        }
        Self {
            inner: Mutex::new(inner),
            vectors,
            intx,
            msix,
            irq_log: Mutex::new(Vec::new()),
        }
    }

    fn log(&self, what: String) {
        self.irq_log.lock().unwrap().push(what);
    }

    /// What the host kernel does on VFIO_DEVICE_SET_IRQS for MSI-X: enable
    /// MSI-X on the function with every entry unmasked.
    fn set_msix(&self, on: bool) {
        let (Some((cap, bar, table)), Some(vectors)) = (self.msix, &self.vectors) else {
            return;
        };
        let mut inner = self.inner.lock().unwrap();
        if on {
            for v in 0..vectors.len() {
                let entry = table + u64::from(v) * 16;
                inner.bar_write(bar, entry, &0xfee0_0000u32.to_le_bytes());
                inner.bar_write(bar, entry + 12, &0u32.to_le_bytes());
            }
        }
        let ctl: u16 = if on { 0x8000 } else { 0 };
        inner.config_write(cap / 4, 2, &ctl.to_le_bytes());
    }
}

impl VfioOps for LoopbackOps {
    fn region(&self, index: u32) -> Option<RegionInfo> {
        if index == CONFIG_REGION {
            return Some(RegionInfo {
                size: 256,
                mmap: false,
                sparse: None,
            });
        }
        let bars = self.inner.lock().unwrap().bars();
        bars.iter()
            .find(|b| u32::from(b.index) == index)
            .map(|b| RegionInfo {
                size: b.size,
                mmap: false,
                sparse: None,
            })
    }

    fn read(&self, index: u32, offset: u64, data: &mut [u8]) {
        let mut inner = self.inner.lock().unwrap();
        if index == CONFIG_REGION {
            for (k, b) in data.iter_mut().enumerate() {
                let off = offset as usize + k;
                *b = (inner.config_read(off / 4) >> (8 * (off % 4))) as u8;
            }
        } else {
            inner.bar_read(index as u8, offset, data);
        }
    }

    fn write(&self, index: u32, offset: u64, data: &[u8]) {
        let mut inner = self.inner.lock().unwrap();
        if index == CONFIG_REGION {
            inner.config_write((offset / 4) as usize, offset % 4, data);
        } else {
            inner.bar_write(index as u8, offset, data);
        }
    }

    fn irq_count(&self, index: IrqIndex) -> u32 {
        match index {
            IrqIndex::Msix => self.vectors.as_ref().map_or(0, |v| u32::from(v.len())),
            IrqIndex::Intx => u32::from(self.intx.is_some()),
            IrqIndex::Msi => 0,
        }
    }

    fn enable_irq(&self, index: IrqIndex, fds: &[&EventFd]) -> io::Result<()> {
        self.log(format!("enable {index:?} {}", fds.len()));
        match (index, &self.vectors, &self.intx) {
            (IrqIndex::Msix, Some(vectors), _) => {
                if vectors.fds.get().is_none() {
                    let dup = fds
                        .iter()
                        .map(|fd| fd.try_clone())
                        .collect::<io::Result<Vec<_>>>()?;
                    let _ = vectors.fds.set(dup);
                }
                self.set_msix(true);
                Ok(())
            }
            (IrqIndex::Intx, _, Some(intx)) => {
                let fd = fds.first().ok_or(io::ErrorKind::InvalidInput)?;
                let mut st = intx.state.lock().unwrap();
                st.trigger = Some(fd.try_clone()?);
                st.masked = false;
                st.fire();
                Ok(())
            }
            _ => Err(io::Error::from(io::ErrorKind::Unsupported)),
        }
    }

    fn disable_irq(&self, index: IrqIndex) -> io::Result<()> {
        self.log(format!("disable {index:?}"));
        match index {
            IrqIndex::Msix => self.set_msix(false),
            IrqIndex::Intx => {
                if let Some(intx) = &self.intx {
                    intx.state.lock().unwrap().trigger = None;
                }
            }
            IrqIndex::Msi => {}
        }
        Ok(())
    }

    /// Like VFIO's ACTION_UNMASK eventfd: a thread waits on it and unmasks
    /// the line each time it fires.
    fn set_intx_unmask_fd(&self, fd: &EventFd) -> io::Result<()> {
        let Some(intx) = self.intx.clone() else {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        };
        let fd = fd.try_clone()?;
        std::thread::Builder::new()
            .name("intx-unmask".into())
            .spawn(move || loop {
                let mut p = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                let n = unsafe { libc::poll(&mut p, 1, 1000) };
                if n > 0 && fd.read().is_ok() {
                    intx.unmask();
                }
            })?;
        Ok(())
    }

    fn reset(&self) -> io::Result<()> {
        self.log("reset".into());
        Ok(())
    }
}
