//! The OTX client: one [`Otx`] lives for the whole process, with one
//! `ureq` agent (a keep-alive pool shared by every request and tenant), the
//! OTX pool and the caches. Every GET goes through `Otx::send`: retries
//! (429/502/503/504, a reset before the answer) with backoff, never past
//! the [`Session`] deadline, and the SPEC's status mapping. Also the probes
//! of `otx-relay check` and the warnings OTX trouble gives.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};
use ureq::http::{Response, StatusCode};
use ureq::Body;

use super::pool::Pool;
use super::shared_cache::SharedCache;
use super::{Trouble, Walk};
use crate::cache::{Key, Memo};
use crate::config::{url_host_port, Config};
use crate::egress;
use crate::error::RelayError;
use crate::intel::{General, PassiveDns, Record};
use crate::metrics::Metrics;

/// Retries after the first attempt.
pub const MAX_RETRIES: u32 = 2;

/// One relay request's side of the OTX conversation: whose key, until when,
/// and how many retries it cost.
pub struct Session {
    pub(super) key: String,
    tenant: [u8; 32],
    pub(super) deadline: Instant,
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

    /// The tenant: a SHA-256 of the OTX key, for cache keys and the OTX
    /// pool's turns.
    pub fn tenant(&self) -> &[u8; 32] {
        &self.tenant
    }

    /// Retries made so far (for the access log).
    pub fn retries(&self) -> u32 {
        self.retries.load(Ordering::Relaxed)
    }

    pub(super) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    pub(super) fn cache_key(&self, url: &str) -> Key {
        // ring's SHA-256 (assembly, SHA extensions where the CPU has them):
        // the portable one of `sha2` cost 5 % of a cold `/observe`'s
        // instructions, one key per OTX call (callgrind).
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        h.update(&self.tenant);
        h.update(url.as_bytes());
        let mut key = Key::default();
        key.copy_from_slice(h.finish().as_ref());
        key
    }
}

/// How an exchange may be retried (SPEC §4, §12): reads on 429, 502, 503,
/// 504 and a reset before the answer; writes on 429 only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    Read,
    Write,
}

/// The OTX client.
pub struct Otx {
    pub(super) agent: ureq::Agent,
    pub(super) base: String,
    pub(super) timeout: Duration,
    pub(super) max_body: u64,
    pub(super) pool: Pool,
    pub(super) generals: Memo<Arc<Option<General>>>,
    pub(super) records: Memo<Option<Record>>,
    pub(super) passive_dns: Memo<Arc<PassiveDns>>,
    /// `PASSIVE_DNS_LIMIT`: the relations kept of one answer.
    pub(super) passive_dns_limit: usize,
    /// `PASSIVE_DNS`: whether `/observe` asks for passive DNS at all.
    pub(super) passive_dns_on: bool,
    /// The tiles' walks, per tenant and period (`TILE_CACHE_TTL`).
    pub(super) walks: Memo<Arc<Walk>>,
    /// `TILE_MAX_PULSES`: the most pulses one walk reads.
    pub(super) tile_max_pulses: usize,
    pub(super) metrics: Arc<Metrics>,
    /// The fleet's shared cache (`REDIS_URL`), if any.
    pub(super) redis: Option<SharedCache>,
    /// The proxy OTX calls go through (`the proxy HOST:PORT (VARIABLE)`),
    /// if any: a failure to reach it is named as the proxy's, not OTX's.
    pub(super) proxy: Option<String>,
}

impl Otx {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Otx, String> {
        let idle = config.otx_concurrency.max(4) * 2;
        let agent = egress::agent(config, idle, &metrics)?;
        let pool = Pool::new(config.otx_concurrency)?;
        let kinds = if config.passive_dns { 3 } else { 2 };
        let share = |n| cache_share(config.cache_max_entries, kinds, n);
        Ok(Otx {
            agent,
            base: config.otx_url.clone(),
            timeout: config.otx_timeout,
            max_body: config.otx_max_body,
            pool,
            // CACHE_MAX_ENTRIES is the total (SPEC §1), shared by the kinds
            // of OTX answer kept: indicators', pulses' records and passive
            // DNS (when on).
            generals: Memo::new(config.cache_ttl, share(0)),
            records: Memo::new(config.cache_ttl, share(1)),
            passive_dns: Memo::new(config.cache_ttl, share(2)),
            passive_dns_limit: config.passive_dns_limit,
            passive_dns_on: config.passive_dns,
            walks: Memo::new(config.tile_cache_ttl, 10_000),
            tile_max_pulses: config.tile_max_pulses,
            metrics,
            proxy: config
                .proxy
                .as_ref()
                .filter(|p| {
                    url_host_port(&config.otx_url)
                        .is_none_or(|(host, port)| !p.bypasses(&host, port))
                })
                .map(|p| format!("the proxy {}:{} ({})", p.host, p.port, p.variable)),
            // No cache, nothing to share (CACHE_TTL=0 turns both tiers off).
            redis: match &config.redis_url {
                Some(url) if !config.cache_ttl.is_zero() => Some(SharedCache::new(
                    url,
                    config.ca_pem.as_deref(),
                    config.cache_ttl,
                )?),
                _ => None,
            },
        })
    }

    /// Entries in the in-process cache (for `/metrics`).
    pub fn cache_entries(&self) -> usize {
        self.generals.len() + self.records.len() + self.passive_dns.len()
    }

    /// Runs `work` on the OTX pool, in the session's tenant's turn (so
    /// `AVOTX_CONCURRENCY` bounds it too), and waits for it; a panic in it
    /// is an internal error.
    pub fn on_pool<T: Send + 'static>(
        self: &Arc<Self>,
        session: &Arc<Session>,
        work: impl FnOnce(&Otx, &Session) -> Result<T, RelayError> + Send + 'static,
    ) -> Result<T, RelayError> {
        let (otx, worker_session) = (self.clone(), session.clone());
        self.pool
            .run(session.tenant(), move || work(&otx, &worker_session))
            .unwrap_or(Err(RelayError::Internal))
    }

    /// `GET /api/v1/user/me`: is the key good?
    pub fn check_key(&self, session: &Session) -> Result<(), RelayError> {
        let url = format!("{}/api/v1/user/me", self.base);
        let response = self.send(session, "user_me", &url)?;
        match response.status().as_u16() {
            200 => {
                // SPEC §4 holds for every OTX call: an answer cut short,
                // larger than AVOTX_MAX_BODY or not JSON is `oops`, even
                // though only the status tells whether the key is good.
                let body = self.read_body(session, response)?;
                serde_json::from_str::<IgnoredAny>(&String::from_utf8_lossy(&body))
                    .map_err(|e| Trouble::Unusable.warned(not_json(e)))?;
                Ok(())
            }
            status => Err(status_error(status)),
        }
    }

    /// One GET with retries. Returns any answer that is not retried; the
    /// caller maps its status.
    pub(super) fn send(
        &self,
        session: &Session,
        call: &'static str,
        url: &str,
    ) -> Result<Response<Body>, RelayError> {
        self.exchange(session, call, Retry::Read, |timeout| {
            let request = self.agent.get(url).header("X-OTX-API-KEY", &session.key);
            // The agent's own timeout is AVOTX_TIMEOUT (`egress`); a
            // request-level config (ureq copies the agent's for it) only
            // when the deadline is nearer.
            if timeout >= self.timeout {
                return request.call();
            }
            request
                .config()
                .timeout_global(Some(timeout))
                .build()
                .call()
        })
    }

    /// `call` (given the time it may take) with the retries `retry` allows:
    /// after a short backoff with jitter or the answer's `Retry-After`, at
    /// most [`MAX_RETRIES`] times, never past the session's deadline.
    pub(super) fn exchange(
        &self,
        session: &Session,
        name: &'static str,
        retry: Retry,
        call: impl Fn(Duration) -> Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>, RelayError> {
        let mut attempt = 0;
        loop {
            let remaining = session.remaining();
            if remaining.is_zero() {
                return Err(Trouble::Deadline.warned(RelayError::Timeout));
            }
            let started = Instant::now();
            let result = call(self.timeout.min(remaining));
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            self.metrics.otx_call(name, status, started.elapsed());
            let (failure, trouble, retry_after) = match result {
                Ok(response) => match (response.status().as_u16(), retry) {
                    (429, _) | (502..=504, Retry::Read) => {
                        let status = response.status().as_u16();
                        let trouble = status_trouble(status);
                        (status_error(status), trouble, retry_after(&response))
                    }
                    (status, _) => {
                        // The caller maps the status; the operator is told
                        // here of those that are failures (a read's 400
                        // and 404 are OTX's "no data").
                        let no_data = retry == Retry::Read && matches!(status, 400 | 404);
                        if !(200..=299).contains(&status) && !no_data {
                            status_trouble(status).warn(format_args!("{}", status_text(status)));
                        }
                        return Ok(response);
                    }
                },
                Err(e) if retry == Retry::Read && is_reset(&e) => {
                    let (failure, trouble) = self.classify(session, e);
                    (failure, trouble, None)
                }
                Err(e) => return Err(self.transport_error(session, e)),
            };
            if attempt >= MAX_RETRIES {
                return Err(trouble.warned(failure));
            }
            let wait = retry_after.unwrap_or_else(|| backoff(attempt));
            if wait >= session.remaining() {
                return Err(trouble.warned(failure));
            }
            std::thread::sleep(wait);
            attempt += 1;
            session.retries.fetch_add(1, Ordering::Relaxed);
            self.metrics.otx_retry();
        }
    }

    /// An answer's body as it streams in, cut at `AVOTX_MAX_BODY` (reading
    /// past it is an error).
    pub(super) fn body_reader(&self, response: Response<Body>) -> impl Read + use<> {
        response
            .into_body()
            .into_with_config()
            .limit(self.max_body)
            .reader()
    }

    pub(super) fn read_body(
        &self,
        session: &Session,
        response: Response<Body>,
    ) -> Result<Vec<u8>, RelayError> {
        let mut body = Vec::new();
        self.body_reader(response)
            .read_to_end(&mut body)
            .map_err(|e| self.transport_error(session, ureq::Error::from(e)))?;
        Ok(body)
    }

    /// What a transport failure means for the client, told to the operator
    /// (at most a line a minute per kind).
    pub(super) fn transport_error(&self, session: &Session, e: ureq::Error) -> RelayError {
        let (error, trouble) = self.classify(session, e);
        trouble.warned(error)
    }

    /// Whom the relay connects to for OTX: OTX, or the proxy.
    fn peer(&self) -> &str {
        self.proxy.as_deref().unwrap_or("AlienVault OTX")
    }

    /// A transport failure as the client's error, and its kind of trouble.
    fn classify(&self, session: &Session, e: ureq::Error) -> (RelayError, Trouble) {
        use ureq::Error as E;
        let transport = |why: String| (RelayError::Oops(why), Trouble::Transport);
        match e {
            E::Timeout(_) if session.remaining().is_zero() => {
                (RelayError::Timeout, Trouble::Deadline)
            }
            E::Timeout(_) => transport(format!(
                "AlienVault OTX did not answer within {} s",
                self.timeout.as_secs()
            )),
            E::BodyExceedsLimit(_) => (
                RelayError::Oops(format!("the answer is larger than {} bytes", self.max_body)),
                Trouble::Unusable,
            ),
            E::HostNotFound => transport(match &self.proxy {
                Some(proxy) => format!("the host name of {proxy} did not resolve"),
                None => "the AlienVault OTX host name did not resolve".into(),
            }),
            E::ConnectionFailed => transport(format!("could not connect to {}", self.peer())),
            E::ConnectProxyFailed(reason) => {
                // ureq says `proxy server responded 403/403` (the status
                // twice): the status once, with its reason.
                let status = reason
                    .rsplit_once("responded ")
                    .and_then(|(_, rest)| rest.split('/').next()?.parse::<u16>().ok());
                let why = status.map_or(reason, status_text);
                let proxy = self.proxy.as_deref().unwrap_or("the proxy");
                transport(format!(
                    "{proxy} refused to connect to AlienVault OTX ({why})"
                ))
            }
            E::Tls(why) => (RelayError::Ssl(why.to_owned()), Trouble::Tls),
            E::Rustls(why) => (RelayError::Ssl(why.to_string()), Trouble::Tls),
            E::Io(io) => {
                // What an I/O error carries tells what it is: a TLS
                // failure or unreadable JSON, by type, never by its text.
                let inner = io.get_ref();
                if let Some(tls) = inner.and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    let why = match tls {
                        rustls::Error::InvalidCertificate(why) => why.to_string(),
                        other => other.to_string(),
                    };
                    return (RelayError::Ssl(why), Trouble::Tls);
                }
                if let Some(json) = inner.and_then(|e| e.downcast_ref::<serde_json::Error>()) {
                    return (not_json(json), Trouble::Unusable);
                }
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        transport(format!("connection to {} refused", self.peer()))
                    }
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                        if session.remaining().is_zero() =>
                    {
                        (RelayError::Timeout, Trouble::Deadline)
                    }
                    _ => transport(format!("the exchange with AlienVault OTX failed ({io})")),
                }
            }
            other => transport(other.to_string()),
        }
    }
}

/// An OTX answer that is not JSON (of the expected shape): the one place
/// this message is written.
pub(super) fn not_json(why: impl std::fmt::Display) -> RelayError {
    RelayError::Oops(format!("the answer is not valid JSON ({why})"))
}

/// The SPEC's mapping of an OTX status that is not a success.
pub fn status_error(status: u16) -> RelayError {
    match status {
        403 => RelayError::OtxAuth,
        429 => RelayError::TooManyRequests,
        _ => RelayError::Oops(status_text(status)),
    }
}

/// What `otx-relay check` asks OTX (see `check.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `user/me` without the key: any answer proves TLS.
    Tls,
    /// `user/me` with the key.
    Key,
    /// An indicator OTX always knows (8.8.8.8), with the key.
    Indicator,
}

impl Probe {
    pub fn url(self, base: &str) -> String {
        match self {
            Probe::Tls | Probe::Key => format!("{base}/api/v1/user/me"),
            Probe::Indicator => format!("{base}/api/v1/indicators/IPv4/8.8.8.8/general"),
        }
    }
}

/// One GET of `check` through `agent`, with `key` as OTX takes it (none:
/// without), no retry.
pub fn probe(
    agent: &ureq::Agent,
    url: &str,
    key: Option<&str>,
    timeout: Duration,
) -> Result<Response<Body>, ureq::Error> {
    let mut request = agent.get(url);
    if let Some(key) = key {
        request = request.header("X-OTX-API-KEY", key);
    }
    request
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call()
}

/// The start-up warning for an `AVOTX_URL` with a path other than `/`
/// (SPEC §8): the relay appends OTX's own paths to it, so such a base is
/// most often a copy of an API URL that doubles `/api/v1`.
pub fn base_url_warning(base: &str) -> Option<String> {
    let authority_at = base.find("://").map_or(0, |i| i + 3);
    let path_at = authority_at + base[authority_at..].find('/')?;
    let (origin, path) = base.split_at(path_at);
    (!path.trim_end_matches('/').is_empty()).then(|| {
        format!(
            "AVOTX_URL has a path ({path}): the relay will call {base}/api/v1/indicators/...; did you mean {origin}?"
        )
    })
}

/// `403 Forbidden`: a status and its reason, if it has one.
fn status_text(status: u16) -> String {
    match StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// The kind of trouble an OTX status that is a failure is.
fn status_trouble(status: u16) -> Trouble {
    match status {
        403 => Trouble::Forbidden,
        429 => Trouble::Throttled,
        500..=599 => Trouble::ServerError,
        _ => Trouble::Unusable,
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

/// The `n`th of `kinds` shares of `total` entries: together exactly the
/// total, the first ones a larger by one where it does not divide.
fn cache_share(total: usize, kinds: usize, n: usize) -> usize {
    if n >= kinds {
        return 0;
    }
    total / kinds + usize::from(n < total % kinds)
}

/// Logs a pulse that was dropped (its lookup failed), at most a line a
/// minute.
pub fn warn_dropped_pulse(pulse_id: &str, error: &RelayError) {
    Trouble::PulseDropped.warn(format_args!("pulse {pulse_id}: {}", error.message()));
}

/// Logs a pulse that was dropped because its lookup was answered `status`
/// (400/404: no data for the relay, but a dropped pulse for the operator),
/// at most a line a minute.
pub fn warn_dropped_pulse_status(pulse_id: &str, status: u16) {
    Trouble::PulseDropped.warn(format_args!(
        "pulse {pulse_id}: its indicators answered {}",
        status_text(status)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_with_a_path_is_named() {
        assert_eq!(
            base_url_warning("https://otx.alienvault.com/api/v1").as_deref(),
            Some("AVOTX_URL has a path (/api/v1): the relay will call https://otx.alienvault.com/api/v1/api/v1/indicators/...; did you mean https://otx.alienvault.com?")
        );
        for fine in [
            "https://otx.alienvault.com",
            "http://127.0.0.1:8080",
            "http://[::1]:9",
        ] {
            assert_eq!(base_url_warning(fine), None, "{fine}");
        }
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
