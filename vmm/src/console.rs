//! The guest console's host side: bytes from COM1 go to stdout or a file,
//! and each line is watched for the kernel's panic banner, so that the reset
//! that follows a panic (`panic=-1`) is reported as a crash, not a reboot.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

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
