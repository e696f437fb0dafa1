//! The frame-backend contract the NIC models drive.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;

use crate::Offloads;

/// A frame-oriented backend: every read returns one frame and every write
/// sends one frame; each frame starts with a [`VNET_HDR_LEN`](crate::VNET_HDR_LEN)-byte
/// virtio-net header (`virtio_net_hdr_v1`, `num_buffers` included).
///
/// The descriptor returned by [`AsRawFd::as_raw_fd`] is non-blocking and
/// becomes readable when a frame is pending, so it can be registered with
/// epoll.
pub trait FrameBackend: AsRawFd + Send {
    /// Reads one frame into `buf` and returns its length.
    ///
    /// Returns `Err(WouldBlock)` when no frame is pending (descriptors are
    /// non-blocking). A frame longer than `buf` is truncated to `buf.len()`,
    /// so `buf` should hold a maximal frame. `Ok(0)` from a socket-backed
    /// backend means the peer hung up.
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes one frame gathered from `bufs` (header followed by data) and
    /// returns the number of bytes written.
    ///
    /// Returns `Err(WouldBlock)` when the backend cannot take the frame now;
    /// never `Err(Interrupted)`: implementations retry EINTR themselves.
    fn write_frame(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Whether [`FrameBackend::write_iovecs`] is implemented; when it is
    /// not, callers copy the frame and use [`FrameBackend::write_frame`].
    fn writes_iovecs(&self) -> bool {
        false
    }

    /// Writes one frame gathered from raw `iovecs` (header followed by
    /// data), without copying it first, and returns the number of bytes
    /// written. Meant for frames that live in guest memory, which the guest
    /// may modify at any time, so no `&[u8]` may be made over it.
    ///
    /// Returns `Err(WouldBlock)` when the backend cannot take the frame now
    /// (never `Err(Interrupted)`, as for [`FrameBackend::write_frame`])
    /// and `Err(Unsupported)` (the default) when
    /// [`FrameBackend::writes_iovecs`] is false.
    ///
    /// # Safety
    ///
    /// Every iovec must describe memory that stays mapped and readable for
    /// the whole call. Implementations must not create references to that
    /// memory (it may change concurrently); hand it to the kernel instead.
    unsafe fn write_iovecs(&mut self, iovecs: &[libc::iovec]) -> io::Result<usize> {
        let _ = iovecs;
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// Whether the backend carries the virtio-net header's checksum and
    /// segmentation requests (a tap with `IFF_VNET_HDR` does). A backend
    /// that carries bare Ethernet frames (the passt stream) returns false,
    /// and the NIC models then offer the guest no checksum or TSO features,
    /// so every frame they hand over is complete and at most MTU-sized.
    fn supports_offloads(&self) -> bool {
        true
    }

    /// Whether the other end takes GSO frames (a virtio-net header with a
    /// `gso_type`) and segments them itself, as the kernel behind a tap or
    /// macvtap does: a NIC model may then hand a TSO packet over whole
    /// instead of cutting it into segments. False by default.
    fn accepts_gso(&self) -> bool {
        false
    }

    /// Whether [`FrameBackend::read_iovecs`] is implemented; when it is
    /// not, callers read into a buffer of their own and copy.
    fn reads_iovecs(&self) -> bool {
        false
    }

    /// Reads one frame (header followed by data) straight into raw
    /// `iovecs` and returns its length. Meant for guest receive buffers,
    /// which the guest may touch at any time, so no `&mut [u8]` may be
    /// made over them. A frame longer than the iovecs is truncated (the
    /// returned length may then exceed their total, depending on the
    /// kernel), so callers offer room for a maximal frame.
    ///
    /// Returns `Err(WouldBlock)` when no frame is pending (never
    /// `Err(Interrupted)`) and `Err(Unsupported)` (the default) when
    /// [`FrameBackend::reads_iovecs`] is false.
    ///
    /// # Safety
    ///
    /// Every iovec must describe memory that stays mapped and writable for
    /// the whole call. Implementations must not create references to that
    /// memory; hand it to the kernel instead.
    unsafe fn read_iovecs(&mut self, iovecs: &[libc::iovec]) -> io::Result<usize> {
        let _ = iovecs;
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// Applies the offloads the guest negotiated (`TUNSETOFFLOAD`); a no-op
    /// for backends without offloads.
    fn set_offloads(&mut self, offloads: Offloads) -> io::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_iovecs_defaults_to_unsupported() {
        struct CopyOnly;
        impl AsRawFd for CopyOnly {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                -1
            }
        }
        impl FrameBackend for CopyOnly {
            fn read_frame(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn write_frame(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                Ok(bufs.iter().map(|b| b.len()).sum())
            }
            fn set_offloads(&mut self, _: Offloads) -> io::Result<()> {
                Ok(())
            }
        }
        let mut b = CopyOnly;
        assert!(!b.writes_iovecs());
        // SAFETY: no iovecs, so no memory is described.
        let err = unsafe { b.write_iovecs(&[]) }.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn frame_backend_is_object_safe() {
        fn takes(_: Option<&mut dyn FrameBackend>) {}
        takes(None);
    }
}
