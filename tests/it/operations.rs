//! The operator's first hour (SPEC §8): `otx-relay check`, start-up
//! warnings, OTX trouble in the log (one line a minute per kind), and the
//! paper cuts an operator meets first.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const OBSERVE: &str = "/observe/observables";

/// `n` distinct IPv4 observables, as a JSON body.
fn ips(n: usize, third: u8) -> String {
    let list: Vec<Value> = (0..n)
        .map(|i| json!({"type": "ip", "value": format!("198.51.{third}.{}", i + 1)}))
        .collect();
    Value::Array(list).to_string()
}

/// The stderr lines of `relay` holding `needle`, once one has come (and a
/// moment more for any that would follow).
fn lines_with(relay: &Relay, needle: &str) -> Vec<String> {
    assert!(
        relay.wait_log(needle),
        "no line with {needle:?}:\n{}",
        relay.logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    let stderr = relay.stderr();
    stderr
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn each_kind_of_otx_trouble_is_one_warning_a_minute() {
    // 5xx: 40 failed lookups in two requests, one line.
    let otx = FakeOtx::start();
    otx.fallback(|_| Reply::status(500));
    let relay = Relay::start(&otx, &[]);
    for third in [1, 2] {
        let (status, answer) = relay.post_auth(OBSERVE, &ips(20, third));
        assert_eq!(status, 200);
        assert_eq!(answer["errors"][0]["code"], "oops", "{answer}");
    }
    assert_eq!(otx.request_count(), 40);
    let lines = lines_with(&relay, "OTX failed: 500 Internal Server Error");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(" WARN OTX failed: 500 Internal Server Error"),
        "{lines:?}"
    );

    // 403, 429 (after its retries), unreachable, the deadline: a line each.
    let forbidden = FakeOtx::start();
    forbidden.fallback(|_| Reply::status(403));
    let throttled = FakeOtx::start();
    throttled.fallback(|_| Reply::status(429).with_header("Retry-After", "0"));
    let slow = FakeOtx::start();
    slow.fallback(|_| Reply::status(404).with_head_delay(Duration::from_secs(3)));
    let refused = RefusedPort::bind();
    let unreachable = format!("http://127.0.0.1:{}", refused.port());
    for (url, env, needle) in [
        (
            forbidden.url(),
            vec![],
            "OTX refused a tenant's key (wrong or revoked): 403 Forbidden",
        ),
        (
            throttled.url(),
            vec![],
            "OTX throttles the relay: 429 Too Many Requests",
        ),
        (
            unreachable,
            vec![],
            "OTX unreachable: connection to AlienVault OTX refused",
        ),
        (
            slow.url(),
            vec![("RELAY_DEADLINE", "1")],
            "an OTX call was cut by its request's deadline (RELAY_DEADLINE)",
        ),
    ] {
        let relay = Relay::spawn(&url, &env, &[]);
        for third in [1, 2] {
            let (status, _) = relay.post_auth(OBSERVE, &ips(10, third));
            assert_eq!(status, 200);
        }
        let lines = lines_with(&relay, needle);
        assert_eq!(lines.len(), 1, "{needle}: {lines:?}");
        assert!(lines[0].contains(" WARN "), "{lines:?}");
    }
}

#[test]
fn an_otx_url_with_a_path_is_a_start_up_warning_naming_the_url_called() {
    let otx = FakeOtx::start();
    let base = format!("{}/api/v1/", otx.url());
    let relay = Relay::spawn(&base, &[], &[]);
    let want = format!(
        "WARN AVOTX_URL has a path (/api/v1): the relay will call {}/api/v1/api/v1/indicators/...; did you mean {}?",
        otx.url(),
        otx.url()
    );
    assert!(relay.wait_log(&want), "{}", relay.logs());
    assert_eq!(relay.stderr().lines().count(), 1, "{}", relay.stderr());
    // A base without a path: no warning.
    let relay = Relay::start(&otx, &[]);
    check_version_answers(&relay);
    assert_eq!(relay.stderr(), "");
}

const USER_ME: &str = "/api/v1/user/me";

/// The `/health` answer of a relay run with `env`, against `otx`.
fn health(otx: &FakeOtx, env: &[(&str, &str)]) -> Value {
    let relay = Relay::start(otx, env);
    let (status, answer) = relay.post_auth("/health", "");
    assert_eq!(status, 200);
    answer
}

#[track_caller]
fn check_oops(answer: &Value, reason: &str) {
    let message = format!("Something went wrong. Reason: {reason}.");
    check_json(
        answer,
        &json!({"errors": [{"code": "oops", "message": message, "type": "fatal"}]}),
    );
}

#[test]
fn a_proxy_that_fails_is_named() {
    let otx = FakeOtx::start();
    otx.on(USER_ME, Reply::file("user-me.json"));
    // A closed proxy port: the proxy refused, not OTX.
    let closed = RefusedPort::bind();
    let proxy = format!("http://127.0.0.1:{}", closed.port());
    let answer = health(&otx, &[("HTTPS_PROXY", &proxy)]);
    let named = format!("the proxy 127.0.0.1:{} (HTTPS_PROXY)", closed.port());
    check_oops(&answer, &format!("connection to {named} refused"));
    // A proxy that refuses the tunnel: its status, once.
    let refusing = FakeOtx::start();
    refusing.fallback(|_| Reply::status(403));
    let proxy = format!("http://{}", refusing.addr());
    let answer = health(&otx, &[("ALL_PROXY", &proxy)]);
    let named = format!("the proxy {} (ALL_PROXY)", refusing.addr());
    let reason = format!("{named} refused to connect to AlienVault OTX (403 Forbidden)");
    check_oops(&answer, &reason);
    assert_eq!(refusing.requests()[0].method, "CONNECT");
    assert_eq!(otx.request_count(), 0);
}

#[test]
fn no_proxy_takes_cidr_ranges_and_host_port_as_curl_and_go_do() {
    let otx = FakeOtx::start();
    otx.on(USER_ME, Reply::file("user-me.json"));
    let closed = RefusedPort::bind();
    let proxy = format!("http://127.0.0.1:{}", closed.port());
    let ok = json!({"data": {"status": "ok"}});
    let port = otx.addr().port();
    for (no_proxy, direct) in [
        ("127.0.0.0/8".to_owned(), true),
        ("10.0.0.0/8, 127.0.0.1/32".to_owned(), true),
        (format!("127.0.0.1:{port}"), true),
        ("10.0.0.0/8".to_owned(), false),
        (format!("127.0.0.1:{}", port.wrapping_add(1).max(1)), false),
    ] {
        let env = [
            ("HTTPS_PROXY", proxy.as_str()),
            ("NO_PROXY", no_proxy.as_str()),
        ];
        let answer = health(&otx, &env);
        if direct {
            check_json(&answer, &ok);
        } else {
            assert_eq!(answer["errors"][0]["code"], "oops", "{no_proxy}: {answer}");
        }
    }
}
