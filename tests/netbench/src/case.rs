//! What one benchmark case is: a direction, a frame size, a number of
//! queue pairs and a mode, and what the RX loops need to inject.

use crate::frames::Size;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Tx,
    Rx,
}

impl Dir {
    pub fn name(self) -> &'static str {
        match self {
            Dir::Tx => "TX",
            Dir::Rx => "RX",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Raw,
    Direct,
    Worker,
    E1000,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::Direct => "direct",
            Mode::Worker => "worker",
            Mode::E1000 => "e1000",
        }
    }
}

pub struct RxSetup {
    pub ifindex: libc::c_int,
    pub size: Size,
    pub sports: Vec<u16>,
    pub window: usize,
    /// Bytes per driver RX buffer (`--rx-buf`).
    pub buf_len: usize,
}

/// Whether the e1000 mode can run a case: one queue, and no GSO receive
/// (the device turns the tap's offloads off, so the kernel would segment
/// an injected 64 KiB frame into 45 before the tap).
pub fn e1000_supported(dir: Dir, size: Size, pairs: usize) -> bool {
    pairs == 1 && !(dir == Dir::Rx && size.gso)
}
