//! `make bench`: the release relay, run as a child process against the
//! harness's fake OTX with a fixed network latency, driven over HTTP.
//! Prints one table: latency (cold, warm, a popular observable), OTX calls
//! and connections, relay CPU and memory, throughput, start-up time.
//!
//! `cargo bench` passes `--bench`; without it (`cargo test --all-targets`
//! runs bench targets too) only a few-second smoke run checks the harness.
//!
//! Environment: `BENCH_LATENCY_MS` (default 50) is the fake OTX's delay
//! before each answer; `BENCH_RELAY_BIN` replaces the relay binary (to
//! compare builds); `BENCH_ONLY=popular,cold` runs only those phases
//! (`startup`, `cold`, `warm`, `popular`, `cheap`); `AVOTX_CONCURRENCY`
//! passes to the relay, whose environment is otherwise the harness's.
//!
//! Every phase is bounded in time; the whole run takes about 25 s.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use otx_relay_harness::procfs::{cpu_time, status_kib};
use otx_relay_harness::{bearer, hex, percent_decode, token, unhex};
use otx_relay_harness::{Client, FakeOtx, Recorded, Relay, RelayCommand, Reply};
use serde_json::{json, Value};

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
    let otx = FakeOtx::start();
    otx.set_latency(latency);
    let popular = if full && runs("popular") {
        popular_records()
    } else {
        Vec::new()
    };
    let pages = Mutex::new(HashMap::new());
    otx.fallback(move |request| answer(request, &popular, &pages));
    let bench = Bench {
        otx,
        latency,
        relay_bin,
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
    rows: Mutex<Vec<Row>>,
}

struct Row {
    metric: String,
    value: String,
    goal: String,
    holds: Option<bool>,
}

/// The `/observe` and `/refer` path.
const OBSERVE: &str = "/observe/observables";

impl Bench {
    fn row(&self, metric: &str, value: String, goal: &str, holds: Option<bool>) {
        self.rows.lock().unwrap().push(Row {
            metric: metric.to_owned(),
            value,
            goal: goal.to_owned(),
            holds,
        });
    }

    /// A relay against the fake; its access log is dropped, not kept.
    fn relay(&self, env: &[(&str, &str)]) -> Relay {
        let concurrency = std::env::var("AVOTX_CONCURRENCY").ok();
        let inherited = concurrency.as_deref().map(|c| ("AVOTX_CONCURRENCY", c));
        let env: Vec<(&str, &str)> = env.iter().copied().chain(inherited).collect();
        let command = RelayCommand::new(&self.relay_bin, &self.otx.url());
        (command.env(&env).quiet().start()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A keep-alive client of `relay`, with the tenant's token.
    fn client(&self, relay: &Relay) -> Client {
        Client::new(relay.addr()).header("Authorization", &bearer(&token()))
    }

    /// One cold and one warm `/observe`, `/refer`, `/version`: proves the
    /// harness works without spending time on numbers.
    fn smoke(&self) {
        let relay = self.relay(&[("CACHE_TTL", "300")]);
        let mut client = self.client(&relay);
        let body = observe_body(&observables(Some(1)));
        let answer = post(&mut client, OBSERVE, &body);
        assert!(answer.contains("\"sightings\""), "{answer}");
        let calls = self.otx.request_count();
        post(&mut client, OBSERVE, &body);
        assert_eq!(self.otx.request_count(), calls, "the warm call asked OTX");
        assert!(post(&mut client, "/version", "").contains("version"));
        let refer = observe_body(&observables(None));
        post(&mut Client::new(relay.addr()), "/refer/observables", &refer);
    }

    fn startup(&self) {
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let relay = self.relay(&[]);
                let mut client = Client::new(relay.addr());
                let until = Instant::now() + Duration::from_secs(5);
                while !client
                    .post_json("/version", "")
                    .is_ok_and(|r| r.status == 200)
                {
                    assert!(Instant::now() < until, "no 200 on /version within 5 s");
                    thread::sleep(Duration::from_micros(500));
                }
                relay.spawned().elapsed()
            })
            .collect();
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
        post(&mut client, OBSERVE, &observe_body(&observables(Some(0))));

        let otx_before = self.otx.connections();
        let requests_before = self.otx.request_count();
        let cpu_before = cpu_time(relay.pid());
        let mut times = Vec::new();
        let until = Instant::now() + Duration::from_secs(4);
        while times.len() < 40 && Instant::now() < until {
            let body = observe_body(&observables(Some(next_round())));
            let t = Instant::now();
            let answer = post(&mut client, OBSERVE, &body);
            times.push(t.elapsed());
            assert!(!answer.contains("\"errors\""), "{answer}");
        }
        let cpu = cpu_time(relay.pid()) - cpu_before;
        let calls = times.len();
        let otx_calls = self.otx.request_count() - requests_before;
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
            let run = self.load(&relay, clients, Duration::from_secs(2), OBSERVE, true, body);
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
        post(&mut client, OBSERVE, &body);
        let before = self.otx.request_count();
        let mut times = Vec::new();
        let until = Instant::now() + Duration::from_secs(3);
        while times.len() < 500 && Instant::now() < until {
            let t = Instant::now();
            post(&mut client, OBSERVE, &body);
            times.push(t.elapsed());
        }
        let otx_calls = self.otx.request_count() - before;
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
            let before = self.otx.request_count();
            let length = Duration::from_millis(1500);
            let run = self.load(&relay, clients, length, OBSERVE, true, || body.clone());
            otx_load_calls += self.otx.request_count() - before;
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
            let answer = post(&mut client, OBSERVE, &body);
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
        let peak = rss_bytes(relay.pid(), "VmHWM");
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
            let length = Duration::from_secs(2);
            let run = self.load(&relay, 64, length, path, false, || body.to_owned());
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

    /// `clients` threads, each with its own keep-alive client (with the
    /// token when `auth`), posting `body()` to `path` for `length`; the
    /// relay's VmRSS sampled meanwhile.
    fn load(
        &self,
        relay: &Relay,
        clients: usize,
        length: Duration,
        path: &str,
        auth: bool,
        body: impl Fn() -> String + Sync,
    ) -> Run {
        let stop = AtomicBool::new(false);
        let calls = AtomicUsize::new(0);
        let started = Instant::now();
        let max_rss = thread::scope(|s| {
            for _ in 0..clients {
                s.spawn(|| {
                    let mut client = if auth {
                        self.client(relay)
                    } else {
                        Client::new(relay.addr())
                    };
                    let mut mine = 0;
                    while !stop.load(Ordering::Relaxed) {
                        post(&mut client, path, &body());
                        mine += 1;
                    }
                    calls.fetch_add(mine, Ordering::Relaxed);
                });
            }
            let mut max_rss = 0;
            while started.elapsed() < length {
                thread::sleep(Duration::from_millis(50));
                max_rss = max_rss.max(rss_bytes(relay.pid(), "VmRSS"));
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

/// POSTs `body`; panics unless the relay answers 200.
fn post(client: &mut Client, path: &str, body: &str) -> String {
    let answer = (client.post_json(path, body)).unwrap_or_else(|e| panic!("POST {path}: {e}"));
    assert_eq!(answer.status, 200, "POST {path}: {}", answer.text());
    answer.text()
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
fn rss_bytes(pid: u32, name: &str) -> usize {
    status_kib(pid, name).unwrap_or(0) as usize * 1024
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

// ---------------------------------------------------------------------------
// The fake OTX's answers: any `/general` (a few pulses each, whose page 1
// holds the record) and the popular observable's big pages, sliced by
// `limit` and `page`.

/// An answer body, built once and shared by the connections that serve it.
type Body = Arc<[u8]>;

fn answer(
    request: &Recorded,
    popular: &[Vec<u8>],
    pages: &Mutex<HashMap<(usize, usize), Body>>,
) -> Reply {
    let path = request.path.as_str();
    let general = path
        .strip_prefix("/api/v1/indicators/")
        .and_then(|r| r.strip_suffix("/general"))
        .and_then(|r| r.split_once('/'));
    if let Some((_, value)) = general {
        return Reply::json(general_answer(&percent_decode(value)));
    }
    let pulse = path
        .strip_prefix("/api/v1/pulses/")
        .and_then(|r| r.strip_suffix("/indicators"));
    let param = |name: &str| {
        request
            .query_param(name)
            .and_then(|v| v.parse::<usize>().ok())
    };
    let (limit, page) = (param("limit").unwrap_or(10), param("page").unwrap_or(1));
    match pulse {
        Some(id) if id.starts_with("b0b0") => {
            let body = popular_page(popular, pages, limit.max(1), page.max(1));
            Reply {
                body,
                ..Reply::raw(200, b"")
            }
            .with_header("Content-Type", "application/json")
        }
        // `<pulse number, 2 hex digits><the value in hex>`.
        Some(id) => match (id.get(..2), id.get(2..).and_then(unhex)) {
            (Some(n), Some(value)) => {
                let n = usize::from_str_radix(n, 16).unwrap_or(0);
                Reply::json(small_page(&value, n))
            }
            _ => Reply::status(404),
        },
        None => Reply::status(404),
    }
}

/// The popular pulses' records, each serialized, newest first; the popular
/// observable's own record is the last (the slowest to find).
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

fn general_answer(value: &str) -> Value {
    let ids: Vec<String> = if value == POPULAR {
        (0..POPULAR_PULSES)
            .map(|n| format!("b0b0{n:020x}"))
            .collect()
    } else {
        (0..PULSES_PER_OBSERVABLE)
            .map(|n| format!("{n:02x}{}", hex(value)))
            .collect()
    };
    let pulses: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            json!({
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
    json!({
        "indicator": value,
        "type": "X",
        "base_indicator": {"indicator": value, "type": "X", "id": 1, "access_type": "public"},
        "pulse_info": {"count": pulses.len(), "pulses": pulses, "references": [], "related": {}},
        "validation": [],
        "false_positive": [],
        "sections": ["general", "geo", "malware", "url_list", "passive_dns"]
    })
}

/// Page 1 of pulse `n` of `value`: ten records, the value's at position `n`.
fn small_page(value: &str, n: usize) -> Value {
    let results: Vec<Value> = (0..10)
        .map(|i| {
            let indicator = if i == n {
                value.to_owned()
            } else {
                format!("other-{i}.example.org")
            };
            json!({
                "id": 2_000_000 + i, "indicator": indicator, "type": "X",
                "created": format!("2024-02-{:02}T08:00:00", 20 - i - n),
                "content": "", "title": "", "description": "", "expiration": null,
                "is_active": 1, "role": null
            })
        })
        .collect();
    json!({"results": results, "count": 10, "previous": null, "next": null})
}

/// The popular pulses' page `page` of `limit` records.
fn popular_page(
    records: &[Vec<u8>],
    pages: &Mutex<HashMap<(usize, usize), Body>>,
    limit: usize,
    page: usize,
) -> Body {
    if let Some(body) = pages.lock().unwrap().get(&(limit, page)) {
        return body.clone();
    }
    let start = (page - 1).saturating_mul(limit).min(records.len());
    let end = start.saturating_add(limit).min(records.len());
    let mut body = Vec::with_capacity((end - start) * 300 + 200);
    body.extend_from_slice(br#"{"results": ["#);
    body.extend_from_slice(&records[start..end].join(&b", "[..]));
    let next = if end < records.len() {
        format!(
            "\"https://otx.alienvault.com/api/v1/pulses/x/indicators?limit={limit}&page={}\"",
            page + 1
        )
    } else {
        "null".to_owned()
    };
    let tail = format!(
        r#"], "count": {}, "previous": null, "next": {next}}}"#,
        records.len()
    );
    body.extend_from_slice(tail.as_bytes());
    let body: Body = body.into();
    pages.lock().unwrap().insert((limit, page), body.clone());
    body
}
