//! Dashboard tiles (SPEC §11) against a fake OTX serving subscribed pulses:
//! the tile list, each tile's data on a known set of pulses (bucket
//! boundaries, escaping, malware shapes, paging), the walk's bounds
//! (`TILE_MAX_PULSES`, a failing page, the deadline), one walk for four
//! tiles, and the cache's expiry.

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use otx_relay::time::{format_time, parse_otx_time};

use crate::support::*;

const SUBSCRIBED: &str = "/api/v1/pulses/subscribed";
const TILE_IDS: [&str; 4] = [
    "otx-activity-summary",
    "otx-pulses-per-period",
    "otx-latest-pulses",
    "otx-top-malware",
];

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

/// Waits until the clock is not within 5 s of the top of an hour, so that
/// the test and the relay see the same hour (and day).
fn clear_of_the_hour() -> u64 {
    loop {
        let t = now();
        let into = t % 3600;
        if (5..3595).contains(&into) {
            return t;
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (OTX's `modified`) of `secs`.
fn otx_time(secs: u64) -> String {
    iso(secs)[..19].to_owned()
}

/// `YYYY-MM-DDTHH:MM:SS.000Z` of `secs` (the relay's own formatting, unit
/// tested in `time.rs`).
fn iso(secs: u64) -> String {
    format_time(UNIX_EPOCH + Duration::from_secs(secs))
}

fn pulse(id: &str, name: &str, modified: u64, extra: Value) -> Value {
    let mut p = json!({"id": id, "name": name, "modified": otx_time(modified) + ".123456",
                        "author_name": "analyst", "indicators": [{"indicator": "1.2.3.4"}]});
    if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    p
}

fn page(pulses: Vec<Value>, next: bool) -> Reply {
    let next = next.then_some("https://otx.example/api/v1/pulses/subscribed?page=next");
    Reply::json(json!({"count": pulses.len(), "next": next, "results": pulses}))
}

/// POST `path` with `body` and the test token; the status and answer.
#[track_caller]
fn post(relay: &Relay, path: &str, body: Value) -> Value {
    let (status, answer) = relay.post_auth(path, &body.to_string());
    assert_eq!(status, 200, "{answer}");
    answer
}

#[track_caller]
fn tile_data(relay: &Relay, tile: &str, period: &str) -> Value {
    post(
        relay,
        "/tiles/tile-data",
        json!({"tile_id": tile, "period": period}),
    )
}

/// One tile case: what the fake OTX serves, the relay's variables, and the
/// tile and period asked; the answer must be a 200. Returns the run rather
/// than taking the answer expected: most of it depends on the period the
/// relay walked, which only the fake saw ([`walked_since`]), and the tests
/// then ask the same relay for the walk's other tiles.
#[track_caller]
fn check(serve: impl FnOnce(&FakeOtx), env: &[(&str, &str)], tile: &str, period: &str) -> Checked {
    let otx = FakeOtx::start();
    serve(&otx);
    let relay = Relay::start(&otx, env);
    let answer = tile_data(&relay, tile, period);
    Checked { relay, otx, answer }
}

/// What one `check` ran and got.
struct Checked {
    /// Declared first, so that it stops before the fake OTX it talks to.
    relay: Relay,
    otx: FakeOtx,
    /// The tile's answer (a 200).
    answer: Value,
}

#[test]
fn the_tiles_are_listed_and_described() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let answer = post(&relay, "/tiles", json!({}));
    let tiles = answer["data"].as_array().expect("a list");
    let ids: Vec<&str> = tiles.iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids, TILE_IDS);
    let types: Vec<&str> = tiles.iter().filter_map(|t| t["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "metric_group",
            "vertical_bar_chart",
            "markdown",
            "donut_graph"
        ]
    );
    for tile in tiles {
        check_json(
            tile,
            &json!({
                "id": "<<any>>", "type": "<<any>>", "title": "<<re:OTX .+>>",
                "short_description": "<<re:.{10,}>>", "description": "<<re:.{20,}>>",
                "tags": ["AlienVault OTX", "<<re:[a-z]+>>"],
                "periods": ["last_24_hours", "last_7_days", "last_30_days"],
                "default_period": "last_7_days"
            }),
        );
    }
    let one = post(&relay, "/tiles/tile", json!({"tile_id": "otx-top-malware"}));
    assert_eq!(one["data"], tiles[3]);
    // Any body works for /tiles; the others check theirs, before the token.
    let (_, any) = relay.post_auth("/tiles", "not json");
    assert_eq!(any["data"].as_array().map(Vec::len), Some(4));
    for (path, body, message) in [
        (
            "/tiles/tile",
            json!({"tile_id": "x"}),
            r#"Invalid JSON payload received. Unknown tile_id "x"."#,
        ),
        (
            "/tiles/tile",
            json!([]),
            "Invalid JSON payload received. Expected an object with a string tile_id.",
        ),
        (
            "/tiles/tile-data",
            json!({"tile_id": "otx-top-malware"}),
            "Invalid JSON payload received. Expected an object with a string tile_id and period.",
        ),
        (
            "/tiles/tile-data",
            json!({"tile_id": "otx-top-malware", "period": "last_year"}),
            r#"Invalid JSON payload received. Unknown period "last_year" for tile "otx-top-malware"."#,
        ),
        (
            "/tiles/tile-data",
            json!({"tile_id": 5, "period": "last_7_days"}),
            "Invalid JSON payload received. Expected an object with a string tile_id and period.",
        ),
    ] {
        let (status, answer) = relay.post(path, None, &body.to_string());
        assert_eq!(status, 200);
        check_json(
            &answer,
            &json!({"errors": [{"code": "invalid payload received", "message": message, "type": "fatal"}]}),
        );
    }
    // And the token, as for /observe.
    let (_, answer) = relay.post("/tiles", None, "{}");
    assert_eq!(
        answer["errors"][0]["message"],
        "Authorization failed: Authorization header is missing"
    );
    assert_eq!(otx.request_count(), 0);
}

/// Makes `otx`'s subscribed pulses from the period the relay asks for:
/// `pages(start, now)` gives each page's pulses, `start` being the walk's
/// `modified_since` and `now` the period's end (`start + length`). So the
/// test needs no clock of its own: the relay's is the only one.
fn subscriptions(
    otx: &FakeOtx,
    length: u64,
    pages: impl Fn(u64, u64) -> Vec<Vec<Value>> + Send + Sync + 'static,
) {
    otx.fallback(move |request| {
        let since = request.query_param("modified_since").unwrap_or_default();
        let Some(start) = parse_otx_time(&since) else {
            return Reply::status(400);
        };
        let mut pages = pages(start, start + length);
        let n = request
            .query_param("page")
            .and_then(|p| p.parse::<usize>().ok());
        let n = n.unwrap_or(1).clamp(1, pages.len().max(1));
        let more = n < pages.len();
        page(
            pages.get_mut(n - 1).map(std::mem::take).unwrap_or_default(),
            more,
        )
    });
}

/// The start of the period the relay walked (its one `modified_since`).
fn walked_since(otx: &FakeOtx) -> u64 {
    let asked = otx.requests_to(SUBSCRIBED);
    let since = asked.first().and_then(|r| r.query_param("modified_since"));
    let since = since.unwrap_or_else(|| panic!("no walk: {asked:?}"));
    parse_otx_time(&since).unwrap_or_else(|| panic!("modified_since {since:?}"))
}

#[test]
fn each_tile_on_a_known_week_of_pulses() {
    const WEEK: u64 = 7 * 86_400;
    // Page 1: four pulses; page 2: two more, one just outside the period.
    let week = |start: u64, now: u64| {
        let today = now - now % 86_400;
        vec![
            vec![
                pulse(
                    "5f0000000000000000000001",
                    "Emotet | wave\nTwo [x]",
                    now,
                    json!({"malware_families": [{"display_name": "Emotet", "id": "emotet"}, "Ryuk"],
                             "adversary": "TA542", "indicator_count": 10}),
                ),
                pulse(
                    "5f0000000000000000000002",
                    "At the period start",
                    start,
                    json!({"malware_families": ["emotet"], "adversary": "TA542", "indicators": []}),
                ),
                pulse(
                    "5f0000000000000000000003",
                    "Midnight",
                    today,
                    json!({"malware_families": [5, null, "", {"id": "trickbot"}], "adversary": "Wizard Spider"}),
                ),
                pulse(
                    "5f0000000000000000000004",
                    "Just before midnight",
                    today - 1,
                    json!({"malware_families": [{"display_name": "Qakbot"}], "author_name": "a|b"}),
                ),
            ],
            vec![
                pulse(
                    "5f0000000000000000000005",
                    "Three days ago",
                    today - 3 * 86_400 + 7200,
                    json!({"malware_families": ["Ryuk", "Conti", "LockBit", "BlackCat", "Cobalt Strike"]}),
                ),
                pulse(
                    "5f0000000000000000000006",
                    "Before the period",
                    start - 1,
                    json!({}),
                ),
            ],
        ]
    };
    let serve = |otx: &FakeOtx| subscriptions(otx, WEEK, week);
    let run = check(serve, &[], "otx-activity-summary", "last_7_days");
    let (relay, otx) = (&run.relay, &run.otx);
    // The period is exactly the 7 days before the walk.
    let start = walked_since(otx);
    let (now, today) = (start + WEEK, (start + WEEK) / 86_400 * 86_400);
    let observed = json!({"start_time": iso(start), "end_time": iso(now)});
    check_json(
        &run.answer,
        &json!({"data": {
            "observed_time": observed,
            "valid_time": {"start_time": "<<time>>", "end_time": "<<time>>"},
            "cache_scope": "org", "hide_legend": false,
            "data": [
                {"icon": "report", "label": "Pulses", "value": 5, "value_unit": "integer"},
                {"icon": "target", "label": "Indicators", "value": 13, "value_unit": "integer"},
                {"icon": "user", "label": "Adversaries", "value": 2, "value_unit": "integer"},
                {"icon": "bug", "label": "Malware families", "value": 8, "value_unit": "integer"}
            ]
        }}),
    );
    // The walk was made once: two pages, asked for the period's start.
    let asked = otx.requests_to(SUBSCRIBED);
    assert_eq!(asked.len(), 2);
    for (i, request) in asked.iter().enumerate() {
        assert_eq!(request.query_param("limit").as_deref(), Some("50"));
        assert_eq!(request.query_param("page"), Some((i + 1).to_string()));
        assert_eq!(
            request.query_param("modified_since"),
            Some(otx_time(start)),
            "{}",
            request.query
        );
        assert_eq!(request.header("X-OTX-API-KEY"), Some(KEY));
    }

    let bars = tile_data(relay, "otx-pulses-per-period", "last_7_days");
    // 8 days: the first from the period's start, the last until now.
    let first_day = start - start % 86_400;
    let day = |i: u64, n: u64| {
        let at = first_day + i * 86_400;
        let tooltip = format!("{n} pulse{}", if n == 1 { "" } else { "s" });
        json!({"key": at * 1000, "label": &iso(at)[..10], "value": n,
               "values": [{"key": "pulses", "value": n, "tooltip": tooltip}]})
    };
    check_json(
        &bars["data"],
        &json!({
            "observed_time": observed,
            "valid_time": {"start_time": "<<time>>", "end_time": "<<time>>"},
            "cache_scope": "org", "hide_legend": false,
            "key_type": "timestamp",
            "keys": [{"key": "pulses", "label": "Pulses"}],
            // Oldest first, empty days included: the period start, three days
            // ago, just before midnight, and two today.
            "data": [day(0, 1), day(1, 0), day(2, 0), day(3, 0), day(4, 1), day(5, 0), day(6, 1), day(7, 2)]
        }),
    );

    let latest = tile_data(relay, "otx-latest-pulses", "last_7_days");
    let row = |at: u64, id: &str, name: &str, author: &str, n: u64| {
        let stamp = iso(at);
        format!(
            "| {} {} | [{name}]({}/pulse/{id}) | {author} | {n} |",
            &stamp[..10],
            &stamp[11..16],
            otx.url()
        )
    };
    check_json(
        &latest["data"]["data"],
        &json!([
            "| Modified (UTC) | Pulse | Author | Indicators |",
            "| --- | --- | --- | --- |",
            row(
                now,
                "5f0000000000000000000001",
                "Emotet \\| wave Two \\[x\\]",
                "analyst",
                10
            ),
            row(today, "5f0000000000000000000003", "Midnight", "analyst", 1),
            row(
                today - 1,
                "5f0000000000000000000004",
                "Just before midnight",
                "a\\|b",
                1
            ),
            row(
                today - 3 * 86_400 + 7200,
                "5f0000000000000000000005",
                "Three days ago",
                "analyst",
                1
            ),
            row(
                start,
                "5f0000000000000000000002",
                "At the period start",
                "analyst",
                0
            ),
        ]),
    );

    let donut = tile_data(relay, "otx-top-malware", "last_7_days");
    // Emotet 2 (a case variant counts once per pulse), Ryuk 2, then four
    // families of one pulse each in name order, and the rest as Other.
    check_json(
        &donut["data"],
        &json!({
            "observed_time": observed,
            "valid_time": {"start_time": "<<time>>", "end_time": "<<time>>"},
            "cache_scope": "org", "hide_legend": false,
            "labels": [["Emotet", "Ryuk", "BlackCat", "Cobalt Strike", "Conti", "Other"]],
            "data": [{"key": 0, "value": 2}, {"key": 1, "value": 2}, {"key": 2, "value": 1},
                     {"key": 3, "value": 1}, {"key": 4, "value": 1}, {"key": 5, "value": 3}]
        }),
    );
    // Four tiles, one walk (cached for TILE_CACHE_TTL).
    assert_eq!(otx.requests_to(SUBSCRIBED).len(), 2);
}

#[test]
fn hourly_buckets_and_an_empty_period() {
    const DAY: u64 = 86_400;
    let day = |start: u64, now: u64| {
        let hour = now - now % 3600;
        vec![vec![
            pulse("5f00000000000000000000a0", "now", now, json!({})),
            pulse(
                "5f00000000000000000000a1",
                "top of the hour",
                hour,
                json!({}),
            ),
            pulse(
                "5f00000000000000000000a2",
                "a second before",
                hour - 1,
                json!({}),
            ),
            pulse("5f00000000000000000000a3", "period start", start, json!({})),
            pulse(
                "5f00000000000000000000a4",
                "before it",
                start - 1,
                json!({}),
            ),
        ]]
    };
    let serve = |otx: &FakeOtx| subscriptions(otx, DAY, day);
    let run = check(serve, &[], "otx-pulses-per-period", "last_24_hours");
    let (bars, start) = (&run.answer, walked_since(&run.otx));
    let first_hour = start - start % 3600;
    // 25 hours overlap the 24 before now: the first and the last partly.
    let data = bars["data"]["data"].as_array().expect("bars");
    assert_eq!(data.len(), 25);
    assert_eq!(data[0]["key"], json!(first_hour * 1000));
    assert_eq!(data[0]["label"], json!(&iso(first_hour)[11..16]));
    assert_eq!(data[24]["key"], json!((first_hour + 24 * 3600) * 1000));
    let counts: Vec<u64> = data.iter().filter_map(|b| b["value"].as_u64()).collect();
    let mut want = vec![0; 25];
    // The hour holding the period's start counts only what is in the
    // period (not `before it`); the current hour holds `now` and the top of
    // the hour; the hour before it, the second before.
    (want[0], want[23], want[24]) = (1, 1, 2);
    assert_eq!(counts, want, "{bars}");
    check_json(
        &bars["data"]["observed_time"],
        &json!({"start_time": iso(start), "end_time": iso(start + DAY)}),
    );

    // A tenant whose subscriptions brought nothing: every tile still answers.
    let quiet = |otx: &FakeOtx| otx.on(SUBSCRIBED, page(vec![], false));
    let run = check(quiet, &[], "otx-activity-summary", "last_30_days");
    let (relay, summary) = (&run.relay, &run.answer);
    let values: Vec<u64> = summary["data"]["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["value"].as_u64())
        .collect();
    assert_eq!(values, [0, 0, 0, 0]);
    let bars = tile_data(relay, "otx-pulses-per-period", "last_30_days");
    assert_eq!(bars["data"]["data"].as_array().map(Vec::len), Some(31));
    let latest = tile_data(relay, "otx-latest-pulses", "last_30_days");
    assert_eq!(latest["data"]["data"].as_array().map(Vec::len), Some(2));
    let donut = tile_data(relay, "otx-top-malware", "last_30_days");
    check_json(&donut["data"]["labels"], &json!([[]]));
    check_json(&donut["data"]["data"], &json!([]));

    // Each period is exactly its length, ending now, and the walk asked OTX
    // for pulses modified since that same instant.
    // (Each on a relay and a fake of its own, so that the one walk seen is
    // this period's.)
    for (period, length) in [("last_7_days", 7 * DAY), ("last_30_days", 30 * DAY)] {
        let run = check(quiet, &[], "otx-pulses-per-period", period);
        let observed = &run.answer["data"]["observed_time"];
        let since = walked_since(&run.otx);
        check_json(
            observed,
            &json!({"start_time": iso(since), "end_time": iso(since + length)}),
        );
        let bars = run.answer["data"]["data"].as_array().map(Vec::len);
        assert_eq!(
            bars,
            Some(if length == 7 * DAY { 8 } else { 31 }),
            "{period}"
        );
    }
}

#[test]
fn the_walk_stops_at_tile_max_pulses_and_answers_what_it_read_on_a_failure() {
    let now = clear_of_the_hour();
    let recent = |i: u64| {
        pulse(
            &format!("5f00000000000000000001{i:02}"),
            &format!("p{i}"),
            now - 60 - i,
            json!({}),
        )
    };
    let capped = |otx: &FakeOtx| {
        otx.on_page(SUBSCRIBED, 1, page((0..50).map(recent).collect(), true));
        otx.on_page(SUBSCRIBED, 2, page((50..100).map(recent).collect(), true));
        otx.on_page(SUBSCRIBED, 3, page((0..1).map(recent).collect(), false));
    };
    let env = [("TILE_MAX_PULSES", "60")];
    let run = check(capped, &env, "otx-activity-summary", "last_24_hours");
    let summary = &run.answer;
    assert_eq!(summary["data"]["data"][0]["value"], 60, "{summary}");
    let walked = run.otx.requests_to(SUBSCRIBED).len();
    assert_eq!(walked, 2, "no page past the cap");
    assert!(summary.get("errors").is_none());

    // A 500 on page 2: page 1's pulses, and the error beside them.
    let failing = |otx: &FakeOtx| {
        otx.on_page(SUBSCRIBED, 1, page((0..50).map(recent).collect(), true));
        otx.on_page(SUBSCRIBED, 2, Reply::status(500));
    };
    let run = check(failing, &[], "otx-activity-summary", "last_24_hours");
    let summary = &run.answer;
    assert_eq!(summary["data"]["data"][0]["value"], 50);
    check_json(
        &summary["errors"],
        &json!([{"code": "oops", "message": "Something went wrong. Reason: 500 Internal Server Error.", "type": "fatal"}]),
    );
    // A walk cut short is not cached: the next tile walks again.
    let before = run.otx.requests_to(SUBSCRIBED).len();
    tile_data(&run.relay, "otx-top-malware", "last_24_hours");
    assert!(run.otx.requests_to(SUBSCRIBED).len() > before);

    // A page slower than RELAY_DEADLINE: what came before, and `timeout`.
    let slow = |otx: &FakeOtx| {
        otx.on_page(SUBSCRIBED, 1, page((0..50).map(recent).collect(), true));
        let late = page(vec![], false).with_head_delay(Duration::from_secs(5));
        otx.on_page(SUBSCRIBED, 2, late);
    };
    let env = [("RELAY_DEADLINE", "2")];
    let run = check(slow, &env, "otx-activity-summary", "last_24_hours");
    assert_eq!(run.answer["data"]["data"][0]["value"], 50);
    assert_eq!(run.answer["errors"][0]["code"], "timeout");

    // 403: the key is refused.
    let refused = |otx: &FakeOtx| otx.on(SUBSCRIBED, Reply::status(403));
    let run = check(refused, &[], "otx-latest-pulses", "last_7_days");
    assert_eq!(
        run.answer["errors"][0]["message"],
        "Authorization failed: Authorization failed on AlienVault OTX side"
    );
}

#[test]
fn one_walk_serves_concurrent_tiles_and_the_cache_expires() {
    let now = clear_of_the_hour();
    let otx = FakeOtx::start();
    otx.on(
        SUBSCRIBED,
        page(
            vec![pulse(
                "5f00000000000000000000b1",
                "one",
                now - 100,
                json!({}),
            )],
            false,
        )
        .with_head_delay(Duration::from_millis(300)),
    );
    let relay = Relay::start(&otx, &[("TILE_CACHE_TTL", "2")]);
    thread::scope(|s| {
        for tile in TILE_IDS {
            let relay = &relay;
            s.spawn(move || {
                let answer = tile_data(relay, tile, "last_7_days");
                assert!(answer.get("errors").is_none(), "{answer}");
            });
        }
    });
    assert_eq!(otx.requests_to(SUBSCRIBED).len(), 1, "four tiles, one walk");
    // Another period is another walk; another tenant too.
    tile_data(&relay, "otx-latest-pulses", "last_30_days");
    assert_eq!(otx.requests_to(SUBSCRIBED).len(), 2);
    let other = jwt(SECRET, &json!({"key": "another-tenant-key"}));
    let (_, _) = relay.post(
        "/tiles/tile-data",
        Some(&bearer(&other)),
        &json!({"tile_id": "otx-latest-pulses", "period": "last_7_days"}).to_string(),
    );
    assert_eq!(otx.requests_to(SUBSCRIBED).len(), 3);
    // After TILE_CACHE_TTL the first walk is made again.
    thread::sleep(Duration::from_millis(2200));
    tile_data(&relay, "otx-activity-summary", "last_7_days");
    assert_eq!(otx.requests_to(SUBSCRIBED).len(), 4);
    let answer = tile_data(&relay, "otx-activity-summary", "last_7_days");
    assert_eq!(otx.requests_to(SUBSCRIBED).len(), 4);
    // valid_time: from the walk, for TILE_CACHE_TTL.
    let valid = &answer["data"]["valid_time"];
    let (from, to) = (valid["start_time"].as_str(), valid["end_time"].as_str());
    assert!(from.is_some() && to.is_some() && from < to, "{valid}");
}
