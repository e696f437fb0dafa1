use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;

use super::bridge::{PodIfaceState, SavedRoute, BRIDGE_DHCP_ADDR};
use super::masquerade::masquerade_rules;
use super::*;
use crate::netlink::{Family, Netlink, Route};

const GUEST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc];
const POD_MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05];

fn request() -> PodBindingRequest {
    let mut req = PodBindingRequest::new("vm-1", "default", "eth0", "tap0", GUEST_MAC);
    req.dns = DnsInfo {
        servers: vec![Ipv4Addr::new(10, 96, 0, 10)],
        search: vec!["default.svc.cluster.local".into()],
    };
    req
}

fn invalid_reason(req: &PodBindingRequest) -> String {
    match req.validate() {
        Err(BindingError::Invalid { nic, reason }) => {
            assert_eq!(nic, req.nic_name);
            reason
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn request_defaults_and_validation() {
    let req = request();
    assert_eq!(req.bridge_name, "k6t-eth0");
    assert_eq!(req.hostname, "vm-1");
    assert_eq!(req.queues, 1);
    req.validate().unwrap();

    let mut r = request();
    r.tap_name = "a-very-long-tap-name".into();
    assert!(invalid_reason(&r).contains("tap"));
    let mut r = request();
    r.pod_iface = "eth 0".into();
    assert!(invalid_reason(&r).contains("pod interface"));
    let mut r = request();
    r.bridge_name = String::new();
    assert!(invalid_reason(&r).contains("bridge"));
    let mut r = request();
    r.tap_name = "eth0".into();
    assert!(invalid_reason(&r).contains("distinct"));
    let mut r = request();
    r.queues = 0;
    assert!(invalid_reason(&r).contains("queues"));
    let mut r = request();
    r.vm_name = String::new();
    assert!(invalid_reason(&r).contains("VM name"));
    let mut r = request();
    r.guest_mac = [0x01, 0, 0, 0, 0, 1];
    assert!(invalid_reason(&r).contains("multicast"));
    // ... unless the guest takes the pod's MAC anyway.
    r.guest_mac_from_pod = true;
    r.validate().unwrap();
    let mut r = request();
    r.guest_mac = [0; 6];
    assert!(invalid_reason(&r).contains("zeros"));
    let mut r = request();
    r.v4_cidr = Some((Ipv4Addr::new(10, 0, 2, 0), 31));
    assert!(invalid_reason(&r).contains("/31"));
    r.v4_cidr = Some((Ipv4Addr::new(10, 0, 2, 0), 30));
    r.validate().unwrap();
    let mut r = request();
    r.v6_cidr = Some((Ipv6Addr::UNSPECIFIED, 127));
    assert!(invalid_reason(&r).contains("/127"));
}

#[test]
fn naming() {
    assert_eq!(default_bridge_name("eth0"), "k6t-eth0");
    assert_eq!(default_bridge_name("net1"), "k6t-net1");
    assert_eq!(default_bridge_name("averylongname12"), "k6t-averylongna");
    assert_eq!(default_bridge_name("averylongname12").len(), 15);
    assert_eq!(nft_table_name("vm-1"), "petrel_vm_1");
    assert_eq!(nft_table_name("My.VM/ä"), "petrel_My_VM__");
    let long = nft_table_name(&"x".repeat(200));
    assert_eq!(long.len(), MAX_TABLE_NAME_LEN);
    assert!(long.starts_with("petrel_xxx"));
}

#[test]
fn resolv_conf() {
    let dns = parse_resolv_conf(
        "# generated\nnameserver 10.96.0.10\nnameserver fd00::10\nnameserver bogus\n\
         nameserver 10.96.0.10\n; comment\nsearch a.svc.cluster.local svc.cluster.local cluster.local\n\
         options ndots:5\nnameserver 8.8.8.8\n",
    );
    assert_eq!(
        dns.servers,
        vec![Ipv4Addr::new(10, 96, 0, 10), Ipv4Addr::new(8, 8, 8, 8)]
    );
    assert_eq!(
        dns.search,
        vec!["a.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    );
    let dns = parse_resolv_conf("domain example.org\nnameserver 1.1.1.1\n");
    assert_eq!(dns.search, vec!["example.org"]);
    // The last search line wins, and a search line beats domain.
    let dns = parse_resolv_conf("search a\ndomain b\nsearch c d\n");
    assert_eq!(dns.search, vec!["c", "d"]);
    assert_eq!(parse_resolv_conf(""), DnsInfo::default());
    assert_eq!(
        read_resolv_conf("/nonexistent/petrel/resolv.conf"),
        DnsInfo::default()
    );
    let dir = std::env::temp_dir().join(format!("petrel-resolv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resolv.conf");
    std::fs::write(&path, "nameserver 10.0.0.2\nsearch x.y\n").unwrap();
    let dns = read_resolv_conf(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(dns.servers, vec![Ipv4Addr::new(10, 0, 0, 2)]);
    assert_eq!(dns.search, vec!["x.y"]);
}

fn sample_state() -> PodIfaceState {
    PodIfaceState {
        iface: "eth0".into(),
        mac: Some(POD_MAC),
        addrs: vec![(Ipv4Addr::new(10, 244, 1, 5), 24)],
        routes: vec![
            SavedRoute {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gateway: Some(Ipv4Addr::new(10, 244, 1, 1)),
                metric: None,
            },
            SavedRoute {
                dst: Ipv4Addr::new(10, 96, 0, 0),
                prefix_len: 12,
                gateway: Some(Ipv4Addr::new(10, 244, 1, 1)),
                metric: Some(100),
            },
            SavedRoute {
                dst: Ipv4Addr::new(169, 254, 1, 1),
                prefix_len: 32,
                gateway: None,
                metric: None,
            },
        ],
    }
}

#[test]
fn pod_state_alias_round_trip() {
    let state = sample_state();
    let text = state.encode();
    assert!(text.len() <= crate::netlink::MAX_ALIAS_LEN);
    assert_eq!(
        text,
        "petrel-pod1 if=eth0 m=0a:58:0a:f4:01:05 a=10.244.1.5/24 r=0.0.0.0/0@10.244.1.1 \
         r=10.96.0.0/12@10.244.1.1#100 r=169.254.1.1/32"
    );
    assert_eq!(PodIfaceState::decode(&text), Some(state.clone()));

    assert_eq!(PodIfaceState::decode("some admin's alias"), None);
    assert_eq!(PodIfaceState::decode("petrel-pod1 m=zz"), None);
    assert_eq!(
        PodIfaceState::decode("petrel-pod1 a=10.0.0.1/8"),
        None,
        "no iface"
    );

    // Too many routes: the alias stays within bounds, what fits is kept.
    let mut big = state;
    for i in 0..40 {
        big.routes.push(SavedRoute {
            dst: Ipv4Addr::new(10, i, 0, 0),
            prefix_len: 16,
            gateway: Some(Ipv4Addr::new(10, 244, 1, 1)),
            metric: None,
        });
    }
    let text = big.encode();
    assert!(
        text.len() <= crate::netlink::MAX_ALIAS_LEN,
        "{}",
        text.len()
    );
    let decoded = PodIfaceState::decode(&text).unwrap();
    assert_eq!(decoded.addrs, big.addrs);
    assert_eq!(decoded.routes[..3], big.routes[..3]);
    assert!(decoded.routes.len() < big.routes.len());
}

#[test]
fn dhcp_routes_from_pod_state() {
    let (router, classless) = sample_state().dhcp_routes();
    assert_eq!(router, Some(Ipv4Addr::new(10, 244, 1, 1)));
    assert_eq!(
        classless,
        vec![
            (
                Ipv4Addr::new(10, 96, 0, 0),
                12,
                Ipv4Addr::new(10, 244, 1, 1)
            ),
            (Ipv4Addr::new(169, 254, 1, 1), 32, Ipv4Addr::UNSPECIFIED),
        ]
    );
    let empty = PodIfaceState {
        iface: "eth0".into(),
        mac: None,
        addrs: vec![],
        routes: vec![],
    };
    assert_eq!(empty.dhcp_routes(), (None, vec![]));
}

#[test]
fn masquerade_addressing() {
    let mut req = request();
    req.ports = vec![(80, crate::nft::Protocol::Tcp)];
    let rules = masquerade_rules(&req);
    assert_eq!(rules.table, "petrel_vm_1");
    assert_eq!(rules.pod_iface, "eth0");
    assert_eq!(rules.tap, "k6t-eth0", "NAT rules match the bridge");
    assert_eq!(
        rules.guest_v4,
        Some((Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::new(10, 0, 2, 1), 24))
    );
    assert_eq!(rules.guest_v6, None);
    assert_eq!(rules.ports, req.ports);

    req.v4_cidr = Some((Ipv4Addr::new(172, 20, 33, 77), 22));
    req.v6_cidr = Some(DEFAULT_V6_CIDR);
    let rules = masquerade_rules(&req);
    assert_eq!(
        rules.guest_v4,
        Some((
            Ipv4Addr::new(172, 20, 32, 2),
            Ipv4Addr::new(172, 20, 32, 1),
            22
        ))
    );
    assert_eq!(
        rules.guest_v6,
        Some((
            "fd10:0:2::2".parse().unwrap(),
            "fd10:0:2::1".parse().unwrap(),
            120
        ))
    );
}

#[test]
fn guard_without_steps_is_empty() {
    let guard = BindingGuard::default();
    assert!(guard.is_empty());
    assert_eq!(guard.len(), 0);
    assert!(guard.teardown().is_empty());
}

#[test]
fn random_macs_are_local_unicast() {
    for _ in 0..16 {
        let mac = random_mac().unwrap();
        assert_eq!(mac[0] & 0x01, 0, "unicast");
        assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
    }
    assert_ne!(random_mac().unwrap(), random_mac().unwrap());
}

// ---- root-only tests, each in its own network namespace -------------------

fn skip_reason(need_nft: bool) -> Option<&'static str> {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root");
    }
    if need_nft && crate::nft::run_nft(&["--version"], None).is_err() {
        return Some("nft is not installed");
    }
    None
}

/// Runs `f` on a fresh thread inside a new network namespace: everything
/// it does, spawned `nft` processes included, stays out of the host's.
fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare(2) takes a flag word and touches no memory; it
        // moves only this thread into a new network namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare: {}", io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const POD_GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);

/// A pod-like namespace: veth `eth0` (peer `peer0`) with MTU 1450,
/// [`POD_MAC`], 10.244.1.5/24, a default route via 10.244.1.1 and a
/// service-network route 10.96.0.0/12 via the same gateway.
fn make_pod_iface(nl: &mut Netlink) -> u32 {
    let index = nl.create_veth("eth0", "peer0").unwrap();
    nl.set_mtu("eth0", 1450).unwrap();
    nl.set_mtu("peer0", 1450).unwrap();
    nl.set_mac("eth0", POD_MAC).unwrap();
    nl.set_up("peer0").unwrap();
    nl.set_up("eth0").unwrap();
    nl.add_address("eth0", IpAddr::V4(POD_IP), 24).unwrap();
    nl.add_route(&Route::new(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        0,
        Some(IpAddr::V4(POD_GW)),
        Some(index),
    ))
    .unwrap();
    nl.add_route(&Route::new(
        IpAddr::V4(Ipv4Addr::new(10, 96, 0, 0)),
        12,
        Some(IpAddr::V4(POD_GW)),
        Some(index),
    ))
    .unwrap();
    index
}

/// Checks that eth0 is back to what [`make_pod_iface`] made and that no
/// bridge or tap is left.
fn assert_pod_iface_restored(nl: &mut Netlink) {
    let eth0 = nl.link("eth0").unwrap();
    assert_eq!(eth0.master, None);
    assert_eq!(eth0.mac, Some(POD_MAC));
    assert_eq!(eth0.mtu, 1450);
    assert!(eth0.is_up());
    let addrs = nl.addresses("eth0", Family::V4).unwrap();
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    assert_eq!(addrs[0].addr, IpAddr::V4(POD_IP));
    assert_eq!(addrs[0].prefix_len, 24);
    assert_eq!(nl.default_gateway_v4().unwrap(), Some(POD_GW));
    let routes = nl.routes_v4().unwrap();
    assert!(
        routes.iter().any(|r| r.oif == Some(eth0.index)
            && r.dst == IpAddr::V4(Ipv4Addr::new(10, 96, 0, 0))
            && r.prefix_len == 12
            && r.gateway == Some(IpAddr::V4(POD_GW))),
        "{routes:?}"
    );
    assert!(nl.link_by_name("k6t-eth0").unwrap().is_none());
    assert!(nl.link_by_name("tap0").unwrap().is_none());
}

fn read_sysctl(key: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{key}"))
        .unwrap()
        .trim()
        .to_owned()
}

fn nft_tables() -> String {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks the state while the bridge binding is in place.
fn assert_bridged(nl: &mut Netlink, setup: &BindingSetup, guest_mac: [u8; 6]) {
    let bridge = nl.link("k6t-eth0").unwrap();
    assert_eq!(bridge.kind.as_deref(), Some("bridge"));
    assert_eq!(bridge.mtu, 1450);
    assert!(bridge.is_up());
    let eth0 = nl.link("eth0").unwrap();
    assert_eq!(eth0.master, Some(bridge.index), "eth0 is a bridge port");
    assert!(eth0.is_up());
    assert!(nl.addresses("eth0", Family::V4).unwrap().is_empty());
    assert!(nl
        .routes_v4()
        .unwrap()
        .iter()
        .all(|r| r.oif != Some(eth0.index)));
    let tap = nl.link("tap0").unwrap();
    assert_eq!(tap.kind.as_deref(), Some("tun"));
    assert_eq!(tap.master, Some(bridge.index), "tap is a bridge port");
    assert_eq!(tap.mtu, 1450);
    assert!(tap.is_up());
    let baddrs = nl.addresses("k6t-eth0", Family::V4).unwrap();
    assert_eq!(baddrs.len(), 1);
    assert_eq!(baddrs[0].addr, IpAddr::V4(BRIDGE_DHCP_ADDR));
    assert_eq!(baddrs[0].prefix_len, 32);

    assert_eq!(setup.taps.len(), 2);
    assert_eq!(setup.taps[0].name(), "tap0");
    assert_eq!(setup.mtu, 1450);
    assert_eq!(setup.guest_mac, guest_mac);
    let (server, socket) = setup.dhcp.as_ref().unwrap();
    assert_eq!(socket.iface(), "k6t-eth0");
    let cfg = server.config();
    assert_eq!(cfg.server_ip, BRIDGE_DHCP_ADDR);
    assert_eq!(cfg.client_mac, guest_mac);
    assert_eq!(cfg.client_ip, POD_IP);
    assert_eq!(cfg.prefix_len, 24);
    assert_eq!(cfg.router, Some(POD_GW));
    assert_eq!(cfg.mtu, Some(1450));
    assert_eq!(
        cfg.classless_routes,
        vec![(Ipv4Addr::new(10, 96, 0, 0), 12, POD_GW)]
    );
    assert_eq!(cfg.dns_servers, vec![Ipv4Addr::new(10, 96, 0, 10)]);
    assert_eq!(cfg.search_domains, vec!["default.svc.cluster.local"]);
    assert_eq!(cfg.hostname.as_deref(), Some("vm-1"));
}

#[test]
fn bridge_binding_in_netns() {
    if let Some(reason) = skip_reason(false) {
        println!("skipped: {reason}");
        return;
    }
    in_new_netns(|| {
        let mut nl = Netlink::new().unwrap();
        make_pod_iface(&mut nl);
        let mut req = request();
        req.queues = 2;

        let setup = setup_bridge(&req).unwrap();
        assert_bridged(&mut nl, &setup, GUEST_MAC);
        // The pod keeps its MAC when the guest has its own.
        assert_eq!(nl.link("eth0").unwrap().mac, Some(POD_MAC));
        assert_eq!(setup.guard.len(), 3);
        drop(setup);
        assert_pod_iface_restored(&mut nl);

        // The guest takes the pod's MAC; eth0 gets a random local one.
        req.guest_mac_from_pod = true;
        let setup = setup_bridge(&req).unwrap();
        assert_bridged(&mut nl, &setup, POD_MAC);
        let eth0_mac = nl.link("eth0").unwrap().mac.unwrap();
        assert_ne!(eth0_mac, POD_MAC);
        assert_eq!(eth0_mac[0] & 0x03, 0x02);
        let BindingSetup {
            taps, dhcp, guard, ..
        } = setup;
        drop((taps, dhcp));
        assert!(guard.teardown().is_empty());
        assert_pod_iface_restored(&mut nl);
    });
}

#[test]
fn bridge_binding_recovers_from_killed_run() {
    if let Some(reason) = skip_reason(false) {
        println!("skipped: {reason}");
        return;
    }
    in_new_netns(|| {
        let mut nl = Netlink::new().unwrap();
        make_pod_iface(&mut nl);
        let mut req = request();
        req.guest_mac_from_pod = true;
        req.queues = 2;

        // A run killed with SIGKILL: its descriptors close (the tap goes),
        // nothing is undone.
        let first = setup_bridge(&req).unwrap();
        let BindingSetup {
            taps, dhcp, guard, ..
        } = first;
        drop((taps, dhcp));
        std::mem::forget(guard);
        assert!(nl.link_by_name("k6t-eth0").unwrap().is_some());
        assert!(nl.addresses("eth0", Family::V4).unwrap().is_empty());

        // The next run finds the pod's address, routes and MAC again.
        let second = setup_bridge(&req).unwrap();
        assert_bridged(&mut nl, &second, POD_MAC);
        drop(second);
        assert_pod_iface_restored(&mut nl);

        // A stale run whose tap survived (e.g. held by a leaked child).
        let third = setup_bridge(&req).unwrap();
        let BindingSetup {
            taps, dhcp, guard, ..
        } = third;
        drop(dhcp);
        std::mem::forget(guard);
        let fourth = setup_bridge(&req).unwrap();
        drop(taps);
        assert_eq!(fourth.dhcp.as_ref().unwrap().0.config().client_ip, POD_IP);
        drop(fourth);
        assert_pod_iface_restored(&mut nl);
    });
}

#[test]
fn failed_setup_leaves_nothing_behind() {
    if let Some(reason) = skip_reason(false) {
        println!("skipped: {reason}");
        return;
    }
    in_new_netns(|| {
        let mut nl = Netlink::new().unwrap();
        let mut req = request();
        req.pod_iface = "eth9".into();
        req.bridge_name = default_bridge_name("eth9");
        match setup_bridge(&req) {
            Err(BindingError::Netlink(e)) => {
                assert!(e.is_not_found(), "{e}");
                assert!(e.to_string().contains("eth9"), "{e}");
            }
            other => panic!("expected a missing-link error, got {other:?}"),
        }
        assert!(nl.link_by_name("k6t-eth9").unwrap().is_none());

        // A tap name taken by a non-tap link is refused, not deleted.
        make_pod_iface(&mut nl);
        nl.create_bridge("tap0", None).unwrap();
        let req = request();
        assert!(matches!(
            setup_bridge(&req),
            Err(BindingError::Stale { ref name, .. }) if name == "tap0"
        ));
        assert!(nl.link_by_name("tap0").unwrap().is_some());
        assert!(nl.link_by_name("k6t-eth0").unwrap().is_none());
        assert_eq!(nl.addresses("eth0", Family::V4).unwrap().len(), 1);
    });
}

#[test]
fn masquerade_binding_in_netns() {
    if let Some(reason) = skip_reason(true) {
        println!("skipped: {reason}");
        return;
    }
    in_new_netns(|| {
        let mut nl = Netlink::new().unwrap();
        make_pod_iface(&mut nl);
        let mut req = request();
        req.ports = vec![(22, crate::nft::Protocol::Tcp)];
        req.v6_cidr = Some(DEFAULT_V6_CIDR);

        let check = |nl: &mut Netlink, setup: &BindingSetup| {
            let bridge = nl.link("k6t-eth0").unwrap();
            assert_eq!(bridge.mtu, 1450);
            assert!(bridge.is_up());
            let v4 = nl.addresses("k6t-eth0", Family::V4).unwrap();
            assert_eq!(v4.len(), 1);
            assert_eq!(v4[0].addr, IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1)));
            assert_eq!(v4[0].prefix_len, 24);
            let v6 = nl.addresses("k6t-eth0", Family::V6).unwrap();
            assert!(
                v6.iter()
                    .any(|a| a.addr == "fd10:0:2::1".parse::<IpAddr>().unwrap()
                        && a.prefix_len == 120)
            );
            let tap = nl.link("tap0").unwrap();
            assert_eq!(tap.master, Some(bridge.index));
            assert_eq!(tap.mtu, 1450);
            // The pod interface keeps its address.
            let eth0 = nl.link("eth0").unwrap();
            assert_eq!(eth0.master, None);
            assert_eq!(nl.addresses("eth0", Family::V4).unwrap().len(), 1);

            assert!(nft_tables().contains("inet petrel_vm_1"));
            let listing =
                crate::nft::run_nft(&["list", "table", "inet", "petrel_vm_1"], None).unwrap();
            assert!(listing.contains("oifname \"k6t-eth0\""), "{listing}");
            assert!(listing.contains("dnat ip to 10.0.2.2"), "{listing}");
            assert_eq!(read_sysctl("net/ipv4/ip_forward"), "1");
            assert_eq!(read_sysctl("net/ipv6/conf/all/forwarding"), "1");
            // The pod's loopback is not forwarded: route_localnet stays off.
            assert_eq!(read_sysctl("net/ipv4/conf/k6t-eth0/route_localnet"), "0");

            assert_eq!(setup.mtu, 1450);
            assert_eq!(setup.guest_mac, GUEST_MAC);
            let (server, socket) = setup.dhcp.as_ref().unwrap();
            assert_eq!(socket.iface(), "k6t-eth0");
            let cfg = server.config();
            assert_eq!(cfg.server_ip, Ipv4Addr::new(10, 0, 2, 1));
            assert_eq!(cfg.router, Some(Ipv4Addr::new(10, 0, 2, 1)));
            assert_eq!(cfg.client_ip, Ipv4Addr::new(10, 0, 2, 2));
            assert_eq!(cfg.client_mac, GUEST_MAC);
            assert_eq!(cfg.prefix_len, 24);
            assert_eq!(cfg.mtu, Some(1450));
            assert!(cfg.classless_routes.is_empty());
            assert_eq!(cfg.dns_servers, vec![Ipv4Addr::new(10, 96, 0, 10)]);
        };
        let assert_gone = |nl: &mut Netlink| {
            assert!(!nft_tables().contains("petrel_vm_1"));
            assert!(nl.link_by_name("k6t-eth0").unwrap().is_none());
            assert!(nl.link_by_name("tap0").unwrap().is_none());
            assert_eq!(nl.addresses("eth0", Family::V4).unwrap().len(), 1);
        };

        let setup = setup_masquerade(&req).unwrap();
        check(&mut nl, &setup);
        let BindingSetup {
            taps, dhcp, guard, ..
        } = setup;
        drop(dhcp);
        // Explicit teardown while the tap is still open works too.
        assert!(guard.teardown().is_empty());
        assert_gone(&mut nl);
        drop(taps);

        // Killed run, then a new one.
        let first = setup_masquerade(&req).unwrap();
        let BindingSetup {
            taps, dhcp, guard, ..
        } = first;
        drop((taps, dhcp));
        std::mem::forget(guard);
        let second = setup_masquerade(&req).unwrap();
        check(&mut nl, &second);
        drop(second);
        assert_gone(&mut nl);

        // A stale bridge binding is undone before masquerade starts.
        let bridged = setup_bridge(&req).unwrap();
        let BindingSetup {
            taps, dhcp, guard, ..
        } = bridged;
        drop((taps, dhcp));
        std::mem::forget(guard);
        let masq = setup_masquerade(&req).unwrap();
        check(&mut nl, &masq);
        drop(masq);
        assert_gone(&mut nl);
        assert_pod_iface_restored(&mut nl);
    });
}

/// The nft run starts before the links are made; a set-up that fails after
/// it (here: the bridge refuses its IPv6 gateway address) still deletes the
/// table: nothing is left. (That the delete waits for the load is not seen
/// here: the load, started first, wins that race in practice.)
#[test]
fn masquerade_failing_after_nft_started_leaves_no_table() {
    if let Some(reason) = skip_reason(true) {
        println!("skipped: {reason}");
        return;
    }
    in_new_netns(|| {
        let mut nl = Netlink::new().unwrap();
        make_pod_iface(&mut nl);
        // New links in this namespace get no IPv6: the gateway address fails.
        std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1").unwrap();
        let mut req = request();
        req.v6_cidr = Some(DEFAULT_V6_CIDR);
        match setup_masquerade(&req) {
            Err(BindingError::Netlink(_)) => {}
            other => panic!("expected a netlink error for the IPv6 address, got {other:?}"),
        }
        assert!(!nft_tables().contains("petrel_vm_1"), "{}", nft_tables());
        assert!(nl.link_by_name("k6t-eth0").unwrap().is_none());
        assert!(nl.link_by_name("tap0").unwrap().is_none());
    });
}

// ---- DHCP through the bridge, as the guest sees it -------------------------

/// vnet header + Ethernet + IPv4 + UDP 68 -> 67 broadcast from `mac`.
fn discover_frame(mac: [u8; 6]) -> Vec<u8> {
    use dhcproto::v4::{DhcpOption, Flags, Message, MessageType};
    use dhcproto::{Encodable, Encoder};
    let mut msg = Message::default();
    msg.set_chaddr(&mac)
        .set_flags(Flags::default().set_broadcast());
    msg.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let mut dhcp = Vec::new();
    msg.encode(&mut Encoder::new(&mut dhcp)).unwrap();

    let mut f = vec![0u8; net_backend::VNET_HDR_LEN];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let udp_len = 8 + dhcp.len();
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&u16::try_from(20 + udp_len).unwrap().to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, 255, 255, 255, 255]);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0, 68, 0, 67]);
    f.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&dhcp);
    f
}

/// Sends a DISCOVER from `mac` into the tap, runs the binding's DHCP
/// server and returns the IP source of the reply and the decoded OFFER.
fn offer_through_tap(setup: &mut BindingSetup, mac: [u8; 6]) -> (Ipv4Addr, dhcproto::v4::Message) {
    use dhcproto::{Decodable, Decoder};
    use net_backend::FrameBackend;
    use std::io::IoSlice;
    use std::time::{Duration, Instant};

    let frame = discover_frame(mac);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    let mut next_send = Instant::now();
    loop {
        assert!(Instant::now() < deadline, "no DHCP reply on the tap");
        // Resent like a DHCP client does: a tap attached just now (the
        // privilege split's persistent one) gets carrier, and its bridge
        // port starts forwarding, only when the link watch runs (up to 1 s).
        if Instant::now() >= next_send {
            let tap = &mut setup.taps[0];
            assert_eq!(
                tap.write_frame(&[IoSlice::new(&frame)]).unwrap(),
                frame.len()
            );
            next_send = Instant::now() + Duration::from_millis(300);
        }
        let (server, socket) = setup.dhcp.as_mut().unwrap();
        socket.handle_readable(server).unwrap();
        // Any queue may carry the reply.
        for tap in &mut setup.taps {
            let n = match tap.read_frame(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("tap read: {e}"),
            };
            let eth = &buf[net_backend::VNET_HDR_LEN..n];
            if eth.len() < 42 || eth[12..14] != [0x08, 0x00] || eth[23] != 17 {
                continue;
            }
            let ip = &eth[14..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[ihl..ihl + 4] != [0, 67, 0, 68] {
                continue;
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let msg = dhcproto::v4::Message::decode(&mut Decoder::new(&ip[ihl + 8..])).unwrap();
            return (src, msg);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn guest_gets_dhcp_offers_through_the_bridge() {
    use dhcproto::v4::{DhcpOption, MessageType, OptionCode};
    if let Some(reason) = skip_reason(true) {
        println!("skipped: {reason}");
        return;
    }
    in_new_netns(|| {
        let mut nl = Netlink::new().unwrap();
        make_pod_iface(&mut nl);

        let mut req = request();
        req.guest_mac_from_pod = true;
        let mut setup = setup_bridge(&req).unwrap();
        let (src, offer) = offer_through_tap(&mut setup, POD_MAC);
        assert_eq!(src, BRIDGE_DHCP_ADDR);
        assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(offer.yiaddr(), POD_IP);
        assert_eq!(
            offer.opts().get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![POD_GW]))
        );
        assert_eq!(
            offer.opts().get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1450))
        );
        drop(setup);
        assert_pod_iface_restored(&mut nl);

        let mut setup = setup_masquerade(&request()).unwrap();
        let (src, offer) = offer_through_tap(&mut setup, GUEST_MAC);
        assert_eq!(src, Ipv4Addr::new(10, 0, 2, 1));
        assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(
            offer.opts().get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 1)]))
        );
        drop(setup);
    });
}

/// The privilege split on both bindings: `plumb` (persistent taps for uid
/// 107, nothing served), `attach` (the same DHCP answers, through the
/// persistent tap's queues, the bridge binding's from the alias), dropping
/// the attached setup removes nothing, `remove` removes everything; and
/// `attach` without `plumb` says to run net-setup.
#[test]
fn split_plumb_attach_remove_in_netns() {
    if let Some(reason) = skip_reason(true) {
        println!("skipped: {reason}");
        return;
    }
    in_new_netns(|| {
        let mut nl = Netlink::new().unwrap();
        make_pod_iface(&mut nl);
        let owner = TapOwner { uid: 107, gid: 107 };
        let mut req = request();
        req.queues = 2;
        req.guest_mac_from_pod = true;

        let err = BindingKind::Bridge.attach(&req).unwrap_err();
        assert!(matches!(err, BindingError::NotPrepared { .. }), "{err}");
        assert!(err.to_string().contains("petrel net-setup"), "{err}");

        let plumbed = BindingKind::Bridge.plumb(&req, owner).unwrap();
        assert_eq!(plumbed.guest_mac, POD_MAC);
        plumbed.guard.keep();
        let tap = nl.link("tap0").unwrap();
        assert_eq!(tap.kind.as_deref(), Some("tun"));
        assert_eq!(tap.master, Some(nl.link_index("k6t-eth0").unwrap()));
        let mut setup = BindingKind::Bridge.attach(&req).unwrap();
        assert_bridged(&mut nl, &setup, POD_MAC);
        assert!(setup.guard.is_empty());
        let (src, offer) = offer_through_tap(&mut setup, POD_MAC);
        assert_eq!(src, BRIDGE_DHCP_ADDR);
        assert_eq!(offer.yiaddr(), POD_IP);
        drop(setup);
        assert!(nl.link_by_name("tap0").unwrap().is_some(), "persistent");
        assert!(nl.link("eth0").unwrap().master.is_some());
        BindingKind::Bridge.remove(&req).unwrap();
        assert_pod_iface_restored(&mut nl);

        let req = request();
        let plumbed = BindingKind::Masquerade.plumb(&req, owner).unwrap();
        plumbed.guard.keep();
        // Plumbing twice re-creates it (stale state removed first).
        BindingKind::Masquerade
            .plumb(&req, owner)
            .unwrap()
            .guard
            .keep();
        assert!(nft_tables().contains("petrel_vm_1"));
        let mut setup = BindingKind::Masquerade.attach(&req).unwrap();
        let (src, offer) = offer_through_tap(&mut setup, GUEST_MAC);
        assert_eq!(src, Ipv4Addr::new(10, 0, 2, 1));
        assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 2, 2));
        drop(setup);
        assert!(nft_tables().contains("petrel_vm_1"));
        BindingKind::Masquerade.remove(&req).unwrap();
        assert!(!nft_tables().contains("petrel_vm_1"));
        assert!(nl.link_by_name("k6t-eth0").unwrap().is_none());
        assert!(nl.link_by_name("tap0").unwrap().is_none());
        // Removing again is fine.
        BindingKind::Masquerade.remove(&req).unwrap();
    });
}
