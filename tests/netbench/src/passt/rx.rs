//! RX: the peer's datagrams to the forwarded port, turned into frames by
//! passt, counted by the reader; at most `--window` datagrams in flight
//! (a window that makes no progress for 20 ms is taken as lost and reset).

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use devices::virtio::net::VNET_HDR_LEN;
use net_backend::{FrameBackend, PasstStream};
use vmm_sys_util::eventfd::EventFd;

use super::{
    device, guest_udp_frame, Count, PasstMode, Running, FORWARDED_PORT, FRAME_LEN, PEER_IP, POD_IP,
};
use crate::cli::Opts;
use crate::sys::wait_readable;
use crate::virtio::driver::RxDriver;

/// The peer's sending side, with its window.
struct Source {
    sock: UdpSocket,
    payload: Vec<u8>,
    window: u64,
    sent: u64,
    last_progress: (u64, Instant),
}

impl Source {
    fn new(window: usize) -> Result<Self, String> {
        let sock = UdpSocket::bind((Ipv4Addr::from(PEER_IP), 0))
            .map_err(|e| format!("bind source: {e}"))?;
        sock.connect((Ipv4Addr::from(POD_IP), FORWARDED_PORT))
            .map_err(|e| format!("connect source: {e}"))?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("source non-blocking: {e}"))?;
        Ok(Self {
            sock,
            payload: vec![0x5a; FRAME_LEN - 42],
            window: window as u64,
            sent: 0,
            last_progress: (0, Instant::now()),
        })
    }

    /// Sends until `window` datagrams are in flight; `got` frames arrived.
    fn top_up(&mut self, got: u64) {
        if got != self.last_progress.0 {
            self.last_progress = (got, Instant::now());
        } else if self.last_progress.1.elapsed() > Duration::from_millis(20) {
            self.sent = got;
            self.last_progress.1 = Instant::now();
        }
        while self.sent - got.min(self.sent) < self.window {
            if self.sock.send(&self.payload).is_err() {
                break;
            }
            self.sent += 1;
        }
    }
}

pub fn spawn(
    mode: PasstMode,
    mut stream: PasstStream,
    count: &Arc<Count>,
    opts: &Opts,
) -> Result<Running, String> {
    // One guest frame first, so passt has seen the guest.
    let mut hello = vec![0u8; VNET_HDR_LEN];
    hello.extend_from_slice(&guest_udp_frame());
    stream
        .write_frame(&[std::io::IoSlice::new(&hello)])
        .map_err(|e| format!("hello frame: {e}"))?;
    let src = Source::new(opts.window)?;
    let c = Arc::clone(count);
    match mode {
        PasstMode::Raw => {
            let sock = UnixStream::from(stream.into_fd());
            Ok(Running {
                threads: vec![thread::spawn(move || raw_rx(sock, src, &c))],
                net: None,
            })
        }
        PasstMode::Worker => {
            let dev = device(stream, opts)?;
            let [kick, _] = &dev.kicks;
            let kick = kick.try_clone().map_err(|e| format!("eventfd: {e}"))?;
            let irq = dev.irq.fds[0]
                .try_clone()
                .map_err(|e| format!("eventfd: {e}"))?;
            let rxd = dev.rx;
            Ok(Running {
                threads: vec![thread::spawn(move || worker_rx(rxd, kick, irq, src, &c))],
                net: Some(dev.net),
            })
        }
    }
}

/// Reads the stream in large chunks and counts the length-prefixed frames.
fn raw_rx(mut sock: UnixStream, mut src: Source, c: &Count) {
    let mut buf = vec![0u8; 1 << 18];
    let (mut start, mut end, mut got) = (0usize, 0usize, 0u64);
    c.ctl.start.wait();
    while !c.ctl.stopped() {
        src.top_up(got);
        wait_readable(sock.as_raw_fd(), 2);
        match sock.read(&mut buf[end..]) {
            Ok(0) => panic!("passt closed its socket"),
            Ok(n) => end += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("read from passt: {e}"),
        }
        while end - start >= 4 {
            let len = u32::from_be_bytes(buf[start..start + 4].try_into().unwrap()) as usize;
            if end - start < 4 + len {
                break;
            }
            start += 4 + len;
            got += 1;
        }
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        c.frames.store(got, Ordering::Relaxed);
    }
}

/// The driver's RX loop of the worker mode (as `virtio::worker::worker_rx`,
/// with the peer's datagrams instead of injected frames).
fn worker_rx(mut drv: RxDriver, kick: EventFd, irq: EventFd, mut src: Source, c: &Count) {
    c.ctl.start.wait();
    while !c.ctl.stopped() {
        src.top_up(drv.frames);
        let (reaped, old) = drv.reap();
        if reaped > 0 && drv.ring.kick_needed(old) {
            kick.write(1).expect("kick");
        }
        if reaped == 0 {
            drv.ring.set_used_event(drv.ring.last_used);
            fence(Ordering::SeqCst);
            if drv.ring.used_idx() == drv.ring.last_used {
                wait_readable(irq.as_raw_fd(), 2);
                let _ = irq.read();
            }
        }
        c.frames.store(drv.frames, Ordering::Relaxed);
    }
}
