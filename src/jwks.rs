//! The public keys of XDR's configuration tokens (SPEC §9): fetched from
//! `https://{jwks_host}/.well-known/jwks` for the hosts `JWKS_HOSTS`
//! allows (never any other), kept per host for `JWKS_TTL`, refetched at
//! most once a minute per host for an unknown `kid`, and kept through a
//! failed refetch while still valid.
//!
//! A token names its `jwks_host` before anything of it is checked, so
//! anyone can make the relay want a host's keys. Two rules keep forged
//! tokens from making the relay a connection amplifier (or from piling up
//! behind a host that does not answer):
//! - one fetch per host at a time: the requests that want it while it runs
//!   wait for it and then answer from what it left, success or failure;
//!   they never fetch again themselves;
//! - a failed fetch is remembered for [`FAILED_FOR`]: meanwhile requests
//!   are answered at once from the keys still valid, if any.
//!
//! The decisions are `Host`'s, pure and with the time as an input; the
//! fetch runs without the host's lock, so a request whose key is known is
//! never delayed by a fetch.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use crate::auth::{KeySource, RsaKey};
use crate::config::Config;
use crate::egress;
use crate::error::RelayError;
use crate::log;
use crate::metrics::Metrics;

/// The largest JWKS answer read.
pub const MAX_JWKS_BODY: u64 = 1024 * 1024;
/// The least time between two refetches of one host for an unknown `kid`.
pub const REFETCH_EVERY: Duration = Duration::from_secs(60);
/// How long a failed fetch is remembered: no new fetch of that host before.
pub const FAILED_FOR: Duration = Duration::from_secs(10);
/// What a waiter allows a fetch beyond `AVOTX_TIMEOUT` (which bounds the
/// fetch, body included) before it answers from what is known: only a
/// safety net, should the fetch overrun its own timeout.
const WAIT_MARGIN: Duration = Duration::from_secs(1);

/// What is known of one host.
#[derive(Debug, Default)]
struct Host {
    keys: Vec<RsaKey>,
    /// When `keys` were fetched; `None` before a fetch succeeded.
    fetched: Option<Instant>,
    /// The last refetch for an unknown `kid`.
    refetched: Option<Instant>,
    /// When the last fetch failed, if it did (a success clears it).
    failed: Option<Instant>,
    /// The number of the fetch running now, if one is: waiters wait while
    /// it is theirs (a later fetch is not theirs to wait for).
    in_flight: Option<u64>,
    /// Fetches started so far, to number them.
    started: u64,
}

/// What a request does next, as [`Host::step`] decides.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Answer from what is known, now.
    Answer,
    /// Wait for the fetch of this number to land, then answer from what
    /// it left.
    Wait(u64),
    /// Fetch the keys (this request leads; the others wait for it), then
    /// answer from what the fetch left.
    Fetch,
}

impl Host {
    fn valid(&self, now: Instant, ttl: Duration) -> bool {
        self.fetched.is_some_and(|at| now < at + ttl)
    }

    /// Whether the key `kid` can be answered from what is known, else
    /// whether to wait for the fetch in flight, or to start one (which is
    /// then recorded as in flight).
    fn step(&mut self, kid: Option<&str>, now: Instant, ttl: Duration) -> Step {
        let valid = self.valid(now, ttl);
        // A token without `kid` is refused whatever the keys: no refetch.
        let unknown = kid.is_some_and(|kid| !self.keys.iter().any(|k| k.kid == kid));
        if valid && !unknown {
            return Step::Answer;
        }
        if let Some(fetch) = self.in_flight {
            // It may bring what is missing (a new kid during a rotation).
            return Step::Wait(fetch);
        }
        if self.failed.is_some_and(|at| now < at + FAILED_FOR) {
            return Step::Answer;
        }
        if valid {
            // Only an unknown kid is missing: anyone can send one, so at
            // most one refetch a minute.
            if self.refetched.is_some_and(|at| now < at + REFETCH_EVERY) {
                return Step::Answer;
            }
            self.refetched = Some(now);
        }
        self.started += 1;
        self.in_flight = Some(self.started);
        Step::Fetch
    }

    /// The fetch in flight has landed at `now` with `keys` (`None`: it
    /// failed, and the keys still valid are kept).
    fn land(&mut self, keys: Option<Vec<RsaKey>>, now: Instant) {
        self.in_flight = None;
        match keys {
            Some(keys) => {
                self.keys = keys;
                self.fetched = Some(now);
                self.failed = None;
            }
            None => self.failed = Some(now),
        }
    }

    /// The key `kid` from the keys still valid; without any, the host
    /// counts as wrong.
    fn answer(&self, kid: Option<&str>, now: Instant, ttl: Duration) -> Result<RsaKey, RelayError> {
        if !self.valid(now, ttl) {
            return Err(RelayError::JwksHostWrong);
        }
        let kid = kid.ok_or(RelayError::KidNotFound)?;
        let key = self.keys.iter().find(|k| k.kid == kid);
        key.cloned().ok_or(RelayError::KidNotFound)
    }
}

/// One host's state, and the signal that its fetch has landed.
#[derive(Default)]
struct Entry {
    host: Mutex<Host>,
    landed: Condvar,
}

/// The fetch a request leads. Dropping it lands the fetch and wakes the
/// waiters, whatever ends the request (a panic included): a fetch left in
/// flight would make every later request of that host wait in vain.
struct Lead<'a> {
    entry: &'a Entry,
    /// The keys fetched; `None` until the fetch succeeds.
    keys: Option<Vec<RsaKey>>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        lock(&self.entry.host).land(self.keys.take(), Instant::now());
        self.entry.landed.notify_all();
    }
}

/// The key store: hosts and their keys.
pub struct Jwks {
    agent: ureq::Agent,
    allowed: Vec<String>,
    ttl: Duration,
    timeout: Duration,
    /// Only hosts of `allowed` ever get an entry.
    hosts: Mutex<HashMap<String, Arc<Entry>>>,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KeySource for Jwks {
    fn key(&self, jwks_host: &str, kid: Option<&str>) -> Result<RsaKey, RelayError> {
        Jwks::key(self, jwks_host, kid)
    }
}

impl Jwks {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Jwks, String> {
        Ok(Jwks {
            agent: egress::agent(config, 4, &metrics)?,
            allowed: config.jwks_hosts.clone(),
            ttl: config.jwks_ttl,
            timeout: config.otx_timeout,
            hosts: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// The key `kid` of `jwks_host`, fetching (or refetching) the host's
    /// keys as the rules above allow.
    pub fn key(&self, jwks_host: &str, kid: Option<&str>) -> Result<RsaKey, RelayError> {
        let name = jwks_host.to_ascii_lowercase();
        if !self.allowed.contains(&name) {
            return Err(RelayError::JwksHostWrong);
        }
        let entry = lock(&self.hosts).entry(name.clone()).or_default().clone();
        let mut host = lock(&entry.host);
        let now = Instant::now();
        match host.step(kid, now, self.ttl) {
            Step::Answer => return host.answer(kid, now, self.ttl),
            Step::Wait(fetch) => {
                let bound = self.timeout + WAIT_MARGIN;
                let theirs = |h: &mut Host| h.in_flight == Some(fetch);
                let waited = entry.landed.wait_timeout_while(host, bound, theirs);
                let (host, _) = waited.unwrap_or_else(PoisonError::into_inner);
                return host.answer(kid, Instant::now(), self.ttl);
            }
            Step::Fetch => drop(host),
        }
        // The host's lock is not held during the fetch (up to
        // `AVOTX_TIMEOUT`): requests for known keys go on meanwhile.
        let mut lead = Lead {
            entry: &entry,
            keys: None,
        };
        let failed = self.fetch(&name).map(|keys| lead.keys = Some(keys)).err();
        drop(lead);
        let now = Instant::now();
        let host = lock(&entry.host);
        let (answer, kept) = (host.answer(kid, now, self.ttl), host.valid(now, self.ttl));
        drop(host);
        if let Some(why) = failed {
            let kept = if kept {
                "; the keys still valid are kept"
            } else {
                ""
            };
            let secs = FAILED_FOR.as_secs();
            log::warn(format_args!(
                "JWKS of {name}: {why} (no new fetch for {secs} s{kept})"
            ));
        }
        answer
    }

    /// `GET https://{host}/.well-known/jwks`: its usable keys, or why not
    /// (a short reason for the log; an answer without a usable key fails).
    fn fetch(&self, host: &str) -> Result<Vec<RsaKey>, String> {
        let url = format!("https://{host}/.well-known/jwks");
        let started = Instant::now();
        let result = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(self.timeout))
            .build()
            .call();
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        self.metrics.otx_call("jwks", status, started.elapsed());
        let response = result.map_err(|e| format!("the fetch failed ({e})"))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!("answered {status}"));
        }
        let mut body = Vec::new();
        response
            .into_body()
            .into_with_config()
            .limit(MAX_JWKS_BODY)
            .reader()
            .read_to_end(&mut body)
            .map_err(|e| format!("the answer could not be read ({e})"))?;
        let keys = parse(&body)?;
        if keys.is_empty() {
            return Err("no usable RSA key in the answer".to_owned());
        }
        Ok(keys)
    }
}

/// The usable keys of a JWKS document: `kty` `RSA`, a `kid`, and a modulus
/// of 2048 to 8192 bits; others are ignored.
pub fn parse(body: &[u8]) -> Result<Vec<RsaKey>, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Jwk {
        kty: String,
        kid: String,
        n: String,
        e: String,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not a JWKS ({e})"))?;
    let decode = |text: &str| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok();
    Ok(document
        .keys
        .into_iter()
        .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
        .filter(|jwk| jwk.kty == "RSA")
        .filter_map(|jwk| {
            let n = decode(&jwk.n)?;
            let e = decode(&jwk.e)?;
            let n: Vec<u8> = n.into_iter().skip_while(|&b| b == 0).collect();
            let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
            (2048..=8192)
                .contains(&bits)
                .then_some(RsaKey { kid: jwk.kid, n, e })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    const TTL: Duration = Duration::from_secs(3600);

    fn key(kid: &str) -> RsaKey {
        RsaKey {
            kid: kid.to_owned(),
            n: vec![1; 256],
            e: vec![1, 0, 1],
        }
    }

    /// A host whose fetch of `kids` landed at `at`.
    fn fetched(kids: &[&str], at: Instant) -> Host {
        let mut host = Host::default();
        assert_eq!(host.step(None, at, TTL), Step::Fetch);
        host.land(Some(kids.iter().map(|k| key(k)).collect()), at);
        host
    }

    #[test]
    fn one_fetch_at_a_time_and_its_waiters_never_fetch_again() {
        let t0 = Instant::now();
        let mut host = Host::default();
        assert_eq!(host.step(Some("a"), t0, TTL), Step::Fetch);
        // Everyone else waits for that fetch, whatever their kid.
        for kid in [Some("a"), Some("b"), None] {
            assert_eq!(host.step(kid, t0, TTL), Step::Wait(1));
        }
        host.land(Some(vec![key("a")]), t0);
        // The waiters then answer from what it left: no second fetch.
        assert_eq!(host.answer(Some("a"), t0, TTL), Ok(key("a")));
        assert_eq!(
            host.answer(Some("b"), t0, TTL),
            Err(RelayError::KidNotFound)
        );
        assert_eq!(host.answer(None, t0, TTL), Err(RelayError::KidNotFound));
        assert_eq!(host.step(Some("a"), t0, TTL), Step::Answer);
    }

    #[test]
    fn a_failed_fetch_is_remembered_for_ten_seconds() {
        let t0 = Instant::now();
        let mut host = Host::default();
        assert_eq!(host.step(Some("a"), t0, TTL), Step::Fetch);
        assert_eq!(host.step(Some("a"), t0, TTL), Step::Wait(1));
        host.land(None, t0);
        assert_eq!(
            host.answer(Some("a"), t0, TTL),
            Err(RelayError::JwksHostWrong)
        );
        let soon = t0 + FAILED_FOR - Duration::from_millis(1);
        for at in [t0, soon] {
            assert_eq!(host.step(Some("a"), at, TTL), Step::Answer);
            assert_eq!(
                host.answer(Some("a"), at, TTL),
                Err(RelayError::JwksHostWrong)
            );
        }
        assert_eq!(host.step(Some("a"), t0 + FAILED_FOR, TTL), Step::Fetch);
        // A waiter of the first fetch does not wait for the second.
        assert_eq!(host.in_flight, Some(2));
    }

    #[test]
    fn a_failed_refetch_keeps_the_keys_still_valid() {
        let t0 = Instant::now();
        let mut host = fetched(&["a"], t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(host.step(Some("b"), t1, TTL), Step::Fetch);
        // A known kid never waits for a fetch.
        assert_eq!(host.step(Some("a"), t1, TTL), Step::Answer);
        assert_eq!(host.step(Some("b"), t1, TTL), Step::Wait(2));
        host.land(None, t1);
        assert_eq!(host.answer(Some("a"), t1, TTL), Ok(key("a")));
        assert_eq!(
            host.answer(Some("b"), t1, TTL),
            Err(RelayError::KidNotFound)
        );
        // Once they expire, a fetch, unless one failed less than 10 s ago.
        let expired = t0 + TTL;
        let mut failed_late = fetched(&["a"], t0);
        failed_late.failed = Some(expired - Duration::from_secs(1));
        assert_eq!(failed_late.step(Some("a"), expired, TTL), Step::Answer);
        assert_eq!(
            failed_late.answer(Some("a"), expired, TTL),
            Err(RelayError::JwksHostWrong)
        );
        assert_eq!(host.step(Some("a"), expired, TTL), Step::Fetch);
    }

    #[test]
    fn an_unknown_kid_refetches_at_most_once_a_minute() {
        let t0 = Instant::now();
        let mut host = fetched(&["a"], t0);
        assert_eq!(host.step(Some("new"), t0, TTL), Step::Fetch);
        host.land(Some(vec![key("a"), key("new")]), t0);
        assert_eq!(host.answer(Some("new"), t0, TTL), Ok(key("new")));
        let within = t0 + REFETCH_EVERY - Duration::from_millis(1);
        assert_eq!(host.step(Some("other"), within, TTL), Step::Answer);
        assert_eq!(
            host.step(Some("other"), t0 + REFETCH_EVERY, TTL),
            Step::Fetch
        );
        // No kid: nothing to refetch for.
        let mut host = fetched(&["a"], t0);
        assert_eq!(host.step(None, t0, TTL), Step::Answer);
    }

    #[test]
    fn only_rsa_keys_of_2048_to_8192_bits_are_used() {
        let modulus = |bits: usize| {
            let mut n = vec![0xffu8; bits / 8];
            n.insert(0, 0); // a leading zero byte does not count
            b64(&n)
        };
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": modulus(2048), "e": "AQAB"},
            {"kty": "RSA", "kid": "small", "n": modulus(1024), "e": "AQAB"},
            {"kty": "RSA", "kid": "big", "n": modulus(8200), "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "n": modulus(2048), "e": "AQAB"},
            {"kty": "RSA", "kid": "bad", "n": "!!", "e": "AQAB"},
            "junk",
            {"kty": "RSA", "kid": "max", "n": modulus(8192), "e": "AQAB"}
        ]});
        let keys = parse(doc.to_string().as_bytes()).expect("a JWKS");
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["a", "max"]);
        assert_eq!(keys[0].n.len(), 256);
        assert_eq!(keys[0].e, [1, 0, 1]);
        assert!(parse(b"[]").is_err());
        assert!(parse(b"{}").is_err());
    }
}
