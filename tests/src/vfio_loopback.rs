//! A VFIO device that is not a host device: petrel's own virtio-net
//! (`VirtioPciDevice` over a tap) behind the [`VfioOps`] interface, the way
//! VFIO exposes a real function (configuration and BARs as regions,
//! MSI-X as eventfds the "hardware" signals). Passed through with
//! `vmm`'s passthrough path, it lets a real guest and its stock
//! virtio-pci driver exercise petrel's VFIO model (BAR shadowing and
//! sizing, capability walking, the trapped MSI-X table and its KVM routes,
//! interrupt-mode switching) on a host without VFIO hardware.
//!
//! What it cannot prove is the host half (container, DMA mapping, BAR
//! mmap), which needs /dev/vfio.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use devices::pci::{MsiMessage, MsiVectors, PciDevice};
use devices::vfio::{IrqIndex, RegionInfo, VfioOps, CONFIG_REGION};
use devices::virtio::transport::VirtioPciDevice;
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

/// [`VfioOps`] over one of petrel's own PCI devices.
pub struct LoopbackOps {
    inner: Mutex<VirtioPciDevice>,
    vectors: Arc<LoopbackVectors>,
    /// (MSI-X capability offset, table offset in BAR0) of the inner device.
    msix: (usize, u64),
    pub irq_log: Mutex<Vec<String>>,
}

impl LoopbackOps {
    pub fn new(mut inner: VirtioPciDevice, vectors: Arc<LoopbackVectors>) -> Self {
        let mut cap = usize::from(inner.config_read(13) as u8 & 0xfc);
        let mut msix = (0, 0);
        for _ in 0..48 {
            if cap < 0x40 {
                break;
            }
            let head = inner.config_read(cap / 4);
            if head as u8 == MSIX_CAP_ID {
                let table = inner.config_read(cap / 4 + 1);
                msix = (cap, u64::from(table & !0x7));
                break;
            }
            cap = usize::from((head >> 8) as u8 & 0xfc);
        }
        Self {
            inner: Mutex::new(inner),
            vectors,
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
        let (cap, table) = self.msix;
        let mut inner = self.inner.lock().unwrap();
        if on {
            for v in 0..self.vectors.len() {
                let entry = table + u64::from(v) * 16;
                inner.bar_write(0, entry, &0xfee0_0000u32.to_le_bytes());
                inner.bar_write(0, entry + 12, &0u32.to_le_bytes());
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
            IrqIndex::Msix => u32::from(self.vectors.len()),
            _ => 0,
        }
    }

    fn enable_irq(&self, index: IrqIndex, fds: &[&EventFd]) -> io::Result<()> {
        self.log(format!("enable {index:?} {}", fds.len()));
        if index != IrqIndex::Msix {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        if self.vectors.fds.get().is_none() {
            let dup = fds
                .iter()
                .map(|fd| fd.try_clone())
                .collect::<io::Result<Vec<_>>>()?;
            let _ = self.vectors.fds.set(dup);
        }
        self.set_msix(true);
        Ok(())
    }

    fn disable_irq(&self, index: IrqIndex) -> io::Result<()> {
        self.log(format!("disable {index:?}"));
        if index == IrqIndex::Msix {
            self.set_msix(false);
        }
        Ok(())
    }

    fn set_intx_unmask_fd(&self, _fd: &EventFd) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    fn reset(&self) -> io::Result<()> {
        self.log("reset".into());
        Ok(())
    }
}
