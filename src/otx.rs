//! The only code that knows OTX: its URLs, its headers, its JSON, its
//! status codes.
//!
//! One [`Otx`] lives for the whole process: one `ureq` agent (a keep-alive
//! pool shared by every request and tenant), one bounded rayon pool for the
//! fan-out, and the caches. Wire shapes stay private here; callers get the
//! domain types [`General`], [`Pulse`] and [`Record`].
//!
//! Every GET goes through [`Otx::send`]: retries (429/502/503/504, a reset
//! before the answer) with backoff, never past the [`Session`] deadline, and
//! the SPEC's status mapping.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use ureq::http::{Response, StatusCode};
use ureq::Body;

use crate::cache::{Key, Memo};
use crate::config::Config;
use crate::error::RelayError;
use crate::log;
use crate::observable::{quote_path, Observable};

/// The `User-Agent` OTX sees (compatible).
pub const USER_AGENT: &str =
    "SecureX Threat Response Integrations <tr-integrations-support@cisco.com>";
/// Retries after the first attempt.
pub const MAX_RETRIES: u32 = 2;
/// Records per pulse-indicator page. Pages are streamed, so memory does not
/// grow with it; a large page saves round trips on big pulses (OTX's own
/// maximum is 10 000, its default 10).
pub const PAGE_SIZE: u32 = 5000;
/// The most pages read for one pulse.
pub const MAX_PAGES: u32 = 100;

/// What OTX says of one observable (`/general`), filtered to the pulses that
/// contain it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct General {
    /// Pulses whose `indicator_type_counts` holds the base indicator's type.
    pub pulses: Vec<Pulse>,
    /// Names of OTX's `validation` entries (whitelists, known false positives).
    pub validation: Vec<String>,
    /// Whether a `false_positive` assessment was accepted.
    pub false_positive: bool,
    /// Pulses that could not be read (no id): counted for the log.
    pub skipped: usize,
}

/// A pulse, with what CTIM needs of it. Optional fields are `None` when OTX
/// omits them (or sends something that is not of the right type).
#[derive(Debug, Clone, PartialEq)]
pub struct Pulse {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub tags: Option<Vec<String>>,
    pub tlp: Option<String>,
}

/// A pulse's own record of an indicator.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub created: String,
    pub expiration: Option<String>,
}

/// One relay request's side of the OTX conversation: whose key, until when,
/// and how many retries it cost.
pub struct Session {
    key: String,
    tenant: [u8; 32],
    deadline: Instant,
    retries: AtomicU32,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(key: &str, deadline: Instant) -> Session {
        Session {
            key: key.to_owned(),
            tenant: Sha256::digest(key.as_bytes()).into(),
            deadline,
            retries: AtomicU32::new(0),
        }
    }

    /// Retries made so far (for the access log).
    pub fn retries(&self) -> u32 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn cache_key(&self, url: &str) -> Key {
        let mut h = Sha256::new();
        h.update(self.tenant);
        h.update(url.as_bytes());
        h.finalize().into()
    }
}

/// The OTX client.
pub struct Otx {
    agent: ureq::Agent,
    base: String,
    timeout: Duration,
    max_body: u64,
    pool: rayon::ThreadPool,
    generals: Memo<Arc<Option<General>>>,
    records: Memo<Option<Record>>,
}

impl Otx {
    pub fn new(config: &Config) -> Result<Otx, String> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(pem) = &config.ca_pem {
            let certs: Vec<_> = ureq::tls::parse_pem(pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let idle = config.otx_concurrency.max(4) * 2;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(USER_AGENT)
            // The key travels in a header: never follow OTX elsewhere.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_connect(Some(config.otx_timeout))
            .max_idle_connections(idle)
            .max_idle_connections_per_host(idle)
            .max_idle_age(Duration::from_secs(50))
            .tls_config(tls.build())
            .build()
            .into();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.otx_concurrency)
            .thread_name(|i| format!("otx-{i}"))
            // A panicking job must not abort the process (rayon's default):
            // its request answers an error and the pool serves on.
            .panic_handler(|_| log::error(format_args!("an OTX job panicked")))
            .build()
            .map_err(|e| format!("cannot start the OTX thread pool: {e}"))?;
        Ok(Otx {
            agent,
            base: config.otx_url.clone(),
            timeout: config.otx_timeout,
            max_body: config.otx_max_body,
            pool,
            generals: Memo::new(config.cache_ttl, config.cache_max_entries),
            records: Memo::new(config.cache_ttl, config.cache_max_entries),
        })
    }

    /// The pool OTX work runs on.
    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// `GET /api/v1/user/me`: is the key good?
    pub fn check_key(&self, session: &Session) -> Result<(), RelayError> {
        let url = format!("{}/api/v1/user/me", self.base);
        let response = self.send(session, &url)?;
        match response.status().as_u16() {
            200 => {
                // SPEC §4 holds for every OTX call: an answer cut short,
                // larger than AVOTX_MAX_BODY or not JSON is `oops`, even
                // though only the status tells whether the key is good.
                let body = self.read_body(session, response)?;
                serde_json::from_str::<IgnoredAny>(&String::from_utf8_lossy(&body))
                    .map_err(|e| RelayError::Oops(format!("the answer is not valid JSON ({e})")))?;
                Ok(())
            }
            status => Err(status_error(status)),
        }
    }

    /// `GET /api/v1/indicators/{section}/{value}/general`, cached. `None`
    /// when OTX has no data (400/404) or the type has no OTX section.
    pub fn general(
        &self,
        session: &Session,
        observable: &Observable,
    ) -> Result<Arc<Option<General>>, RelayError> {
        let Some(section) = observable.kind().and_then(|k| k.otx_section()) else {
            return Ok(Arc::new(None));
        };
        let url = format!(
            "{}/api/v1/indicators/{section}/{}/general",
            self.base,
            quote_path(&observable.otx_value())
        );
        self.generals.get_or_fetch(session.cache_key(&url), || {
            let response = self.send(session, &url)?;
            match response.status().as_u16() {
                200 => {
                    let body = self.read_body(session, response)?;
                    let text = String::from_utf8_lossy(&body);
                    let value: Value = serde_json::from_str(&text).map_err(|e| {
                        RelayError::Oops(format!("the answer is not valid JSON ({e})"))
                    })?;
                    Ok(Arc::new(Some(general_from_json(&value))))
                }
                400 | 404 => Ok(Arc::new(None)),
                status => Err(status_error(status)),
            }
        })
    }

    /// The pulse's own record of `observable`, paging through the pulse's
    /// indicators newest first; `None` when the pulse does not list it.
    pub fn find_record(
        &self,
        session: &Session,
        pulse_id: &str,
        observable: &Observable,
    ) -> Result<Option<Record>, RelayError> {
        let path = format!(
            "{}/api/v1/pulses/{}/indicators",
            self.base,
            quote_path(pulse_id)
        );
        let key = session.cache_key(&format!("{path}#{}", observable.otx_value()));
        self.records.get_or_fetch(key, || {
            for page in 1..=MAX_PAGES {
                let url = format!("{path}?sort=-created&limit={PAGE_SIZE}&page={page}");
                let response = self.send(session, &url)?;
                let status = response.status().as_u16();
                match status {
                    200 => {}
                    400 | 404 => return Ok(None),
                    _ => return Err(status_error(status)),
                }
                let reader = response
                    .into_body()
                    .into_with_config()
                    .limit(self.max_body)
                    .reader();
                let outcome = scan_page(BufReader::with_capacity(64 * 1024, reader), observable)
                    .map_err(|e| self.body_error(session, e))?;
                match outcome {
                    Scan::Found(record) => return Ok(record),
                    Scan::NotHere { more: true } => continue,
                    Scan::NotHere { more: false } => return Ok(None),
                }
            }
            Ok(None)
        })
    }

    /// One GET with retries. Returns any answer that is not retried; the
    /// caller maps its status.
    fn send(&self, session: &Session, url: &str) -> Result<Response<Body>, RelayError> {
        let mut attempt = 0;
        loop {
            let remaining = session.remaining();
            if remaining.is_zero() {
                return Err(RelayError::Timeout);
            }
            let result = self
                .agent
                .get(url)
                .header("X-OTX-API-KEY", &session.key)
                .config()
                .timeout_global(Some(self.timeout.min(remaining)))
                .build()
                .call();
            let (failure, retry_after) = match result {
                Ok(response) => match response.status().as_u16() {
                    429 | 502 | 503 | 504 => {
                        let status = response.status().as_u16();
                        (status_error(status), retry_after(&response))
                    }
                    _ => return Ok(response),
                },
                Err(e) if is_reset(&e) => (self.transport_error(session, e), None),
                Err(e) => return Err(self.transport_error(session, e)),
            };
            if attempt >= MAX_RETRIES {
                return Err(failure);
            }
            let wait = retry_after.unwrap_or_else(|| backoff(attempt));
            if wait >= session.remaining() {
                return Err(failure);
            }
            std::thread::sleep(wait);
            attempt += 1;
            session.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn read_body(
        &self,
        session: &Session,
        response: Response<Body>,
    ) -> Result<Vec<u8>, RelayError> {
        let mut body = Vec::new();
        response
            .into_body()
            .into_with_config()
            .limit(self.max_body)
            .reader()
            .read_to_end(&mut body)
            .map_err(|e| self.body_error(session, ureq::Error::from(e)))?;
        Ok(body)
    }

    fn body_error(&self, session: &Session, e: ureq::Error) -> RelayError {
        match e {
            ureq::Error::Io(io) => match io
                .get_ref()
                .and_then(|i| i.downcast_ref::<serde_json::Error>())
            {
                Some(json) => RelayError::Oops(format!("the answer is not valid JSON ({json})")),
                None => self.transport_error(session, ureq::Error::Io(io)),
            },
            other => self.transport_error(session, other),
        }
    }

    fn transport_error(&self, session: &Session, e: ureq::Error) -> RelayError {
        use ureq::Error as E;
        match e {
            E::Timeout(_) if session.remaining().is_zero() => RelayError::Timeout,
            E::Timeout(_) => RelayError::Oops(format!(
                "AlienVault OTX did not answer within {} s",
                self.timeout.as_secs()
            )),
            E::BodyExceedsLimit(_) => {
                RelayError::Oops(format!("the answer is larger than {} bytes", self.max_body))
            }
            E::HostNotFound => {
                RelayError::Oops("the AlienVault OTX host name did not resolve".into())
            }
            E::ConnectionFailed => RelayError::Oops("could not connect to AlienVault OTX".into()),
            E::Tls(why) => RelayError::Ssl(why.to_owned()),
            E::Rustls(why) => RelayError::Ssl(why.to_string()),
            E::Io(io) => {
                let text = io.to_string();
                if let Some(cert) = text.strip_prefix("invalid peer certificate: ") {
                    return RelayError::Ssl(cert.to_owned());
                }
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        RelayError::Oops("connection to AlienVault OTX refused".into())
                    }
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                        if session.remaining().is_zero() =>
                    {
                        RelayError::Timeout
                    }
                    std::io::ErrorKind::InvalidData
                        if text.contains("JSON") || text.contains("expected") =>
                    {
                        RelayError::Oops(format!("the answer is not valid JSON ({text})"))
                    }
                    _ => RelayError::Oops(format!(
                        "the exchange with AlienVault OTX failed ({text})"
                    )),
                }
            }
            other => RelayError::Oops(other.to_string()),
        }
    }
}

/// The SPEC's mapping of an OTX status that is not a success.
pub fn status_error(status: u16) -> RelayError {
    match status {
        403 => RelayError::OtxAuth,
        429 => RelayError::TooManyRequests,
        _ => match StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
        {
            Some(reason) => RelayError::Oops(format!("{status} {reason}")),
            None => RelayError::Oops(status.to_string()),
        },
    }
}

fn is_reset(e: &ureq::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e, ureq::Error::Io(io) if matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof))
}

fn retry_after(response: &Response<Body>) -> Option<Duration> {
    let seconds = response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// 100 ms, 200 ms, … plus up to 100 ms of jitter, so that many relays
/// retrying together do not come back in step.
fn backoff(attempt: u32) -> Duration {
    let jitter = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % 100;
    Duration::from_millis(100 * (1 << attempt.min(6)) + jitter)
}

/// Reads a `/general` answer leniently: whatever is missing or of the wrong
/// type counts as absent; nothing panics.
pub fn general_from_json(value: &Value) -> General {
    let base_type = value
        .pointer("/base_indicator/type")
        .and_then(Value::as_str);
    let mut general = General::default();
    if let Some(pulses) = value
        .pointer("/pulse_info/pulses")
        .and_then(Value::as_array)
    {
        for p in pulses {
            let contains = match (
                base_type,
                p.get("indicator_type_counts").and_then(Value::as_object),
            ) {
                (Some(t), Some(counts)) => counts.contains_key(t),
                _ => false,
            };
            if !contains {
                continue;
            }
            match pulse_from_json(p) {
                Some(pulse) => general.pulses.push(pulse),
                None => general.skipped += 1,
            }
        }
    }
    if let Some(entries) = value.get("validation").and_then(Value::as_array) {
        general.validation = entries
            .iter()
            .filter_map(|v| match v {
                Value::Object(o) => o
                    .get("name")
                    .or_else(|| o.get("message"))
                    .or_else(|| o.get("source"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            })
            .collect();
    }
    general.false_positive = value
        .get("false_positive")
        .and_then(Value::as_array)
        .is_some_and(|fps| {
            fps.iter()
                .any(|fp| fp.get("assessment").and_then(Value::as_str) == Some("accepted"))
        });
    general
}

fn pulse_from_json(p: &Value) -> Option<Pulse> {
    let text = |name: &str| p.get(name).and_then(Value::as_str).map(str::to_owned);
    let id = match p.get("id")? {
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => return None,
    };
    Some(Pulse {
        id,
        name: text("name"),
        description: text("description"),
        author: p
            .pointer("/author/username")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tags: p.get("tags").and_then(Value::as_array).map(|tags| {
            tags.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        }),
        tlp: text("TLP"),
    })
}

/// The outcome of one pulse-indicator page.
#[derive(Debug, PartialEq)]
enum Scan {
    /// The observable's record (`None` when it has no `created`).
    Found(Option<Record>),
    /// Not on this page; `more` when `next` is set.
    NotHere { more: bool },
}

/// Streams one page, keeping only the matching record: the other records
/// are skipped by the parser, never built as values.
fn scan_page(reader: impl Read, observable: &Observable) -> Result<Scan, ureq::Error> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let scan = PageSeed { observable }
        .deserialize(&mut de)
        .and_then(|scan| de.end().map(|()| scan))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Io => ureq::Error::from(std::io::Error::from(e)),
            _ => ureq::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        })?;
    Ok(scan)
}

/// Runs the streaming page scan over `page` for the fuzz target `otx_page`
/// (`fuzz/`); `scan_page` itself stays private. True when `page` was read
/// as a page (the record found or not), false when it was refused.
#[doc(hidden)]
pub fn scan_page_for_fuzz(page: &[u8], observable: &Observable) -> bool {
    scan_page(page, observable).is_ok()
}

struct PageSeed<'a> {
    observable: &'a Observable,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum PageField {
    Results,
    Next,
    #[serde(other)]
    Other,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
    type Value = Scan;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scan, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = Scan;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a page of pulse indicators")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scan, A::Error> {
        let mut found = None;
        let mut more = false;
        while let Some(field) = map.next_key::<PageField>()? {
            match field {
                PageField::Results if found.is_none() => {
                    found = map.next_value_seed(ResultsSeed {
                        observable: self.observable,
                    })?;
                }
                PageField::Next => more = map.next_value::<Option<IgnoredAny>>()?.is_some(),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match found {
            Some(record) => Scan::Found(record),
            None => Scan::NotHere { more },
        })
    }
}

struct ResultsSeed<'a> {
    observable: &'a Observable,
}

impl<'de> DeserializeSeed<'de> for ResultsSeed<'_> {
    /// `Some(record)` once the observable is found.
    type Value = Option<Option<Record>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResultsSeed<'_> {
    type Value = Option<Option<Record>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of records")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while found.is_none() {
            match seq.next_element_seed(RecordSeed {
                observable: self.observable,
            })? {
                None => return Ok(None),
                Some(record) => found = record,
            }
        }
        // Skip the rest without building anything, so the connection can be
        // reused.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(found)
    }
}

/// One element of `results`. It is read without allocating unless it is the
/// observable's record: `indicator` is compared in the parser's buffer, and
/// `created` / `expiration` are kept only while the element may still match
/// (OTX lists `indicator` first, so in practice only for the match).
/// Elements that are not objects, and fields of an unexpected type, count as
/// absent.
struct RecordSeed<'a> {
    observable: &'a Observable,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(field_identifier, rename_all = "lowercase")]
enum RecordField {
    Indicator,
    Created,
    Expiration,
    #[serde(other)]
    Other,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    /// `Some(record)` when this element is the observable's record (the
    /// record is `None` when it has no `created`).
    type Value = Option<Option<Record>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = Option<Option<Record>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // None until `indicator` is read, then whether it matched.
        let mut matched: Option<bool> = None;
        let (mut created, mut expiration) = (None, None);
        while let Some(field) = map.next_key::<RecordField>()? {
            match field {
                RecordField::Indicator => {
                    matched = Some(map.next_value_seed(Matches(self.observable))?);
                }
                RecordField::Created | RecordField::Expiration if matched != Some(false) => {
                    let text = match map.next_value::<Lenient>()? {
                        Lenient::Text(t) => Some(t),
                        Lenient::Other => None,
                    };
                    if field == RecordField::Created {
                        created = text;
                    } else {
                        expiration = text;
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((matched == Some(true)).then(|| {
            created.map(|created| Record {
                created,
                expiration,
            })
        }))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Whether a JSON value is a string naming the observable.
struct Matches<'a>(&'a Observable);

impl<'de> DeserializeSeed<'de> for Matches<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Matches<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an indicator")
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(self.0.matches(v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// A string, or anything else (which is dropped).
enum Lenient {
    Text(String),
    Other,
}

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient::Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Lenient::Text(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Lenient::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Lenient::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Logs a pulse that was dropped (its lookup failed).
pub fn warn_dropped_pulse(pulse_id: &str, error: &RelayError) {
    log::warn(format_args!(
        "pulse {pulse_id} dropped: {}",
        error.message()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obs(t: &str, v: &str) -> Observable {
        Observable {
            type_: t.into(),
            value: v.into(),
        }
    }

    fn scan(body: &str, o: &Observable) -> Result<Scan, String> {
        scan_page(body.as_bytes(), o).map_err(|e| e.to_string())
    }

    #[test]
    fn scan_finds_and_reports_next() {
        let page = r#"{"count": 3, "results": [
            {"indicator": "a.com", "created": "2020-01-01T00:00:00"},
            {"indicator": "B.com", "created": "2020-01-02T00:00:00", "expiration": "2021-01-01T00:00:00"},
            {"indicator": "c.com", "created": 5}], "next": "https://x/page=2"}"#;
        assert_eq!(
            scan(page, &obs("domain", "b.COM")),
            Ok(Scan::Found(Some(Record {
                created: "2020-01-02T00:00:00".into(),
                expiration: Some("2021-01-01T00:00:00".into())
            })))
        );
        assert_eq!(
            scan(page, &obs("domain", "zzz.com")),
            Ok(Scan::NotHere { more: true })
        );
        assert_eq!(scan(page, &obs("domain", "c.com")), Ok(Scan::Found(None)));
        assert_eq!(
            scan(page, &obs("url", "B.COM")),
            Ok(Scan::NotHere { more: true })
        );
    }

    #[test]
    fn scan_tolerates_odd_shapes() {
        let o = obs("ip", "1.1.1.1");
        assert_eq!(
            scan(r#"{"results": null, "next": null}"#, &o),
            Ok(Scan::NotHere { more: false })
        );
        assert_eq!(
            scan(
                r#"{"results": [1, "x", [], {"indicator": 3}, {"indicator": "1.1.1.1", "created": "t", "expiration": 2.0}]}"#,
                &o
            ),
            Ok(Scan::Found(Some(Record {
                created: "t".into(),
                expiration: None
            })))
        );
        assert!(scan(r#"{"results": [{"indicator": "1.1.1.1""#, &o).is_err());
        assert!(scan("[]", &o).is_err());
    }

    #[test]
    fn samples_scan() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/otx-samples/");
        for (file, value, more) in [
            ("pulse-indicators-page1.json", "nope.example", true),
            ("pulse-indicators-page2.json", "nope.example", false),
            (
                "pulse-indicators-recorded-single-page.json",
                "nope.example",
                false,
            ),
        ] {
            let body = std::fs::read_to_string(format!("{dir}{file}")).expect(file);
            assert_eq!(
                scan(&body, &obs("domain", value)),
                Ok(Scan::NotHere { more }),
                "{file}"
            );
        }
        let body = std::fs::read_to_string(format!("{dir}pulse-indicators-page1.json")).unwrap();
        assert!(matches!(
            scan(&body, &obs("domain", "webserver.servehttp.com")),
            Ok(Scan::Found(Some(_)))
        ));
    }

    #[test]
    fn general_filter_and_signals() {
        let g = general_from_json(&json!({
            "base_indicator": {"type": "IPv4"},
            "pulse_info": {"pulses": [
                {"id": "a", "name": "A", "indicator_type_counts": {"IPv4": 3}, "tags": ["x", 1], "author": {"username": "u"}},
                {"id": "b", "indicator_type_counts": {}},
                {"id": "c", "indicator_type_counts": {"domain": 1}},
                {"indicator_type_counts": {"IPv4": 1}},
                "junk"
            ]},
            "validation": [{"name": "Whitelisted IP", "source": "whitelist"}],
            "false_positive": [{"assessment": "accepted"}]
        }));
        assert_eq!(g.pulses.len(), 1);
        assert_eq!(g.skipped, 1);
        assert_eq!(g.pulses[0].tags, Some(vec!["x".to_owned()]));
        assert_eq!(g.pulses[0].author.as_deref(), Some("u"));
        assert_eq!(g.validation, vec!["Whitelisted IP".to_owned()]);
        assert!(g.false_positive);
        assert_eq!(
            general_from_json(&json!({"pulse_info": null})),
            General::default()
        );
        assert_eq!(
            general_from_json(&json!({"pulse_info": {"pulses": {}}})),
            General::default()
        );
    }

    #[test]
    fn status_mapping() {
        assert_eq!(status_error(403), RelayError::OtxAuth);
        assert_eq!(status_error(429), RelayError::TooManyRequests);
        assert_eq!(
            status_error(500),
            RelayError::Oops("500 Internal Server Error".into())
        );
        assert_eq!(status_error(599), RelayError::Oops("599".into()));
    }
}
