//! Paths, methods and JSON shapes, as in Cloud Hypervisor's OpenAPI
//! (`/api/v1/vmm.ping`, `vm.info`, `vm.counters`, the `PUT` actions), plus
//! `GET /metrics`. Pure over an [`ApiContext`]: the HTTP thread hands in
//! method and path and writes back the [`Reply`]. Bad requests get 4xx
//! and never reach the VMM.

use std::collections::BTreeMap;

use serde_json::json;

use super::request::{ActionError, RequestError, VmmAction, VmmData};
use super::ApiContext;
use crate::metrics::{render, OPENMETRICS_CONTENT_TYPE};

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            content_type: JSON,
            body: value.to_string(),
        }
    }

    fn error(status: u16, message: impl std::fmt::Display) -> Self {
        Self {
            status,
            content_type: TEXT,
            body: format!("{message}\n"),
        }
    }

    fn no_content() -> Self {
        Self {
            status: 204,
            content_type: TEXT,
            body: String::new(),
        }
    }
}

/// The request methods the API knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Other,
}

/// What each path is served by.
enum Endpoint {
    Ping,
    Counters,
    Metrics,
    /// `GET` through the VMM.
    Info,
    /// `PUT` action.
    Action(VmmAction),
}

fn endpoint(path: &str) -> Option<Endpoint> {
    if path == "/metrics" {
        return Some(Endpoint::Metrics);
    }
    let name = path.strip_prefix("/api/v1/")?;
    Some(match name {
        "vmm.ping" => Endpoint::Ping,
        "vm.info" => Endpoint::Info,
        "vm.counters" => Endpoint::Counters,
        "vm.pause" => Endpoint::Action(VmmAction::Pause),
        "vm.resume" => Endpoint::Action(VmmAction::Resume),
        "vm.reboot" => Endpoint::Action(VmmAction::Reboot),
        "vm.power-button" => Endpoint::Action(VmmAction::PowerButton),
        "vm.shutdown" => Endpoint::Action(VmmAction::ShutdownVm),
        "vmm.shutdown" => Endpoint::Action(VmmAction::ShutdownVmm),
        "vm.snapshot" => Endpoint::Action(VmmAction::Snapshot),
        "vm.restore" => Endpoint::Action(VmmAction::Restore),
        "vm.send-migration" => Endpoint::Action(VmmAction::SendMigration),
        "vm.receive-migration" => Endpoint::Action(VmmAction::ReceiveMigration),
        _ => return None,
    })
}

/// Answers one request. `metrics_only` listeners (the TCP one) serve just
/// `/metrics`.
pub fn route(ctx: &ApiContext, method: Method, url: &str, metrics_only: bool) -> Reply {
    route_with_body(ctx, method, url, "", metrics_only)
}

/// [`route`] with the request body (the JSON of the snapshot and
/// migration actions).
pub fn route_with_body(
    ctx: &ApiContext,
    method: Method,
    url: &str,
    body: &str,
    metrics_only: bool,
) -> Reply {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let Some(ep) = endpoint(path) else {
        return Reply::error(404, format_args!("no endpoint {path}"));
    };
    let wanted = match ep {
        Endpoint::Action(_) => Method::Put,
        _ => Method::Get,
    };
    if metrics_only && !matches!(ep, Endpoint::Metrics) {
        return Reply::error(404, format_args!("only /metrics is served here"));
    }
    if method != wanted {
        return Reply::error(405, format_args!("{path} takes {wanted:?}, not {method:?}"));
    }
    match ep {
        Endpoint::Ping => Reply::json(
            200,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "build_version": concat!("petrel ", env!("CARGO_PKG_VERSION")),
                "pid": std::process::id(),
                "features": [],
            }),
        ),
        Endpoint::Counters => {
            let map: BTreeMap<&str, BTreeMap<String, u64>> = ctx
                .nics
                .iter()
                .map(|n| (n.id.as_str(), n.counters()))
                .collect();
            Reply::json(200, &json!(map))
        }
        Endpoint::Metrics => Reply {
            status: 200,
            content_type: OPENMETRICS_CONTENT_TYPE,
            body: render(&ctx.labels, &ctx.nics, &ctx.exits, ctx.paused.is_paused()),
        },
        Endpoint::Info => call(ctx, VmmAction::Info),
        Endpoint::Action(a) => match a.url_field() {
            Some(field) => match url_arg(body, field) {
                Ok(u) => call_with(ctx, a, Some(u)),
                Err(msg) => Reply::error(400, format_args!("{}: {msg}", a.name())),
            },
            None => call(ctx, a),
        },
    }
}

/// The string field `field` of the JSON object `body`.
fn url_arg(body: &str, field: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    v.get(field)
        .and_then(|u| u.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("the body needs a string field {field:?}"))
}

/// Sends an action to the VMM and turns its answer into HTTP.
fn call(ctx: &ApiContext, action: VmmAction) -> Reply {
    call_with(ctx, action, None)
}

fn call_with(ctx: &ApiContext, action: VmmAction, url: Option<String>) -> Reply {
    match ctx.sender.call_with(action, url) {
        Ok(Ok(VmmData::Empty)) => Reply::no_content(),
        Ok(Ok(VmmData::State(state))) => Reply::json(
            200,
            &json!({
                "config": ctx.config,
                "state": state,
                "memory_actual_size": ctx.memory_bytes,
            }),
        ),
        Ok(Err(e)) => {
            let status = match e {
                ActionError::InvalidState { .. } => 405,
                ActionError::NotSupported { .. } => 501,
                ActionError::Failed { .. } => 500,
            };
            Reply::error(status, e)
        }
        Err(e @ RequestError::Gone) => Reply::error(503, e),
        Err(e) => Reply::error(500, e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::{request_channel, ActionError, VmState};
    use super::*;
    use crate::metrics::{MetricLabels, VcpuExits};
    use std::sync::Arc;

    /// A context whose VMM end answers from `answer` on its own thread.
    fn ctx(
        answer: fn(VmmAction) -> Result<VmmData, ActionError>,
    ) -> (ApiContext, std::thread::JoinHandle<()>) {
        let (sender, receiver) = request_channel().unwrap();
        let t = std::thread::spawn(move || {
            while let Ok(req) = receiver.rx.recv() {
                let _ = req.reply.send(answer(req.action));
            }
        });
        let ctx = ApiContext {
            sender,
            config: json!({"cpus": {"boot_vcpus": 1}}),
            memory_bytes: 128 << 20,
            nics: Vec::new(),
            exits: Arc::new(VcpuExits::new(1)),
            paused: devices::PauseGate::new().unwrap(),
            labels: MetricLabels::default(),
        };
        (ctx, t)
    }

    fn running(a: VmmAction) -> Result<VmmData, ActionError> {
        match a {
            VmmAction::Info => Ok(VmmData::State(VmState::Running)),
            VmmAction::Resume => Err(ActionError::InvalidState {
                action: a.name(),
                state: VmState::Running,
            }),
            VmmAction::Reboot => Err(ActionError::NotSupported { action: a.name() }),
            _ => Ok(VmmData::Empty),
        }
    }

    #[test]
    fn paths_methods_and_statuses() {
        let (ctx, _t) = ctx(running);
        let get = |u: &str| route(&ctx, Method::Get, u, false);
        let put = |u: &str| route(&ctx, Method::Put, u, false);
        let ping = get("/api/v1/vmm.ping");
        assert_eq!(ping.status, 200);
        let v: serde_json::Value = serde_json::from_str(&ping.body).unwrap();
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        let info = get("/api/v1/vm.info?x=1");
        assert_eq!(info.status, 200);
        let v: serde_json::Value = serde_json::from_str(&info.body).unwrap();
        assert_eq!(v["state"], "Running");
        assert_eq!(v["config"]["cpus"]["boot_vcpus"], 1);
        assert_eq!(put("/api/v1/vm.pause").status, 204);
        assert_eq!(put("/api/v1/vm.resume").status, 405);
        assert_eq!(put("/api/v1/vm.reboot").status, 501);
        assert_eq!(get("/api/v1/vm.pause").status, 405);
        assert_eq!(put("/api/v1/vm.info").status, 405);
        assert_eq!(get("/api/v1/nope").status, 404);
        assert_eq!(get("/elsewhere").status, 404);
        assert_eq!(route(&ctx, Method::Other, "/metrics", false).status, 405);
        assert_eq!(get("/api/v1/vm.counters").body, "{}");
        let snap = |b: &str| route_with_body(&ctx, Method::Put, "/api/v1/vm.snapshot", b, false);
        assert_eq!(snap("").status, 400);
        assert_eq!(snap(r#"{"source_url":"file:///x"}"#).status, 400);
        assert_eq!(snap(r#"{"destination_url":"file:///x"}"#).status, 204);
        let m = get("/metrics");
        assert_eq!((m.status, m.content_type), (200, OPENMETRICS_CONTENT_TYPE));
        assert_eq!(route(&ctx, Method::Get, "/metrics", true).status, 200);
        assert_eq!(
            route(&ctx, Method::Get, "/api/v1/vmm.ping", true).status,
            404
        );
    }

    #[test]
    fn a_gone_vmm_is_503() {
        let (sender, receiver) = request_channel().unwrap();
        drop(receiver);
        let (mut c, _t) = ctx(running);
        c.sender = sender;
        assert_eq!(
            route(&c, Method::Put, "/api/v1/vm.pause", false).status,
            503
        );
    }
}
