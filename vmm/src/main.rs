//! `petrel`: the command line. It parses arguments, calls the vmm library
//! and maps the result to an exit code: 0 clean stop, 1 runtime failure or
//! guest crash, 2 bad spec or usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use vmm::host::{self, HostInputs, HostPlan, SysHost};
use vmm::plan::{self, Overrides};
use vmm::{spec, BootProtocol, ConsoleTarget, OnGuestReset, RunOptions, Vmm, VmmConfig, VmmError};

#[derive(Parser)]
#[command(
    name = "petrel",
    version,
    about = "A VMM for KubeVirt/Virtink VM specs with built-in pod networking"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(clap::Args)]
struct BootArgs {
    /// Kernel to boot (vmlinux ELF or bzImage); overrides the spec.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initramfs; overrides the spec.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line; overrides the spec.
    #[arg(long)]
    cmdline: Option<String>,
}

/// What the host plan reads besides the pod itself.
#[derive(clap::Args)]
struct HostArgs {
    /// Use already-open tap descriptors for an interface instead of
    /// opening its tap by name: `IFACE=FD[,FD...]`, one per queue pair
    /// (taps opened with IFF_NO_PI|IFF_VNET_HDR). Repeatable.
    #[arg(long = "tap-fd", value_parser = parse_tap_fd)]
    tap_fds: Vec<(String, Vec<i32>)>,
    /// Downward-API directory with the pod's network-status (a file
    /// `network-status`, or `annotations`); SR-IOV NICs find their VF
    /// there or in the device plugin's PCIDEVICE_* variables.
    #[arg(long, default_value = "/etc/podinfo")]
    pod_info: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate a VM spec and print the resolved plan; with
    /// --host, also resolve it against this pod and print the host plan
    /// (what `run` will set up).
    Validate {
        spec: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(flatten)]
        boot: BootArgs,
        /// Resolve the plan against the pod petrel runs in.
        #[arg(long)]
        host: bool,
        #[command(flatten)]
        host_args: HostArgs,
    },
    /// Boot the VM of a spec and run it until the guest resets or petrel is
    /// stopped (SIGTERM/SIGINT).
    Run {
        spec: PathBuf,
        #[command(flatten)]
        boot: BootArgs,
        /// Guest console: `stdout`, a file path (appended), or
        /// `socket:PATH`, a UNIX stream socket clients attach to (output
        /// also goes to stdout).
        #[arg(long, default_value = "stdout")]
        console: String,
        /// What a guest reboot does: `exit` ends the run (exit 0), `restart`
        /// resets the VM in this process and boots again, networking kept.
        #[arg(long, value_enum, default_value_t = OnGuestReset::Exit)]
        on_guest_reset: OnGuestReset,
        /// Kernel entry protocol; auto uses PVH when the kernel has the note.
        #[arg(long, value_enum, default_value_t = BootProtocol::Auto)]
        boot_protocol: BootProtocol,
        /// Pin vCPU i and NIC queue pair i's worker to the i-th CPU of
        /// petrel's CPU set (for dedicated CPUs); by default they float.
        #[arg(long)]
        pin_vcpus: bool,
        #[command(flatten)]
        host_args: HostArgs,
    },
}

fn parse_tap_fd(s: &str) -> Result<(String, Vec<i32>), String> {
    let (name, fds) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected IFACE=FD[,FD...], e.g. default=3,4"))?;
    if name.is_empty() {
        return Err(format!("{s:?}: the interface name is empty"));
    }
    let fds = fds
        .split(',')
        .map(|f| {
            f.parse::<i32>()
                .ok()
                .filter(|n| *n >= 3)
                .ok_or_else(|| format!("{f:?} is not a descriptor number >= 3"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), fds))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PETREL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_thread_names(true);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn overrides(b: BootArgs) -> Overrides {
    Overrides {
        kernel: b.kernel,
        initrd: b.initrd,
        cmdline: b.cmdline,
    }
}

fn load_plan(path: &std::path::Path, b: BootArgs) -> Result<plan::VmPlan, VmmError> {
    let spec = spec::load_file(path)?;
    let plan = plan::resolve(&spec, &overrides(b))?;
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    Ok(plan)
}

fn host_plan(plan: &plan::VmPlan, args: &HostArgs) -> Result<HostPlan, VmmError> {
    let inputs = HostInputs {
        tap_fds: &args.tap_fds,
    };
    host::resolve(plan, &inputs, &SysHost::new(&args.pod_info)).map_err(VmmError::Host)
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("petrel: cannot encode the plan: {e}"),
    }
}

/// `petrel validate`: the plan, and with --host the host plan.
fn validate(plan: &plan::VmPlan, output: Output, host: Option<&HostPlan>) {
    match (output, host) {
        (Output::Text, None) => print!("{}", plan.to_text()),
        (Output::Text, Some(h)) => print!("{}{}", plan.to_text(), h.to_text()),
        (Output::Json, None) => print_json(plan),
        (Output::Json, Some(h)) => print_json(&serde_json::json!({ "plan": plan, "host": h })),
    }
}

fn report(e: &VmmError) {
    let mut msg = format!("petrel: error: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!("\n  caused by: {s}"));
        src = s.source();
    }
    eprintln!("{msg}");
}

fn main() -> ExitCode {
    let start = Instant::now();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Validate {
            spec,
            output,
            boot,
            host,
            host_args,
        } => load_plan(&spec, boot).and_then(|plan| {
            let host = host.then(|| host_plan(&plan, &host_args)).transpose()?;
            validate(&plan, output, host.as_ref());
            Ok(None)
        }),
        Command::Run {
            spec,
            boot,
            console,
            boot_protocol,
            pin_vcpus,
            on_guest_reset,
            host_args,
        } => load_plan(&spec, boot).and_then(|plan| {
            let host = host_plan(&plan, &host_args)?;
            let console = ConsoleTarget::parse(&console);
            let opts = RunOptions {
                console,
                boot_protocol,
                pin_vcpus,
                start: Some(start),
                extra_pci: Vec::new(),
                on_guest_reset,
            };
            Vmm::try_from(VmmConfig { plan, host, opts })?
                .run()
                .map(Some)
        }),
    };
    match result {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(reason)) if reason.is_clean() => {
            tracing::info!(%reason, "VM stopped");
            ExitCode::SUCCESS
        }
        Ok(Some(reason)) => {
            eprintln!("petrel: the VM failed: {reason}");
            ExitCode::from(1)
        }
        Err(e) => {
            report(&e);
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
