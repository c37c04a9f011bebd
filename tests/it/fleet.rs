//! A fleet of relays on one real `redis-server` (SPEC §14): one OTX call
//! per URL for the whole fleet, tenants apart, errors never shared, and
//! Redis down, back, or silent never failing a client.
//!
//! Beside it: [`kubernetes`], the manifests; [`metrics`], `GET /metrics`.

mod kubernetes;
mod metrics;

use std::io::Read;
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::observe::serve_ip_in_pulse;
use crate::support::*;

const OBSERVE: &str = "/observe/observables";

/// A fake OTX on which `ip` is in one pulse, answering after `latency`.
fn otx_with(ip: &str, pulse: &str, latency: Duration) -> FakeOtx {
    let otx = FakeOtx::start();
    otx.set_latency(latency);
    serve_ip_in_pulse(&otx, ip, pulse);
    otx
}

fn general_path(ip: &str) -> String {
    format!("/api/v1/indicators/IPv4/{ip}/general")
}

fn observe(relay: &Relay, token: &str, ip: &str) -> Value {
    let (status, answer) = relay.post(
        OBSERVE,
        Some(&bearer(token)),
        &json!([{"type": "ip", "value": ip}]).to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

fn relay_on(otx: &FakeOtx, redis: &str) -> Relay {
    Relay::start(otx, &[("REDIS_URL", redis), ("CACHE_TTL", "300")])
}

fn redis() -> Option<RedisServer> {
    tool("redis-server")?;
    Some(RedisServer::start().expect("redis-server starts"))
}

#[test]
fn twenty_identical_calls_on_two_relays_make_one_otx_call_per_url() {
    let Some(redis) = redis() else {
        return;
    };
    let (ip, pulse) = ("198.51.100.120", "5f0000000000000000000e01");
    let otx = otx_with(ip, pulse, Duration::from_millis(300));
    let relays = [relay_on(&otx, &redis.url()), relay_on(&otx, &redis.url())];
    let answers: Vec<Value> = thread::scope(|s| {
        let calls: Vec<_> = (0..20)
            .map(|i| {
                let relay = &relays[i % 2];
                s.spawn(move || observe(relay, &token(), ip))
            })
            .collect();
        calls
            .into_iter()
            .map(|c| c.join().expect("a call"))
            .collect()
    });
    for answer in &answers {
        assert_eq!(answer["data"]["sightings"]["count"], 1, "{answer}");
    }
    assert_eq!(
        otx.requests_to(&general_path(ip)).len(),
        1,
        "one /general for the fleet"
    );
    assert_eq!(
        otx.requests_to(&format!("/api/v1/pulses/{pulse}/indicators"))
            .len(),
        1,
        "one pulse page for the fleet"
    );
    // Stored under the SPEC's key scheme, for CACHE_TTL: /general, the
    // pulse record, and the passive DNS answer (a 404: none, SPEC §15).
    let keys = redis.command(&["KEYS", "otx-relay:v1:*"]);
    assert!(keys.starts_with("*3\r\n"), "{keys}");
    assert!(!keys.contains(ip) && !keys.contains(KEY), "{keys}");
    let key = keys
        .lines()
        .find(|l| l.starts_with("otx-relay:v1:"))
        .expect("a key");
    let ttl = redis.command(&["PTTL", key]);
    let ms: u64 = ttl.trim().trim_start_matches(':').parse().expect("a TTL");
    assert!(ms > 290_000 && ms <= 300_000, "{ttl}");
    // A third relay that never asked OTX answers from Redis.
    let third = relay_on(&otx, &redis.url());
    assert_eq!(
        observe(&third, &token(), ip)["data"]["sightings"]["count"],
        1
    );
    assert_eq!(otx.requests_to(&general_path(ip)).len(), 1);
}

#[test]
fn tenants_stay_apart_and_errors_are_not_shared() {
    let Some(redis) = redis() else {
        return;
    };
    let (ip, pulse) = ("198.51.100.121", "5f0000000000000000000e02");
    let otx = otx_with(ip, pulse, Duration::ZERO);
    let (a, b) = (relay_on(&otx, &redis.url()), relay_on(&otx, &redis.url()));
    let other_tenant = jwt(SECRET, &json!({"key": "another-otx-key-0000"}));
    observe(&a, &token(), ip);
    observe(&b, &other_tenant, ip);
    let asked = otx.requests_to(&general_path(ip));
    assert_eq!(asked.len(), 2, "each tenant asks OTX itself");
    assert_eq!(
        asked[1].header("X-OTX-API-KEY"),
        Some("another-otx-key-0000")
    );

    // A 500 for relay A is not what relay B gets: B asks OTX again.
    let failing = "198.51.100.122";
    otx.on(&general_path(failing), Reply::status(500));
    let answer = observe(&a, &token(), failing);
    assert_eq!(answer["errors"][0]["code"], "oops");
    otx.on(
        &general_path(failing),
        Reply::json(json!({"base_indicator": {"type": "IPv4"}, "pulse_info": {"pulses": []}})),
    );
    let answer = observe(&b, &token(), failing);
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(otx.requests_to(&general_path(failing)).len(), 2);
}

#[test]
fn redis_going_down_costs_one_warning_and_coming_back_restores_the_tier() {
    let Some(mut redis) = redis() else {
        return;
    };
    let otx = FakeOtx::start();
    let none = |ip: &str| {
        otx.on(
            &general_path(ip),
            Reply::json(json!({"base_indicator": {"type": "IPv4"}, "pulse_info": {"pulses": []}})),
        );
    };
    let (a, b) = (relay_on(&otx, &redis.url()), relay_on(&otx, &redis.url()));
    none("198.51.100.130");
    observe(&a, &token(), "198.51.100.130");
    redis.stop();
    // Answers keep coming, from OTX.
    for i in 0..6 {
        let ip = format!("198.51.100.14{i}");
        none(&ip);
        let answer = observe(&a, &token(), &ip);
        assert!(answer.get("errors").is_none(), "{answer}");
        thread::sleep(Duration::from_millis(300));
    }
    let warnings: Vec<String> = a
        .stderr()
        .lines()
        .filter(|l| l.contains("shared cache"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 1, "one warning a minute: {warnings:?}");
    assert!(warnings[0].contains("WARN"));
    assert!(
        !warnings[0].contains("redis://"),
        "the URL may hold a password"
    );
    // Back: after its rest, the tier serves the fleet again.
    redis.restart();
    thread::sleep(Duration::from_millis(1200));
    let ip = "198.51.100.150";
    none(ip);
    observe(&a, &token(), ip);
    observe(&b, &token(), ip);
    assert_eq!(
        otx.requests_to(&general_path(ip)).len(),
        1,
        "B answered from Redis"
    );
}

#[test]
fn a_redis_that_never_answers_delays_a_request_by_its_timeout_at_most() {
    if tool("redis-server").is_none() {
        return;
    }
    // Accepts connections, reads, never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("redis://{}", silent.local_addr().expect("address"));
    thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            thread::spawn(move || {
                let mut stream = stream;
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    let otx = FakeOtx::start();
    for i in 0..5 {
        otx.on(
            &general_path(&format!("198.51.100.16{i}")),
            Reply::json(json!({"base_indicator": {"type": "IPv4"}, "pulse_info": {"pulses": []}})),
        );
    }
    let relay = relay_on(&otx, &url);
    for i in 0..5 {
        let started = Instant::now();
        let answer = observe(&relay, &token(), &format!("198.51.100.16{i}"));
        let took = started.elapsed();
        assert!(answer.get("errors").is_none(), "{answer}");
        // 250 ms for the one command that waits, plus the rest of the call.
        assert!(
            took < Duration::from_millis(750),
            "request {i} took {took:?}"
        );
        thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(
        relay
            .stderr()
            .lines()
            .filter(|l| l.contains("shared cache"))
            .count(),
        1
    );
}

#[test]
fn a_bad_redis_url_stops_start_up_without_echoing_it() {
    let otx = FakeOtx::start();
    let exited = check_refused(&otx, "REDIS_URL", "http://user:hunter2@redis:6379");
    assert!(!exited.stderr.contains("hunter2"));
}
