//! An Intel 82540EM ("e1000") gigabit Ethernet controller, enough for
//! Linux's `e1000` driver (and other 8254x drivers) to bring the link up,
//! get a DHCP lease and move TCP traffic.
//!
//! - PCI function 8086:100e rev 3, class 0x020000, subsystem 8086:001e,
//!   INTA#. BAR0: 128 KiB 32-bit non-prefetchable register file. BAR1:
//!   64-byte I/O window (IOADDR at +0, IODATA at +4), which Linux uses for
//!   the CTRL.RST write on this part.
//! - Microwire EEPROM (64 words, bit-banged through EECD or read through
//!   EERD), Marvell 88E1011 PHY through MDIC, link always up at 1000 Mb/s
//!   full duplex.
//! - Legacy INTx only: the device drives an [`IntxLine`] from ICR & IMS;
//!   ICR reads clear. Interrupt moderation as the 8254x SDM specifies it
//!   (`moderation.rs`): ITR (256 ns units) spaces assertions of the line,
//!   causes arriving inside the interval accumulate in ICR and assert at
//!   its end; RDTR/RADV (1.024 µs units) delay RXT0, RDTR.FPD flushes it;
//!   TIDV/TADV delay TXDW for descriptors with IDE. Linux programs ITR at
//!   20 000 interrupts/s, RDTR 0 (RXT0 at once, then ITR), TIDV 8, TADV 32.
//!   A CLOCK_MONOTONIC timerfd the rx worker watches ends the waits. Bounds:
//!   bits 15:0 only (≤ 16.8 ms for ITR, ≤ 67.1 ms for a delay, also when
//!   RADV/TADV is 0), ITR under 39 counts as 39 (≈ 10 µs).
//! - Transmit on the vCPU thread (see [`E1000`]): legacy, context and data
//!   descriptors; IP/TCP/UDP checksum insertion and TSO are done in the
//!   device, so the backend gets complete frames with a zeroed virtio-net
//!   header — except that a TCP TSO packet goes whole, as one GSO frame, to
//!   a backend that accepts GSO (a tap: the kernel segments it). One TDT
//!   write does a bounded amount of work (frames, descriptors, bytes); the
//!   worker thread continues the rest.
//! - Receive on a worker thread, started by [`E1000::activate`]: address filter (RAL/RAH, MTA hash, BAM,
//!   UPE/MPE, VFTA), buffers of RCTL.BSIZE, frames spanning descriptors,
//!   padding to 60 bytes, FCS appended unless RCTL.SECRC, VLAN stripping
//!   with CTRL.VME. The backend's offloads are turned off
//!   ([`net_backend::Offloads::NONE`]) so it never hands over partial frames.
//!
//! Guest-controlled values (ring addresses and lengths, head/tail indices,
//! descriptor lengths, offload offsets, MSS) are checked: bad ones drop the
//! packet or stop the ring pass and are counted in [`E1000Counters`]; no
//! pass handles more than one ring's worth of descriptors.

mod deadline_timer;
mod device;
mod eeprom;
mod moderation;
mod phy;
mod reg_file;
pub mod regs;
mod rx;
mod state;
mod tx;
mod tx_pass;
mod worker;

pub use crate::pci::IntxLine;
pub use device::{E1000CounterSource, E1000};
pub use rx::RX_MIN_FRAME_LEN;
pub use state::E1000State;
pub use tx::{MAX_TSO_SEGMENTS, MIN_TSO_MSS, TX_BUF_LEN, TX_PASS_FRAMES};

use std::io;

use crate::pci::PciError;

/// PCI vendor id of Intel.
pub const INTEL_VENDOR_ID: u16 = 0x8086;
/// 82540EM (desktop, copper).
pub const E1000_DEVICE_ID: u16 = 0x100e;
pub const E1000_REVISION: u8 = 3;
pub const E1000_SUBSYSTEM_ID: u16 = 0x001e;
/// Size of BAR0 (memory, register file).
pub const BAR0_SIZE: u64 = regs::MMIO_SIZE;
/// Size of BAR1 (port I/O, IOADDR/IODATA).
pub const BAR1_SIZE: u64 = 0x40;
/// Every frame to and from the backend starts with this many bytes of
/// virtio-net header (all zero from this device).
pub const VNET_HDR_LEN: usize = net_backend::VNET_HDR_LEN;

#[derive(Debug, thiserror::Error)]
pub enum E1000Error {
    #[error(transparent)]
    Pci(#[from] PciError),
    #[error("cannot create an eventfd")]
    EventFd(#[source] io::Error),
    #[error("cannot create the interrupt moderation timer")]
    Timer(#[source] io::Error),
    #[error("cannot turn the backend's offloads off")]
    Offloads(#[source] io::Error),
    #[error("cannot start the rx worker thread")]
    Spawn(#[source] io::Error),
    #[error("the rx worker panicked earlier; receive is gone")]
    RxLost,
}

/// Device-side counters (the guest's statistics registers are separate and
/// clear on read).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct E1000Counters {
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Packets not sent: malformed descriptors, buffers outside memory,
    /// packets over [`TX_BUF_LEN`], absurd TSO parameters, backend errors.
    pub tx_dropped: u64,
    /// TX ring passes stopped: TDH/TDT/TDLEN out of range, ring outside
    /// guest memory.
    pub tx_ring_errors: u64,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames the address filter rejected.
    pub rx_filtered: u64,
    /// Frames dropped: receiver disabled, runts, too long, ring unusable,
    /// or the ring reprogrammed while the frame was being written.
    pub rx_dropped: u64,
    /// RX descriptors or buffers outside guest memory.
    pub rx_ring_errors: u64,
    pub backend_errors: u64,
    /// Accesses to registers this model does not implement (read 0,
    /// writes ignored).
    pub unknown_reg_accesses: u64,
}

#[cfg(test)]
mod tests;
