//! `make bench`, part two: the figures of the capabilities added since the
//! first landing, each against the harness's fake OTX (and, for the fleet,
//! a real `redis-server`), printed as one table:
//!
//! - big answers: peak RSS of a 10 000-observable `/observe` against the
//!   answer's size, and RSS growth per answer byte on 2 000 observables;
//! - RS256 (XDR's tokens): verification cost per request with cached keys;
//! - tiles: a tile-data call over 1 000 subscribed pulses × 1 000
//!   indicators each: time against the 2-RTT-per-page floor, peak RSS;
//! - the fleet: a warm `/observe` served from Redis by a relay that never
//!   asked OTX, OTX calls for 1 000 identical requests on 4 relays, and the
//!   cost of `/metrics` (scraped every second) on the warm `/observe` p50.
//!
//! `cargo bench` passes `--bench`; without it (`make test` runs bench
//! targets too) it only checks that it builds. `BENCH_ONLY=big,rs256,tiles,fleet`
//! runs some phases; `BENCH_RELAY_BIN` replaces the relay binary.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use otx_relay::auth::{verify_with, KeySource, Verifier};
use otx_relay::error::RelayError;
use otx_relay::jwks::RsaKey;
use otx_relay_harness::procfs::{reset_peak, status_kib};
use otx_relay_harness::{bearer, token, Client, FakeOtx, RedisServer, Relay, RelayCommand, Reply};
use serde_json::{json, Value};

const OBSERVE: &str = "/observe/observables";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("capabilities bench: built (run `make bench` for the measurements)");
        return;
    }
    let bin = std::env::var("BENCH_RELAY_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_otx-relay").to_owned());
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let runs = |phase: &str| only.is_empty() || only.split(',').any(|p| p.trim() == phase);
    let table = Table::default();
    if runs("big") {
        big_answers(&bin, &table);
    }
    if runs("rs256") {
        rs256(&table);
    }
    if runs("tiles") {
        tiles(&bin, &table);
    }
    if runs("fleet") {
        fleet(&bin, &table);
    }
    table.print();
}

#[derive(Default)]
struct Table(Mutex<Vec<[String; 3]>>);

impl Table {
    fn row(&self, metric: &str, value: String, goal: &str) {
        let mut rows = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rows.push([metric.to_owned(), value, goal.to_owned()]);
    }

    fn print(&self) {
        let rows = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        let (a, b, c) = (width(0), width(1), width(2));
        for r in rows.iter() {
            println!("| {:a$} | {:b$} | {:c$} |", r[0], r[1], r[2]);
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn p50(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn start(bin: &str, otx: &FakeOtx, env: &[(&str, &str)]) -> Relay {
    RelayCommand::new(bin, &otx.url())
        .env(env)
        .quiet()
        .start()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn client(relay: &Relay) -> Client {
    Client::new(relay.addr()).header("Authorization", &bearer(&token()))
}

/// Every IP is in one pulse, whose page holds its record.
fn serve_every_ip(otx: &FakeOtx) {
    otx.fallback(|request| {
        let path = request.path.as_str();
        if let Some(ip) = path
            .strip_prefix("/api/v1/indicators/IPv4/")
            .and_then(|p| p.strip_suffix("/general"))
        {
            let pulse = format!("{:0>24}", ip.replace('.', ""));
            return Reply::json(
                json!({"base_indicator": {"type": "IPv4"}, "pulse_info": {"pulses": [{
                "id": pulse, "name": format!("A pulse about {ip} and its campaign"),
                "description": "Indicators seen in a phishing campaign; blocked at the perimeter.",
                "author": {"username": "analyst"}, "TLP": "green", "tags": ["phishing", "campaign"],
                "indicator_type_counts": {"IPv4": 1}}]}}),
            );
        }
        if let Some(pulse) = path
            .strip_prefix("/api/v1/pulses/")
            .and_then(|p| p.strip_suffix("/indicators"))
        {
            let digits = pulse.trim_start_matches('0');
            let ip = ip_from_digits(digits);
            return Reply::json(
                json!({"results": [{"indicator": ip, "created": "2026-11-01T10:00:00",
                "expiration": "2026-12-01T10:00:00"}], "next": null}),
            );
        }
        Reply::status(404)
    });
}

/// The IPs of the big answers: 10.a.b.c, written without dots in pulse ids.
fn ips(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "10.{}.{}.{}",
                100 + i / 10_000,
                100 + i / 100 % 100,
                100 + i % 100
            )
        })
        .collect()
}

fn ip_from_digits(digits: &str) -> String {
    // "10" then three groups of three digits (each 100..=199).
    let d = digits.trim_start_matches('0');
    if d.len() != 11 {
        return String::new();
    }
    format!("{}.{}.{}.{}", &d[..2], &d[2..5], &d[5..8], &d[8..11])
}

fn big_answers(bin: &str, table: &Table) {
    let otx = FakeOtx::start();
    serve_every_ip(&otx);
    for n in [2_000, 10_000] {
        let relay = start(
            bin,
            &otx,
            &[
                ("RELAY_DEADLINE", "300"),
                ("CACHE_TTL", "0"),
                ("AVOTX_TIMEOUT", "60"),
            ],
        );
        let body = Value::Array(
            ips(n)
                .iter()
                .map(|ip| json!({"type": "ip", "value": ip}))
                .collect(),
        )
        .to_string();
        let before = status_kib(relay.pid(), "VmRSS").unwrap_or(0) * 1024;
        let exact_peak = reset_peak(relay.pid());
        let started = Instant::now();
        let answer = client(&relay)
            .timeout(Duration::from_secs(600))
            .post_json(OBSERVE, &body)
            .expect("an answer");
        let took = started.elapsed();
        let peak = status_kib(relay.pid(), "VmHWM").unwrap_or(0) * 1024;
        let size = answer.body.len() as u64;
        let parsed: Value = serde_json::from_slice(&answer.body).expect("JSON");
        assert_eq!(
            parsed["data"]["sightings"]["count"], n,
            "every observable found"
        );
        assert!(
            exact_peak,
            "the peak RSS mark could not be reset (needs /proc/PID/clear_refs)"
        );
        if n == 10_000 {
            table.row(
                "10 000-observable /observe: answer, peak RSS, peak / answer",
                format!(
                    "{}, {}, {:.2} x (in {:.1} s)",
                    mib(size),
                    mib(peak),
                    peak as f64 / size as f64,
                    took.as_secs_f64()
                ),
                "<= 3 x",
            );
        } else {
            table.row(
                "2 000-observable /observe: RSS growth per answer byte",
                format!(
                    "{:.2} bytes ({} answer, {} -> {} peak)",
                    peak.saturating_sub(before) as f64 / size as f64,
                    mib(size),
                    mib(before),
                    mib(peak)
                ),
                "older relay: 9.3",
            );
        }
    }
}

/// One key for the RS256 measure.
struct OneKey(RsaKey);

impl KeySource for OneKey {
    fn key(&self, _host: &str, _kid: Option<&str>) -> Result<RsaKey, RelayError> {
        Ok(self.0.clone())
    }
}

fn rs256(table: &Table) {
    let made = Command::new("sh")
        .args(["-c", "openssl genrsa -traditional 2048 2>/dev/null"])
        .output()
        .expect("openssl");
    let pem = String::from_utf8_lossy(&made.stdout).into_owned();
    let run = |args: &[&str], input: &[u8]| {
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input).expect("input");
        child.wait_with_output().expect("openssl").stdout
    };
    let modulus_hex = String::from_utf8_lossy(&run(&["rsa", "-noout", "-modulus"], pem.as_bytes()))
        .trim()
        .trim_start_matches("Modulus=")
        .to_owned();
    let n: Vec<u8> = (0..modulus_hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&modulus_hex[i..i + 2], 16).ok())
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        json!({"key": "k", "jwks_host": "jwks.example", "aud": "https://relay.example", "exp": now + 3600})
            .to_string(),
    );
    let input = format!("{head}.{payload}");
    let key_file = std::env::temp_dir().join(format!("bench-rs256-{}.pem", std::process::id()));
    std::fs::write(&key_file, &pem).expect("key file");
    let key_path = key_file.to_string_lossy().into_owned();
    let signature = run(&["dgst", "-sha256", "-sign", &key_path], input.as_bytes());
    let _ = std::fs::remove_file(&key_file);
    let header = format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(signature));
    let keys = OneKey(RsaKey {
        kid: "k1".to_owned(),
        n,
        e: vec![1, 0, 1],
    });
    let audiences = ["https://relay.example".to_owned()];
    let verifier = Verifier {
        secret: None,
        audiences: &audiences,
        keys: Some(&keys),
    };
    assert!(
        verify_with(Some(&header), &verifier, now as f64).is_ok(),
        "the token verifies"
    );
    let rounds = 2_000;
    let started = Instant::now();
    for _ in 0..rounds {
        let _ = verify_with(Some(&header), &verifier, now as f64);
    }
    let each = started.elapsed() / rounds;
    table.row(
        "RS256 token check with cached keys, per request",
        format!("{:.1} us", each.as_secs_f64() * 1e6),
        "warm /observe p50 stays <= 1 ms",
    );
}

fn tiles(bin: &str, table: &Table) {
    const PULSES: usize = 1_000;
    const INDICATORS: usize = 1_000;
    let latency = Duration::from_millis(50);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let indicators: Vec<Value> = (0..INDICATORS)
        .map(|i| {
            json!({"id": i, "indicator": format!("198.51.{}.{}", i / 256, i % 256), "type": "IPv4",
                         "created": "2026-11-29T10:00:00", "title": "", "description": ""})
        })
        .collect();
    let pages: Vec<Reply> = (0..PULSES / 50)
        .map(|page| {
            let pulses: Vec<Value> = (0..50)
                .map(|i| {
                    let n = page * 50 + i;
                    let modified = otx_relay::time::format_seconds(now - 60 - n as u64 * 300);
                    json!({"id": format!("{n:024x}"), "name": format!("Pulse {n}"), "author_name": "analyst",
                           "modified": modified, "adversary": format!("APT {}", n % 7),
                           "malware_families": [format!("family-{}", n % 11)],
                           "indicators": indicators})
                })
                .collect();
            let more = page + 1 < PULSES / 50;
            Reply::json(json!({"count": PULSES, "next": more.then_some("https://otx/next"), "results": pulses}))
        })
        .collect();
    let otx = FakeOtx::start();
    otx.set_latency(latency);
    for (i, page) in pages.into_iter().enumerate() {
        otx.on_page("/api/v1/pulses/subscribed", i as u32 + 1, page);
    }
    let relay = start(
        bin,
        &otx,
        &[("RELAY_DEADLINE", "60"), ("TILE_CACHE_TTL", "600")],
    );
    reset_peak(relay.pid());
    let started = Instant::now();
    let answer = client(&relay)
        .post_json(
            "/tiles/tile-data",
            &json!({"tile_id": "otx-activity-summary", "period": "last_30_days"}).to_string(),
        )
        .expect("an answer");
    let took = started.elapsed();
    let peak = status_kib(relay.pid(), "VmHWM").unwrap_or(0) * 1024;
    let parsed: Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert_eq!(
        parsed["data"]["data"][0]["value"],
        PULSES,
        "{}",
        answer.text()
    );
    assert_eq!(parsed["data"]["data"][1]["value"], PULSES * INDICATORS);
    let floor = latency * 2 * (PULSES / 50) as u32;
    table.row(
        "tile-data, 1 000 pulses x 1 000 indicators (20 pages): time / floor, peak RSS",
        format!(
            "{} = {:.2} x of {}, {}",
            ms(took),
            took.as_secs_f64() / floor.as_secs_f64(),
            ms(floor),
            mib(peak)
        ),
        "<= 2 x, <= 64 MiB",
    );
    let started = Instant::now();
    client(&relay)
        .post_json(
            "/tiles/tile-data",
            &json!({"tile_id": "otx-top-malware", "period": "last_30_days"}).to_string(),
        )
        .expect("an answer");
    table.row(
        "the next tile of that dashboard (cached walk)",
        ms(started.elapsed()),
        "",
    );
}

fn fleet(bin: &str, table: &Table) {
    let Some(redis) = RedisServer::start() else {
        table.row("fleet figures", "skipped: no redis-server".to_owned(), "");
        return;
    };
    let latency = Duration::from_millis(50);
    let otx = FakeOtx::start();
    otx.set_latency(latency);
    serve_every_ip(&otx);
    let env = [("REDIS_URL", redis.url()), ("CACHE_TTL", "300".to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let relays: Vec<Relay> = (0..4).map(|_| start(bin, &otx, &env)).collect();
    // 1 000 identical requests, spread over the 4 relays, 40 at a time.
    let ip = "10.100.100.100";
    let body = json!([{"type": "ip", "value": ip}]).to_string();
    let before = otx.request_count();
    thread::scope(|s| {
        for w in 0..40 {
            let (relays, body) = (&relays, &body);
            s.spawn(move || {
                let mut clients: Vec<Client> = relays.iter().map(client).collect();
                for i in 0..25 {
                    let c = &mut clients[(w + i) % 4];
                    assert_eq!(c.post_json(OBSERVE, body).expect("an answer").status, 200);
                }
            });
        }
    });
    table.row(
        "OTX calls for 1 000 identical /observe on 4 relays (2 URLs)",
        format!("{}", otx.request_count() - before),
        "1 per URL",
    );
    // Warm from Redis: relay 0 fetches, relay 1 answers (its first call).
    let mut times = Vec::new();
    let (mut first, mut second) = (client(&relays[0]), client(&relays[1]));
    for i in 0..50 {
        let body = json!([{"type": "ip", "value": format!("10.101.100.{}", 100 + i)}]).to_string();
        first.post_json(OBSERVE, &body).expect("an answer");
        let started = Instant::now();
        second.post_json(OBSERVE, &body).expect("an answer");
        times.push(started.elapsed());
    }
    let calls = otx.request_count();
    table.row(
        "warm /observe from Redis, by a relay that never asked OTX: p50",
        ms(p50(times)),
        "<= 3 ms",
    );
    assert_eq!(otx.request_count(), calls);
    // /metrics' cost: warm p50 without it, then with a scrape every second.
    let warm = |relay: &Relay, scrape: bool| {
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            if scrape {
                s.spawn(|| {
                    let mut scraper = Client::new(relay.addr());
                    while !stop.load(Ordering::SeqCst) {
                        let _ = scraper.send("GET", "/metrics", &[], b"");
                        thread::sleep(Duration::from_secs(1));
                    }
                });
            }
            let mut c = client(relay);
            let body = json!([{"type": "ip", "value": ip}]).to_string();
            c.post_json(OBSERVE, &body).expect("an answer");
            let times: Vec<Duration> = (0..2_000)
                .map(|_| {
                    let started = Instant::now();
                    c.post_json(OBSERVE, &body).expect("an answer");
                    started.elapsed()
                })
                .collect();
            stop.store(true, Ordering::SeqCst);
            p50(times)
        })
    };
    let off = start(bin, &otx, &[("CACHE_TTL", "300"), ("METRICS", "off")]);
    let on = start(bin, &otx, &[("CACHE_TTL", "300")]);
    let (p_off, p_on) = (warm(&off, false), warm(&on, true));
    table.row(
        "warm /observe p50: METRICS=off / on and scraped every second",
        format!("{} / {}", ms(p_off), ms(p_on)),
        "no measurable cost",
    );
}
