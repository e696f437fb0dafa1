//! The probe of docs/migration.md, kept as a test: on this KVM, every
//! state ioctl a snapshot uses works, the state survives its JSON encoding,
//! and dirty logging reports exactly the pages a guest stored to.

use kvm_bindings::{kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuExit};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{memory, KvmVmState, MigrationError, VcpuState};

/// Real-mode code at 0x1000: store to 0x8000 and (ES = 0x1000) 0x10000,
/// then `out 0x80` to come back to the VMM.
const CODE: [u8; 16] = [
    0xb0, 0x42, 0xa2, 0x00, 0x80, 0xbb, 0x00, 0x10, 0x8e, 0xc3, 0x26, 0xa2, 0x00, 0x00, 0xe6, 0x80,
];

#[test]
fn snapshot_ioctls_and_dirty_logging_work_here() {
    let kvm = Kvm::new().unwrap();
    let vm = kvm.create_vm().unwrap();
    vm.set_tss_address(0xfffb_d000).unwrap();
    vm.create_irq_chip().unwrap();
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).unwrap();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    crate::memory::register_with_kvm(&vm, &mem).unwrap();
    memory::set_dirty_logging(&vm, &mem, true).unwrap();
    mem.write_slice(&CODE, GuestAddress(0x1000)).unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    vcpu.set_cpuid2(&cpuid).unwrap();
    let mut sregs = vcpu.get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).unwrap();
    let mut regs = vcpu.get_regs().unwrap();
    regs.rip = 0x1000;
    regs.rflags = 2;
    vcpu.set_regs(&regs).unwrap();
    loop {
        match vcpu.run().unwrap() {
            VcpuExit::IoOut(0x80, _) => break,
            VcpuExit::IoOut(..) | VcpuExit::Intr => {}
            other => panic!("unexpected exit {other:?}"),
        }
    }
    let dirty = memory::dirty_ranges(&vm, &mem).unwrap();
    assert_eq!(dirty, vec![(0x8000, 0x1000), (0x10000, 0x1000)]);
    assert!(memory::dirty_ranges(&vm, &mem).unwrap().is_empty());

    let msrs = kvm.get_msr_index_list().unwrap();
    let saved = VcpuState::capture(&vcpu, msrs.as_slice()).unwrap();
    assert!(!saved.msrs.is_empty());
    let json = serde_json::to_vec(&saved).unwrap();
    let back: VcpuState = serde_json::from_slice(&json).unwrap();
    vcpu.set_regs(&Default::default()).unwrap();
    back.restore(&vcpu, 0).unwrap();
    let now = vcpu.get_regs().unwrap();
    assert_eq!(now.rip, saved.regs.rip);
    assert_eq!(now.rax & 0xff, 0x42);

    let vm_state = KvmVmState::capture(&vm).unwrap();
    let back: KvmVmState = serde_json::from_slice(&serde_json::to_vec(&vm_state).unwrap()).unwrap();
    back.restore(&vm).unwrap();

    // A vCPU whose CPUID differs refuses the state.
    let other = vm.create_vcpu(1).unwrap();
    let all = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    let entries = all.as_slice();
    let fewer = kvm_bindings::CpuId::from_entries(&entries[..entries.len() - 1]).unwrap();
    other.set_cpuid2(&fewer).unwrap();
    let r = saved.restore(&other, 1);
    assert!(matches!(r, Err(MigrationError::CpuidMismatch(1))), "{r:?}");
}
