//! The e1000 (petrel's `E1000`): its register file through BAR0 and the
//! I/O window (IOADDR/IODATA), the EEPROM and PHY interfaces, interrupt
//! cause/mask registers, and the transmit ring the TDT write walks on the
//! calling thread (legacy and context/data descriptors, TSO, checksums)
//! over guest memory the input writes.
#![no_main]

use std::sync::Arc;

use devices::e1000::E1000;
use devices::pci::PciDevice;
use libfuzzer_sys::fuzz_target;
use net_backend::{seqpacket_pair, FrameBackend};
use petrel_fuzz::{memory, Input, Line, MEM_SIZE};
use vm_memory::{Bytes, GuestAddress};

const BAR0: u64 = 0xc002_0000;
const BAR1: u64 = 0xc000;
/// Registers the driver programs most (TX/RX ring and control).
const HOT: [u64; 16] = [
    0x0000, 0x0400, 0x3800, 0x3804, 0x3808, 0x3810, 0x3818, 0x2800, 0x2804, 0x2808, 0x2810, 0x2818,
    0x0100, 0x00d0, 0x00d8, 0x0014,
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mem = memory();
    let Ok((dev_end, mut peer)) = seqpacket_pair() else {
        return;
    };
    let Ok(mut dev) = E1000::new(
        "fuzz".into(),
        [0x52, 0x54, 0, 0x12, 0x34, 0x56],
        Box::new(dev_end),
        mem.clone(),
        Arc::new(Line::default()),
        BAR0,
        BAR1,
    ) else {
        return;
    };
    let mut frame = vec![0u8; 70_000];
    let mut buf = [0u8; 4];
    for _ in 0..128 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 6 {
            0 => {
                let reg = HOT[usize::from(input.u8()) % HOT.len()];
                dev.bar_write(0, reg, &input.u32().to_le_bytes());
            }
            1 => {
                let off = u64::from(input.u32() % 0x2_0000);
                let w = input.width().min(4);
                let bytes = input.bytes(w).to_vec();
                dev.bar_write(0, off, &bytes);
            }
            2 => {
                let off = u64::from(input.u32() % 0x2_0000);
                dev.bar_read(0, off, &mut buf);
            }
            3 => {
                let off = u64::from(input.u8() % 8);
                let bytes = input.u32().to_le_bytes();
                if input.bool() {
                    dev.bar_write(1, off, &bytes);
                } else {
                    dev.bar_read(1, off, &mut buf);
                }
            }
            4 => {
                let addr = u64::from(input.u32()) % MEM_SIZE as u64;
                let len = usize::from(input.u8()) * 4;
                let _ = mem.write_slice(input.bytes(len), GuestAddress(addr));
            }
            _ => {
                let reg = usize::from(input.u8() % 64);
                let bytes = input.u32().to_le_bytes();
                dev.config_write(reg, 0, &bytes);
            }
        }
        while peer.read_frame(&mut frame).is_ok() {}
    }
    dev.machine_reset();
});
