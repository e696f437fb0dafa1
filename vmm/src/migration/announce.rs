//! After a restore or a received migration, petrel announces each
//! NIC guest's MAC on its tap with a RARP broadcast (what QEMU and
//! Cloud Hypervisor send), so bridges and switches on the new side learn
//! at once where the guest is. The frame is written into a duplicate of the
//! NIC's first tap queue kept at attach time: a tap write enters the host
//! like a frame the guest sent.
//!
//! Then each virtio-net device whose driver took VIRTIO_NET_F_GUEST_ANNOUNCE
//! is asked to announce (VIRTIO_NET_S_ANNOUNCE and a configuration
//! interrupt): the guest's driver sends gratuitous ARPs and unsolicited
//! neighbour advertisements for the addresses it holds, which the RARP
//! cannot carry.

use std::os::fd::{AsRawFd, OwnedFd};

use devices::pci::MAX_SLOT;
use tracing::{info, warn};

use crate::pci_setup::PciSetup;

/// Announces every guest after a move: the RARPs on the taps, then the
/// guest-driven announcement of each device that can ask for one.
pub fn announce_guests(pci: &PciSetup) {
    pci.announce.iter().for_each(Announcer::announce);
    let bus = pci.bus.lock().unwrap_or_else(|e| e.into_inner());
    let asked = (1..=MAX_SLOT)
        .filter_map(|slot| bus.device(slot))
        .filter(|dev| dev.lock().unwrap_or_else(|e| e.into_inner()).announce())
        .count();
    info!(devices = asked, "guest announcements requested");
}

/// A NIC whose guest is announced after a move.
pub struct Announcer {
    pub nic: String,
    pub mac: [u8; 6],
    /// A duplicate of the NIC's first tap queue descriptor.
    pub fd: OwnedFd,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer").field("nic", &self.nic).finish()
    }
}

/// The RARP request "who am I" for `mac` (RFC 903), padded to the minimum
/// Ethernet frame, behind an all-zero virtio-net header (no offloads).
pub fn rarp_frame(mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; net_backend::VNET_HDR_LEN];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x80, 0x35]); // ethertype RARP
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0; 4]);
    f.resize(net_backend::VNET_HDR_LEN + 60, 0);
    f
}

impl Announcer {
    /// Duplicates `fd` (the NIC's first tap queue).
    pub fn new(nic: &str, mac: [u8; 6], fd: &(impl AsRawFd + ?Sized)) -> std::io::Result<Self> {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor the backend owns and keeps
        // open for this call; the new descriptor is owned by the OwnedFd.
        let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `dup` is a fresh descriptor nothing else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) };
        Ok(Self {
            nic: nic.to_string(),
            mac,
            fd,
        })
    }

    /// Sends the RARP announcement (3 times, as QEMU does by default).
    pub fn announce(&self) {
        let frame = rarp_frame(self.mac);
        for _ in 0..3 {
            // SAFETY: writes `frame.len()` bytes from a live Vec into a tap
            // descriptor this struct owns.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                warn!(nic = %self.nic, error = %e, "cannot announce the guest on its tap");
                return;
            }
        }
        info!(nic = %self.nic, mac = %net_backend::MacAddr(self.mac), "guest announced (RARP) on its tap");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rarp_frame_layout() {
        let mac = [0x02, 1, 2, 3, 4, 5];
        let f = rarp_frame(mac);
        let e = &f[net_backend::VNET_HDR_LEN..];
        assert_eq!(e.len(), 60);
        assert_eq!(&e[..6], &[0xff; 6]);
        assert_eq!(&e[6..12], &mac);
        assert_eq!(&e[12..14], &[0x80, 0x35]);
        assert_eq!(&e[20..22], &[0, 3], "reverse request");
        assert_eq!(&e[22..28], &mac);
        assert_eq!(&e[32..38], &mac);
    }
}
