//! `petrel`: the command line. It parses arguments, calls the vmm library
//! and maps the result to an exit code: 0 clean stop, 1 runtime failure or
//! guest crash, 2 bad spec or usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use vmm::api::ApiOptions;
use vmm::host::{self, HostInputs, HostPlan, SysHost};
use vmm::plan::{self, Overrides};
use vmm::{
    spec, spec_input, BootProtocol, ConsoleTarget, OnGuestReset, RunOptions, SeccompMode, Vmm,
    VmmConfig, VmmError,
};

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

/// The control API (Cloud Hypervisor's paths and JSON) and the metrics.
#[derive(clap::Args)]
struct ApiArgs {
    /// Serve the control API (HTTP/1.1) on this UNIX socket: GET
    /// /api/v1/vmm.ping, vm.info, vm.counters and /metrics; PUT vm.pause,
    /// vm.resume, vm.shutdown, vmm.shutdown (exit 0), vm.reboot,
    /// vm.power-button, vm.snapshot, vm.restore, vm.send-migration and
    /// vm.receive-migration.
    #[arg(long, value_name = "PATH")]
    api_socket: Option<PathBuf>,
    /// Also serve GET /metrics (Prometheus/OpenMetrics text, KubeVirt's
    /// metric names) over TCP at this address, e.g. 0.0.0.0:9090.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics_address: Option<std::net::SocketAddr>,
    /// Set the VM up (devices, pod network) without booting it and wait on
    /// the API for PUT vm.receive-migration {"receiver_url":"unix:PATH"} or
    /// vm.restore {"source_url":"file:///DIR"}.
    #[arg(long, requires = "api_socket")]
    incoming: bool,
}

/// `petrel run`'s arguments.
#[derive(clap::Args)]
struct RunArgs {
    /// The spec file; without it, --spec-base64 or $VM_DATA.
    spec: Option<PathBuf>,
    /// The spec as base64 JSON, the way Virtink's prerunner gets it
    /// (default: the VM_DATA variable). SR-IOV network status may come
    /// in $NETWORK_STATUS likewise.
    #[arg(long, value_name = "BASE64", conflicts_with = "spec")]
    spec_base64: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    boot: BootArgs,
    /// Guest console: `stdout`, a file path (appended), or
    /// `socket:PATH`, a UNIX stream socket clients attach to (output
    /// also goes to stdout).
    #[arg(long, default_value = "stdout")]
    console: String,
    /// A console file stops growing at this many bytes, with a note as
    /// its last line (0: no cap).
    #[arg(long, value_name = "BYTES", default_value_t = vmm::console_writer::DEFAULT_FILE_CAP)]
    console_file_cap: u64,
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
    /// seccomp filters per thread: `enforce` stops petrel (exit 1) on a
    /// system call outside the thread's allow-list, naming it; `log`
    /// lets it through and the kernel logs it; `off` installs none.
    #[arg(long, value_enum, default_value_t = SeccompMode::Enforce)]
    seccomp: SeccompMode,
    #[command(flatten)]
    host_args: HostArgs,
    /// Where `net-setup` left its record of the pod network
    /// (<DIR>/<vm>/net.json); with one, run only attaches to it.
    #[arg(long, default_value = vmm::net_state::DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate a VM spec and print the resolved plan; with
    /// --host, also resolve it against this pod and print the host plan
    /// (what `run` will set up).
    Validate {
        /// The spec file; `-` reads standard input.
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
    /// stopped (SIGTERM/SIGINT, or vm.shutdown/vmm.shutdown on the API).
    Run(Box<RunArgs>),
    /// The privileged half of KubeVirt's split, run as root in the pod's
    /// network namespace (as virt-handler does): creates each pod-bound
    /// NIC's bridge, its taps (persistent, owned by --uid), the nft table
    /// and the sysctls, and records them for an unprivileged `run`.
    /// Running it again removes and re-creates everything identically.
    NetSetup {
        /// The spec file; `-` reads standard input.
        spec: PathBuf,
        /// The uid `run` will run as (KubeVirt's qemu user: 107).
        #[arg(long)]
        uid: u32,
        /// The taps' group (default: the uid).
        #[arg(long)]
        gid: Option<u32>,
        /// The --metrics-address `run` will be given: its port is not
        /// forwarded to a masquerade guest.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics_address: Option<std::net::SocketAddr>,
        /// Where to record what was made (<DIR>/<vm>/net.json).
        #[arg(long, default_value = vmm::net_state::DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
        #[command(flatten)]
        host_args: HostArgs,
    },
    /// Removes everything `net-setup` made for the spec's VM (nft table,
    /// taps, bridges; a bridge binding's pod interface restored) and its
    /// record.
    NetTeardown {
        /// The spec file; `-` reads standard input.
        spec: PathBuf,
        #[arg(long, default_value = vmm::net_state::DEFAULT_RUN_DIR)]
        run_dir: PathBuf,
        #[command(flatten)]
        host_args: HostArgs,
    },
}

/// `petrel net-setup`: plumbs the pod for uid `uid` and records it.
fn net_setup(
    spec: &std::path::Path,
    owner: net::binding::TapOwner,
    run_dir: &std::path::Path,
    host_args: &HostArgs,
    metrics: Option<std::net::SocketAddr>,
) -> Result<Option<vmm::ExitReason>, Failed> {
    let plan = load_plan(spec, no_boot(), false)?;
    let reserved: Vec<u16> = metrics.iter().map(|a| a.port()).collect();
    let host = host_plan(&plan, host_args, &reserved)?;
    let state = vmm::pod_net::setup(&plan, &host, owner).map_err(VmmError::from)?;
    let path = vmm::net_state::write(run_dir, &state).map_err(VmmError::from)?;
    tracing::info!(
        path = %path.display(), nics = state.nics.len(), uid = owner.uid,
        "pod network prepared; start `petrel run` as uid {}", owner.uid
    );
    Ok(None)
}

/// `petrel net-teardown`: removes the plumbing and the record.
fn net_teardown(
    spec: &std::path::Path,
    run_dir: &std::path::Path,
    host_args: &HostArgs,
) -> Result<Option<vmm::ExitReason>, Failed> {
    let plan = load_plan(spec, no_boot(), false)?;
    let host = host_plan(&plan, host_args, &[])?;
    let errors = vmm::pod_net::teardown(&plan, &host);
    if !errors.is_empty() {
        return Err(VmmError::NetTeardown(errors).into());
    }
    vmm::net_state::remove(run_dir, &plan.name).map_err(VmmError::from)?;
    tracing::info!(vm = %plan.name, "pod network plumbing removed");
    Ok(None)
}

fn owner(uid: u32, gid: Option<u32>) -> net::binding::TapOwner {
    net::binding::TapOwner {
        uid,
        gid: gid.unwrap_or(uid),
    }
}

fn no_boot() -> BootArgs {
    BootArgs {
        kernel: None,
        initrd: None,
        cmdline: None,
    }
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

/// A failure with the spec's warnings (a typo's hint explains an error).
struct Failed {
    error: Box<VmmError>,
    warnings: Vec<String>,
}

impl From<VmmError> for Failed {
    fn from(error: VmmError) -> Self {
        Failed {
            error: Box::new(error),
            warnings: Vec::new(),
        }
    }
}

/// The plan of the spec in `path` (`-`: stdin).
fn load_plan(path: &std::path::Path, b: BootArgs, quiet: bool) -> Result<plan::VmPlan, Failed> {
    let spec = spec::load_file(path).map_err(VmmError::from)?;
    plan_of(&spec, b, quiet)
}

/// The plan; its warnings are logged unless `quiet` (JSON output carries
/// them).
fn plan_of(spec: &spec::VmSpec, b: BootArgs, quiet: bool) -> Result<plan::VmPlan, Failed> {
    let plan = plan::resolve(spec, &overrides(b)).map_err(|e| Failed {
        error: Box::new(e.into()),
        warnings: spec.warnings.clone(),
    })?;
    if !quiet {
        for w in &plan.warnings {
            tracing::warn!("{w}");
        }
    }
    Ok(plan)
}

/// The host plan; `reserved` are the TCP ports petrel serves in the pod
/// (the `--metrics-address` port), which masquerade does not forward.
fn host_plan(plan: &plan::VmPlan, args: &HostArgs, reserved: &[u16]) -> Result<HostPlan, VmmError> {
    let inputs = HostInputs {
        tap_fds: &args.tap_fds,
        reserved_tcp_ports: reserved,
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

/// The spec `run` boots and the API options (namespace from the spec).
fn run_spec(
    file: Option<&std::path::Path>,
    base64: Option<&str>,
    api: ApiArgs,
) -> Result<(spec::VmSpec, ApiOptions), VmmError> {
    let spec = spec_input::load(file, base64)?;
    let opts = ApiOptions {
        socket: api.api_socket,
        metrics_address: api.metrics_address,
        namespace: spec.namespace.clone(),
        incoming: api.incoming,
    };
    Ok((spec, opts))
}

/// Prints a failure once: the warnings, the error and its causes (no
/// message embeds its source, so nothing repeats); JSON on stdout for
/// `--output json`.
fn report(f: &Failed, output: Output) {
    if let Output::Json = output {
        print_json(&serde_json::json!({
            "errors": f.error.field_errors(),
            "warnings": f.warnings,
        }));
        return;
    }
    for w in &f.warnings {
        eprintln!("petrel: warning: {w}");
    }
    let mut msg = format!("petrel: error: {}", f.error);
    let mut src = std::error::Error::source(&*f.error);
    while let Some(s) = src {
        msg.push_str(&format!("\n  caused by: {s}"));
        src = s.source();
    }
    eprintln!("{msg}");
}

/// `petrel run`: plan, host plan (attaching to what `net-setup` prepared,
/// if it did), build and run the VM.
fn run(args: RunArgs, start: Instant) -> Result<Option<vmm::ExitReason>, Failed> {
    let RunArgs {
        spec,
        spec_base64,
        api,
        boot,
        console,
        console_file_cap,
        boot_protocol,
        pin_vcpus,
        on_guest_reset,
        seccomp,
        host_args,
        run_dir,
    } = args;
    let (spec, api) = run_spec(spec.as_deref(), spec_base64.as_deref(), api)?;
    let plan = plan_of(&spec, boot, false)?;
    let reserved: Vec<u16> = api.metrics_address.iter().map(|a| a.port()).collect();
    let mut host = host_plan(&plan, &host_args, &reserved)?;
    vmm::net_state::prepare_run(&run_dir, &plan, &mut host).map_err(VmmError::from)?;
    let opts = RunOptions {
        console: ConsoleTarget::parse(&console),
        boot_protocol,
        pin_vcpus,
        start: Some(start),
        extra_pci: Vec::new(),
        api,
        on_guest_reset,
        seccomp,
        console_file_cap: (console_file_cap > 0).then_some(console_file_cap),
    };
    let vmm = Vmm::try_from(VmmConfig { plan, host, opts })?;
    Ok(Some(vmm.run()?))
}

fn main() -> ExitCode {
    // A panic on the main thread has unwound through the VM's teardown by
    // now, and the panic hook has said which thread and why: exit 1.
    std::panic::catch_unwind(petrel).unwrap_or(ExitCode::from(1))
}

fn petrel() -> ExitCode {
    let start = Instant::now();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let mut output = Output::Text;
    let result = match cli.command {
        Command::Validate {
            spec,
            output: out,
            boot,
            host,
            host_args,
        } => {
            output = out;
            load_plan(&spec, boot, matches!(out, Output::Json)).and_then(|plan| {
                let host = host
                    .then(|| host_plan(&plan, &host_args, &[]))
                    .transpose()?;
                validate(&plan, output, host.as_ref());
                Ok(None)
            })
        }
        Command::Run(args) => run(*args, start),
        Command::NetSetup {
            spec,
            uid,
            gid,
            metrics_address,
            run_dir,
            host_args,
        } => net_setup(
            &spec,
            owner(uid, gid),
            &run_dir,
            &host_args,
            metrics_address,
        ),
        Command::NetTeardown {
            spec,
            run_dir,
            host_args,
        } => net_teardown(&spec, &run_dir, &host_args),
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
        Err(f) => {
            report(&f, output);
            ExitCode::from(f.error.exit_code() as u8)
        }
    }
}
