//! e1000 (82540EM) with the guest's Linux e1000 driver over a tap: DHCP,
//! carrier, ping both ways, data each way with md5 checked on both ends.

#[test]
fn e1000_dhcp_ping_and_transfer_each_way_with_md5() {
    petrel_tests::guestnet::dhcp_ping_transfer("e1000");
}
