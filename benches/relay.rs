//! `make bench`: the release relay, run as a child process against an
//! in-process fake OTX with a fixed network latency, driven over HTTP.
//! Prints one table: latency (cold, warm, a popular observable), OTX calls
//! and connections, relay CPU and memory, throughput, start-up time.
//!
//! `cargo bench` passes `--bench`; without it (`cargo test --all-targets`
//! runs bench targets too) only a few-second smoke run checks the harness.
//!
//! Environment: `BENCH_LATENCY_MS` (default 50) is the fake OTX's delay
//! before each answer; `BENCH_RELAY_BIN` replaces the relay binary (to
//! compare builds); `BENCH_ONLY=popular,cold` runs only those phases
//! (`startup`, `cold`, `warm`, `popular`, `cheap`).
//!
//! Every phase is bounded in time; the whole run takes about 25 s.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "bench-secret-key-that-is-at-least-32-bytes-long";
const OTX_KEY: &str = "bench-otx-key-0123456789abcdef";
/// The observable with many big pulses.
const POPULAR: &str = "popular.example.com";
const POPULAR_PULSES: usize = 50;
const POPULAR_RECORDS: usize = 5000;
/// Pulses of every other observable; their record is on page 1.
const PULSES_PER_OBSERVABLE: usize = 3;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let latency = Duration::from_millis(
        std::env::var("BENCH_LATENCY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if full { 50 } else { 5 }),
    );
    let relay_bin = std::env::var("BENCH_RELAY_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_otx-relay").to_owned());
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let runs = |phase: &str| only.is_empty() || only.split(',').any(|p| p.trim() == phase);
    let started = Instant::now();
    let otx = FakeOtx::start(latency, full && runs("popular"));
    let bench = Bench {
        otx,
        latency,
        relay_bin,
        token: jwt(SECRET, OTX_KEY),
        rows: Mutex::new(Vec::new()),
    };
    if !full {
        bench.smoke();
        println!("bench smoke run ok (run `make bench` for the measurements)");
        return;
    }
    println!(
        "otx-relay bench: {} on {} CPU(s), fake OTX latency {} ms (BENCH_LATENCY_MS)",
        bench.relay_bin,
        thread::available_parallelism().map_or(1, |n| n.get()),
        latency.as_millis()
    );
    type Phase = fn(&Bench);
    let phases: [(&str, Phase); 5] = [
        ("startup", Bench::startup),
        ("cold", Bench::cold),
        ("warm", Bench::warm),
        ("popular", Bench::popular),
        ("cheap", Bench::cheap_endpoints),
    ];
    for (name, phase) in phases {
        if runs(name) {
            phase(&bench);
        }
    }
    bench.print();
    println!("whole run: {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------
// The phases

struct Bench {
    otx: FakeOtx,
    latency: Duration,
    relay_bin: String,
    token: String,
    rows: Mutex<Vec<Row>>,
}

struct Row {
    metric: String,
    value: String,
    goal: String,
    holds: Option<bool>,
}

impl Bench {
    fn row(&self, metric: &str, value: String, goal: &str, holds: Option<bool>) {
        self.rows.lock().unwrap().push(Row {
            metric: metric.to_owned(),
            value,
            goal: goal.to_owned(),
            holds,
        });
    }

    fn relay(&self, env: &[(&str, &str)]) -> RelayProcess {
        RelayProcess::start(&self.relay_bin, &self.otx.url(), env)
    }

    fn client(&self, relay: &RelayProcess) -> Client {
        Client::connect(relay.addr).with_token(&self.token)
    }

    /// One cold and one warm `/observe`, `/refer`, `/version`: proves the
    /// harness works without spending time on numbers.
    fn smoke(&self) {
        let relay = self.relay(&[("CACHE_TTL", "300")]);
        let mut client = self.client(&relay);
        let body = observe_body(&observables(Some(1)));
        let answer = client.post("/observe/observables", &body);
        assert!(answer.contains("\"sightings\""), "{answer}");
        let calls = self.otx.requests();
        client.post("/observe/observables", &body);
        assert_eq!(self.otx.requests(), calls, "the warm call asked OTX");
        assert!(client.post("/version", "").contains("version"));
        let refer = observe_body(&observables(None));
        Client::connect(relay.addr).post("/refer/observables", &refer);
    }

    fn startup(&self) {
        let mut times: Vec<Duration> = (0..5).map(|_| self.relay(&[]).startup).collect::<Vec<_>>();
        times.sort();
        let median = times[times.len() / 2];
        self.row(
            "start-up to first 200 on /version (median of 5)",
            ms(median),
            "<= 50 ms",
            Some(median <= Duration::from_millis(50)),
        );
    }

    fn cold(&self) {
        let relay = self.relay(&[("CACHE_TTL", "0")]);
        let mut client = self.client(&relay);
        let floor = self.latency * 2;
        // Warm the connection pool once (the first call also connects).
        client.post("/observe/observables", &observe_body(&observables(Some(0))));

        let otx_before = self.otx.connections();
        let requests_before = self.otx.requests();
        let cpu_before = cpu_time(relay.pid());
        let mut times = Vec::new();
        let until = Instant::now() + Duration::from_secs(4);
        while times.len() < 40 && Instant::now() < until {
            let body = observe_body(&observables(Some(next_round())));
            let t = Instant::now();
            let answer = client.post("/observe/observables", &body);
            times.push(t.elapsed());
            assert!(!answer.contains("\"errors\""), "{answer}");
        }
        let cpu = cpu_time(relay.pid()) - cpu_before;
        let calls = times.len();
        let otx_calls = self.otx.requests() - requests_before;
        times.sort();
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        let ratio = p50.as_secs_f64() / floor.as_secs_f64();
        self.row(
            "cold /observe, 8 observables: p50 / p99",
            format!("{} / {}  (n={calls})", ms(p50), ms(p99)),
            "",
            None,
        );
        self.row(
            "cold p50 / 2-RTT floor",
            format!("{ratio:.2}x of {}", ms(floor)),
            "<= 1.2x",
            Some(ratio <= 1.2),
        );
        self.row(
            "OTX calls per cold /observe",
            format!("{:.1}", otx_calls as f64 / calls as f64),
            "",
            None,
        );
        let cpu_per = cpu / calls as f64;
        self.row(
            "relay CPU per cold /observe",
            format!("{:.2} ms", cpu_per * 1000.0),
            "<= 5 ms",
            Some(cpu_per <= 0.005),
        );

        let mut rss = 0;
        let mut throughput = |clients| {
            let body = || observe_body(&observables(Some(next_round())));
            let run = self.load(&relay, clients, Duration::from_secs(2), body);
            rss = rss.max(run.max_rss);
            self.row(
                &format!("cold /observe throughput, c={clients}"),
                format!("{:.0} req/s", run.per_second()),
                "",
                None,
            );
            run.calls
        };
        let load_calls = throughput(16) + throughput(64);
        let connections = self.otx.connections() - otx_before;
        let total_calls = calls + load_calls;
        self.row(
            "new OTX connections per 100 cold /observe",
            format!(
                "{:.2}  ({connections} for {total_calls} calls)",
                connections as f64 * 100.0 / total_calls as f64
            ),
            "",
            None,
        );
        // The relay keeps 2 × max(AVOTX_CONCURRENCY, 4) idle connections.
        let concurrency = std::env::var("AVOTX_CONCURRENCY")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(32);
        let pool = concurrency.max(4) * 2;
        let total = self.otx.connections();
        self.row(
            "OTX connections ever opened by the cold relay",
            format!("{total}"),
            &format!("<= pool ({pool})"),
            Some(total <= pool),
        );
        self.row(
            "relay RSS under cold load (max VmRSS)",
            mib(rss),
            "<= 30 MiB",
            Some(rss <= 30 << 20),
        );
    }

    fn warm(&self) {
        let relay = self.relay(&[("CACHE_TTL", "300")]);
        let mut client = self.client(&relay);
        let body = observe_body(&observables(Some(7)));
        client.post("/observe/observables", &body);
        let before = self.otx.requests();
        let mut times = Vec::new();
        let until = Instant::now() + Duration::from_secs(3);
        while times.len() < 500 && Instant::now() < until {
            let t = Instant::now();
            client.post("/observe/observables", &body);
            times.push(t.elapsed());
        }
        let otx_calls = self.otx.requests() - before;
        times.sort();
        let p50 = percentile(&times, 0.5);
        self.row(
            "warm /observe (CACHE_TTL=300): p50 / p99",
            format!(
                "{} / {}  (n={})",
                ms(p50),
                ms(percentile(&times, 0.99)),
                times.len()
            ),
            "p50 <= 5 ms",
            Some(p50 <= Duration::from_millis(5)),
        );
        let mut rss = 0;
        let mut otx_load_calls = 0;
        for clients in [16, 64] {
            let before = self.otx.requests();
            let run = self.load(&relay, clients, Duration::from_millis(1500), || {
                body.clone()
            });
            otx_load_calls += self.otx.requests() - before;
            rss = rss.max(run.max_rss);
            self.row(
                &format!("warm /observe throughput, c={clients}"),
                format!("{:.0} req/s", run.per_second()),
                "",
                None,
            );
        }
        self.row(
            "OTX calls while warm",
            format!("{}", otx_calls + otx_load_calls),
            "0",
            Some(otx_calls + otx_load_calls == 0),
        );
        self.row(
            "relay RSS under warm load (max VmRSS)",
            mib(rss),
            "<= 30 MiB",
            Some(rss <= 30 << 20),
        );
    }

    fn popular(&self) {
        let relay = self.relay(&[("CACHE_TTL", "0")]);
        let mut client = self.client(&relay);
        let body = observe_body(&[("domain", POPULAR.to_owned())]);
        let bytes_before = self.otx.bytes();
        let mut times = Vec::new();
        let until = Instant::now() + Duration::from_secs(6);
        while times.len() < 12 && Instant::now() < until {
            let t = Instant::now();
            let answer = client.post("/observe/observables", &body);
            times.push(t.elapsed());
            let found = answer.matches("\"type\":\"sighting\"").count();
            assert_eq!(
                found,
                POPULAR_PULSES,
                "{}",
                &answer[..answer.len().min(500)]
            );
        }
        let served = (self.otx.bytes() - bytes_before) / times.len() as u64;
        times.sort();
        let p50 = percentile(&times, 0.5);
        self.row(
            &format!(
                "popular /observe ({POPULAR_PULSES} pulses x {POPULAR_RECORDS} records, {} of JSON): p50",
                mib(served as usize)
            ),
            format!("{}  (n={})", ms(p50), times.len()),
            "<= 250 ms",
            Some(p50 <= Duration::from_millis(250)),
        );
        let peak = status_kib(relay.pid(), "VmHWM") * 1024;
        self.row(
            "relay peak RSS after popular (VmHWM)",
            mib(peak),
            "<= 64 MiB",
            Some(peak <= 64 << 20),
        );
    }

    fn cheap_endpoints(&self) {
        let relay = self.relay(&[]);
        let refer = observe_body(&observables(None));
        for (path, body) in [("/refer/observables", refer.as_str()), ("/version", "")] {
            let cpu_before = cpu_time(relay.pid());
            let run = raw_load(relay.addr, 64, Duration::from_secs(2), path, body);
            let cpu = cpu_time(relay.pid()) - cpu_before;
            let rps = run.per_second();
            let goal = if path == "/version" {
                ""
            } else {
                ">= 30000 req/s"
            };
            self.row(
                &format!("{path} at c=64 (keep-alive)"),
                format!(
                    "{rps:.0} req/s  (relay CPU {:.1} us/req)",
                    cpu * 1e6 / run.calls.max(1) as f64
                ),
                goal,
                (path != "/version").then_some(rps >= 30_000.0),
            );
        }
    }

    /// `clients` threads, each with its own keep-alive client, posting
    /// `/observe` bodies for `length`; VmRSS sampled meanwhile.
    fn load(
        &self,
        relay: &RelayProcess,
        clients: usize,
        length: Duration,
        body: impl Fn() -> String + Sync,
    ) -> Run {
        let stop = AtomicBool::new(false);
        let calls = AtomicUsize::new(0);
        let started = Instant::now();
        let max_rss = thread::scope(|s| {
            for _ in 0..clients {
                s.spawn(|| {
                    let mut client = self.client(relay);
                    while !stop.load(Ordering::Relaxed) {
                        client.post("/observe/observables", &body());
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            let mut max_rss = 0;
            while started.elapsed() < length {
                thread::sleep(Duration::from_millis(50));
                max_rss = max_rss.max(status_kib(relay.pid(), "VmRSS") * 1024);
            }
            stop.store(true, Ordering::Relaxed);
            max_rss
        });
        Run {
            calls: calls.into_inner(),
            elapsed: started.elapsed(),
            max_rss,
        }
    }

    fn print(&self) {
        let rows = self.rows.lock().unwrap();
        let width = |f: fn(&Row) -> &str, title: &str| {
            rows.iter()
                .map(|r| f(r).chars().count())
                .max()
                .unwrap_or(0)
                .max(title.len())
        };
        let (w1, w2, w3) = (
            width(|r| &r.metric, "metric"),
            width(|r| &r.value, "value"),
            width(|r| &r.goal, "goal"),
        );
        let mut out = String::new();
        let line = format!(
            "+-{}-+-{}-+-{}-+------+",
            "-".repeat(w1),
            "-".repeat(w2),
            "-".repeat(w3)
        );
        let _ = writeln!(out, "{line}");
        let _ = writeln!(
            out,
            "| {:w1$} | {:w2$} | {:w3$} | ok?  |",
            "metric", "value", "goal"
        );
        let _ = writeln!(out, "{line}");
        for r in rows.iter() {
            let holds = match r.holds {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            let _ = writeln!(
                out,
                "| {:w1$} | {:w2$} | {:w3$} | {holds:4} |",
                r.metric, r.value, r.goal
            );
        }
        let _ = writeln!(out, "{line}");
        print!("{out}");
    }
}

struct Run {
    calls: usize,
    elapsed: Duration,
    max_rss: usize,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// Distinct values for each round, so that no cache or single-flight merges
/// the calls of two rounds.
fn next_round() -> u64 {
    static ROUND: AtomicU64 = AtomicU64::new(1000);
    ROUND.fetch_add(1, Ordering::Relaxed)
}

/// The observables of `observables.json`; with `Some(round)` their values
/// are varied (keeping their shape) so that each round is new to the relay.
fn observables(round: Option<u64>) -> Vec<(&'static str, String)> {
    let text = include_str!("../observables.json");
    let list: Vec<serde_json::Value> = serde_json::from_str(text).expect("observables.json");
    list.iter()
        .map(|o| {
            let kind = match o["type"].as_str().expect("a type") {
                "ip" => "ip",
                "ipv6" => "ipv6",
                "domain" => "domain",
                "url" => "url",
                "md5" => "md5",
                "sha1" => "sha1",
                "sha256" => "sha256",
                _ => "email",
            };
            let value = o["value"].as_str().expect("a value").to_owned();
            let Some(n) = round else {
                return (kind, value);
            };
            let varied = match kind {
                "ip" => format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255),
                "ipv6" => format!("2001:db8::{:x}", n & 0xffff),
                "domain" | "email" => format!("r{n}.{value}"),
                "url" => format!("{value}&r={n}"),
                _ => format!("{}{n:08x}", &value[..value.len() - 8]),
            };
            (kind, varied)
        })
        .collect()
}

fn observe_body(observables: &[(&str, String)]) -> String {
    let list: Vec<serde_json::Value> = observables
        .iter()
        .map(|(t, v)| serde_json::json!({"type": t, "value": v}))
        .collect();
    serde_json::Value::Array(list).to_string()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn jwt(secret: &str, key: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::json!({ "key": key }).to_string());
    let input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

// ---------------------------------------------------------------------------
// /proc

/// CPU time of `pid` in seconds: the sum of its threads' run times from
/// `/proc/<pid>/task/*/schedstat` (nanoseconds; the relay's threads live as
/// long as it does), else utime + stime from `/proc/<pid>/stat` (ticks of
/// 1/100 s, the Linux USER_HZ, too coarse for short phases).
fn cpu_time(pid: u32) -> f64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let from_schedstat: Option<u64> = tasks.ok().and_then(|tasks| {
        tasks
            .map(|task| {
                let path = task.ok()?.path().join("schedstat");
                let text = std::fs::read_to_string(path).ok()?;
                text.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    });
    if let Some(ns) = from_schedstat {
        return ns as f64 / 1e9;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, name: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The relay under test

struct RelayProcess {
    child: Child,
    addr: SocketAddr,
    /// From spawn to the first 200 on `/version`.
    startup: Duration,
}

impl RelayProcess {
    fn start(bin: &str, otx_url: &str, env: &[(&str, &str)]) -> RelayProcess {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut command = Command::new(bin);
            for (name, _) in std::env::vars() {
                let upper = name.to_ascii_uppercase();
                if upper.ends_with("_PROXY") || upper.starts_with("CACHE_") || upper == "PORT" {
                    command.env_remove(name);
                }
            }
            command
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string())
                .env("SECRET_KEY", SECRET)
                .env("AVOTX_URL", otx_url)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let started = Instant::now();
            let mut child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
            while started.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // The port was taken meanwhile: try another.
                }
                if version_ok(addr) {
                    return RelayProcess {
                        child,
                        addr,
                        startup: started.elapsed(),
                    };
                }
                thread::sleep(Duration::from_micros(500));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("{bin} did not answer /version within 5 s");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn version_ok(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut client = Client::from_stream(addr, stream);
    client
        .send("/version", "")
        .is_ok_and(|(status, _)| status == 200)
}

/// A minimal keep-alive HTTP/1.1 client of the relay (`Content-Length` or
/// chunked answers), written by hand so that the load generator costs less
/// CPU than the relay it measures and the bench links no TLS stack.
struct Client {
    addr: SocketAddr,
    auth: Option<String>,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("cannot connect to the relay at {addr}: {e}"));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        Client::from_stream(addr, stream)
    }

    fn from_stream(addr: SocketAddr, stream: TcpStream) -> Client {
        let _ = stream.set_nodelay(true);
        let writer = stream.try_clone().expect("clone a TCP stream");
        Client {
            addr,
            auth: None,
            reader: BufReader::new(stream),
            writer,
            request: Vec::new(),
            line: String::new(),
            body: Vec::new(),
        }
    }

    fn with_token(mut self, token: &str) -> Client {
        self.auth = Some(format!("Bearer {token}"));
        self
    }

    /// POSTs `body`; panics unless the relay answers 200. A connection the
    /// relay closed is opened again once.
    fn post(&mut self, path: &str, body: &str) -> String {
        let (status, answer) = self
            .send(path, body)
            .or_else(|_| {
                let auth = self.auth.take();
                *self = Client::connect(self.addr);
                self.auth = auth;
                self.send(path, body)
            })
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert_eq!(status, 200, "POST {path}: {answer}");
        answer
    }

    fn send(&mut self, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        self.request.clear();
        let _ = write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(auth) = &self.auth {
            let _ = write!(self.request, "Authorization: {auth}\r\n");
        }
        let _ = write!(self.request, "\r\n{body}");
        self.writer.write_all(&self.request)?;
        let (mut length, mut chunked, mut status) = (0, false, 0);
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            } else if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.to_ascii_lowercase().contains("chunked");
                }
            }
        }
        self.body.clear();
        if chunked {
            loop {
                let size = self.read_line()?;
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !self.read_line()?.is_empty() {}
                    break;
                }
                let start = self.body.len();
                self.body.resize(start + size, 0);
                self.reader.read_exact(&mut self.body[start..])?;
                self.read_line()?;
            }
        } else {
            self.body.resize(length, 0);
            self.reader.read_exact(&mut self.body)?;
        }
        Ok((status, String::from_utf8_lossy(&self.body).into_owned()))
    }

    /// One line without its CRLF; EOF is an error.
    fn read_line(&mut self) -> std::io::Result<String> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(self.line.trim_end().to_owned())
    }
}

/// `clients` raw keep-alive clients posting `body` to `path` for `length`.
fn raw_load(addr: SocketAddr, clients: usize, length: Duration, path: &str, body: &str) -> Run {
    let stop = AtomicBool::new(false);
    let calls = AtomicUsize::new(0);
    let started = Instant::now();
    thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let mut client = Client::connect(addr);
                let mut mine = 0;
                while !stop.load(Ordering::Relaxed) {
                    client.post(path, body);
                    mine += 1;
                }
                calls.fetch_add(mine, Ordering::Relaxed);
            });
        }
        thread::sleep(length);
        stop.store(true, Ordering::Relaxed);
    });
    Run {
        calls: calls.into_inner(),
        elapsed: started.elapsed(),
        max_rss: 0,
    }
}

// ---------------------------------------------------------------------------
// The fake OTX

/// An HTTP/1.1 OTX stand-in: thread per connection, keep-alive,
/// `Content-Length`, a fixed delay before each answer. It answers any
/// `/general` (a few pulses each, whose page 1 holds the record) and
/// the popular observable's big pages, sliced by `limit` and `page`.
struct FakeOtx {
    addr: SocketAddr,
    state: Arc<OtxState>,
}

/// An answer body, shared between the connections that serve it.
type Body = Arc<Vec<u8>>;

struct OtxState {
    latency: Duration,
    connections: AtomicUsize,
    requests: AtomicUsize,
    bytes: AtomicU64,
    /// The popular pulses' records, each serialized, newest first; the
    /// popular observable's own record is the last (the slowest to find).
    popular: Vec<Vec<u8>>,
    /// Popular pages already built, by (limit, page).
    pages: Mutex<HashMap<(usize, usize), Body>>,
}

impl FakeOtx {
    fn start(latency: Duration, popular: bool) -> FakeOtx {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake OTX");
        let addr = listener.local_addr().expect("the fake OTX's address");
        let records = if popular {
            popular_records()
        } else {
            Vec::new()
        };
        let state = Arc::new(OtxState {
            latency,
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            popular: records,
            pages: Mutex::new(HashMap::new()),
        });
        let shared = state.clone();
        // The accept loop ends with the process.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let state = shared.clone();
                thread::spawn(move || serve(stream, &state));
            }
        });
        FakeOtx { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    fn bytes(&self) -> u64 {
        self.state.bytes.load(Ordering::SeqCst)
    }
}

fn popular_records() -> Vec<Vec<u8>> {
    (0..POPULAR_RECORDS)
        .map(|i| {
            let last = i == POPULAR_RECORDS - 1;
            let indicator = if last {
                POPULAR.to_owned()
            } else {
                format!("host-{i:05}.campaign.example.net")
            };
            let day = 28 - (i * 28 / POPULAR_RECORDS);
            format!(
                r#"{{"id": {}, "indicator": "{indicator}", "type": "domain", "created": "2024-03-{day:02}T12:{:02}:{:02}", "content": "", "title": "", "description": "", "expiration": null, "is_active": 1, "false_positive": {{"assessment": null}}, "role": null}}"#,
                3_100_000_000u64 + i as u64,
                i % 60,
                (i / 60) % 60
            )
            .into_bytes()
        })
        .collect()
}

fn serve(stream: TcpStream, state: &OtxState) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let target = line.split(' ').nth(1).unwrap_or("").to_owned();
        // Skip the headers (a GET has no body).
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.trim_end().is_empty() => break,
                Ok(_) => {}
            }
        }
        state.requests.fetch_add(1, Ordering::SeqCst);
        let (status, body) = answer(state, &target);
        thread::sleep(state.latency);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        state
            .bytes
            .fetch_add((head.len() + body.len()) as u64, Ordering::Relaxed);
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
            return;
        }
    }
}

fn answer(state: &OtxState, target: &str) -> (&'static str, Body) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let not_found = || {
        (
            "404 Not Found",
            Arc::new(br#"{"detail": "Not found."}"#.to_vec()),
        )
    };
    if let Some(rest) = path
        .strip_prefix("/api/v1/indicators/")
        .and_then(|r| r.strip_suffix("/general"))
    {
        let Some((_, value)) = rest.split_once('/') else {
            return not_found();
        };
        return ("200 OK", Arc::new(general(&percent_decode(value))));
    }
    if let Some(id) = path
        .strip_prefix("/api/v1/pulses/")
        .and_then(|r| r.strip_suffix("/indicators"))
    {
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse::<usize>().ok())
        };
        let (limit, page) = (param("limit").unwrap_or(10), param("page").unwrap_or(1));
        if id.starts_with("b0b0") {
            return ("200 OK", popular_page(state, limit.max(1), page.max(1)));
        }
        // `<pulse number, 2 hex digits><the value in hex>`.
        let value = unhex(id.get(2..).unwrap_or(""));
        let Some(value) = value else {
            return not_found();
        };
        let n = usize::from_str_radix(&id[..2], 16).unwrap_or(0);
        return ("200 OK", Arc::new(small_page(&value, n)));
    }
    not_found()
}

fn general(value: &str) -> Vec<u8> {
    let ids: Vec<String> = if value == POPULAR {
        (0..POPULAR_PULSES)
            .map(|n| format!("b0b0{n:020x}"))
            .collect()
    } else {
        (0..PULSES_PER_OBSERVABLE)
            .map(|n| format!("{n:02x}{}", hex(value)))
            .collect()
    };
    let pulses: Vec<serde_json::Value> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            serde_json::json!({
                "id": id,
                "name": format!("Campaign {n} infrastructure"),
                "description": "Indicators observed in a phishing and malware campaign.",
                "author": {"username": "bench-analyst", "id": "1"},
                "tags": ["phishing", "malware", "c2"],
                "TLP": "white",
                "created": "2024-03-01T10:00:00.000000",
                "modified": "2024-03-02T10:00:00.000000",
                "indicator_count": 5000,
                "indicator_type_counts": {"X": 1},
                "references": [],
                "targeted_countries": [],
                "malware_families": [],
                "attack_ids": [],
                "industries": []
            })
        })
        .collect();
    serde_json::json!({
        "indicator": value,
        "type": "X",
        "base_indicator": {"indicator": value, "type": "X", "id": 1, "access_type": "public"},
        "pulse_info": {"count": pulses.len(), "pulses": pulses, "references": [], "related": {}},
        "validation": [],
        "false_positive": [],
        "sections": ["general", "geo", "malware", "url_list", "passive_dns"]
    })
    .to_string()
    .into_bytes()
}

/// Page 1 of pulse `n` of `value`: ten records, the value's at position `n`.
fn small_page(value: &str, n: usize) -> Vec<u8> {
    let results: Vec<serde_json::Value> = (0..10)
        .map(|i| {
            let indicator = if i == n {
                value.to_owned()
            } else {
                format!("other-{i}.example.org")
            };
            serde_json::json!({
                "id": 2_000_000 + i, "indicator": indicator, "type": "X",
                "created": format!("2024-02-{:02}T08:00:00", 20 - i - n),
                "content": "", "title": "", "description": "", "expiration": null,
                "is_active": 1, "role": null
            })
        })
        .collect();
    serde_json::json!({"results": results, "count": 10, "previous": null, "next": null})
        .to_string()
        .into_bytes()
}

fn popular_page(state: &OtxState, limit: usize, page: usize) -> Body {
    if let Some(body) = state.pages.lock().unwrap().get(&(limit, page)) {
        return body.clone();
    }
    let start = (page - 1).saturating_mul(limit).min(state.popular.len());
    let end = start.saturating_add(limit).min(state.popular.len());
    let mut body = Vec::with_capacity((end - start) * 300 + 200);
    body.extend_from_slice(br#"{"results": ["#);
    for (i, record) in state.popular[start..end].iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(b", ");
        }
        body.extend_from_slice(record);
    }
    let next = if end < state.popular.len() {
        format!(
            "\"https://otx.alienvault.com/api/v1/pulses/x/indicators?limit={limit}&page={}\"",
            page + 1
        )
    } else {
        "null".to_owned()
    };
    let _ = write!(
        body,
        r#"], "count": {}, "previous": null, "next": {next}}}"#,
        state.popular.len()
    );
    let body = Arc::new(body);
    state
        .pages
        .lock()
        .unwrap()
        .insert((limit, page), body.clone());
    body
}

fn hex(s: &str) -> String {
    s.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
