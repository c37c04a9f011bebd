//! SPEC §2: the Bearer JWT on `/health`, `/observe/observables` and
//! `/deliberate/observables` — every message of the table, the order of the
//! checks, and what reaches OTX once a token passes.
//!
//! Beside it: [`xdr`], XDR's RS256 configuration tokens and the module
//! type (SPEC §9, §10).

mod xdr;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::*;

/// The endpoints that verify the JWT.
const AUTHENTICATED: [&str; 3] = ["/health", "/observe/observables", "/deliberate/observables"];
/// A valid body for observe and deliberate (`/health` ignores it).
const BODY: &str = r#"[{"type": "ip", "value": "1.2.3.4"}]"#;
const USER_ME: &str = "/api/v1/user/me";
const GENERAL: &str = "/api/v1/indicators/IPv4/1.2.3.4/general";
const USER_AGENT: &str = "SecureX Threat Response Integrations <tr-integrations-support@cisco.com>";

const MISSING: &str = "Authorization header is missing";
const WRONG_TYPE: &str = "Wrong authorization type";
const WRONG_STRUCTURE: &str = "Wrong JWT structure";
const WRONG_PAYLOAD: &str = "Wrong JWT payload structure";
const BAD_SIGNATURE: &str = "Failed to decode JWT with provided key";
const EXPIRED: &str = "Token expired";
const NOT_YET_VALID: &str = "Token not yet valid";
const NO_SECRET: &str = "<SECRET_KEY> is missing";
const OTX_SIDE: &str = "Authorization failed on AlienVault OTX side";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs() as i64
}

/// `{"errors": [authorization error]}` with `Authorization failed: <why>`.
fn auth_error(why: &str) -> Value {
    json!({"errors": [{
        "code": "authorization error",
        "message": format!("Authorization failed: {why}"),
        "type": "fatal",
    }]})
}

/// `Bearer <jwt(SECRET, payload)>`.
fn signed(payload: Value) -> String {
    bearer(&jwt(SECRET, &payload))
}

/// A base64url segment with its `=` padding put back.
fn pad(segment: &str) -> String {
    format!("{segment}{}", "=".repeat((4 - segment.len() % 4) % 4))
}

/// A JWT whose three segments carry `=` padding, signed over the padded
/// header and payload as written (the signing input is the token's text).
fn padded_jwt(payload: &Value) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        pad(&b64url(header.to_string().as_bytes())),
        pad(&b64url(payload.to_string().as_bytes()))
    );
    format!("{signing_input}.{}", pad(&hs256(SECRET, &signing_input)))
}

/// Programs the fake OTX so that a good token succeeds everywhere: the key
/// is fine, and 1.2.3.4 is unknown (404, no data).
fn healthy_otx() -> FakeOtx {
    let otx = FakeOtx::start();
    otx.on(USER_ME, Reply::file("user-me.json"));
    otx.on(GENERAL, Reply::status(404));
    otx
}

/// The answers of the three authenticated endpoints, keyed by path, so that
/// a mismatch names the endpoint. Every long enough token word is added to
/// the strings the relay's output must never show.
fn answers(relay: &Relay, authorization: Option<&str>) -> Value {
    if let Some(word) = authorization.and_then(|a| a.split_whitespace().last()) {
        if word.len() >= 16 {
            relay.forbid(word);
        }
    }
    let mut all = serde_json::Map::new();
    for path in AUTHENTICATED {
        let (status, body) = relay.post(path, authorization, BODY);
        assert_eq!(status, 200, "POST {path} with {authorization:?}");
        all.insert(path.to_string(), body);
    }
    Value::Object(all)
}

/// Each authenticated endpoint answers the authorization error `why`, and
/// OTX hears nothing of it.
#[track_caller]
fn check(relay: &Relay, otx: &FakeOtx, authorization: Option<&str>, why: &str) {
    otx.reset_log();
    let expected: serde_json::Map<String, Value> = AUTHENTICATED
        .iter()
        .map(|path| (path.to_string(), auth_error(why)))
        .collect();
    check_json(&answers(relay, authorization), &Value::Object(expected));
    let asked: Vec<String> = otx.requests().into_iter().map(|r| r.path).collect();
    assert!(
        asked.is_empty(),
        "a refused token reached OTX ({asked:?}) for {authorization:?}"
    );
}

/// Each authenticated endpoint accepts the token: `/health` is ok, and the
/// unknown observable gives no data.
#[track_caller]
fn check_accepted(relay: &Relay, authorization: &str) {
    check_json(
        &answers(relay, Some(authorization)),
        &json!({
            "/health": {"data": {"status": "ok"}},
            "/observe/observables": {"data": {}},
            "/deliberate/observables": {"data": {}},
        }),
    );
}

#[test]
fn a_missing_header_or_a_scheme_other_than_bearer_is_refused() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    let good = token();
    check(&relay, &otx, None, MISSING);
    for authorization in [
        "Basic x".to_string(),
        format!("Basic {good}"),
        format!("Token {good}"),
        format!("JWT {good}"),
        "Bearer".to_string(),
        format!("Bearer {good} extra"),
        "Bearer a b".to_string(),
        good.clone(),
        String::new(),
    ] {
        check(&relay, &otx, Some(&authorization), WRONG_TYPE);
    }
}

#[test]
fn the_bearer_scheme_word_is_case_insensitive() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        check_accepted(&relay, &format!("{scheme} {}", token()));
    }
}

#[test]
fn a_token_that_is_not_three_base64url_json_segments_is_a_wrong_structure() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    let good = token();
    let segments: Vec<&str> = good.split('.').collect();
    let json_header = json!({"alg": "HS256", "typ": "JWT"}).to_string();
    let json_payload = json!({"key": KEY}).to_string();
    for token in [
        "garbage".to_string(),
        format!("{}.{}", segments[0], segments[1]),
        format!("{good}.{}", segments[2]),
        format!("{}..{}", segments[0], segments[2]),
        "!!.!!.!!".to_string(),
        format!("{}.{}.*not-base64*", segments[0], segments[1]),
        format!("{}.{}+/.{}", segments[0], segments[1], segments[2]),
        jwt_with_header(SECRET, "not json", &json_payload),
        jwt_with_header(SECRET, &json_header, "not json"),
        jwt_with_header(SECRET, &json_header, r#"{"key": "unterminated"#),
    ] {
        check(&relay, &otx, Some(&bearer(&token)), WRONG_STRUCTURE);
    }
}

#[test]
fn any_alg_but_hs256_or_a_wrong_signature_fails_to_decode() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    let payload = json!({"key": KEY});
    let good = token();
    let (signing_input, _) = good.rsplit_once('.').expect("three segments");
    let other_payload = b64url(
        json!({"key": "another-tenant-key-000"})
            .to_string()
            .as_bytes(),
    );
    let tampered = format!(
        "{}.{other_payload}.{}",
        signing_input.split('.').next().expect("a header"),
        good.rsplit('.').next().expect("a signature")
    );
    for token in [
        jwt_unsigned(&json!({"alg": "none", "typ": "JWT"}), &payload),
        jwt_unsigned(&json!({"alg": "HS256", "typ": "JWT"}), &payload),
        jwt_with_header(SECRET, json!({"alg": "none"}), &payload),
        jwt_with_header(SECRET, json!({"alg": "RS256", "typ": "JWT"}), &payload),
        jwt_with_header(SECRET, json!({"alg": "HS512", "typ": "JWT"}), &payload),
        jwt_with_header(SECRET, json!({"alg": "hs256", "typ": "JWT"}), &payload),
        jwt_with_header(SECRET, json!({"typ": "JWT"}), &payload),
        jwt("another-secret-that-is-also-32-bytes-long", &payload),
        format!("{signing_input}.{}", hs256("x", signing_input)),
        tampered,
    ] {
        check(&relay, &otx, Some(&bearer(&token)), BAD_SIGNATURE);
    }
}

#[test]
fn a_payload_without_a_non_empty_string_key_or_with_non_numeric_times_is_wrong() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    let far = now() + 3600;
    for payload in [
        json!({}),
        json!({"KEY": KEY}),
        json!({"key": ""}),
        json!({"key": 5}),
        json!({"key": null}),
        json!({"key": [KEY]}),
        json!({"key": {"value": KEY}}),
        json!({"key": KEY, "exp": "soon"}),
        json!({"key": KEY, "exp": far.to_string()}),
        json!({"key": KEY, "exp": true}),
        json!({"key": KEY, "nbf": "now"}),
        json!({"key": KEY, "nbf": [0]}),
        // Present but null is not a number either (SPEC §2).
        json!({"key": KEY, "exp": null}),
        json!({"key": KEY, "nbf": null}),
    ] {
        check(&relay, &otx, Some(&signed(payload)), WRONG_PAYLOAD);
    }
}

#[test]
fn exp_and_nbf_are_enforced_with_sixty_seconds_of_leeway() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    // 15 s either side of the leeway's edge, so a slow machine cannot flip them.
    let now = now();
    check(
        &relay,
        &otx,
        Some(&signed(json!({"key": KEY, "exp": now - 75}))),
        EXPIRED,
    );
    check(
        &relay,
        &otx,
        Some(&signed(json!({"key": KEY, "exp": now - 3600}))),
        EXPIRED,
    );
    check(
        &relay,
        &otx,
        Some(&signed(json!({"key": KEY, "nbf": now + 75}))),
        NOT_YET_VALID,
    );
    check(
        &relay,
        &otx,
        Some(&signed(
            json!({"key": KEY, "nbf": now + 3600, "exp": now + 7200}),
        )),
        NOT_YET_VALID,
    );
    for payload in [
        json!({"key": KEY, "exp": now - 45}),
        json!({"key": KEY, "exp": now + 3600}),
        json!({"key": KEY, "exp": now as f64 + 3600.5}),
        json!({"key": KEY, "nbf": now + 45}),
        json!({"key": KEY, "nbf": now - 3600, "exp": now + 3600, "iat": now}),
    ] {
        check_accepted(&relay, &signed(payload));
    }
}

#[test]
fn base64url_segments_are_accepted_with_or_without_padding() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    let payload = json!({"key": KEY, "iat": 1});
    let padded = padded_jwt(&payload);
    assert!(
        padded.split('.').all(|s| s.len() % 4 == 0) && padded.contains('='),
        "the token must carry padding: {padded}"
    );
    check_accepted(&relay, &bearer(&padded));
    check_accepted(&relay, &bearer(&jwt(SECRET, &payload)));
}

#[test]
fn the_checks_answer_the_first_failure_in_the_documented_order() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    let past = now() - 3600;
    let other = "another-secret-that-is-also-32-bytes-long";
    // Badly signed and expired: the signature is checked first.
    check(
        &relay,
        &otx,
        Some(&bearer(&jwt(other, &json!({"key": KEY, "exp": past})))),
        BAD_SIGNATURE,
    );
    // Badly signed and without a key.
    check(
        &relay,
        &otx,
        Some(&bearer(&jwt(other, &json!({"exp": past})))),
        BAD_SIGNATURE,
    );
    // alg none and a payload that is not JSON: the structure comes first.
    check(
        &relay,
        &otx,
        Some(&bearer(&jwt_with_header(
            SECRET,
            r#"{"alg":"none"}"#,
            "[not json",
        ))),
        WRONG_STRUCTURE,
    );
    // Wrong payload structure and expired: the structure comes first.
    check(
        &relay,
        &otx,
        Some(&signed(json!({"key": 5, "exp": past}))),
        WRONG_PAYLOAD,
    );
    check(
        &relay,
        &otx,
        Some(&signed(json!({"key": KEY, "exp": past, "nbf": "x"}))),
        WRONG_PAYLOAD,
    );
    // Expired, with a key OTX would refuse: the time comes first.
    check(
        &relay,
        &otx,
        Some(&signed(json!({"key": "not a key", "exp": past}))),
        EXPIRED,
    );
    // Three words with a scheme that is not Bearer: the type.
    check(&relay, &otx, Some("Basic a.b.c d"), WRONG_TYPE);
}

#[test]
fn without_secret_key_the_relay_starts_warns_and_answers_that_it_is_missing() {
    let otx = healthy_otx();
    let relay = Relay::spawn(&otx.url(), &[], &["SECRET_KEY"]);
    assert!(
        relay.wait_log("SECRET_KEY"),
        "no warning about SECRET_KEY: {}",
        relay.logs()
    );
    let warning = "WARN SECRET_KEY is not set: every authenticated call will answer '<SECRET_KEY> is missing'\n";
    assert!(
        relay.stderr().contains(warning),
        "the warning goes to stderr: {}",
        relay.logs()
    );
    // Header and type are checked before the secret.
    check(&relay, &otx, None, MISSING);
    check(&relay, &otx, Some("Basic x"), WRONG_TYPE);
    check(&relay, &otx, Some("Bearer"), WRONG_TYPE);
    // Whatever the token, even garbage, the secret is missing.
    for authorization in [
        bearer(&token()),
        "Bearer garbage".to_string(),
        "Bearer a.b.c".to_string(),
        bearer(&jwt_unsigned(&json!({"alg": "none"}), &json!({"key": KEY}))),
    ] {
        check(&relay, &otx, Some(&authorization), NO_SECRET);
    }
}

#[test]
fn an_empty_secret_key_counts_as_unset() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[("SECRET_KEY", "")]);
    assert!(
        relay.wait_log("SECRET_KEY"),
        "no warning about SECRET_KEY: {}",
        relay.logs()
    );
    assert!(relay.stderr().contains("SECRET_KEY"), "{}", relay.logs());
    check(&relay, &otx, Some(&bearer(&token())), NO_SECRET);
    // A token signed with the empty secret is no way in either.
    check(
        &relay,
        &otx,
        Some(&bearer(&jwt("", &json!({"key": KEY})))),
        NO_SECRET,
    );
}

#[test]
fn the_body_is_validated_before_the_jwt() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    for path in ["/observe/observables", "/deliberate/observables"] {
        for authorization in [None, Some("Basic x"), Some("Bearer garbage")] {
            let (status, body) = relay.post(path, authorization, "not json");
            assert_eq!(status, 200, "{path}");
            check_json(
                &body,
                &json!({"errors": [{
                    "code": "invalid payload received",
                    "message": "<<re:Invalid JSON payload received\\..*>>",
                    "type": "fatal",
                }]}),
            );
        }
    }
    assert!(otx.requests().is_empty());
}

#[test]
fn otx_refusing_the_key_is_an_authorization_failure_on_the_otx_side() {
    let otx = FakeOtx::start();
    otx.on(USER_ME, Reply::status(403));
    otx.on(GENERAL, Reply::status(403));
    let relay = Relay::start(&otx, &[]);
    let expected: serde_json::Map<String, Value> = AUTHENTICATED
        .iter()
        .map(|path| (path.to_string(), auth_error(OTX_SIDE)))
        .collect();
    check_json(
        &answers(&relay, Some(&bearer(&token()))),
        &Value::Object(expected),
    );
    assert_eq!(otx.requests_to(USER_ME).len(), 1, "403 is not retried");
    assert_eq!(otx.requests_to(GENERAL).len(), 2, "observe and deliberate");
}

#[test]
fn a_key_that_is_not_visible_ascii_is_refused_without_asking_otx() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    for key in [
        "otx key with spaces 0123456789",
        " otx-key-with-a-leading-space-01",
        "otx-key-ünïcödé-0123456789abcdef",
        "otx-key-with-a\ttab-0123456789ab",
        "otx-key-with-a\r\nX-Injected: yes",
        "otx-key-with-a-nul-\u{0}-0123456789",
        "otx-key-with-a-del-\u{7f}-0123456789",
    ] {
        relay.forbid(key);
        check(&relay, &otx, Some(&signed(json!({"key": key}))), OTX_SIDE);
    }
}

#[test]
fn health_sends_the_key_and_user_agent_to_otx_and_answers_ok() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    let (status, body) = relay.post("/health", Some(&bearer(&token())), "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"data": {"status": "ok"}}));

    let requests = otx.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", USER_ME)
    );
    assert_eq!(request.header("X-OTX-API-KEY"), Some(KEY));
    assert_eq!(request.header("User-Agent"), Some(USER_AGENT));
    let keys = request
        .headers
        .iter()
        .filter(|(k, _)| k == "x-otx-api-key")
        .count();
    assert_eq!(keys, 1, "one X-OTX-API-KEY header");
}

#[test]
fn the_key_of_each_token_is_the_one_sent_to_otx() {
    let otx = healthy_otx();
    let relay = Relay::start(&otx, &[]);
    let key = "b7c1e2d3f4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d";
    relay.forbid(key);
    check_accepted(&relay, &signed(json!({"key": key, "iat": now()})));
    let requests = otx.requests();
    // user/me; /general and passive DNS (SPEC §15) for /observe; /general
    // for /deliberate: every one with the token's key.
    assert_eq!(requests.len(), 4, "{requests:?}");
    for request in &requests {
        assert_eq!(request.header("X-OTX-API-KEY"), Some(key), "{request:?}");
        assert_eq!(request.header("User-Agent"), Some(USER_AGENT));
    }
}
