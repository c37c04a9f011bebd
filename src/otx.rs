//! The one home of OTX: the only code that knows its URLs, its headers,
//! its JSON and its status codes. What leaves it are the relay's own types
//! ([`intel`](crate::intel)), links to OTX's pages ([`links`]) and
//! [`RelayError`](crate::error::RelayError)s.
//!
//! - `client`: [`Otx`] (one per process: the `ureq` agent, the OTX pool,
//!   the caches) and [`Session`]; every exchange, its retries and the
//!   SPEC's status mapping; `otx-relay check`'s probes.
//! - `cached`: the two tiers every lookup is kept in (`shared_cache`: the
//!   fleet's Redis); `pool`: the bounded OTX threads, tenants in turn;
//!   `fan_out`: one request's OTX work on the pool, until its deadline.
//! - One module per OTX answer: `general` (`/general`, read leniently),
//!   `page` (a pulse's indicator pages, streamed), `passive_dns` (streamed),
//!   `subscribed` (the subscribed pulses, and the tiles' walks of them),
//!   `respond` (the writes of the respond actions).
//! - `kinds`: how OTX names and matches each kind of observable; [`links`]:
//!   its web pages; `trouble`: OTX trouble told to the operator, a line a
//!   minute.
//!
//! One way of reading OTX's JSON: serde over the answer as it streams in,
//! building only what the relay uses (a seed or visitor per answer), and
//! leniently: a field missing or of another type counts as absent, never
//! as an error, as OTX's answers vary between records and years. `/general`
//! is pruned by a seed into the few fields read; the subscribed pulses and
//! passive DNS by visitors that keep a bounded summary however long the
//! list. One exception, measured: a pulse's indicator pages (up to 61 MiB
//! for a popular pulse, 100 pages) are scanned as bytes for the one record
//! sought, stopping at it, without decoding the JSON around it (`page`).

mod cached;
mod client;
mod fan_out;
mod general;
mod kinds;
pub mod links;
mod page;
mod passive_dns;
mod pool;
mod respond;
mod shared_cache;
mod subscribed;
mod trouble;
pub use client::{base_url_warning, probe, status_error, Otx, Probe, Session, MAX_RETRIES};
use client::{not_json, warn_dropped_pulse, warn_dropped_pulse_status, Retry};
pub use fan_out::{Lookup, Mode};
pub use general::{general_for_fuzz, general_text_for_fuzz};
pub use kinds::{askable, matches_itself_for_fuzz};
pub use page::{scan_page_for_fuzz, MAX_PAGES, PAGE_SIZE};
pub use passive_dns::{read_passive_dns_for_fuzz, warn_passive_dns_failed};
pub use subscribed::{Walk, SUBSCRIBED_PAGE};
pub use trouble::Trouble;
