//! The dev-only harness of otx-relay, shared by the integration tests
//! (`tests/it`), the bench and its soak (`benches/relay.rs`) and
//! `.ci/docker-smoke` (through the `fake-otx` binary).
//!
//! - `FakeOtx`: a raw HTTP/1.1 server standing in for OTX (or, over TLS, a
//!   JWKS host), programmable per test, counting requests and connections,
//!   with latency and faults; `Synth`, the made-up OTX of the loads.
//! - `Relay`: the relay binary run as a child process on a free port; on
//!   `Drop` it checks that no secret reached its output.
//! - `Client`: a small keep-alive HTTP/1.1 client written by hand, so that
//!   nothing is added or hidden and a load costs less than the relay.
//! - `token`: HS256 JWTs minted by hand and RS256 ones (`SigningKey`),
//!   independent of the relay's code.
//! - `check_json`: whole-document comparison with `<<...>>` placeholders.
//! - `RedisServer`: a throwaway `redis-server` for the fleet.
//! - `load` and `procfs`: loads, their figures, and what Linux tells of a
//!   process (CPU time, memory, threads, descriptors); `hostile`, the
//!   soak's hostile clients.

mod fake;
pub mod hostile;
mod http1;
mod json;
pub mod load;
pub mod procfs;
mod redis;
mod relay;
pub mod synth;
mod token;

use std::sync::{Mutex, MutexGuard};

use fake::percent_decode;

pub use fake::{sample, FakeOtx, Fault, Recorded, Reply, TEST_CERT};
pub use http1::{Client, Headers, Response};
pub use json::{check_json, regex_full_match};
pub use redis::RedisServer;
pub use relay::{find_secret, free_port, is_relay_variable, run_cli, sigterm, Relay, RelayCommand};
pub use relay::{redact, RefusedPort, Run};
pub use synth::Synth;
pub use token::*;

/// A lock that survives a panicked holder: a failing test must not turn every
/// later access (from the fake server's threads, or `Drop`) into a second panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `s` in lower-case hex, two digits a byte.
pub fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The text whose `hex` is `s`, if any.
pub fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}
