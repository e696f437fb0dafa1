//! What a passthrough device offers: its BARs, interrupt capabilities and
//! INTx pin, read once from the device before it is placed; and where its
//! BARs go in the guest.

use super::ops::{IrqIndex, RegionInfo, VfioOps, CONFIG_REGION};
use super::VfioError;
use crate::pci::{cap_id, Bar, BarAllocator, BarKind, MSIX_ENTRY_SIZE};

/// PCI capability id of MSI.
pub(crate) const CAP_ID_MSI: u8 = 0x05;
const CAP_POINTER: u64 = 0x34;
const BAR0: u64 = 0x10;
/// A capability list longer than this is a loop (48 = (256 - 64) / 4).
const MAX_CAPS: usize = 48;
/// BARs are placed page-aligned so that they can be mapped into the guest.
pub const PAGE_SIZE: u64 = 4096;

/// One BAR as the device implements it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarInfo {
    pub index: u8,
    pub kind: BarKind,
    pub size: u64,
    pub prefetchable: bool,
}

/// The MSI-X capability of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixInfo {
    /// Offset of the capability in configuration space.
    pub cap: usize,
    pub table_size: u16,
    pub table_bar: u8,
    pub table_offset: u64,
    pub pba_bar: u8,
    pub pba_offset: u64,
}

impl MsixInfo {
    pub fn table_len(&self) -> u64 {
        u64::from(self.table_size) * MSIX_ENTRY_SIZE
    }

    pub fn pba_len(&self) -> u64 {
        u64::from(self.table_size).div_ceil(64) * 8
    }
}

/// The MSI capability of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiInfo {
    pub cap: usize,
    /// Vectors the device can use (1, 2, 4, …, 32).
    pub max_vectors: u8,
    pub addr64: bool,
    pub per_vector_mask: bool,
}

impl MsiInfo {
    /// Length of the capability structure.
    pub fn cap_len(&self) -> usize {
        match (self.addr64, self.per_vector_mask) {
            (false, false) => 10,
            (true, false) => 14,
            (false, true) => 20,
            (true, true) => 24,
        }
    }

    /// Offset of the message data inside the capability.
    pub(crate) fn data_offset(&self) -> usize {
        if self.addr64 {
            12
        } else {
            8
        }
    }

    /// Offset of the mask bits inside the capability (per-vector masking).
    pub(crate) fn mask_offset(&self) -> Option<usize> {
        self.per_vector_mask.then(|| self.data_offset() + 4)
    }
}

/// Everything petrel needs to know about a device before attaching it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub vendor_id: u16,
    pub device_id: u16,
    pub bars: Vec<BarInfo>,
    pub msix: Option<MsixInfo>,
    pub msi: Option<MsiInfo>,
    /// INTx pin (1 = INTA#) when the device has a usable INTx, else 0.
    pub intx_pin: u8,
}

fn config_u32(ops: &dyn VfioOps, offset: u64) -> u32 {
    let mut b = [0xffu8; 4];
    ops.read(CONFIG_REGION, offset, &mut b);
    u32::from_le_bytes(b)
}

fn config_u8(ops: &dyn VfioOps, offset: u64) -> u8 {
    let mut b = [0xffu8; 1];
    ops.read(CONFIG_REGION, offset, &mut b);
    b[0]
}

/// The capabilities as (id, offset), following the list defensively: a
/// device (or a broken one) cannot make petrel loop or read outside the
/// 256-byte space.
pub(crate) fn capabilities(ops: &dyn VfioOps) -> Vec<(u8, usize)> {
    let status = config_u32(ops, 0x04) >> 16;
    if status & (1 << 4) == 0 {
        return Vec::new();
    }
    let mut caps = Vec::new();
    let mut ptr = usize::from(config_u8(ops, CAP_POINTER) & 0xfc);
    while (0x40..0x100).contains(&ptr) && caps.len() < MAX_CAPS {
        if caps.iter().any(|&(_, o)| o == ptr) {
            break;
        }
        let id = config_u8(ops, ptr as u64);
        caps.push((id, ptr));
        ptr = usize::from(config_u8(ops, ptr as u64 + 1) & 0xfc);
    }
    caps
}

impl Probe {
    /// Reads the device. Sizes come from VFIO's region info (the kernel
    /// sized the BARs), types from the BAR registers.
    pub fn read(ops: &dyn VfioOps) -> Result<Self, VfioError> {
        if ops.region(CONFIG_REGION).is_none_or(|r| r.size < 0x100) {
            return Err(VfioError::NoConfigRegion);
        }
        let ids = config_u32(ops, 0);
        let bars = read_bars(ops)?;
        let caps = capabilities(ops);
        let msix = caps
            .iter()
            .find(|(id, _)| *id == cap_id::MSIX)
            .map(|&(_, cap)| read_msix(ops, cap, &bars))
            .transpose()?;
        let msi = caps
            .iter()
            .find(|(id, _)| *id == CAP_ID_MSI)
            .map(|&(_, cap)| read_msi(ops, cap))
            .filter(|m| m.cap + m.cap_len() <= 0x100);
        let pin = config_u8(ops, 0x3d);
        let intx_pin = if (1..=4).contains(&pin) && ops.irq_count(IrqIndex::Intx) > 0 {
            pin
        } else {
            0
        };
        Ok(Self {
            vendor_id: ids as u16,
            device_id: (ids >> 16) as u16,
            bars,
            msix,
            msi,
            intx_pin,
        })
    }

    pub fn bar(&self, index: u8) -> Option<&BarInfo> {
        self.bars.iter().find(|b| b.index == index)
    }
}

fn read_bars(ops: &dyn VfioOps) -> Result<Vec<BarInfo>, VfioError> {
    let mut bars = Vec::new();
    let mut i = 0u8;
    while i < 6 {
        let index = i;
        let raw = config_u32(ops, BAR0 + 4 * u64::from(i));
        let size = ops.region(u32::from(i)).map_or(0, |r: RegionInfo| r.size);
        let (kind, prefetchable) = if raw & 1 == 1 {
            (BarKind::Io, false)
        } else if (raw >> 1) & 3 == 2 {
            (BarKind::Mmio64, raw & 0x8 != 0)
        } else {
            (BarKind::Mmio32, raw & 0x8 != 0)
        };
        i += if kind == BarKind::Mmio64 { 2 } else { 1 };
        if size == 0 {
            continue;
        }
        if kind == BarKind::Mmio64 && index == 5 {
            return Err(VfioError::BadBar {
                index,
                size,
                reason: "a 64-bit BAR in the last register",
            });
        }
        let bad = |reason| VfioError::BadBar {
            index,
            size,
            reason,
        };
        if !size.is_power_of_two() {
            return Err(bad("not a power of two"));
        }
        let limit = if kind == BarKind::Io {
            1 << 16
        } else {
            1 << 40
        };
        if size > limit {
            return Err(bad("too large"));
        }
        bars.push(BarInfo {
            index,
            kind,
            size: size.max(if kind == BarKind::Io { 4 } else { 16 }),
            prefetchable,
        });
    }
    Ok(bars)
}

fn read_msix(ops: &dyn VfioOps, cap: usize, bars: &[BarInfo]) -> Result<MsixInfo, VfioError> {
    let ctl = config_u32(ops, cap as u64) >> 16;
    let table = config_u32(ops, cap as u64 + 4);
    let pba = config_u32(ops, cap as u64 + 8);
    let info = MsixInfo {
        cap,
        table_size: (ctl & 0x7ff) as u16 + 1,
        table_bar: (table & 0x7) as u8,
        table_offset: u64::from(table & !0x7),
        pba_bar: (pba & 0x7) as u8,
        pba_offset: u64::from(pba & !0x7),
    };
    let inside = |what, bar: u8, offset: u64, len: u64| {
        let fits = bars
            .iter()
            .find(|b| b.index == bar && b.kind != BarKind::Io)
            .is_some_and(|b| offset.checked_add(len).is_some_and(|end| end <= b.size));
        if fits {
            Ok(())
        } else {
            Err(VfioError::MsixOutsideBar {
                what,
                bar,
                offset,
                len,
            })
        }
    };
    inside("table", info.table_bar, info.table_offset, info.table_len())?;
    inside("PBA", info.pba_bar, info.pba_offset, info.pba_len())?;
    Ok(info)
}

fn read_msi(ops: &dyn VfioOps, cap: usize) -> MsiInfo {
    let ctl = (config_u32(ops, cap as u64) >> 16) as u16;
    let mmc = (ctl >> 1) & 0x7;
    MsiInfo {
        cap,
        max_vectors: 1 << mmc.min(5),
        addr64: ctl & (1 << 7) != 0,
        per_vector_mask: ctl & (1 << 8) != 0,
    }
}

/// Places the device's BARs: memory BARs page-aligned in the MMIO window
/// (all below 4 GiB: petrel's guests have no 64-bit window, and VF BARs are
/// small), I/O BARs in the port window. BAR indices and types stay the
/// device's own, so the MSI-X table offsets stay valid.
pub fn place_bars(
    probe: &Probe,
    mmio: &mut BarAllocator,
    io: &mut BarAllocator,
) -> Result<Vec<Bar>, VfioError> {
    probe
        .bars
        .iter()
        .map(|b| {
            let addr = if b.kind == BarKind::Io {
                io.allocate(b.size, b.size)
            } else {
                mmio.allocate(b.size, PAGE_SIZE)
            };
            addr.map(|addr| Bar {
                index: b.index,
                addr,
                size: b.size,
                kind: b.kind,
            })
            .ok_or(VfioError::NoBarSpace {
                index: b.index,
                size: b.size,
            })
        })
        .collect()
}

/// A part of a BAR that can be mapped straight into the guest: guest
/// accesses there never exit to petrel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmapArea {
    /// BAR (= VFIO region) index.
    pub bar: u8,
    /// Offset inside the region (and the BAR).
    pub offset: u64,
    pub size: u64,
    /// Guest physical address of the area.
    pub guest_addr: u64,
}

/// Removes `[start, end)` from every range of `areas`.
fn punch(areas: Vec<(u64, u64)>, start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(areas.len() + 1);
    for (s, e) in areas {
        if end <= s || start >= e {
            out.push((s, e));
            continue;
        }
        if s < start {
            out.push((s, start));
        }
        if end < e {
            out.push((end, e));
        }
    }
    out
}

/// The mappable parts of the placed BARs: what the kernel allows to be
/// mapped (the whole region or its sparse areas), without the pages that
/// hold the MSI-X table or PBA (those must trap), trimmed to whole pages.
pub(crate) fn mmap_areas(
    probe: &Probe,
    bars: &[Bar],
    region: impl Fn(u32) -> Option<RegionInfo>,
) -> Vec<MmapArea> {
    let mut out = Vec::new();
    for bar in bars.iter().filter(|b| b.is_mmio()) {
        let Some(info) = region(u32::from(bar.index)).filter(|r| r.mmap) else {
            continue;
        };
        let mut areas: Vec<(u64, u64)> = match &info.sparse {
            Some(parts) => parts
                .iter()
                .filter_map(|&(o, s)| Some((o, o.checked_add(s)?.min(bar.size))))
                .filter(|(s, e)| s < e)
                .collect(),
            None => vec![(0, bar.size.min(info.size))],
        };
        if let Some(m) = &probe.msix {
            let page_down = |x: u64| x & !(PAGE_SIZE - 1);
            let page_up = |x: u64| x.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
            if m.table_bar == bar.index {
                let end = m.table_offset + m.table_len();
                areas = punch(areas, page_down(m.table_offset), page_up(end));
            }
            if m.pba_bar == bar.index {
                let end = m.pba_offset + m.pba_len();
                areas = punch(areas, page_down(m.pba_offset), page_up(end));
            }
        }
        for (s, e) in areas {
            let s = s.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
            let e = e & !(PAGE_SIZE - 1);
            if s < e {
                out.push(MmapArea {
                    bar: bar.index,
                    offset: s,
                    size: e - s,
                    guest_addr: bar.addr + s,
                });
            }
        }
    }
    out
}
