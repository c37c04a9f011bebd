//! Speed without staleness or leaks, seen from outside: keep-alive reuse of
//! OTX connections, the per-tenant cache (hits, TTL, LRU, what is and is not
//! cached), single-flight of identical concurrent lookups, and the streaming
//! scan of large pulse-indicator pages.

use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const OBSERVE: &str = "/observe/observables";
const PULSE: &str = "5f7a32a91d75358975505d5f";
const CREATED: &str = "2021-03-04T05:06:07";
/// For the tests that count every OTX request and connection of `/general`
/// and the pulse lookups: passive DNS (SPEC §15) would add its own, in
/// parallel (its caching is tested in `passive_dns.rs`).
const NO_PASSIVE_DNS: (&str, &str) = ("PASSIVE_DNS", "off");

fn general_path(ip: &str) -> String {
    format!("/api/v1/indicators/IPv4/{ip}/general")
}

fn pulse_path(id: &str) -> String {
    format!("/api/v1/pulses/{id}/indicators")
}

/// A `/general` answer for `ip` listing `pulses`, each containing an IPv4.
fn general(ip: &str, pulses: &[&str]) -> Value {
    let pulses: Vec<Value> = pulses
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "name": format!("Pulse {id}"),
                "description": "Seen scanning",
                "author": {"username": "analyst"},
                "tags": ["scanner"],
                "TLP": "white",
                "indicator_type_counts": {"IPv4": 1}
            })
        })
        .collect();
    json!({
        "base_indicator": {"type": "IPv4", "indicator": ip},
        "pulse_info": {"count": pulses.len(), "pulses": pulses},
        "validation": [],
        "false_positive": []
    })
}

/// One page of pulse indicators holding one record per `(indicator, created)`.
fn page(records: &[(&str, &str)]) -> Value {
    let results: Vec<Value> = records
        .iter()
        .map(|(indicator, created)| {
            json!({"indicator": indicator, "type": "IPv4", "created": created, "expiration": null})
        })
        .collect();
    json!({"count": results.len(), "results": results, "next": null, "previous": null})
}

/// Programs `ip` as found in one pulse `pulse`, on one page.
fn program(otx: &FakeOtx, ip: &str, pulse: &str) {
    otx.on(&general_path(ip), Reply::json(general(ip, &[pulse])));
    otx.on(&pulse_path(pulse), Reply::json(page(&[(ip, CREATED)])));
}

fn body(ip: &str) -> String {
    json!([{"type": "ip", "value": ip}]).to_string()
}

/// `/observe` for one IP with `token()`; the answer's `data`, checked to
/// carry no error.
#[track_caller]
fn observe(relay: &Relay, ip: &str) -> Value {
    observe_with(relay, &token(), ip)
}

#[track_caller]
fn observe_with(relay: &Relay, jwt: &str, ip: &str) -> Value {
    let (status, answer) = relay.post(OBSERVE, Some(&bearer(jwt)), &body(ip));
    assert_eq!(status, 200);
    assert!(
        answer.get("errors").is_none(),
        "unexpected errors: {answer}"
    );
    answer["data"].clone()
}

/// The docs of one entity kind (empty when the kind is absent).
fn docs(data: &Value, kind: &str) -> Vec<Value> {
    data[kind]["docs"].as_array().cloned().unwrap_or_default()
}

/// The docs of `kind` with the fields that are fresh on every answer removed.
fn stable_docs(data: &Value, kind: &str, fresh: &[&str]) -> Vec<Value> {
    docs(data, kind)
        .into_iter()
        .map(|mut doc| {
            for field in fresh {
                doc.as_object_mut().map(|o| o.remove(*field));
            }
            doc
        })
        .collect()
}

#[test]
fn sequential_calls_reuse_one_otx_connection() {
    let otx = FakeOtx::start();
    program(&otx, "1.2.3.4", PULSE);
    let relay = Relay::start(&otx, &[NO_PASSIVE_DNS]);
    for _ in 0..5 {
        let data = observe(&relay, "1.2.3.4");
        assert_eq!(docs(&data, "sightings").len(), 1, "{data}");
    }
    // CACHE_TTL=0: every call asked /general and the pulse page, one after
    // the other, so one kept-alive connection carried all ten.
    assert_eq!(otx.requests().len(), 10);
    assert_eq!(otx.connections(), 1, "new OTX connections for 10 requests");
}

#[test]
fn concurrent_lookups_need_no_more_connections_than_in_flight() {
    let otx = FakeOtx::start();
    let ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
    for (i, ip) in ips.iter().enumerate() {
        program(&otx, ip, &format!("60000000000000000000000{i}"));
    }
    let relay = Relay::start(&otx, &[NO_PASSIVE_DNS]);
    let body = json!(ips
        .iter()
        .map(|ip| json!({"type": "ip", "value": ip}))
        .collect::<Vec<_>>())
    .to_string();
    for _ in 0..4 {
        let (status, answer) = relay.post_auth(OBSERVE, &body);
        assert_eq!(status, 200);
        assert_eq!(answer["data"]["sightings"]["count"], 3, "{answer}");
    }
    assert_eq!(otx.requests().len(), 4 * 6);
    // At most three OTX requests are ever in flight (one per observable).
    assert!(otx.connections() <= ips.len(), "{}", otx.connections());
}

#[test]
fn a_cache_hit_asks_otx_nothing_and_answers_the_same_docs() {
    let otx = FakeOtx::start();
    program(&otx, "1.2.3.4", PULSE);
    let relay = Relay::start(&otx, &[NO_PASSIVE_DNS, ("CACHE_TTL", "300")]);
    let first = observe(&relay, "1.2.3.4");
    assert_eq!(otx.requests().len(), 2);
    otx.reset_log();

    let second = observe(&relay, "1.2.3.4");
    assert!(otx.requests().is_empty(), "{:?}", otx.requests());
    assert_eq!(docs(&first, "indicators").len(), 1);
    assert_eq!(docs(&first, "indicators"), docs(&second, "indicators"));
    assert_eq!(
        stable_docs(&first, "sightings", &["id"]),
        stable_docs(&second, "sightings", &["id"])
    );
    assert_ne!(
        docs(&first, "sightings")[0]["id"],
        docs(&second, "sightings")[0]["id"],
        "sighting ids are fresh on every answer"
    );
    assert_eq!(
        stable_docs(&first, "relationships", &["id", "source_ref"]),
        stable_docs(&second, "relationships", &["id", "source_ref"])
    );
    assert_eq!(
        stable_docs(&first, "verdicts", &["judgement_id", "valid_time"]),
        stable_docs(&second, "verdicts", &["judgement_id", "valid_time"])
    );
}

#[test]
fn the_cache_is_per_otx_key() {
    const OTHER: &str = "otx-other-tenant-key-fedcba9876543210";
    let otx = FakeOtx::start();
    program(&otx, "1.2.3.4", PULSE);
    let relay = Relay::start(&otx, &[NO_PASSIVE_DNS, ("CACHE_TTL", "300")]);
    relay.forbid(OTHER);
    let other = jwt(SECRET, &json!({"key": OTHER}));
    relay.forbid(&other);

    let first = observe(&relay, "1.2.3.4");
    otx.reset_log();
    let second = observe_with(&relay, &other, "1.2.3.4");
    let requests = otx.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in &requests {
        assert_eq!(r.header("X-OTX-API-KEY"), Some(OTHER), "{r:?}");
    }
    assert_eq!(docs(&first, "indicators"), docs(&second, "indicators"));

    // Both tenants are now cached, each under its own key.
    otx.reset_log();
    observe(&relay, "1.2.3.4");
    observe_with(&relay, &other, "1.2.3.4");
    assert!(otx.requests().is_empty(), "{:?}", otx.requests());
}

#[test]
fn entries_expire_after_the_ttl() {
    let otx = FakeOtx::start();
    program(&otx, "1.2.3.4", PULSE);
    let relay = Relay::start(&otx, &[NO_PASSIVE_DNS, ("CACHE_TTL", "1")]);
    observe(&relay, "1.2.3.4");
    observe(&relay, "1.2.3.4");
    assert_eq!(otx.requests().len(), 2, "the second call is a hit");
    thread::sleep(Duration::from_millis(1500));
    otx.reset_log();
    let data = observe(&relay, "1.2.3.4");
    assert_eq!(docs(&data, "sightings").len(), 1);
    assert_eq!(otx.requests_to(&general_path("1.2.3.4")).len(), 1);
    assert_eq!(otx.requests_to(&pulse_path(PULSE)).len(), 1);
}

#[test]
fn errors_are_not_cached() {
    let otx = FakeOtx::start();
    let path = general_path("1.2.3.4");
    otx.on_seq(
        &path,
        vec![
            Reply::status(500),
            Reply::json(general("1.2.3.4", &[PULSE])),
        ],
    );
    otx.on(
        &pulse_path(PULSE),
        Reply::json(page(&[("1.2.3.4", CREATED)])),
    );
    let relay = Relay::start(&otx, &[("CACHE_TTL", "300")]);

    let (status, answer) = relay.post_auth(OBSERVE, &body("1.2.3.4"));
    assert_eq!(status, 200);
    check_json(
        &answer,
        &json!({"errors": [{
            "code": "oops",
            "message": "Something went wrong. Reason: 500 Internal Server Error.",
            "type": "fatal"
        }]}),
    );
    let data = observe(&relay, "1.2.3.4");
    assert_eq!(docs(&data, "sightings").len(), 1, "{data}");
    assert_eq!(otx.requests_to(&path).len(), 2);
}

#[test]
fn a_failed_pulse_lookup_is_not_cached() {
    let otx = FakeOtx::start();
    otx.on(
        &general_path("1.2.3.4"),
        Reply::json(general("1.2.3.4", &[PULSE])),
    );
    otx.on_seq(
        &pulse_path(PULSE),
        vec![
            Reply::status(500),
            Reply::json(page(&[("1.2.3.4", CREATED)])),
        ],
    );
    let relay = Relay::start(&otx, &[("CACHE_TTL", "300")]);

    // The pulse is dropped silently the first time…
    let first = observe(&relay, "1.2.3.4");
    assert!(docs(&first, "sightings").is_empty(), "{first}");
    otx.reset_log();
    // …and asked again the next: /general comes from the cache.
    let second = observe(&relay, "1.2.3.4");
    assert_eq!(docs(&second, "sightings").len(), 1, "{second}");
    let paths: Vec<String> = otx.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec![pulse_path(PULSE)]);
}

#[test]
fn no_data_is_cached() {
    let otx = FakeOtx::start();
    // Nothing programmed: /general answers 404 "Not found.".
    let relay = Relay::start(&otx, &[NO_PASSIVE_DNS, ("CACHE_TTL", "300")]);
    for _ in 0..3 {
        let data = observe(&relay, "9.9.9.9");
        assert_eq!(data, json!({}));
    }
    assert_eq!(otx.requests_to(&general_path("9.9.9.9")).len(), 1);
    assert_eq!(otx.requests().len(), 1);
}

/// Eight identical `/observe` calls at once, while OTX is slow to answer.
fn eight_at_once(ttl: &str) {
    let otx = FakeOtx::start();
    let delay = Duration::from_millis(600);
    otx.on(
        &general_path("1.2.3.4"),
        Reply::json(general("1.2.3.4", &[PULSE])).with_head_delay(delay),
    );
    otx.on(
        &pulse_path(PULSE),
        Reply::json(page(&[("1.2.3.4", CREATED)])).with_head_delay(delay),
    );
    let relay = Relay::start(&otx, &[("CACHE_TTL", ttl)]);
    let barrier = Barrier::new(8);
    let answers: Vec<Value> = thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    observe(&relay, "1.2.3.4")
                })
            })
            .collect();
        calls
            .into_iter()
            .map(|c| c.join().expect("a client thread"))
            .collect()
    });
    for data in &answers {
        assert_eq!(docs(data, "sightings").len(), 1, "{data}");
        assert_eq!(docs(data, "indicators"), docs(&answers[0], "indicators"));
    }
    assert_eq!(otx.requests_to(&general_path("1.2.3.4")).len(), 1);
    assert_eq!(otx.requests_to(&pulse_path(PULSE)).len(), 1);
}

#[test]
fn identical_concurrent_lookups_fly_once() {
    eight_at_once("300");
}

#[test]
fn single_flight_does_not_need_the_cache() {
    eight_at_once("0");
}

/// A page of 20 000 records (a few MB) whose record of `ip` is at `at`.
fn big_page(ip: &str, at: usize) -> Vec<u8> {
    const RECORDS: usize = 20_000;
    let mut body = String::with_capacity(RECORDS * 260);
    body.push_str(r#"{"count": 20000, "previous": null, "results": ["#);
    for i in 0..RECORDS {
        if i > 0 {
            body.push(',');
        }
        let (indicator, created) = if i == at {
            (ip.to_owned(), "2022-02-02T02:02:02.123000".to_owned())
        } else {
            (
                format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                format!("2020-01-{:02}T00:00:00", 1 + i % 28),
            )
        };
        body.push_str(&format!(
            r#"{{"id": {i}, "indicator": "{indicator}", "type": "IPv4", "created": "{created}", "content": "", "title": "", "description": "a record that is not the one looked for, padded to a realistic size", "expiration": null, "is_active": 1, "false_positive": {{"assessment": null, "assessment_date": null, "report_date": null}}, "role": null}}"#
        ));
    }
    body.push_str(r#"], "next": null}"#);
    body.into_bytes()
}

#[track_caller]
fn check_big_page(at: usize) {
    let ip = "203.0.113.77";
    let otx = FakeOtx::start();
    otx.on(&general_path(ip), Reply::json(general(ip, &[PULSE])));
    let page = big_page(ip, at);
    assert!(page.len() > 4_000_000, "{} bytes", page.len());
    otx.on(&pulse_path(PULSE), Reply::json_bytes(page));
    let relay = Relay::start(&otx, &[NO_PASSIVE_DNS]);
    let data = observe(&relay, ip);
    let sightings = docs(&data, "sightings");
    assert_eq!(sightings.len(), 1, "{data}");
    assert_eq!(
        sightings[0]["observed_time"],
        json!({"start_time": "2022-02-02T02:02:02.123000Z", "end_time": "2022-02-02T02:02:02.123000Z"})
    );
    assert_eq!(otx.requests_to(&pulse_path(PULSE)).len(), 1);
    // The page was read to its end: the next call reuses the connection.
    observe(&relay, ip);
    assert_eq!(otx.connections(), 1);
}

#[test]
fn a_huge_page_is_scanned_to_its_last_record() {
    check_big_page(19_999);
}

#[test]
fn a_huge_page_is_scanned_past_a_match_in_the_middle() {
    check_big_page(10_000);
}

#[test]
fn least_recently_used_entries_are_evicted() {
    let otx = FakeOtx::start();
    let pulses = [
        ("1.1.1.1", "600000000000000000000011"),
        ("2.2.2.2", "600000000000000000000022"),
    ];
    for (ip, pulse) in pulses {
        program(&otx, ip, pulse);
    }
    let alternate = |relay: &Relay| {
        for ip in ["1.1.1.1", "2.2.2.2", "1.1.1.1", "2.2.2.2"] {
            assert_eq!(docs(&observe(relay, ip), "sightings").len(), 1);
        }
    };

    // One entry in all (for an indicator's answer; none is left for
    // records): each call evicts the other observable.
    // Passive DNS off: its answers would take a share of the entries.
    let env = |n| {
        [
            ("CACHE_TTL", "300"),
            ("CACHE_MAX_ENTRIES", n),
            ("PASSIVE_DNS", "off"),
        ]
    };
    let relay = Relay::start(&otx, &env("1"));
    alternate(&relay);
    for (ip, pulse) in pulses {
        assert_eq!(otx.requests_to(&general_path(ip)).len(), 2, "{ip}");
        assert_eq!(otx.requests_to(&pulse_path(pulse)).len(), 2, "{ip}");
    }
    drop(relay);

    // Room for both (an answer and a record each): only the first call of
    // each reaches OTX.
    otx.reset_log();
    let relay = Relay::start(&otx, &env("4"));
    alternate(&relay);
    for (ip, pulse) in pulses {
        assert_eq!(otx.requests_to(&general_path(ip)).len(), 1, "{ip}");
        assert_eq!(otx.requests_to(&pulse_path(pulse)).len(), 1, "{ip}");
    }
}

#[test]
fn cache_max_entries_is_the_total_of_both_kinds_of_answer() {
    let otx = FakeOtx::start();
    let ips = ["1.1.1.1", "2.2.2.2", "3.3.3.3"];
    for (ip, pulse) in ips.iter().zip([
        "6000000000000000000000a1",
        "6000000000000000000000a2",
        "6000000000000000000000a3",
    ]) {
        program(&otx, ip, pulse);
    }
    let relay = Relay::start(&otx, &[("CACHE_TTL", "300"), ("CACHE_MAX_ENTRIES", "3")]);
    for ip in ips {
        assert_eq!(docs(&observe(&relay, ip), "sightings").len(), 1);
    }
    // Six answers were fetched (an indicator and a record each): 3 kept.
    let (status, _, body) = relay.request("GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("\notx_relay_cache_entries 3\n"), "{page}");
}

#[test]
fn a_shared_lookup_that_timed_out_for_an_earlier_request_is_fetched_again_for_a_later_one() {
    // A asks first and leads the shared /general; OTX keeps it 6 s, past
    // A's 2 s deadline. B asks 1 s later for the same thing, joins A's
    // flight, and gets A's timeout with 1 s of its own left: B must fetch
    // again (OTX now answers at once) instead of failing with A.
    const IP: &str = "198.51.100.44";
    let otx = FakeOtx::start();
    otx.on_seq(
        &general_path(IP),
        vec![
            Reply::json(general(IP, &["p1"])).with_head_delay(Duration::from_secs(6)),
            Reply::json(general(IP, &["p1"])),
        ],
    );
    otx.on(&pulse_path("p1"), Reply::json(page(&[(IP, CREATED)])));
    let relay = Relay::start(&otx, &[("RELAY_DEADLINE", "2"), ("CACHE_TTL", "300")]);
    let early = thread::scope(|scope| {
        let a = scope.spawn(|| relay.post(OBSERVE, Some(&bearer(&token())), &body(IP)).1);
        thread::sleep(Duration::from_secs(1));
        let b = relay.post(OBSERVE, Some(&bearer(&token())), &body(IP)).1;
        assert!(
            b.get("errors").is_none(),
            "the later request kept the earlier one's timeout: {b}"
        );
        assert_eq!(docs(&b["data"], "sightings").len(), 1, "{b}");
        a.join().expect("A answers")
    });
    assert_eq!(early["errors"][0]["code"], "timeout", "{early}");
    assert_eq!(otx.requests_to(&general_path(IP)).len(), 2);
}
