//! Every environment variable the relay reads is read and validated here,
//! once, at start-up; the rest of the program gets a [`Config`].
//!
//! A bad value is a [`ConfigError`] naming the variable, which `main` prints
//! on one line before exiting non-zero. `SECRET_KEY` and any value that
//! might be a secret never appear in such a message.

use std::fmt;
use std::io::Read;
use std::time::Duration;

/// The default OTX base URL.
pub const DEFAULT_OTX_URL: &str = "https://otx.alienvault.com";
/// The default `CTR_ENTITIES_LIMIT`.
pub const DEFAULT_ENTITIES_LIMIT: usize = 100;
/// The largest `CTR_ENTITIES_LIMIT` honoured.
pub const MAX_ENTITIES_LIMIT: usize = 1000;

// Upper bounds of the numeric variables: far above any sensible setting, and
// low enough that nothing derived from them (`Instant + deadline`,
// `timeout * retries`, `concurrency * 2`, days in seconds…) can overflow, and
// that no absurd number of threads is started.
/// `AVOTX_TIMEOUT`, `RELAY_DEADLINE`, `RELAY_CLIENT_TIMEOUT`: one day.
pub const MAX_SECONDS: u64 = 86_400;
/// `CACHE_TTL`: one year.
pub const MAX_CACHE_TTL: u64 = 31_536_000;
/// `RELAY_THREADS`.
pub const MAX_THREADS: u64 = 4096;
/// `RELAY_MAX_CONNECTIONS`: a thread each, so far below the kernel's
/// default limit of threads.
pub const MAX_CONNECTIONS: u64 = 65_536;
/// `AVOTX_CONCURRENCY`: its pool threads and their idle keep-alive
/// connections are set up before the port listens; 4096 of them took 14 to
/// 74 s of both cores here (1024: 0.3 s), and no OTX tenant is served
/// faster by more calls in flight than this.
pub const MAX_CONCURRENCY: u64 = 1024;
/// `CACHE_MAX_ENTRIES`.
pub const MAX_CACHE_ENTRIES: u64 = 100_000_000;
/// `AVOTX_MAX_BODY`: 4 GiB.
pub const MAX_OTX_BODY: u64 = 4_294_967_296;
/// `OTX_MALICIOUS_PULSES`.
pub const MAX_MALICIOUS_PULSES: u64 = 1_000_000;
/// `TILE_MAX_PULSES`.
pub const MAX_TILE_PULSES: u64 = 1_000_000;
/// The default `PASSIVE_DNS_LIMIT`.
pub const DEFAULT_PASSIVE_DNS_LIMIT: u64 = 50;
/// `PASSIVE_DNS_LIMIT` (SPEC §15: 1–1000).
pub const MAX_PASSIVE_DNS_LIMIT: u64 = 1000;
/// `SSL_CERT_FILE`: 4 MiB, ten times the Mozilla bundle.
pub const MAX_CA_FILE: u64 = 4 * 1024 * 1024;
/// `VERDICT_VALID_DAYS`: ten years.
pub const MAX_VERDICT_VALID_DAYS: u64 = 3650;

/// One environment variable, described once: [`Config::from_lookup`] reads
/// the numeric ones through it (default and bounds), `otx-relay --help`
/// prints [`help`], and a test holds the README's configuration table to
/// [`markdown`], so the three cannot drift.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    /// What unset (or empty) means, as shown: `10`, `on`, `unset`.
    pub default: &'static str,
    /// A count: the least and the largest value accepted (out of them,
    /// start-up stops). `None`: read by its own rules, which `doc` states.
    pub range: Option<(u64, u64)>,
    /// One line: what it sets.
    pub doc: &'static str,
}

const fn var(name: &'static str, default: &'static str, doc: &'static str) -> Var {
    Var {
        name,
        default,
        range: None,
        doc,
    }
}

const fn count(name: &'static str, default: &'static str, max: u64, doc: &'static str) -> Var {
    Var {
        name,
        default,
        range: Some((1, max)),
        doc,
    }
}

pub const SECRET_KEY: Var = var(
    "SECRET_KEY",
    "unset",
    "HS256 secret of the Bearer JWT (32 bytes or more). Unset: starts, warns, refuses every HS256 token.",
);
pub const AVOTX_URL: Var = var(
    "AVOTX_URL",
    DEFAULT_OTX_URL,
    "OTX base URL (`http(s)://`, no path); also the base of every link emitted.",
);
pub const CTR_ENTITIES_LIMIT: Var = var(
    "CTR_ENTITIES_LIMIT",
    "100",
    "Max sightings per observable (bad or < 1: 100; > 1000: 1000). The JWT claim of the same name overrides it.",
);
pub const HOST: Var = var("HOST", "0.0.0.0", "Listening address.");
pub const PORT: Var = Var {
    range: Some((1, 65_535)),
    ..var("PORT", "9090", "Listening port.")
};
pub const AVOTX_TIMEOUT: Var = count(
    "AVOTX_TIMEOUT",
    "10",
    MAX_SECONDS,
    "Seconds for one OTX request (connect + answer).",
);
pub const RELAY_DEADLINE: Var = count(
    "RELAY_DEADLINE",
    "25",
    MAX_SECONDS,
    "Seconds for one `/observe`, `/deliberate` or tile-data call; then it answers with what it has plus a `timeout` error.",
);
pub const RELAY_THREADS: Var = count(
    "RELAY_THREADS",
    "64",
    MAX_THREADS,
    "Worker threads for the requests that wait on OTX (those that need only the CPU are answered on their connection's thread).",
);
pub const AVOTX_CONCURRENCY: Var = count(
    "AVOTX_CONCURRENCY",
    "32",
    MAX_CONCURRENCY,
    "OTX requests in flight at once, process-wide, shared between tenants in turn; at most 1024.",
);
pub const CACHE_TTL: Var = Var {
    range: Some((0, MAX_CACHE_TTL)),
    ..var(
        "CACHE_TTL",
        "300",
        "Seconds OTX answers are cached, per tenant; `0` turns the cache off.",
    )
};
pub const CACHE_MAX_ENTRIES: Var = count(
    "CACHE_MAX_ENTRIES",
    "10000",
    MAX_CACHE_ENTRIES,
    "Entries of the in-process cache in all (shared by indicators' answers, pulses' records and passive DNS).",
);
pub const AVOTX_MAX_BODY: Var = count(
    "AVOTX_MAX_BODY",
    "67108864",
    MAX_OTX_BODY,
    "Largest OTX answer read, in bytes.",
);
pub const OTX_MALICIOUS_PULSES: Var = count(
    "OTX_MALICIOUS_PULSES",
    "2",
    MAX_MALICIOUS_PULSES,
    "Pulses that make a verdict Malicious.",
);
pub const VERDICT_VALID_DAYS: Var = count(
    "VERDICT_VALID_DAYS",
    "7",
    MAX_VERDICT_VALID_DAYS,
    "Days a verdict is valid.",
);
pub const RELAY_CLIENT_TIMEOUT: Var = count(
    "RELAY_CLIENT_TIMEOUT",
    "10",
    MAX_SECONDS,
    "Seconds a client has for its whole request head, then again for its whole body, and for taking each answer (plus 1 s per 64 KiB of it); an idle keep-alive connection closes after it.",
);
pub const RELAY_MAX_CONNECTIONS: Var = count(
    "RELAY_MAX_CONNECTIONS",
    "1024",
    MAX_CONNECTIONS,
    "Client connections open at once (each costs a thread); beyond, a new one is closed at once.",
);
pub const SSL_CERT_FILE: Var = var(
    "SSL_CERT_FILE",
    "unset",
    "PEM bundle that replaces the built-in Mozilla roots (TLS-inspecting proxies).",
);
pub const HTTPS_PROXY: Var = var(
    "HTTPS_PROXY",
    "unset",
    "Egress proxy for OTX and JWKS calls (also `ALL_PROXY`, `HTTP_PROXY`, lower case too; the first set in that order). Only `http://` CONNECT proxies.",
);
pub const NO_PROXY: Var = var(
    "NO_PROXY",
    "unset",
    "Hosts reached without the proxy: names (and their subdomains), IPs, CIDR ranges, each with an optional `:port`; `*` for all.",
);
pub const RELAY_AUDIENCE: Var = var(
    "RELAY_AUDIENCE",
    "unset",
    "Comma-separated public base URLs of this relay. Set: XDR's RS256 configuration tokens are accepted beside HS256 ones.",
);
pub const JWKS_HOSTS: Var = var(
    "JWKS_HOSTS",
    "the three Cisco visibility hosts",
    "Comma-separated `host[:port]` a token's `jwks_host` may name; no other host is ever contacted.",
);
pub const JWKS_TTL: Var = count(
    "JWKS_TTL",
    "3600",
    MAX_SECONDS,
    "Seconds fetched JWKS keys are trusted.",
);
pub const TILE_CACHE_TTL: Var = count(
    "TILE_CACHE_TTL",
    "600",
    MAX_SECONDS,
    "Seconds one walk of a tenant's subscribed pulses serves its tiles.",
);
pub const TILE_MAX_PULSES: Var = count(
    "TILE_MAX_PULSES",
    "1000",
    MAX_TILE_PULSES,
    "The most subscribed pulses one walk reads.",
);
pub const METRICS: Var = var("METRICS", "on", "`off` removes `GET /metrics`.");
pub const REDIS_URL: Var = var(
    "REDIS_URL",
    "unset",
    "`redis://` or `rediss://` URL of a cache shared by a fleet of relays. Unset: the in-process cache alone.",
);
pub const PASSIVE_DNS: Var = var(
    "PASSIVE_DNS",
    "on",
    "`off`: `/observe` asks no passive DNS of IPs, domains and hostnames.",
);
pub const PASSIVE_DNS_LIMIT: Var = count(
    "PASSIVE_DNS_LIMIT",
    "50",
    MAX_PASSIVE_DNS_LIMIT,
    "The most relations one observable's passive DNS sighting carries.",
);
pub const OTX_API_KEY: Var = var(
    "OTX_API_KEY",
    "unset",
    "The OTX key `otx-relay check` uses when `--key` is not given (the server never reads it).",
);

/// Every variable, in the order `--help` and the README show them.
pub const VARS: [Var; 29] = [
    SECRET_KEY,
    AVOTX_URL,
    CTR_ENTITIES_LIMIT,
    HOST,
    PORT,
    AVOTX_TIMEOUT,
    RELAY_DEADLINE,
    RELAY_THREADS,
    AVOTX_CONCURRENCY,
    CACHE_TTL,
    CACHE_MAX_ENTRIES,
    AVOTX_MAX_BODY,
    OTX_MALICIOUS_PULSES,
    VERDICT_VALID_DAYS,
    RELAY_CLIENT_TIMEOUT,
    RELAY_MAX_CONNECTIONS,
    SSL_CERT_FILE,
    HTTPS_PROXY,
    NO_PROXY,
    RELAY_AUDIENCE,
    JWKS_HOSTS,
    JWKS_TTL,
    TILE_CACHE_TTL,
    TILE_MAX_PULSES,
    METRICS,
    REDIS_URL,
    PASSIVE_DNS,
    PASSIVE_DNS_LIMIT,
    OTX_API_KEY,
];

/// `--help`'s list of variables: one line each, the default in brackets.
pub fn help() -> String {
    VARS.iter()
        .map(|v| format!("    {} [{}]\n        {}\n", v.name, v.default, v.doc))
        .collect()
}

/// The README's configuration table.
pub fn markdown() -> String {
    let shown = |d: &str| match d.contains(' ') || d == "unset" {
        true => d.to_owned(),
        false => format!("`{d}`"),
    };
    let rows: String = VARS
        .iter()
        .map(|v| format!("| `{}` | {} | {} |\n", v.name, shown(v.default), v.doc))
        .collect();
    format!("| variable | default | meaning |\n|---|---|---|\n{rows}")
}

/// A count within `var`'s range, its default when unset.
fn read_count(var: &Var, raw: Option<String>) -> Result<u64, ConfigError> {
    let (min, max) = var.range.unwrap_or((1, u64::MAX));
    // Each default parses and lies in its range (`every_count_default_is_in_its_range`).
    let default = var.default.parse().unwrap_or(min);
    number(var.name, raw, default, min..=max, || match min {
        0 => format!(
            "must be a whole number of seconds no larger than {max} (0 turns the cache off)"
        ),
        _ if var.name == PORT.name => "must be a port number from 1 to 65535".to_owned(),
        _ => format!("must be a positive integer no larger than {max}"),
    })
}

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
    /// `RELAY_MAX_CONNECTIONS`: client connections open at once (each
    /// costs a thread); a new one beyond is closed at once.
    pub max_connections: usize,
    /// PEM bundle replacing the built-in roots (already read and checked).
    pub ca_pem: Option<Vec<u8>>,
    /// The HTTP CONNECT proxy OTX calls go through, if any.
    pub proxy: Option<Proxy>,
    /// `RELAY_AUDIENCE`: this relay's public base URLs, without a trailing
    /// `/`. Not empty: RS256 configuration tokens are accepted (SPEC §9).
    pub audiences: Vec<String>,
    /// `JWKS_HOSTS`: the `host[:port]`s a token's `jwks_host` may name,
    /// lower-cased.
    pub jwks_hosts: Vec<String>,
    /// `JWKS_TTL`: how long fetched keys are trusted.
    pub jwks_ttl: Duration,
    /// `TILE_CACHE_TTL`: how long one subscribed-pulses walk serves the
    /// tiles of a tenant and period.
    pub tile_cache_ttl: Duration,
    /// `TILE_MAX_PULSES`: the most pulses one walk reads.
    pub tile_max_pulses: usize,
    /// `METRICS`: `GET /metrics` is served (`on`, the default) or not (`off`).
    pub metrics: bool,
    /// `REDIS_URL`: the fleet's shared cache (`redis://` or `rediss://`).
    pub redis_url: Option<String>,
    /// `PASSIVE_DNS`: `/observe` asks OTX's passive DNS too (`on`, the
    /// default) or not (`off`) (SPEC §15).
    pub passive_dns: bool,
    /// `PASSIVE_DNS_LIMIT`: the most relations one observable's passive
    /// DNS sighting carries.
    pub passive_dns_limit: usize,
}

/// The default `JWKS_HOSTS`: Cisco's three visibility hosts (SPEC §9).
pub const DEFAULT_JWKS_HOSTS: [&str; 3] = [
    "visibility.amp.cisco.com",
    "visibility.eu.amp.cisco.com",
    "visibility.apjc.amp.cisco.com",
];

/// An egress proxy, from the first of `ALL_PROXY`, `HTTPS_PROXY`,
/// `HTTP_PROXY` (or their lower-case forms) that is set, in that order (the
/// order curl and ureq read them in), and the `NO_PROXY` entries that
/// bypass it.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The variable it came from (for messages that say what to fix).
    pub variable: &'static str,
    pub host: String,
    pub port: u16,
    /// Percent-decoded user name and password, if the URL held them.
    pub user: Option<String>,
    pub password: Option<String>,
    /// `NO_PROXY`'s entries, reached directly (see [`Proxy::bypasses`]).
    pub no_proxy: Vec<String>,
}

impl Proxy {
    /// Whether `NO_PROXY` sends `host:port` around the proxy, as curl and
    /// Go read it: `*`; a name, which covers its subdomains too
    /// (`example.com`), or only them (`.example.com`, `*.example.com`); an
    /// IP address, or a CIDR range (`127.0.0.0/8`, `fd00::/8`) holding an IP
    /// `host`; any of these with `:port`, which then must match too. Names
    /// compare without case; `host` may be a bracketed IPv6 address.
    pub fn bypasses(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<std::net::IpAddr>().ok();
        self.no_proxy.iter().any(|entry| {
            let entry = entry.to_ascii_lowercase();
            if entry == "*" {
                return true;
            }
            // `host:port`, `[v6]:port`; a bare IPv6 address has colons but no port.
            let (pattern, wanted) = match entry.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || h.ends_with(']') => match p.parse::<u16>() {
                    Ok(p) => (h, Some(p)),
                    Err(_) => return false,
                },
                _ => (entry.as_str(), None),
            };
            if wanted.is_some_and(|p| p != port) {
                return false;
            }
            let pattern = pattern.trim_start_matches('[').trim_end_matches(']');
            if let Some((net, bits)) = pattern.split_once('/') {
                return match (ip, net.parse(), bits.parse::<u8>()) {
                    (Some(ip), Ok(net), Ok(bits)) => in_range(ip, net, bits),
                    _ => false,
                };
            }
            let pattern = pattern.trim_start_matches('*').trim_end_matches('.');
            match pattern.strip_prefix('.') {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == pattern || host.ends_with(&format!(".{pattern}")),
            }
        })
    }
}

/// Whether `ip` is in `net/bits` (IPv4 in IPv4, IPv6 in IPv6).
fn in_range(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u8) -> bool {
    use std::net::IpAddr::{V4, V6};
    let prefix = |a: u128, b: u128, width: u8| {
        bits <= width && (bits == 0 || (a ^ b) >> (width - bits) == 0)
    };
    match (ip, net) {
        (V4(ip), V4(net)) => prefix(u32::from(ip).into(), u32::from(net).into(), 32),
        (V6(ip), V6(net)) => prefix(u128::from(ip), u128::from(net), 128),
        _ => false,
    }
}

/// The host (as written, IPv6 in brackets) and port (the scheme's default
/// when none is written) of an `http(s)://` URL.
pub fn url_host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = split_host_port(authority);
    let port = match port {
        Some(port) => port.parse().ok()?,
        None if scheme.eq_ignore_ascii_case("https") => 443,
        None => 80,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

impl fmt::Debug for Proxy {
    // Hand-written: the password is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("variable", &self.variable)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// The proxy variables, in the order they are read.
const PROXY_VARIABLES: [&str; 6] = [
    "ALL_PROXY",
    "all_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
];

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
        let count = |v: &Var| read_count(v, var(v.name));
        let ca_pem = match var("SSL_CERT_FILE") {
            Some(path) => Some(read_ca_file(&path)?),
            None => None,
        };
        Ok(Config {
            secret_key: var("SECRET_KEY").map(String::into_bytes),
            otx_url: otx_url(var("AVOTX_URL"))?,
            entities_limit: entities_limit(var("CTR_ENTITIES_LIMIT").as_deref()),
            host: var("HOST").unwrap_or_else(|| "0.0.0.0".to_owned()),
            port: count(&PORT)? as u16,
            otx_timeout: Duration::from_secs(count(&AVOTX_TIMEOUT)?),
            deadline: Duration::from_secs(count(&RELAY_DEADLINE)?),
            threads: count(&RELAY_THREADS)? as usize,
            otx_concurrency: count(&AVOTX_CONCURRENCY)? as usize,
            cache_ttl: Duration::from_secs(count(&CACHE_TTL)?),
            cache_max_entries: count(&CACHE_MAX_ENTRIES)? as usize,
            otx_max_body: count(&AVOTX_MAX_BODY)?,
            malicious_pulses: count(&OTX_MALICIOUS_PULSES)? as usize,
            verdict_valid_days: count(&VERDICT_VALID_DAYS)?,
            client_timeout: Duration::from_secs(count(&RELAY_CLIENT_TIMEOUT)?),
            max_connections: count(&RELAY_MAX_CONNECTIONS)? as usize,
            ca_pem,
            proxy: proxy(&var)?,
            audiences: audiences(var("RELAY_AUDIENCE"))?,
            jwks_hosts: jwks_hosts(var("JWKS_HOSTS"))?,
            jwks_ttl: Duration::from_secs(count(&JWKS_TTL)?),
            tile_cache_ttl: Duration::from_secs(count(&TILE_CACHE_TTL)?),
            tile_max_pulses: count(&TILE_MAX_PULSES)? as usize,
            redis_url: redis_url(var("REDIS_URL"))?,
            metrics: on_off("METRICS", var("METRICS"))?,
            passive_dns: on_off("PASSIVE_DNS", var("PASSIVE_DNS"))?,
            passive_dns_limit: count(&PASSIVE_DNS_LIMIT)? as usize,
        })
    }
}

/// A switch: `on` (the default) or `off`.
fn on_off(variable: &'static str, raw: Option<String>) -> Result<bool, ConfigError> {
    match raw.as_deref().map(str::trim) {
        None | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(_) => Err(ConfigError {
            variable,
            reason: "must be on or off".to_owned(),
        }),
    }
}

/// The egress proxy. Only `http://` (or no scheme) works: the OTX client
/// speaks HTTP CONNECT only, and a SOCKS or HTTPS proxy must stop start-up
/// rather than be silently bypassed. The value is never echoed: it may
/// hold a password.
fn proxy(var: &impl Fn(&str) -> Option<String>) -> Result<Option<Proxy>, ConfigError> {
    let Some((variable, url)) = PROXY_VARIABLES
        .iter()
        .find_map(|name| var(name).map(|url| (*name, url)))
    else {
        return Ok(None);
    };
    let bad = |reason: String| ConfigError { variable, reason };
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => ("http", url.as_str()),
    };
    if !scheme.eq_ignore_ascii_case("http") {
        let shown = if scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
            format!("{scheme}://")
        } else {
            "this scheme".to_owned()
        };
        return Err(bad(format!(
            "only http:// (HTTP CONNECT) proxies are supported, not {shown}"
        )));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let (host, port) = split_host_port(host_port);
    let port = match port {
        None => 80,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port >= 1 => port,
            _ => return Err(bad("must have a port number from 1 to 65535".to_owned())),
        },
    };
    if !valid_host(host) {
        return Err(bad("must be http://[user:password@]host[:port]".to_owned()));
    }
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8_lossy()
            .into_owned()
    };
    let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        None => (None, None),
        Some((user, "")) => (Some(decode(user)), None),
        Some((user, password)) => (Some(decode(user)), Some(decode(password))),
    };
    let no_proxy = var("NO_PROXY")
        .or_else(|| var("no_proxy"))
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Proxy {
        variable,
        host: host.to_owned(),
        port,
        user,
        password,
        no_proxy,
    }))
}

/// `RELAY_AUDIENCE`: comma-separated `http(s)://` base URLs; a trailing
/// `/` is ignored (tokens' `aud` is compared the same way).
fn audiences(raw: Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let bad = |reason: &str| ConfigError {
        variable: "RELAY_AUDIENCE",
        reason: reason.to_owned(),
    };
    let urls: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect();
    if urls.is_empty() {
        return Err(bad("must list this relay's public base URLs"));
    }
    for url in &urls {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| bad("each URL must start with https:// or http://"))?;
        if rest.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("each URL must name a host"));
        }
    }
    Ok(urls)
}

/// `REDIS_URL`: `redis://` or `rediss://` (never echoed: it may hold a password).
fn redis_url(raw: Option<String>) -> Result<Option<String>, ConfigError> {
    match raw {
        None => Ok(None),
        Some(url)
            if (url.starts_with("redis://") || url.starts_with("rediss://"))
                && url.len() > "rediss://".len()
                && !url.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(Some(url))
        }
        Some(_) => Err(ConfigError {
            variable: "REDIS_URL",
            reason: "must be a redis:// or rediss:// URL".to_owned(),
        }),
    }
}

/// `JWKS_HOSTS`: comma-separated `host[:port]`, compared case-insensitively.
fn jwks_hosts(raw: Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_JWKS_HOSTS.iter().map(|h| (*h).to_owned()).collect());
    };
    let hosts: Vec<String> = raw
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    let valid = |h: &String| {
        let (host, port) = split_host_port(h);
        valid_host(host) && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p >= 1))
    };
    if hosts.is_empty() || !hosts.iter().all(valid) {
        return Err(ConfigError {
            variable: "JWKS_HOSTS",
            reason: "must be a comma-separated list of host[:port]".to_owned(),
        });
    }
    Ok(hosts)
}

/// What the `token` subcommand reads: `SECRET_KEY` only (empty: unset), so
/// that an unrelated bad variable cannot stop it.
pub fn secret_key_from_env() -> Option<Vec<u8>> {
    std::env::var("SECRET_KEY")
        .ok()
        .filter(|v| !v.is_empty())
        .map(String::into_bytes)
}

/// The OTX key `check` uses when `--key` is not given: `OTX_API_KEY`
/// (empty: unset).
pub fn otx_api_key_from_env() -> Option<String> {
    std::env::var("OTX_API_KEY").ok().filter(|v| !v.is_empty())
}

/// What the `healthcheck` subcommand reads: `HOST` (as given; `None` when
/// unset or empty) and `PORT`, with the server's rules and defaults.
pub fn listen_address_from_env() -> Result<(Option<String>, u16), ConfigError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Ok((var("HOST"), read_count(&PORT, var(PORT.name))? as u16))
}

/// `CTR_ENTITIES_LIMIT` rules (compatible): not a positive integer → 100,
/// above 1000 → 1000 (however large: Python's `int()` has no overflow).
/// Shared by the env variable and the JWT claim.
pub fn entities_limit(raw: Option<&str>) -> usize {
    use std::num::IntErrorKind;
    match raw.map(str::trim).map(str::parse::<i128>) {
        Some(Ok(n)) if n >= 1 => usize::try_from(n)
            .unwrap_or(MAX_ENTITIES_LIMIT)
            .min(MAX_ENTITIES_LIMIT),
        Some(Err(e)) if *e.kind() == IntErrorKind::PosOverflow => MAX_ENTITIES_LIMIT,
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
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(bad("must start with http:// or https://"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must be an http(s):// URL with a host"));
    }
    if url.contains(['?', '#']) {
        return Err(bad("must not carry a query or fragment"));
    }
    let uri = ureq::http::Uri::try_from(url.as_str())
        .map_err(|_| bad("must be a valid http(s):// URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("must start with http:// or https://"));
    }
    if uri.query().is_some() {
        return Err(bad("must not carry a query or fragment"));
    }
    let authority = uri
        .authority()
        .map(|a| a.as_str())
        .ok_or_else(|| bad("must be an http(s):// URL with a host"))?;
    if authority.contains('@') {
        // It would be copied into every link the relay emits.
        return Err(bad("must not carry a user name or password"));
    }
    let (host, port) = split_host_port(authority);
    if !valid_host(host) {
        return Err(bad("must be an http(s):// URL with a host"));
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p >= 1) {
            return Err(bad("must have a port number from 1 to 65535"));
        }
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// `host[:port]` or `[v6][:port]`; the port is whatever follows the colon.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    let split_at = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => end + 1,
            None => return (authority, None),
        }
    } else {
        authority.find(':').unwrap_or(authority.len())
    };
    let (host, rest) = authority.split_at(split_at);
    match rest.strip_prefix(':') {
        Some(port) => (host, Some(port)),
        None if rest.is_empty() => (host, None),
        // Something after `]` that is not a port.
        None => (authority, Some(rest)),
    }
}

/// A DNS name, an IPv4 address, or a bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// An integer variable that must lie in `range`; `reason` says what is
/// wanted when it does not.
fn number(
    variable: &'static str,
    raw: Option<String>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    reason: impl Fn() -> String,
) -> Result<u64, ConfigError> {
    match raw {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError {
                variable,
                reason: reason(),
            }),
        },
    }
}

fn read_ca_file(path: &str) -> Result<Vec<u8>, ConfigError> {
    use std::os::unix::fs::FileTypeExt;
    let bad = |reason: String| ConfigError {
        variable: "SSL_CERT_FILE",
        reason,
    };
    // Opening a FIFO waits for a writer, start-up with it, for ever.
    let kind = std::fs::metadata(path)
        .map_err(|e| bad(format!("cannot read {path}: {e}")))?
        .file_type();
    if kind.is_fifo() || kind.is_socket() {
        return Err(bad(format!("{path} is a pipe or a socket, not a PEM file")));
    }
    // Bounded: a path to something endless (`/dev/zero`) or huge must not
    // take the memory; real bundles are a few hundred KiB.
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CA_FILE + 1).read_to_end(&mut pem))
        .map_err(|e| bad(format!("cannot read {path}: {e}")))?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(bad(format!("{path} is larger than 4 MiB")));
    }
    // Every block must be whole, and every certificate one rustls can
    // use: a corrupt one would otherwise be dropped without a word, and
    // the roots be fewer than the operator believes.
    let mut roots = rustls::RootCertStore::empty();
    for (n, item) in ureq::tls::parse_pem(&pem).enumerate() {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => {
                roots.add(cert.der().to_vec().into()).map_err(|e| {
                    bad(format!(
                        "{path}: PEM block {} is not a usable certificate ({e})",
                        n + 1
                    ))
                })?
            }
            Ok(_) => {}
            // (The parser's own error shows bytes as numbers: not for people.)
            Err(_) => {
                return Err(bad(format!(
                    "{path}: PEM block {} is corrupt (cut short, or not base64)",
                    n + 1
                )))
            }
        }
    }
    if roots.is_empty() {
        return Err(bad(format!("{path} holds no PEM certificate")));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_default_is_in_its_range_and_every_name_is_read_once() {
        for v in VARS {
            if let Some((min, max)) = v.range {
                let default: u64 = v.default.parse().expect(v.name);
                assert!((min..=max).contains(&default), "{}", v.name);
            }
        }
        let mut names: Vec<&str> = VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VARS.len(), "a variable is listed twice");
        // And every variable this file reads is in the table.
        let source = include_str!("config.rs");
        for read in source.split("var(\"").skip(1) {
            let name = read.split('"').next().unwrap_or_default();
            if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !name.is_empty() {
                assert!(
                    names.contains(&name) || PROXY_VARIABLES.contains(&name),
                    "{name} is read but not in VARS"
                );
            }
        }
    }
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
        assert_eq!(c.max_connections, 1024);
        assert!(c.secret_key.is_none());
        assert!(c.metrics);
        assert_eq!((c.passive_dns, c.passive_dns_limit), (true, 50));
    }

    #[test]
    fn passive_dns_switch_and_limit() {
        let c = config(&[("PASSIVE_DNS", "off"), ("PASSIVE_DNS_LIMIT", "1")]).unwrap();
        assert_eq!((c.passive_dns, c.passive_dns_limit), (false, 1));
        let c = config(&[("PASSIVE_DNS", "on"), ("PASSIVE_DNS_LIMIT", "1000")]).unwrap();
        assert_eq!((c.passive_dns, c.passive_dns_limit), (true, 1000));
        let c = config(&[("PASSIVE_DNS", ""), ("PASSIVE_DNS_LIMIT", "")]).unwrap();
        assert_eq!((c.passive_dns, c.passive_dns_limit), (true, 50));
        let err = config(&[("PASSIVE_DNS", "yes")]).expect_err("not on/off");
        assert_eq!(err.to_string(), "invalid PASSIVE_DNS: must be on or off");
        let err = config(&[("PASSIVE_DNS_LIMIT", "1001")]).expect_err("over 1000");
        assert_eq!(
            err.to_string(),
            "invalid PASSIVE_DNS_LIMIT: must be a positive integer no larger than 1000"
        );
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
            ("PASSIVE_DNS", "true"),
            ("PASSIVE_DNS_LIMIT", "0"),
            ("PASSIVE_DNS_LIMIT", "-1"),
            ("PASSIVE_DNS_LIMIT", "ten"),
            ("SSL_CERT_FILE", "/nonexistent/ca.pem"),
            ("SSL_CERT_FILE", "/etc/hostname"),
            // Above the upper bounds (values that overflowed later on).
            ("AVOTX_TIMEOUT", "86401"),
            ("AVOTX_TIMEOUT", "18446744073709551615"),
            ("RELAY_DEADLINE", "86401"),
            ("RELAY_DEADLINE", "18446744073709551615"),
            ("RELAY_DEADLINE", "18446744073709551616"),
            ("RELAY_CLIENT_TIMEOUT", "86401"),
            ("CACHE_TTL", "31536001"),
            ("CACHE_TTL", "18446744073709551615"),
            ("RELAY_THREADS", "4097"),
            ("RELAY_THREADS", "100000"),
            ("AVOTX_CONCURRENCY", "1025"),
            ("AVOTX_CONCURRENCY", "4096"),
            ("AVOTX_CONCURRENCY", "18446744073709551615"),
            ("CACHE_MAX_ENTRIES", "100000001"),
            ("AVOTX_MAX_BODY", "4294967297"),
            ("OTX_MALICIOUS_PULSES", "1000001"),
            ("VERDICT_VALID_DAYS", "3651"),
            ("VERDICT_VALID_DAYS", "18446744073709551615"),
        ] {
            let err = config(&[(var, value)]).expect_err(var);
            assert_eq!(err.variable, var, "{var}={value}");
            assert!(err.to_string().starts_with(&format!("invalid {var}: ")));
        }
    }

    #[test]
    fn too_large_values_say_the_bound() {
        for (var, value, bound) in [
            ("AVOTX_TIMEOUT", "86401", "86400"),
            ("RELAY_DEADLINE", "86401", "86400"),
            ("RELAY_CLIENT_TIMEOUT", "86401", "86400"),
            ("RELAY_THREADS", "4097", "4096"),
            ("AVOTX_CONCURRENCY", "1025", "1024"),
            ("CACHE_MAX_ENTRIES", "100000001", "100000000"),
            ("AVOTX_MAX_BODY", "4294967297", "4294967296"),
            ("OTX_MALICIOUS_PULSES", "1000001", "1000000"),
            ("VERDICT_VALID_DAYS", "3651", "3650"),
        ] {
            let err = config(&[(var, value)]).expect_err(var);
            assert_eq!(
                err.to_string(),
                format!("invalid {var}: must be a positive integer no larger than {bound}")
            );
        }
        let err = config(&[("CACHE_TTL", "31536001")]).expect_err("CACHE_TTL");
        assert!(err.to_string().contains("no larger than 31536000"), "{err}");
    }

    #[test]
    fn the_upper_bounds_themselves_are_accepted() {
        let c = config(&[
            ("AVOTX_TIMEOUT", "86400"),
            ("RELAY_DEADLINE", "86400"),
            ("RELAY_CLIENT_TIMEOUT", "86400"),
            ("CACHE_TTL", "31536000"),
            ("RELAY_THREADS", "4096"),
            ("AVOTX_CONCURRENCY", "1024"),
            ("CACHE_MAX_ENTRIES", "100000000"),
            ("AVOTX_MAX_BODY", "4294967296"),
            ("OTX_MALICIOUS_PULSES", "1000000"),
            ("VERDICT_VALID_DAYS", "3650"),
        ])
        .expect("the bounds are valid");
        assert_eq!(c.deadline, Duration::from_secs(86_400));
        assert_eq!(c.cache_ttl, Duration::from_secs(31_536_000));
        assert_eq!((c.threads, c.otx_concurrency), (4096, 1024));
        assert_eq!(c.cache_max_entries, 100_000_000);
        assert_eq!(c.otx_max_body, 4_294_967_296);
        assert_eq!(
            (c.malicious_pulses, c.verdict_valid_days),
            (1_000_000, 3650)
        );
    }

    #[test]
    fn otx_url_forms() {
        for (raw, want) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("https://otx.alienvault.com/", "https://otx.alienvault.com"),
            ("http://proxy/otx", "http://proxy/otx"),
            ("http://proxy/otx/", "http://proxy/otx"),
            ("http://[::1]:9000", "http://[::1]:9000"),
            ("http://[::1]", "http://[::1]"),
            (
                "http://otx.example_corp.test:65535",
                "http://otx.example_corp.test:65535",
            ),
            ("http://localhost:1/a/b", "http://localhost:1/a/b"),
        ] {
            let c = config(&[("AVOTX_URL", raw)]).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(c.otx_url, want, "{raw}");
        }
        for raw in [
            "http://[::1",
            "http://[::1]x",
            "http://[zz]:80",
            "http://a:b:c",
            "http://%zz",
            "http://127.0.0.1:99999",
            "http://127.0.0.1:0",
            "http://127.0.0.1:",
            "http://host:-1",
            "http://user:pw@host",
            "http://user@host/otx",
            "http://@host",
            "http://host/?q=1",
            "http://host/#frag",
            "http://host?",
            "http:///path",
            "http://ho st",
            "http://",
            "https://",
            "HTTP://host",
            "ftp://host",
            "host:80",
        ] {
            let err = config(&[("AVOTX_URL", raw)]).expect_err(raw);
            assert_eq!(err.variable, "AVOTX_URL", "{raw}");
            assert!(err.to_string().starts_with("invalid AVOTX_URL: "), "{raw}");
            assert!(!err.to_string().contains("pw"), "{raw}: {err}");
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
            (Some(" 42 "), 42),
            (Some("+7"), 7),
            // Larger than any machine integer: Python's int() still says > 1000.
            (Some("9223372036854775808"), 1000),
            (Some("18446744073709551616"), 1000),
            (Some("99999999999999999999"), 1000),
            (
                Some("999999999999999999999999999999999999999999999999"),
                1000,
            ),
            (Some("-99999999999999999999"), 100),
            (
                Some("-999999999999999999999999999999999999999999999999"),
                100,
            ),
        ] {
            assert_eq!(entities_limit(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn xdr_tokens() {
        let c = config(&[]).expect("defaults");
        assert!(c.audiences.is_empty());
        assert_eq!(c.jwks_hosts, DEFAULT_JWKS_HOSTS);
        assert_eq!(c.jwks_ttl, Duration::from_secs(3600));
        let c = config(&[
            (
                "RELAY_AUDIENCE",
                "https://relay.example/, http://127.0.0.1:9090",
            ),
            ("JWKS_HOSTS", "Visibility.AMP.cisco.com, 127.0.0.1:8443"),
            ("JWKS_TTL", "60"),
        ])
        .expect("valid");
        assert_eq!(
            c.audiences,
            ["https://relay.example", "http://127.0.0.1:9090"]
        );
        assert_eq!(c.jwks_hosts, ["visibility.amp.cisco.com", "127.0.0.1:8443"]);
        for (variable, value) in [
            ("RELAY_AUDIENCE", "relay.example"),
            ("RELAY_AUDIENCE", ","),
            ("JWKS_HOSTS", "a b"),
            ("JWKS_HOSTS", "host:0"),
            ("JWKS_HOSTS", "https://host"),
            ("JWKS_TTL", "0"),
        ] {
            let e = config(&[(variable, value)]).expect_err(value);
            assert_eq!(e.variable, variable);
        }
    }

    #[test]
    fn proxies() {
        assert_eq!(config(&[]).map(|c| c.proxy), Ok(None));
        let c = config(&[
            ("HTTPS_PROXY", "http://us%40r:p%3Ass@proxy.example:3128/"),
            ("NO_PROXY", "localhost, .internal,,"),
        ])
        .expect("an http proxy");
        assert_eq!(
            c.proxy,
            Some(Proxy {
                variable: "HTTPS_PROXY",
                host: "proxy.example".to_owned(),
                port: 3128,
                user: Some("us@r".to_owned()),
                password: Some("p:ss".to_owned()),
                no_proxy: vec!["localhost".to_owned(), ".internal".to_owned()],
            })
        );
        assert!(!format!("{c:?}").contains("p:ss"));
        let c = config(&[("http_proxy", "10.0.0.1")]).expect("no scheme is http");
        assert_eq!(
            c.proxy.map(|p| (p.host, p.port)),
            Some(("10.0.0.1".to_owned(), 80))
        );
        // ALL_PROXY first, as curl and ureq read them.
        let e = config(&[
            ("ALL_PROXY", "socks5://127.0.0.1:1080"),
            ("HTTPS_PROXY", "http://p"),
        ])
        .expect_err("socks is refused");
        assert_eq!(e.variable, "ALL_PROXY");
        assert!(e.reason.contains("socks5://"), "{e}");
        for (value, secret) in [
            ("https://u:secret@p", "secret"),
            ("socks5h://u:secret@p", "secret"),
        ] {
            let e = config(&[("HTTPS_PROXY", value)]).expect_err("refused");
            assert!(!e.to_string().contains(secret), "{e}");
        }
        assert!(config(&[("HTTPS_PROXY", "http://p:0")]).is_err());
        assert!(config(&[("HTTPS_PROXY", "http://")]).is_err());
    }

    #[test]
    fn no_proxy_reads_as_curl_and_go_do() {
        let proxy = |list: &str| Proxy {
            variable: "HTTPS_PROXY",
            host: "proxy".to_owned(),
            port: 3128,
            user: None,
            password: None,
            no_proxy: list.split(',').map(str::to_owned).collect(),
        };
        for (list, host, port, bypassed) in [
            ("127.0.0.0/8", "127.0.0.1", 9090, true),
            ("127.0.0.0/8", "127.1.2.3", 443, true),
            ("127.0.0.0/8", "128.0.0.1", 443, false),
            ("10.0.0.0/8", "otx.alienvault.com", 443, false),
            ("0.0.0.0/0", "8.8.8.8", 443, true),
            ("192.168.1.0/24", "192.168.1.255", 443, true),
            ("192.168.1.0/24", "192.168.2.0", 443, false),
            ("fd00::/8", "[fd12::1]", 443, true),
            ("fd00::/8", "[fe80::1]", 443, false),
            ("fd00::/8", "10.0.0.1", 443, false),
            ("127.0.0.1:8080", "127.0.0.1", 8080, true),
            ("127.0.0.1:8080", "127.0.0.1", 8081, false),
            ("otx.example:443", "otx.example", 443, true),
            ("otx.example:443", "otx.example", 80, false),
            ("[::1]:9000", "[::1]", 9000, true),
            ("::1", "[::1]", 9000, true),
            ("example.com", "example.com", 443, true),
            ("example.com", "otx.example.com", 443, true),
            ("example.com", "badexample.com", 443, false),
            (".example.com", "example.com", 443, false),
            (".example.com", "otx.example.com", 443, true),
            ("*.example.com", "otx.example.com", 443, true),
            ("Example.COM", "OTX.example.com.", 443, true),
            ("*", "anything", 1, true),
            ("localhost, 10.0.0.0/8", "10.1.1.1", 443, true),
            ("localhost, 10.0.0.0/8", "11.1.1.1", 443, false),
            ("", "otx.alienvault.com", 443, false),
            ("10.0.0.0/33", "10.0.0.1", 443, false),
        ] {
            let p = proxy(list);
            let p = Proxy {
                no_proxy: p.no_proxy.iter().map(|e| e.trim().to_owned()).collect(),
                ..p
            };
            assert_eq!(p.bypasses(host, port), bypassed, "{list} {host}:{port}");
        }
        assert_eq!(
            url_host_port("https://otx.alienvault.com"),
            Some(("otx.alienvault.com".to_owned(), 443))
        );
        assert_eq!(
            url_host_port("http://[::1]:9000/x"),
            Some(("[::1]".to_owned(), 9000))
        );
        assert_eq!(url_host_port("http://h"), Some(("h".to_owned(), 80)));
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = config(&[("SECRET_KEY", "hunter2-hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
