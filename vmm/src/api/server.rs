//! The HTTP/1.1 listeners (tiny_http): the API on a UNIX socket and the
//! optional `/metrics`-only TCP listener. Each [`ApiServer`] runs one
//! thread (`api`, `metrics`) that takes complete requests from tiny_http
//! and answers them through [`super::routes::route`]; tiny_http's own
//! accept and connection threads only parse HTTP. Dropping the server
//! unblocks and joins the thread (a request in progress gets its answer
//! first) and removes the socket file.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::{debug, info, warn};

use super::routes::{route_with_body, Method, Reply};
use super::{ApiContext, ApiError};
use crate::seccomp::ThreadClass;

/// A listener and its serving thread.
pub struct ApiServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    socket: Option<PathBuf>,
}

impl ApiServer {
    /// Serves the API at UNIX socket `path` (a stale socket there is
    /// replaced).
    pub fn unix(path: &Path, ctx: Arc<ApiContext>) -> Result<Self, ApiError> {
        if std::fs::symlink_metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
        {
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path).map_err(|source| ApiError::Listen {
            addr: path.display().to_string(),
            source: Box::new(source),
        })?;
        info!(socket = %path.display(), "API listening");
        let mut s = Self::spawn("api", listener.into(), ctx, false)?;
        s.socket = Some(path.to_path_buf());
        Ok(s)
    }

    /// Serves `/metrics` over TCP at `addr`.
    pub fn metrics_tcp(addr: SocketAddr, ctx: Arc<ApiContext>) -> Result<Self, ApiError> {
        let listener = TcpListener::bind(addr).map_err(|source| ApiError::Listen {
            addr: addr.to_string(),
            source: Box::new(source),
        })?;
        info!(%addr, "metrics listening");
        Self::spawn("metrics", listener.into(), ctx, true)
    }

    /// Starts thread `name`, which confines itself and only then makes the
    /// tiny_http server (whose accept and connection threads so inherit
    /// its filter); returns once the server exists.
    fn spawn(
        name: &str,
        listener: tiny_http::Listener,
        ctx: Arc<ApiContext>,
        metrics_only: bool,
    ) -> Result<Self, ApiError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let addr = name.to_string();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let server = crate::sandbox::enter(ThreadClass::Api)
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
                    .and_then(|()| tiny_http::Server::from_listener(listener, None))
                    .map(Arc::new);
                let server = match server {
                    Ok(s) => {
                        let _ = tx.send(Ok(s.clone()));
                        s
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                serve(&server, &ctx, metrics_only);
            })
            .map_err(ApiError::Spawn)?;
        let server = rx
            .recv()
            .unwrap_or_else(|_| Err("the API thread died at start".into()))
            .map_err(|source| ApiError::Listen { addr, source })?;
        Ok(Self {
            server,
            thread: Some(thread),
            socket: None,
        })
    }
}

fn serve(server: &tiny_http::Server, ctx: &ApiContext, metrics_only: bool) {
    for mut req in server.incoming_requests() {
        let mut body = String::new();
        // A body that is not UTF-8 reads as empty and fails where it is needed.
        let _ = std::io::Read::read_to_string(req.as_reader(), &mut body);
        let method = match req.method() {
            tiny_http::Method::Get => Method::Get,
            tiny_http::Method::Put => Method::Put,
            _ => Method::Other,
        };
        let reply = route_with_body(ctx, method, req.url(), &body, metrics_only);
        debug!(method = %req.method(), url = req.url(), status = reply.status, "API request");
        if let Err(e) = req.respond(response(reply)) {
            warn!(error = %e, "cannot answer an API request");
        }
    }
}

fn response(reply: Reply) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut r = tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", reply.content_type) {
        r = r.with_header(h);
    }
    r
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!("the API thread panicked");
            }
        }
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}
