//! The guest's DNS settings, read from the pod's resolv.conf.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

/// DNS settings passed to the guest over DHCP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsInfo {
    /// IPv4 name servers (DHCPv4 option 6 carries no IPv6 servers).
    pub servers: Vec<Ipv4Addr>,
    /// Search domains.
    pub search: Vec<String>,
}

/// Parses resolv.conf(5) text: `nameserver` lines (IPv4 ones; IPv6 and
/// malformed ones are skipped), and the last `search` line, or failing
/// that the last `domain` line, for the search list.
pub fn parse_resolv_conf(text: &str) -> DnsInfo {
    let mut servers = Vec::new();
    let mut search = None;
    let mut domain = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(Ok(addr)) = words.next().map(str::parse::<Ipv4Addr>) {
                    if !servers.contains(&addr) {
                        servers.push(addr);
                    }
                }
            }
            Some("search") => {
                search = Some(words.map(str::to_owned).collect::<Vec<_>>());
            }
            Some("domain") => domain = words.next().map(str::to_owned),
            _ => {}
        }
    }
    DnsInfo {
        servers,
        search: search
            .or_else(|| domain.map(|d| vec![d]))
            .unwrap_or_default(),
    }
}

/// Reads and parses `path` (normally `/etc/resolv.conf`) with
/// [`parse_resolv_conf`]. An unreadable file gives empty settings and a
/// warning: the guest then simply gets no DNS configuration.
pub fn read_resolv_conf(path: impl AsRef<Path>) -> DnsInfo {
    let path = path.as_ref();
    match fs::read_to_string(path) {
        Ok(text) => parse_resolv_conf(&text),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read resolv.conf; no DNS for the guest");
            DnsInfo::default()
        }
    }
}
