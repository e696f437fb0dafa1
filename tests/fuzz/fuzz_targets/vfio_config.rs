//! The VFIO passthrough model (petrel's `VfioPciDevice`): probing a
//! device whose configuration space and BARs the input makes up (hostile
//! capability lists and sizes included), BAR placement, then the guest's
//! configuration writes (shadowed BARs, command register, the emulated MSI
//! and MSI-X capabilities) and BAR accesses (the trapped MSI-X table and
//! PBA), while the device may change its own registers underneath.
#![no_main]

use std::sync::{Arc, Mutex};

use devices::pci::{BarAllocator, PciDevice};
use devices::vfio::{
    place_bars, IrqIndex, Probe, RegionInfo, VfioInterrupts, VfioOps, VfioPciDevice, CONFIG_REGION,
};
use libfuzzer_sys::fuzz_target;
use petrel_fuzz::{Input, Vectors};
use vmm_sys_util::eventfd::EventFd;

/// A device the input describes: every config byte writable, BARs of the
/// given sizes backed by plain memory.
struct Device {
    config: Mutex<[u8; 256]>,
    bars: Vec<Option<RegionInfo>>,
    bar_data: Mutex<Vec<Vec<u8>>>,
    irqs: [u32; 3],
}

impl VfioOps for Device {
    fn region(&self, index: u32) -> Option<RegionInfo> {
        match index {
            CONFIG_REGION => Some(RegionInfo {
                size: 256,
                mmap: false,
                sparse: None,
            }),
            i => self.bars.get(i as usize).cloned().flatten(),
        }
    }
    fn read(&self, index: u32, offset: u64, data: &mut [u8]) {
        let off = offset as usize;
        if index == CONFIG_REGION {
            let c = self.config.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(src) = c.get(off..off.saturating_add(data.len())) {
                data.copy_from_slice(src);
            }
        } else if let Some(bar) = self
            .bar_data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(index as usize)
        {
            if let Some(src) = bar.get(off..off.saturating_add(data.len())) {
                data.copy_from_slice(src);
            }
        }
    }
    fn write(&self, index: u32, offset: u64, data: &[u8]) {
        let off = offset as usize;
        if index == CONFIG_REGION {
            let mut c = self.config.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(dst) = c.get_mut(off..off.saturating_add(data.len())) {
                dst.copy_from_slice(data);
            }
        } else if let Some(bar) = self
            .bar_data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(index as usize)
        {
            if let Some(dst) = bar.get_mut(off..off.saturating_add(data.len())) {
                dst.copy_from_slice(data);
            }
        }
    }
    fn irq_count(&self, index: IrqIndex) -> u32 {
        self.irqs[index as usize]
    }
    fn enable_irq(&self, _index: IrqIndex, _fds: &[&EventFd]) -> std::io::Result<()> {
        Ok(())
    }
    fn disable_irq(&self, _index: IrqIndex) -> std::io::Result<()> {
        Ok(())
    }
    fn set_intx_unmask_fd(&self, _fd: &EventFd) -> std::io::Result<()> {
        Ok(())
    }
    fn reset(&self) -> std::io::Result<()> {
        Ok(())
    }
}

fn device(input: &mut Input<'_>) -> Device {
    let mut config = [0u8; 256];
    config.copy_from_slice(&{
        let mut c = [0u8; 256];
        let b = input.bytes(256);
        c[..b.len()].copy_from_slice(b);
        c
    });
    // A vendor, so the probe looks further.
    config[0..4].copy_from_slice(&0x10ed_8086u32.to_le_bytes());
    let mut bars = Vec::new();
    let mut bar_data = Vec::new();
    for _ in 0..6 {
        let b = input.u8();
        if b & 1 == 0 {
            bars.push(None);
            bar_data.push(Vec::new());
            continue;
        }
        let size = 1u64 << (4 + (b >> 1) % 12);
        bars.push(Some(RegionInfo {
            size,
            mmap: b & 0x80 != 0,
            sparse: None,
        }));
        bar_data.push(vec![0u8; size as usize]);
    }
    let irqs = [
        u32::from(input.u8() % 2),
        u32::from(input.u8() % 33),
        u32::from(input.u16() % 2049),
    ];
    Device {
        config: Mutex::new(config),
        bars,
        bar_data: Mutex::new(bar_data),
        irqs,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let ops = Arc::new(device(&mut input));
    let Ok(probe) = Probe::read(&*ops) else {
        return;
    };
    let mut mmio = BarAllocator::new(0xc000_0000, 0x1000_0000);
    let mut io = BarAllocator::new(0xc000, 0x4000);
    let Ok(bars) = place_bars(&probe, &mut mmio, &mut io) else {
        return;
    };
    let irqs = VfioInterrupts {
        msix: probe
            .msix
            .map(|m| Arc::new(Vectors::new(m.table_size.min(2048))) as _),
        msi: probe
            .msi
            .map(|m| Arc::new(Vectors::new(u16::from(m.max_vectors))) as _),
        intx: None,
    };
    let Ok(mut dev) = VfioPciDevice::new("fuzz".into(), ops.clone(), probe, bars, irqs) else {
        return;
    };
    let mut buf = [0u8; 8];
    for _ in 0..128 {
        if input.is_empty() {
            break;
        }
        let width = input.width();
        match input.u8() % 5 {
            0 => {
                let reg = usize::from(input.u8() % 80);
                let off = u64::from(input.u8() % 4);
                let bytes = input.bytes(width).to_vec();
                dev.config_write(reg, off, &bytes);
            }
            1 => {
                let _ = dev.config_read(usize::from(input.u8() % 80));
            }
            2 => {
                let (bar, off) = (input.u8() % 6, u64::from(input.u16()));
                let bytes = input.bytes(width).to_vec();
                dev.bar_write(bar, off, &bytes);
            }
            3 => {
                let (bar, off) = (input.u8() % 6, u64::from(input.u16()));
                dev.bar_read(bar, off, &mut buf[..width]);
            }
            // The device changes its own configuration space.
            _ => {
                let off = u64::from(input.u8());
                let bytes = input.bytes(width).to_vec();
                ops.write(CONFIG_REGION, off, &bytes);
            }
        }
    }
});
