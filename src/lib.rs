//! otx-relay: a Threat Response relay module for AlienVault OTX.
//!
//! Threat Response POSTs observables; the relay asks OTX which pulses hold
//! them and answers in CTIM. The contract is `SPEC.md` (in the shared docs);
//! this is the map of the code, by layer: a module imports only from the
//! layers below it (no import cycle; `main` on top).
//!
//! - [`cli`]: the command line (serve, `token`, `healthcheck`,
//!   `module-type`, `check`), for a thin `main`; [`check`]: `otx-relay
//!   check`, the way to OTX step by step.
//! - [`server`]: tiny_http, worker threads, panic guard, graceful stop;
//!   `serve`, what `otx-relay` does by default (main hands it to `cli`).
//! - [`routes`]: one `match` on (method, path).
//! - [`handlers`]: one function per endpoint: body → auth → OTX → answer;
//!   [`tiles`] and [`respond`]: the dashboard and respond endpoints.
//! - [`answer`]: what is answered, written in one place: the envelope and
//!   every error document, and the CTIM answer assembled from what OTX said.
//! - [`app`]: what every handler shares (config, OTX client, JWKS keys).
//! - [`ctim`]: the CTIM entities emitted (their links to OTX come in as
//!   arguments); [`verdict`]: the rule that judges an observable from
//!   OTX's own signals.
//! - [`otx`]: the one home of OTX: URLs, headers, retries, status mapping,
//!   pages, how each kind is named and matched, the links to OTX's pages;
//!   its bounded pool, the fan-out of one request's OTX work until its
//!   deadline, the tiles' walks, the caches' Redis tier (`REDIS_URL`);
//!   [`egress`]: the HTTP agent, its proxy and its name resolver (each
//!   host looked up at most once a minute).
//! - [`jwks`]: XDR's signing keys, fetched and kept; [`module_type`]: the
//!   `module-type` document.
//! - [`auth`]: HS256 and RS256 JWTs, checked by hand (pure; `now` is an
//!   argument; RS256 keys come through its `KeySource`).
//! - [`http`]: requests and replies as values; [`log`]: one-line, escaped logs.
//! - [`intel`]: what OTX said, in the relay's own types (`General`,
//!   `Pulse`, `Record`, `PassiveDns`, `PulseSummary`); no OTX name.
//! - [`observable`]: supported types, body parsing, percent-encoding (no
//!   OTX name).
//! - [`cache`]: per-tenant TTL/LRU cache with single-flight; [`metrics`]:
//!   `/metrics`.
//! - [`config`], [`error`], [`time`]: the environment, the one error type,
//!   calendar and formatting; they import nothing of the relay above them.
//!
//! The layers, top first: a module imports only from the lines below its
//! own (tests/it/tidy.rs reads this block and holds the code to it).
//!
//! ```text
//! main
//! cli server
//! routes
//! handlers
//! answer app check tiles
//! otx jwks ctim respond
//! verdict auth egress observable log cache
//! config error time metrics module_type intel http
//! ```
//!
//! Invariants:
//! - Only `otx` knows OTX's URLs and JSON shapes; only `server`
//!   touches tiny_http; only `config` reads the environment (the `token`,
//!   `healthcheck` and `check` subcommands through it too); nothing below
//!   `main` ends the process.
//! - Secrets (the OTX key, the JWT, `SECRET_KEY`) never reach a log line,
//!   an error message or a `Debug` output; what clients and OTX send is
//!   escaped before it reaches a log line.
//! - A handler returns a value; only the server writes to the socket.

pub mod answer;
pub mod app;
pub mod auth;
pub mod cache;
pub mod check;
pub mod cli;
pub mod config;
pub mod ctim;
pub mod egress;
pub mod error;
pub mod handlers;
pub mod http;
pub mod intel;
pub mod jwks;
pub mod log;
pub mod metrics;
pub mod module_type;
pub mod observable;
pub mod otx;
pub mod respond;
pub mod routes;
pub mod server;
pub mod tiles;
pub mod time;
pub mod verdict;
