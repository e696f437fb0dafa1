//! The control API: HTTP/1.1 on a UNIX socket (`--api-socket`) with Cloud
//! Hypervisor's paths and JSON shapes, so Virtink-style callers can drive
//! petrel, plus `/metrics` (also on `--metrics-address`).
//!
//! The API threads share no mutable VM state with the VMM: reads
//! (`vmm.ping`, `vm.counters`, `/metrics`) come from the devices' counter
//! `Arc`s in [`ApiContext`]; everything else is a [`VmmAction`] sent over
//! the request channel ([`request`]) to the control loop, whose
//! [`ApiSubscriber`] runs it through [`ActionExecutor`] (the VM state
//! machine, [`state`]) and replies.
//!
//! ```text
//! api thread ── ApiRequest{action, reply} ─► mpsc + eventfd ─► ctl: ApiSubscriber
//!            ◄──────────── Result<VmmData, ActionError> ──────── ActionExecutor
//! ```

mod executor;
mod info;
mod request;
mod routes;
mod server;
mod setup;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use executor::{ActionExecutor, ApiSubscriber, StateJobs};
pub use info::vm_config;
pub use request::{
    request_channel, ActionError, ApiReceiver, ApiRequest, ApiSender, RequestError, VmState,
    VmmAction, VmmData,
};
pub use routes::{route, route_with_body, Method, Reply};
pub use server::ApiServer;
pub use setup::{ApiInputs, ApiSetup};

use crate::metrics::{MetricLabels, NicSource, VcpuExits};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot spawn the API thread")]
    Spawn(#[source] std::io::Error),
    #[error("cannot create the API request channel")]
    Channel(#[source] std::io::Error),
}

/// Where the API and metrics listen (`petrel run --api-socket`,
/// `--metrics-address`) and the `namespace` label of the metrics.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    pub socket: Option<PathBuf>,
    pub metrics_address: Option<SocketAddr>,
    pub namespace: Option<String>,
    /// `--incoming`: build the VM but wait for a restore or an incoming
    /// migration instead of booting.
    pub incoming: bool,
}

impl ApiOptions {
    pub fn enabled(&self) -> bool {
        self.socket.is_some() || self.metrics_address.is_some()
    }
}

/// What the API threads read: the request channel's sender, the static
/// VM config, and read-only handles on the counters.
pub struct ApiContext {
    pub sender: ApiSender,
    /// `vm.info`'s `config` ([`vm_config`]).
    pub config: serde_json::Value,
    pub memory_bytes: u64,
    pub nics: Vec<NicSource>,
    pub exits: Arc<VcpuExits>,
    /// The VM's device pause gate, read for `petrel_vm_paused`.
    pub paused: devices::PauseGate,
    pub labels: MetricLabels,
}

/// Starts the listeners `opts` asks for.
pub fn start(opts: &ApiOptions, ctx: ApiContext) -> Result<Vec<ApiServer>, ApiError> {
    let ctx = Arc::new(ctx);
    let mut servers = Vec::new();
    if let Some(path) = &opts.socket {
        servers.push(ApiServer::unix(path, ctx.clone())?);
    }
    if let Some(addr) = opts.metrics_address {
        servers.push(ApiServer::metrics_tcp(addr, ctx)?);
    }
    Ok(servers)
}
