//! The one integration-test binary: the real relay run as a child process
//! against a fake OTX. `support` is the harness; each other module is an area.

mod auth;
mod cli;
mod container;
mod egress;
mod endpoints;
mod fairness;
mod fleet;
mod hostile;
mod observe;
mod otx_cache;
mod otx_faults;
mod respond;
mod smoke;
mod support;
mod tidy;
mod tiles;
mod verdicts;
mod wire;
