//! Soak: the release relay under sustained load against a flaky fake OTX.
//!
//! `make soak` builds the relay and runs this (`cargo run --release
//! --example soak`). Self-contained: it starts the harness's fake OTX on
//! 127.0.0.1 (a thread per connection, keep-alive, 50 ms of latency, 5 % of
//! answers faulty: 500, 503, 429, a reset before the head, a head slower
//! than `AVOTX_TIMEOUT`, a truncated body), starts `target/release/otx-relay`
//! as a child against it (default `RELAY_DEADLINE`, no cache), and drives it
//! with many keep-alive clients; 5 s after the load it counts what the relay
//! still holds and stops it with SIGTERM. Then one `/observe` of 10 000
//! observables goes to a fresh relay whose deadline lets the whole answer be
//! built. It prints a summary. Nothing leaves 127.0.0.1; every loop is
//! bounded in time and in count.
//!
//! Exit status 1 when the relay answered a 5xx, printed a panic, died, left
//! a client without an answer for over 30 s, kept file descriptors after the
//! load beyond what its OTX keep-alive pool explains, exceeded
//! `AVOTX_CONCURRENCY` requests in flight at OTX during the big request,
//! failed the big request, or did not stop cleanly on SIGTERM; 2 on a setup
//! error.
//!
//! Environment (all optional): `SOAK_SECONDS` (60), `SOAK_CONCURRENCY` (200),
//! `SOAK_MAX_REQUESTS` (2 000 000), `SOAK_BIG` (observables in the big
//! request, 10 000; 0 skips it), `SOAK_RELAY` (the relay binary; default
//! `otx-relay` beside this example's directory, i.e. `target/release/`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use otx_relay_harness::procfs::{fd_count, reset_peak, status_kib};
use otx_relay_harness::{bearer, hex, jwt, percent_decode, unhex, KEY, SECRET};
use otx_relay_harness::{FakeOtx, Fault, Recorded, Relay, RelayCommand, Reply};
use serde_json::{json, Value};

/// The relay's `AVOTX_TIMEOUT` (seconds): short, so that slow heads time out.
const OTX_TIMEOUT_SECS: u64 = 1;
/// The relay's `AVOTX_CONCURRENCY`, which the fake checks during the big
/// request.
const OTX_CONCURRENCY: usize = 32;
/// `RELAY_DEADLINE` of the relay that serves the big request: long enough
/// for it to finish (about 17 500 OTX calls at 50 ms, 32 at a time). The
/// load runs on a relay with the default (25 s).
const BIG_DEADLINE_SECS: u64 = 120;
/// How long a load client waits for one answer: the default deadline and
/// then some.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// An answer later than this (the default `RELAY_DEADLINE` of 25 s, plus
/// slack) fails the soak.
const LATE_MS: u32 = 30_000;
/// The fake's latency before every answer.
const LATENCY: Duration = Duration::from_millis(50);
/// One answer in this many is a fault.
const FAULT_ONE_IN: u64 = 20;
/// File descriptors the relay may hold after the load beyond its baseline
/// and its OTX connections (a log file rotated, a pool thread's eventfd…).
const FD_MARGIN: usize = 8;
/// ureq's idle pool in the relay is `2 * max(AVOTX_CONCURRENCY, 4)`.
const OTX_IDLE_POOL: usize = 2 * OTX_CONCURRENCY;

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

fn env_number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| format!("{name} must be a whole number, not {v:?}")),
        _ => Ok(default),
    }
}

/// A relay against `fake`, its access log dropped: `AVOTX_TIMEOUT`,
/// `AVOTX_CONCURRENCY` and `env` on top of the harness's environment.
fn start_relay(binary: &PathBuf, fake: &FakeOtx, env: &[(&str, &str)]) -> Result<Relay, String> {
    let (timeout, concurrency) = (OTX_TIMEOUT_SECS.to_string(), OTX_CONCURRENCY.to_string());
    let defaults = [
        ("AVOTX_TIMEOUT", timeout.as_str()),
        ("AVOTX_CONCURRENCY", &concurrency),
    ];
    RelayCommand::new(binary, &fake.url())
        .env(&defaults)
        .env(env)
        .quiet()
        .start()
}

fn run() -> Result<bool, String> {
    let seconds = env_number("SOAK_SECONDS", 60)?.clamp(1, 3600);
    let concurrency = env_number("SOAK_CONCURRENCY", 200)?.clamp(1, 2000) as usize;
    let max_requests = env_number("SOAK_MAX_REQUESTS", 2_000_000)?.max(1);
    let big = env_number("SOAK_BIG", 10_000)?.min(20_000) as usize;
    let binary = relay_binary()?;

    let fake = FakeOtx::start_on("127.0.0.1:0").map_err(|e| format!("fake OTX: {e}"))?;
    let faults = program(&fake);
    println!("soak: fake OTX on {}", fake.url());

    // Phase 1: the load, on a relay with the default RELAY_DEADLINE.
    let mut relay = start_relay(&binary, &fake, &[])?;
    let pid = relay.pid();
    println!(
        "soak: relay pid {pid} on {} ({} s, {} clients, at most {} requests)",
        relay.url(),
        seconds,
        concurrency,
        max_requests
    );
    let monitor = Monitor::start(pid);
    thread::sleep(Duration::from_millis(500));
    let fds_before = fd_count(pid).unwrap_or(0);
    let otx_conns_before = fake.open_connections();
    let load = Tally::run(&relay.url(), seconds, concurrency, max_requests);
    let load_peak_rss = monitor.take_peak(pid);
    let load_max_in_flight = fake.take_max_in_flight();
    // Idle: whatever the load opened must be closed again by now.
    thread::sleep(Duration::from_secs(5));
    let fds_after = fd_count(pid).unwrap_or(0);
    let otx_conns_after = fake.open_connections();
    let final_rss = status_kib(pid, "VmRSS").unwrap_or(0);
    let alive = relay.alive();
    let peak_source = monitor.source();
    monitor.stop();
    let exit = relay.stop().map(|status| status.to_string());
    let mut panics = panic_lines(&relay);

    // Phase 2: one big /observe, alone, on a fresh relay whose deadline is
    // long enough for the whole answer to be built (the worst case for
    // memory): some 17 500 OTX calls of 50 ms, AVOTX_CONCURRENCY at a time.
    let big_phase = if big > 0 {
        let deadline = BIG_DEADLINE_SECS.to_string();
        let mut relay = start_relay(&binary, &fake, &[("RELAY_DEADLINE", &deadline)])?;
        let monitor = Monitor::start(relay.pid());
        let _ = fake.take_max_in_flight();
        let result = big_request(&relay.url(), big);
        let peak = monitor.take_peak(relay.pid());
        let max_in_flight = fake.take_max_in_flight();
        monitor.stop();
        let exit = relay.stop().map(|status| status.to_string());
        panics += panic_lines(&relay);
        Some((result, peak, max_in_flight, exit))
    } else {
        None
    };
    let faults: Vec<String> = (FAULT_NAMES.iter().zip(faults.iter()))
        .map(|(name, n)| format!("{name} {}", n.load(Ordering::Relaxed)))
        .collect();
    let fake_totals = format!(
        "{} requests on {} connections; faults: {}",
        fake.request_count(),
        fake.connections(),
        faults.join(", ")
    );
    drop(fake);

    // The report.
    let answered: u64 = load.statuses.values().sum();
    let server_errors: u64 = load.statuses.range(500..).map(|(_, n)| n).sum();
    println!();
    println!("== soak: {} s, {} clients ==", seconds, concurrency);
    println!(
        "requests            {} ({:.0}/s)",
        load.sent,
        load.sent as f64 / load.elapsed.as_secs_f64()
    );
    println!("answers by status   {}", counts(&load.statuses));
    println!("  by endpoint       {}", counts(&load.by_path));
    println!(
        "errors in answers   {}",
        if load.error_codes.is_empty() {
            "none".to_owned()
        } else {
            counts(&load.error_codes)
        }
    );
    println!("relay 5xx           {server_errors}");
    println!("transport errors    {}", load.transport_errors);
    for e in &load.transport_samples {
        println!("    e.g. {e}");
    }
    println!(
        "latency             p50 {} ms, p90 {} ms, p99 {} ms, max {} ms; over 10 s: {}",
        load.percentile(50.0),
        load.percentile(90.0),
        load.percentile(99.0),
        load.percentile(100.0),
        load.latencies_ms.iter().filter(|&&ms| ms > 10_000).count()
    );
    println!("  max by endpoint   {}", counts(&load.max_ms_by_path));
    println!("fake OTX            {fake_totals}");
    println!(
        "fake max in flight  {load_max_in_flight} during the load (AVOTX_CONCURRENCY \
         {OTX_CONCURRENCY})"
    );
    println!(
        "relay RSS           peak {}, final {} 5 s after the load (peak: {peak_source})",
        mb(load_peak_rss),
        mb(final_rss)
    );
    println!(
        "relay open fds      before {fds_before} (OTX connections {otx_conns_before}), \
         after {fds_after} (OTX connections {otx_conns_after}), 5 s after the load"
    );
    println!(
        "relay stop          {}",
        exit.as_deref()
            .unwrap_or("still running after 15 s: killed")
    );
    let mut big_ok = true;
    let mut big_exit_ok = true;
    if let Some((result, peak, max_in_flight, exit)) = &big_phase {
        big_ok = result.report(big, *peak, *max_in_flight);
        println!(
            "  relay stop        {}",
            exit.as_deref()
                .unwrap_or("still running after 15 s: killed")
        );
        big_exit_ok = exit.as_deref() == Some("exit status: 0");
    }
    println!("panics in stderr    {panics}");

    // The verdict.
    let mut failures = Vec::new();
    if !alive {
        failures.push("the relay died during the soak".to_owned());
    }
    if answered == 0 {
        failures.push("no request was answered".to_owned());
    }
    if server_errors > 0 {
        failures.push(format!("{server_errors} answers were 5xx"));
    }
    if panics > 0 {
        failures.push(format!("{panics} panic lines in the relay's stderr"));
    }
    // The relay answers by its deadline (25 s by default), whatever OTX
    // does; a client that waited longer, or gave up, was left unserved.
    let late = load.latencies_ms.iter().filter(|&&ms| ms > LATE_MS).count();
    if late > 0 || load.transport_errors > 0 {
        failures.push(format!(
            "{late} answers took over {LATE_MS} ms and {} requests got none",
            load.transport_errors
        ));
    }
    // Sockets to OTX kept in the relay's keep-alive pool are expected; any
    // other descriptor left over is a leak.
    let explained = otx_conns_after.saturating_sub(otx_conns_before);
    if otx_conns_after > OTX_IDLE_POOL + 1 {
        failures.push(format!(
            "{otx_conns_after} OTX connections kept, more than the idle pool of {OTX_IDLE_POOL}"
        ));
    }
    if fds_after > fds_before + explained + FD_MARGIN {
        failures.push(format!(
            "open fds grew from {fds_before} to {fds_after} ({explained} of them OTX connections)"
        ));
    }
    if !big_ok {
        failures.push("the big request failed".to_owned());
    }
    if exit.as_deref() != Some("exit status: 0") || !big_exit_ok {
        failures.push("a relay did not stop cleanly on SIGTERM".to_owned());
    }
    if failures.is_empty() {
        println!("\nsoak: PASS");
        Ok(true)
    } else {
        for f in &failures {
            println!("soak: FAIL: {f}");
        }
        Ok(false)
    }
}

fn counts<K: std::fmt::Display>(map: &BTreeMap<K, u64>) -> String {
    map.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// The relay binary: `SOAK_RELAY`, or `otx-relay` in the directory above
/// this example's (`target/release/examples/soak` → `target/release/`).
fn relay_binary() -> Result<PathBuf, String> {
    let path = match std::env::var_os("SOAK_RELAY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => std::env::current_exe()
            .map_err(|e| format!("where am I? {e}"))?
            .parent()
            .and_then(|examples| examples.parent())
            .map(|dir| dir.join("otx-relay"))
            .ok_or("cannot find the target directory")?,
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run `cargo build --release` first (make soak does)",
            path.display()
        ))
    }
}

/// Prints how much the relay wrote on stderr; returns its panic lines.
fn panic_lines(relay: &Relay) -> u64 {
    let stderr = relay.stderr();
    let first = stderr.lines().next().unwrap_or("-");
    println!(
        "relay stderr        {} lines; first: {first}",
        stderr.lines().count()
    );
    let panics: Vec<&str> = stderr.lines().filter(|l| l.contains("panicked")).collect();
    for line in &panics {
        eprintln!("relay: {line}");
    }
    panics.len() as u64
}

// ---------------------------------------------------------------------------
// A small random source (no dependency): xorshift64*, seeded per thread.

struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Rng((nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A stable hash of a value (FNV-1a), so the fake answers the same value the
/// same way every time.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

// ---------------------------------------------------------------------------
// The fake OTX: the harness's, with 50 ms of latency, the answers of
// `answer_for` and one fault in `FAULT_ONE_IN`.

const FAULT_NAMES: [&str; 6] = ["500", "503", "429", "reset", "slow head", "truncated"];

/// Programs `fake`; returns the count of each fault, by `FAULT_NAMES`.
fn program(fake: &FakeOtx) -> Arc<[AtomicU64; 6]> {
    let faults = Arc::new([(); 6].map(|()| AtomicU64::new(0)));
    let counts = Arc::clone(&faults);
    let rng = Mutex::new(Rng::new(0));
    fake.set_latency(LATENCY);
    fake.fallback(move |request| {
        let answer = answer_for(request);
        let fault = {
            let mut rng = rng.lock().unwrap();
            (rng.below(FAULT_ONE_IN) == 0).then(|| rng.below(6) as usize)
        };
        let Some(kind) = fault else {
            return answer;
        };
        counts[kind].fetch_add(1, Ordering::Relaxed);
        match kind {
            0 => Reply::status(500),
            1 => Reply::status(503),
            2 => Reply::status(429),
            // RST instead of FIN: the relay sees a reset before the head.
            3 => answer.with_fault(Fault::ResetBeforeHead),
            // Hold the head past the relay's timeout (a close ends the
            // wait). The relay gives up AVOTX_TIMEOUT after it sent the
            // request: a little before that, the request stops counting as
            // in flight, so that the count never depends on how soon the
            // relay's close wakes the fake.
            4 => Reply {
                in_flight_for: Some(Duration::from_millis(OTX_TIMEOUT_SECS * 1000 - 150)),
                ..answer.with_head_delay(Duration::from_millis(OTX_TIMEOUT_SECS * 1000 + 450))
            },
            _ => answer
                .with_fault(Fault::TruncateBody)
                .with_header("Connection", "close"),
        }
    });
    faults
}

/// OTX's `base_indicator.type` for a section.
fn base_type(section: &str) -> &'static str {
    match section {
        "IPv4" => "IPv4",
        "IPv6" => "IPv6",
        "domain" => "domain",
        "file" => "FileHash-SHA256",
        "url" => "URL",
        _ => "unknown",
    }
}

/// The fake's OTX: `/user/me`, `/general` (0, 0, 1 or 2 pulses per value,
/// stable) and pulse pages (one or two pages; the pulse id carries the
/// value, hex-encoded, so the page can list it).
fn answer_for(request: &Recorded) -> Reply {
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    match segments[..] {
        ["api", "v1", "user", "me"] => Reply::json(json!({"username": "soak"})),
        ["api", "v1", "indicators", section, value, "general"] => {
            let value = percent_decode(value);
            let pulses = [0, 0, 1, 2][(fnv(&value) % 4) as usize];
            if pulses == 0 && fnv(&value).is_multiple_of(8) {
                return Reply::status(404);
            }
            let kind = base_type(section);
            let pulses: Vec<Value> = (0..pulses)
                .map(|k| {
                    json!({
                        "id": format!("p{k}-{}", hex(&value)),
                        "name": format!("Soak pulse {k} for {value}"),
                        "description": "A pulse the soak's fake OTX made up.",
                        "author": {"username": "soak"},
                        "tags": ["soak", "fake"],
                        "TLP": "white",
                        "indicator_type_counts": {kind: 1},
                    })
                })
                .collect();
            Reply::json(json!({
                "indicator": value,
                "base_indicator": {"indicator": value, "type": kind},
                "pulse_info": {"count": pulses.len(), "pulses": pulses},
                "validation": [],
                "false_positive": [],
            }))
        }
        ["api", "v1", "pulses", id, "indicators"] => {
            let id = percent_decode(id);
            let Some(value) = id.split_once('-').and_then(|(_, h)| unhex(h)) else {
                return Reply::status(404);
            };
            let page = request.query_param("page");
            let page: u32 = page.and_then(|p| p.parse().ok()).unwrap_or(1);
            let two_pages = fnv(&id).is_multiple_of(3);
            let filler = |i: u32| json!({"indicator": format!("filler-{i}.example"), "created": "2019-01-01T00:00:00", "expiration": null});
            let (results, next) = if two_pages && page == 1 {
                ((0..20).map(filler).collect::<Vec<_>>(), json!("page=2"))
            } else {
                let mut r: Vec<Value> = (0..5).map(filler).collect();
                r.push(json!({
                    "indicator": value,
                    "created": format!("2024-0{}-01T00:00:00", 1 + fnv(&id) % 9),
                    "expiration": "2025-01-01T00:00:00",
                }));
                (r, Value::Null)
            };
            Reply::json(json!({"count": results.len(), "results": results, "next": next}))
        }
        _ => Reply::status(404),
    }
}

/// Samples the relay's RSS and open fds every second; prints a line every
/// ten.
struct Monitor {
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    /// Whether `VmHWM` can be reset (root, Linux 4.0+).
    hwm_resets: bool,
    handle: JoinHandle<()>,
}

impl Monitor {
    fn start(pid: u32) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kb = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, peak_kb) = (Arc::clone(&stop), Arc::clone(&peak_kb));
            thread::spawn(move || {
                let start = Instant::now();
                // Bounded: at most ten hours of samples.
                for tick in 0..36_000u64 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let (Some(rss), Some(fds)) = (status_kib(pid, "VmRSS"), fd_count(pid)) else {
                        return;
                    };
                    peak_kb.fetch_max(rss, Ordering::SeqCst);
                    if tick % 10 == 0 {
                        println!(
                            "soak: t={:>4.0}s  relay RSS {:>8}  open fds {fds}",
                            start.elapsed().as_secs_f64(),
                            mb(rss)
                        );
                    }
                    thread::sleep(Duration::from_secs(1));
                }
            })
        };
        Monitor {
            stop,
            peak_kb,
            hwm_resets: reset_peak(pid),
            handle,
        }
    }

    /// The peak RSS (kB) since the last call: the kernel's `VmHWM`, reset
    /// for the next phase, or (where it cannot be reset) the highest
    /// 1 s sample.
    fn take_peak(&self, pid: u32) -> u64 {
        let sampled = self.peak_kb.swap(0, Ordering::SeqCst);
        match status_kib(pid, "VmHWM") {
            Some(hwm) if self.hwm_resets => {
                reset_peak(pid);
                hwm.max(sampled)
            }
            _ => sampled,
        }
    }

    /// How the peaks are measured.
    fn source(&self) -> &'static str {
        if self.hwm_resets {
            "VmHWM"
        } else {
            "1 s samples"
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.handle.join();
    }
}

// ---------------------------------------------------------------------------
// The clients.

/// `Bearer <token>` for the soak's tenant, valid for an hour.
fn auth() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    bearer(&jwt(
        SECRET,
        &json!({"key": KEY, "exp": now.as_secs() + 3600}),
    ))
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(timeout))
        .max_idle_connections(1)
        .max_idle_connections_per_host(1)
        .build()
        .into()
}

/// The observables the clients pick from: every supported type, a mixed-case
/// domain and hash, and two the relay drops (email, an unknown type).
fn observable_pool() -> Vec<Value> {
    let mut pool = Vec::new();
    for i in 0..16u32 {
        pool.push(json!({"type": "ip", "value": format!("198.51.100.{i}")}));
        pool.push(json!({"type": "domain", "value": format!("Host{i}.Example.com")}));
        pool.push(json!({"type": "sha256", "value": format!("{:064X}", fnv(&i.to_string()))}));
        pool.push(json!({"type": "url", "value": format!("http://h{i}.example.com/p?q={i}")}));
    }
    pool.push(json!({"type": "ipv6", "value": "2001:db8::1"}));
    pool.push(json!({"type": "md5", "value": "d41d8cd98f00b204e9800998ecf8427e"}));
    pool.push(json!({"type": "email", "value": "soak@example.com"}));
    pool.push(json!({"type": "hostname", "value": "ignored"}));
    pool
}

/// What clients saw: each client's own, then all of them merged.
#[derive(Default)]
struct Tally {
    sent: u64,
    elapsed: Duration,
    statuses: BTreeMap<u16, u64>,
    by_path: BTreeMap<&'static str, u64>,
    error_codes: BTreeMap<String, u64>,
    transport_errors: u64,
    transport_samples: Vec<String>,
    latencies_ms: Vec<u32>,
    max_ms_by_path: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn run(url: &str, seconds: u64, concurrency: usize, max_requests: u64) -> Tally {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        let issued = Arc::new(AtomicU64::new(0));
        let pool = Arc::new(observable_pool());
        let auth = Arc::new(auth());
        let clients: Vec<JoinHandle<Tally>> = (0..concurrency)
            .map(|n| {
                let (url, issued, pool, auth) = (
                    url.to_owned(),
                    Arc::clone(&issued),
                    Arc::clone(&pool),
                    Arc::clone(&auth),
                );
                thread::Builder::new()
                    .name(format!("client-{n}"))
                    .spawn(move || client(n, &url, deadline, &issued, max_requests, &pool, &auth))
                    .expect("spawn a client thread")
            })
            .collect();
        let mut load = Tally::default();
        for c in clients {
            let Ok(t) = c.join() else {
                load.transport_errors += 1;
                continue;
            };
            for (k, n) in t.statuses {
                *load.statuses.entry(k).or_default() += n;
            }
            for (k, n) in t.by_path {
                *load.by_path.entry(k).or_default() += n;
            }
            for (k, n) in t.error_codes {
                *load.error_codes.entry(k).or_default() += n;
            }
            load.transport_errors += t.transport_errors;
            let room = 5 - load.transport_samples.len().min(5);
            load.transport_samples
                .extend(t.transport_samples.into_iter().take(room));
            load.latencies_ms.extend(t.latencies_ms);
            for (k, ms) in t.max_ms_by_path {
                let max = load.max_ms_by_path.entry(k).or_default();
                *max = (*max).max(ms);
            }
        }
        load.elapsed = started.elapsed();
        load.sent = issued.load(Ordering::SeqCst).min(max_requests);
        load.latencies_ms.sort_unstable();
        load
    }

    fn percentile(&self, p: f64) -> u32 {
        if self.latencies_ms.is_empty() {
            return 0;
        }
        let i = ((p / 100.0) * (self.latencies_ms.len() - 1) as f64).round() as usize;
        self.latencies_ms[i]
    }
}

fn client(
    n: usize,
    url: &str,
    deadline: Instant,
    issued: &AtomicU64,
    max_requests: u64,
    pool: &[Value],
    auth: &str,
) -> Tally {
    let agent = agent(CLIENT_TIMEOUT);
    let mut rng = Rng::new(1000 + n as u64);
    let mut tally = Tally::default();
    while Instant::now() < deadline && issued.fetch_add(1, Ordering::SeqCst) < max_requests {
        let roll = rng.below(100);
        let path = match roll {
            0..=79 => "/observe/observables",
            80..=89 => "/refer/observables",
            _ => "/health",
        };
        let body = if path == "/health" {
            "{}".to_owned()
        } else {
            let k = 1 + rng.below(4) as usize;
            let items: Vec<&Value> = (0..k)
                .map(|_| &pool[rng.below(pool.len() as u64) as usize])
                .collect();
            serde_json::to_string(&items).unwrap_or_default()
        };
        let started = Instant::now();
        let result = agent
            .post(format!("{url}{path}"))
            .header("Authorization", auth)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .and_then(|mut r| {
                let status = r.status().as_u16();
                let bytes = r.body_mut().with_config().limit(64 << 20).read_to_vec()?;
                Ok((status, bytes))
            });
        match result {
            Ok((status, bytes)) => {
                let ms = started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
                tally.latencies_ms.push(ms);
                let max = tally.max_ms_by_path.entry(path).or_default();
                *max = (*max).max(u64::from(ms));
                *tally.statuses.entry(status).or_default() += 1;
                *tally.by_path.entry(path).or_default() += 1;
                let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if answer.is_null() {
                    *tally
                        .error_codes
                        .entry("<answer not JSON>".into())
                        .or_default() += 1;
                }
                if let Some(errors) = answer.get("errors").and_then(Value::as_array) {
                    for e in errors {
                        let code = e.get("code").and_then(Value::as_str).unwrap_or("?");
                        *tally.error_codes.entry(code.to_owned()).or_default() += 1;
                    }
                }
            }
            Err(e) => {
                tally.transport_errors += 1;
                if tally.transport_samples.len() < 2 {
                    tally.transport_samples.push(format!("{path}: {e}"));
                }
            }
        }
    }
    tally
}

// ---------------------------------------------------------------------------
// The big request.

struct BigResult {
    status: Option<u16>,
    elapsed: Duration,
    bytes: usize,
    sightings: usize,
    verdicts: usize,
    error_codes: Vec<String>,
    transport_error: Option<String>,
}

fn big_request(url: &str, count: usize) -> BigResult {
    let body: Vec<Value> = (0..count)
        .map(|i| json!({"type": "ip", "value": format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255)}))
        .collect();
    let body = serde_json::to_vec(&body).unwrap_or_default();
    println!(
        "soak: one /observe with {count} observables ({} bytes)",
        body.len()
    );
    let started = Instant::now();
    let result = agent(Duration::from_secs(BIG_DEADLINE_SECS + 60))
        .post(format!("{url}/observe/observables"))
        .header("Authorization", &auth())
        .header("Content-Type", "application/json")
        .send(&body[..])
        .and_then(|mut r| {
            let status = r.status().as_u16();
            let bytes = r.body_mut().with_config().limit(1 << 30).read_to_vec()?;
            Ok((status, bytes))
        });
    let elapsed = started.elapsed();
    match result {
        Ok((status, bytes)) => {
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let count_of = |kind: &str| {
                answer
                    .pointer(&format!("/data/{kind}/count"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as usize
            };
            let mut error_codes: Vec<String> = answer
                .get("errors")
                .and_then(Value::as_array)
                .map(|es| {
                    es.iter()
                        .map(|e| {
                            format!(
                                "{}: {}",
                                e["code"].as_str().unwrap_or("?"),
                                e["message"].as_str().unwrap_or("?")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if answer.is_null() {
                error_codes.push("<answer not JSON>".into());
            }
            BigResult {
                status: Some(status),
                elapsed,
                bytes: bytes.len(),
                sightings: count_of("sightings"),
                verdicts: count_of("verdicts"),
                error_codes,
                transport_error: None,
            }
        }
        Err(e) => BigResult {
            status: None,
            elapsed,
            bytes: 0,
            sightings: 0,
            verdicts: 0,
            error_codes: Vec::new(),
            transport_error: Some(e.to_string()),
        },
    }
}

impl BigResult {
    /// Prints the big request's figures; whether it passed.
    fn report(&self, count: usize, peak_rss_kb: u64, max_in_flight: usize) -> bool {
        println!(
            "big /observe        {count} observables: status {}, {:.1} s, {} bytes, \
             {} sightings, {} verdicts",
            self.status
                .map_or_else(|| "none".to_owned(), |s| s.to_string()),
            self.elapsed.as_secs_f64(),
            self.bytes,
            self.sightings,
            self.verdicts
        );
        for e in self.error_codes.iter().take(6) {
            println!("    error: {e}");
        }
        if let Some(e) = &self.transport_error {
            println!("    transport error: {e}");
        }
        println!(
            "  relay RSS peak    {} (a fresh relay, RELAY_DEADLINE {BIG_DEADLINE_SECS} s)",
            mb(peak_rss_kb)
        );
        println!(
            "  OTX in flight     at most {max_in_flight} (AVOTX_CONCURRENCY {OTX_CONCURRENCY})"
        );
        let timed_out = self.error_codes.iter().any(|e| e.starts_with("timeout"));
        self.status == Some(200)
            && !timed_out
            && self.sightings > 0
            && !self.error_codes.iter().any(|e| e.starts_with('<'))
            && max_in_flight <= OTX_CONCURRENCY
    }
}
