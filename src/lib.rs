//! otx-relay: a Threat Response relay module for AlienVault OTX.
//!
//! Threat Response POSTs observables; the relay asks OTX which pulses hold
//! them and answers in CTIM. The contract is `SPEC.md` (in the shared docs);
//! this is the map of the code, in reading order:
//!
//! - [`config`]: every environment variable, read and validated once.
//! - [`server`]: tiny_http, worker threads, panic guard, graceful stop.
//! - [`routes`]: requests and replies as values; one `match` on the path.
//! - [`handlers`]: one function per endpoint: body → auth → OTX → CTIM.
//! - [`auth`]: the HS256 JWT, checked by hand (pure; `now` is an argument).
//! - [`observable`]: supported types, body parsing, percent-encoding.
//! - [`otx`]: the OTX client: URLs, headers, JSON, retries, status mapping.
//! - [`cache`]: per-tenant TTL/LRU cache with single-flight.
//! - [`ctim`] and [`verdict`]: the CTIM entities emitted.
//! - [`error`]: the one error type and the answer envelope.
//! - [`log`]: access lines and warnings.
//!
//! Invariants:
//! - Only `otx` knows OTX's URLs and JSON shapes; only `server` touches
//!   tiny_http; only `config` reads the environment.
//! - Secrets (the OTX key, the JWT, `SECRET_KEY`) never reach a log line,
//!   an error message or a `Debug` output.
//! - A handler returns a value; only the server writes to the socket.

pub mod auth;
pub mod cache;
pub mod config;
pub mod ctim;
pub mod error;
pub mod handlers;
pub mod log;
pub mod observable;
pub mod otx;
pub mod routes;
pub mod server;
pub mod verdict;
