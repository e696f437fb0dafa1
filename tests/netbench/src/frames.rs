//! The benchmark's frames: a TCP/IPv4 flow from the "guest" to a peer MAC
//! nobody owns, with or without TSO, and the virtio-net header for it.

use devices::virtio::net::VNET_HDR_LEN;

/// Source MAC of the frames the "guest" sends; destination of injected ones.
pub const GUEST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xbe, 0x0c, 0x01];
/// A dummy unicast MAC nobody owns: the kernel drops TX frames as
/// PACKET_OTHERHOST right at ip_rcv.
pub const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xbe, 0x0c, 0x02];
pub const GUEST_IP: [u8; 4] = [10, 99, 0, 1];
pub const PEER_IP: [u8; 4] = [10, 99, 0, 2];
pub const DST_PORT: u16 = 5201;

/// virtio_net_hdr flags / gso types (virtio 1.x, 5.1.6).
pub const HDR_F_NEEDS_CSUM: u8 = 1;
pub const HDR_GSO_TCPV4: u8 = 1;
/// MSS of the TSO frames (a 1500-byte MTU minus IPv4 and TCP headers,
/// minus the 12 bytes of TCP timestamps Linux would use).
pub const TSO_MSS: u16 = 1448;
/// Ethernet + IPv4 + TCP header bytes.
pub const L4_HDRS: usize = 14 + 20 + 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub label: &'static str,
    /// Ethernet frame length (no FCS, no virtio-net header).
    pub frame_len: usize,
    /// A TCPv4 GSO frame (tso4 offload).
    pub gso: bool,
}

pub const SIZES: [Size; 3] = [
    Size {
        label: "64 B",
        frame_len: 64,
        gso: false,
    },
    Size {
        label: "1514 B",
        frame_len: 1514,
        gso: false,
    },
    // 45 full segments: what Linux's TCP builds under the 64 KiB GSO
    // limit. A 65536-byte skb would reach `gso_max_size` (65536) on the
    // injection path and be segmented in software.
    Size {
        label: "64 KiB TSO",
        frame_len: L4_HDRS + 45 * TSO_MSS as usize,
        gso: true,
    },
];

pub fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

pub fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// A TCP/IPv4 Ethernet frame of `size.frame_len` bytes from `src` to
/// `dst`. GSO frames carry the pseudo-header checksum in the TCP checksum
/// field (CHECKSUM_PARTIAL), the others a complete checksum.
pub fn build_frame(size: Size, src_mac: [u8; 6], dst_mac: [u8; 6], sport: u16) -> Vec<u8> {
    let len = size.frame_len;
    assert!(len >= L4_HDRS && len - 14 <= 65535, "frame length {len}");
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let (sip, dip) = if src_mac == GUEST_MAC {
        (GUEST_IP, PEER_IP)
    } else {
        (PEER_IP, GUEST_IP)
    };
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    ip[8] = 64;
    ip[9] = 6; // TCP
    ip[12..16].copy_from_slice(&sip);
    ip[16..20].copy_from_slice(&dip);
    let c = !csum_fold(csum_add(0, ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    for (i, b) in f[L4_HDRS..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0x5a;
    }
    let tcp_len = len - 34;
    let tcp = &mut f[34..];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&DST_PORT.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH | ACK
    tcp[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    let mut pseudo = csum_add(0, &sip);
    pseudo = csum_add(pseudo, &dip);
    pseudo += 6 + tcp_len as u32;
    let c = if size.gso {
        csum_fold(pseudo)
    } else {
        !csum_fold(csum_add(pseudo, tcp))
    };
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    f
}

/// The 12-byte virtio_net_hdr_v1 for a frame of `size` (num_buffers 0).
pub fn vnet_hdr(size: Size) -> [u8; VNET_HDR_LEN] {
    let mut h = [0u8; VNET_HDR_LEN];
    if size.gso {
        h[0] = HDR_F_NEEDS_CSUM;
        h[1] = HDR_GSO_TCPV4;
        h[2..4].copy_from_slice(&(L4_HDRS as u16).to_le_bytes());
        h[4..6].copy_from_slice(&TSO_MSS.to_le_bytes());
        h[6..8].copy_from_slice(&34u16.to_le_bytes()); // csum_start
        h[8..10].copy_from_slice(&16u16.to_le_bytes()); // csum_offset
    }
    h
}

/// Header + frame, as the driver posts it and the raw writer writes it.
pub fn tx_frame(size: Size, sport: u16) -> Vec<u8> {
    let mut v = vnet_hdr(size).to_vec();
    v.extend_from_slice(&build_frame(size, GUEST_MAC, PEER_MAC, sport));
    v
}

/// TCP source port of a frame read from the tap (header included).
pub fn sport_of(buf: &[u8]) -> Option<u16> {
    let at = VNET_HDR_LEN + 34;
    buf.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
}
