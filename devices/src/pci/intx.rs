//! Legacy (INTx) interrupt lines of PCI functions.

/// A level-triggered PCI INTx line, implemented by the vmm with a KVM irqfd
/// plus a resample eventfd (the IOAPIC's EOI re-checks the level).
///
/// Devices call [`IntxLine::set_level`] whenever their interrupt condition
/// may have changed; the implementation keeps the level and re-injects after
/// an EOI while it is still asserted.
pub trait IntxLine: Send + Sync {
    /// Assert (true) / deassert (false) the line. Edge-free: calling assert
    /// twice is harmless.
    fn set_level(&self, asserted: bool);
}
