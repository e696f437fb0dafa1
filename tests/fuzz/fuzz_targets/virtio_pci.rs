//! The virtio-pci transport (petrel's `VirtioPciDevice`): PCI
//! configuration space with its capabilities, the common configuration
//! (feature windows, queue select/size/addresses/enable, status machine),
//! notify and ISR registers, the device config window and the MSI-X table
//! and PBA, all through the guest's config and BAR accesses. The device
//! behind it is a minimal `VirtioDevice` that accepts any activation.
#![no_main]

use std::sync::Arc;

use devices::pci::PciDevice;
use devices::virtio::transport::VirtioPciDevice;
use devices::virtio::{ActivateError, QueueConfig, VirtioDevice, VirtioInterrupt, TYPE_NET};
use libfuzzer_sys::fuzz_target;
use petrel_fuzz::{memory, Input, Vectors};
use vm_memory::GuestMemoryMmap;

const BAR0: u64 = 0xc000_0000;

struct Device {
    sizes: Vec<u16>,
    config: [u8; 64],
    features: u64,
    active: Option<Vec<QueueConfig>>,
}

impl VirtioDevice for Device {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }
    fn features(&self) -> u64 {
        self.features
    }
    fn ack_features(&mut self, _features: u64) {}
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| self.config.get(o + i))
                .copied()
                .unwrap_or(0);
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = usize::try_from(offset)
                .ok()
                .and_then(|o| self.config.get_mut(o + i))
            {
                *slot = *b;
            }
        }
    }
    fn activate(
        &mut self,
        _mem: GuestMemoryMmap,
        _interrupt: Arc<dyn VirtioInterrupt>,
        queues: Vec<QueueConfig>,
    ) -> Result<(), ActivateError> {
        self.active = Some(queues);
        Ok(())
    }
    fn reset(&mut self) -> bool {
        self.active = None;
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let queues = 1 + usize::from(input.u8() % 8);
    let sizes = (0..queues).map(|_| 1u16 << (input.u8() % 10)).collect();
    let dev = Device {
        sizes,
        config: [0x5a; 64],
        features: input.u64() | 1 << 32,
        active: None,
    };
    let vectors = Arc::new(Vectors::new(1 + u16::from(input.u8() % 16)));
    let Ok(mut pci) = VirtioPciDevice::new("fuzz".into(), Box::new(dev), memory(), vectors, BAR0)
    else {
        return;
    };
    let mut buf = [0u8; 8];
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let width = input.width();
        match op % 4 {
            0 => {
                let reg = usize::from(input.u8() % 80);
                let off = u64::from(input.u8() % 4);
                let bytes = input.bytes(width).to_vec();
                pci.config_write(reg, off, &bytes);
            }
            1 => {
                let _ = pci.config_read(usize::from(input.u8() % 80));
            }
            2 => {
                let off = u64::from(input.u16()) << 1;
                let bytes = input.bytes(width).to_vec();
                pci.bar_write(input.u8() % 2, off, &bytes);
            }
            _ => {
                let off = u64::from(input.u16()) << 1;
                let bar = input.u8() % 2;
                pci.bar_read(bar, off, &mut buf[..width]);
            }
        }
    }
    pci.machine_reset();
});
