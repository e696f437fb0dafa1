//! What the fuzz targets share: a reader over the fuzz input, guest
//! memory, and the sinks the device models signal into (interrupts and
//! MSI vectors that only count). The models themselves are petrel's.

use std::sync::atomic::{AtomicU64, Ordering};

use devices::pci::{IntxLine, MsiMessage, MsiVectors};
use devices::virtio::{VirtioInterrupt, VirtioInterruptType};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Guest RAM of every target.
pub const MEM_SIZE: usize = 1 << 20;

pub fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).expect("guest memory")
}

/// The fuzz input, read front to back; past its end everything reads 0.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }

    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// 1, 2, 4 or 8 bytes (an access width).
    pub fn width(&mut self) -> usize {
        1 << (self.u8() % 4)
    }
}

/// A virtio interrupt that counts.
#[derive(Default)]
pub struct CountingInterrupt(pub AtomicU64);

impl VirtioInterrupt for CountingInterrupt {
    fn trigger(&self, _int_type: VirtioInterruptType) -> std::io::Result<()> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn notifier(&self, _int_type: VirtioInterruptType) -> Option<&EventFd> {
        None
    }
}

/// An INTx line that keeps its level.
#[derive(Default)]
pub struct Line(pub std::sync::atomic::AtomicBool);

impl IntxLine for Line {
    fn set_level(&self, asserted: bool) {
        self.0.store(asserted, Ordering::Relaxed);
    }
}

/// MSI vectors, each an eventfd, routed nowhere.
pub struct Vectors {
    fds: Vec<EventFd>,
}

impl Vectors {
    pub fn new(n: u16) -> Self {
        Self {
            fds: (0..n)
                .map(|_| EventFd::new(EFD_NONBLOCK).expect("eventfd"))
                .collect(),
        }
    }
}

impl MsiVectors for Vectors {
    fn len(&self) -> u16 {
        self.fds.len() as u16
    }
    fn update(&self, _index: u16, _msg: Option<MsiMessage>) -> std::io::Result<()> {
        Ok(())
    }
    fn notifier(&self, index: u16) -> Option<&EventFd> {
        self.fds.get(usize::from(index))
    }
    fn trigger(&self, index: u16) -> std::io::Result<()> {
        if let Some(fd) = self.fds.get(usize::from(index)) {
            let _ = fd.write(1);
            let _ = fd.read();
        }
        Ok(())
    }
}

/// libFuzzer's panic hook aborts on every panic; petrel runs third-party
/// decoders of guest bytes under `net::contained::contain`, where a panic
/// is caught and the message dropped (the VMM's own hook lets those pass
/// too), so only a panic outside it is a crash.
pub fn contain_decoder_panics() {
    let libfuzzer = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !net::contained::active() {
            libfuzzer(info);
        }
    }));
}
