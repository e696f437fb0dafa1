//! TX: guest frames into passt, counted as datagrams at the peer's sink.

use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;

use net_backend::PasstStream;

use super::{device, guest_udp_frame, peer_socket, Count, PasstMode, Running, SINK_PORT};
use crate::cli::Opts;
use crate::stats::Stats;
use crate::virtio::worker::worker_tx;

pub fn spawn(
    mode: PasstMode,
    stream: PasstStream,
    count: &Arc<Count>,
    opts: &Opts,
) -> Result<Running, String> {
    let sink = peer_socket(SINK_PORT)?;
    let c = Arc::clone(count);
    let mut threads = vec![thread::spawn(move || sink_loop(&sink, &c))];
    let mut net = None;
    match mode {
        PasstMode::Raw => {
            let c = Arc::clone(count);
            let sock = UnixStream::from(stream.into_fd());
            sock.set_nonblocking(false)
                .map_err(|e| format!("blocking socket: {e}"))?;
            threads.push(thread::spawn(move || raw_tx(sock, &c)));
        }
        PasstMode::Worker => {
            let dev = device(stream, opts)?;
            let [_, kick] = &dev.kicks;
            let kick = kick.try_clone().map_err(|e| format!("eventfd: {e}"))?;
            let irq = dev.irq.fds[1]
                .try_clone()
                .map_err(|e| format!("eventfd: {e}"))?;
            let ctl = Arc::clone(&count.ctl);
            let txd = dev.tx;
            threads.push(thread::spawn(move || {
                worker_tx(txd, kick, irq, Arc::new(Stats::default()), ctl)
            }));
            net = Some(dev.net);
        }
    }
    Ok(Running { threads, net })
}

fn sink_loop(sink: &UdpSocket, c: &Count) {
    let mut buf = [0u8; 2048];
    while !c.ctl.stopped() {
        if sink.recv(&mut buf).is_ok() {
            c.frames.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One frame per write, as the backend sends them.
fn raw_tx(mut sock: UnixStream, c: &Count) {
    let frame = guest_udp_frame();
    let mut buf = (frame.len() as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(&frame);
    c.ctl.start.wait();
    while !c.ctl.stopped() {
        sock.write_all(&buf).expect("write to passt");
    }
}
