//! Snapshot state of an e1000 function: its PCI configuration space, the
//! IOADDR window, the register file (ring bases, lengths, heads and tails
//! among them), PHY and EEPROM state, and the transmit side's offload
//! context and partly gathered packet. Taken with the vCPUs stopped and the
//! rx worker paused (the VM's pause gate), so neither side moves a ring.
//!
//! Receive needs no more: the worker writes a frame and moves RDH under the
//! register lock, so every frame the guest can see is in guest memory,
//! which moves with the VM. The target's rx worker keeps running and is
//! kicked after the restore.

use serde::{Deserialize, Serialize};

use super::reg_file::RegsSaved;
use super::tx::TxSaved;
use super::E1000;
use crate::pci::NUM_BARS;

/// Dwords of configuration space.
const CONFIG_DWORDS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct E1000State {
    id: String,
    config: Vec<u32>,
    io_addr: u32,
    regs: RegsSaved,
    tx: TxSaved,
}

impl E1000 {
    /// The function's state (vCPUs stopped, the rx worker paused).
    pub fn save_state(&self) -> E1000State {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).save();
        E1000State {
            id: self.id.clone(),
            config: (0..CONFIG_DWORDS)
                .map(|r| self.config.read_reg(r))
                .collect(),
            io_addr: self.io_addr,
            regs: self.shared.lock().save(),
            tx,
        }
    }

    /// Writes `state` into this function, built from the same spec (same
    /// MAC, same BARs) and not used by the guest yet.
    pub fn restore_state(&mut self, state: &E1000State) -> Result<(), String> {
        if state.id != self.id {
            return Err(format!(
                "saved e1000 {} does not match {}",
                state.id, self.id
            ));
        }
        for (reg, v) in state.config.iter().enumerate().take(CONFIG_DWORDS) {
            // The BARs stay where this VM placed them (the same spec places
            // them at the same addresses).
            if (4..4 + usize::from(NUM_BARS)).contains(&reg) {
                continue;
            }
            self.config.write_raw(reg * 4, &v.to_le_bytes());
        }
        self.tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .restore(&state.tx)?;
        self.io_addr = state.io_addr;
        let irq = self.shared.irq.clone();
        self.shared.lock().restore(&state.regs, irq.as_ref())?;
        // The worker looks at the restored rx ring at once and goes on with
        // a transmit pass the source left unfinished (on its own thread,
        // whose seccomp class may write the tap; this one's need not).
        self.kick_rx();
        self.kick_tx();
        Ok(())
    }
}
