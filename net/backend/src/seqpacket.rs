//! An unprivileged [`FrameBackend`] over an `AF_UNIX` `SOCK_SEQPACKET` socket
//! pair, which keeps frame boundaries like a tap does. Unit tests and
//! device-model tests use one end as the backend and the other as "the
//! network".

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::sys;
use crate::{FrameBackend, Offloads};

/// Socket buffer size asked for on both ends (the kernel caps it at
/// `net.core.{w,r}mem_max`).
const SOCKET_BUF_BYTES: libc::c_int = 4 << 20;

/// One end of a [`seqpacket_pair`]: each [`FrameBackend::write_frame`] is
/// one record the peer reads whole with one [`FrameBackend::read_frame`].
#[derive(Debug)]
pub struct SeqpacketBackend {
    fd: OwnedFd,
    offloads: Offloads,
}

/// A connected pair of non-blocking seqpacket backends.
pub fn seqpacket_pair() -> io::Result<(SeqpacketBackend, SeqpacketBackend)> {
    let (a, b) = sys::seqpacket_socketpair()?;
    Ok((SeqpacketBackend::new(a)?, SeqpacketBackend::new(b)?))
}

impl SeqpacketBackend {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        sys::set_socket_int_opt(fd.as_fd(), libc::SO_SNDBUF, SOCKET_BUF_BYTES)?;
        sys::set_socket_int_opt(fd.as_fd(), libc::SO_RCVBUF, SOCKET_BUF_BYTES)?;
        Ok(Self {
            fd,
            offloads: Offloads::NONE,
        })
    }

    /// The offloads last passed to [`FrameBackend::set_offloads`].
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }
}

impl FrameBackend for SeqpacketBackend {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::read(self.fd.as_fd(), buf)
    }

    fn write_frame(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::writev(self.fd.as_fd(), bufs)
    }

    fn writes_iovecs(&self) -> bool {
        true
    }

    unsafe fn write_iovecs(&mut self, iovecs: &[libc::iovec]) -> io::Result<usize> {
        // SAFETY: the caller keeps the memory `iovecs` describe mapped and
        // readable for this call, which is what `writev_raw` needs.
        unsafe { sys::writev_raw(self.fd.as_fd(), iovecs) }
    }

    fn reads_iovecs(&self) -> bool {
        true
    }

    unsafe fn read_iovecs(&mut self, iovecs: &[libc::iovec]) -> io::Result<usize> {
        // SAFETY: the caller keeps the memory `iovecs` describe mapped and
        // writable for this call, which is what `readv_raw` needs.
        unsafe { sys::readv_raw(self.fd.as_fd(), iovecs) }
    }

    fn set_offloads(&mut self, offloads: Offloads) -> io::Result<()> {
        self.offloads = offloads;
        Ok(())
    }
}

impl AsRawFd for SeqpacketBackend {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for SeqpacketBackend {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VNET_HDR_LEN;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn frames_keep_their_boundaries() {
        let (mut dev, mut net) = seqpacket_pair().unwrap();
        let hdr = [0u8; VNET_HDR_LEN];
        let sizes = [60usize, 1514, 9000];
        let mut sent = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            let data = pattern(len, i as u8);
            // Header + data split over several slices, unevenly.
            let (a, rest) = data.split_at(14);
            let (b, c) = rest.split_at(rest.len() / 3);
            let bufs = [
                IoSlice::new(&hdr),
                IoSlice::new(a),
                IoSlice::new(b),
                IoSlice::new(c),
            ];
            let n = dev.write_frame(&bufs).unwrap();
            assert_eq!(n, VNET_HDR_LEN + len);
            let mut frame = hdr.to_vec();
            frame.extend_from_slice(&data);
            sent.push(frame);
        }

        let mut buf = vec![0u8; 65536];
        for frame in &sent {
            let n = net.read_frame(&mut buf).unwrap();
            assert_eq!(n, frame.len());
            assert_eq!(&buf[..n], &frame[..]);
        }
        let err = net.read_frame(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        // Nothing went the other way.
        let err = dev.read_frame(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn raw_iovecs_make_one_frame() {
        let (mut dev, mut net) = seqpacket_pair().unwrap();
        assert!(dev.writes_iovecs());
        let hdr = [7u8; VNET_HDR_LEN];
        let data = pattern(3000, 5);
        let iov = |b: &[u8]| libc::iovec {
            iov_base: b.as_ptr().cast_mut().cast(),
            iov_len: b.len(),
        };
        let iovecs = [iov(&hdr), iov(&data[..100]), iov(&data[100..])];
        // SAFETY: the iovecs describe `hdr` and `data`, borrowed for the call.
        let n = unsafe { dev.write_iovecs(&iovecs) }.unwrap();
        assert_eq!(n, VNET_HDR_LEN + data.len());
        let mut buf = vec![0u8; 8192];
        let n = net.read_frame(&mut buf).unwrap();
        assert_eq!(&buf[..VNET_HDR_LEN], &hdr);
        assert_eq!(&buf[VNET_HDR_LEN..n], &data[..]);
    }

    #[test]
    fn both_directions_and_hangup() {
        let (mut dev, mut net) = seqpacket_pair().unwrap();
        let mut buf = [0u8; 128];
        net.write_frame(&[IoSlice::new(b"0123456789ab"), IoSlice::new(b"rx")])
            .unwrap();
        assert_eq!(dev.read_frame(&mut buf).unwrap(), 14);
        assert_eq!(&buf[12..14], b"rx");
        dev.write_frame(&[IoSlice::new(b"0123456789abtx")]).unwrap();
        assert_eq!(net.read_frame(&mut buf).unwrap(), 14);
        drop(net);
        assert_eq!(dev.read_frame(&mut buf).unwrap(), 0);
    }

    #[test]
    fn short_buffer_truncates_one_frame() {
        let (mut dev, mut net) = seqpacket_pair().unwrap();
        dev.write_frame(&[IoSlice::new(&[7u8; 100])]).unwrap();
        dev.write_frame(&[IoSlice::new(&[8u8; 20])]).unwrap();
        let mut small = [0u8; 16];
        assert_eq!(net.read_frame(&mut small).unwrap(), 16);
        assert_eq!(small, [7u8; 16]);
        // The rest of the first frame is gone; the next read is the next frame.
        let mut buf = [0u8; 128];
        assert_eq!(net.read_frame(&mut buf).unwrap(), 20);
        assert_eq!(&buf[..20], &[8u8; 20]);
    }

    #[test]
    fn fds_are_nonblocking_and_cloexec() {
        let (dev, net) = seqpacket_pair().unwrap();
        for fd in [dev.as_raw_fd(), net.as_raw_fd()] {
            // SAFETY: F_GETFL on a descriptor we own touches no memory.
            let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            assert!(fl & libc::O_NONBLOCK != 0);
            // SAFETY: F_GETFD on a descriptor we own touches no memory.
            let fdfl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert!(fdfl & libc::FD_CLOEXEC != 0);
        }
    }

    #[test]
    fn set_offloads_is_recorded() {
        let (mut dev, _net) = seqpacket_pair().unwrap();
        assert_eq!(dev.offloads(), Offloads::NONE);
        let o = Offloads {
            csum: true,
            tso4: true,
            ..Offloads::NONE
        };
        dev.set_offloads(o).unwrap();
        assert_eq!(dev.offloads(), o);
    }

    #[test]
    fn usable_as_trait_object() {
        let (dev, mut net) = seqpacket_pair().unwrap();
        let mut boxed: Box<dyn FrameBackend> = Box::new(dev);
        boxed.write_frame(&[IoSlice::new(&[1u8; 20])]).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(net.read_frame(&mut buf).unwrap(), 20);
        assert!(boxed.as_raw_fd() >= 0);
    }
}
