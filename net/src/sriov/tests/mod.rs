//! Tests of the resolution against a fake host: sysfs, `/dev/vfio` and the
//! downward API in a scratch directory.

mod downward_api;
mod resolve;
pub(super) mod support;
mod sysfs;
