//! The console writer: the guest's serial output reaches stdout or the
//! console file through a bounded buffer and a thread of its own
//! (`console`), so a slow reader (a full pipe, a stalled log collector)
//! never blocks a vCPU inside its port write. When the buffer is full the
//! newest bytes are dropped and counted, and a note in the output says how
//! many; a console file stops growing at its size cap, with a note as its
//! last line and a warning in the log.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tracing::warn;

use crate::seccomp::ThreadClass;

/// Guest output held for a slow writer.
pub const BUFFER_BYTES: usize = 1 << 20;

/// Default cap on a `--console FILE`.
pub const DEFAULT_FILE_CAP: u64 = 64 << 20;

#[derive(Default)]
struct State {
    buf: VecDeque<u8>,
    /// Bytes dropped since the last note about it.
    dropped: u64,
    /// A flush was asked for (the guest ended a line).
    flush: bool,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The vCPU side: never blocks on the output (only on the buffer's lock).
pub struct ConsoleSink {
    shared: Arc<Shared>,
}

impl Write for ConsoleSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut s = self.shared.lock();
        let room = self.shared.capacity.saturating_sub(s.buf.len());
        let (kept, lost) = data.split_at(room.min(data.len()));
        s.buf.extend(kept);
        s.dropped += lost.len() as u64;
        drop(s);
        self.shared.ready.notify_one();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.shared.lock().flush = true;
        self.shared.ready.notify_one();
        Ok(())
    }
}

/// The writer thread; dropping it writes what is buffered and joins.
pub struct ConsoleWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ConsoleWriter {
    /// Starts the `console` thread writing into `out`, at most `cap` bytes
    /// in all (`None`: no cap), and returns the sink the serial port
    /// writes to.
    pub fn spawn(
        out: Box<dyn Write + Send>,
        cap: Option<u64>,
    ) -> io::Result<(ConsoleSink, ConsoleWriter)> {
        Self::with_capacity(out, cap, BUFFER_BYTES)
    }

    fn with_capacity(
        out: Box<dyn Write + Send>,
        cap: Option<u64>,
        capacity: usize,
    ) -> io::Result<(ConsoleSink, ConsoleWriter)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            capacity,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                if let Err(e) = crate::sandbox::enter(ThreadClass::Console) {
                    warn!(error = %e, "cannot sandbox the console writer");
                }
                run(&s, out, cap);
            })?;
        let sink = ConsoleSink {
            shared: shared.clone(),
        };
        Ok((
            sink,
            ConsoleWriter {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

impl Drop for ConsoleWriter {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the writer still may write, and whether the cap note is out.
struct Cap {
    left: Option<u64>,
    limit: u64,
    noted: bool,
}

impl Cap {
    /// Writes as much of `data` as the cap allows; at the cap, the note.
    fn write(&mut self, out: &mut dyn Write, data: &[u8]) -> io::Result<()> {
        let Some(left) = self.left else {
            return out.write_all(data);
        };
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
        out.write_all(data.get(..n).unwrap_or(&[]))?;
        self.left = Some(left - n as u64);
        if n < data.len() && !self.noted {
            self.noted = true;
            let note = format!(
                "\n[petrel: the console file reached its cap of {} bytes; further guest output is not written]\n",
                self.limit
            );
            out.write_all(note.as_bytes())?;
            warn!(
                cap_bytes = self.limit,
                "console file cap reached; further guest output is dropped"
            );
        }
        Ok(())
    }
}

fn run(shared: &Shared, mut out: Box<dyn Write + Send>, cap: Option<u64>) {
    let mut cap = Cap {
        left: cap,
        limit: cap.unwrap_or(0),
        noted: false,
    };
    let mut chunk = Vec::with_capacity(64 * 1024);
    let mut errors = 0u64;
    loop {
        let (dropped, flush, closed) = {
            let mut s = shared.lock();
            while s.buf.is_empty() && !s.flush && !s.closed && s.dropped == 0 {
                s = shared.ready.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            chunk.clear();
            chunk.extend(s.buf.drain(..));
            let d = std::mem::take(&mut s.dropped);
            (d, std::mem::take(&mut s.flush), s.closed)
        };
        let mut result = cap.write(&mut *out, &chunk);
        if dropped > 0 {
            let note = format!(
                "\n[petrel: {dropped} bytes of guest console output dropped: the console output is too slow]\n"
            );
            result = result.and_then(|()| cap.write(&mut *out, note.as_bytes()));
        }
        if flush || closed || dropped > 0 {
            result = result.and_then(|()| out.flush());
        }
        if let Err(e) = result {
            // Nowhere to write: keep draining so the guest never waits.
            errors += 1;
            if devices::should_log(errors) {
                warn!(error = %e, "cannot write the guest console");
            }
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// An output that blocks until released, then collects.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<AtomicBool>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            while !self.open.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.got.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_never_blocks_the_writer_side() {
        let gate = Gate::default();
        let (mut sink, writer) =
            ConsoleWriter::with_capacity(Box::new(gate.clone()), None, 4096).unwrap();
        let start = Instant::now();
        // 1 MiB of guest output against a stalled reader.
        for _ in 0..1024 {
            sink.write_all(&[b'x'; 1024]).unwrap();
        }
        sink.flush().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        gate.open.store(true, Ordering::Release);
        drop(writer);
        let got = gate.got.lock().unwrap();
        let text = String::from_utf8_lossy(&got);
        // What fitted in the buffer (plus what the writer took before it
        // stalled), then the note about the rest.
        assert!(got.len() < 3 * 4096 + 200, "{}", got.len());
        assert!(
            text.contains("bytes of guest console output dropped"),
            "{text}"
        );
    }

    #[test]
    fn the_file_cap_stops_output_with_a_note() {
        let gate = Gate::default();
        gate.open.store(true, Ordering::Release);
        let (mut sink, writer) = ConsoleWriter::spawn(Box::new(gate.clone()), Some(100)).unwrap();
        for _ in 0..50 {
            sink.write_all(b"0123456789\n").unwrap();
            sink.flush().unwrap();
        }
        drop(writer);
        let got = gate.got.lock().unwrap();
        let text = String::from_utf8_lossy(&got);
        let (head, note) = text.split_at(100);
        assert_eq!(head, "0123456789\n".repeat(10).get(..100).unwrap());
        assert_eq!(
            note,
            "\n[petrel: the console file reached its cap of 100 bytes; further guest output is not written]\n"
        );
    }

    #[test]
    fn everything_is_written_in_order_when_the_reader_keeps_up() {
        let gate = Gate::default();
        gate.open.store(true, Ordering::Release);
        let (mut sink, writer) = ConsoleWriter::spawn(Box::new(gate.clone()), None).unwrap();
        let mut want = Vec::new();
        for i in 0..2000u32 {
            let line = format!("line {i}\n");
            sink.write_all(line.as_bytes()).unwrap();
            want.extend_from_slice(line.as_bytes());
        }
        drop(writer);
        assert_eq!(*gate.got.lock().unwrap(), want);
    }
}
