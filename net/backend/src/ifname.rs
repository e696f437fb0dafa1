//! Interface names: the one check every crate applies before handing a
//! name to the kernel (tap creation, sysfs paths, netlink, socket binds).

/// Longest interface name in bytes, the terminating NUL excluded
/// (`IFNAMSIZ - 1`).
pub const MAX_IFNAME_LEN: usize = libc::IFNAMSIZ - 1;

/// Why an interface name was rejected; every variant carries the name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfNameError {
    /// The name is empty.
    #[error("invalid interface name {name:?}: empty")]
    Empty {
        /// The rejected name.
        name: String,
    },
    /// The name is longer than [`MAX_IFNAME_LEN`] bytes.
    #[error("invalid interface name {name:?}: longer than {MAX_IFNAME_LEN} bytes")]
    TooLong {
        /// The rejected name.
        name: String,
    },
    /// The name is `.` or `..`.
    #[error("invalid interface name {name:?}: reserved")]
    Reserved {
        /// The rejected name.
        name: String,
    },
    /// The name contains a character the kernel refuses (NUL, `/`, `:`)
    /// or whitespace.
    #[error("invalid interface name {name:?}: contains {what}")]
    BadChar {
        /// The rejected name.
        name: String,
        /// What it contains, e.g. `"'/'"` or `"whitespace"`.
        what: &'static str,
    },
}

/// Checks `name` the way the kernel's `dev_valid_name` does: 1 to
/// [`MAX_IFNAME_LEN`] bytes, not `.` or `..`, and no `/`, `:`, whitespace
/// (nor NUL, which no C string can carry).
pub fn validate_ifname(name: &str) -> Result<(), IfNameError> {
    let owned = || name.to_owned();
    if name.is_empty() {
        return Err(IfNameError::Empty { name: owned() });
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(IfNameError::TooLong { name: owned() });
    }
    if name == "." || name == ".." {
        return Err(IfNameError::Reserved { name: owned() });
    }
    let bad = [('\0', "NUL"), ('/', "'/'"), (':', "':'")]
        .into_iter()
        .find(|&(c, _)| name.contains(c))
        .map(|(_, what)| what)
        .or_else(|| {
            name.chars()
                .any(char::is_whitespace)
                .then_some("whitespace")
        });
    match bad {
        Some(what) => Err(IfNameError::BadChar {
            name: owned(),
            what,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(name: &str) -> &'static str {
        match validate_ifname(name) {
            Err(IfNameError::BadChar { name: n, what }) => {
                assert_eq!(n, name);
                what
            }
            other => panic!("{name:?}: expected BadChar, got {other:?}"),
        }
    }

    #[test]
    fn kernel_rules() {
        for ok in [
            "tap0",
            "a",
            "abcdefghijklmno",
            "petrel-vm1.q",
            "tap%d",
            "t_ap",
        ] {
            assert_eq!(validate_ifname(ok), Ok(()), "{ok:?}");
        }
        let err = |name: &str| validate_ifname(name).unwrap_err();
        assert!(matches!(err(""), IfNameError::Empty { .. }));
        assert!(matches!(
            err("abcdefghijklmnop"),
            IfNameError::TooLong { .. }
        ));
        // 8 two-byte characters: 16 bytes.
        assert!(matches!(err("éééééééé"), IfNameError::TooLong { .. }));
        assert!(matches!(err("."), IfNameError::Reserved { .. }));
        assert!(matches!(err(".."), IfNameError::Reserved { .. }));
        assert_eq!(what("ta\0p"), "NUL");
        assert_eq!(what("a/b"), "'/'");
        assert_eq!(what("eth0:1"), "':'");
        assert_eq!(what("tap 0"), "whitespace");
        assert_eq!(what("tap\t0"), "whitespace");
        assert_eq!(what("tap0\n"), "whitespace");
    }

    #[test]
    fn messages_name_the_interface() {
        let e = validate_ifname("a/b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid interface name \"a/b\": contains '/'"
        );
        let e = validate_ifname("abcdefghijklmnop").unwrap_err();
        assert!(e.to_string().contains("longer than 15 bytes"), "{e}");
    }
}
