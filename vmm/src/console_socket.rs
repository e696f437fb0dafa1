//! `--console socket:PATH`: the guest serial console on a UNIX stream socket
//! (what KubeVirt's `virt-serial0` is; `virtctl console` and `socat`
//! attach to it). Output goes to every connected client and still to
//! stdout (the console log); a client that connects late first gets the
//! last [`BACKLOG`] bytes. Bytes a client sends go to COM1's input.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use devices::legacy::Serial;
use event_manager::{EventOps, Events, MutEventSubscriber};
use tracing::{info, warn};
use vmm_sys_util::epoll::EventSet;

/// Output kept for clients that connect later.
pub const BACKLOG: usize = 64 * 1024;

#[derive(Default)]
struct Clients {
    streams: Vec<UnixStream>,
    backlog: VecDeque<u8>,
}

type Shared = Arc<Mutex<Clients>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Clients> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The write side (the serial device's output): log, backlog, clients.
pub struct SocketOutput {
    log: Box<dyn Write + Send>,
    clients: Shared,
}

impl Write for SocketOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut c = lock(&self.clients);
        c.backlog.extend(buf);
        let excess = c.backlog.len().saturating_sub(BACKLOG);
        c.backlog.drain(..excess);
        // A client that cannot keep up loses output rather than stall the
        // vCPU; one whose socket failed is dropped.
        c.streams.retain_mut(|s| match s.write(buf) {
            Ok(_) => true,
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        });
        drop(c);
        self.log.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.log.flush()
    }
}

/// The listening socket, served by the control loop.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
    clients: Shared,
    /// Read halves of the connected clients.
    readers: Vec<UnixStream>,
    serial: Option<Arc<Mutex<Serial>>>,
}

impl ConsoleSocket {
    /// Binds `path` (replacing a stale socket) and returns the output
    /// writer, which tees to `log`.
    pub fn bind(path: &Path, log: Box<dyn Write + Send>) -> io::Result<(Self, SocketOutput)> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let clients = Shared::default();
        let out = SocketOutput {
            log,
            clients: clients.clone(),
        };
        let sock = Self {
            path: path.to_path_buf(),
            listener,
            clients,
            readers: Vec::new(),
            serial: None,
        };
        Ok((sock, out))
    }

    /// Where client input goes.
    pub fn set_serial(&mut self, serial: Arc<Mutex<Serial>>) {
        self.serial = Some(serial);
    }

    fn accept(&mut self, ops: &mut EventOps) -> io::Result<()> {
        let (stream, _) = self.listener.accept()?;
        let reader = stream.try_clone()?;
        let mut writer = stream;
        // The backlog is written blocking, then the stream turns
        // non-blocking for live output.
        let backlog: Vec<u8> = lock(&self.clients).backlog.iter().copied().collect();
        writer.write_all(&backlog)?;
        writer.set_nonblocking(true)?;
        if let Err(e) = ops.add(Events::new(&reader, EventSet::IN)) {
            warn!(error = ?e, "cannot watch a console client");
            return Ok(());
        }
        lock(&self.clients).streams.push(writer);
        self.readers.push(reader);
        info!(clients = self.readers.len(), "console client connected");
        Ok(())
    }

    fn client_input(&mut self, fd: i32, ops: &mut EventOps) {
        let Some(i) = self.readers.iter().position(|r| r.as_raw_fd() == fd) else {
            return;
        };
        let mut buf = [0u8; 64];
        let n = self.readers[i].read(&mut buf).unwrap_or(0);
        if n == 0 {
            let r = self.readers.swap_remove(i);
            let _ = ops.remove(Events::new(&r, EventSet::IN));
            // Its write half is dropped at the next failed write.
            let _ = r.shutdown(std::net::Shutdown::Both);
            info!("console client disconnected");
            return;
        }
        if let Some(serial) = &self.serial {
            let mut s = serial.lock().unwrap_or_else(|e| e.into_inner());
            // A full FIFO drops input, as for stdin.
            let _ = s.enqueue_input(&buf[..n]);
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl MutEventSubscriber for ConsoleSocket {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.listener, EventSet::IN)) {
            warn!(error = ?e, "cannot watch the console socket");
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.listener.as_raw_fd() {
            if let Err(e) = self.accept(ops) {
                if e.kind() != ErrorKind::WouldBlock {
                    warn!(error = %e, "cannot accept a console client");
                }
            }
        } else {
            self.client_input(events.fd(), ops);
        }
    }
}
