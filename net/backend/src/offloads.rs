//! The receive offloads a guest can negotiate, as the tap applies them.
//!
//! UDP fragmentation offload (`TUN_F_UFO`) is not among them: no NIC model
//! offers `VIRTIO_NET_F_GUEST_UFO`, so a guest can never ask for it.

use crate::sys;

/// Offloads the guest negotiated, i.e. which partially checksummed or
/// segmentation-offloaded (GSO) frames the guest can accept on its receive
/// queue. They map one to one to the `TUN_F_*` bits of `TUNSETOFFLOAD`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// The guest accepts frames with a partial checksum (`TUN_F_CSUM`).
    pub csum: bool,
    /// The guest accepts TCPv4 GSO frames (`TUN_F_TSO4`).
    pub tso4: bool,
    /// The guest accepts TCPv6 GSO frames (`TUN_F_TSO6`).
    pub tso6: bool,
    /// The guest accepts TSO frames with ECN/CWR set (`TUN_F_TSO_ECN`).
    pub ecn: bool,
}

impl Offloads {
    /// No offloads: every frame handed to the guest is fully checksummed and
    /// at most MTU-sized.
    pub const NONE: Self = Self {
        csum: false,
        tso4: false,
        tso6: false,
        ecn: false,
    };

    /// The `TUN_F_*` bit set for `TUNSETOFFLOAD`.
    pub fn to_tun_flags(self) -> u32 {
        [
            (self.csum, sys::TUN_F_CSUM),
            (self.tso4, sys::TUN_F_TSO4),
            (self.tso6, sys::TUN_F_TSO6),
            (self.ecn, sys::TUN_F_TSO_ECN),
        ]
        .into_iter()
        .filter(|&(on, _)| on)
        .fold(0, |flags, (_, bit)| flags | bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offloads_map_to_tun_flags() {
        assert_eq!(Offloads::default(), Offloads::NONE);
        assert_eq!(Offloads::NONE.to_tun_flags(), 0);
        let one = |f: fn(&mut Offloads)| {
            let mut o = Offloads::NONE;
            f(&mut o);
            o.to_tun_flags()
        };
        assert_eq!(one(|o| o.csum = true), libc::TUN_F_CSUM);
        assert_eq!(one(|o| o.tso4 = true), libc::TUN_F_TSO4);
        assert_eq!(one(|o| o.tso6 = true), libc::TUN_F_TSO6);
        assert_eq!(one(|o| o.ecn = true), libc::TUN_F_TSO_ECN);
        // The numeric values are kernel ABI.
        assert_eq!(
            (
                libc::TUN_F_CSUM,
                libc::TUN_F_TSO4,
                libc::TUN_F_TSO6,
                libc::TUN_F_TSO_ECN
            ),
            (0x01, 0x02, 0x04, 0x08)
        );
        let all = Offloads {
            csum: true,
            tso4: true,
            tso6: true,
            ecn: true,
        };
        assert_eq!(all.to_tun_flags(), 0x0f);
        let typical = Offloads {
            csum: true,
            tso4: true,
            tso6: true,
            ..Offloads::NONE
        };
        assert_eq!(typical.to_tun_flags(), 0x07);
    }
}
