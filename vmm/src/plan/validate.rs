//! CPU, memory and boot resolution.

use std::path::PathBuf;

use crate::spec::{parse_quantity, Field, VmSpec};

use super::{
    BootPlan, FieldError, Overrides, Topology, DEFAULT_CMDLINE, DEFAULT_MEMORY_BYTES, MAX_VCPUS,
    MIN_MEMORY_BYTES,
};

/// One topology count: defaults to 1, must be 1..=254.
fn count(field: &Option<Field<i64>>, errors: &mut Vec<FieldError>) -> Option<u32> {
    let Some(f) = field else {
        return Some(1);
    };
    match u32::try_from(f.value) {
        Ok(v) if (1..=MAX_VCPUS).contains(&v) => Some(v),
        _ => {
            errors.push(FieldError::new(
                &f.path,
                f.value.to_string(),
                format!("is out of range; use 1 to {MAX_VCPUS}"),
            ));
            None
        }
    }
}

/// Resolves the CPU topology; None means an error was recorded.
pub(crate) fn topology(spec: &VmSpec, errors: &mut Vec<FieldError>) -> Option<Topology> {
    let cpu = &spec.cpu;
    let sockets = count(&cpu.sockets, errors);
    let cores = count(&cpu.cores, errors);
    let threads = count(&cpu.threads, errors);
    let (sockets, cores, threads) = (sockets?, cores?, threads?);
    let vcpus = sockets * cores * threads;
    if vcpus > MAX_VCPUS {
        errors.push(FieldError::new(
            &cpu.path,
            format!("sockets={sockets} cores={cores} threads={threads}"),
            format!("gives {vcpus} vCPUs; petrel supports 1 to {MAX_VCPUS}"),
        ));
        return None;
    }
    Some(Topology {
        sockets: u8::try_from(sockets).ok()?,
        cores: u8::try_from(cores).ok()?,
        threads: u8::try_from(threads).ok()?,
    })
}

/// Resolves the memory size (bytes).
pub(crate) fn memory(
    spec: &VmSpec,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<String>,
) -> u64 {
    let Some(f) = &spec.memory else {
        warnings.push(format!("{}: missing; using 128Mi", spec.memory_path));
        return DEFAULT_MEMORY_BYTES;
    };
    match parse_quantity(&f.value) {
        Ok(bytes) if bytes < MIN_MEMORY_BYTES => {
            errors.push(FieldError::new(
                &f.path,
                &f.value,
                "is too little memory; petrel needs at least 16Mi",
            ));
            DEFAULT_MEMORY_BYTES
        }
        Ok(bytes) => bytes,
        Err(e) => {
            errors.push(FieldError::new(&f.path, &f.value, e.to_string()));
            DEFAULT_MEMORY_BYTES
        }
    }
}

/// Resolves kernel, initrd and command line; CLI overrides win.
pub(crate) fn boot(spec: &VmSpec, overrides: &Overrides, warnings: &mut Vec<String>) -> BootPlan {
    let k = &spec.kernel;
    if let Some(image) = &k.image {
        warnings.push(format!(
            "{}: not pulled (petrel does not pull images); kernel and initrd are read from local paths",
            image.path
        ));
    }
    let local = |f: &Option<Field<String>>| f.as_ref().map(|f| PathBuf::from(&f.value));
    BootPlan {
        kernel: overrides.kernel.clone().or_else(|| local(&k.kernel_path)),
        initrd: overrides.initrd.clone().or_else(|| local(&k.initrd_path)),
        cmdline: overrides
            .cmdline
            .clone()
            .or_else(|| k.cmdline.as_ref().map(|f| f.value.clone()))
            .unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
        kernel_image: k.image.as_ref().map(|f| f.value.clone()),
    }
}
