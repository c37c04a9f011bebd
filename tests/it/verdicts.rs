//! `/deliberate/observables` and the verdicts `/observe` carries (SPEC §7).

use serde_json::{json, Value};

use crate::support::{
    bearer, check_json, expected_verdict, sample, token, FakeOtx, Relay, Reply, StartRelay,
};

const IP: &str = "151.106.3.179";

fn general_path(section: &str, value: &str) -> String {
    format!("/api/v1/indicators/{section}/{value}/general")
}

/// A `/general` answer with `pulses` pulses that hold the IPv4 indicator and
/// the given `validation` names.
fn general(pulses: usize, validation: &[&str]) -> Value {
    let pulses: Vec<Value> = (0..pulses)
        .map(|i| {
            json!({
                "id": format!("pulse{i:02}"),
                "name": format!("Pulse {i}"),
                "indicator_type_counts": {"IPv4": 1},
            })
        })
        .collect();
    let validation: Vec<Value> = validation
        .iter()
        .map(|name| json!({"source": "whitelist", "message": name, "name": name}))
        .collect();
    json!({
        "base_indicator": {"type": "IPv4", "indicator": IP},
        "pulse_info": {"count": pulses.len(), "pulses": pulses},
        "validation": validation,
        "false_positive": [],
    })
}

fn observables(kind: &str, value: &str) -> String {
    json!([{"type": kind, "value": value}]).to_string()
}

/// `data` holding the one judgement + verdict pair expected for `observable`.
fn expected(observable: Value, disposition: u8, reason: &str) -> Value {
    let (kind, value) = (
        observable["type"].as_str().unwrap(),
        observable["value"].as_str().unwrap(),
    );
    let category = match kind {
        "ip" | "ipv6" => "ip",
        "md5" | "sha1" | "sha256" => "file",
        other => other,
    };
    let source_uri = format!(
        "<<re:http://127\\.0\\.0\\.1:\\d+/indicator/{category}/{}>>",
        value.replace('.', "\\.")
    );
    let (judgement, verdict) = expected_verdict(&observable, &source_uri, disposition, reason);
    json!({"data": {
        "judgements": {"count": 1, "docs": [judgement]},
        "verdicts": {"count": 1, "docs": [verdict]},
    }})
}

#[track_caller]
fn check(otx: &FakeOtx, env: &[(&str, &str)], general: Value, want: Option<(u8, &str, &str)>) {
    otx.on(&general_path("IPv4", IP), Reply::json(general));
    let relay = Relay::start(otx, env);
    let (status, body) = relay.post_auth("/deliberate/observables", &observables("ip", IP));
    assert_eq!(status, 200);
    match want {
        Some((d, name, reason)) => {
            check_json(
                &body,
                &expected(json!({"type": "ip", "value": IP}), d, reason),
            );
            let judgement = &body["data"]["judgements"]["docs"][0];
            assert_eq!(judgement["disposition_name"], name);
            let verdict = &body["data"]["verdicts"]["docs"][0];
            assert_eq!(verdict["judgement_id"], judgement["id"]);
            assert_eq!(verdict["valid_time"], judgement["valid_time"]);
        }
        None => check_json(&body, &json!({"data": {}})),
    }
}

#[test]
fn two_pulses_and_no_validation_are_malicious() {
    let otx = FakeOtx::start();
    check(
        &otx,
        &[],
        general(2, &[]),
        Some((2, "Malicious", "Found in 2 AlienVault OTX pulses")),
    );
}

#[test]
fn the_malicious_threshold_comes_from_the_environment() {
    let otx = FakeOtx::start();
    let env = [("OTX_MALICIOUS_PULSES", "4")];
    check(
        &otx,
        &env,
        general(3, &[]),
        Some((3, "Suspicious", "Found in 3 AlienVault OTX pulses")),
    );
    let otx = FakeOtx::start();
    check(
        &otx,
        &env,
        general(4, &[]),
        Some((2, "Malicious", "Found in 4 AlienVault OTX pulses")),
    );
}

#[test]
fn one_pulse_is_suspicious() {
    let otx = FakeOtx::start();
    check(
        &otx,
        &[],
        general(1, &[]),
        Some((3, "Suspicious", "Found in 1 AlienVault OTX pulse")),
    );
}

#[test]
fn one_validation_entry_with_pulses_is_suspicious() {
    let otx = FakeOtx::start();
    let reason = "Found in 5 AlienVault OTX pulses; whitelisted by AlienVault OTX: Whitelisted IP";
    check(
        &otx,
        &[],
        general(5, &["Whitelisted IP"]),
        Some((3, "Suspicious", reason)),
    );
}

#[test]
fn two_validation_entries_are_clean_even_with_pulses() {
    let otx = FakeOtx::start();
    let reason = "Whitelisted by AlienVault OTX: Whitelisted IP; Known False Positive";
    check(
        &otx,
        &[],
        general(3, &["Whitelisted IP", "Known False Positive"]),
        Some((1, "Clean", reason)),
    );
}

#[test]
fn an_accepted_false_positive_is_clean() {
    let otx = FakeOtx::start();
    let mut g = general(4, &[]);
    g["false_positive"] =
        json!([{"assessment": "accepted", "assessment_date": "2021-05-19T15:36:44.966000"}]);
    check(
        &otx,
        &[],
        g,
        Some((1, "Clean", "Accepted as a false positive by AlienVault OTX")),
    );
}

#[test]
fn a_pending_false_positive_changes_nothing() {
    let otx = FakeOtx::start();
    let mut g = general(2, &[]);
    g["false_positive"] = json!([{"assessment": null}]);
    check(
        &otx,
        &[],
        g,
        Some((2, "Malicious", "Found in 2 AlienVault OTX pulses")),
    );
}

#[test]
fn no_pulse_and_no_signal_gives_no_verdict() {
    let otx = FakeOtx::start();
    check(&otx, &[], general(0, &[]), None);
    let otx = FakeOtx::start();
    check(&otx, &[], general(0, &["Whitelisted IP"]), None);
}

#[test]
fn the_whitelisted_sample_is_clean() {
    let otx = FakeOtx::start();
    otx.on(
        &general_path("IPv4", "8.8.8.8"),
        Reply::json(sample("general-ipv4-no-pulses-whitelisted.json")),
    );
    let relay = Relay::start(&otx, &[]);
    let (_, body) = relay.post_auth("/deliberate/observables", &observables("ip", "8.8.8.8"));
    check_json(
        &body,
        &expected(
            json!({"type": "ip", "value": "8.8.8.8"}),
            1,
            "Whitelisted by AlienVault OTX: Known False Positive; Whitelisted IP",
        ),
    );
}

#[test]
fn the_seven_pulse_sample_is_suspicious_as_only_one_pulse_counts_ipv4() {
    let otx = FakeOtx::start();
    check(
        &otx,
        &[],
        sample("general-ipv4.json"),
        Some((3, "Suspicious", "Found in 1 AlienVault OTX pulse")),
    );
}

#[test]
fn deliberate_asks_only_general_once_per_distinct_observable() {
    let otx = FakeOtx::start();
    otx.on(&general_path("IPv4", IP), Reply::json(general(3, &[])));
    otx.on(
        &general_path("domain", "example.com"),
        Reply::file("general-unknown-domain.json"),
    );
    let relay = Relay::start(&otx, &[]);
    let body = json!([
        {"type": "ip", "value": IP},
        {"type": "ip", "value": IP},
        {"type": "domain", "value": "example.com"},
        {"type": "email", "value": "a@example.com"},
        {"type": "unknown", "value": "x"},
    ]);
    let (_, answer) = relay.post_auth("/deliberate/observables", &body.to_string());
    assert_eq!(answer["data"]["verdicts"]["count"], 1);
    assert_eq!(answer["data"]["judgements"]["count"], 1);
    let paths: Vec<String> = otx.requests().into_iter().map(|r| r.path).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            general_path("IPv4", IP),
            general_path("domain", "example.com")
        ],
        "only /general, once each: {paths:?}"
    );
}

#[test]
fn email_and_unknown_types_give_nothing_and_ask_nothing() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let body = json!([{"type": "email", "value": "a@example.com"}, {"type": "x", "value": "y"}]);
    let (_, answer) = relay.post_auth("/deliberate/observables", &body.to_string());
    check_json(&answer, &json!({"data": {}}));
    assert!(otx.requests().is_empty());
}

#[test]
fn valid_time_spans_verdict_valid_days() {
    let otx = FakeOtx::start();
    otx.on(&general_path("IPv4", IP), Reply::json(general(2, &[])));
    let relay = Relay::start(&otx, &[("VERDICT_VALID_DAYS", "3")]);
    let (_, body) = relay.post_auth("/deliberate/observables", &observables("ip", IP));
    let time = &body["data"]["judgements"]["docs"][0]["valid_time"];
    let millis = |v: &Value| parse_millis(v.as_str().expect("a time string"));
    assert_eq!(
        millis(&time["end_time"]) - millis(&time["start_time"]),
        3 * 86_400_000
    );
}

#[test]
fn deliberate_has_the_same_auth_and_body_checks_as_observe() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let (_, body) = relay.post("/deliberate/observables", None, "[]");
    check_json(
        &body,
        &json!({"errors": [{"code": "authorization error", "message": "Authorization failed: Authorization header is missing", "type": "fatal"}]}),
    );
    let (_, body) = relay.post("/deliberate/observables", Some(&bearer(&token())), "{}");
    assert_eq!(body["errors"][0]["code"], "invalid payload received");
}

#[test]
fn observe_carries_the_verdict_at_no_extra_otx_cost() {
    let otx = FakeOtx::start();
    otx.on(&general_path("IPv4", IP), Reply::json(general(2, &[])));
    for i in 0..2 {
        otx.on(
            &format!("/api/v1/pulses/pulse{i:02}/indicators"),
            Reply::json(json!({"results": [{"indicator": IP, "created": format!("2020-01-0{}T00:00:00", i + 1)}], "next": null})),
        );
    }
    // Passive DNS (SPEC §15) is not the verdict's cost: left out of the count.
    let relay = Relay::start(&otx, &[("PASSIVE_DNS", "off")]);
    let (_, body) = relay.post_auth("/observe/observables", &observables("ip", IP));
    assert_eq!(body["data"]["sightings"]["count"], 2);
    assert_eq!(body["data"]["indicators"]["count"], 2);
    assert_eq!(body["data"]["relationships"]["count"], 2);
    let verdicts = json!({"data": {
        "judgements": body["data"]["judgements"].clone(),
        "verdicts": body["data"]["verdicts"].clone(),
    }});
    check_json(
        &verdicts,
        &expected(
            json!({"type": "ip", "value": IP}),
            2,
            "Found in 2 AlienVault OTX pulses",
        ),
    );
    // One /general and one lookup per pulse: the verdict cost nothing more.
    assert_eq!(otx.requests().len(), 3);
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.sssZ`.
fn parse_millis(s: &str) -> i64 {
    let n = |range: std::ops::Range<usize>| -> i64 { s[range].parse().expect("digits") };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant), independent of the relay's code.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) * 1000) + n(20..23)
}
