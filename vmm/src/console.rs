//! The guest console's host side: bytes from COM1 go to stdout or a file,
//! and each line is watched for the kernel's panic banner, so that the reset
//! that follows a panic (`panic=-1`) is reported as a crash, not a reboot.

use std::fs::OpenOptions;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing::warn;
use vmm_sys_util::terminal::Terminal;

use crate::console_socket::ConsoleSocket;
use crate::console_writer::ConsoleWriter;

const PANIC_BANNER: &str = "Kernel panic - not syncing";
const LINE_MAX: usize = 512;

/// What the console saw that decides how the run ended.
#[derive(Clone, Default)]
pub struct ConsoleWatch {
    panic_line: Arc<Mutex<Option<String>>>,
}

impl ConsoleWatch {
    pub fn panic_line(&self) -> Option<String> {
        self.panic_line
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub struct ConsoleOutput {
    out: Box<dyn Write + Send>,
    line: Vec<u8>,
    watch: ConsoleWatch,
}

impl ConsoleOutput {
    pub fn new(out: Box<dyn Write + Send>, watch: ConsoleWatch) -> Self {
        Self {
            out,
            line: Vec::with_capacity(LINE_MAX),
            watch,
        }
    }

    fn end_line(&mut self) {
        if let Some(pos) = self
            .line
            .windows(PANIC_BANNER.len())
            .position(|w| w == PANIC_BANNER.as_bytes())
        {
            let text = String::from_utf8_lossy(&self.line[pos..])
                .trim_end()
                .to_string();
            let mut slot = self
                .watch
                .panic_line
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(text);
            }
        }
        self.line.clear();
    }
}

impl Write for ConsoleOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                self.end_line();
            } else if self.line.len() < LINE_MAX {
                self.line.push(b);
            }
        }
        self.out.write_all(buf)?;
        // The guest writes one byte per exit; flush so a reader sees lines
        // as they come (tests wait for markers).
        if buf.contains(&b'\n') {
            self.out.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Where the guest console goes.
#[derive(Debug, Clone, Default)]
pub enum ConsoleTarget {
    #[default]
    Stdout,
    File(PathBuf),
    /// A UNIX stream socket clients attach to; output is also logged to
    /// stdout.
    Socket(PathBuf),
}

impl ConsoleTarget {
    /// `stdout` (or `-`), `socket:PATH`, or a file path.
    pub fn parse(s: &str) -> Self {
        match s {
            "stdout" | "-" => ConsoleTarget::Stdout,
            _ => match s.strip_prefix("socket:") {
                Some(p) => ConsoleTarget::Socket(PathBuf::from(p)),
                None => ConsoleTarget::File(PathBuf::from(s)),
            },
        }
    }
}

/// The opened console: what the serial port writes to, the socket the
/// control loop serves (for `socket:PATH`), and the writer thread behind
/// stdout or the file (see [`crate::console_writer`]).
pub struct Opened {
    pub out: Box<dyn Write + Send>,
    pub socket: Option<ConsoleSocket>,
    pub writer: ConsoleWriter,
}

/// Opens the console's output; a file is appended to (at most `file_cap`
/// bytes), a socket bound (the control loop serves it).
pub fn open(target: &ConsoleTarget, file_cap: Option<u64>) -> Result<Opened, (PathBuf, io::Error)> {
    let stdout_writer = || ConsoleWriter::spawn(Box::new(io::stdout()), None);
    Ok(match target {
        ConsoleTarget::Stdout => {
            let (sink, writer) = stdout_writer().map_err(|e| (PathBuf::from("stdout"), e))?;
            Opened {
                out: Box::new(sink),
                socket: None,
                writer,
            }
        }
        ConsoleTarget::File(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| (path.clone(), e))?;
            let (sink, writer) =
                ConsoleWriter::spawn(Box::new(file), file_cap).map_err(|e| (path.clone(), e))?;
            Opened {
                out: Box::new(sink),
                socket: None,
                writer,
            }
        }
        ConsoleTarget::Socket(path) => {
            let (sink, writer) = stdout_writer().map_err(|e| (path.clone(), e))?;
            let (sock, out) =
                ConsoleSocket::bind(path, Box::new(sink)).map_err(|e| (path.clone(), e))?;
            Opened {
                out: Box::new(out),
                socket: Some(sock),
                writer,
            }
        }
    })
}

/// Puts a terminal stdin into raw mode for the guest console and restores
/// it on every exit path.
pub struct RawStdin;

impl RawStdin {
    pub fn enter() -> Option<Self> {
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        match stdin.lock().set_raw_mode() {
            Ok(()) => Some(RawStdin),
            Err(e) => {
                warn!(error = %e, "cannot put the terminal in raw mode; console input disabled");
                None
            }
        }
    }
}

impl Drop for RawStdin {
    fn drop(&mut self) {
        if let Err(e) = io::stdin().lock().set_canon_mode() {
            warn!(error = %e, "cannot restore the terminal mode");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_panic_banner_once() {
        let watch = ConsoleWatch::default();
        let mut c = ConsoleOutput::new(Box::new(io::sink()), watch.clone());
        c.write_all(b"[    1.0] hello\nGUEST-INIT-OK\n").unwrap();
        assert_eq!(watch.panic_line(), None);
        c.write_all(
            b"[ 9.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n",
        )
        .unwrap();
        c.write_all(b"[ 9.2] Kernel panic - not syncing: second\n")
            .unwrap();
        assert_eq!(
            watch.panic_line().as_deref(),
            Some("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100")
        );
    }

    #[test]
    fn long_lines_are_bounded() {
        let watch = ConsoleWatch::default();
        let mut c = ConsoleOutput::new(Box::new(io::sink()), watch.clone());
        c.write_all(&vec![b'x'; 10_000]).unwrap();
        assert!(c.line.len() <= LINE_MAX);
    }
}
