//! CIDRs of masquerade networks: checked once here, carried typed in the
//! plan so nothing later parses them again.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Serialize, Serializer};

/// KubeVirt's default masquerade IPv4 network.
pub const KUBEVIRT_DEFAULT_IPV4_CIDR: &str = "10.0.2.0/24";
/// KubeVirt's default masquerade IPv6 network.
pub const KUBEVIRT_DEFAULT_IPV6_CIDR: &str = "fd10:0:2::/120";
/// Virtink's default masquerade network.
pub const VIRTINK_DEFAULT_CIDR: &str = "10.0.2.0/30";

/// Longest IPv4 prefix allowed: /30 leaves 4 addresses (network, gateway,
/// VM, broadcast).
pub const MAX_IPV4_PREFIX: u8 = 30;
/// Longest IPv6 prefix allowed.
pub const MAX_IPV6_PREFIX: u8 = 126;

fn split(text: &str) -> Option<(&str, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_digit()) || prefix.len() > 3 {
        return None;
    }
    Some((addr, prefix.parse().ok()?))
}

/// Checks an IPv4 CIDR; the error text completes "`<value>` ...".
pub fn check_ipv4(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let syntax = || "is not an IPv4 CIDR; use address/prefix such as 10.0.2.0/24".to_string();
    let (addr, prefix) = split(text).ok_or_else(syntax)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
    if prefix > 32 {
        return Err(syntax());
    }
    if prefix > MAX_IPV4_PREFIX {
        return Err(format!(
            "is too small; use a prefix of /{MAX_IPV4_PREFIX} or shorter (at least 4 addresses)"
        ));
    }
    Ok((addr, prefix))
}

/// Checks an IPv6 CIDR; the error text completes "`<value>` ...".
pub fn check_ipv6(text: &str) -> Result<(Ipv6Addr, u8), String> {
    let syntax = || "is not an IPv6 CIDR; use address/prefix such as fd10:0:2::/120".to_string();
    let (addr, prefix) = split(text).ok_or_else(syntax)?;
    let addr: Ipv6Addr = addr.parse().map_err(|_| syntax())?;
    if prefix > 128 {
        return Err(syntax());
    }
    if prefix > MAX_IPV6_PREFIX {
        return Err(format!(
            "is too small; use a prefix of /{MAX_IPV6_PREFIX} or shorter"
        ));
    }
    Ok((addr, prefix))
}

/// A checked IPv4 network (address as written, prefix /30 or shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// A checked IPv6 network (address as written, prefix /126 or shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Cidr {
    pub addr: Ipv6Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Parses and checks `text`; the error text completes "`<value>` ...".
    pub fn parse(text: &str) -> Result<Self, String> {
        check_ipv4(text).map(|(addr, prefix)| Ipv4Cidr { addr, prefix })
    }
}

impl Ipv6Cidr {
    /// Parses and checks `text`; the error text completes "`<value>` ...".
    pub fn parse(text: &str) -> Result<Self, String> {
        check_ipv6(text).map(|(addr, prefix)| Ipv6Cidr { addr, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Ipv6Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4() {
        assert!(check_ipv4("10.0.2.0/24").is_ok());
        assert!(check_ipv4("10.0.2.0/30").is_ok());
        assert!(check_ipv4("10.0.2.0/31").unwrap_err().contains("/30"));
        assert!(check_ipv4("10.0.2.0/33")
            .unwrap_err()
            .contains("not an IPv4"));
        assert!(check_ipv4("10.0.2.0").is_err());
        assert!(check_ipv4("fd10::/120").is_err());
        assert!(check_ipv4("10.0.2.0/+4").is_err());
        assert!(check_ipv4("10.0.2/24").is_err());
    }

    #[test]
    fn typed_cidrs_print_as_written() {
        let v4 = Ipv4Cidr::parse("10.0.2.0/24").unwrap();
        assert_eq!((v4.addr, v4.prefix), (Ipv4Addr::new(10, 0, 2, 0), 24));
        assert_eq!(v4.to_string(), "10.0.2.0/24");
        assert_eq!(
            Ipv6Cidr::parse("fd10:0:2::/120").unwrap().to_string(),
            "fd10:0:2::/120"
        );
        assert!(Ipv6Cidr::parse("fd10::/127").is_err());
    }

    #[test]
    fn ipv6() {
        assert!(check_ipv6("fd10:0:2::/120").is_ok());
        assert!(check_ipv6("fd10:0:2::/126").is_ok());
        assert!(check_ipv6("fd10:0:2::/127").unwrap_err().contains("/126"));
        assert!(check_ipv6("10.0.2.0/24").is_err());
        assert!(check_ipv6("fd10::/129").is_err());
    }
}
