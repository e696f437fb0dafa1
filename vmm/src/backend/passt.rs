//! The passt and slirp bindings: start the NIC's passt as the host plan
//! says and use its socket as the NIC's one queue.

use net::passt::Passt;

use super::{BackendError, Opened};
use crate::host::PasstPlan;
use crate::plan::NicPlan;

pub(super) fn start(nic: &NicPlan, plan: &PasstPlan) -> Result<Opened, BackendError> {
    let (passt, stream) = Passt::spawn(&nic.name, &plan.program, &plan.args)?;
    Ok(Opened {
        queues: vec![Box::new(stream)],
        mtu: plan.mtu,
        pod: None,
        passt: Some(passt),
    })
}
