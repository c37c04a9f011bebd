//! The fleet's shared cache (SPEC §14): a second tier behind the in-process
//! cache, on the Redis of `REDIS_URL`, so that N relays asking OTX for the
//! same URL make one call.
//!
//! Keys are `otx-relay:v1:<sha256(OTX key)>:<sha256(URL)>` (lower-case
//! hex), values what the in-process cache holds for that URL (JSON), kept
//! `CACHE_TTL`. A fetch that misses both tiers takes a lock (`SET … NX PX`)
//! so that only one relay asks OTX; the others wait for its value (bounded
//! by their deadline) and fetch it themselves if it fails. Errors are never
//! stored.
//!
//! Redis is an optimisation, never a dependency: down, slow (over
//! [`COMMAND_TIMEOUT`] a command) or refusing, it costs a warning (at most
//! one a minute) and the relay goes on with its own cache and OTX; after a
//! failure it is left alone for [`BACKOFF`], so a request waits on a dead
//! Redis at most once per command timeout.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::log;
use crate::metrics::{Lookup, Metrics};

/// The longest a Redis command may take before Redis counts as down.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
/// How long Redis is left alone after it failed.
pub const BACKOFF: Duration = Duration::from_secs(1);
/// How long a fetch holds the lock at most (the holder's OTX call).
pub const LOCK_FOR: Duration = Duration::from_secs(10);
/// How often a waiter looks for the holder's value.
const POLL: Duration = Duration::from_millis(20);
/// Idle connections kept.
const POOL: usize = 8;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The Redis tier.
pub struct SharedCache {
    client: redis::Client,
    ttl: Duration,
    idle: Mutex<Vec<redis::Connection>>,
    /// Redis is not tried before this instant (after a failure).
    resting_until: Mutex<Option<Instant>>,
    warnings: log::Limiter,
}

/// What the tier found for a key.
pub enum Found {
    /// The value, from Redis.
    Value(Vec<u8>),
    /// Nobody has it: this caller holds the lock and must fetch, then
    /// [`SharedCache::store`] (or [`SharedCache::release`] on an error).
    Fetch(Held),
    /// Redis could not help (down, or the holder never delivered): fetch
    /// without it.
    Alone,
}

/// A held lock: its key and token.
pub struct Held {
    key: String,
    token: String,
}

impl SharedCache {
    /// The tier on `url` (`redis://` or `rediss://`); `ca_pem` replaces the
    /// built-in roots for `rediss://`. Nothing is connected yet: Redis may
    /// come up after the relay.
    pub fn new(url: &str, ca_pem: Option<&[u8]>, ttl: Duration) -> Result<SharedCache, String> {
        // redis's TLS asks rustls for the process's crypto provider: ring,
        // as for every other TLS connection of the relay. (Already installed
        // is fine.)
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match ca_pem {
            Some(pem) if url.starts_with("rediss://") => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            ),
            _ => redis::Client::open(url),
        }
        .map_err(|e| format!("cannot use REDIS_URL: {}", e.category()))?;
        Ok(SharedCache {
            client,
            ttl,
            idle: Mutex::new(Vec::new()),
            resting_until: Mutex::new(None),
            warnings: log::Limiter::new(),
        })
    }

    /// The Redis key of `url` for the tenant of `otx_key_hash`.
    pub fn key(tenant: &[u8; 32], url: &str) -> String {
        format!(
            "otx-relay:v1:{}:{}",
            hex(tenant),
            hex(&Sha256::digest(url.as_bytes()))
        )
    }

    /// Looks `key` up; on a miss, takes the fetch lock or waits (until
    /// `deadline`) for whoever holds it.
    pub fn find(&self, key: &str, deadline: Instant, metrics: &Metrics) -> Found {
        let get =
            |c: &mut redis::Connection| redis::cmd("GET").arg(key).query::<Option<Vec<u8>>>(c);
        let Some(value) = self.run(get) else {
            return Found::Alone;
        };
        if let Some(value) = value {
            metrics.cache_lookup("redis", Lookup::Hit);
            return Found::Value(value);
        }
        let token = format!("{:x}", rand_token());
        let lock_key = format!("{key}:lock");
        let take = |c: &mut redis::Connection| {
            redis::cmd("SET")
                .arg(&lock_key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LOCK_FOR.as_millis() as u64)
                .query::<Option<String>>(c)
        };
        match self.run(take) {
            None => return Found::Alone,
            Some(Some(_)) => {
                metrics.cache_lookup("redis", Lookup::Miss);
                return Found::Fetch(Held {
                    key: key.to_owned(),
                    token,
                });
            }
            Some(None) => {}
        }
        // Another relay is fetching: wait for its value while its lock lives.
        while Instant::now() + POLL < deadline {
            std::thread::sleep(POLL);
            let both = |c: &mut redis::Connection| {
                redis::pipe()
                    .cmd("GET")
                    .arg(key)
                    .cmd("EXISTS")
                    .arg(&lock_key)
                    .query::<(Option<Vec<u8>>, bool)>(c)
            };
            match self.run(both) {
                Some((Some(value), _)) => {
                    metrics.cache_lookup("redis", Lookup::Shared);
                    return Found::Value(value);
                }
                // The holder gave up (an error, or it died): fetch ourselves.
                Some((None, false)) | None => break,
                Some((None, true)) => {}
            }
        }
        Found::Alone
    }

    /// Stores `value` for `held`'s key (`CACHE_TTL`) and frees the lock.
    pub fn store(&self, held: Held, value: &[u8]) {
        let ttl = self.ttl.as_millis().max(1) as u64;
        let set = |c: &mut redis::Connection| {
            redis::cmd("SET")
                .arg(&held.key)
                .arg(value)
                .arg("PX")
                .arg(ttl)
                .query::<()>(c)
        };
        let _ = self.run(set);
        self.release(held);
    }

    /// Frees the lock, if it is still ours (its token), storing nothing.
    pub fn release(&self, held: Held) {
        let lock_key = format!("{}:lock", held.key);
        let free = |c: &mut redis::Connection| {
            redis::cmd("EVAL")
                .arg("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end")
                .arg(1)
                .arg(&lock_key)
                .arg(&held.token)
                .query::<i64>(c)
        };
        let _ = self.run(free);
    }

    /// Runs one command on a pooled connection; `None` when Redis could not
    /// answer in time (it is then left alone for [`BACKOFF`]).
    fn run<T>(
        &self,
        command: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if lock(&self.resting_until).is_some_and(|until| Instant::now() < until) {
            return None;
        }
        let pooled = lock(&self.idle).pop();
        let mut connection = match pooled {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => c,
                Err(why) => {
                    self.failed(&why);
                    return None;
                }
            },
        };
        match command(&mut connection) {
            Ok(value) => {
                let mut idle = lock(&self.idle);
                if idle.len() < POOL {
                    idle.push(connection);
                }
                *lock(&self.resting_until) = None;
                Some(value)
            }
            Err(e) => {
                self.failed(&why(&e));
                None
            }
        }
    }

    fn connect(&self) -> Result<redis::Connection, String> {
        let connection = self
            .client
            .get_connection_with_timeout(COMMAND_TIMEOUT)
            .map_err(|e| why(&e))?;
        connection
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .and_then(|()| connection.set_write_timeout(Some(COMMAND_TIMEOUT)))
            .map_err(|e| why(&e))?;
        Ok(connection)
    }

    /// Redis failed: rest, drop the pooled connections, warn at most once a
    /// minute (the URL may hold a password: it is never printed).
    fn failed(&self, why: &str) {
        *lock(&self.resting_until) = Some(Instant::now() + BACKOFF);
        lock(&self.idle).clear();
        self.warnings.warn(format_args!(
            "the shared cache (REDIS_URL) is unavailable ({why}); going on without it"
        ));
    }
}

/// What failed, in words an operator can act on: a server's code and
/// message (`NOAUTH Authentication required.`), a TLS or connection error
/// (`invalid peer certificate: UnknownIssuer`), rather than redis's
/// category alone (`I/O error`, `extension error`). The URL is in none of
/// them.
fn why(e: &redis::RedisError) -> String {
    let text = match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ if e.is_io_error() => e.to_string(),
        (Some(code), None) => code.to_owned(),
        (None, Some(detail)) => format!("{}: {detail}", e.category()),
        (None, None) => e.to_string(),
    };
    let tls = text.contains("certificate") || text.contains("handshake");
    if tls {
        format!("{text}; see SSL_CERT_FILE")
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.code()
            .is_some_and(|c| matches!(c, "NOAUTH" | "WRONGPASS"))
    {
        format!("{text}; see the password in REDIS_URL")
    } else {
        text
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A lock token: unique enough among the relays of one Redis.
fn rand_token() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_spec() {
        let tenant: [u8; 32] = Sha256::digest(b"otx-key").into();
        let key = SharedCache::key(
            &tenant,
            "https://otx.alienvault.com/api/v1/indicators/IPv4/1.2.3.4/general",
        );
        let parts: Vec<&str> = key.split(':').collect();
        assert_eq!(parts[..2], ["otx-relay", "v1"]);
        assert_eq!(parts[2], hex(&tenant));
        assert_eq!(parts[3].len(), 64);
        assert!(parts[3]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(!key.contains("otx-key") && !key.contains("1.2.3.4"));
    }
}
