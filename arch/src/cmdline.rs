//! Placing the kernel command line in guest memory.

use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::error::{BootError, Result};
use crate::layout::{CMDLINE_MAX_SIZE, CMDLINE_START};

/// Writes `cmdline` NUL-terminated at `CMDLINE_START` and returns that address.
///
/// Rejects lines the guest would truncate (longer than `CMDLINE_MAX_SIZE - 1`)
/// or cut short (embedded NUL), so that what the user asked for is exactly
/// what the kernel parses.
pub fn write_cmdline<M: GuestMemory + ?Sized>(mem: &M, cmdline: &str) -> Result<GuestAddress> {
    let bytes = cmdline.as_bytes();
    let max = CMDLINE_MAX_SIZE - 1;
    if bytes.len() > max {
        return Err(BootError::CmdlineTooLong {
            len: bytes.len(),
            max,
        });
    }
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(BootError::CmdlineContainsNul { offset });
    }
    let mut buf = Vec::with_capacity(bytes.len() + 1);
    buf.extend_from_slice(bytes);
    buf.push(0);
    let addr = GuestAddress(CMDLINE_START);
    mem.write_slice(&buf, addr)
        .map_err(|source| BootError::GuestMemoryWrite {
            what: "kernel command line",
            addr: CMDLINE_START,
            source,
        })?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn written_nul_terminated() {
        let m = mem();
        let addr = write_cmdline(&m, "console=ttyS0").unwrap();
        assert_eq!(addr.0, CMDLINE_START);
        let mut buf = [0xffu8; 14];
        m.read_slice(&mut buf, addr).unwrap();
        assert_eq!(&buf, b"console=ttyS0\0");
    }

    #[test]
    fn longest_accepted_and_too_long_rejected() {
        let m = mem();
        assert!(write_cmdline(&m, &"a".repeat(CMDLINE_MAX_SIZE - 1)).is_ok());
        match write_cmdline(&m, &"a".repeat(CMDLINE_MAX_SIZE)) {
            Err(BootError::CmdlineTooLong { len, max }) => {
                assert_eq!(len, CMDLINE_MAX_SIZE);
                assert_eq!(max, CMDLINE_MAX_SIZE - 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn embedded_nul_rejected() {
        assert!(matches!(
            write_cmdline(&mem(), "a\0b"),
            Err(BootError::CmdlineContainsNul { offset: 1 })
        ));
    }

    #[test]
    fn unbacked_memory_reported() {
        let m: GuestMemoryMmap =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        assert!(matches!(
            write_cmdline(&m, "x"),
            Err(BootError::GuestMemoryWrite {
                addr: CMDLINE_START,
                ..
            })
        ));
    }
}
