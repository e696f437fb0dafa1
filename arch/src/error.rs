//! Errors of the boot-setup functions (everything except the MP table).

use vm_memory::GuestMemoryError;

/// Why preparing guest memory or registers for boot failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A checked write into guest memory failed (address not backed by RAM).
    #[error("failed to write {what} to guest memory at {addr:#x}")]
    GuestMemoryWrite {
        /// What was being written.
        what: &'static str,
        /// Guest-physical address of the write.
        addr: u64,
        /// Underlying vm-memory error.
        #[source]
        source: GuestMemoryError,
    },
    /// The command line does not fit the kernel's `COMMAND_LINE_SIZE`.
    #[error("kernel command line is {len} bytes, the maximum is {max}")]
    CmdlineTooLong {
        /// Length of the given command line (without NUL).
        len: usize,
        /// Longest accepted command line (without NUL).
        max: usize,
    },
    /// An embedded NUL would silently truncate the command line.
    #[error("kernel command line contains a NUL byte at offset {offset}")]
    CmdlineContainsNul {
        /// Byte offset of the first NUL.
        offset: usize,
    },
    /// The initrd does not fit between the kernel and the top of low RAM.
    #[error("initrd of {size:#x} bytes does not fit: only {available:#x} bytes available between {min_start:#x} and {max_end:#x}")]
    InitrdDoesNotFit {
        /// Size of the initrd.
        size: u64,
        /// Bytes available for it.
        available: u64,
        /// Lowest allowed start.
        min_start: u64,
        /// Highest allowed end.
        max_end: u64,
    },
    /// The initrd ends above what the kernel's setup header allows.
    #[error("initrd ends at {end:#x}, above the kernel's initrd_addr_max {max:#x}")]
    InitrdAboveKernelLimit {
        /// Last byte of the initrd.
        end: u64,
        /// `setup_header.initrd_addr_max`.
        max: u64,
    },
    /// A value does not fit a 32-bit boot-protocol field.
    #[error("{what} ({value:#x}) does not fit a 32-bit boot protocol field")]
    ValueAbove4G {
        /// Which field.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// More memory map entries than the boot structure can hold.
    #[error("{count} memory map entries, at most {max} supported")]
    TooManyMemoryMapEntries {
        /// Entries needed.
        count: usize,
        /// Capacity.
        max: usize,
    },
}

/// Result alias for boot setup.
pub type Result<T> = std::result::Result<T, BootError>;

/// Narrows `value` to a 32-bit boot-protocol field.
pub(crate) fn to_u32(what: &'static str, value: u64) -> Result<u32> {
    u32::try_from(value).map_err(|_| BootError::ValueAbove4G { what, value })
}
