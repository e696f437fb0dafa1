//! Frame size limits shared by the NIC models (virtio-net, e1000): what a
//! backend may hand over or take in one read or write.

/// Size of `virtio_net_hdr_v1`, the prefix of every frame to and from a
/// backend.
pub const VNET_HDR_LEN: usize = net_backend::VNET_HDR_LEN;
/// Largest Ethernet frame (64 KiB GSO payload + Ethernet header).
pub const MAX_FRAME_LEN: usize = 65550;
/// Largest frame with its virtio-net header: the size of a NIC's
/// per-direction frame buffer.
pub const MAX_BUFFER_LEN: usize = MAX_FRAME_LEN + VNET_HDR_LEN;
