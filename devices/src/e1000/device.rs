//! The 82540EM PCI function: configuration space, the BAR0 and BAR1
//! (IOADDR/IODATA) accesses, transmit on the vCPU thread (continued on the
//! worker, see `tx_pass.rs`) and the worker's life cycle. The register
//! file itself is in `reg_file.rs`.

use std::sync::{Arc, Mutex};

use net_backend::{FrameBackend, Offloads};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

use super::reg_file::{Action, Shared};
use super::regs::{self, ctrl};
use super::tx::TxState;
use super::tx_pass::TxPass;
use super::worker::RxHandler;
use super::{
    E1000Counters, E1000Error, BAR0_SIZE, BAR1_SIZE, E1000_DEVICE_ID, E1000_REVISION,
    E1000_SUBSYSTEM_ID, INTEL_VENDOR_ID,
};
use crate::pause::PauseGate;
use crate::pci::{
    extract_bytes, merge_dword, Bar, BarKind, IntxLine, PciConfiguration, PciDevice, PciIds,
};
use crate::worker::{SpawnError, Worker};

/// The receive side: built with the device, running between
/// [`E1000::activate`] and [`E1000::stop`] (or drop).
enum RxState {
    Stopped(Box<RxHandler>),
    Running(Worker<RxHandler>),
    /// The worker panicked and took the handler with it.
    Lost,
}

/// An Intel 82540EM (e1000) network function.
///
/// Transmit runs on the vCPU thread that writes TDT (or enables TCTL),
/// inside [`PciDevice::bar_write`]: descriptors are processed there, frames
/// written to the backend, DD written back and TXDW raised before the MMIO
/// exit completes, up to one pass's budget ([`super::tx::TX_PASS_FRAMES`]
/// and friends); whatever is left the worker continues, pass by pass
/// between its other events. Receive runs on the "{id}-rx" worker thread, which
/// [`E1000::activate`] starts (construction spawns nothing) and
/// [`E1000::stop`] or drop stops and joins. The worker keeps running
/// through CTRL.RST: a disabled receiver drains and drops frames.
pub struct E1000 {
    pub(super) id: String,
    pub(super) config: PciConfiguration,
    bar0_addr: u64,
    bar1_addr: u64,
    pub(super) shared: Arc<Shared>,
    backend: Arc<Mutex<Box<dyn FrameBackend>>>,
    mem: GuestMemoryMmap,
    /// Shared with the worker, which continues passes that ran out of
    /// budget.
    pub(super) tx: Arc<Mutex<TxState>>,
    /// IOADDR of the I/O window.
    pub(super) io_addr: u32,
    rx_kick: EventFd,
    /// Wakes the worker to continue transmitting.
    tx_kick: EventFd,
    rx: RxState,
    /// The VM's pause gate, handed to the rx worker.
    pause: Option<PauseGate>,
}

/// Reads an [`E1000`]'s counters from another thread (the VMM's API and
/// metrics), after the device itself went behind the PCI bus.
#[derive(Clone)]
pub struct E1000CounterSource(Arc<Shared>);

impl E1000CounterSource {
    pub fn snapshot(&self) -> E1000Counters {
        self.0.lock().counters
    }
}

impl E1000 {
    /// Reports the link down (STATUS without LU, PHY link down) or up;
    /// KubeVirt's `state: down`.
    pub fn set_link_up(&self, up: bool) {
        self.shared.lock().set_link_up(up);
    }

    /// Creates the device (no thread yet: see [`Self::activate`]) and
    /// turns the backend's offloads off. `bar0_addr` is a
    /// [`BAR0_SIZE`]-aligned address below 4 GiB in the PCI MMIO window;
    /// `bar1_addr` a [`BAR1_SIZE`]-aligned port in the PCI I/O window
    /// (e.g. 0xc000). `irq` is the function's INTA# line.
    pub fn new(
        id: String,
        mac: [u8; 6],
        mut backend: Box<dyn FrameBackend>,
        mem: GuestMemoryMmap,
        irq: Arc<dyn IntxLine>,
        bar0_addr: u64,
        bar1_addr: u64,
    ) -> Result<E1000, E1000Error> {
        let mut config = PciConfiguration::new(PciIds {
            vendor_id: INTEL_VENDOR_ID,
            device_id: E1000_DEVICE_ID,
            revision: E1000_REVISION,
            class_code: 0x02_00_00,
            subsystem_vendor_id: INTEL_VENDOR_ID,
            subsystem_id: E1000_SUBSYSTEM_ID,
        });
        config.add_bar(Bar {
            index: 0,
            addr: bar0_addr,
            size: BAR0_SIZE,
            kind: BarKind::Mmio32,
        })?;
        config.add_bar(Bar {
            index: 1,
            addr: bar1_addr,
            size: BAR1_SIZE,
            kind: BarKind::Io,
        })?;
        config.set_interrupt_pin(1);
        // Frames must arrive complete and checksummed: the e1000 has no
        // way to hand partial checksums or GSO frames to the driver.
        backend
            .set_offloads(Offloads::NONE)
            .map_err(E1000Error::Offloads)?;
        let backend: Arc<Mutex<Box<dyn FrameBackend>>> = Arc::new(Mutex::new(backend));
        let shared = Arc::new(Shared::new(mac, irq).map_err(E1000Error::Timer)?);
        let rx_kick = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(E1000Error::EventFd)?;
        let tx_kick = EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC).map_err(E1000Error::EventFd)?;
        let tx = Arc::new(Mutex::new(TxState::new()));
        let handler = RxHandler::new(
            id.clone(),
            shared.clone(),
            backend.clone(),
            mem.clone(),
            rx_kick.try_clone().map_err(E1000Error::EventFd)?,
        )
        .with_tx(
            tx.clone(),
            tx_kick.try_clone().map_err(E1000Error::EventFd)?,
        );
        Ok(E1000 {
            id,
            config,
            bar0_addr,
            bar1_addr,
            shared,
            backend,
            mem,
            tx,
            io_addr: 0,
            rx_kick,
            tx_kick,
            rx: RxState::Stopped(Box::new(handler)),
            pause: None,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Guest physical address of BAR0 (the register file).
    pub fn bar0_addr(&self) -> u64 {
        self.bar0_addr
    }

    /// Port of BAR1 (the IOADDR/IODATA window).
    pub fn bar1_addr(&self) -> u64 {
        self.bar1_addr
    }

    /// Device counters (not the guest-visible statistics registers).
    pub fn counters(&self) -> E1000Counters {
        self.shared.lock().counters
    }

    /// A handle that reads [`Self::counters`] from elsewhere.
    pub fn counter_source(&self) -> E1000CounterSource {
        E1000CounterSource(self.shared.clone())
    }

    /// The rx worker started from now on stops taking frames while `gate`
    /// is paused.
    pub fn set_pause_gate(&mut self, gate: PauseGate) {
        self.pause = Some(gate);
    }

    /// Starts the "{id}-rx" worker; the VMM calls it once the device is
    /// placed. Does nothing if it runs already.
    pub fn activate(&mut self) -> Result<(), E1000Error> {
        let handler = match std::mem::replace(&mut self.rx, RxState::Lost) {
            RxState::Stopped(handler) => handler,
            RxState::Running(worker) => {
                self.rx = RxState::Running(worker);
                return Ok(());
            }
            RxState::Lost => return Err(E1000Error::RxLost),
        };
        let name = format!("{}-rx", self.id);
        match Worker::spawn_gated(name, None, *handler, self.pause.clone()) {
            Ok(worker) => {
                self.rx = RxState::Running(worker);
                Ok(())
            }
            Err(SpawnError { error, handler }) => {
                if let Some(h) = handler {
                    self.rx = RxState::Stopped(Box::new(h));
                }
                Err(E1000Error::Spawn(error))
            }
        }
    }

    /// Whether the rx worker runs.
    pub fn is_active(&self) -> bool {
        matches!(self.rx, RxState::Running(_))
    }

    /// Stops and joins the rx worker (also done on drop); [`Self::activate`]
    /// starts it again.
    pub fn stop(&mut self) {
        if !self.is_active() {
            return;
        }
        if let RxState::Running(worker) = std::mem::replace(&mut self.rx, RxState::Lost) {
            if let Some(handler) = worker.stop() {
                self.rx = RxState::Stopped(Box::new(handler));
            }
        }
    }

    /// A guest read of the register at `offset` (dword-aligned).
    fn reg_read(&mut self, offset: u64) -> u32 {
        let irq = self.shared.irq.clone();
        self.shared.lock().read(offset & !3, irq.as_ref())
    }

    /// A guest write of the register at `offset` (dword-aligned).
    fn reg_write(&mut self, offset: u64, value: u32) {
        let irq = self.shared.irq.clone();
        let action = self.shared.lock().write(offset & !3, value, irq.as_ref());
        match action {
            Action::None => {}
            Action::KickRx => self.kick_rx(),
            Action::Tx => self.run_tx(),
            Action::Reset => {
                self.tx.lock().unwrap_or_else(|e| e.into_inner()).reset();
                self.kick_rx();
            }
        }
    }

    pub(super) fn kick_rx(&self) {
        if let Err(e) = self.rx_kick.write(1) {
            tracing::warn!(id = %self.id, error = %e, "e1000: cannot wake the rx worker");
        }
    }

    /// Runs one transmit pass from TDH towards TDT; the worker continues
    /// when the pass ran out of budget.
    fn run_tx(&mut self) {
        // While the VM's gate is paused (a migration's pre-copy, vCPUs
        // still running) nothing may write guest memory behind KVM's dirty
        // log, descriptor write-backs included: the gated worker does the
        // pass once the gate opens (or the target does, from TDH/TDT).
        if self.pause.as_ref().is_some_and(PauseGate::is_paused) {
            self.kick_tx();
            return;
        }
        let pass = TxPass {
            shared: &self.shared,
            backend: &self.backend,
            mem: &self.mem,
            state: &self.tx,
        };
        if pass.run() {
            self.kick_tx();
        }
    }

    /// Wakes the worker to run transmit passes.
    pub(super) fn kick_tx(&self) {
        if let Err(e) = self.tx_kick.write(1) {
            tracing::warn!(id = %self.id, error = %e, "e1000: cannot wake the worker for tx");
        }
    }

    fn io_read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset & !3 {
            0 => self.io_addr,
            4 => self.reg_read(u64::from(self.io_addr) % regs::MMIO_SIZE),
            _ => 0,
        };
        extract_bytes(u64::from(value), 4, offset & 3, data);
    }

    fn io_write(&mut self, offset: u64, data: &[u8]) {
        match offset & !3 {
            0 => {
                if let Some(v) = merge_dword(self.io_addr, offset & 3, data) {
                    self.io_addr = v & 0x1_fffc;
                }
            }
            4 => {
                if let Some(v) = merge_dword(0, offset & 3, data) {
                    self.reg_write(u64::from(self.io_addr) % regs::MMIO_SIZE, v);
                }
            }
            _ => {}
        }
    }

    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= regs::MMIO_SIZE {
            data.fill(0xff);
            return;
        }
        match data.len() {
            8 if offset & 7 == 0 => {
                let lo = self.reg_read(offset);
                let hi = self.reg_read(offset + 4);
                data.copy_from_slice(&(u64::from(hi) << 32 | u64::from(lo)).to_le_bytes());
            }
            1 | 2 | 4 if (offset % 4) as usize + data.len() <= 4 => {
                let v = self.reg_read(offset & !3);
                extract_bytes(u64::from(v), 4, offset & 3, data);
            }
            _ => data.fill(0xff),
        }
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        if offset >= regs::MMIO_SIZE {
            return;
        }
        match data.len() {
            8 if offset & 7 == 0 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(data);
                let v = u64::from_le_bytes(b);
                self.reg_write(offset, v as u32);
                self.reg_write(offset + 4, (v >> 32) as u32);
            }
            // Narrow writes land in their byte lanes with the others zero
            // (no read-modify-write: reads have side effects).
            1 | 2 | 4 => {
                if let Some(v) = merge_dword(0, offset & 3, data) {
                    self.reg_write(offset & !3, v);
                }
            }
            _ => {}
        }
    }
}

impl Drop for E1000 {
    fn drop(&mut self) {
        self.stop();
    }
}

impl PciDevice for E1000 {
    fn save_state(&self) -> Option<crate::pci::PciDeviceState> {
        Some(crate::pci::PciDeviceState::E1000(Box::new(
            E1000::save_state(self),
        )))
    }

    fn restore_state(&mut self, state: &crate::pci::PciDeviceState) -> Result<(), String> {
        match state {
            crate::pci::PciDeviceState::E1000(s) => E1000::restore_state(self, s),
            _ => Err(format!("{}: the saved state is not an e1000's", self.id)),
        }
    }

    fn machine_reset(&mut self) {
        // As CTRL.RST: registers to defaults, the receiver off (the rx
        // worker drops frames until the new driver enables it).
        self.reg_write(regs::CTRL, ctrl::RST);
    }

    fn config_read(&mut self, reg: usize) -> u32 {
        self.config.read_reg(reg)
    }

    fn config_write(&mut self, reg: usize, offset: u64, data: &[u8]) {
        self.config.write_reg(reg, offset, data);
    }

    fn bars(&self) -> Vec<Bar> {
        self.config.bars()
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        match bar {
            0 => self.mmio_read(offset, data),
            1 => self.io_read(offset, data),
            _ => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            0 => self.mmio_write(offset, data),
            1 => self.io_write(offset, data),
            _ => {}
        }
    }
}
