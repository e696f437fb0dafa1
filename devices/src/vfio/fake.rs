//! A VFIO device in memory: configuration space and BAR contents as byte
//! arrays, and a log of what the model asked of the interrupts.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

use super::ops::{IrqIndex, RegionInfo, VfioOps, CONFIG_REGION};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IrqCall {
    Enable(IrqIndex, usize),
    Disable(IrqIndex),
    Unmask,
}

pub struct FakeVfio {
    pub config: Mutex<[u8; 256]>,
    /// Bytes of configuration space the fake hardware lets the driver change.
    pub config_writable: [u8; 256],
    pub config_writes: Mutex<Vec<(u64, Vec<u8>)>>,
    pub bars: Vec<Option<RegionInfo>>,
    pub bar_data: Mutex<Vec<Vec<u8>>>,
    pub bar_writes: Mutex<Vec<(u32, u64, Vec<u8>)>>,
    pub irqs: Mutex<Vec<IrqCall>>,
    pub intx_count: u32,
    pub resets: AtomicUsize,
}

impl FakeVfio {
    /// An Intel 82599 VF (8086:10ed) with no BARs, no capabilities.
    pub fn new() -> Self {
        let mut config = [0u8; 256];
        config[0..4].copy_from_slice(&0x10ed_8086u32.to_le_bytes());
        config[0x0e] = 0x80; // multi-function header, which must be hidden
        let mut config_writable = [0u8; 256];
        config_writable[4] = 0x07; // command: io, memory, bus master
        config_writable[5] = 0x04; // INTx disable
        Self {
            config: Mutex::new(config),
            config_writable,
            config_writes: Mutex::new(vec![]),
            bars: vec![None; 6],
            bar_data: Mutex::new(vec![vec![]; 6]),
            bar_writes: Mutex::new(vec![]),
            irqs: Mutex::new(vec![]),
            intx_count: 1,
            resets: AtomicUsize::new(0),
        }
    }

    pub fn set_config(&mut self, offset: usize, bytes: &[u8]) {
        self.config.get_mut().unwrap()[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    /// A memory BAR (`flags` = the low bits of the BAR register).
    pub fn with_bar(mut self, index: usize, flags: u32, size: u64, mmap: bool) -> Self {
        self.set_config(0x10 + 4 * index, &flags.to_le_bytes());
        self.bars[index] = Some(RegionInfo {
            size,
            mmap,
            sparse: None,
        });
        self.bar_data.get_mut().unwrap()[index] = vec![0; size as usize];
        self
    }

    /// Appends a capability at `offset` (linked after the previous ones).
    pub fn with_cap(mut self, offset: usize, bytes: &[u8]) -> Self {
        let mut cfg = *self.config.get_mut().unwrap();
        cfg[6] |= 1 << 4; // status: capability list
        let mut ptr = 0x34;
        while cfg[ptr] != 0 {
            ptr = usize::from(cfg[ptr]) + 1;
        }
        cfg[ptr] = offset as u8;
        cfg[offset..offset + bytes.len()].copy_from_slice(bytes);
        cfg[offset + 1] = 0;
        *self.config.get_mut().unwrap() = cfg;
        self
    }

    pub fn take_irqs(&self) -> Vec<IrqCall> {
        std::mem::take(&mut *self.irqs.lock().unwrap())
    }
}

impl VfioOps for FakeVfio {
    fn region(&self, index: u32) -> Option<RegionInfo> {
        match index {
            0..=5 => self.bars[index as usize].clone(),
            CONFIG_REGION => Some(RegionInfo {
                size: 256,
                mmap: false,
                sparse: None,
            }),
            _ => None,
        }
    }

    fn read(&self, index: u32, offset: u64, data: &mut [u8]) {
        let src: Vec<u8> = if index == CONFIG_REGION {
            self.config.lock().unwrap().to_vec()
        } else if let Some(bar) = self.bar_data.lock().unwrap().get(index as usize) {
            bar.clone()
        } else {
            return;
        };
        let o = offset as usize;
        if let Some(s) = src.get(o..o + data.len()) {
            data.copy_from_slice(s);
        }
    }

    fn write(&self, index: u32, offset: u64, data: &[u8]) {
        let o = offset as usize;
        if index == CONFIG_REGION {
            self.config_writes
                .lock()
                .unwrap()
                .push((offset, data.to_vec()));
            let mut cfg = self.config.lock().unwrap();
            for (k, &b) in data.iter().enumerate() {
                if let Some(w) = self.config_writable.get(o + k) {
                    cfg[o + k] = (cfg[o + k] & !w) | (b & w);
                }
            }
            return;
        }
        self.bar_writes
            .lock()
            .unwrap()
            .push((index, offset, data.to_vec()));
        if let Some(bar) = self.bar_data.lock().unwrap().get_mut(index as usize) {
            if let Some(d) = bar.get_mut(o..o + data.len()) {
                d.copy_from_slice(data);
            }
        }
    }

    fn irq_count(&self, index: IrqIndex) -> u32 {
        match index {
            IrqIndex::Intx => self.intx_count,
            _ => 0,
        }
    }

    fn enable_irq(&self, index: IrqIndex, fds: &[&EventFd]) -> io::Result<()> {
        self.irqs
            .lock()
            .unwrap()
            .push(IrqCall::Enable(index, fds.len()));
        Ok(())
    }

    fn disable_irq(&self, index: IrqIndex) -> io::Result<()> {
        self.irqs.lock().unwrap().push(IrqCall::Disable(index));
        Ok(())
    }

    fn set_intx_unmask_fd(&self, _fd: &EventFd) -> io::Result<()> {
        self.irqs.lock().unwrap().push(IrqCall::Unmask);
        Ok(())
    }

    fn reset(&self) -> io::Result<()> {
        self.resets.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
