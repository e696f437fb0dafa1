//! Per-vCPU adjustments to the CPUID table KVM reports as supported.
//!
//! Feature bits stay host-derived (the nested PVM host decides those); what
//! this fixes is everything that describes *this* vCPU's place in the
//! topology, which KVM copies from the host CPU and which would otherwise
//! disagree with the MP table (APIC IDs 0..n-1, one thread per core, all
//! cores in one package).

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_THERMAL_POWER: u32 = 0x6;
const LEAF_PMU: u32 = 0xa;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_V2_EXT_TOPOLOGY: u32 = 0x1f;
const LEAF_AMD_EXT_APIC_ID: u32 = 0x8000_001e;

const LEAF1_EBX_APIC_ID_SHIFT: u32 = 24;
const LEAF1_EBX_LOGICAL_COUNT_SHIFT: u32 = 16;
const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
const LEAF1_EDX_HTT: u32 = 1 << 28;
const LEAF6_ECX_EPB: u32 = 1 << 3;

const TOPOLOGY_LEVEL_SMT: u32 = 1;
const TOPOLOGY_LEVEL_CORE: u32 = 2;
/// Subleaves the guest should see for leaves 0xb/0x1f: SMT, core, and a
/// terminating invalid level.
const TOPOLOGY_SUBLEAVES: u32 = 3;

/// Number of APIC-ID bits needed to number `n` items.
fn id_bits(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        u32::BITS - (n - 1).leading_zeros()
    }
}

/// Makes sure subleaves 0..TOPOLOGY_SUBLEAVES of `leaf` exist when the host
/// reports the leaf at all: a host with a flat or odd topology may list only
/// subleaf 0, and the guest would then never see the core level.
fn ensure_topology_subleaves(cpuid: &mut CpuId, leaf: u32) {
    if !cpuid.as_slice().iter().any(|e| e.function == leaf) {
        return;
    }
    for index in 0..TOPOLOGY_SUBLEAVES {
        let present = cpuid
            .as_slice()
            .iter()
            .any(|e| e.function == leaf && e.index == index);
        if !present {
            let entry = kvm_cpuid_entry2 {
                function: leaf,
                index,
                flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
                ..Default::default()
            };
            // Fails only when the table already holds KVM_MAX_CPUID_ENTRIES;
            // KVM then answers the missing subleaf with zeros, an invalid
            // level, which ends enumeration early but still boots.
            let _ = cpuid.push(entry);
        }
    }
}

/// Rewrites `cpuid` (KVM's supported list) for vCPU `vcpu_id` of
/// `num_vcpus`. `vcpu_id` is also the vCPU's APIC ID.
pub fn filter_cpuid(cpuid: &mut CpuId, vcpu_id: u8, num_vcpus: u8) {
    let t = Topology {
        apic_id: u32::from(vcpu_id),
        n: u32::from(num_vcpus.max(1)),
    };
    ensure_topology_subleaves(cpuid, LEAF_EXT_TOPOLOGY);
    ensure_topology_subleaves(cpuid, LEAF_V2_EXT_TOPOLOGY);

    for e in cpuid.as_mut_slice() {
        match e.function {
            LEAF_FEATURES => features_leaf(e, t),
            LEAF_CACHE_PARAMS => cache_leaf(e, t),
            LEAF_THERMAL_POWER => {
                // Energy-performance-bias MSR is not emulated; advertising it
                // makes the guest write an MSR that faults.
                e.ecx &= !LEAF6_ECX_EPB;
            }
            LEAF_PMU => {
                // No virtual PMU: the nested host cannot back one reliably,
                // so report version 0 (no counters).
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            LEAF_EXT_TOPOLOGY | LEAF_V2_EXT_TOPOLOGY => topology_leaf(e, t),
            LEAF_AMD_EXT_APIC_ID => {
                // EAX: extended APIC ID. EBX: compute-unit ID with one thread
                // per unit ([15:8] = threads - 1 = 0). ECX: one node, node 0.
                e.eax = t.apic_id;
                e.ebx = t.apic_id & 0xff;
                e.ecx = 0;
            }
            _ => {}
        }
    }
}

/// This vCPU's place: its APIC ID and the package's CPU count (one
/// package, one thread per core).
#[derive(Clone, Copy)]
struct Topology {
    apic_id: u32,
    n: u32,
}

fn features_leaf(e: &mut kvm_bindings::kvm_cpuid_entry2, t: Topology) {
    // EBX[31:24] initial APIC ID, [23:16] logical processors per package;
    // keep brand index and CLFLUSH size in [15:0].
    e.ebx = (e.ebx & 0xffff)
        | (t.apic_id << LEAF1_EBX_APIC_ID_SHIFT)
        | (t.n << LEAF1_EBX_LOGICAL_COUNT_SHIFT);
    // HTT means "the logical count above is valid", needed as soon as the
    // package holds more than one CPU.
    if t.n > 1 {
        e.edx |= LEAF1_EDX_HTT;
    } else {
        e.edx &= !LEAF1_EDX_HTT;
    }
    // Tell the guest it is virtualised so it uses paravirtual clocks and
    // skips bare-metal-only workarounds. X2APIC is left as KVM reports it.
    e.ecx |= LEAF1_ECX_HYPERVISOR;
}

fn cache_leaf(e: &mut kvm_bindings::kvm_cpuid_entry2, t: Topology) {
    let cache_type = e.eax & 0x1f;
    // Type 0 marks the end of the cache list; leave it empty.
    if cache_type != 0 {
        let level = (e.eax >> 5) & 0x7;
        // [25:14]: logical CPUs sharing this cache, minus one. One thread
        // per core, so L1/L2 are private and the L3 is shared by the whole
        // package.
        let sharing = if level >= 3 { (t.n - 1).min(0xfff) } else { 0 };
        // [31:26]: cores per package, minus one.
        let cores = (t.n - 1).min(0x3f);
        e.eax = (e.eax & 0x3fff) | (sharing << 14) | (cores << 26);
    }
}

fn topology_leaf(e: &mut kvm_bindings::kvm_cpuid_entry2, t: Topology) {
    // EDX is the x2APIC ID on every subleaf.
    e.edx = t.apic_id;
    match e.index {
        0 => {
            // SMT level: one thread per core, no ID bits.
            e.eax = 0;
            e.ebx = 1;
            e.ecx = TOPOLOGY_LEVEL_SMT << 8;
        }
        1 => {
            // Core level: n cores; shifting the APIC ID right by core_bits
            // yields the package ID (always 0).
            e.eax = id_bits(t.n);
            e.ebx = t.n;
            e.ecx = (TOPOLOGY_LEVEL_CORE << 8) | 1;
        }
        index => {
            // Invalid level: terminates the enumeration, hiding any
            // die/module levels the host reported.
            e.eax = 0;
            e.ebx = 0;
            e.ecx = index & 0xff;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        function: u32,
        index: u32,
        eax: u32,
        ebx: u32,
        ecx: u32,
        edx: u32,
    ) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            flags: 0,
            eax,
            ebx,
            ecx,
            edx,
            padding: [0; 3],
        }
    }

    fn find(c: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
        *c.as_slice()
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap()
    }

    fn host() -> CpuId {
        CpuId::from_entries(&[
            entry(0, 0, 0x1f, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            // Host says APIC ID 0x2a, 64 logical CPUs, CLFLUSH 8, no hypervisor bit.
            entry(1, 0, 0x000906ea, 0x2a40_0800, 0x7ffa_fbff, 0x0fab_fbff),
            // L1d (level 1, type 1) and L3 (level 3, type 3), then terminator.
            entry(4, 0, 0x1c00_4121, 0, 0, 0),
            entry(4, 3, 0x1c03_c163, 0, 0, 0),
            entry(4, 4, 0, 0, 0, 0),
            entry(6, 0, 0x77, 0x2, 0x9, 0),
            entry(0xa, 0, 0x0730_0805, 0, 0, 0x603),
            // Host with a die level and only subleaves 0 and 2 listed.
            entry(0xb, 0, 1, 2, 0x100, 0x2a),
            entry(0xb, 2, 6, 32, 0x502, 0x2a),
            entry(0x1f, 0, 1, 2, 0x100, 0x2a),
            entry(0x1f, 1, 5, 16, 0x201, 0x2a),
            entry(0x8000_001e, 0, 0x2a, 0x115, 0x300, 0),
        ])
        .unwrap()
    }

    #[test]
    fn topology_for_vcpu1_of_2() {
        let mut c = host();
        filter_cpuid(&mut c, 1, 2);

        let l1 = find(&c, 1, 0);
        assert_eq!(l1.ebx >> 24, 1);
        assert_eq!((l1.ebx >> 16) & 0xff, 2);
        assert_eq!(l1.ebx & 0xffff, 0x0800);
        assert_ne!(l1.edx & (1 << 28), 0);
        assert_ne!(l1.ecx & (1 << 31), 0);
        assert_eq!(l1.ecx & 0x7fff_ffff, 0x7ffa_fbff);

        let l1d = find(&c, 4, 0);
        assert_eq!(l1d.eax >> 26, 1);
        assert_eq!((l1d.eax >> 14) & 0xfff, 0);
        assert_eq!(l1d.eax & 0x3fff, 0x0121);
        let l3 = find(&c, 4, 3);
        assert_eq!((l3.eax >> 26, (l3.eax >> 14) & 0xfff), (1, 1));
        assert_eq!(find(&c, 4, 4).eax, 0);

        assert_eq!(find(&c, 6, 0).ecx, 0x1);
        let pmu = find(&c, 0xa, 0);
        assert_eq!((pmu.eax, pmu.ebx, pmu.ecx, pmu.edx), (0, 0, 0, 0));

        for leaf in [0xb, 0x1f] {
            let smt = find(&c, leaf, 0);
            assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (0, 1, 0x100, 1));
            let core = find(&c, leaf, 1);
            assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (1, 2, 0x201, 1));
            let end = find(&c, leaf, 2);
            assert_eq!((end.eax, end.ebx, end.ecx >> 8, end.edx), (0, 0, 0, 1));
        }
        // The added subleaf is marked index-significant for KVM.
        assert_eq!(find(&c, 0xb, 1).flags, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);

        let amd = find(&c, 0x8000_001e, 0);
        assert_eq!((amd.eax, amd.ebx, amd.ecx), (1, 1, 0));
    }

    #[test]
    fn single_vcpu_has_no_htt() {
        let mut c = host();
        filter_cpuid(&mut c, 0, 1);
        let l1 = find(&c, 1, 0);
        assert_eq!(l1.ebx >> 16, 1);
        assert_eq!(l1.edx & (1 << 28), 0);
        assert_eq!(find(&c, 4, 3).eax, 0x0163);
        let core = find(&c, 0xb, 1);
        assert_eq!((core.eax, core.ebx), (0, 1));
    }

    #[test]
    fn topology_leaf_not_invented() {
        let mut c = CpuId::from_entries(&[entry(1, 0, 0, 0, 0, 0)]).unwrap();
        filter_cpuid(&mut c, 0, 4);
        assert_eq!(c.as_slice().len(), 1);
    }

    #[test]
    fn id_bits_values() {
        assert_eq!(
            [
                id_bits(1),
                id_bits(2),
                id_bits(3),
                id_bits(4),
                id_bits(5),
                id_bits(254)
            ],
            [0, 1, 2, 2, 3, 8]
        );
    }
}
