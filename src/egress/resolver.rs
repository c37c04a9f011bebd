//! Host names resolved at most once a minute while they resolve, on the
//! calling thread (SPEC §4, "Name resolution").
//!
//! ureq's own `DefaultResolver` runs before ureq looks in its pool, and with
//! a timeout set it starts a thread for each `getaddrinfo`: every request,
//! pooled connection or not, cost a thread and a lookup (28 of each per cold
//! `/observe` of the sample observables; under Kubernetes' `ndots:5` a
//! lookup is several DNS queries). Here a name is looked up by the thread
//! that asks, by one thread at a time per host and port (the others wait
//! for its outcome, within their own timeout), and its addresses serve
//! every call for [`REMEMBER`]. A failure is never kept: the next call
//! looks again. IP literals are never looked up.
//!
//! The thread that looks a name up cannot be bounded by ureq's timeout
//! (`getaddrinfo` takes none): it takes what `resolv.conf`'s `timeout` and
//! `attempts` allow, at most once a minute per name; a relay request's
//! deadline still bounds its answer (the handler stops waiting).
//!
//! The names asked for are few and fixed by the configuration: OTX's host,
//! the `JWKS_HOSTS`, or the proxy's host instead of either when `HTTPS_PROXY`
//! is in use (ureq then resolves the proxy, never the target). Redirects are
//! not followed, so no answer can add a name.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

use crate::metrics::Metrics;

/// How long a name's addresses are reused.
pub const REMEMBER: Duration = Duration::from_secs(60);

/// A name and port to their addresses: `getaddrinfo` in the relay, a fake
/// in the unit tests.
type Lookup = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// The resolver of the relay's HTTP agents.
pub struct CachingResolver {
    hosts: Mutex<Vec<Arc<Host>>>,
    lookup: Box<Lookup>,
    remember: Duration,
    metrics: Arc<Metrics>,
}

/// One host and port, and what is known of it.
struct Host {
    name: String,
    port: u16,
    state: Mutex<State>,
    /// Told when a lookup of this host ends.
    looked_up: Condvar,
}

#[derive(Default)]
struct State {
    /// The addresses of the last lookup that succeeded, and when it ended;
    /// `None` after a failure.
    known: Option<(Arc<[SocketAddr]>, Instant)>,
    /// A thread is looking the name up now.
    looking: bool,
    /// Lookups ended so far: a waiter tells by it that the lookup it waited
    /// for has ended.
    ended: u64,
    /// How the last lookup failed, for the threads that waited for it.
    failure: Option<Failure>,
}

/// A failed lookup as it can be handed to every thread that waited for it
/// (`io::Error` is not `Clone`).
#[derive(Clone)]
enum Failure {
    NotFound,
    Io(io::ErrorKind, String),
}

impl Failure {
    fn of(error: &io::Error) -> Failure {
        Failure::Io(error.kind(), error.to_string())
    }

    fn error(&self) -> ureq::Error {
        match self {
            Failure::NotFound => ureq::Error::HostNotFound,
            Failure::Io(kind, message) => ureq::Error::Io(io::Error::new(*kind, message.clone())),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CachingResolver {
    /// Looks names up with the system's resolver (`getaddrinfo`).
    pub fn new(metrics: Arc<Metrics>) -> CachingResolver {
        CachingResolver::with_lookup(REMEMBER, metrics, |name, port| {
            (name, port).to_socket_addrs().map(Iterator::collect)
        })
    }

    /// Looks names up with `lookup`, keeping what it finds for `remember`.
    pub fn with_lookup(
        remember: Duration,
        metrics: Arc<Metrics>,
        lookup: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> CachingResolver {
        CachingResolver {
            hosts: Mutex::new(Vec::new()),
            lookup: Box::new(lookup),
            remember,
            metrics,
        }
    }

    /// The entry of `name`:`port`, made on first use. A short list searched
    /// in place: no key is built per call.
    fn host(&self, name: &str, port: u16) -> Arc<Host> {
        let mut hosts = lock(&self.hosts);
        let known = hosts
            .iter()
            .find(|h| h.port == port && h.name.eq_ignore_ascii_case(name));
        if let Some(host) = known {
            return host.clone();
        }
        let host = Arc::new(Host {
            name: name.to_owned(),
            port,
            state: Mutex::new(State::default()),
            looked_up: Condvar::new(),
        });
        hosts.push(host.clone());
        host
    }

    /// The addresses of `name`:`port`: those known if looked up less than
    /// `remember` ago, else the outcome of the lookup under way (waited for
    /// until `timeout`), else of a lookup made now on this thread.
    pub fn addresses(
        &self,
        name: &str,
        port: u16,
        timeout: NextTimeout,
    ) -> Result<Arc<[SocketAddr]>, ureq::Error> {
        let host = self.host(name, port);
        let mut state = lock(&host.state);
        // `None`: wait as long as it takes.
        let give_up = Instant::now().checked_add(*timeout.after);
        loop {
            if let Some((addresses, at)) = &state.known {
                if at.elapsed() < self.remember {
                    return Ok(addresses.clone());
                }
            }
            if !state.looking {
                break;
            }
            // Another thread is looking the name up: its outcome is ours.
            let ended = state.ended;
            while state.looking && state.ended == ended {
                state = match give_up {
                    None => host
                        .looked_up
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner),
                    Some(at) => {
                        let left = at.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(ureq::Error::Timeout(timeout.reason));
                        }
                        host.looked_up
                            .wait_timeout(state, left)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                };
            }
            if let Some(failure) = &state.failure {
                return Err(failure.error());
            }
        }
        state.looking = true;
        drop(state);

        // No lock is held while the name is looked up.
        let outcome = catch_unwind(AssertUnwindSafe(|| (self.lookup)(&host.name, port)))
            .unwrap_or_else(|_| Err(io::Error::other("the name lookup panicked")));
        let outcome = match outcome {
            Ok(addresses) if addresses.is_empty() => Err(Failure::NotFound),
            Ok(addresses) => Ok(Arc::<[SocketAddr]>::from(addresses)),
            Err(e) => Err(Failure::of(&e)),
        };
        self.metrics.name_lookup(&outcome);

        let mut state = lock(&host.state);
        state.looking = false;
        state.ended += 1;
        let result = match outcome {
            Ok(addresses) => {
                state.known = Some((addresses.clone(), Instant::now()));
                state.failure = None;
                Ok(addresses)
            }
            Err(failure) => {
                state.known = None;
                let error = failure.error();
                state.failure = Some(failure);
                Err(error)
            }
        };
        drop(state);
        host.looked_up.notify_all();
        result
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (name, port) = name_and_port(uri)?;
        let mut resolved = self.empty();
        let wanted = config.ip_family();
        if let Ok(ip) = name.parse::<IpAddr>() {
            let only = std::iter::once(SocketAddr::new(ip, port));
            wanted.keep_wanted(only).for_each(|a| resolved.push(a));
        } else {
            let addresses = self.addresses(name, port, timeout)?;
            for address in wanted.keep_wanted(addresses.iter().copied()) {
                // ureq keeps at most 16 addresses, as its own resolver does.
                if resolved.try_push(address).is_err() {
                    break;
                }
            }
        }
        if resolved.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(resolved)
    }
}

/// The host of `uri` (an IPv6 literal without its brackets) and its port,
/// the scheme's default if none is given.
fn name_and_port(uri: &Uri) -> Result<(&str, u16), ureq::Error> {
    let bad = |why: &str| ureq::Error::BadUri(format!("{why}: {uri}"));
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = match (uri.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("http")) => 80,
        (None, Some("https")) => 443,
        _ => return Err(bad("no port")),
    };
    Ok((host, port))
}

impl fmt::Debug for CachingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingResolver")
            .field("remember", &self.remember)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use ureq::unversioned::transport::time;

    fn no_timeout() -> NextTimeout {
        NextTimeout {
            after: time::Duration::NotHappening,
            ..NextTimeout::default()
        }
    }

    fn uri(text: &str) -> Uri {
        text.parse().expect("a URI")
    }

    fn resolve(resolver: &CachingResolver, text: &str) -> Result<Vec<SocketAddr>, String> {
        let resolved = resolver.resolve(&uri(text), &Config::default(), no_timeout());
        resolved
            .map(|r| r.iter().copied().collect())
            .map_err(|e| e.to_string())
    }

    /// A resolver whose lookups answer from `answers` in turn (the last
    /// repeats), counting them.
    fn scripted(
        remember: Duration,
        answers: Vec<io::Result<Vec<SocketAddr>>>,
    ) -> (CachingResolver, Arc<AtomicUsize>, Arc<Metrics>) {
        let (count, metrics) = (Arc::new(AtomicUsize::new(0)), Arc::new(Metrics::new()));
        let answers = Mutex::new(answers);
        let counted = count.clone();
        let resolver = CachingResolver::with_lookup(remember, metrics.clone(), move |_, port| {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut answers = lock(&answers);
            let answer = if answers.len() > 1 {
                answers.remove(0)
            } else {
                match &answers[0] {
                    Ok(a) => Ok(a.clone()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                }
            };
            answer.map(|a| {
                a.into_iter()
                    .map(|a| SocketAddr::new(a.ip(), port))
                    .collect()
            })
        });
        (resolver, count, metrics)
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("an address")
    }

    fn lookups(metrics: &Metrics, outcome: &str) -> bool {
        let line = format!("otx_relay_dns_lookups_total{{outcome=\"{outcome}\"}}");
        metrics.render(0).lines().any(|l| l.starts_with(&line))
    }

    #[test]
    fn a_name_is_looked_up_once_while_remembered_per_host_and_port() {
        let (resolver, count, _) = scripted(REMEMBER, vec![Ok(vec![addr("192.0.2.1:0")])]);
        for _ in 0..5 {
            assert_eq!(
                resolve(&resolver, "https://otx.example/a"),
                Ok(vec![addr("192.0.2.1:443")])
            );
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // Names are case-insensitive; another port is another entry.
        assert_eq!(
            resolve(&resolver, "http://OTX.example:8080/"),
            Ok(vec![addr("192.0.2.1:8080")])
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
        resolve(&resolver, "https://Otx.Example/b").expect("known");
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_lookup_is_tried_again_on_the_next_call() {
        let not_found = io::Error::other("failed to lookup address information");
        let answers = vec![Err(not_found), Ok(vec![addr("192.0.2.7:0")])];
        let (resolver, count, metrics) = scripted(REMEMBER, answers);
        let first = resolve(&resolver, "https://otx.example/");
        assert_eq!(
            first,
            Err("io: failed to lookup address information".to_owned())
        );
        assert!(lookups(&metrics, "error") && !lookups(&metrics, "ok"));
        assert_eq!(
            resolve(&resolver, "https://otx.example/"),
            Ok(vec![addr("192.0.2.7:443")])
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert!(metrics
            .render(0)
            .contains("otx_relay_dns_lookups_total{outcome=\"ok\"} 1\n"));
        assert!(metrics
            .render(0)
            .contains("otx_relay_dns_lookups_total{outcome=\"error\"} 1\n"));
        // An empty answer is a failure too, never kept.
        let (resolver, count, _) = scripted(REMEMBER, vec![Ok(vec![])]);
        for _ in 0..2 {
            assert_eq!(
                resolve(&resolver, "https://otx.example/"),
                Err("host not found".to_owned())
            );
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn addresses_are_looked_up_again_once_forgotten() {
        let answers = vec![Ok(vec![addr("192.0.2.1:0")]), Ok(vec![addr("192.0.2.2:0")])];
        let (resolver, count, _) = scripted(Duration::ZERO, answers);
        assert_eq!(
            resolve(&resolver, "https://otx.example/"),
            Ok(vec![addr("192.0.2.1:443")])
        );
        assert_eq!(
            resolve(&resolver, "https://otx.example/"),
            Ok(vec![addr("192.0.2.2:443")])
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn ip_literals_are_never_looked_up() {
        let (resolver, count, _) = scripted(REMEMBER, vec![Ok(vec![addr("192.0.2.1:0")])]);
        assert_eq!(
            resolve(&resolver, "http://127.0.0.1:9/"),
            Ok(vec![addr("127.0.0.1:9")])
        );
        assert_eq!(
            resolve(&resolver, "https://[::1]/"),
            Ok(vec![addr("[::1]:443")])
        );
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn concurrent_callers_share_one_lookup() {
        let (count, metrics) = (Arc::new(AtomicUsize::new(0)), Arc::new(Metrics::new()));
        let counted = count.clone();
        let resolver = CachingResolver::with_lookup(REMEMBER, metrics, move |_, port| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            Ok(vec![SocketAddr::new([192, 0, 2, 9].into(), port)])
        });
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| assert!(resolve(&resolver, "https://otx.example/").is_ok()));
            }
        });
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_waiter_gives_up_at_its_timeout() {
        let metrics = Arc::new(Metrics::new());
        let resolver = CachingResolver::with_lookup(REMEMBER, metrics, |_, port| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(vec![SocketAddr::new([192, 0, 2, 9].into(), port)])
        });
        std::thread::scope(|s| {
            s.spawn(|| assert!(resolve(&resolver, "https://otx.example/").is_ok()));
            std::thread::sleep(Duration::from_millis(50));
            let short = NextTimeout {
                after: time::Duration::Exact(Duration::from_millis(20)),
                ..NextTimeout::default()
            };
            let waited = resolver.resolve(&uri("https://otx.example/"), &Config::default(), short);
            assert!(matches!(waited, Err(ureq::Error::Timeout(_))), "{waited:?}");
        });
    }
}
