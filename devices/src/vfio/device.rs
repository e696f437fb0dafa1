//! The passthrough PCI function: configuration space split between the
//! device and petrel's shadow, trapped MSI-X table, interrupt mode
//! switching.

use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use super::msi::MsiState;
use super::ops::{IrqIndex, VfioOps, CONFIG_REGION};
use super::probe::{mmap_areas, MmapArea, MsixInfo, Probe};
use super::VfioError;
use crate::pci::{Bar, MsiVectors, MsixConfig, PciConfiguration, PciDevice, PciIds};

const NUM_REGS: usize = 64;
const BHLC_REG: usize = 3;
const BAR_REGS: std::ops::RangeInclusive<usize> = 4..=9;
const ROM_REG: usize = 12;
const INTERRUPT_REG: usize = 15;
/// Header type bit 7: multi-function. Only function 0 is exposed.
const MULTI_FUNCTION: u32 = 0x80 << 16;

/// INTx of a passthrough device: `trigger` is a KVM irqfd on the device's
/// IOAPIC pin and `resample` its resample eventfd.
pub struct IntxFds {
    pub trigger: EventFd,
    pub resample: EventFd,
}

/// The interrupt plumbing the VMM made for a device (see [`Probe`] for what
/// to make): MSI-X vectors for every table entry, MSI vectors for the
/// device's maximum, INTx fds when it has a pin.
pub struct VfioInterrupts {
    pub msix: Option<Arc<dyn MsiVectors>>,
    pub msi: Option<Arc<dyn MsiVectors>>,
    pub intx: Option<IntxFds>,
}

/// Which interrupt the device currently signals (VFIO allows one at a
/// time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IrqMode {
    Off,
    Intx,
    Msi(u16),
    Msix,
}

pub struct VfioPciDevice {
    name: String,
    ops: Arc<dyn VfioOps>,
    probe: Probe,
    /// BAR registers and the interrupt line: what the guest sees there.
    shadow: PciConfiguration,
    bars: Vec<Bar>,
    msix: Option<(MsixInfo, MsixConfig)>,
    msi: Option<MsiState>,
    intx: Option<IntxFds>,
    mode: IrqMode,
}

impl std::fmt::Debug for VfioPciDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioPciDevice")
            .field("name", &self.name)
            .field("bars", &self.bars)
            .field("mode", &self.mode)
            .finish()
    }
}

impl VfioPciDevice {
    /// Builds the model for a device probed with [`Probe::read`] and placed
    /// with [`super::place_bars`]. The device is reset first, so that it
    /// starts from a known state whatever its last user left; INTx (when
    /// wired) is enabled at once, as on real hardware.
    pub fn new(
        name: String,
        ops: Arc<dyn VfioOps>,
        probe: Probe,
        bars: Vec<Bar>,
        irqs: VfioInterrupts,
    ) -> Result<Self, VfioError> {
        if let Err(e) = ops.reset() {
            // Many VFs only offer a function-level reset through their PF;
            // the driver in the guest resets them again anyway.
            tracing::warn!(device = %name, error = %e, "device reset failed");
        }
        let mut shadow = PciConfiguration::new(PciIds {
            vendor_id: probe.vendor_id,
            device_id: probe.device_id,
            revision: 0,
            class_code: 0,
            subsystem_vendor_id: 0,
            subsystem_id: 0,
        });
        for bar in &bars {
            shadow.add_bar(*bar).map_err(|source| VfioError::Shadow {
                index: bar.index,
                source,
            })?;
        }
        let msix = match (probe.msix, irqs.msix) {
            (Some(info), Some(vectors)) => {
                if vectors.len() != info.table_size {
                    return Err(VfioError::MsixVectors {
                        want: info.table_size,
                        got: vectors.len(),
                    });
                }
                let cfg = MsixConfig::new(vectors).map_err(|e| VfioError::Msix(e.to_string()))?;
                Some((info, cfg))
            }
            _ => None,
        };
        let msi = match (probe.msi, irqs.msi) {
            (Some(info), Some(vectors)) => {
                if vectors.is_empty() {
                    return Err(VfioError::MsiVectors {
                        want: u16::from(info.max_vectors),
                        got: 0,
                    });
                }
                let mut raw = [0u8; 24];
                ops.read(CONFIG_REGION, info.cap as u64, &mut raw[..info.cap_len()]);
                Some(MsiState::new(info, &raw, vectors))
            }
            _ => None,
        };
        let intx = irqs.intx.filter(|_| probe.intx_pin != 0);
        let mut dev = Self {
            name,
            ops,
            probe,
            shadow,
            bars,
            msix,
            msi,
            intx,
            mode: IrqMode::Off,
        };
        dev.sync_irq_mode();
        Ok(dev)
    }

    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// The BAR parts the VMM may map into the guest (everything the kernel
    /// allows except the MSI-X table and PBA pages).
    pub fn mmap_areas(&self) -> Vec<MmapArea> {
        mmap_areas(&self.probe, &self.bars, |i| self.ops.region(i))
    }

    fn device_reg(&self, reg: usize) -> u32 {
        let mut b = [0xffu8; 4];
        self.ops.read(CONFIG_REGION, reg as u64 * 4, &mut b);
        u32::from_le_bytes(b)
    }

    /// The interrupt the guest's settings ask for: MSI-X over MSI over
    /// INTx, as in the PCI spec (enabling MSI or MSI-X disables INTx).
    fn wanted_mode(&self) -> IrqMode {
        if self.msix.as_ref().is_some_and(|(_, m)| m.is_enabled()) {
            IrqMode::Msix
        } else if let Some(m) = self.msi.as_ref().filter(|m| m.enabled()) {
            IrqMode::Msi(m.enabled_vectors())
        } else if self.intx.is_some() {
            IrqMode::Intx
        } else {
            IrqMode::Off
        }
    }

    fn sync_irq_mode(&mut self) {
        let want = self.wanted_mode();
        if want == self.mode {
            return;
        }
        let off = match self.mode {
            IrqMode::Off => Ok(()),
            IrqMode::Intx => self.ops.disable_irq(IrqIndex::Intx),
            IrqMode::Msi(_) => self.ops.disable_irq(IrqIndex::Msi),
            IrqMode::Msix => self.ops.disable_irq(IrqIndex::Msix),
        };
        if let Err(e) = off {
            tracing::warn!(device = %self.name, mode = ?self.mode, error = %e, "cannot disable interrupts");
        }
        self.mode = IrqMode::Off;
        let on = match want {
            IrqMode::Off => Ok(()),
            IrqMode::Intx => match &self.intx {
                Some(fds) => self
                    .ops
                    .enable_irq(IrqIndex::Intx, &[&fds.trigger])
                    .and_then(|()| self.ops.set_intx_unmask_fd(&fds.resample)),
                None => Ok(()),
            },
            IrqMode::Msi(n) => match &self.msi {
                Some(m) => enable_vectors(&*self.ops, IrqIndex::Msi, m.vectors(), n),
                None => Ok(()),
            },
            IrqMode::Msix => match &self.msix {
                Some((_, m)) => {
                    enable_vectors(&*self.ops, IrqIndex::Msix, m.vectors(), m.num_vectors())
                }
                None => Ok(()),
            },
        };
        match on {
            Ok(()) => {
                tracing::debug!(device = %self.name, mode = ?want, "interrupt mode");
                self.mode = want;
            }
            Err(e) => {
                tracing::warn!(device = %self.name, mode = ?want, error = %e, "cannot enable interrupts")
            }
        }
    }

    /// Where a BAR access lands when it is inside the trapped MSI-X table
    /// or PBA: (is_table, offset inside it).
    fn msix_target(&self, bar: u8, offset: u64) -> Option<(bool, u64)> {
        let (info, _) = self.msix.as_ref()?;
        let inside = |b: u8, start: u64, len: u64| {
            (b == bar && offset >= start && offset < start + len).then(|| offset - start)
        };
        inside(info.table_bar, info.table_offset, info.table_len())
            .map(|o| (true, o))
            .or_else(|| inside(info.pba_bar, info.pba_offset, info.pba_len()).map(|o| (false, o)))
    }

    fn bar_size(&self, bar: u8) -> Option<u64> {
        self.bars.iter().find(|b| b.index == bar).map(|b| b.size)
    }

    /// True when `offset..offset+len` lies inside BAR `bar`.
    fn in_bar(&self, bar: u8, offset: u64, len: usize) -> bool {
        self.bar_size(bar).is_some_and(|size| {
            offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= size)
        })
    }
}

fn enable_vectors(
    ops: &dyn VfioOps,
    index: IrqIndex,
    vectors: &Arc<dyn MsiVectors>,
    n: u16,
) -> std::io::Result<()> {
    let fds: Vec<&EventFd> = (0..n).filter_map(|i| vectors.notifier(i)).collect();
    ops.enable_irq(index, &fds)
}

impl PciDevice for VfioPciDevice {
    fn config_read(&mut self, reg: usize) -> u32 {
        if reg >= NUM_REGS {
            return u32::MAX;
        }
        match reg {
            r if BAR_REGS.contains(&r) => return self.shadow.read_reg(r),
            ROM_REG => return 0,
            BHLC_REG => return self.device_reg(reg) & !MULTI_FUNCTION,
            INTERRUPT_REG => {
                let dev = self.device_reg(reg);
                let pin = if self.intx.is_some() {
                    u32::from(self.probe.intx_pin)
                } else {
                    0
                };
                return (dev & 0xffff_0000) | pin << 8 | (self.shadow.read_reg(reg) & 0xff);
            }
            _ => {}
        }
        let mut value = self.device_reg(reg);
        if let Some((info, m)) = &self.msix {
            value = m.read_cap_reg(info.cap, reg, value);
        }
        if let Some(msi) = &self.msi {
            let mut bytes = value.to_le_bytes();
            for (k, b) in bytes.iter_mut().enumerate() {
                if msi.contains(reg * 4 + k) {
                    *b = msi.read_byte(reg * 4 + k);
                }
            }
            value = u32::from_le_bytes(bytes);
        }
        value
    }

    fn config_write(&mut self, reg: usize, offset: u64, data: &[u8]) {
        let Some(off) = usize::try_from(offset).ok().filter(|&o| {
            reg < NUM_REGS
                && matches!(data.len(), 1 | 2 | 4)
                && o.checked_add(data.len()).is_some_and(|end| end <= 4)
        }) else {
            tracing::debug!(device = %self.name, reg, offset, len = data.len(), "malformed config write");
            return;
        };
        match reg {
            0 | ROM_REG => return,
            r if BAR_REGS.contains(&r) => {
                self.shadow.write_reg(r, offset, data);
                return;
            }
            INTERRUPT_REG => {
                // Only the interrupt line (scratch for the guest) is
                // writable; the device never sees it.
                self.shadow.write_reg(reg, offset, data);
                return;
            }
            _ => {}
        }
        let byte = reg * 4 + off;
        if let Some((info, m)) = &mut self.msix {
            if m.write_cap_reg(info.cap, reg, offset, data) {
                self.sync_irq_mode();
                return;
            }
        }
        if let Some(msi) = &mut self.msi {
            if (byte..byte + data.len()).any(|o| msi.contains(o)) {
                msi.write(byte, data);
                self.sync_irq_mode();
                return;
            }
        }
        self.ops.write(CONFIG_REGION, byte as u64, data);
    }

    fn bars(&self) -> Vec<Bar> {
        self.bars.clone()
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if let Some((table, o)) = self.msix_target(bar, offset) {
            if let Some((_, m)) = &self.msix {
                if table {
                    m.read_table(o, data);
                } else {
                    m.read_pba(o, data);
                }
            }
            return;
        }
        if self.in_bar(bar, offset, data.len()) {
            self.ops.read(u32::from(bar), offset, data);
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if let Some((table, o)) = self.msix_target(bar, offset) {
            if let Some((_, m)) = &mut self.msix {
                if table {
                    m.write_table(o, data);
                } else {
                    m.write_pba(o, data);
                }
            }
            return;
        }
        if self.in_bar(bar, offset, data.len()) {
            self.ops.write(u32::from(bar), offset, data);
        }
    }
}

impl Drop for VfioPciDevice {
    /// Leaves the device quiet and reset for its next user (the host, or
    /// the next VM on the node).
    fn drop(&mut self) {
        let index = match self.mode {
            IrqMode::Off => None,
            IrqMode::Intx => Some(IrqIndex::Intx),
            IrqMode::Msi(_) => Some(IrqIndex::Msi),
            IrqMode::Msix => Some(IrqIndex::Msix),
        };
        if let Some(index) = index {
            let _ = self.ops.disable_irq(index);
        }
        if let Err(e) = self.ops.reset() {
            tracing::warn!(device = %self.name, error = %e, "device reset on exit failed");
        }
    }
}
