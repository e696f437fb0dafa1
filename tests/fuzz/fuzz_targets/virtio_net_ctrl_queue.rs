//! The virtio-net control queue (petrel's `CtrlQueue`): commands the input
//! writes into guest memory — any class, command and length, split over
//! descriptors or not, with a writable or missing ack byte.
#![no_main]

use std::sync::{Arc, Mutex};

use devices::virtio::net::{CtrlQueue, CtrlState, NetContext, NetMetrics};
use devices::virtio::test_driver::DriverRing;
use libfuzzer_sys::fuzz_target;
use petrel_fuzz::{memory, CountingInterrupt, Input, MEM_SIZE};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const CTRL_RING: u64 = 0;
const BUF: u64 = 0x1_0000;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let features = input.u64();
    let max_pairs = 1 + u16::from(input.u8() % 8);
    let size = 1u16 << (input.u8() % 6);
    let mem = memory();
    let mut ring = DriverRing::new(&mem, CTRL_RING, size);
    let Ok(waker) = EventFd::new(EFD_NONBLOCK) else {
        return;
    };
    let ctx = Arc::new(NetContext::new(
        "fuzz".into(),
        mem.clone(),
        Arc::new(CountingInterrupt::default()),
        Arc::new(NetMetrics::new(usize::from(max_pairs))),
        features,
        max_pairs,
        Arc::new(Mutex::new(CtrlState::default())),
    ));
    let wakers = (0..max_pairs)
        .filter_map(|_| waker.try_clone().ok())
        .collect();
    let mut ctrl = CtrlQueue::new(ctx, ring.queue(input.bool()), 2 * max_pairs, wakers);
    for _ in 0..32 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 5 {
            // A command: header, data and ack, in 1 to 3 descriptors.
            0 => {
                let n = u64::from(ring.avail_idx() % 64);
                let base = BUF + n * 0x1000;
                let len = usize::from(input.u16() % 0x800);
                let cmd = input.bytes(len).to_vec();
                let _ = mem.write_slice(&cmd, GuestAddress(base));
                let split = u32::from(input.u16()) % (cmd.len() as u32 + 1);
                let ack = base + 0x800;
                let chain: Vec<(u64, u32, bool)> = match input.u8() % 3 {
                    0 => vec![(base, cmd.len() as u32, false), (ack, 1, true)],
                    1 => vec![
                        (base, split, false),
                        (base + u64::from(split), cmd.len() as u32 - split, false),
                        (ack, 1, true),
                    ],
                    _ => vec![(base, cmd.len() as u32, input.bool())],
                };
                if usize::from(ring.avail_idx()) < 4 * usize::from(size) {
                    ring.add_chain(&chain);
                }
            }
            1 => {
                let (i, addr, len, fl, next) = (
                    input.u16(),
                    input.u64(),
                    input.u32(),
                    input.u16(),
                    input.u16(),
                );
                ring.set_desc(i % size, addr, len, fl, next);
            }
            2 => ring.set_avail_idx(input.u16()),
            3 => {
                let addr = u64::from(input.u32()) % MEM_SIZE as u64;
                let len = usize::from(input.u8()) * 4;
                let _ = mem.write_slice(input.bytes(len), GuestAddress(addr));
            }
            _ => {
                let _ = ctrl.process();
                let _ = waker.read();
            }
        }
    }
    let _ = ctrl.process();
});
