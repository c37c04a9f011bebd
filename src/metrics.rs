//! `GET /metrics` (SPEC §14): what an operator watches, in the Prometheus
//! text format 0.0.4, kept with the Prometheus project's `prometheus-client`.
//!
//! No label ever holds an observable, a key or a tenant: endpoints are the
//! route paths (or `other`), OTX calls are named by kind, outcomes are
//! status codes or `transport`.

use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets, in seconds: a warm answer (~1 ms) to the deadline (25 s).
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 25.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    endpoint: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OtxCall {
    call: &'static str,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabel {
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLookup {
    tier: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The relay's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<Request, Counter>,
    request_seconds: Family<Endpoint, Histogram, fn() -> Histogram>,
    otx_requests: Family<OtxCall, Counter>,
    otx_seconds: Family<CallLabel, Histogram, fn() -> Histogram>,
    otx_retries: Counter,
    name_lookups: Family<Outcome, Counter>,
    cache_lookups: Family<CacheLookup, Counter>,
    cache_entries: Gauge,
    in_flight: Gauge,
}

/// The outcome of a cache lookup, for `otx_relay_cache_lookups_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Answered from the cache.
    Hit,
    /// Fetched by this request.
    Miss,
    /// Answered by another request's fetch of the same thing.
    Shared,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<Request, Counter>::default();
        registry.register(
            "otx_relay_requests",
            "Requests answered, by endpoint (route path, or other) and HTTP status",
            requests.clone(),
        );
        let request_seconds =
            Family::<Endpoint, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        registry.register(
            "otx_relay_request_duration_seconds",
            "Time from a request's arrival at a worker to its answer, by endpoint",
            request_seconds.clone(),
        );
        let otx_requests = Family::<OtxCall, Counter>::default();
        registry.register(
            "otx_relay_otx_requests",
            "Requests to AlienVault OTX (and JWKS hosts), by call and outcome (status or transport)",
            otx_requests.clone(),
        );
        let otx_seconds =
            Family::<CallLabel, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        registry.register(
            "otx_relay_otx_request_duration_seconds",
            "Time of one request to AlienVault OTX, by call",
            otx_seconds.clone(),
        );
        let otx_retries = Counter::default();
        registry.register(
            "otx_relay_otx_retries",
            "Requests to AlienVault OTX tried again (429, 502-504, resets)",
            otx_retries.clone(),
        );
        let name_lookups = Family::<Outcome, Counter>::default();
        registry.register(
            "otx_relay_dns_lookups",
            "Host names looked up (OTX, JWKS hosts, the proxy), by outcome (ok, error)",
            name_lookups.clone(),
        );
        let cache_lookups = Family::<CacheLookup, Counter>::default();
        registry.register(
            "otx_relay_cache_lookups",
            "Cache lookups, by tier (memory, redis) and result (hit, miss, shared)",
            cache_lookups.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "otx_relay_cache_entries",
            "Entries in the in-process cache",
            cache_entries.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "otx_relay_in_flight_requests",
            "Requests being answered now",
            in_flight.clone(),
        );
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("otx_relay_build_info", "The relay's version", build);
        Metrics {
            registry,
            requests,
            request_seconds,
            otx_requests,
            otx_seconds,
            otx_retries,
            name_lookups,
            cache_lookups,
            cache_entries,
            in_flight,
        }
    }

    /// A request reached a worker.
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A request was answered.
    pub fn request_done(&self, endpoint: &'static str, status: u16, took: Duration) {
        self.in_flight.dec();
        self.requests
            .get_or_create(&Request {
                endpoint,
                status: status.to_string(),
            })
            .inc();
        self.request_seconds
            .get_or_create(&Endpoint { endpoint })
            .observe(took.as_secs_f64());
    }

    /// One exchange with OTX (or a JWKS host): `status`, or `None` when no
    /// answer came (`transport`).
    pub fn otx_call(&self, call: &'static str, status: Option<u16>, took: Duration) {
        let outcome = status.map_or_else(|| "transport".to_owned(), |s| s.to_string());
        self.otx_requests
            .get_or_create(&OtxCall { call, outcome })
            .inc();
        self.otx_seconds
            .get_or_create(&CallLabel { call })
            .observe(took.as_secs_f64());
    }

    pub fn otx_retry(&self) {
        self.otx_retries.inc();
    }

    /// A host name was looked up (not an answer from the resolver's memory).
    pub fn name_lookup<T, E>(&self, outcome: &Result<T, E>) {
        let outcome = if outcome.is_ok() { "ok" } else { "error" };
        self.name_lookups.get_or_create(&Outcome { outcome }).inc();
    }

    pub fn cache_lookup(&self, tier: &'static str, lookup: Lookup) {
        let result = match lookup {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Shared => "shared",
        };
        self.cache_lookups
            .get_or_create(&CacheLookup { tier, result })
            .inc();
    }

    /// The page: the registry, then the process's own metrics.
    pub fn render(&self, cache_entries: usize) -> String {
        self.cache_entries
            .set(i64::try_from(cache_entries).unwrap_or(i64::MAX));
        let mut open_metrics = String::new();
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut open_metrics, &self.registry);
        let mut page = to_text_format(&open_metrics);
        process_metrics(&mut page);
        page
    }
}

/// OpenMetrics text (what `prometheus-client` writes) as the Prometheus
/// text format 0.0.4 that promtool and every Prometheus read: a counter's
/// `HELP` and `TYPE` name its `_total` samples, and no `# EOF` or `# UNIT`.
fn to_text_format(open_metrics: &str) -> String {
    let mut counters = Vec::new();
    for line in open_metrics.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            counters.push(name.to_owned());
        }
    }
    let mut out = String::with_capacity(open_metrics.len() + 64);
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .iter()
                .any(|c| c == name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// `process_resident_memory_bytes`, `process_open_fds` and
/// `process_cpu_seconds_total` from `/proc/self`, as the Prometheus client
/// libraries name them; left out where there is no `/proc`.
fn process_metrics(page: &mut String) {
    let mut gauge = |name: &str, help: &str, kind: &str, value: f64| {
        let _ = write!(
            page,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
        if let Some(kib) = kib {
            gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                "gauge",
                kib * 1024.0,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            fds.count() as f64,
        );
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // After the command's closing parenthesis: utime and stime are the
        // 12th and 13th fields, in clock ticks (100 a second on Linux).
        let ticks = stat.rsplit_once(')').and_then(|(_, rest)| {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime = fields.get(11)?.parse::<f64>().ok()?;
            let stime = fields.get(12)?.parse::<f64>().ok()?;
            Some(utime + stime)
        });
        if let Some(ticks) = ticks {
            gauge(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                "counter",
                ticks / 100.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_no_eof() {
        let m = Metrics::new();
        m.request_started();
        m.request_done("/version", 200, Duration::from_millis(2));
        m.otx_call("general", Some(200), Duration::from_millis(50));
        m.otx_call("general", None, Duration::from_millis(50));
        m.cache_lookup("memory", Lookup::Hit);
        let page = m.render(3);
        assert!(
            page.contains("# TYPE otx_relay_requests_total counter\n"),
            "{page}"
        );
        assert!(page.contains("otx_relay_requests_total{endpoint=\"/version\",status=\"200\"} 1\n"));
        assert!(page
            .contains("otx_relay_otx_requests_total{call=\"general\",outcome=\"transport\"} 1\n"));
        assert!(page.contains("otx_relay_cache_lookups_total{tier=\"memory\",result=\"hit\"} 1\n"));
        assert!(page.contains("otx_relay_cache_entries 3\n"));
        assert!(page.contains("otx_relay_in_flight_requests 0\n"));
        assert!(page.contains(&format!(
            "otx_relay_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(page.contains("otx_relay_request_duration_seconds_bucket{le=\"0.0025\",endpoint=\"/version\"} 1\n") ||
                page.contains("otx_relay_request_duration_seconds_bucket{endpoint=\"/version\",le=\"0.0025\"} 1\n"), "{page}");
        assert!(!page.contains("# EOF"));
        assert!(page.contains("process_open_fds "));
    }
}
