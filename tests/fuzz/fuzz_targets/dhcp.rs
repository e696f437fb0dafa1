//! petrel's DHCPv4 and DHCPv6 servers and its router-solicitation check,
//! each fed the same datagram, as a guest could send it.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use net::dhcp::v6::{duid_ll, Dhcp6Config, Dhcp6Server};
use net::dhcp::{DhcpConfig, DhcpExtras, DhcpServer};

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

fn v4() -> DhcpServer {
    DhcpServer::new(DhcpConfig {
        server_ip: Ipv4Addr::new(10, 0, 2, 1),
        client_mac: MAC,
        client_ip: Ipv4Addr::new(10, 0, 2, 2),
        prefix_len: 24,
        router: Some(Ipv4Addr::new(10, 0, 2, 1)),
        dns_servers: vec![Ipv4Addr::new(10, 96, 0, 10)],
        search_domains: vec!["default.svc.cluster.local".into()],
        hostname: Some("vm".into()),
        mtu: Some(1450),
        classless_routes: vec![(Ipv4Addr::new(10, 96, 0, 0), 12, Ipv4Addr::new(10, 0, 2, 1))],
        lease_secs: 86_400,
        extras: DhcpExtras::default(),
    })
}

fn v6() -> Dhcp6Server {
    Dhcp6Server::new(Dhcp6Config {
        server_duid: duid_ll([2, 0, 0, 0, 0, 1]),
        client_mac: MAC,
        client_ip: Ipv6Addr::new(0xfd10, 0, 2, 0, 0, 0, 0, 2),
        dns_servers: vec![],
        search: vec!["default.svc.cluster.local".into()],
        preferred_lifetime: u32::MAX,
        valid_lifetime: u32::MAX,
    })
}

fuzz_target!(init: petrel_fuzz::contain_decoder_panics(), |data: &[u8]| {
    let _ = v4().handle(data);
    let _ = v6().handle(data);
    let _ = net::ra::is_router_solicitation(data);
});
