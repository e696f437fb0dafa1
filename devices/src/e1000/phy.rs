//! The Marvell 88E1011 PHY of the 82540EM, reached through MDIC. The link
//! is always up at 1000 Mb/s full duplex with auto-negotiation complete.

use super::regs::mdic;

pub const PHY_CTRL: usize = 0x00;
pub const PHY_STATUS: usize = 0x01;
pub const PHY_ID1: usize = 0x02;
pub const PHY_ID2: usize = 0x03;
pub const PHY_AUTONEG_ADV: usize = 0x04;
pub const PHY_LP_ABILITY: usize = 0x05;
pub const PHY_1000T_CTRL: usize = 0x09;
pub const PHY_1000T_STATUS: usize = 0x0a;
pub const PHY_EXT_STATUS: usize = 0x0f;
pub const M88E1000_PHY_SPEC_CTRL: usize = 0x10;
pub const M88E1000_PHY_SPEC_STATUS: usize = 0x11;
pub const M88E1000_EXT_PHY_SPEC_CTRL: usize = 0x14;
pub const M88E1000_RX_ERR_CNTR: usize = 0x15;

/// The only PHY address that answers.
pub const PHY_ADDR: u32 = 1;
/// M88E1011_I_PHY_ID (0x01410c20): what Linux's e1000 requires of an
/// 82540's PHY (e1000_detect_gig_phy).
pub const PHY_ID1_VALUE: u16 = 0x0141;
pub const PHY_ID2_VALUE: u16 = 0x0c20;

/// PHY_CTRL bits that clear themselves.
const CTRL_RESET: u16 = 1 << 15;
const CTRL_RESTART_AN: u16 = 1 << 9;
/// PHY_STATUS: link up.
pub const STATUS_LINK: u16 = 1 << 2;
/// PHY_STATUS: auto-negotiation complete.
#[cfg(test)]
pub const STATUS_AN_COMPLETE: u16 = 1 << 5;
/// PHY_LP_ABILITY: the partner acknowledged our advertisement.
const LP_ACK: u16 = 1 << 14;

const READ_ONLY: [usize; 8] = [
    PHY_STATUS,
    PHY_ID1,
    PHY_ID2,
    PHY_LP_ABILITY,
    PHY_1000T_STATUS,
    PHY_EXT_STATUS,
    M88E1000_PHY_SPEC_STATUS,
    M88E1000_RX_ERR_CNTR,
];

#[derive(Debug, Clone)]
pub struct Phy {
    regs: [u16; 32],
}

impl Default for Phy {
    fn default() -> Self {
        let mut regs = [0u16; 32];
        // 1000 Mb/s, full duplex, auto-negotiation enabled.
        regs[PHY_CTRL] = 0x1140;
        // Link up, auto-negotiation complete, 10/100 half/full capable,
        // extended status.
        regs[PHY_STATUS] = 0x796d;
        regs[PHY_ID1] = PHY_ID1_VALUE;
        regs[PHY_ID2] = PHY_ID2_VALUE;
        regs[PHY_AUTONEG_ADV] = 0x0de1;
        regs[PHY_LP_ABILITY] = 0x01e0 | LP_ACK;
        regs[PHY_1000T_CTRL] = 0x0e00;
        regs[PHY_1000T_STATUS] = 0x3c00;
        regs[PHY_EXT_STATUS] = 0x3000;
        regs[M88E1000_PHY_SPEC_CTRL] = 0x0360;
        // 1000 Mb/s, full duplex, resolved, link up.
        regs[M88E1000_PHY_SPEC_STATUS] = 0xac00;
        regs[M88E1000_EXT_PHY_SPEC_CTRL] = 0x0d60;
        Self { regs }
    }
}

impl Phy {
    /// Link status in PHY_STATUS (bit 2) and the M88 status (bit 10).
    pub fn set_link_up(&mut self, up: bool) {
        const SPEC_LINK: u16 = 1 << 10;
        let set = |v: u16, bit: u16| if up { v | bit } else { v & !bit };
        self.regs[PHY_STATUS] = set(self.regs[PHY_STATUS], STATUS_LINK);
        self.regs[M88E1000_PHY_SPEC_STATUS] = set(self.regs[M88E1000_PHY_SPEC_STATUS], SPEC_LINK);
    }

    pub fn read(&self, reg: usize) -> u16 {
        self.regs.get(reg).copied().unwrap_or(0)
    }

    pub fn write(&mut self, reg: usize, value: u16) {
        if READ_ONLY.contains(&reg) {
            return;
        }
        let value = if reg == PHY_CTRL {
            // Reset and auto-negotiation restart complete at once.
            value & !(CTRL_RESET | CTRL_RESTART_AN)
        } else {
            value
        };
        if let Some(r) = self.regs.get_mut(reg) {
            *r = value;
        }
    }

    /// Executes an MDIC command and returns the MDIC value the driver then
    /// reads back (always READY; ERROR for other PHY addresses).
    pub fn mdic(&mut self, val: u32) -> u32 {
        let reg = ((val >> mdic::REG_SHIFT) & 0x1f) as usize;
        let phy = (val >> mdic::PHY_SHIFT) & 0x1f;
        let cmd = val & !(mdic::READY | mdic::ERROR);
        if phy != PHY_ADDR {
            return cmd | mdic::READY | mdic::ERROR;
        }
        if val & mdic::OP_READ != 0 {
            (cmd & !mdic::DATA_MASK) | u32::from(self.read(reg)) | mdic::READY
        } else if val & mdic::OP_WRITE != 0 {
            self.write(reg, (val & mdic::DATA_MASK) as u16);
            cmd | mdic::READY
        } else {
            cmd | mdic::READY | mdic::ERROR
        }
    }
}

impl Phy {
    /// The registers, for a snapshot.
    pub(super) fn save(&self) -> Vec<u16> {
        self.regs.to_vec()
    }

    /// Puts saved registers back; refuses a wrong count.
    pub(super) fn restore(&mut self, regs: &[u16]) -> Result<(), String> {
        if regs.len() != self.regs.len() {
            return Err(format!("{} PHY registers saved, 32 expected", regs.len()));
        }
        self.regs.copy_from_slice(regs);
        Ok(())
    }
}
