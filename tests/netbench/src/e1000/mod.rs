//! The `e1000` mode: the e1000 model driven through BAR 0 as Linux's e1000
//! driver would, one queue, over the same tap and frames.

mod regs;
mod rx;
mod tx;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread;

use devices::e1000::{regs as e1k, E1000};
use devices::pci::IntxLine;
use net_backend::Tap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use regs::BenchIntx;

use crate::case::Dir;
use crate::frames::GUEST_MAC;
use crate::run::{err, CaseCtx, Spawned};
use regs::{e1k_setup, E1kRegs};
use rx::{e1000_rx, E1kRx};
use tx::{e1000_tx, E1kTx};

/// Descriptors per e1000 ring (Linux's default for both rings).
pub const E1K_RING: u32 = 256;
/// Guest memory layout of the e1000 case (one `PAIR_MEM` region).
pub const E1K_TX_RING_OFF: u64 = 0;
pub const E1K_RX_RING_OFF: u64 = 0x1000;
pub const E1K_RX_BUF_OFF: u64 = 0x10_0000;
pub const E1K_TX_BUF_OFF: u64 = 0x50_0000;
/// RCTL.BSIZE 2048 (BSIZE 0, BSEX clear), as Linux uses for a 1500 MTU.
pub const E1K_RX_BUF: u64 = 2048;
/// Linux's E1000_RX_BUFFER_WRITE: RDT is written every 16 buffers.
pub const E1K_RDT_EVERY: u32 = 16;
/// Linux's E1000_MAX_DATA_PER_TXD: TSO payload is split in 4 KiB descriptors.
pub const E1K_MAX_TXD_DATA: usize = 4096;
/// Frames (TSO: packets) posted per TDT write, like virtio's TX refill.
pub const E1K_TX_BATCH: u32 = 32;
/// Linux's IMS_ENABLE_MASK: RXT0 | TXDW | RXDMT0 | RXSEQ | LSC.
pub const E1K_IMS: u32 =
    e1k::icr::RXT0 | e1k::icr::TXDW | e1k::icr::RXDMT0 | e1k::icr::RXSEQ | e1k::icr::LSC;
/// Interrupt moderation as Linux's e1000 programs it (e1000_configure_rx
/// and _tx, InterruptThrottleRate=3 starting at 20 000 interrupts/s):
/// ITR = 1e9 / (rate × 256), RDTR = 0, RADV = 8, TIDV = 8, TADV = 32 and IDE
/// on transmit descriptors. `NETBENCH_E1000_ITR` sets the rate; 0 turns
/// moderation off (ITR, RDTR and TIDV 0, no IDE: every cause at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E1kModeration {
    /// Interrupts per second (0: off).
    pub rate: u32,
}

impl E1kModeration {
    pub const LINUX_RATE: u32 = 20_000;

    pub fn from_env() -> Result<Self, String> {
        let rate = match std::env::var("NETBENCH_E1000_ITR") {
            Ok(v) => v
                .parse()
                .map_err(|e| format!("NETBENCH_E1000_ITR={v}: {e}"))?,
            Err(_) => Self::LINUX_RATE,
        };
        Ok(Self { rate })
    }

    pub fn on(self) -> bool {
        self.rate != 0
    }

    /// The ITR register value (256 ns units).
    pub fn itr(self) -> u32 {
        if self.rate == 0 {
            0
        } else {
            1_000_000_000 / (self.rate * 256)
        }
    }
}

pub const E1K_BAR0: u64 = 0xc000_0000;
pub const E1K_BAR1: u64 = 0xc000;

pub fn e1k_desc(addr: u64, lower: u32, upper: u32) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&lower.to_le_bytes());
    d[12..16].copy_from_slice(&upper.to_le_bytes());
    d
}

/// Creates and activates the device over the one tap, brings it up as the
/// driver would and starts the benchmark thread.
pub fn spawn(ctx: &CaseCtx, taps: Vec<Tap>) -> Result<Spawned, String> {
    let line = Arc::new(BenchIntx {
        asserts: AtomicU64::new(0),
        fd: EventFd::new(EFD_NONBLOCK).map_err(err("eventfd"))?,
    });
    let tap = taps.into_iter().next().ok_or("no tap")?;
    let dyn_line: Arc<dyn IntxLine> = line.clone();
    let mut dev = E1000::new(
        "pbench-e1000".into(),
        GUEST_MAC,
        Box::new(tap),
        ctx.mem.clone(),
        dyn_line,
        E1K_BAR0,
        E1K_BAR1,
    )
    .map_err(err("E1000::new"))?;
    dev.activate().map_err(err("E1000::activate"))?;
    let mut regs = E1kRegs { dev, mmio: 0 };
    let moderation = E1kModeration::from_env()?;
    eprintln!(
        "e1000: interrupt moderation {} (ITR {})",
        if moderation.on() {
            format!("at {} interrupts/s", moderation.rate)
        } else {
            "off".into()
        },
        moderation.itr()
    );
    let rxd = E1kRx::new(&ctx.mem, 0);
    let mut txd = E1kTx::new(&ctx.mem, 0, ctx.size, ctx.tx_sport(0));
    txd.ide = moderation.on();
    e1k_setup(&mut regs, 0, moderation);
    let (s, c) = ctx.thread_args(0);
    let l = Arc::clone(&line);
    let h = match ctx.dir {
        Dir::Tx => thread::spawn(move || e1000_tx(regs, txd, l, s, c)),
        Dir::Rx => {
            let rx = ctx.rx_setup(0);
            thread::spawn(move || e1000_rx(regs, rxd, l, rx, s, c))
        }
    };
    let mut spawned = Spawned::default();
    spawned.handles.push(h);
    spawned.intx = Some(line);
    Ok(spawned)
}
