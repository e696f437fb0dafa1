//! The spec parser and the plan (`petrel validate`'s path): KubeVirt and
//! Virtink YAML/JSON, multi-document, lists, then validation, defaults,
//! MACs, PCI slots and the plan's text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = vmm::spec::parse_str(text) else {
        return;
    };
    if let Ok(plan) = vmm::plan::resolve(&spec, &vmm::plan::Overrides::default()) {
        let _ = plan.to_text();
    }
});
