//! `make bench`: the release relay, run as a child process against the
//! harness's synthetic OTX (50 ms of latency per answer), driven over HTTP;
//! prints one table. Phases: `startup`, `cold`, `warm`, `popular`, `cheap`
//! (`/refer`, `/version`), `big` (10 000- and 2 000-observable answers),
//! `rs256` (XDR's tokens), `tiles` (1 000 subscribed pulses) and `fleet`
//! (four relays sharing a real `redis-server`, and `/metrics`).
//!
//! `cargo bench` passes `--bench`; without it (`make test` runs benches
//! too) a smoke run of a few seconds checks the harness instead.
//! `BENCH_ONLY=cold,warm` runs some phases; `BENCH_LATENCY_MS` changes the
//! latency, `BENCH_RELAY_BIN` the relay binary (to compare builds), and
//! `AVOTX_CONCURRENCY` passes to the relay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use otx_relay::auth::{verify_with, KeySource, RsaKey, Verifier};
use otx_relay::error::RelayError;
use otx_relay_harness::load::{mib, ms, percentile, run, timed, Load, Table};
use otx_relay_harness::procfs::{cpu_time, reset_peak, status_kib};
use otx_relay_harness::synth::{POPULAR, POPULAR_PULSES, POPULAR_RECORDS};
use otx_relay_harness::{bearer, token, Client, FakeOtx, RedisServer, Relay, RelayCommand};
use otx_relay_harness::{Reply, SigningKey, Synth};
use serde_json::{json, Value};

const OBSERVE: &str = "/observe/observables";
const SECOND: Duration = Duration::from_secs(1);

struct Bench {
    bin: String,
    otx: FakeOtx,
    latency: Duration,
    table: Table,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let latency = std::env::var("BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok());
    let latency = Duration::from_millis(latency.unwrap_or(if full { 50 } else { 5 }));
    let bin = std::env::var("BENCH_RELAY_BIN");
    let bin = bin.unwrap_or(env!("CARGO_BIN_EXE_otx-relay").into());
    let (otx, table) = (FakeOtx::start(), Table::default());
    let bench = Bench {
        bin,
        otx,
        latency,
        table,
    };
    bench.otx.set_latency(latency);
    Synth::new(3).serve(&bench.otx);
    if !full {
        return bench.smoke();
    }
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "otx-relay bench: {} on {cores} CPU(s), OTX latency {latency:?}",
        bench.bin
    );
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    type Phase = fn(&Bench);
    let phases: [(&str, Phase); 9] = [
        ("startup", Bench::startup),
        ("cold", Bench::cold),
        ("warm", Bench::warm),
        ("popular", Bench::popular),
        ("cheap", Bench::cheap),
        ("big", Bench::big),
        ("rs256", Bench::rs256),
        ("tiles", Bench::tiles),
        ("fleet", Bench::fleet),
    ];
    for (name, phase) in phases {
        if only.is_empty() || only.split(',').any(|p| p.trim() == name) {
            phase(&bench);
        }
    }
    bench.table.print();
}

impl Bench {
    /// A relay against `otx`, its access log dropped.
    fn relay_of(&self, otx: &FakeOtx, env: &[(&str, &str)]) -> Relay {
        let mut command = RelayCommand::new(&self.bin, &otx.url()).env(env).quiet();
        if let Ok(concurrency) = std::env::var("AVOTX_CONCURRENCY") {
            command = command.env(&[("AVOTX_CONCURRENCY", &concurrency)]);
        }
        command.start().unwrap_or_else(|e| panic!("{e}"))
    }

    fn relay(&self, env: &[(&str, &str)]) -> Relay {
        self.relay_of(&self.otx, env)
    }

    /// A cold and a warm `/observe`, `/version`: the harness works.
    fn smoke(&self) {
        let relay = self.relay(&[("CACHE_TTL", "300")]);
        let mut client = client(&relay);
        let body = observe_body(Some(1));
        assert!(post(&mut client, OBSERVE, &body).contains("\"sightings\""));
        let calls = self.otx.request_count();
        post(&mut client, OBSERVE, &body);
        assert_eq!(self.otx.request_count(), calls, "the warm call asked OTX");
        assert!(post(&mut client, "/version", "").contains("version"));
        println!("bench smoke run ok (run `make bench` for the measurements)");
    }

    fn startup(&self) {
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let relay = self.relay(&[]);
                let mut client = Client::new(relay.addr());
                while !client
                    .post_json("/version", "")
                    .is_ok_and(|r| r.status == 200)
                {
                    assert!(relay.spawned().elapsed() < 5 * SECOND, "no 200 in 5 s");
                    thread::sleep(Duration::from_micros(500));
                }
                relay.spawned().elapsed()
            })
            .collect();
        times.sort();
        let (median, goal) = (times[2], Duration::from_millis(50));
        let metric = "start-up to first 200 on /version (median of 5)";
        self.table
            .goal(metric, ms(median), "<= 50 ms", median <= goal);
    }

    fn cold(&self) {
        let (relay, otx, table) = (self.relay(&[("CACHE_TTL", "0")]), &self.otx, &self.table);
        let mut client = client(&relay);
        post(&mut client, OBSERVE, &observe_body(Some(0))); // connects the pool
        let (connections, requests) = (otx.connections(), otx.request_count());
        let cpu = cpu_time(relay.pid());
        // Made before the clock starts: each round's values are new.
        let bodies: Vec<String> = (1..=40).map(|n| observe_body(Some(n))).collect();
        let times = timed(40, 4 * SECOND, |n| {
            let answer = post(&mut client, OBSERVE, &bodies[n]);
            assert!(!answer.contains("\"errors\""), "{answer}");
        });
        let n = times.len();
        let cpu = (cpu_time(relay.pid()) - cpu) / n as f64;
        let otx_calls = (otx.request_count() - requests) as f64 / n as f64;
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        let ratio = p50.as_secs_f64() / (self.latency * 2).as_secs_f64();
        let value = format!("{} / {} (n={n})", ms(p50), ms(p99));
        table.note("cold /observe, 8 observables: p50 / p99", value);
        let value = format!("{ratio:.2} x of {}", ms(self.latency * 2));
        table.goal("cold p50 / 2-RTT floor", value, "<= 1.2 x", ratio <= 1.2);
        table.note("OTX calls per cold /observe", format!("{otx_calls:.1}"));
        let value = format!("{:.2} ms", cpu * 1000.0);
        table.goal(
            "relay CPU per cold /observe",
            value,
            "<= 5 ms",
            cpu <= 0.005,
        );
        let (mut calls, mut rss) = (n, 0);
        for clients in [16, 64] {
            let load = observe_load(&relay, clients, 2 * SECOND, |n| observe_body(Some(n + 100)));
            (calls, rss) = (calls + load.calls.len(), rss.max(load.peak_rss));
            let metric = format!("cold /observe throughput, c={clients}");
            table.note(&metric, format!("{:.0} req/s", load.per_second()));
        }
        let opened = otx.connections() - connections;
        let per_100 = opened as f64 * 100.0 / calls as f64;
        let value = format!("{per_100:.2} ({opened} for {calls} calls)");
        table.note("new OTX connections per 100 cold /observe", value);
        // The relay keeps 2 × max(AVOTX_CONCURRENCY, 4) idle connections.
        let concurrency = std::env::var("AVOTX_CONCURRENCY")
            .ok()
            .and_then(|v| v.parse().ok());
        let (pool, total) = (
            concurrency.unwrap_or(32_usize).max(4) * 2,
            otx.connections(),
        );
        let (metric, goal) = (
            "OTX connections ever opened by the cold relay",
            format!("<= {pool}"),
        );
        table.goal(metric, total.to_string(), &goal, total <= pool);
        let metric = "relay RSS under cold load (peak)";
        table.goal(metric, mib(rss), "<= 30 MiB", rss <= 30 << 20);
    }

    fn warm(&self) {
        let relay = self.relay(&[("CACHE_TTL", "300")]);
        let mut client = client(&relay);
        let body = observe_body(Some(7));
        post(&mut client, OBSERVE, &body);
        let before = self.otx.request_count();
        let times = timed(500, 3 * SECOND, |_| drop(post(&mut client, OBSERVE, &body)));
        let (p50, p99, n) = (
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.len(),
        );
        let value = format!("{} / {} (n={n})", ms(p50), ms(p99));
        let metric = "warm /observe (CACHE_TTL=300): p50 / p99";
        self.table.goal(
            metric,
            value,
            "p50 <= 5 ms",
            p50 <= Duration::from_millis(5),
        );
        let mut rss = 0;
        for clients in [16, 64] {
            let load = observe_load(&relay, clients, 3 * SECOND / 2, |_| body.clone());
            rss = rss.max(load.peak_rss);
            let metric = format!("warm /observe throughput, c={clients}");
            self.table
                .note(&metric, format!("{:.0} req/s", load.per_second()));
        }
        let calls = self.otx.request_count() - before;
        self.table
            .goal("OTX calls while warm", calls.to_string(), "0", calls == 0);
        let metric = "relay RSS under warm load (peak)";
        self.table
            .goal(metric, mib(rss), "<= 30 MiB", rss <= 30 << 20);
    }

    fn popular(&self) {
        let relay = self.relay(&[("CACHE_TTL", "0")]);
        let mut client = client(&relay);
        let body = json!([{"type": "domain", "value": POPULAR}]).to_string();
        let bytes = self.otx.bytes();
        let times = timed(12, 6 * SECOND, |_| {
            let answer = post(&mut client, OBSERVE, &body);
            assert_eq!(
                answer.matches("\"type\":\"sighting\"").count(),
                POPULAR_PULSES
            );
        });
        let served = mib((self.otx.bytes() - bytes) / times.len() as u64);
        let (p50, n) = (percentile(&times, 0.5), times.len());
        let metric = format!(
            "popular /observe ({POPULAR_PULSES} pulses x {POPULAR_RECORDS} records, {served}): p50"
        );
        let holds = p50 <= Duration::from_millis(250);
        self.table
            .goal(&metric, format!("{} (n={n})", ms(p50)), "<= 250 ms", holds);
        let peak = status_kib(relay.pid(), "VmHWM").unwrap_or(0) * 1024;
        let metric = "relay peak RSS after popular (VmHWM)";
        self.table
            .goal(metric, mib(peak), "<= 64 MiB", peak <= 64 << 20);
    }

    fn cheap(&self) {
        let relay = self.relay(&[]);
        let refer = observe_body(None);
        for (path, body) in [("/refer/observables", refer.as_str()), ("/version", "")] {
            let cpu = cpu_time(relay.pid());
            let load = run(
                relay.pid(),
                64,
                2 * SECOND,
                || Client::new(relay.addr()),
                |c, _| {
                    post(c, path, body);
                },
            );
            let cpu = (cpu_time(relay.pid()) - cpu) * 1e6 / load.calls.len().max(1) as f64;
            let rps = load.per_second();
            let value = format!("{rps:.0} req/s (relay CPU {cpu:.1} us/req)");
            let metric = format!("{path} at c=64 (keep-alive)");
            match path {
                "/version" => self.table.note(&metric, value),
                _ => self
                    .table
                    .goal(&metric, value, ">= 30000 req/s", rps >= 30_000.0),
            }
        }
    }

    /// One big `/observe` (every IP in one pulse, no latency): the relay's
    /// peak RSS against the answer's size, and OTX requests in flight.
    fn big(&self) {
        let otx = FakeOtx::start();
        Synth::new(1).serve(&otx);
        for n in [10_000, 2_000] {
            let env = [
                ("RELAY_DEADLINE", "300"),
                ("CACHE_TTL", "0"),
                ("AVOTX_TIMEOUT", "60"),
            ];
            let relay = self.relay_of(&otx, &env);
            let ip = |i: usize| format!("10.{}.{}.{}", i >> 16, i >> 8 & 255, i & 255);
            let ips = (0..n).map(|i| json!({"type": "ip", "value": ip(i)}));
            let body = Value::Array(ips.collect()).to_string();
            let before = status_kib(relay.pid(), "VmRSS").unwrap_or(0) * 1024;
            assert!(
                reset_peak(relay.pid()),
                "cannot reset the peak RSS (/proc/PID/clear_refs)"
            );
            let _ = otx.take_max_in_flight();
            let (started, mut client) = (Instant::now(), client(&relay).timeout(600 * SECOND));
            let answer = client.post_json(OBSERVE, &body).expect("an answer");
            let took = started.elapsed().as_secs_f64();
            let peak = status_kib(relay.pid(), "VmHWM").unwrap_or(0) * 1024;
            let parsed: Value = serde_json::from_slice(&answer.body).expect("JSON");
            assert_eq!(
                parsed["data"]["sightings"]["count"], n,
                "every observable found"
            );
            let (size, in_flight) = (answer.body.len() as u64, otx.take_max_in_flight());
            let ratio = peak as f64 / size as f64;
            if n == 10_000 {
                let value = format!(
                    "{}, {}, {ratio:.2} x (in {took:.1} s)",
                    mib(size),
                    mib(peak)
                );
                let metric = "10 000-observable /observe: answer, peak RSS, peak / answer";
                self.table.goal(metric, value, "<= 3 x", ratio <= 3.0);
                let metric = "... its OTX requests in flight at most";
                self.table
                    .goal(metric, in_flight.to_string(), "<= 32", in_flight <= 32);
            } else {
                let growth = peak.saturating_sub(before) as f64 / size as f64;
                let value = format!("{growth:.2} bytes ({} -> {} peak)", mib(before), mib(peak));
                let metric = "2 000-observable /observe: RSS growth per answer byte";
                self.table
                    .goal(metric, value, "< 9.3 (older relay)", growth < 9.3);
            }
        }
    }

    /// The relay's RS256 check itself (its library), with the keys cached.
    fn rs256(&self) {
        struct OneKey(RsaKey);
        impl KeySource for OneKey {
            fn key(&self, _host: &str, _kid: Option<&str>) -> Result<RsaKey, RelayError> {
                Ok(self.0.clone())
            }
        }
        let signer = SigningKey::generate("k1");
        let ((n, e), kid) = (signer.public(), "k1".to_owned());
        let keys = OneKey(RsaKey { kid, n, e });
        let (now, audience) = (now(), "https://relay.example");
        let claims = json!({"key": "k", "jwks_host": "jwks", "aud": audience, "exp": now + 3600});
        let header = bearer(&signer.sign(&json!({"alg": "RS256", "kid": "k1"}), &claims));
        let audiences = [audience.to_owned()];
        let verifier = Verifier {
            secret: None,
            audiences: &audiences,
            keys: Some(&keys),
        };
        let verify = || verify_with(Some(&header), &verifier, now as f64);
        assert!(verify().is_ok(), "the token verifies");
        let each = timed(1, SECOND, |_| (0..2_000).for_each(|_| drop(verify())))[0] / 2_000;
        let metric = "RS256 token check with cached keys, per request";
        self.table
            .note(metric, format!("{:.1} us", each.as_secs_f64() * 1e6));
    }

    /// tile-data over 1 000 subscribed pulses of 1 000 indicators (20 pages).
    fn tiles(&self) {
        let indicators: Vec<Value> = (0..1_000)
            .map(|i| {
                let ip = format!("198.51.{}.{}", i / 256, i % 256);
                json!({"id": i, "indicator": ip, "type": "IPv4", "created": "2026-11-29T10:00:00"})
            })
            .collect();
        let otx = FakeOtx::start();
        otx.set_latency(self.latency);
        for page in 0..20 {
            let pulses: Vec<Value> = (page * 50..page * 50 + 50)
                .map(|n| {
                    let modified = otx_relay::time::format_seconds(now() - 60 - n * 300);
                    json!({"id": format!("{n:024x}"), "name": format!("Pulse {n}"),
                           "author_name": "analyst", "modified": modified,
                           "adversary": format!("APT {}", n % 7), "indicators": indicators,
                           "malware_families": [format!("family-{}", n % 11)]})
                })
                .collect();
            let next = (page < 19).then_some("https://otx/next");
            let reply = Reply::json(json!({"count": 1_000, "next": next, "results": pulses}));
            otx.on_page("/api/v1/pulses/subscribed", page as u32 + 1, reply);
        }
        let relay = self.relay_of(&otx, &[("RELAY_DEADLINE", "60"), ("TILE_CACHE_TTL", "600")]);
        reset_peak(relay.pid());
        let tile = |id: &str| {
            let body = json!({"tile_id": id, "period": "last_30_days"}).to_string();
            let answer = client(&relay).post_json("/tiles/tile-data", &body);
            serde_json::from_slice::<Value>(&answer.expect("an answer").body).expect("JSON")
        };
        let took = timed(1, SECOND, |_| {
            let summary = tile("otx-activity-summary");
            assert_eq!(summary["data"]["data"][0]["value"], 1_000, "{summary}");
            assert_eq!(summary["data"]["data"][1]["value"], 1_000_000);
        })[0];
        let peak = status_kib(relay.pid(), "VmHWM").unwrap_or(0) * 1024;
        // One OTX request per page, one after the other (the next page's
        // URL is in the last).
        let floor = self.latency * 20;
        let ratio = took.as_secs_f64() / floor.as_secs_f64();
        let value = format!(
            "{} = {ratio:.2} x of {}, {}",
            ms(took),
            ms(floor),
            mib(peak)
        );
        let metric =
            "tile-data, 1 000 pulses x 1 000 indicators (20 pages): time / 20-RTT floor, peak RSS";
        self.table.goal(
            metric,
            value,
            "<= 2 x, <= 64 MiB",
            ratio <= 2.0 && peak <= 64 << 20,
        );
        let next = timed(1, SECOND, |_| drop(tile("otx-top-malware")))[0];
        self.table
            .note("the next tile of that dashboard (cached walk)", ms(next));
    }

    fn fleet(&self) {
        let Some(redis) = RedisServer::start() else {
            return self
                .table
                .note("fleet", "skipped: no redis-server".to_owned());
        };
        let otx = FakeOtx::start();
        otx.set_latency(self.latency);
        Synth::new(1).serve(&otx);
        let url = redis.url();
        let env = [("REDIS_URL", url.as_str()), ("CACHE_TTL", "300")];
        let relays: Vec<Relay> = (0..4).map(|_| self.relay_of(&otx, &env)).collect();
        // 1 000 identical requests, spread over the 4 relays, 40 at a time.
        let body = json!([{"type": "ip", "value": "10.100.100.100"}]).to_string();
        let before = otx.request_count();
        thread::scope(|s| {
            for w in 0..40 {
                let (relays, body) = (&relays, &body);
                s.spawn(move || {
                    let mut clients: Vec<Client> = relays.iter().map(client).collect();
                    (0..25).for_each(|i| drop(post(&mut clients[(w + i) % 4], OBSERVE, body)));
                });
            }
        });
        let calls = otx.request_count() - before;
        let metric = "OTX calls for 1 000 identical /observe on 4 relays (2 URLs)";
        self.table
            .goal(metric, calls.to_string(), "1 per URL", calls == 2);
        // Warm from Redis: relay 0 asks OTX, then relay 1 answers.
        let (mut first, mut second) = (client(&relays[0]), client(&relays[1]));
        let mut times: Vec<Duration> = (0..50)
            .map(|i| {
                let body = json!([{"type": "ip", "value": format!("10.101.100.{i}")}]).to_string();
                post(&mut first, OBSERVE, &body);
                let calls = otx.request_count();
                let time = timed(1, SECOND, |_| drop(post(&mut second, OBSERVE, &body)));
                assert_eq!(otx.request_count(), calls, "the second relay asked OTX");
                time[0]
            })
            .collect();
        times.sort();
        let p50 = percentile(&times, 0.5);
        let metric = "warm /observe from Redis, by a relay that never asked OTX: p50";
        self.table
            .goal(metric, ms(p50), "<= 3 ms", p50 <= Duration::from_millis(3));
        // The cost of /metrics: warm p50 without it, then scraped every second.
        let warm = |metrics: &str| {
            let relay = self.relay_of(&otx, &[("CACHE_TTL", "300"), ("METRICS", metrics)]);
            let stop = AtomicBool::new(false);
            thread::scope(|s| {
                s.spawn(|| {
                    while metrics == "on" && !stop.load(Ordering::SeqCst) {
                        let _ = Client::new(relay.addr()).send("GET", "/metrics", &[], b"");
                        thread::sleep(SECOND);
                    }
                });
                let mut c = client(&relay);
                post(&mut c, OBSERVE, &body);
                let times = timed(2_000, 60 * SECOND, |_| drop(post(&mut c, OBSERVE, &body)));
                stop.store(true, Ordering::SeqCst);
                percentile(&times, 0.5)
            })
        };
        let value = format!("{} / {}", ms(warm("off")), ms(warm("on")));
        let metric = "warm /observe p50: METRICS=off / on and scraped every second";
        self.table.note(metric, value);
    }
}

/// `clients` clients posting `body(n)` to `/observe` for `length`.
fn observe_load(
    relay: &Relay,
    clients: usize,
    length: Duration,
    body: impl Fn(u64) -> String + Sync,
) -> Load<()> {
    run(
        relay.pid(),
        clients,
        length,
        || client(relay),
        |c, n| drop(post(c, OBSERVE, &body(n))),
    )
}

/// A keep-alive client of `relay` with the tenant's token.
fn client(relay: &Relay) -> Client {
    Client::new(relay.addr()).header("Authorization", &bearer(&token()))
}

/// POSTs `body`; panics unless the relay answers 200.
fn post(client: &mut Client, path: &str, body: &str) -> String {
    let answer = client
        .post_json(path, body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    assert_eq!(answer.status, 200, "POST {path}: {}", answer.text());
    answer.text()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The observables of `observables.json`; with `Some(round)` their values
/// are varied (keeping their shape), so that each round is new to the relay.
fn observe_body(round: Option<u64>) -> String {
    let list: Value = serde_json::from_str(include_str!("../observables.json")).expect("JSON");
    let varied = list.as_array().into_iter().flatten().map(|o| {
        let (kind, value) = (
            o["type"].as_str().unwrap_or(""),
            o["value"].as_str().unwrap_or(""),
        );
        let Some(n) = round else { return o.clone() };
        let value = match kind {
            "ip" => format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255),
            "ipv6" => format!("2001:db8::{:x}", n & 0xffff),
            "domain" | "email" => format!("r{n}.{value}"),
            "url" => format!("{value}&r={n}"),
            _ => format!("{}{n:08x}", &value[..value.len() - 8]),
        };
        json!({"type": kind, "value": value})
    });
    Value::Array(varied.collect()).to_string()
}
