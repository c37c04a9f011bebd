//! Passive DNS and hostnames (SPEC §15): the `/passive_dns` call in the
//! same wave as `/general` for names and addresses, the records kept,
//! merged, ordered and limited, the one sighting after the pulse ones, the
//! failures that never reach the client, `PASSIVE_DNS=off`, both cache
//! tiers and `/metrics`; and `hostname` through observe, deliberate,
//! refer and respond.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::observe::{
    check, check_answer, general, general_path, obs, passive_dns_path, pulse, record,
    serve_records, Expected, Judged,
};
use crate::support::*;

const OBSERVE: &str = "/observe/observables";
/// The domain of `passive-dns-domain.json`.
const SAMPLE_DOMAIN: &str = "webserver.servehttp.com";
/// TEST-NET-2 and -3 addresses of the synthetic cases.
const IP: &str = "198.51.100.33";
const OTHER_IP: &str = "203.0.113.33";

/// A record as OTX lists it (SPEC §15's fields and the ones it ignores).
fn rec(
    hostname: &str,
    address: &str,
    kind: &str,
    first: Option<&str>,
    last: Option<&str>,
) -> Value {
    let mut record = json!({
        "address": address, "hostname": hostname, "record_type": kind,
        "indicator_link": format!("/indicator/hostname/{hostname}"),
        "flag_url": "assets/images/flags/us.png", "flag_title": "United States",
        "asset_type": "hostname", "asn": "AS64496 example",
    });
    if let Some(first) = first {
        record["first"] = json!(first);
    }
    if let Some(last) = last {
        record["last"] = json!(last);
    }
    record
}

/// An A record first seen on `first` and last seen on `last`.
fn a(hostname: &str, address: &str, first: &str, last: &str) -> Value {
    rec(hostname, address, "A", Some(first), Some(last))
}

/// A passive DNS answer listing `records`.
fn answer(records: Vec<Value>) -> Reply {
    let count = records.len();
    Reply::json(json!({"passive_dns": records, "count": count}))
}

/// A `Resolved_To` relation as the sighting lists it.
fn relation(hostname: &str, address: &str) -> Value {
    let related = if address.contains(':') { "ipv6" } else { "ip" };
    json!({"origin": "AlienVault OTX passive DNS", "relation": "Resolved_To",
           "source": {"type": "domain", "value": hostname},
           "related": {"type": related, "value": address}})
}

/// The passive DNS sighting of `observable` (`name` as SPEC §3 names its
/// type; `refer` the end of its refer link), with `relations` and the span
/// `start`..`end`, whole.
fn sighting(
    otx: &FakeOtx,
    observable: &Value,
    name: &str,
    refer: &str,
    relations: &[Value],
    (start, end): (&str, &str),
) -> Value {
    json!({
        "type": "sighting",
        "id": "<<prefix:transient:sighting->>",
        "schema_version": "1.0.17",
        "confidence": "High",
        "count": relations.len(),
        "internal": false,
        "source": "AlienVault OTX",
        "source_uri": format!("{}/indicator/{refer}", otx.url()),
        "title": "Seen in AlienVault OTX passive DNS",
        "description": format!(
            "AlienVault OTX passive DNS saw {} resolution(s) for this {name}.",
            relations.len()
        ),
        "observables": [observable],
        "observed_time": {"start_time": start, "end_time": end},
        "relations": relations,
    })
}

/// The one sighting of an answer, when that is all it holds.
fn only_sighting(body: &Value) -> &Value {
    assert_eq!(body["data"]["sightings"]["count"], 1, "{body}");
    &body["data"]["sightings"]["docs"][0]
}

fn observe(relay: &Relay, observables: &Value) -> Value {
    let (status, body) = relay.post_auth(OBSERVE, &observables.to_string());
    assert_eq!(status, 200, "{body}");
    body
}

/// The stderr lines about passive DNS.
fn warnings(relay: &Relay) -> Vec<String> {
    let stderr = relay.stderr();
    let lines = stderr.lines().filter(|l| l.contains("passive DNS"));
    lines.map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------
// The sighting

#[test]
fn the_sample_answer_becomes_one_sighting_of_its_kept_resolutions() {
    let path = passive_dns_path("domain", SAMPLE_DOMAIN);
    let serve = |otx: &FakeOtx| otx.on(&path, Reply::file("passive-dns-domain.json"));
    // Asked in ASCII lower case, echoed as received.
    let observable = obs("domain", "WebServer.ServeHTTP.com");
    // The CNAME and the NXDOMAIN "address" are skipped; the two records of
    // (webserver…, 192.0.2.10) are one relation, from the earliest first
    // to the latest last; newest last first.
    let relations = [
        relation(SAMPLE_DOMAIN, "192.0.2.10"),
        relation(SAMPLE_DOMAIN, "2001:db8:4860::8a"),
        relation("ftp.webserver.servehttp.com", "203.0.113.77"),
        relation(SAMPLE_DOMAIN, "198.51.100.23"),
        relation("old.webserver.servehttp.com", "198.51.100.24"),
    ];
    let span = ("2019-03-11T10:00:00Z", "2023-02-14T08:31:07Z");
    let refer = "domain/WebServer.ServeHTTP.com";
    let otx = check(serve, &[], json!([observable]), |otx, expected| {
        expected.sighted(sighting(
            otx,
            &observable,
            "domain",
            refer,
            &relations,
            span,
        ));
    })
    .otx;
    let requests = otx.requests_to(&path);
    assert_eq!(requests.len(), 1, "{:?}", otx.requests());
    assert_eq!(requests[0].header("X-OTX-API-KEY"), Some(KEY));
    assert_eq!(requests[0].query, "");
}

#[test]
fn it_comes_after_the_observables_pulse_sightings_and_counts_against_nothing() {
    let (p1, p2, p3) = (
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
    );
    let serve = |otx: &FakeOtx| {
        otx.on(
            &general_path("IPv4", IP),
            Reply::json(general("IPv4", vec![pulse(p1, "IPv4"), pulse(p2, "IPv4")])),
        );
        serve_records(otx, p1, vec![record(IP, "2021-01-01T00:00:00")]);
        serve_records(otx, p2, vec![record(IP, "2021-01-02T00:00:00")]);
        otx.on(
            &general_path("domain", "example.com"),
            Reply::json(general("domain", vec![pulse(p3, "domain")])),
        );
        serve_records(otx, p3, vec![record("example.com", "2021-01-03T00:00:00")]);
        otx.on(
            &passive_dns_path("IPv4", IP),
            answer(vec![a(
                "www.example.org",
                IP,
                "2020-01-01T00:00:00",
                "2020-02-01T00:00:00",
            )]),
        );
        otx.on(
            &passive_dns_path("domain", "example.com"),
            answer(vec![
                a(
                    "example.com",
                    "192.0.2.1",
                    "2020-03-01T00:00:00",
                    "2020-04-01T00:00:00",
                ),
                rec(
                    "example.com",
                    "2001:db8::1",
                    "AAAA",
                    Some("2020-01-01T00:00:00"),
                    Some("2020-05-01T00:00:00"),
                ),
            ]),
        );
    };
    // One pulse sighting per observable: the passive DNS one is not counted.
    let env = [("CTR_ENTITIES_LIMIT", "1")];
    let (ip, domain) = (obs("ip", IP), obs("domain", "example.com"));

    check(serve, &env, json!([ip, domain]), |otx, expected| {
        expected
            .found(otx, &ip, p2, "2021-01-02T00:00:00Z", None)
            .sighted(sighting(
                otx,
                &ip,
                "IP",
                &format!("ip/{IP}"),
                &[relation("www.example.org", IP)],
                ("2020-01-01T00:00:00Z", "2020-02-01T00:00:00Z"),
            ))
            .judged(otx, &ip, &format!("ip/{IP}"), Judged::Malicious(2))
            .found(otx, &domain, p3, "2021-01-03T00:00:00Z", None)
            .sighted(sighting(
                otx,
                &domain,
                "domain",
                "domain/example.com",
                &[
                    relation("example.com", "2001:db8::1"),
                    relation("example.com", "192.0.2.1"),
                ],
                ("2020-01-01T00:00:00Z", "2020-05-01T00:00:00Z"),
            ))
            .judged(otx, &domain, "domain/example.com", Judged::Suspicious(1));
    });
}

#[test]
fn only_a_and_aaaa_records_of_their_address_family_with_a_hostname_are_kept() {
    let otx = FakeOtx::start();
    let (first, last) = (Some("2021-01-01T00:00:00"), Some("2021-06-01T00:00:00"));
    let mut no_hostname = rec("x", "192.0.2.9", "A", first, last);
    no_hostname.as_object_mut().map(|r| r.remove("hostname"));
    otx.on(
        &passive_dns_path("IPv4", IP),
        answer(vec![
            rec("a.example", IP, "A", first, Some("2021-06-05T00:00:00")),
            rec("cname.example", "a.example", "CNAME", first, last),
            rec("v4-in-aaaa.example", "192.0.2.2", "AAAA", first, last),
            rec("v6-in-a.example", "2001:db8::2", "A", first, last),
            rec("nx.example", "NXDOMAIN", "A", first, last),
            rec("", "192.0.2.3", "A", first, last),
            no_hostname,
            rec("mx.example", "mail.example", "MX", first, last),
            rec("lower.example", "192.0.2.4", "a", first, last),
            json!({"hostname": 5, "address": "192.0.2.5", "record_type": "A"}),
            json!("junk"),
            json!(null),
            rec(
                "b.example",
                "2001:db8::3",
                "AAAA",
                first,
                Some("2021-06-04T00:00:00"),
            ),
        ]),
    );
    let relay = Relay::start(&otx, &[]);
    let body = observe(&relay, &json!([obs("ip", IP)]));
    let relations = [
        relation("a.example", IP),
        relation("b.example", "2001:db8::3"),
    ];
    check_json(
        only_sighting(&body),
        &sighting(
            &otx,
            &obs("ip", IP),
            "IP",
            &format!("ip/{IP}"),
            &relations,
            ("2021-01-01T00:00:00Z", "2021-06-05T00:00:00Z"),
        ),
    );
    assert!(body.get("errors").is_none(), "{body}");
}

#[test]
fn duplicates_merge_and_the_newest_last_comes_first_one_without_last_last() {
    let otx = FakeOtx::start();
    otx.on(
        &passive_dns_path("hostname", "www.example.com"),
        answer(vec![
            rec(
                "www.example.com",
                "192.0.2.1",
                "A",
                Some("2021-03-01T00:00:00"),
                None,
            ),
            a(
                "www.example.com",
                "192.0.2.2",
                "2021-01-01T00:00:00",
                "2021-05-01T00:00:00",
            ),
            a(
                "www.example.com",
                "192.0.2.1",
                "2021-02-01T00:00:00",
                "2021-02-02T00:00:00",
            ),
            a(
                "www.example.com",
                "192.0.2.3",
                "2021-01-01T00:00:00",
                "2021-05-01T00:00:00",
            ),
            rec(
                "www.example.com",
                "192.0.2.4",
                "A",
                Some("2020-12-01T00:00:00"),
                None,
            ),
            // The same pair later, with an earlier first and a later last.
            a(
                "www.example.com",
                "192.0.2.1",
                "2020-06-01T00:00:00",
                "2021-07-01T00:00:00",
            ),
            a(
                "www.example.com",
                "192.0.2.3",
                "2021-01-02T00:00:00",
                "2021-01-03T00:00:00",
            ),
        ]),
    );
    let relay = Relay::start(&otx, &[]);
    let observable = obs("hostname", "WWW.Example.com");
    let body = observe(&relay, &json!([observable]));
    // Equal lasts keep OTX's order (192.0.2.2 before 192.0.2.3).
    let relations = [
        relation("www.example.com", "192.0.2.1"),
        relation("www.example.com", "192.0.2.2"),
        relation("www.example.com", "192.0.2.3"),
        relation("www.example.com", "192.0.2.4"),
    ];
    check_json(
        only_sighting(&body),
        &sighting(
            &otx,
            &observable,
            "hostname",
            "hostname/WWW.Example.com",
            &relations,
            ("2020-06-01T00:00:00Z", "2021-07-01T00:00:00Z"),
        ),
    );
}

#[test]
fn at_most_passive_dns_limit_relations_the_newest() {
    let otx = FakeOtx::start();
    let records: Vec<Value> = (0..60)
        .map(|i| {
            let host = format!("h{i:02}.example.com");
            let day = |d: usize| format!("2021-{:02}-{:02}T00:00:00", 1 + d / 28, 1 + d % 28);
            a(&host, &format!("192.0.2.{i}"), &day(i), &day(i + 1))
        })
        .collect();
    otx.on(&passive_dns_path("domain", "example.com"), answer(records));
    let observable = json!([obs("domain", "example.com")]);
    let newest = |n: usize| -> Vec<Value> {
        (0..60)
            .rev()
            .take(n)
            .map(|i| relation(&format!("h{i:02}.example.com"), &format!("192.0.2.{i}")))
            .collect()
    };
    for (env, n) in [(vec![], 50), (vec![("PASSIVE_DNS_LIMIT", "3")], 3)] {
        let relay = Relay::start(&otx, &env);
        let body = observe(&relay, &observable);
        let doc = only_sighting(&body);
        assert_eq!(doc["count"], n, "{env:?}");
        check_json(&doc["relations"], &json!(newest(n)));
        // The span of the relations kept: from the oldest kept first.
        let first = 60 - n;
        let start = format!("2021-{:02}-{:02}T00:00:00Z", 1 + first / 28, 1 + first % 28);
        assert_eq!(doc["observed_time"]["start_time"], json!(start), "{env:?}");
        assert_eq!(doc["observed_time"]["end_time"], "2021-03-05T00:00:00Z");
    }
}

#[test]
fn a_time_missing_on_every_relation_is_the_other_one_and_both_the_answers() {
    let otx = FakeOtx::start();
    let serve = |value: &str, first: Option<&str>, last: Option<&str>| {
        let records = vec![
            rec(value, "192.0.2.1", "A", first, last),
            rec(
                value,
                "192.0.2.2",
                "A",
                first.map(|_| "2021-01-05T00:00:00"),
                last.map(|_| "2021-01-09T00:00:00"),
            ),
        ];
        otx.on(&passive_dns_path("domain", value), answer(records));
    };
    serve("no-first.example", None, Some("2021-01-10T00:00:00"));
    serve("no-last.example", Some("2021-01-01T00:00:00"), None);
    serve("neither.example", None, None);
    let relay = Relay::start(&otx, &[]);
    let span = |value: &str| {
        let body = observe(&relay, &json!([obs("domain", value)]));
        only_sighting(&body)["observed_time"].clone()
    };
    let same = |t: &str| json!({"start_time": t, "end_time": t});
    assert_eq!(span("no-first.example"), same("2021-01-10T00:00:00Z"));
    assert_eq!(span("no-last.example"), same("2021-01-01T00:00:00Z"));
    // The time of the answer, in the relay's own format (with milliseconds,
    // which no OTX time above has).
    let neither = span("neither.example");
    check_json(
        &neither,
        &json!({"start_time": "<<time>>", "end_time": "<<time>>"}),
    );
    assert_eq!(neither["start_time"], neither["end_time"]);
}

#[test]
fn passive_dns_is_asked_in_the_same_wave_as_general() {
    let otx = FakeOtx::start();
    let delay = Duration::from_millis(400);
    let records = answer(vec![a(
        "example.com",
        "192.0.2.1",
        "2021-01-01T00:00:00",
        "2021-01-02T00:00:00",
    )]);
    otx.on(
        &passive_dns_path("domain", "example.com"),
        records.with_head_delay(delay),
    );
    otx.on(
        &general_path("domain", "example.com"),
        Reply::status(404).with_head_delay(delay),
    );
    let relay = Relay::start(&otx, &[]);
    let _ = otx.take_max_in_flight();
    let body = observe(&relay, &json!([obs("domain", "example.com")]));
    assert_eq!(body["data"]["sightings"]["count"], 1, "{body}");
    // Both were in flight at once: no round trip added.
    assert_eq!(otx.take_max_in_flight(), 2, "{:?}", otx.requests());
}

// ---------------------------------------------------------------------------
// Which observables, and when not

#[test]
fn names_and_addresses_are_asked_and_deliberate_and_off_ask_nothing() {
    let otx = FakeOtx::start();
    let records = || {
        answer(vec![a(
            "www.example.com",
            IP,
            "2021-01-01T00:00:00",
            "2021-01-02T00:00:00",
        )])
    };
    for (section, value) in [
        ("IPv4", IP),
        ("IPv6", "2001:db8::33"),
        ("domain", "example.com"),
        ("hostname", "www.example.com"),
    ] {
        otx.on(&passive_dns_path(section, value), records());
    }
    let observables = json!([
        obs("ip", IP),
        obs("ipv6", "2001:db8::33"),
        obs("domain", "example.com"),
        obs("hostname", "www.example.com"),
        obs("url", "http://www.example.com/"),
        obs("md5", "d41d8cd98f00b204e9800998ecf8427e"),
        obs("email", "a@example.com"),
    ]);
    let asked = |otx: &FakeOtx| -> usize {
        let requests = otx.requests();
        requests
            .iter()
            .filter(|r| r.path.ends_with("/passive_dns"))
            .count()
    };

    let relay = Relay::start(&otx, &[]);
    let body = observe(&relay, &observables);
    assert_eq!(body["data"]["sightings"]["count"], 4, "{body}");
    assert_eq!(asked(&otx), 4, "{:?}", otx.requests());

    otx.reset_log();
    let (status, body) = relay.post_auth("/deliberate/observables", &observables.to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(asked(&otx), 0, "/deliberate asks /general only");
    drop(relay);

    for off in ["off", " off "] {
        otx.reset_log();
        let relay = Relay::start(&otx, &[("PASSIVE_DNS", off)]);
        check_answer(&relay, &observables, &json!({"data": {}}));
        assert_eq!(asked(&otx), 0, "PASSIVE_DNS={off:?}");
        assert_eq!(
            otx.requests().len(),
            6,
            "the /generals only: {:?}",
            otx.requests()
        );
    }
}

// ---------------------------------------------------------------------------
// Failures: never the client's

/// `IP` in one pulse, so that the pulses' part of the answer can be seen
/// unspoilt; its passive DNS answers `reply`.
fn serve_ip_with_passive_dns(otx: &FakeOtx, ip: &str, pulse_id: &str, reply: Reply) {
    otx.on(
        &general_path("IPv4", ip),
        Reply::json(general("IPv4", vec![pulse(pulse_id, "IPv4")])),
    );
    serve_records(otx, pulse_id, vec![record(ip, "2021-01-01T00:00:00")]);
    otx.on(&passive_dns_path("IPv4", ip), reply);
}

/// What the answer for `ips` must be when none of their passive DNS is
/// shown: each one's pulse, sighted; no error.
fn pulses_only(otx: &FakeOtx, ips: &[(&str, &str)]) -> Expected {
    let mut expected = Expected::default();
    for (ip, pulse_id) in ips {
        let observable = obs("ip", ip);
        expected
            .found(otx, &observable, pulse_id, "2021-01-01T00:00:00Z", None)
            .judged(otx, &observable, &format!("ip/{ip}"), Judged::Suspicious(1));
    }
    expected
}

#[test]
fn no_data_and_other_shapes_are_no_records_and_no_warning() {
    let ips = [
        ("198.51.100.41", "600000000000000000000041"),
        ("198.51.100.42", "600000000000000000000042"),
        ("198.51.100.43", "600000000000000000000043"),
        ("198.51.100.44", "600000000000000000000044"),
        ("198.51.100.45", "600000000000000000000045"),
        ("198.51.100.46", "600000000000000000000046"),
    ];
    let replies = [
        Reply::status(400),
        Reply::status(404),
        Reply::json(json!([])),
        Reply::json(json!({"passive_dns": "none"})),
        Reply::json(json!({"passive_dns": [], "count": 0})),
        Reply::json(json!({"detail": "Not found."})),
    ];
    let serve = |otx: &FakeOtx| {
        for ((ip, pulse_id), reply) in ips.iter().zip(replies) {
            serve_ip_with_passive_dns(otx, ip, pulse_id, reply);
        }
    };
    let observables: Vec<Value> = ips.iter().map(|(ip, _)| obs("ip", ip)).collect();
    let run = check(serve, &[], json!(observables), |otx, expected| {
        *expected = pulses_only(otx, &ips);
    });
    run.relay.post("/version", None, "");
    assert_eq!(warnings(&run.relay), Vec::<String>::new());
}

#[test]
fn a_failure_leaves_the_sighting_out_with_one_warning_and_no_error() {
    let ips = [
        ("198.51.100.51", "600000000000000000000051"),
        ("198.51.100.52", "600000000000000000000052"),
        ("198.51.100.53", "600000000000000000000053"),
        ("198.51.100.54", "600000000000000000000054"),
    ];
    let records = answer(vec![a(
        "www.example.com",
        "192.0.2.1",
        "2021-01-01T00:00:00",
        "2021-01-02T00:00:00",
    )]);
    let replies = [
        Reply::status(500),
        // Refused mid-way: reset before the answer, on every try.
        records.clone().with_fault(Fault::ResetBeforeHead),
        // Not JSON, or cut short.
        Reply::json_bytes(&b"<html>busy</html>"[..]),
        records
            .with_fault(Fault::TruncateBody)
            .with_header("Connection", "close"),
    ];
    let serve = |otx: &FakeOtx| {
        for ((ip, pulse_id), reply) in ips.iter().zip(replies) {
            serve_ip_with_passive_dns(otx, ip, pulse_id, reply);
        }
    };
    let observables: Vec<Value> = ips.iter().map(|(ip, _)| obs("ip", ip)).collect();
    let run = check(serve, &[], json!(observables), |otx, expected| {
        *expected = pulses_only(otx, &ips);
    });
    let (relay, otx) = (&run.relay, &run.otx);

    // Four failures, one line: a kind of OTX trouble is logged at most
    // once a minute (SPEC §8), the next line counting what was folded.
    let lines = warnings(relay);
    assert_eq!(lines.len(), 1, "one warning: {lines:?}\n{}", relay.logs());
    for line in &lines {
        assert!(line.contains(" WARN "), "{line}");
        assert!(line.contains("ip observable"), "the type is named: {line}");
        for (ip, _) in ips {
            assert!(!line.contains(ip), "the value is not: {line}");
        }
    }
    // Which of the four comes first is a race; each is one of them.
    assert!(
        lines[0].contains("WARN passive DNS was left out of an answer: a ip observable: "),
        "{lines:?}"
    );
    // Reset on each of the three tries: the retries count in the access log.
    assert_eq!(
        otx.requests_to(&passive_dns_path("IPv4", ips[1].0)).len(),
        3
    );
}

#[test]
fn a_failing_general_keeps_the_passive_dns_sighting_beside_its_error() {
    let serve = |otx: &FakeOtx| {
        otx.on(&general_path("IPv4", IP), Reply::status(500));
        otx.on(
            &passive_dns_path("IPv4", IP),
            answer(vec![a(
                "www.example.com",
                IP,
                "2021-01-01T00:00:00",
                "2021-01-02T00:00:00",
            )]),
        );
    };
    let observable = obs("ip", IP);
    check(serve, &[], json!([observable]), |otx, expected| {
        expected.sighted(sighting(
            otx,
            &observable,
            "IP",
            &format!("ip/{IP}"),
            &[relation("www.example.com", IP)],
            ("2021-01-01T00:00:00Z", "2021-01-02T00:00:00Z"),
        ));
        // The data gathered, and the error of the observable (SPEC §4).
        expected.errors.push(json!({
            "code": "oops",
            "message": "Something went wrong. Reason: 500 Internal Server Error.",
            "type": "fatal",
        }));
    });
}

#[test]
fn the_deadline_leaves_the_sighting_out_with_a_warning_and_no_error() {
    let otx = FakeOtx::start();
    let (ip, pulse_id) = ("198.51.100.61", "600000000000000000000061");
    let slow = answer(vec![a(
        "www.example.com",
        ip,
        "2021-01-01T00:00:00",
        "2021-01-02T00:00:00",
    )]);
    serve_ip_with_passive_dns(
        &otx,
        ip,
        pulse_id,
        slow.with_head_delay(Duration::from_secs(6)),
    );
    let relay = Relay::start(&otx, &[("RELAY_DEADLINE", "2")]);
    let started = Instant::now();
    check_answer(
        &relay,
        &json!([obs("ip", ip)]),
        &pulses_only(&otx, &[(ip, pulse_id)]).answer(),
    );
    // Bounded by the deadline (2 s), not by the slow answer (6 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(relay.wait_log("passive DNS"), "{}", relay.logs());
    let lines = warnings(&relay);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("did not answer in time"), "{lines:?}");
}

// ---------------------------------------------------------------------------
// Caches and metrics

#[test]
fn cached_per_tenant_like_general_and_failures_are_not() {
    let otx = FakeOtx::start();
    let path = passive_dns_path("IPv4", IP);
    let records = answer(vec![a(
        "www.example.com",
        IP,
        "2021-01-01T00:00:00",
        "2021-01-02T00:00:00",
    )]);
    otx.on_seq(&path, vec![Reply::status(500), records]);
    otx.on(&passive_dns_path("IPv4", OTHER_IP), Reply::status(404));
    let relay = Relay::start(&otx, &[("CACHE_TTL", "300")]);
    const OTHER: &str = "otx-other-tenant-key-0123456789";
    relay.forbid(OTHER);
    let other = jwt(SECRET, &json!({"key": OTHER}));
    relay.forbid(&other);
    let ip = json!([obs("ip", IP)]);

    // A failure is not kept: the next call asks again.
    check_answer(&relay, &ip, &json!({"data": {}}));
    let first = observe(&relay, &ip);
    assert_eq!(otx.requests_to(&path).len(), 2);
    // Then a hit, for this tenant only.
    let again = observe(&relay, &ip);
    assert_eq!(otx.requests_to(&path).len(), 2, "{:?}", otx.requests());
    assert_eq!(
        only_sighting(&first)["relations"],
        only_sighting(&again)["relations"]
    );
    let (_, theirs) = relay.post(OBSERVE, Some(&bearer(&other)), &ip.to_string());
    assert_eq!(
        only_sighting(&theirs)["relations"],
        only_sighting(&first)["relations"]
    );
    let asked = otx.requests_to(&path);
    assert_eq!(asked.len(), 3, "the other tenant asks OTX itself");
    assert_eq!(asked[2].header("X-OTX-API-KEY"), Some(OTHER));
    // No records (404) is kept too.
    let other_ip = json!([obs("ip", OTHER_IP)]);
    for _ in 0..2 {
        check_answer(&relay, &other_ip, &json!({"data": {}}));
    }
    assert_eq!(
        otx.requests_to(&passive_dns_path("IPv4", OTHER_IP)).len(),
        1
    );
}

#[test]
fn a_fleet_shares_passive_dns_through_redis() {
    let Some(_) = tool("redis-server") else {
        return;
    };
    let redis = RedisServer::start().expect("redis-server starts");
    let otx = FakeOtx::start();
    let path = passive_dns_path("domain", "example.com");
    otx.on(
        &path,
        answer(vec![
            a(
                "example.com",
                "192.0.2.1",
                "2021-01-01T00:00:00",
                "2021-01-02T00:00:00",
            ),
            rec(
                "www.example.com",
                "2001:db8::1",
                "AAAA",
                None,
                Some("2021-01-03T00:00:00"),
            ),
        ]),
    );
    let env = [("REDIS_URL", redis.url()), ("CACHE_TTL", "300".to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (one, two) = (Relay::start(&otx, &env), Relay::start(&otx, &env));
    let domain = json!([obs("domain", "example.com")]);
    let first = observe(&one, &domain);
    let second = observe(&two, &domain);
    assert_eq!(
        otx.requests_to(&path).len(),
        1,
        "one passive DNS call for the fleet"
    );
    let relations = [
        relation("www.example.com", "2001:db8::1"),
        relation("example.com", "192.0.2.1"),
    ];
    for body in [&first, &second] {
        let doc = only_sighting(body);
        check_json(&doc["relations"], &json!(relations));
        check_json(
            &doc["observed_time"],
            &json!({"start_time": "2021-01-01T00:00:00Z", "end_time": "2021-01-03T00:00:00Z"}),
        );
    }
}

#[test]
fn metrics_count_passive_dns_calls() {
    let otx = FakeOtx::start();
    otx.on(
        &passive_dns_path("IPv4", IP),
        answer(vec![a(
            "www.example.com",
            IP,
            "2021-01-01T00:00:00",
            "2021-01-02T00:00:00",
        )]),
    );
    let relay = Relay::start(&otx, &[("CACHE_TTL", "300")]);
    observe(&relay, &json!([obs("ip", IP), obs("ip", OTHER_IP)]));
    observe(&relay, &json!([obs("ip", IP)]));
    let (status, _, page) = relay.request("GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let page = String::from_utf8(page).expect("UTF-8");
    for line in [
        "otx_relay_otx_requests_total{call=\"passive_dns\",outcome=\"200\"} 1\n",
        "otx_relay_otx_requests_total{call=\"passive_dns\",outcome=\"404\"} 1\n",
        "otx_relay_otx_request_duration_seconds_count{call=\"passive_dns\"} 2\n",
    ] {
        assert!(page.contains(line), "no {line:?} in\n{page}");
    }
    assert!(!page.contains(IP) && !page.contains(OTHER_IP), "{page}");
}

// ---------------------------------------------------------------------------
// Hostnames (their refer link and respond actions: endpoints.rs, respond.rs)

#[test]
fn a_hostname_is_looked_up_in_its_own_section_matched_ignoring_case_and_judged() {
    let pulse_id = "600000000000000000000071";
    let serve = |otx: &FakeOtx| {
        otx.on(
            &general_path("hostname", "www.example.com"),
            Reply::json(general("hostname", vec![pulse(pulse_id, "hostname")])),
        );
        serve_records(
            otx,
            pulse_id,
            vec![
                record("example.com", "2021-01-02T00:00:00"),
                record("www.EXAMPLE.com", "2021-01-01T00:00:00"),
            ],
        );
    };
    let observable = obs("hostname", "WWW.Example.COM");
    let refer = "hostname/WWW.Example.COM";

    let run = check(serve, &[], json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, pulse_id, "2021-01-01T00:00:00Z", None)
            .judged(otx, &observable, refer, Judged::Suspicious(1));
    });
    let (relay, otx) = (&run.relay, &run.otx);

    let (status, body) =
        relay.post_auth("/deliberate/observables", &json!([observable]).to_string());
    assert_eq!(status, 200);
    let mut judged = Expected::default();
    judged.judged(otx, &observable, refer, Judged::Suspicious(1));
    check_json(&body, &json!({"data": judged.data()}));
}
