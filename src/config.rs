//! Every environment variable the relay reads is read and validated here,
//! once, at start-up; the rest of the program gets a [`Config`].
//!
//! A bad value is a [`ConfigError`] naming the variable, which `main` prints
//! on one line before exiting non-zero. `SECRET_KEY` and any value that
//! might be a secret never appear in such a message.

use std::fmt;
use std::time::Duration;

/// The default OTX base URL.
pub const DEFAULT_OTX_URL: &str = "https://otx.alienvault.com";
/// The default `CTR_ENTITIES_LIMIT`.
pub const DEFAULT_ENTITIES_LIMIT: usize = 100;
/// The largest `CTR_ENTITIES_LIMIT` honoured.
pub const MAX_ENTITIES_LIMIT: usize = 1000;

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    /// HS256 secret of the Bearer JWT; `None` when unset or empty.
    pub secret_key: Option<Vec<u8>>,
    /// OTX base URL, without a trailing `/`.
    pub otx_url: String,
    pub entities_limit: usize,
    pub host: String,
    pub port: u16,
    pub otx_timeout: Duration,
    pub deadline: Duration,
    pub threads: usize,
    pub otx_concurrency: usize,
    /// Cache lifetime; zero turns the cache off.
    pub cache_ttl: Duration,
    pub cache_max_entries: usize,
    pub otx_max_body: u64,
    pub malicious_pulses: usize,
    pub verdict_valid_days: u64,
    /// A client silent this long is dropped; a request body must arrive
    /// whole within it (`RELAY_CLIENT_TIMEOUT`, not in the SPEC's table).
    pub client_timeout: Duration,
    /// PEM bundle replacing the built-in roots (already read and checked).
    pub ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for Config {
    // Hand-written so that the secret can never be printed by a `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<set>"))
            .field("otx_url", &self.otx_url)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A variable with a value the relay cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a config from any lookup (the tests pass a map). An empty
    /// value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let ca_pem = match var("SSL_CERT_FILE") {
            Some(path) => Some(read_ca_file(&path)?),
            None => None,
        };
        Ok(Config {
            secret_key: var("SECRET_KEY").map(String::into_bytes),
            otx_url: otx_url(var("AVOTX_URL"))?,
            entities_limit: entities_limit(var("CTR_ENTITIES_LIMIT").as_deref()),
            host: var("HOST").unwrap_or_else(|| "0.0.0.0".to_owned()),
            port: port(var("PORT"))?,
            otx_timeout: Duration::from_secs(positive("AVOTX_TIMEOUT", var("AVOTX_TIMEOUT"), 10)?),
            deadline: Duration::from_secs(positive("RELAY_DEADLINE", var("RELAY_DEADLINE"), 25)?),
            threads: positive("RELAY_THREADS", var("RELAY_THREADS"), 64)? as usize,
            otx_concurrency: positive("AVOTX_CONCURRENCY", var("AVOTX_CONCURRENCY"), 32)? as usize,
            cache_ttl: Duration::from_secs(non_negative("CACHE_TTL", var("CACHE_TTL"), 300)?),
            cache_max_entries: positive("CACHE_MAX_ENTRIES", var("CACHE_MAX_ENTRIES"), 10_000)?
                as usize,
            otx_max_body: positive("AVOTX_MAX_BODY", var("AVOTX_MAX_BODY"), 64 * 1024 * 1024)?,
            malicious_pulses: positive("OTX_MALICIOUS_PULSES", var("OTX_MALICIOUS_PULSES"), 2)?
                as usize,
            verdict_valid_days: positive("VERDICT_VALID_DAYS", var("VERDICT_VALID_DAYS"), 7)?,
            client_timeout: Duration::from_secs(positive(
                "RELAY_CLIENT_TIMEOUT",
                var("RELAY_CLIENT_TIMEOUT"),
                10,
            )?),
            ca_pem,
        })
    }
}

/// `CTR_ENTITIES_LIMIT` rules (compatible): not a positive integer → 100,
/// above 1000 → 1000. Shared by the env variable and the JWT claim.
pub fn entities_limit(raw: Option<&str>) -> usize {
    match raw.map(str::trim).and_then(|v| v.parse::<i64>().ok()) {
        Some(n) if n >= 1 => (n as usize).min(MAX_ENTITIES_LIMIT),
        _ => DEFAULT_ENTITIES_LIMIT,
    }
}

fn otx_url(raw: Option<String>) -> Result<String, ConfigError> {
    let Some(url) = raw else {
        return Ok(DEFAULT_OTX_URL.to_owned());
    };
    let bad = |reason: &str| ConfigError {
        variable: "AVOTX_URL",
        reason: reason.to_owned(),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must be an http(s):// URL with a host"));
    }
    if url.contains(['?', '#']) {
        return Err(bad("must not carry a query or fragment"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn port(raw: Option<String>) -> Result<u16, ConfigError> {
    match raw {
        None => Ok(9090),
        Some(v) => match v.trim().parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError {
                variable: "PORT",
                reason: "must be a port number from 1 to 65535".to_owned(),
            }),
        },
    }
}

fn positive(variable: &'static str, raw: Option<String>, default: u64) -> Result<u64, ConfigError> {
    match raw {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError {
                variable,
                reason: "must be a positive integer".to_owned(),
            }),
        },
    }
}

fn non_negative(
    variable: &'static str,
    raw: Option<String>,
    default: u64,
) -> Result<u64, ConfigError> {
    match raw {
        None => Ok(default),
        Some(v) => v.trim().parse::<u64>().map_err(|_| ConfigError {
            variable,
            reason: "must be a whole number of seconds (0 turns the cache off)".to_owned(),
        }),
    }
}

fn read_ca_file(path: &str) -> Result<Vec<u8>, ConfigError> {
    let bad = |reason: String| ConfigError {
        variable: "SSL_CERT_FILE",
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read {path}: {e}")))?;
    let has_cert = ureq::tls::parse_pem(&pem)
        .any(|item| matches!(item, Ok(ureq::tls::PemItem::Certificate(_))));
    if !has_cert {
        return Err(bad(format!("{path} holds no PEM certificate")));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).expect("defaults are valid");
        assert_eq!(c.otx_url, DEFAULT_OTX_URL);
        assert_eq!(c.port, 9090);
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.entities_limit, 100);
        assert_eq!(c.otx_timeout, Duration::from_secs(10));
        assert_eq!(c.deadline, Duration::from_secs(25));
        assert_eq!((c.threads, c.otx_concurrency), (64, 32));
        assert_eq!(
            (c.cache_ttl, c.cache_max_entries),
            (Duration::from_secs(300), 10_000)
        );
        assert_eq!(c.otx_max_body, 67_108_864);
        assert_eq!((c.malicious_pulses, c.verdict_valid_days), (2, 7));
        assert_eq!(c.client_timeout, Duration::from_secs(10));
        assert!(c.secret_key.is_none());
    }

    #[test]
    fn empty_counts_as_unset() {
        let c = config(&[("PORT", ""), ("SECRET_KEY", ""), ("AVOTX_URL", "")]).unwrap();
        assert_eq!((c.port, c.secret_key.is_none()), (9090, true));
        assert_eq!(c.otx_url, DEFAULT_OTX_URL);
    }

    #[test]
    fn trailing_slash_is_ignored() {
        let c = config(&[("AVOTX_URL", "http://127.0.0.1:8080/")]).unwrap();
        assert_eq!(c.otx_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("PORT", "70000"),
            ("PORT", "http"),
            ("PORT", "0"),
            ("AVOTX_URL", "ftp://x"),
            ("AVOTX_URL", "otx.alienvault.com"),
            ("AVOTX_URL", "https://"),
            ("AVOTX_TIMEOUT", "0"),
            ("AVOTX_TIMEOUT", "-1"),
            ("RELAY_DEADLINE", "1.5"),
            ("RELAY_THREADS", "many"),
            ("AVOTX_CONCURRENCY", "0"),
            ("CACHE_TTL", "-5"),
            ("CACHE_MAX_ENTRIES", "0"),
            ("AVOTX_MAX_BODY", "x"),
            ("OTX_MALICIOUS_PULSES", "0"),
            ("VERDICT_VALID_DAYS", "0"),
            ("RELAY_CLIENT_TIMEOUT", "0"),
            ("SSL_CERT_FILE", "/nonexistent/ca.pem"),
            ("SSL_CERT_FILE", "/etc/hostname"),
        ] {
            let err = config(&[(var, value)]).expect_err(var);
            assert_eq!(err.variable, var, "{var}={value}");
            assert!(err.to_string().starts_with(&format!("invalid {var}: ")));
        }
    }

    #[test]
    fn cache_ttl_zero_is_allowed() {
        assert_eq!(
            config(&[("CACHE_TTL", "0")]).unwrap().cache_ttl,
            Duration::ZERO
        );
    }

    #[test]
    fn entities_limit_rules() {
        for (raw, want) in [
            (None, 100),
            (Some("0"), 100),
            (Some("-3"), 100),
            (Some("junk"), 100),
            (Some("1.5"), 100),
            (Some("1"), 1),
            (Some("250"), 250),
            (Some("1000"), 1000),
            (Some("5000"), 1000),
        ] {
            assert_eq!(entities_limit(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = config(&[("SECRET_KEY", "hunter2-hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
