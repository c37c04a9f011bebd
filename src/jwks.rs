//! The public keys of XDR's configuration tokens (SPEC §9): fetched from
//! `https://{jwks_host}/.well-known/jwks` for the hosts `JWKS_HOSTS`
//! allows (never any other), kept per host for `JWKS_TTL`, refetched at
//! most once a minute per host for an unknown `kid`, one fetch per host at
//! a time, and kept through a failed refetch while still valid.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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

/// What is known of one host.
#[derive(Default)]
struct Host {
    keys: Vec<RsaKey>,
    /// When `keys` were fetched; `None` before a fetch succeeded.
    fetched: Option<Instant>,
    /// The last refetch for an unknown `kid`.
    refetched: Option<Instant>,
}

/// The key store: hosts and their keys.
pub struct Jwks {
    agent: ureq::Agent,
    allowed: Vec<String>,
    ttl: Duration,
    timeout: Duration,
    /// One lock per host: held while that host is fetched, so concurrent
    /// requests share one fetch.
    hosts: Mutex<HashMap<String, Arc<Mutex<Host>>>>,
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
            agent: egress::agent(config, 4)?,
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
        let host = jwks_host.to_ascii_lowercase();
        if !self.allowed.contains(&host) {
            return Err(RelayError::JwksHostWrong);
        }
        let entry = lock(&self.hosts).entry(host.clone()).or_default().clone();
        let mut known = lock(&entry);
        let now = Instant::now();
        let valid = known.fetched.is_some_and(|at| now < at + self.ttl);
        if !valid {
            // Expired or never fetched: without keys nothing can be checked.
            match self.fetch(&host) {
                Ok(keys) => {
                    *known = Host {
                        keys,
                        fetched: Some(now),
                        refetched: known.refetched,
                    }
                }
                Err(why) => {
                    log::warn(format_args!("JWKS of {host}: {why}"));
                    return Err(RelayError::JwksHostWrong);
                }
            }
        } else if kid.is_some_and(|kid| !known.keys.iter().any(|k| k.kid == kid)) {
            let recently = known.refetched.is_some_and(|at| now < at + REFETCH_EVERY);
            if recently {
                return Err(RelayError::KidNotFound);
            }
            known.refetched = Some(now);
            match self.fetch(&host) {
                Ok(keys) => {
                    known.keys = keys;
                    known.fetched = Some(now);
                }
                // The keys still valid are kept.
                Err(why) => log::warn(format_args!("JWKS of {host}: {why} (keys kept)")),
            }
        }
        let kid = kid.ok_or(RelayError::KidNotFound)?;
        known
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .cloned()
            .ok_or(RelayError::KidNotFound)
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
