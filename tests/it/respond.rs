//! Respond actions (SPEC §12): the actions offered per observable type and
//! token, and what triggering one writes to OTX: the exact requests
//! (method, path, JSON body, headers), success, the status mapping, and no
//! retry but on 429.

use serde_json::{json, Value};

use crate::support::*;

const PULSE: &str = "5f0123456789abcdef012345";
const SUBMIT: &str = "/api/v1/indicators/submit_url";

fn pulse_token() -> String {
    jwt(SECRET, &json!({"key": KEY, "respond_pulse_id": PULSE}))
}

fn action(id: &str, title: &str, description: &str, type_: &str, value: &str) -> Value {
    json!({"id": id, "title": title, "description": description,
           "categories": ["AlienVault OTX", "Submit"],
           "query-params": {"observable_type": type_, "observable_value": value}})
}

/// POSTs `body` to `/respond/trigger` with `token`; the answer (a 200).
#[track_caller]
fn trigger(relay: &Relay, token: &str, body: Value) -> Value {
    let (status, answer) = relay.post("/respond/trigger", Some(&bearer(token)), &body.to_string());
    assert_eq!(status, 200, "{answer}");
    answer
}

/// One write case: what the fake OTX serves, then `action` triggered with
/// the test token on a relay of its own; the answer must be a 200. Returns
/// the run: the tests look at the requests OTX got, and some at the
/// relay's log, or trigger more on the same relay.
#[track_caller]
fn check(serve: impl FnOnce(&FakeOtx), action: Value) -> Checked {
    let otx = FakeOtx::start();
    serve(&otx);
    let relay = Relay::start(&otx, &[]);
    let answer = trigger(&relay, &token(), action);
    Checked { relay, otx, answer }
}

/// What one `check` ran and got.
struct Checked {
    /// Declared first, so that it stops before the fake OTX it talks to.
    relay: Relay,
    otx: FakeOtx,
    /// The trigger's answer (a 200).
    answer: Value,
}

#[test]
fn actions_are_offered_per_type_and_token() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let body = json!([
        {"type": "ip", "value": "1.2.3.4"},
        {"type": "url", "value": "http://bad.example/x?y"},
        {"type": "mutex", "value": "ignored"},
        {"type": "email", "value": "a@b.example"},
        {"type": "hostname", "value": "WWW.Bad.Example"}
    ])
    .to_string();
    // Without a pulse in the token: only URLs can be submitted.
    let (_, answer) = relay.post_auth("/respond/observables", &body);
    check_json(
        &answer,
        &json!({"data": [action("otx-submit-url", "Submit URL to AlienVault OTX",
            "Ask AlienVault OTX to analyse this URL", "url", "http://bad.example/x?y")]}),
    );
    // With one: every supported type can be added to it, in input order.
    let (_, answer) = relay.post("/respond/observables", Some(&bearer(&pulse_token())), &body);
    let add = |type_: &str, name: &str, value: &str| {
        action(
            "otx-add-to-pulse",
            "Add to AlienVault OTX pulse",
            &format!("Add this {name} to the pulse {PULSE}"),
            type_,
            value,
        )
    };
    check_json(
        &answer,
        &json!({"data": [
            add("ip", "IP", "1.2.3.4"),
            action("otx-submit-url", "Submit URL to AlienVault OTX",
                   "Ask AlienVault OTX to analyse this URL", "url", "http://bad.example/x?y"),
            add("url", "URL", "http://bad.example/x?y"),
            add("email", "email", "a@b.example"),
            add("hostname", "hostname", "WWW.Bad.Example"),
        ]}),
    );
    // A pulse id that is not 24 hex digits names no pulse.
    let odd = jwt(
        SECRET,
        &json!({"key": KEY, "respond_pulse_id": "not-a-pulse"}),
    );
    let (_, answer) = relay.post("/respond/observables", Some(&bearer(&odd)), &body);
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(1));
    // The body first, then the token, as /observe.
    let (_, answer) = relay.post("/respond/observables", None, "{}");
    assert_eq!(answer["errors"][0]["code"], "invalid payload received");
    let (_, answer) = relay.post("/respond/observables", None, &body);
    assert_eq!(answer["errors"][0]["code"], "authorization error");
    assert_eq!(otx.request_count(), 0, "offering actions asks OTX nothing");
}

#[test]
fn submit_url_posts_the_url_and_add_to_pulse_patches_the_pulse() {
    let patch_path = format!("/api/v1/pulses/{PULSE}");
    let serve = |otx: &FakeOtx| {
        otx.on(SUBMIT, Reply::json(json!({"result": "added"})));
        otx.on(&patch_path, Reply::json(json!({"id": PULSE})));
    };
    let url = "http://bad.example/päth?q=1";
    let run = check(
        serve,
        json!({"action-id": "otx-submit-url", "observable_type": "url", "observable_value": url, "extra": 1}),
    );
    let (relay, otx) = (&run.relay, &run.otx);
    check_json(&run.answer, &json!({"data": {"status": "success"}}));
    let posted = otx.requests_to(SUBMIT);
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].method, "POST");
    assert_eq!(posted[0].header("X-OTX-API-KEY"), Some(KEY));
    assert_eq!(posted[0].header("Content-Type"), Some("application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&posted[0].body).expect("JSON"),
        json!({"url": url})
    );

    for (type_, value, otx_type) in [
        ("ip", "198.51.100.1", "IPv4"),
        ("ipv6", "2001:db8::1", "IPv6"),
        ("domain", "bad.example", "domain"),
        ("url", "http://bad.example/", "URL"),
        ("md5", "d41d8cd98f00b204e9800998ecf8427e", "FileHash-MD5"),
        (
            "sha1",
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "FileHash-SHA1",
        ),
        (
            "sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "FileHash-SHA256",
        ),
        ("email", "phish@bad.example", "email"),
        // SPEC §15: as received (a write, not a lookup: no lower-casing).
        ("hostname", "WWW.Bad.Example", "hostname"),
    ] {
        otx.reset_log();
        let answer = trigger(
            relay,
            &pulse_token(),
            json!({"action-id": "otx-add-to-pulse", "observable_type": type_, "observable_value": value}),
        );
        check_json(&answer, &json!({"data": {"status": "success"}}));
        let patched = otx.requests();
        assert_eq!(patched.len(), 1, "{type_}");
        assert_eq!(patched[0].method, "PATCH");
        assert_eq!(patched[0].path, patch_path);
        assert_eq!(patched[0].header("X-OTX-API-KEY"), Some(KEY));
        assert_eq!(
            serde_json::from_slice::<Value>(&patched[0].body).expect("JSON"),
            json!({"indicators": {"add": [{"indicator": value, "type": otx_type}]}})
        );
    }
}

#[test]
fn actions_not_offered_are_refused_without_an_otx_call() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    for (token, body) in [
        (
            token(),
            json!({"action-id": "otx-submit-url", "observable_type": "ip", "observable_value": "1.2.3.4"}),
        ),
        (
            token(),
            json!({"action-id": "otx-add-to-pulse", "observable_type": "ip", "observable_value": "1.2.3.4"}),
        ),
        (
            pulse_token(),
            json!({"action-id": "otx-delete-everything", "observable_type": "ip", "observable_value": "1.2.3.4"}),
        ),
        (
            pulse_token(),
            json!({"action-id": "otx-add-to-pulse", "observable_type": "mutex", "observable_value": "x"}),
        ),
        (
            pulse_token(),
            json!({"action-id": "otx-add-to-pulse", "observable_type": "ip"}),
        ),
        (
            pulse_token(),
            json!({"action-id": "otx-add-to-pulse", "observable_type": "ip", "observable_value": ""}),
        ),
        (pulse_token(), json!(["otx-add-to-pulse"])),
    ] {
        let answer = trigger(&relay, &token, body);
        check_json(
            &answer,
            &json!({"data": {"status": "failure"},
                    "errors": [{"code": "invalid payload received",
                                "message": "<<re:Invalid JSON payload received\\. .+>>", "type": "fatal"}]}),
        );
    }
    // The body's shape is checked before the token; the token before OTX.
    let (_, answer) = relay.post("/respond/trigger", None, "[]");
    assert_eq!(answer["errors"][0]["code"], "invalid payload received");
    let (_, answer) = relay.post(
        "/respond/trigger",
        None,
        &json!({"action-id": "otx-submit-url", "observable_type": "url", "observable_value": "http://x"}).to_string(),
    );
    assert_eq!(answer["errors"][0]["code"], "authorization error");
    assert_eq!(otx.request_count(), 0);
}

#[test]
fn otx_failures_map_and_writes_are_retried_only_on_429() {
    let submit = json!({"action-id": "otx-submit-url", "observable_type": "url", "observable_value": "http://x.example/"});
    for (reply, code, message) in [
        (
            Reply::status(403),
            "authorization error",
            "Authorization failed: Authorization failed on AlienVault OTX side",
        ),
        (
            Reply::status(404),
            "oops",
            "Something went wrong. Reason: 404 Not Found.",
        ),
        (
            Reply::status(500),
            "oops",
            "Something went wrong. Reason: 500 Internal Server Error.",
        ),
        (
            Reply::status(502),
            "oops",
            "Something went wrong. Reason: 502 Bad Gateway.",
        ),
    ] {
        let run = check(|otx| otx.on(SUBMIT, reply), submit.clone());
        check_json(
            &run.answer,
            &json!({"data": {"status": "failure"},
                    "errors": [{"code": code, "message": message, "type": "fatal"}]}),
        );
        assert_eq!(
            run.otx.requests_to(SUBMIT).len(),
            1,
            "{message}: written once, never again"
        );
    }
    // 429 is retried (honouring Retry-After), then succeeds.
    let busy = || Reply::status(429).with_header("Retry-After", "0");
    let run = check(
        |otx| otx.on_seq(SUBMIT, vec![busy(), Reply::json(json!({}))]),
        submit.clone(),
    );
    check_json(&run.answer, &json!({"data": {"status": "success"}}));
    assert_eq!(run.otx.requests_to(SUBMIT).len(), 2);
    let relay = &run.relay;
    assert!(relay.wait_log("POST /respond/trigger 200"));
    assert!(relay.stdout().contains("retries=1"), "{}", relay.stdout());
    // 429 every time: the too-many-requests error after the retries.
    let run = check(|otx| otx.on(SUBMIT, busy()), submit);
    assert_eq!(run.answer["errors"][0]["code"], "too many requests");
    assert_eq!(run.otx.requests_to(SUBMIT).len(), 3);
}

#[test]
fn token_pulse_id_adds_the_claim() {
    let run = run_cli(
        &["token", "--key", "k-123", "--pulse-id", PULSE],
        &[("SECRET_KEY", SECRET)],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let (_, answer) = relay.post(
        "/respond/observables",
        Some(&bearer(run.stdout.trim())),
        &json!([{"type": "domain", "value": "bad.example"}]).to_string(),
    );
    assert_eq!(answer["data"][0]["id"], "otx-add-to-pulse", "{answer}");
    let bad = run_cli(
        &["token", "--key", "k", "--pulse-id", "nope"],
        &[("SECRET_KEY", SECRET)],
    );
    assert_ne!(bad.code, Some(0));
    assert!(bad.stderr.contains("--pulse-id"), "{}", bad.stderr);
}
