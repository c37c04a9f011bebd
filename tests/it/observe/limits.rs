//! The order of the records across pulses and the entities limit, from the
//! environment and from the JWT (SPEC §6).

use serde_json::{json, Value};

use crate::observe::{
    check, check_links, docs, general, general_path, obs, pulse, record, serve_ip_pulses,
    serve_records, Judged, IP, OBSERVE,
};
use crate::support::*;

// ---------------------------------------------------------------------------
// Order and limits

/// The pulse ids of an answer's sightings, in order.
fn sighted_pulses(body: &Value) -> Vec<String> {
    docs(body, "sightings")
        .iter()
        .map(|s| s["external_ids"][0].as_str().expect("an id").to_string())
        .collect()
}

/// The ids of the `count` pulses `serve_many` serves, pulse `i` the `i`-th.
fn many_ids(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("7{i:023}")).collect()
}

/// Serves `count` pulses for `IP`, pulse `i` recording it at minute `i`
/// (the higher `i`, the newer), listed in an order that is neither.
fn serve_many(otx: &FakeOtx, count: usize) -> Vec<String> {
    let ids = many_ids(count);
    let mut listed: Vec<usize> = (0..count).collect();
    listed.sort_by_key(|i| (i * 7919) % count.max(1));
    otx.on(
        &general_path("IPv4", IP),
        Reply::json(general(
            "IPv4",
            listed.iter().map(|&i| pulse(&ids[i], "IPv4")).collect(),
        )),
    );
    for (i, id) in ids.iter().enumerate() {
        serve_records(otx, id, vec![record(IP, &minute(i))]);
    }
    ids
}

/// `2020-01-01T00:00:00` plus `i` minutes (for `i` below 1440).
fn minute(i: usize) -> String {
    format!("2020-01-01T{:02}:{:02}:00", i / 60, i % 60)
}

/// The `n` newest of the pulses `serve_many` made, newest first.
fn newest(ids: &[String], n: usize) -> Vec<String> {
    ids.iter().rev().take(n).cloned().collect()
}

#[test]
fn records_come_newest_first_across_pulses() {
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
    ];
    let serve = |otx: &FakeOtx| {
        serve_ip_pulses(otx, &ids);
        serve_records(otx, ids[0], vec![record(IP, "2021-01-02T00:00:00")]);
        serve_records(otx, ids[1], vec![record(IP, "2021-01-02T00:00:00.5")]);
        serve_records(otx, ids[2], vec![record(IP, "2020-12-31T23:59:59")]);
    };
    let observable = obs("ip", IP);

    check(serve, &[], json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, ids[1], "2021-01-02T00:00:00.5Z", None)
            .found(otx, &observable, ids[0], "2021-01-02T00:00:00Z", None)
            .found(otx, &observable, ids[2], "2020-12-31T23:59:59Z", None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Malicious(3));
    });
}

#[test]
fn entities_limit_from_the_environment_keeps_the_newest_records() {
    let ids = many_ids(3);
    let serve = |otx: &FakeOtx| {
        serve_many(otx, 3);
    };
    let env = [("CTR_ENTITIES_LIMIT", "2")];
    let observable = obs("ip", IP);

    check(serve, &env, json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, &ids[2], "2020-01-01T00:02:00Z", None)
            .found(otx, &observable, &ids[1], "2020-01-01T00:01:00Z", None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Malicious(3));
    });
}

#[track_caller]
fn check_limit(otx: &FakeOtx, ids: &[String], env: &[(&str, &str)], token: &str, want: usize) {
    let relay = Relay::start(otx, env);
    let (status, body) = relay.post(
        OBSERVE,
        Some(&bearer(token)),
        &json!([obs("ip", IP)]).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{env:?}: {body}");
    for kind in ["sightings", "indicators", "relationships"] {
        assert_eq!(body["data"][kind]["count"], want, "{env:?}: {kind}");
        assert_eq!(docs(&body, kind).len(), want, "{env:?}: {kind}");
    }
    assert_eq!(sighted_pulses(&body), newest(ids, want), "{env:?}");
    check_links(&body);
}

#[test]
fn entities_limit_of_zero_or_junk_means_100_and_a_larger_one_is_honoured() {
    let otx = FakeOtx::start();
    let ids = serve_many(&otx, 120);
    for bad in ["0", "junk", "-5", "1.5"] {
        check_limit(&otx, &ids, &[("CTR_ENTITIES_LIMIT", bad)], &token(), 100);
    }
    check_limit(&otx, &ids, &[], &token(), 100);
    check_limit(&otx, &ids, &[("CTR_ENTITIES_LIMIT", "5000")], &token(), 120);
    check_limit(&otx, &ids, &[("CTR_ENTITIES_LIMIT", "110")], &token(), 110);
}

#[test]
fn entities_limit_above_1000_means_1000() {
    let otx = FakeOtx::start();
    let ids = serve_many(&otx, 1001);
    check_limit(
        &otx,
        &ids,
        &[("CTR_ENTITIES_LIMIT", "5000")],
        &token(),
        1000,
    );
}

#[test]
fn the_jwt_entities_limit_claim_overrides_the_environment() {
    let otx = FakeOtx::start();
    let ids = serve_many(&otx, 120);
    let claim = |limit: Value| jwt(SECRET, &json!({"key": KEY, "CTR_ENTITIES_LIMIT": limit}));
    let env = [("CTR_ENTITIES_LIMIT", "3")];
    check_limit(&otx, &ids, &env, &claim(json!(1)), 1);
    check_limit(&otx, &ids, &env, &claim(json!(5)), 5);
    check_limit(&otx, &ids, &env, &claim(json!("2")), 2);
    // The claim follows the same rules: a bad one means 100, not the env's 3.
    check_limit(&otx, &ids, &env, &claim(json!(0)), 100);
    check_limit(&otx, &ids, &env, &claim(json!("junk")), 100);
    check_limit(
        &otx,
        &ids,
        &[("CTR_ENTITIES_LIMIT", "2")],
        &claim(json!(5000)),
        120,
    );
    check_limit(&otx, &ids, &env, &token(), 3);
}
