//! [`PasstStream`]: a [`FrameBackend`] over the `AF_UNIX` stream socket
//! passt serves, in QEMU's stream netdev format: every Ethernet frame is
//! prefixed by its length as a 4-byte big-endian integer, with no virtio-net
//! header. The backend strips the header the NIC models put in front of
//! each frame on transmit and gives received frames a zeroed one, so the
//! models see the usual contract; it offers no checksum or segmentation
//! offloads ([`FrameBackend::supports_offloads`] is false), so the frames it
//! is handed are complete and at most MTU-sized.
//!
//! The stream has no frame boundaries, so both directions keep a little
//! state, in buffers allocated once:
//! - receive reads at most the rest of the current frame plus the next
//!   frame's length prefix, so the socket stays readable while a whole frame
//!   is waiting in it and the backend never holds a complete frame the
//!   caller has not been given (readiness stays exact for level-triggered
//!   epoll);
//! - a transmit the socket takes only in part keeps the rest of the frame
//!   and reports `WouldBlock`; the next write first finishes that frame,
//!   and when the caller offers the same frame again (as a virtio queue
//!   does after `WouldBlock`) it is not sent twice.
//!
//! A peer that sends a length of 0 or beyond [`MAX_STREAM_FRAME`] has
//! corrupted the stream: the backend reports it once and behaves as hung
//! up (`Ok(0)`), as on end of file. Writes to a peer that hung up fail with
//! `EPIPE`, never `SIGPIPE`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use tracing::warn;

use crate::{sys, FrameBackend, Offloads, VNET_HDR_LEN};

/// Largest frame accepted either way: a 65535-byte IP packet with its
/// Ethernet header (passt's limit), rounded up.
pub const MAX_STREAM_FRAME: usize = 65_536 + 64;

/// Size of the length prefix.
const PREFIX_LEN: usize = 4;

/// Slices of one frame sent without copying; more are copied first.
const MAX_SLICES: usize = 16;

/// Socket buffer size asked for on our end (capped at
/// `net.core.{w,r}mem_max`).
const SOCKET_BUF_BYTES: libc::c_int = 4 << 20;

/// petrel's end of a passt socket.
#[derive(Debug)]
pub struct PasstStream {
    fd: OwnedFd,
    rx: RxState,
    tx: TxState,
}

#[derive(Debug)]
struct RxState {
    /// The next frame's length prefix, `prefix_have` bytes of it read.
    prefix: [u8; PREFIX_LEN],
    prefix_have: usize,
    /// Length of the frame being received, once its prefix is complete.
    frame_len: Option<usize>,
    /// The frame being received, `have` bytes of it read.
    frame: Box<[u8]>,
    have: usize,
    /// The peer hung up or corrupted the stream.
    closed: bool,
}

#[derive(Debug)]
struct TxState {
    /// A frame (prefix included) the socket took only in part: `buf[..len]`,
    /// of which `buf[..sent]` is written.
    buf: Box<[u8]>,
    len: usize,
    sent: usize,
}

impl PasstStream {
    /// A connected pair: petrel's non-blocking end, and the descriptor to
    /// hand to passt (`passt --fd`; blocking, close-on-exec, which the
    /// spawner clears in the child).
    pub fn pair() -> io::Result<(PasstStream, OwnedFd)> {
        let (ours, theirs) = sys::stream_socketpair()?;
        Ok((PasstStream::from_fd(ours)?, theirs))
    }

    /// Adopts a connected stream socket (made non-blocking here).
    pub fn from_fd(fd: OwnedFd) -> io::Result<PasstStream> {
        sys::set_nonblocking(fd.as_fd())?;
        // Best effort: a larger buffer only saves wake-ups.
        let _ = sys::set_socket_int_opt(fd.as_fd(), libc::SO_SNDBUF, SOCKET_BUF_BYTES);
        let _ = sys::set_socket_int_opt(fd.as_fd(), libc::SO_RCVBUF, SOCKET_BUF_BYTES);
        Ok(PasstStream {
            fd,
            rx: RxState {
                prefix: [0; PREFIX_LEN],
                prefix_have: 0,
                frame_len: None,
                frame: vec![0; MAX_STREAM_FRAME].into_boxed_slice(),
                have: 0,
                closed: false,
            },
            tx: TxState {
                buf: vec![0; PREFIX_LEN + MAX_STREAM_FRAME].into_boxed_slice(),
                len: 0,
                sent: 0,
            },
        })
    }

    /// The socket itself, for a caller that drives passt without the
    /// backend (the benchmark's reference); state kept here is dropped.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Reads until a whole frame is in `rx.frame`; its length, or why not.
    fn receive(&mut self) -> io::Result<Option<usize>> {
        let rx = &mut self.rx;
        loop {
            let Some(len) = rx.frame_len else {
                if rx.prefix_have < PREFIX_LEN {
                    let n = sys::read(self.fd.as_fd(), &mut rx.prefix[rx.prefix_have..])?;
                    if n == 0 {
                        return Ok(None);
                    }
                    rx.prefix_have += n;
                    continue;
                }
                rx.prefix_have = 0;
                let len = u32::from_be_bytes(rx.prefix) as usize;
                if len == 0 || len > MAX_STREAM_FRAME {
                    warn!(len, "passt stream: bad frame length, the stream is corrupt");
                    return Ok(None);
                }
                rx.frame_len = Some(len);
                rx.have = 0;
                continue;
            };
            // The rest of this frame and the next one's prefix, no more.
            let mut bufs = [
                IoSliceMut::new(&mut rx.frame[rx.have..len]),
                IoSliceMut::new(&mut rx.prefix),
            ];
            let n = sys::readv(self.fd.as_fd(), &mut bufs)?;
            if n == 0 {
                return Ok(None);
            }
            let body = n.min(len - rx.have);
            rx.have += body;
            rx.prefix_have = n - body;
            if rx.have == len {
                rx.frame_len = None;
                return Ok(Some(len));
            }
        }
    }

    /// Finishes a frame the socket took in part (`WouldBlock` while the
    /// socket has no room for the rest).
    fn flush(&mut self) -> io::Result<()> {
        let tx = &mut self.tx;
        while tx.sent < tx.len {
            let n = sys::send_nosignal(self.fd.as_fd(), &[IoSlice::new(&tx.buf[tx.sent..tx.len])])?;
            tx.sent += n;
        }
        Ok(())
    }

    /// Whether `bufs` (virtio-net header first) is the frame kept in
    /// `tx.buf` (prefix first).
    fn is_kept_frame(&self, bufs: &[IoSlice<'_>], total: usize) -> bool {
        if total - VNET_HDR_LEN + PREFIX_LEN != self.tx.len {
            return false;
        }
        let mut kept = &self.tx.buf[PREFIX_LEN..self.tx.len];
        for chunk in without_header(bufs) {
            let Some((head, rest)) = kept.split_at_checked(chunk.len()) else {
                return false;
            };
            if head != chunk {
                return false;
            }
            kept = rest;
        }
        kept.is_empty()
    }

    /// Sends one frame of `frame_len` bytes (`bufs` without the header)
    /// after its prefix; keeps what the socket did not take.
    fn send(&mut self, bufs: &[IoSlice<'_>], frame_len: usize) -> io::Result<()> {
        let prefix = u32::try_from(frame_len)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?
            .to_be_bytes();
        let chunks = without_header(bufs);
        if chunks.clone().count() >= MAX_SLICES {
            // Too many pieces for one iovec array: copy, send from the copy.
            self.keep(&prefix, bufs, frame_len);
            let sent = sys::send_nosignal(
                self.fd.as_fd(),
                &[IoSlice::new(&self.tx.buf[..self.tx.len])],
            );
            return match sent {
                Ok(n) if n == self.tx.len => {
                    self.tx.len = 0;
                    Ok(())
                }
                Ok(n) => {
                    self.tx.sent = n;
                    Err(io::Error::from(io::ErrorKind::WouldBlock))
                }
                Err(e) => {
                    self.tx.len = 0;
                    Err(e)
                }
            };
        }
        let mut iov = [IoSlice::new(&[]); MAX_SLICES];
        iov[0] = IoSlice::new(&prefix);
        let mut n = 1;
        for chunk in chunks {
            iov[n] = IoSlice::new(chunk);
            n += 1;
        }
        let sent = sys::send_nosignal(self.fd.as_fd(), &iov[..n])?;
        if sent == PREFIX_LEN + frame_len {
            return Ok(());
        }
        self.keep(&prefix, bufs, frame_len);
        self.tx.sent = sent;
        Err(io::Error::from(io::ErrorKind::WouldBlock))
    }

    /// Copies prefix and frame into `tx.buf`.
    fn keep(&mut self, prefix: &[u8; PREFIX_LEN], bufs: &[IoSlice<'_>], frame_len: usize) {
        let tx = &mut self.tx;
        tx.buf[..PREFIX_LEN].copy_from_slice(prefix);
        let mut at = PREFIX_LEN;
        for chunk in without_header(bufs) {
            tx.buf[at..at + chunk.len()].copy_from_slice(chunk);
            at += chunk.len();
        }
        tx.len = PREFIX_LEN + frame_len;
        tx.sent = 0;
    }
}

/// The bytes of `bufs` after the first [`VNET_HDR_LEN`], as slices.
fn without_header<'a>(bufs: &'a [IoSlice<'a>]) -> impl Iterator<Item = &'a [u8]> + Clone + 'a {
    let mut skip = VNET_HDR_LEN;
    bufs.iter().filter_map(move |b| {
        let b: &[u8] = b;
        if skip >= b.len() {
            skip -= b.len();
            return None;
        }
        let out = &b[skip..];
        skip = 0;
        Some(out)
    })
}

impl FrameBackend for PasstStream {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rx.closed {
            return Ok(0);
        }
        let Some(len) = self.receive()? else {
            self.rx.closed = true;
            return Ok(0);
        };
        let hdr = VNET_HDR_LEN.min(buf.len());
        buf[..hdr].fill(0);
        let copy = len.min(buf.len() - hdr);
        buf[hdr..hdr + copy].copy_from_slice(&self.rx.frame[..copy]);
        Ok(hdr + copy)
    }

    fn write_frame(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.tx.sent < self.tx.len {
            self.flush()?;
            // The frame the socket took in part is out. A caller that
            // offers it again (after our WouldBlock) must not send it twice.
            let again = self.is_kept_frame(bufs, total);
            self.tx.len = 0;
            self.tx.sent = 0;
            if again {
                return Ok(total);
            }
        }
        let frame_len = total.saturating_sub(VNET_HDR_LEN);
        if frame_len == 0 || frame_len > MAX_STREAM_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame length out of range for the passt stream",
            ));
        }
        self.send(bufs, frame_len).map(|()| total)
    }

    fn supports_offloads(&self) -> bool {
        false
    }

    fn set_offloads(&mut self, offloads: Offloads) -> io::Result<()> {
        if offloads == Offloads::NONE {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the passt stream carries only complete, checksummed frames",
            ))
        }
    }
}

impl AsRawFd for PasstStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for PasstStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn pair() -> (PasstStream, UnixStream) {
        let (dev, theirs) = PasstStream::pair().unwrap();
        (dev, UnixStream::from(theirs))
    }

    fn framed(frame: &[u8]) -> Vec<u8> {
        let mut v = (frame.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(frame);
        v
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(13) ^ seed)
            .collect()
    }

    #[test]
    fn tx_strips_the_header_and_prefixes_the_length() {
        let (mut dev, mut peer) = pair();
        let hdr = [0xAAu8; VNET_HDR_LEN];
        let data = pattern(1514, 1);
        // Header split across slices, as a guest chain may be.
        let bufs = [
            IoSlice::new(&hdr[..5]),
            IoSlice::new(&hdr[5..]),
            IoSlice::new(&data[..100]),
            IoSlice::new(&data[100..]),
        ];
        assert_eq!(dev.write_frame(&bufs).unwrap(), VNET_HDR_LEN + 1514);
        let mut got = vec![0u8; 4 + 1514];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, framed(&data));
    }

    #[test]
    fn many_slices_are_copied_and_sent_whole() {
        let (mut dev, mut peer) = pair();
        let data = pattern(400, 2);
        let mut bufs = vec![IoSlice::new(&[0u8; VNET_HDR_LEN])];
        bufs.extend(data.chunks(10).map(IoSlice::new));
        assert!(bufs.len() > MAX_SLICES);
        dev.write_frame(&bufs).unwrap();
        let mut got = vec![0u8; 404];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, framed(&data));
    }

    #[test]
    fn rx_gives_each_frame_a_zeroed_header() {
        let (mut dev, mut peer) = pair();
        let frames: Vec<Vec<u8>> = [60usize, 1514, 9000, 65_535]
            .iter()
            .enumerate()
            .map(|(i, &n)| pattern(n, i as u8))
            .collect();
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend(framed(f));
        }
        // Dribble the stream in odd pieces from another thread.
        let writer = std::thread::spawn(move || {
            for piece in stream.chunks(777) {
                peer.write_all(piece).unwrap();
            }
            peer
        });
        let mut buf = vec![0xFFu8; 70_000];
        let mut got = Vec::new();
        while got.len() < frames.len() {
            match dev.read_frame(&mut buf) {
                Ok(n) => {
                    assert!(n > 0);
                    assert_eq!(&buf[..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN]);
                    got.push(buf[VNET_HDR_LEN..n].to_vec());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, frames);
        let peer = writer.join().unwrap();
        assert_eq!(
            dev.read_frame(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(peer);
        assert_eq!(dev.read_frame(&mut buf).unwrap(), 0);
        assert_eq!(dev.read_frame(&mut buf).unwrap(), 0);
    }

    #[test]
    fn rx_never_holds_a_whole_frame_the_socket_does_not_announce() {
        let (mut dev, mut peer) = pair();
        let mut stream = framed(&pattern(100, 1));
        stream.extend(framed(&pattern(200, 2)));
        peer.write_all(&stream).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(dev.read_frame(&mut buf).unwrap(), VNET_HDR_LEN + 100);
        // The second frame is still in the socket, so it polls readable.
        let mut pfd = libc::pollfd {
            fd: dev.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one live pollfd, no timeout.
        let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
        assert_eq!(ready, 1);
        assert_eq!(dev.read_frame(&mut buf).unwrap(), VNET_HDR_LEN + 200);
    }

    #[test]
    fn a_short_buffer_truncates_one_frame() {
        let (mut dev, mut peer) = pair();
        peer.write_all(&framed(&[7u8; 100])).unwrap();
        peer.write_all(&framed(&[8u8; 20])).unwrap();
        let mut small = [0u8; 40];
        assert_eq!(dev.read_frame(&mut small).unwrap(), 40);
        assert_eq!(&small[VNET_HDR_LEN..], &[7u8; 28]);
        let mut buf = [0u8; 128];
        assert_eq!(dev.read_frame(&mut buf).unwrap(), VNET_HDR_LEN + 20);
    }

    #[test]
    fn a_corrupt_length_is_a_hangup() {
        for bad in [0u32, (MAX_STREAM_FRAME + 1) as u32, u32::MAX] {
            let (mut dev, mut peer) = pair();
            peer.write_all(&bad.to_be_bytes()).unwrap();
            peer.write_all(&[1u8; 64]).unwrap();
            let mut buf = [0u8; 128];
            assert_eq!(dev.read_frame(&mut buf).unwrap(), 0, "length {bad}");
            assert_eq!(dev.read_frame(&mut buf).unwrap(), 0);
        }
    }

    #[test]
    fn a_partial_write_finishes_before_the_next_frame_and_is_not_repeated() {
        let (mut dev, mut peer) = pair();
        // Fill the socket until a frame goes out only in part.
        let hdr = [0u8; VNET_HDR_LEN];
        let data = pattern(60_000, 3);
        let bufs = [IoSlice::new(&hdr), IoSlice::new(&data)];
        let mut whole = 0usize;
        loop {
            match dev.write_frame(&bufs) {
                Ok(_) => whole += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let partial = dev.tx.len > 0;
        // Drain everything on the peer while the device retries.
        peer.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        let other = pattern(500, 9);
        let mut retried = false;
        let mut sent_other = false;
        while !sent_other {
            match peer.read(&mut chunk) {
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
            if !retried {
                // The virtio queue offers the same frame again.
                match dev.write_frame(&bufs) {
                    Ok(_) => retried = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("{e}"),
                }
            }
            match dev.write_frame(&[IoSlice::new(&hdr), IoSlice::new(&other)]) {
                Ok(_) => sent_other = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        peer.set_nonblocking(false).unwrap();
        // Whole frames before the block, the blocked one exactly once
        // (a partial one counts as taken by the retry, else it was sent by
        // it), then the other frame.
        let expected_big = whole + 1;
        let mut want = Vec::new();
        for _ in 0..expected_big {
            want.extend(framed(&data));
        }
        want.extend(framed(&other));
        while got.len() < want.len() {
            let n = peer.read(&mut chunk).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got.len(), want.len(), "partial={partial}");
        assert!(got == want);
    }

    #[test]
    fn writes_to_a_closed_peer_fail_without_sigpipe() {
        let (mut dev, peer) = pair();
        drop(peer);
        let hdr = [0u8; VNET_HDR_LEN];
        let err = dev
            .write_frame(&[IoSlice::new(&hdr), IoSlice::new(&[1u8; 60])])
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }

    #[test]
    fn empty_frames_are_refused_and_offloads_are_not_offered() {
        let (mut dev, _peer) = pair();
        let hdr = [0u8; VNET_HDR_LEN];
        let err = dev.write_frame(&[IoSlice::new(&hdr)]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(!dev.supports_offloads());
        dev.set_offloads(Offloads::NONE).unwrap();
        let csum = Offloads {
            csum: true,
            ..Offloads::NONE
        };
        assert!(dev.set_offloads(csum).is_err());
    }
}
