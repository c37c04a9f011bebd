//! The one integration-test binary: the real relay run as a child process
//! against a fake OTX. `support` is the harness; each other module is an area.

mod auth;
mod cache;
mod config_limits;
mod deeper;
mod dockerfile;
mod empty_root;
mod endpoints;
mod fairness;
mod faults;
mod fleet;
mod hostile;
mod kubernetes;
mod metrics;
mod observe;
mod operations;
mod panic_guard;
mod passive_dns;
mod respond;
mod robustness;
mod slow_clients;
mod smoke;
mod support;
mod tidy;
mod tiles;
mod tls;
mod verdicts;
mod wire;
mod xdr;
