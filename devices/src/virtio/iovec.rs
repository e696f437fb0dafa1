//! Guest memory ranges as raw iovecs, for backends that write a frame with
//! one `writev` straight from guest memory (zero-copy TX) or read one with
//! one `readv` straight into it (zero-copy RX).
//!
//! Guest memory may change under our feet (the guest owns it), so no
//! `&[u8]` or `IoSlice` is ever made over it: the iovecs are plain
//! addresses handed to the kernel, which copies the bytes. They are only
//! built by [`GuestIovecs::push`], each from a `get_slice` of a
//! `GuestMemoryMmap`, i.e. a range that lies inside one mapped region; the
//! owner clears them after every write, so they never outlive the frame.

use std::io;

use net_backend::FrameBackend;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Most iovecs the kernel imports into its on-stack array (UIO_FASTIOV);
/// a `readv` with more allocates and frees one per call.
pub const SHORT_READ_IOVECS: usize = 8;

/// A bounded list of guest memory ranges; never reallocated.
pub struct GuestIovecs {
    iovecs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers are addresses inside guest memory mappings that
// the owner's `GuestMemoryMmap` keeps alive; they are never dereferenced in
// Rust, only passed to the kernel by the thread that owns the list, so
// moving them to another thread is harmless.
unsafe impl Send for GuestIovecs {}

impl GuestIovecs {
    /// An empty list that holds at most `max` ranges.
    pub fn with_capacity(max: usize) -> Self {
        Self {
            iovecs: Vec::with_capacity(max),
        }
    }

    pub fn clear(&mut self) {
        self.iovecs.clear();
    }

    /// Whether the list holds as many ranges as it was made for.
    pub fn is_full(&self) -> bool {
        self.iovecs.len() == self.iovecs.capacity()
    }

    /// Records `len` bytes at `addr` of `mem`; false (nothing recorded)
    /// when the list is full or the range is not inside one region.
    pub fn push(&mut self, mem: &GuestMemoryMmap, addr: GuestAddress, len: usize) -> bool {
        if self.is_full() {
            return false;
        }
        // `get_slice` checks that the whole range lies inside one region
        // of `mem`, so the pointer and length describe mapped guest memory.
        let Ok(slice) = mem.get_slice(addr, len) else {
            return false;
        };
        self.iovecs.push(libc::iovec {
            // writev(2) only reads through it; iovec just has no const
            // variant.
            iov_base: slice.ptr_guard().as_ptr().cast_mut().cast(),
            iov_len: slice.len(),
        });
        true
    }

    /// Ranges recorded.
    pub fn len(&self) -> usize {
        self.iovecs.len()
    }

    /// Forgets the first `n` ranges (no reallocation).
    pub fn drain_front(&mut self, n: usize) {
        self.iovecs.drain(..n.min(self.iovecs.len()));
    }

    /// Forgets the ranges from `n` on.
    pub fn truncate(&mut self, n: usize) {
        self.iovecs.truncate(n);
    }

    /// Records `len` bytes at `addr` of `mem` for the kernel to write
    /// into; false (nothing recorded) when the list is full or the range
    /// is not inside one region.
    pub fn push_writable(&mut self, mem: &GuestMemoryMmap, addr: GuestAddress, len: usize) -> bool {
        if self.is_full() {
            return false;
        }
        // As in `push`: the range lies inside one mapped region.
        let Ok(slice) = mem.get_slice(addr, len) else {
            return false;
        };
        self.iovecs.push(libc::iovec {
            iov_base: slice.ptr_guard_mut().as_ptr().cast(),
            iov_len: slice.len(),
        });
        true
    }

    /// Reads one frame from `backend` into `count` recorded ranges from
    /// `from` on with a single `read_iovecs`. Every range must have been
    /// recorded with [`Self::push_writable`] from `mem`, whose borrow keeps
    /// the regions mapped for the call.
    pub fn read_from(
        &self,
        mem: &GuestMemoryMmap,
        backend: &mut dyn FrameBackend,
        from: usize,
        count: usize,
    ) -> io::Result<usize> {
        let _mapped = mem;
        let live = self.iovecs.get(from..).unwrap_or_default();
        let iovecs = &live[..count.min(live.len())];
        // SAFETY: every iovec was made by `push_writable` from a
        // `get_slice` of `mem`, i.e. lies inside one of its regions, which
        // stay mapped (and writable: guest RAM is mapped read-write) while
        // `mem` is borrowed; the backend only hands them to the kernel.
        unsafe { backend.read_iovecs(iovecs) }
    }

    /// Like [`Self::read_from`] over at most [`SHORT_READ_IOVECS`] − 1
    /// ranges from `from`, with `tail` as the last iovec for whatever does
    /// not fit: at most [`SHORT_READ_IOVECS`] iovecs, which the kernel
    /// imports without allocating (UIO_FASTIOV).
    pub fn read_with_tail(
        &self,
        mem: &GuestMemoryMmap,
        backend: &mut dyn FrameBackend,
        from: usize,
        tail: &mut [u8],
    ) -> io::Result<usize> {
        let _mapped = mem;
        let guest = self.iovecs.get(from..).unwrap_or_default();
        let n = guest.len().min(SHORT_READ_IOVECS - 1);
        let mut iovecs = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; SHORT_READ_IOVECS];
        iovecs[..n].copy_from_slice(&guest[..n]);
        iovecs[n] = libc::iovec {
            iov_base: tail.as_mut_ptr().cast(),
            iov_len: tail.len(),
        };
        // SAFETY: the first `n` iovecs are guest ranges as in `read_from`
        // (mapped while `mem` is borrowed); the last is `tail`, borrowed
        // mutably for the call.
        unsafe { backend.read_iovecs(&iovecs[..=n]) }
    }

    /// Writes the recorded ranges with a single `write_iovecs` (backends
    /// retry EINTR themselves). `mem` must be the memory every range was
    /// pushed from: its borrow keeps the regions mapped for the call.
    pub fn write_to(
        &self,
        mem: &GuestMemoryMmap,
        backend: &mut dyn FrameBackend,
    ) -> io::Result<usize> {
        let _mapped = mem;
        // SAFETY: every iovec was made by `push` from a `get_slice` of
        // `mem`, i.e. lies inside one of its regions, which stay mapped
        // while `mem` is borrowed; the backend only hands them to the
        // kernel.
        unsafe { backend.write_iovecs(&self.iovecs) }
    }
}
