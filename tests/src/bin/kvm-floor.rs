//! The KVM floor of start-up: the fewest steps any VMM takes on this host
//! before a guest's first instruction, timed from `main()` as petrel times
//! its own `first KVM_RUN since_start_us`.
//!
//!     kvm-floor [--mem-mib N] [--hold-ms MS]
//!
//! Open /dev/kvm, KVM_CREATE_VM, KVM_SET_TSS_ADDR, KVM_CREATE_IRQCHIP,
//! KVM_CREATE_PIT2, an anonymous mapping of N MiB (default 128) as one
//! memory slot, KVM_CREATE_VCPU, KVM_SET_CPUID2 (the supported set),
//! real-mode SREGS/REGS at 0x1000, then KVM_RUN on `out 0x80, al; hlt`
//! (the OUT, not the HLT, ends the run: with the in-kernel irqchip a HLT
//! halts inside KVM). Every step runs in sequence on one thread; no file
//! is loaded and only the code page of guest RAM is touched. Prints one
//! line (stdout):
//!
//!     kvm floor: first KVM_RUN since_start_us=N first_exit_us=M rss_kib=R steps_us=...
//!
//! `since_start_us` is taken just before KVM_RUN, as petrel's is;
//! `first_exit_us` when the guest's first instruction has run; `rss_kib`
//! is VmRSS at that point (the process's whole resident set, guest page
//! included). `--hold-ms` keeps the process alive afterwards (bench-boot
//! traces it with strace and kills it at its first KVM_RUN).

use std::error::Error;
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

/// Where petrel puts KVM's real-mode TSS (inside the MMIO gap).
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
const CODE_GPA: u64 = 0x1000;
const PROBE_PORT: u16 = 0x80;
/// `out 0x80, al; hlt`.
const CODE: [u8; 3] = [0xe6, 0x80, 0xf4];

struct Args {
    mem_mib: usize,
    hold: Duration,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        mem_mib: 128,
        hold: Duration::ZERO,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let value = it.next().ok_or(format!("{a} needs a value"))?;
        match a.as_str() {
            "--mem-mib" => args.mem_mib = value.parse()?,
            "--hold-ms" => args.hold = Duration::from_millis(value.parse()?),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    Ok(args)
}

/// Each step's own time, in µs.
struct Steps {
    start: Instant,
    last: Duration,
    marks: Vec<String>,
}

impl Steps {
    fn mark(&mut self, step: &str) {
        let now = self.start.elapsed();
        self.marks
            .push(format!("{step}={}", (now - self.last).as_micros()));
        self.last = now;
    }
}

/// Anonymous private guest RAM, as petrel maps it; never unmapped (the
/// process ends right after).
fn map_ram(bytes: usize) -> Result<*mut u8, Box<dyn Error>> {
    // SAFETY: a fresh anonymous mapping at an address of the kernel's
    // choosing; it aliases nothing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(p.cast())
}

fn add_slot(vm: &VmFd, ram: *mut u8, bytes: usize) -> Result<(), Box<dyn Error>> {
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: bytes as u64,
        userspace_addr: ram as u64,
    };
    // SAFETY: `ram` is a live mapping of `bytes` that is never unmapped
    // while the VM exists (the process exits first).
    unsafe { vm.set_user_memory_region(region) }?;
    Ok(())
}

/// Real mode, flat CS at 0, RIP at the code.
fn set_entry(vcpu: &VcpuFd) -> Result<(), Box<dyn Error>> {
    let mut sregs = vcpu.get_sregs()?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)?;
    let mut regs = vcpu.get_regs()?;
    regs.rip = CODE_GPA;
    regs.rflags = 2;
    vcpu.set_regs(&regs)?;
    Ok(())
}

fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    let args = parse_args()?;
    let mut steps = Steps {
        start,
        last: start.elapsed(),
        marks: Vec::with_capacity(12),
    };
    let bytes = args.mem_mib << 20;
    let kvm = Kvm::new()?;
    steps.mark("open_kvm");
    let vm = kvm.create_vm()?;
    steps.mark("create_vm");
    vm.set_tss_address(KVM_TSS_ADDRESS)?;
    vm.create_irq_chip()?;
    steps.mark("irqchip");
    vm.create_pit2(kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    })?;
    steps.mark("pit");
    let ram = map_ram(bytes)?;
    // SAFETY: CODE fits in the fresh mapping at CODE_GPA, which nothing
    // else references yet.
    unsafe { std::ptr::copy_nonoverlapping(CODE.as_ptr(), ram.add(CODE_GPA as usize), 3) };
    add_slot(&vm, ram, bytes)?;
    steps.mark("memslot");
    let mut vcpu = vm.create_vcpu(0)?;
    steps.mark("vcpu");
    vcpu.set_cpuid2(&kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)?)?;
    steps.mark("cpuid");
    set_entry(&vcpu)?;
    steps.mark("regs");
    let since_start = start.elapsed();
    match vcpu.run()? {
        VcpuExit::IoOut(PROBE_PORT, _) => {}
        other => return Err(format!("unexpected first exit {other:?}").into()),
    }
    let first_exit = start.elapsed();
    println!(
        "kvm floor: first KVM_RUN since_start_us={} first_exit_us={} rss_kib={} steps_us={}",
        since_start.as_micros(),
        first_exit.as_micros(),
        vm_rss_kib().unwrap_or(0),
        steps.marks.join(" ")
    );
    std::thread::sleep(args.hold);
    Ok(())
}
