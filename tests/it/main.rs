//! The one integration-test binary: the real relay run as a child process
//! against a fake OTX. `support` is the harness; each other module is an area.

mod panic_guard;
mod smoke;
mod support;
mod verdicts;
