//! Register offsets (bytes into BAR0) and bit definitions of the 82540EM,
//! from the Intel PCI/PCI-X Family of Gigabit Ethernet Controllers Software
//! Developer's Manual (8254x SDM).

// General.
pub const CTRL: u64 = 0x0000;
pub const STATUS: u64 = 0x0008;
pub const EECD: u64 = 0x0010;
pub const EERD: u64 = 0x0014;
pub const CTRL_EXT: u64 = 0x0018;
pub const FLA: u64 = 0x001c;
pub const MDIC: u64 = 0x0020;
pub const FCAL: u64 = 0x0028;
pub const FCAH: u64 = 0x002c;
pub const FCT: u64 = 0x0030;
pub const VET: u64 = 0x0038;
pub const ICR: u64 = 0x00c0;
pub const ITR: u64 = 0x00c4;
pub const ICS: u64 = 0x00c8;
pub const IMS: u64 = 0x00d0;
pub const IMC: u64 = 0x00d8;
pub const RCTL: u64 = 0x0100;
pub const FCTTV: u64 = 0x0170;
pub const TXCW: u64 = 0x0178;
pub const RXCW: u64 = 0x0180;
pub const TCTL: u64 = 0x0400;
pub const TIPG: u64 = 0x0410;
pub const AIT: u64 = 0x0458;
pub const LEDCTL: u64 = 0x0e00;
pub const PBA: u64 = 0x1000;
pub const FCRTL: u64 = 0x2160;
pub const FCRTH: u64 = 0x2168;
// Receive.
pub const RDBAL: u64 = 0x2800;
pub const RDBAH: u64 = 0x2804;
pub const RDLEN: u64 = 0x2808;
pub const RDH: u64 = 0x2810;
pub const RDT: u64 = 0x2818;
pub const RDTR: u64 = 0x2820;
pub const RXDCTL: u64 = 0x2828;
pub const RADV: u64 = 0x282c;
pub const RSRPD: u64 = 0x2c00;
pub const TXDMAC: u64 = 0x3000;
// Transmit.
pub const TDBAL: u64 = 0x3800;
pub const TDBAH: u64 = 0x3804;
pub const TDLEN: u64 = 0x3808;
pub const TDH: u64 = 0x3810;
pub const TDT: u64 = 0x3818;
pub const TIDV: u64 = 0x3820;
pub const TXDCTL: u64 = 0x3828;
pub const TADV: u64 = 0x382c;
pub const TSPMT: u64 = 0x3830;
// Statistics (read-clear): 0x4000..0x4100.
pub const STATS_START: u64 = 0x4000;
pub const STATS_END: u64 = 0x4100;
pub const MPC: u64 = 0x4010;
pub const PRC64: u64 = 0x405c;
pub const GPRC: u64 = 0x4074;
pub const BPRC: u64 = 0x4078;
pub const MPRC: u64 = 0x407c;
pub const GPTC: u64 = 0x4080;
pub const GORCL: u64 = 0x4088;
pub const GOTCL: u64 = 0x4090;
pub const ROC: u64 = 0x40ac;
pub const TORL: u64 = 0x40c0;
pub const TOTL: u64 = 0x40c8;
pub const TPR: u64 = 0x40d0;
pub const TPT: u64 = 0x40d4;
pub const PTC64: u64 = 0x40d8;
pub const MPTC: u64 = 0x40f0;
pub const BPTC: u64 = 0x40f4;
pub const TSCTC: u64 = 0x40f8;
// Filters and management.
pub const RXCSUM: u64 = 0x5000;
pub const MTA: u64 = 0x5200;
pub const MTA_LEN: u64 = 128 * 4;
pub const RA: u64 = 0x5400;
/// 16 receive address pairs (RAL, RAH).
pub const RA_ENTRIES: usize = 16;
pub const RA_LEN: u64 = RA_ENTRIES as u64 * 8;
pub const VFTA: u64 = 0x5600;
pub const VFTA_LEN: u64 = 128 * 4;
pub const WUC: u64 = 0x5800;
pub const WUFC: u64 = 0x5808;
pub const WUS: u64 = 0x5810;
pub const MANC: u64 = 0x5820;
pub const IPAV: u64 = 0x5838;
pub const IP4AT: u64 = 0x5840;
pub const IP6AT: u64 = 0x5880;
pub const WUPL: u64 = 0x5900;
pub const WUPM: u64 = 0x5a00;
pub const FFLT: u64 = 0x5f00;
pub const FFMT: u64 = 0x9000;
pub const FFVT: u64 = 0x9800;

/// Size of the register file (BAR0).
pub const MMIO_SIZE: u64 = 0x2_0000;

/// CTRL bits.
pub mod ctrl {
    pub const FD: u32 = 1 << 0;
    pub const SLU: u32 = 1 << 6;
    pub const SPD_1000: u32 = 1 << 9;
    pub const SWDPIN0: u32 = 1 << 18;
    pub const SWDPIN2: u32 = 1 << 20;
    pub const RST: u32 = 1 << 26;
    pub const VME: u32 = 1 << 30;
    /// Reset value (what QEMU's 82540EM reports too).
    pub const DEFAULT: u32 = SWDPIN2 | SWDPIN0 | SPD_1000 | SLU;
}

/// STATUS bits.
pub mod status {
    pub const FD: u32 = 1 << 0;
    pub const LU: u32 = 1 << 1;
    pub const SPEED_1000: u32 = 1 << 7;
    pub const ASDV_1000: u32 = 1 << 9;
    pub const GIO_MASTER_ENABLE: u32 = 1 << 19;
    /// Link up, 1000 Mb/s full duplex, 32-bit 33 MHz conventional PCI.
    pub const VALUE: u32 = GIO_MASTER_ENABLE | ASDV_1000 | SPEED_1000 | LU | FD;
}

/// EECD bits (microwire EEPROM bit-banging).
pub mod eecd {
    pub const SK: u32 = 1 << 0;
    pub const CS: u32 = 1 << 1;
    pub const DI: u32 = 1 << 2;
    pub const DO: u32 = 1 << 3;
    pub const FWE_MASK: u32 = 3 << 4;
    pub const REQ: u32 = 1 << 6;
    pub const GNT: u32 = 1 << 7;
    pub const PRES: u32 = 1 << 8;
    /// On the 82540 bit 9 means "256-word EEPROM"; it must read 0 for the
    /// 64-word part modelled here.
    pub const SIZE: u32 = 1 << 9;
}

/// EERD bits (82540 layout).
pub mod eerd {
    pub const START: u32 = 1 << 0;
    pub const DONE: u32 = 1 << 4;
    pub const ADDR_SHIFT: u32 = 8;
    pub const DATA_SHIFT: u32 = 16;
}

/// MDIC bits.
pub mod mdic {
    pub const DATA_MASK: u32 = 0xffff;
    pub const REG_SHIFT: u32 = 16;
    pub const PHY_SHIFT: u32 = 21;
    pub const OP_WRITE: u32 = 1 << 26;
    pub const OP_READ: u32 = 1 << 27;
    pub const READY: u32 = 1 << 28;
    pub const ERROR: u32 = 1 << 30;
}

/// Interrupt cause bits (ICR, ICS, IMS, IMC).
pub mod icr {
    pub const TXDW: u32 = 1 << 0;
    pub const TXQE: u32 = 1 << 1;
    pub const LSC: u32 = 1 << 2;
    pub const RXSEQ: u32 = 1 << 3;
    pub const RXDMT0: u32 = 1 << 4;
    pub const RXO: u32 = 1 << 6;
    pub const RXT0: u32 = 1 << 7;
    pub const MDAC: u32 = 1 << 9;
    /// Every cause the 8254x defines.
    pub const ALL: u32 = 0x0001_ffff;
}

/// RCTL bits.
pub mod rctl {
    pub const EN: u32 = 1 << 1;
    pub const UPE: u32 = 1 << 3;
    pub const MPE: u32 = 1 << 4;
    pub const LPE: u32 = 1 << 5;
    pub const RDMTS_SHIFT: u32 = 8;
    pub const MO_SHIFT: u32 = 12;
    pub const BAM: u32 = 1 << 15;
    pub const BSIZE_SHIFT: u32 = 16;
    pub const VFE: u32 = 1 << 18;
    pub const BSEX: u32 = 1 << 25;
    pub const SECRC: u32 = 1 << 26;
}

/// RDTR bits (TIDV, RADV and TADV have the same delay field).
pub mod rdtr {
    /// The delay, in 1.024 µs units.
    pub const DELAY: u32 = 0xffff;
    /// Flush partial descriptor block: raise a pending RXT0 now.
    pub const FPD: u32 = 1 << 31;
}

/// TCTL bits.
pub mod tctl {
    pub const EN: u32 = 1 << 1;
    pub const PSP: u32 = 1 << 3;
}

/// RAH bits.
pub mod rah {
    pub const AV: u32 = 1 << 31;
    pub const AS_MASK: u32 = 3 << 16;
}

/// Transmit descriptor command bits (byte 11 of a legacy descriptor,
/// bits 31:24 of the second dword of extended ones).
pub mod txd {
    pub const CMD_EOP: u8 = 0x01;
    pub const CMD_IFCS: u8 = 0x02;
    pub const CMD_IC: u8 = 0x04;
    /// TSE in data descriptors, and in context descriptors' TUCMD.
    pub const CMD_TSE: u8 = 0x04;
    pub const CMD_RS: u8 = 0x08;
    pub const CMD_DEXT: u8 = 0x20;
    pub const CMD_VLE: u8 = 0x40;
    /// Interrupt delay enable: TXDW for this write-back waits for TIDV/TADV
    /// (bit 7 of CMD, DCMD and TUCMD alike).
    pub const CMD_IDE: u8 = 0x80;
    /// Context TUCMD: TCP (else UDP).
    pub const TUCMD_TCP: u8 = 0x01;
    /// Context TUCMD: IPv4 (else IPv6).
    pub const TUCMD_IP: u8 = 0x02;
    /// Descriptor type in bits 23:20 of the second dword: 0 context, 1 data.
    pub const DTYP_DATA: u32 = 1 << 20;
    pub const DTYP_MASK: u32 = 0xf << 20;
    /// Status: descriptor done.
    pub const STA_DD: u8 = 0x01;
    /// POPTS: insert IP checksum.
    pub const POPTS_IXSM: u8 = 0x01;
    /// POPTS: insert TCP/UDP checksum.
    pub const POPTS_TXSM: u8 = 0x02;
}

/// Receive descriptor status and error bits.
pub mod rxd {
    pub const STA_DD: u8 = 0x01;
    pub const STA_EOP: u8 = 0x02;
    pub const STA_IXSM: u8 = 0x04;
    pub const STA_VP: u8 = 0x08;
    pub const ERR_RXE: u8 = 0x80;
}
