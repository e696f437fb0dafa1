//! Encoders for the DHCPv4 option payloads that petrel builds by hand.
//!
//! dhcproto has typed variants for most options; the two list-valued options
//! whose wire format has subtle rules are encoded here as plain bytes and
//! sent as raw options, so their exact bytes are under test:
//!
//! - option 119, Domain Search ([RFC 3397]): a sequence of RFC 1035 names,
//!   compressed with pointers relative to the start of the option data;
//! - option 121, Classless Static Route ([RFC 3442]): `prefix length`,
//!   the significant octets of the destination, the router.
//!
//! Payloads longer than 255 bytes are split into several options with the
//! same code ([RFC 3396]) by dhcproto's encoder.
//!
//! [RFC 3397]: https://www.rfc-editor.org/rfc/rfc3397
//! [RFC 3442]: https://www.rfc-editor.org/rfc/rfc3442
//! [RFC 3396]: https://www.rfc-editor.org/rfc/rfc3396

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;
/// Longest encoded DNS name, length octets and root label included.
const MAX_NAME_LEN: usize = 255;
/// Largest offset a compression pointer can hold (14 bits).
const MAX_POINTER_OFFSET: usize = 0x3fff;

/// The subnet mask of an IPv4 prefix length; lengths above 32 count as 32.
pub fn prefix_to_mask(prefix_len: u8) -> Ipv4Addr {
    let len = u32::from(prefix_len.min(32));
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    Ipv4Addr::from(mask)
}

/// `addr` with every bit past `prefix_len` cleared (the network address).
pub fn network_of(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) & u32::from(prefix_to_mask(prefix_len)))
}

/// Why a domain name cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The name has no labels (empty or just ".").
    #[error("empty domain name")]
    Empty,
    /// A label is empty (e.g. "a..b") or longer than 63 bytes.
    #[error("invalid label length {0} (must be 1..=63)")]
    LabelLength(usize),
    /// The encoded name is longer than 255 bytes.
    #[error("domain name longer than 255 bytes when encoded")]
    TooLong,
}

/// Splits `name` into its labels, checking RFC 1035's length limits.
///
/// One trailing dot (the root) is accepted and ignored. Label contents are
/// not restricted beyond their length: DNS itself allows any octet.
pub fn domain_labels(name: &str) -> Result<Vec<&str>, DomainError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(DomainError::Empty);
    }
    let labels: Vec<&str> = trimmed.split('.').collect();
    let mut encoded_len = 1; // the root label
    for label in &labels {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(DomainError::LabelLength(label.len()));
        }
        encoded_len += 1 + label.len();
    }
    if encoded_len > MAX_NAME_LEN {
        return Err(DomainError::TooLong);
    }
    Ok(labels)
}

/// Encodes a domain search list as option 119 data (RFC 3397).
///
/// Names are written in order as RFC 1035 label sequences; a suffix that was
/// already written (compared case-insensitively) is replaced by a compression
/// pointer to its first occurrence, offsets counting from the start of the
/// option data as RFC 3397 §2 requires. Names that fail [`domain_labels`] are
/// skipped with a warning.
pub fn encode_domain_search(domains: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    // Lower-cased suffix ("b.example.com") -> offset of its first label.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for domain in domains {
        let labels = match domain_labels(domain) {
            Ok(labels) => labels,
            Err(err) => {
                tracing::warn!(domain = %domain, %err, "skipping invalid DHCP search domain");
                continue;
            }
        };
        let mut pointer = None;
        for i in 0..labels.len() {
            let suffix = labels[i..].join(".").to_ascii_lowercase();
            if let Some(&offset) = seen.get(&suffix) {
                pointer = Some(offset);
                break;
            }
            let offset = out.len();
            if offset <= MAX_POINTER_OFFSET {
                seen.insert(suffix, offset);
            }
            let label = labels[i].as_bytes();
            // domain_labels checked label.len() <= 63, so it fits a u8.
            out.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(label);
        }
        match pointer {
            Some(offset) => {
                // offset <= 0x3fff, so the pointer is two bytes 0b11xxxxxx xxxxxxxx.
                let ptr = 0xc000 | (offset & MAX_POINTER_OFFSET);
                out.push(((ptr >> 8) & 0xff) as u8);
                out.push((ptr & 0xff) as u8);
            }
            None => out.push(0),
        }
    }
    out
}

/// Encodes classless static routes as option 121 data (RFC 3442).
///
/// Each route is `(destination, prefix length, router)`; the destination is
/// masked to its prefix and only its significant octets are written. Routes
/// with a prefix length above 32 are skipped with a warning.
pub fn encode_classless_routes(routes: &[(Ipv4Addr, u8, Ipv4Addr)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(routes.len() * 9);
    for &(dest, prefix_len, router) in routes {
        if prefix_len > 32 {
            tracing::warn!(%dest, prefix_len, "skipping classless route with invalid prefix");
            continue;
        }
        let significant = usize::from(prefix_len).div_ceil(8);
        out.push(prefix_len);
        out.extend_from_slice(&network_of(dest, prefix_len).octets()[..significant]);
        out.extend_from_slice(&router.octets());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(prefix_to_mask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(prefix_to_mask(1), Ipv4Addr::new(128, 0, 0, 0));
        assert_eq!(prefix_to_mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(prefix_to_mask(30), Ipv4Addr::new(255, 255, 255, 252));
        assert_eq!(prefix_to_mask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(prefix_to_mask(200), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(
            network_of(Ipv4Addr::new(10, 0, 2, 15), 24),
            Ipv4Addr::new(10, 0, 2, 0)
        );
    }

    #[test]
    fn rfc3442_examples() {
        // The RFC's table: 0/0, 10/8, 10.17/16, 10.27.129/24, 10.229.0.128/25,
        // 10.198.122.47/32, each via 1.2.3.4.
        let r = Ipv4Addr::new(1, 2, 3, 4);
        let routes = [
            (Ipv4Addr::UNSPECIFIED, 0, r),
            (Ipv4Addr::new(10, 0, 0, 0), 8, r),
            (Ipv4Addr::new(10, 17, 0, 0), 16, r),
            (Ipv4Addr::new(10, 27, 129, 0), 24, r),
            (Ipv4Addr::new(10, 229, 0, 128), 25, r),
            (Ipv4Addr::new(10, 198, 122, 47), 32, r),
        ];
        let expected: Vec<u8> = [
            &[0u8][..],
            &[8, 10],
            &[16, 10, 17],
            &[24, 10, 27, 129],
            &[25, 10, 229, 0, 128],
            &[32, 10, 198, 122, 47],
        ]
        .iter()
        .flat_map(|d| d.iter().copied().chain([1, 2, 3, 4]))
        .collect();
        assert_eq!(encode_classless_routes(&routes), expected);
    }

    #[test]
    fn classless_routes_mask_and_skip_invalid() {
        let r = Ipv4Addr::new(192, 168, 1, 1);
        let out = encode_classless_routes(&[
            (Ipv4Addr::new(172, 16, 5, 9), 12, r),
            (Ipv4Addr::new(1, 1, 1, 1), 33, r),
        ]);
        assert_eq!(out, vec![12, 172, 16, 192, 168, 1, 1]);
    }

    #[test]
    fn rfc3397_example_with_compression() {
        // RFC 3397 §3: "eng.apple.com." and "marketing.apple.com.".
        let out = encode_domain_search(&["eng.apple.com".into(), "marketing.apple.com.".into()]);
        let mut expected = vec![3];
        expected.extend_from_slice(b"eng");
        expected.push(5);
        expected.extend_from_slice(b"apple");
        expected.push(3);
        expected.extend_from_slice(b"com");
        expected.push(0);
        expected.push(9);
        expected.extend_from_slice(b"marketing");
        expected.extend_from_slice(&[0xc0, 0x04]);
        assert_eq!(out, expected);
    }

    #[test]
    fn domain_search_duplicates_and_invalid() {
        let long_label = "a".repeat(64);
        let out = encode_domain_search(&[
            "example.com".into(),
            "".into(),
            format!("{long_label}.com"),
            "a..b".into(),
            "EXAMPLE.com".into(),
        ]);
        let mut expected = vec![7];
        expected.extend_from_slice(b"example");
        expected.push(3);
        expected.extend_from_slice(b"com");
        expected.push(0);
        expected.extend_from_slice(&[0xc0, 0x00]);
        assert_eq!(out, expected);
    }

    #[test]
    fn domain_labels_limits() {
        assert_eq!(domain_labels("a.b."), Ok(vec!["a", "b"]));
        assert_eq!(domain_labels("."), Err(DomainError::Empty));
        assert_eq!(domain_labels("a..b"), Err(DomainError::LabelLength(0)));
        let name = vec!["abcdefghi"; 26].join(".");
        assert_eq!(domain_labels(&name), Err(DomainError::TooLong));
        let name = vec!["abcdefghi"; 25].join(".");
        assert!(domain_labels(&name).is_ok());
    }
}
