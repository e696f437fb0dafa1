//! A type-0 PCI configuration space: 256 bytes with per-bit write masks,
//! BAR sizing, a capability list and interrupt line/pin.

use super::{merge_dword, Bar, BarKind, PciError, NUM_BARS_USIZE};

/// Number of BAR registers in a type-0 header.
pub const NUM_BARS: u8 = 6;
/// Where the capability list starts (just after the type-0 header).
pub const CAPABILITY_LIST_START: usize = 0x40;

const NUM_REGS: usize = 64;
const COMMAND_STATUS_REG: usize = 1;
const BHLC_REG: usize = 3;
const BAR0_REG: usize = 4;
const CAP_POINTER_OFFSET: usize = 0x34;
const INTERRUPT_REG: usize = 15;
const STATUS_CAP_LIST: u32 = 1 << (16 + 4);
/// Command bits a guest may set: I/O, memory, bus master, parity error
/// response, SERR#, INTx disable.
const COMMAND_WRITABLE: u32 = 0x0547;

/// Identification of a PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciIds {
    pub vendor_id: u16,
    pub device_id: u16,
    pub revision: u8,
    /// Class code, subclass and programming interface: `0xCCSSPP`.
    pub class_code: u32,
    pub subsystem_vendor_id: u16,
    pub subsystem_id: u16,
}

/// Configuration space of one PCI function.
#[derive(Debug, Clone)]
pub struct PciConfiguration {
    regs: [u32; NUM_REGS],
    writable: [u32; NUM_REGS],
    bars: [Option<Bar>; NUM_BARS_USIZE],
    last_cap: Option<usize>,
    next_cap: usize,
    bar_move_attempts: u64,
}

impl PciConfiguration {
    pub fn new(ids: PciIds) -> Self {
        let mut regs = [0u32; NUM_REGS];
        let mut writable = [0u32; NUM_REGS];
        regs[0] = u32::from(ids.device_id) << 16 | u32::from(ids.vendor_id);
        writable[COMMAND_STATUS_REG] = COMMAND_WRITABLE;
        regs[2] = (ids.class_code & 0x00ff_ffff) << 8 | u32::from(ids.revision);
        // Cache line size and latency timer are plain storage; header
        // type 0, single function.
        writable[BHLC_REG] = 0x0000_ffff;
        regs[11] = u32::from(ids.subsystem_id) << 16 | u32::from(ids.subsystem_vendor_id);
        // Interrupt line is scratch storage for the guest.
        writable[INTERRUPT_REG] = 0x0000_00ff;
        Self {
            regs,
            writable,
            bars: [None; NUM_BARS_USIZE],
            last_cap: None,
            next_cap: CAPABILITY_LIST_START,
            bar_move_attempts: 0,
        }
    }

    /// Sets the interrupt pin (0 = none, 1..=4 = INTA#..INTD#).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.write_raw(INTERRUPT_REG * 4 + 1, &[pin]);
    }

    /// Declares a BAR at a fixed address. The size must be a power of two
    /// (at least 16 bytes for memory, 4 for I/O) and the address naturally
    /// aligned; a 64-bit BAR also takes register `index + 1`.
    pub fn add_bar(&mut self, bar: Bar) -> Result<(), PciError> {
        let err = |reason| PciError::BadBar {
            index: bar.index,
            reason,
        };
        let idx = usize::from(bar.index);
        let last = if bar.kind == BarKind::Mmio64 {
            idx + 1
        } else {
            idx
        };
        if last >= NUM_BARS_USIZE {
            return Err(err("index out of range"));
        }
        if !bar.size.is_power_of_two() {
            return Err(err("size is not a power of two"));
        }
        let min = if bar.kind == BarKind::Io { 4 } else { 16 };
        if bar.size < min {
            return Err(err("size is too small"));
        }
        if bar.addr & (bar.size - 1) != 0 {
            return Err(err("address is not aligned to the size"));
        }
        if bar.addr.checked_add(bar.size).is_none() {
            return Err(err("range wraps around"));
        }
        let fits = match bar.kind {
            BarKind::Mmio64 => true,
            BarKind::Mmio32 => bar.addr + bar.size <= 1 << 32,
            BarKind::Io => bar.addr + bar.size <= 1 << 16,
        };
        if !fits {
            return Err(err("address does not fit the BAR type"));
        }
        if (idx..=last).any(|i| self.bar_covering(i).is_some()) {
            return Err(err("register already used"));
        }
        self.bars[idx] = Some(bar);
        for reg in idx..=last {
            let (_, flags, orig) = Self::bar_reg_layout(&bar, reg != idx);
            self.regs[BAR0_REG + reg] = orig | flags;
        }
        Ok(())
    }

    /// The BARs declared with [`Self::add_bar`], at their original
    /// addresses.
    pub fn bars(&self) -> Vec<Bar> {
        self.bars.iter().flatten().copied().collect()
    }

    /// Appends a capability. `data[0]` is the capability id; `data[1]`
    /// (the next pointer) is filled in here. Returns the capability's
    /// offset in configuration space. The capability is read-only for the
    /// guest unless [`Self::set_writable_bits`] says otherwise.
    pub fn add_capability(&mut self, data: &[u8]) -> Result<usize, PciError> {
        if data.len() < 2 || data.len() > 256 - CAPABILITY_LIST_START {
            return Err(PciError::CapabilityLength(data.len()));
        }
        let offset = self.next_cap.next_multiple_of(4);
        let end = offset + data.len();
        if end > 256 {
            return Err(PciError::CapabilitySpace(data.len()));
        }
        self.write_raw(offset, data);
        self.write_raw(offset + 1, &[0]);
        match self.last_cap {
            Some(prev) => self.write_raw(prev + 1, &[offset as u8]),
            None => self.write_raw(CAP_POINTER_OFFSET, &[offset as u8]),
        }
        self.regs[COMMAND_STATUS_REG] |= STATUS_CAP_LIST;
        self.last_cap = Some(offset);
        self.next_cap = end;
        Ok(offset)
    }

    /// Makes `mask` bits of dword `reg` writable by the guest.
    pub fn set_writable_bits(&mut self, reg: usize, mask: u32) {
        if let Some(w) = self.writable.get_mut(reg) {
            *w |= mask;
        }
    }

    /// Reads dword `reg`; registers past the 256-byte space read all-ones.
    pub fn read_reg(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(u32::MAX)
    }

    /// Reads one byte of configuration space (0xff past the end).
    pub fn read_byte(&self, offset: usize) -> u8 {
        (self.read_reg(offset / 4) >> ((offset % 4) * 8)) as u8
    }

    /// Stores bytes without write masks (for the device model itself);
    /// bytes past the end are dropped.
    pub fn write_raw(&mut self, offset: usize, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let off = offset + i;
            if let Some(reg) = self.regs.get_mut(off / 4) {
                let shift = (off % 4) * 8;
                *reg = (*reg & !(0xff << shift)) | (u32::from(b) << shift);
            }
        }
    }

    /// A guest write of `data` at byte `offset` inside dword `reg`, with
    /// write masks and BAR semantics applied. Malformed accesses are
    /// ignored.
    pub fn write_reg(&mut self, reg: usize, offset: u64, data: &[u8]) {
        let Some(&old) = self.regs.get(reg) else {
            return;
        };
        let Some(new) = merge_dword(old, offset, data) else {
            tracing::debug!(reg, offset, len = data.len(), "malformed PCI config write");
            return;
        };
        if (BAR0_REG..BAR0_REG + NUM_BARS_USIZE).contains(&reg) {
            self.write_bar_reg(reg - BAR0_REG, new);
            return;
        }
        let mask = self.writable[reg];
        self.regs[reg] = (old & !mask) | (new & mask);
    }

    /// The BAR whose registers include BAR register `i`, and whether `i`
    /// is its upper half.
    fn bar_covering(&self, i: usize) -> Option<(Bar, bool)> {
        if let Some(bar) = self.bars.get(i).copied().flatten() {
            return Some((bar, false));
        }
        let prev = self.bars.get(i.checked_sub(1)?).copied().flatten()?;
        (prev.kind == BarKind::Mmio64).then_some((prev, true))
    }

    /// (address mask, flag bits, original address bits) of one BAR
    /// register.
    fn bar_reg_layout(bar: &Bar, upper: bool) -> (u32, u32, u32) {
        let size_mask = !(bar.size - 1);
        if upper {
            return ((size_mask >> 32) as u32, 0, (bar.addr >> 32) as u32);
        }
        match bar.kind {
            BarKind::Io => (size_mask as u32 & 0xffff_fffc, 0x1, bar.addr as u32),
            BarKind::Mmio32 => (size_mask as u32 & 0xffff_fff0, 0x0, bar.addr as u32),
            BarKind::Mmio64 => (size_mask as u32 & 0xffff_fff0, 0x4, bar.addr as u32),
        }
    }

    fn write_bar_reg(&mut self, i: usize, value: u32) {
        let Some((bar, upper)) = self.bar_covering(i) else {
            return; // unimplemented BAR: hardwired to zero
        };
        let (mask, flags, orig) = Self::bar_reg_layout(&bar, upper);
        let addr_bits = value & mask;
        // All-ones is the sizing probe (the guest reads the mask back);
        // the original address is the restore after sizing.
        if addr_bits == mask || addr_bits == orig {
            self.regs[BAR0_REG + i] = addr_bits | flags;
            return;
        }
        // Moving a BAR would need the VMM to re-register the MMIO range and
        // the ioeventfds; petrel does not support it.
        self.bar_move_attempts += 1;
        let n = self.bar_move_attempts;
        if n <= 8 || n & 1023 == 0 {
            tracing::warn!(
                bar = bar.index,
                upper,
                value = format_args!("{value:#x}"),
                attempts = n,
                "guest tried to move a PCI BAR; keeping it at {:#x}",
                bar.addr
            );
        }
        self.regs[BAR0_REG + i] = orig | flags;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> PciIds {
        PciIds {
            vendor_id: 0x1af4,
            device_id: 0x1041,
            revision: 1,
            class_code: 0x02_00_00,
            subsystem_vendor_id: 0x1af4,
            subsystem_id: 0x40,
        }
    }

    #[test]
    fn header_fields() {
        let mut c = PciConfiguration::new(ids());
        assert_eq!(c.read_reg(0), 0x1041_1af4);
        assert_eq!(c.read_reg(2), 0x0200_0001);
        assert_eq!(c.read_reg(11), 0x0040_1af4);
        assert_eq!(c.read_reg(64), u32::MAX);
        // Ids are read-only.
        c.write_reg(0, 0, &[0, 0, 0, 0]);
        assert_eq!(c.read_reg(0), 0x1041_1af4);
        // Command: memory + bus master stick, reserved bits do not.
        c.write_reg(1, 0, &[0xff, 0xff]);
        assert_eq!(c.read_reg(1) & 0xffff, COMMAND_WRITABLE);
        c.set_interrupt_pin(1);
        c.write_reg(15, 0, &[0x0b, 0x04]);
        assert_eq!(c.read_reg(15), 0x0000_010b);
        // Malformed accesses are ignored.
        c.write_reg(15, 3, &[1, 2]);
        c.write_reg(15, 0, &[1, 2, 3]);
        c.write_reg(99, 0, &[1]);
        assert_eq!(c.read_reg(15), 0x0000_010b);
    }

    #[test]
    fn bar32_sizing() {
        let mut c = PciConfiguration::new(ids());
        let bar = Bar {
            index: 1,
            addr: 0xc000_1000,
            size: 0x1000,
            kind: BarKind::Mmio32,
        };
        c.add_bar(bar).unwrap();
        assert_eq!(c.read_reg(5), 0xc000_1000);
        c.write_reg(5, 0, &u32::MAX.to_le_bytes());
        assert_eq!(c.read_reg(5), 0xffff_f000);
        c.write_reg(5, 0, &0xc000_1000u32.to_le_bytes());
        assert_eq!(c.read_reg(5), 0xc000_1000);
        // Moving is refused.
        c.write_reg(5, 0, &0xd000_0000u32.to_le_bytes());
        assert_eq!(c.read_reg(5), 0xc000_1000);
        assert_eq!(c.bars(), vec![bar]);
        // Unused BARs are hardwired to zero.
        c.write_reg(4, 0, &u32::MAX.to_le_bytes());
        assert_eq!(c.read_reg(4), 0);
        // Expansion ROM absent.
        c.write_reg(12, 0, &u32::MAX.to_le_bytes());
        assert_eq!(c.read_reg(12), 0);
    }

    #[test]
    fn bar64_and_io_sizing() {
        let mut c = PciConfiguration::new(ids());
        c.add_bar(Bar {
            index: 0,
            addr: 0x1_c000_8000,
            size: 0x8000,
            kind: BarKind::Mmio64,
        })
        .unwrap();
        c.add_bar(Bar {
            index: 2,
            addr: 0x1000,
            size: 0x20,
            kind: BarKind::Io,
        })
        .unwrap();
        assert_eq!(c.read_reg(4), 0xc000_8004);
        assert_eq!(c.read_reg(5), 0x1);
        // Linux's order: size low, size high, then restore both.
        c.write_reg(4, 0, &u32::MAX.to_le_bytes());
        c.write_reg(5, 0, &u32::MAX.to_le_bytes());
        let lo = c.read_reg(4);
        let hi = c.read_reg(5);
        assert_eq!(lo, 0xffff_8004);
        assert_eq!(hi, 0xffff_ffff);
        let size = !((u64::from(hi) << 32) | u64::from(lo & !0xf)) + 1;
        assert_eq!(size, 0x8000);
        c.write_reg(4, 0, &0xc000_8000u32.to_le_bytes());
        c.write_reg(5, 0, &1u32.to_le_bytes());
        assert_eq!(c.read_reg(4), 0xc000_8004);
        assert_eq!(c.read_reg(5), 1);
        c.write_reg(6, 0, &u32::MAX.to_le_bytes());
        assert_eq!(c.read_reg(6), 0xffff_ffe1);
        c.write_reg(6, 0, &0x1000u32.to_le_bytes());
        assert_eq!(c.read_reg(6), 0x1001);
    }

    #[test]
    fn bad_bars_rejected() {
        let mut c = PciConfiguration::new(ids());
        let mk = |index, addr, size, kind| Bar {
            index,
            addr,
            size,
            kind,
        };
        assert!(c.add_bar(mk(5, 0, 0x1000, BarKind::Mmio64)).is_err());
        assert!(c.add_bar(mk(6, 0, 0x1000, BarKind::Mmio32)).is_err());
        assert!(c.add_bar(mk(0, 0, 0x1800, BarKind::Mmio32)).is_err());
        assert!(c.add_bar(mk(0, 0x800, 0x1000, BarKind::Mmio32)).is_err());
        assert!(c.add_bar(mk(0, 0, 8, BarKind::Mmio32)).is_err());
        assert!(c.add_bar(mk(0, 1 << 32, 0x1000, BarKind::Mmio32)).is_err());
        c.add_bar(mk(0, 0, 0x1000, BarKind::Mmio64)).unwrap();
        assert!(c.add_bar(mk(1, 0x1000, 0x1000, BarKind::Mmio32)).is_err());
    }

    #[test]
    fn capability_chain() {
        let mut c = PciConfiguration::new(ids());
        assert_eq!(c.read_reg(1) & STATUS_CAP_LIST, 0);
        let a = c.add_capability(&[0x11, 0xee, 1, 2, 3, 4, 5]).unwrap();
        let b = c.add_capability(&[0x09, 0, 16]).unwrap();
        assert_eq!(a, 0x40);
        assert_eq!(b, 0x48);
        assert_ne!(c.read_reg(1) & STATUS_CAP_LIST, 0);
        assert_eq!(c.read_byte(0x34), 0x40);
        assert_eq!(c.read_byte(0x41), 0x48);
        assert_eq!(c.read_byte(0x49), 0);
        assert_eq!(c.read_byte(0x42), 1);
        // Read-only unless made writable.
        c.write_reg(0x12, 0, &[0xff]);
        assert_eq!(c.read_byte(0x48), 0x09);
        assert!(c.add_capability(&[0x09; 200]).is_err());
        assert!(c.add_capability(&[0x09]).is_err());
    }
}
