//! `petrel run` with one more device: petrel's virtio-net or e1000 over a
//! tap, passed through to the guest at slot 7 by petrel's VFIO passthrough
//! path (see `petrel_tests::vfio_loopback`).
//!
//!     vfio-loopback SPEC KERNEL INITRD CMDLINE TAP virtio|e1000

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use devices::e1000::E1000;
use devices::virtio::net::Net;
use devices::virtio::transport::VirtioPciDevice;
use net_backend::FrameBackend;
use petrel_tests::vfio_loopback::{LoopbackIntx, LoopbackOps, LoopbackVectors};
use vmm::attach::{attach_passthrough, AttachError};
use vmm::pci_setup::PciSetup;
use vmm::vm::Vm;

#[derive(Debug)]
struct Loopback {
    model: String,
    tap: String,
    mac: [u8; 6],
}

impl vmm::ExtraPci for Loopback {
    fn attach(&self, vm: &mut Vm, pci: &mut PciSetup) -> Result<(), AttachError> {
        let err = |e: Box<dyn std::error::Error + Send + Sync>| AttachError::Device {
            nic: "loop0".into(),
            source: e,
        };
        let mut taps = net_backend::Tap::open_named(&self.tap, 1).map_err(|e| err(Box::new(e)))?;
        let tap: Box<dyn FrameBackend> = match taps.pop() {
            Some(t) => Box::new(t),
            None => return Err(err("no tap queue".into())),
        };
        // The inner BAR addresses are never used: the passthrough model
        // places and shadows the BARs, and every access arrives as a BAR
        // access through VfioOps.
        let ops = match self.model.as_str() {
            "virtio" => {
                let net = Net::new("loop0".into(), self.mac, 1500, vec![tap], vec![None])
                    .map_err(|e| err(Box::new(e)))?;
                let vectors = Arc::new(LoopbackVectors::new(VirtioPciDevice::msix_vectors_needed(
                    &net,
                )));
                let inner = VirtioPciDevice::new(
                    "loop0-inner".into(),
                    Box::new(net),
                    vm.mem.clone(),
                    vectors.clone(),
                    0,
                )
                .map_err(|e| err(Box::new(e)))?;
                LoopbackOps::new(Box::new(inner), Some(vectors), None)
            }
            "e1000" => {
                let intx = Arc::new(LoopbackIntx::default());
                let inner = E1000::new(
                    "loop0-inner".into(),
                    self.mac,
                    tap,
                    vm.mem.clone(),
                    intx.clone(),
                    0,
                    0,
                )
                .map_err(|e| err(Box::new(e)))?;
                LoopbackOps::new(Box::new(inner), None, Some(intx))
            }
            other => return Err(err(format!("unknown model {other}").into())),
        };
        attach_passthrough(vm, pci, "loop0", 7, Arc::new(ops))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [spec, kernel, initrd, cmdline, tap, model] = args.as_slice() else {
        eprintln!("usage: vfio-loopback SPEC KERNEL INITRD CMDLINE TAP virtio|e1000");
        return ExitCode::from(2);
    };
    tracing_subscriber_init();
    let spec = match vmm::spec::load_file(std::path::Path::new(spec)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vfio-loopback: {e}");
            return ExitCode::from(2);
        }
    };
    let overrides = vmm::plan::Overrides {
        kernel: Some(PathBuf::from(kernel)),
        initrd: Some(PathBuf::from(initrd)),
        cmdline: Some(cmdline.clone()),
    };
    let plan = match vmm::plan::resolve(&spec, &overrides) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vfio-loopback: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = vmm::RunOptions {
        console: vmm::ConsoleTarget::Stdout,
        boot_protocol: vmm::BootProtocol::Auto,
        pin_vcpus: false,
        start: None,
        extra_pci: vec![Arc::new(Loopback {
            model: model.clone(),
            tap: tap.clone(),
            mac: [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x07],
        })],
        on_guest_reset: vmm::OnGuestReset::Exit,
    };
    let host = match vmm::host::resolve(
        &plan,
        &vmm::host::HostInputs::default(),
        &vmm::host::SysHost::new(std::path::Path::new("/nonexistent")),
    ) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vfio-loopback: {e}");
            return ExitCode::from(2);
        }
    };
    let run = vmm::Vmm::try_from(vmm::VmmConfig { plan, host, opts }).and_then(|v| v.run());
    match run {
        Ok(reason) if reason.is_clean() => ExitCode::SUCCESS,
        Ok(reason) => {
            eprintln!("vfio-loopback: the VM failed: {reason}");
            ExitCode::from(1)
        }
        Err(e) => {
            let mut msg = format!("vfio-loopback: error: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!("\n  caused by: {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}

fn tracing_subscriber_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PETREL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
