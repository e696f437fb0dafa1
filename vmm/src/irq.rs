//! KVM's GSI routing table. KVM's default table routes GSI 0 to IOAPIC pin
//! 0, but the MP table (like every PC since the IOAPIC) says ISA IRQ 0 — the
//! PIT, the guest's boot clock — arrives on pin 2; without this the guest
//! waits forever for its first timer tick. MSI routes for MSI-X vectors are
//! added to the same table, which KVM only accepts whole.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQ_ROUTING_IRQCHIP,
};
use kvm_ioctls::VmFd;

/// IOAPIC pins; GSIs from here on are free for MSI routes.
pub const IOAPIC_PINS: u32 = 24;

#[derive(Debug, thiserror::Error)]
pub enum IrqError {
    #[error("cannot build the GSI routing table ({0} entries)")]
    Table(usize),
    #[error("KVM_SET_GSI_ROUTING failed")]
    SetRouting(#[source] kvm_ioctls::Error),
    #[error("no free GSI left for MSI routes")]
    NoGsi,
    #[error("cannot create an interrupt eventfd")]
    EventFd(#[source] std::io::Error),
    #[error("cannot register an irqfd for GSI {gsi}")]
    Irqfd {
        gsi: u32,
        #[source]
        source: kvm_ioctls::Error,
    },
}

fn irqchip_route(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            irqchip: kvm_irq_routing_irqchip { irqchip: chip, pin },
        },
        ..Default::default()
    }
}

/// The PC's legacy routes: ISA IRQs 0–15 on the PICs, GSI n on IOAPIC pin n
/// except GSI 0 on pin 2 (and pin 2's own GSI unused), as QEMU sets them.
fn legacy_routes() -> Vec<kvm_irq_routing_entry> {
    let mut v = Vec::new();
    for irq in 0..16u32 {
        if irq == 2 {
            continue;
        }
        let (chip, pin) = if irq < 8 {
            (KVM_IRQCHIP_PIC_MASTER, irq)
        } else {
            (KVM_IRQCHIP_PIC_SLAVE, irq - 8)
        };
        v.push(irqchip_route(irq, chip, pin));
    }
    for gsi in 0..IOAPIC_PINS {
        match gsi {
            0 => v.push(irqchip_route(0, KVM_IRQCHIP_IOAPIC, 2)),
            2 => {}
            g => v.push(irqchip_route(g, KVM_IRQCHIP_IOAPIC, g)),
        }
    }
    v
}

/// The whole routing table: legacy routes plus MSI routes by GSI.
pub struct GsiRouting {
    vm: Arc<VmFd>,
    msi: Mutex<MsiRoutes>,
}

struct MsiRoutes {
    routes: BTreeMap<u32, kvm_irq_routing_entry>,
    next_gsi: u32,
    max_gsi: u32,
}

impl GsiRouting {
    pub fn new(vm: Arc<VmFd>, max_routes: usize) -> Result<Self, IrqError> {
        let r = Self {
            vm,
            msi: Mutex::new(MsiRoutes {
                routes: BTreeMap::new(),
                next_gsi: IOAPIC_PINS,
                max_gsi: max_routes.saturating_sub(1) as u32,
            }),
        };
        let guard = r.msi.lock().unwrap_or_else(|e| e.into_inner());
        r.commit(&guard)?;
        drop(guard);
        Ok(r)
    }

    pub fn vm(&self) -> &VmFd {
        &self.vm
    }

    /// Reserves a GSI for an MSI route (set later with [`Self::set_msi`]).
    pub fn allocate_gsi(&self) -> Result<u32, IrqError> {
        let mut m = self.msi.lock().unwrap_or_else(|e| e.into_inner());
        if m.next_gsi > m.max_gsi {
            return Err(IrqError::NoGsi);
        }
        let g = m.next_gsi;
        m.next_gsi += 1;
        Ok(g)
    }

    /// Installs (`Some`) or removes (`None`, masked vector) the MSI route of
    /// `gsi` and pushes the table to KVM.
    pub fn set_msi(&self, gsi: u32, msg: Option<(u64, u32)>) -> Result<(), IrqError> {
        let mut m = self.msi.lock().unwrap_or_else(|e| e.into_inner());
        match msg {
            Some((addr, data)) => {
                let mut e = kvm_irq_routing_entry {
                    gsi,
                    type_: kvm_bindings::KVM_IRQ_ROUTING_MSI,
                    ..Default::default()
                };
                e.u.msi = kvm_bindings::kvm_irq_routing_msi {
                    address_lo: addr as u32,
                    address_hi: (addr >> 32) as u32,
                    data,
                    ..Default::default()
                };
                m.routes.insert(gsi, e);
            }
            None => {
                m.routes.remove(&gsi);
            }
        }
        self.commit(&m)
    }

    fn commit(&self, m: &MsiRoutes) -> Result<(), IrqError> {
        let mut entries = legacy_routes();
        entries.extend(m.routes.values().copied());
        let n = entries.len();
        let table = KvmIrqRouting::from_entries(&entries).map_err(|_| IrqError::Table(n))?;
        self.vm
            .set_gsi_routing(&table)
            .map_err(IrqError::SetRouting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pit_goes_to_ioapic_pin_2() {
        let r = legacy_routes();
        let ioapic: Vec<_> = r
            .iter()
            .filter(|e| e.type_ == KVM_IRQ_ROUTING_IRQCHIP)
            // SAFETY: irqchip is the union member written for these entries.
            .map(|e| (e.gsi, unsafe { e.u.irqchip }))
            .filter(|(_, c)| c.irqchip == KVM_IRQCHIP_IOAPIC)
            .map(|(g, c)| (g, c.pin))
            .collect();
        assert!(ioapic.contains(&(0, 2)));
        assert!(ioapic.contains(&(4, 4)));
        assert!(!ioapic.iter().any(|(g, _)| *g == 2));
        assert_eq!(ioapic.len(), 23);
    }
}
