//! macvtap backend: the macvtap CNI (or a test) brings a macvtap link into
//! the pod; its character device is `/dev/tap<ifindex>`. petrel makes its
//! own device node from the major:minor in sysfs, so it works in any mount
//! namespace and whatever ifindex collisions other namespaces have in
//! /dev, opens it once per queue with IFF_VNET_HDR, and hands the queues
//! over as [`Tap`]s (the ioctl interface is the tap's).

use std::ffi::{CStr, CString};
use std::fs;
use std::os::fd::AsFd;
use std::path::PathBuf;

use crate::ifname::{validate_ifname, IfNameError};
use crate::mac::MacAddr;
use crate::sys::{self, IfReq};
use crate::tap::{Tap, TapError};

/// Errors from finding or opening a macvtap interface.
#[derive(Debug, thiserror::Error)]
pub enum MacvtapError {
    #[error(transparent)]
    InvalidName(#[from] IfNameError),
    #[error("{iface} is not a macvtap interface here ({path} is missing)")]
    NotMacvtap { iface: String, path: String },
    #[error("cannot read {path}")]
    Sysfs {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: String, content: String },
    #[error("cannot create the device node for {iface}")]
    Mknod {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the macvtap device of {iface}")]
    Open {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set IFF_VNET_HDR on {iface}")]
    SetIff {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("macvtap {iface}")]
    Tap {
        iface: String,
        #[source]
        source: TapError,
    },
    #[error("{queues} queues requested")]
    Queues { queues: u16 },
}

fn read_sysfs(path: &str) -> Result<String, MacvtapError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| MacvtapError::Sysfs {
            path: path.to_string(),
            source,
        })
}

/// The MAC of interface `iface` (from sysfs).
pub fn interface_mac(iface: &str) -> Result<[u8; 6], MacvtapError> {
    validate_ifname(iface)?;
    let path = format!("/sys/class/net/{iface}/address");
    let s = read_sysfs(&path)?;
    match s.parse::<MacAddr>() {
        Ok(mac) => Ok(mac.octets()),
        Err(_) => Err(MacvtapError::Parse { path, content: s }),
    }
}

/// Opens `queues` queues of macvtap `iface` in the current network
/// namespace.
pub fn open(iface: &str, queues: u16) -> Result<Vec<Tap>, MacvtapError> {
    validate_ifname(iface)?;
    if queues == 0 {
        return Err(MacvtapError::Queues { queues });
    }
    let idx_path = format!("/sys/class/net/{iface}/ifindex");
    let ifindex = read_sysfs(&idx_path)?;
    let dev_path = format!("/sys/class/net/{iface}/macvtap/tap{ifindex}/dev");
    if fs::metadata(&dev_path).is_err() {
        return Err(MacvtapError::NotMacvtap {
            iface: iface.to_string(),
            path: dev_path,
        });
    }
    let dev = read_sysfs(&dev_path)?;
    let parse_err = || MacvtapError::Parse {
        path: dev_path.clone(),
        content: dev.clone(),
    };
    let (maj, min) = dev.split_once(':').ok_or_else(parse_err)?;
    let major: u32 = maj.parse().map_err(|_| parse_err())?;
    let minor: u32 = min.parse().map_err(|_| parse_err())?;

    let node: PathBuf =
        std::env::temp_dir().join(format!("petrel-macvtap-{}-{ifindex}", std::process::id()));
    let _ = fs::remove_file(&node);
    let c_node = CString::new(node.as_os_str().as_encoded_bytes()).map_err(|_| parse_err())?;
    let mknod_err = |source| MacvtapError::Mknod {
        iface: iface.to_string(),
        source,
    };
    sys::mknod_char(&c_node, libc::makedev(major, minor)).map_err(mknod_err)?;
    let result = open_queues(iface, &c_node, queues);
    // The node is only needed for the opens.
    let _ = fs::remove_file(&node);
    result
}

fn open_queues(iface: &str, node: &CStr, queues: u16) -> Result<Vec<Tap>, MacvtapError> {
    let mut taps = Vec::with_capacity(usize::from(queues));
    for _ in 0..queues {
        let fd = sys::open_rdwr(node).map_err(|source| MacvtapError::Open {
            iface: iface.to_string(),
            source,
        })?;
        let mut req = IfReq::with_name("");
        let mut flags = sys::IFF_TAP | sys::IFF_NO_PI | sys::IFF_VNET_HDR;
        if queues > 1 {
            flags |= sys::IFF_MULTI_QUEUE;
        }
        req.set_flags(flags);
        sys::tun_set_iff(fd.as_fd(), &mut req).map_err(|source| MacvtapError::SetIff {
            iface: iface.to_string(),
            source,
        })?;
        let tap = Tap::from_fd(fd).map_err(|source| MacvtapError::Tap {
            iface: iface.to_string(),
            source,
        })?;
        taps.push(tap);
    }
    Ok(taps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_a_macvtap_is_a_clear_error() {
        let err = open("lo", 1).unwrap_err();
        assert!(matches!(err, MacvtapError::NotMacvtap { .. }), "{err}");
        assert!(err.to_string().contains("not a macvtap"), "{err}");
        assert!(matches!(open("lo", 0), Err(MacvtapError::Queues { .. })));
        assert!(matches!(
            open("../lo", 1),
            Err(MacvtapError::InvalidName(_))
        ));
        assert!(matches!(
            interface_mac("lo/x"),
            Err(MacvtapError::InvalidName(_))
        ));
    }
}
