//! SPEC §1, §3, §5 and §8 seen from outside: `/version`, `/watchdog`,
//! `/refer/observables`, invalid bodies, HTTP-level errors and empty
//! lookups (start-up, the command line, the access log and a graceful stop
//! are `cli`'s).

use serde_json::{json, Value};

use crate::support::*;

pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
pub(crate) const USER_ME: &str = "/api/v1/user/me";
const ONE_MIB: usize = 1024 * 1024;
const MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
const SHA1: &str = "da39a3ee5e6b4b0d3255bfef95601890afd80709";
const SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// `{"errors": [one fatal error]}`.
fn error(code: &str, message: &str) -> Value {
    json!({"errors": [{"code": code, "message": message, "type": "fatal"}]})
}

/// A JSON error envelope of some non-empty code and message (SPEC §3 wants
/// 404/405/413 to carry one but names no strings).
fn some_error() -> Value {
    error("<<re:.+>>", "<<re:.+>>")
}

/// One request; the status and the body parsed as JSON (failing if it is
/// not, or if the answer is not labelled JSON).
fn call(
    relay: &Relay,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let (status, answer_headers, bytes) = relay.request(method, path, headers, body);
    let content_type = answer_headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert!(
        content_type.is_some_and(|v| v.starts_with("application/json")),
        "{method} {path}: Content-Type {content_type:?}"
    );
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{method} {path} answered {status} with a body that is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

/// `/version` still answers: the relay survived whatever came before.
#[track_caller]
pub(crate) fn check_alive(relay: &Relay) {
    let (status, body) = relay.post("/version", None, "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"version": VERSION}));
}

// ---------------------------------------------------------------------------
// /version and /watchdog

#[test]
fn version_answers_the_crate_version_unwrapped() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let (status, body) = call(&relay, "POST", "/version", &[], b"");
    assert_eq!(status, 200);
    check_json(&body, &json!({"version": VERSION}));
    // A body, a token, a query: none of them matter.
    let (status, body) = call(
        &relay,
        "POST",
        "/version?verbose=1",
        &[("Authorization", "Bearer junk")],
        b"[1, 2]",
    );
    assert_eq!(status, 200);
    check_json(&body, &json!({"version": VERSION}));
    assert!(otx.requests().is_empty());
}

#[test]
fn watchdog_echoes_the_health_check_header_even_an_empty_one() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    for (value, expected) in [("abc", "abc"), ("", ""), ("x y-1", "x y-1")] {
        let (status, body) = call(&relay, "GET", "/watchdog", &[("Health-Check", value)], b"");
        assert_eq!(status, 200, "Health-Check: {value:?}");
        check_json(&body, &json!({"data": expected}));
    }
    let (status, body) = call(&relay, "GET", "/watchdog", &[], b"");
    assert_eq!(status, 200);
    check_json(&body, &error("health check failed", "Invalid Health Check"));
    assert!(otx.requests().is_empty());
}

// ---------------------------------------------------------------------------
// /refer/observables

/// One refer link as SPEC §5 writes it; `id_part` and `url_part` are the
/// value quoted by hand (with no safe characters, and with `@:` safe).
pub(crate) fn link(
    base: &str,
    type_: &str,
    name: &str,
    category: &str,
    id_part: &str,
    url_part: &str,
) -> Value {
    json!({
        "id": format!("ref-avotx-search-{type_}-{id_part}"),
        "title": format!("Search for this {name}"),
        "description": format!("Lookup this {name} on AlienVault OTX"),
        "url": format!("{base}/indicator/{category}/{url_part}"),
        "categories": ["Search", "AlienVault OTX"],
    })
}

#[test]
fn refer_links_every_supported_type_in_input_order() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let body = json!([
        {"type": "domain", "value": "Example.com"},
        {"type": "email", "value": "user+tag@example.com"},
        {"type": "md5", "value": MD5},
        {"type": "file_name", "value": "evil.exe"},
        {"type": "sha1", "value": SHA1},
        {"type": "sha256", "value": SHA256},
        {"type": "ip", "value": "1.2.3.4", "other": ["ignored"]},
        {"type": "ipv6", "value": "2001:db8::1"},
        {"type": "url", "value": "http://a.b/c d?q=1#frag%20ü"},
        {"type": "domain", "value": "münchen.de"},
        {"type": "ip", "value": "1.2.3.4"},
        {"type": "IP", "value": "5.6.7.8"},
        {"type": "hostname", "value": "WWW.Example.com"},
    ]);
    let (status, answer) = relay.post("/refer/observables", None, &body.to_string());
    assert_eq!(status, 200);
    let base = otx.url();
    let b = base.as_str();
    check_json(
        &answer,
        &json!({"data": [
            link(b, "domain", "domain", "domain", "Example.com", "Example.com"),
            link(
                b,
                "email",
                "email",
                "email",
                "user%2Btag%40example.com",
                "user%2Btag@example.com",
            ),
            link(b, "md5", "MD5", "file", MD5, MD5),
            link(b, "sha1", "SHA1", "file", SHA1, SHA1),
            link(b, "sha256", "SHA256", "file", SHA256, SHA256),
            link(b, "ip", "IP", "ip", "1.2.3.4", "1.2.3.4"),
            link(b, "ipv6", "IPv6", "ip", "2001%3Adb8%3A%3A1", "2001:db8::1"),
            link(
                b,
                "url",
                "URL",
                "url",
                "http%3A%2F%2Fa.b%2Fc%20d%3Fq%3D1%23frag%2520%C3%BC",
                "http:%2F%2Fa.b%2Fc%20d%3Fq%3D1%23frag%2520%C3%BC",
            ),
            link(b, "domain", "domain", "domain", "m%C3%BCnchen.de", "m%C3%BCnchen.de"),
            link(b, "ip", "IP", "ip", "1.2.3.4", "1.2.3.4"),
            link(b, "hostname", "hostname", "hostname", "WWW.Example.com", "WWW.Example.com"),
        ]}),
    );
    assert!(otx.requests().is_empty(), "refer never calls OTX");
}

#[test]
fn refer_needs_no_token_and_keeps_path_characters_inside_one_segment() {
    let otx = FakeOtx::start();
    let relay = Relay::spawn(&otx.url(), &[], &["SECRET_KEY"]);
    let body = json!([
        {"type": "url", "value": "a/b?c#d%e f"},
        {"type": "email", "value": "x:y@z"},
        {"type": "domain", "value": "../../admin"},
    ]);
    let (status, answer) = relay.post(
        "/refer/observables",
        Some("Basic not-a-token"),
        &body.to_string(),
    );
    assert_eq!(status, 200);
    let base = otx.url();
    let b = base.as_str();
    check_json(
        &answer,
        &json!({"data": [
            link(b, "url", "URL", "url", "a%2Fb%3Fc%23d%25e%20f", "a%2Fb%3Fc%23d%25e%20f"),
            link(b, "email", "email", "email", "x%3Ay%40z", "x:y@z"),
            link(b, "domain", "domain", "domain", "..%2F..%2Fadmin", "..%2F..%2Fadmin"),
        ]}),
    );
}

#[test]
fn refer_links_ignore_a_trailing_slash_of_avotx_url() {
    let otx = FakeOtx::start();
    let with_slash = format!("{}/", otx.url());
    let relay = Relay::start(&otx, &[("AVOTX_URL", with_slash.as_str())]);
    let (status, answer) = relay.post(
        "/refer/observables",
        None,
        r#"[{"type": "ip", "value": "1.2.3.4"}]"#,
    );
    assert_eq!(status, 200);
    check_json(
        &answer,
        &json!({"data": [link(&otx.url(), "ip", "IP", "ip", "1.2.3.4", "1.2.3.4")]}),
    );
    let url = answer["data"][0]["url"].as_str().unwrap_or_default();
    assert!(!url["http://".len()..].contains("//"), "{url}");
}

#[test]
fn refer_of_no_supported_observable_is_an_empty_list() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    for body in ["[]", r#"[{"type": "file_name", "value": "a.exe"}]"#] {
        let (status, answer) = relay.post("/refer/observables", None, body);
        assert_eq!(status, 200, "{body}");
        check_json(&answer, &json!({"data": []}));
    }
}

// ---------------------------------------------------------------------------
// Invalid bodies

#[test]
fn an_invalid_body_is_an_invalid_payload_error_on_every_observable_endpoint() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let expected = error(
        "invalid payload received",
        "<<re:Invalid JSON payload received\\..+>>",
    );
    let bodies = [
        "not json",
        "",
        "null",
        "{}",
        r#"{"type": "ip", "value": "1.2.3.4"}"#,
        "[1]",
        r#"["1.2.3.4"]"#,
        r#"[{"value": "1.2.3.4"}]"#,
        r#"[{"type": "ip"}]"#,
        r#"[{"type": "ip", "value": ""}]"#,
        r#"[{"type": "", "value": "1.2.3.4"}]"#,
        r#"[{"type": "ip", "value": 5}]"#,
        r#"[{"type": "ip", "value": null}]"#,
        r#"[{"type": ["ip"], "value": "1.2.3.4"}]"#,
        r#"[{"type": "ip", "value": "1.2.3.4"}, {"type": "ip"}]"#,
        r#"[{"type": "ip", "value": "1.2.3.4"}"#,
    ];
    for path in [
        "/refer/observables",
        "/observe/observables",
        "/deliberate/observables",
    ] {
        for body in bodies {
            let (status, answer) = relay.post_auth(path, body);
            assert_eq!(status, 200, "POST {path} {body:?}");
            let labelled = json!({"path": path, "body": body, "answer": answer});
            check_json(
                &labelled,
                &json!({"path": path, "body": body, "answer": expected}),
            );
        }
    }
    assert!(
        otx.requests().is_empty(),
        "an invalid body never reaches OTX"
    );
}

// ---------------------------------------------------------------------------
// HTTP-level errors

#[test]
fn an_unknown_path_is_404_and_a_wrong_method_is_405_with_json_errors() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/nope"),
        ("GET", "/nope?x=1"),
        ("POST", "/observe/observables/extra"),
        ("POST", "/VERSION"),
        ("POST", "/version/"),
    ] {
        let (status, body) = call(&relay, method, path, &[], b"");
        assert_eq!(status, 404, "{method} {path}");
        check_json(&body, &some_error());
    }
    for (method, path) in [
        ("GET", "/version"),
        ("POST", "/watchdog"),
        ("GET", "/health"),
        ("GET", "/observe/observables"),
        ("PUT", "/refer/observables"),
        ("DELETE", "/deliberate/observables"),
    ] {
        let (status, body) = call(&relay, method, path, &[], b"");
        assert_eq!(status, 405, "{method} {path}");
        check_json(&body, &some_error());
    }
    check_alive(&relay);
    assert!(otx.requests().is_empty());
}

/// `body` in chunks of 64 KiB, as `Transfer-Encoding: chunked` sends it.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A JSON list of `size` bytes: `[`, spaces, `]`.
fn padded_list(size: usize) -> Vec<u8> {
    let mut body = vec![b' '; size];
    body[0] = b'[';
    body[size - 1] = b']';
    body
}

#[test]
fn a_body_over_one_mib_is_413_with_or_without_content_length() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let too_big = padded_list(ONE_MIB + 1);

    let (status, body) = call(&relay, "POST", "/refer/observables", &[], &too_big);
    assert_eq!(status, 413, "with Content-Length");
    check_json(&body, &some_error());
    check_alive(&relay);

    let (status, body) = call(
        &relay,
        "POST",
        "/refer/observables",
        &[("Transfer-Encoding", "chunked")],
        &chunked(&too_big),
    );
    assert_eq!(status, 413, "chunked");
    check_json(&body, &some_error());
    check_alive(&relay);

    // Exactly 1 MiB is not over the limit, either way.
    let just_fits = padded_list(ONE_MIB);
    let (status, body) = call(&relay, "POST", "/refer/observables", &[], &just_fits);
    assert_eq!(status, 200);
    check_json(&body, &json!({"data": []}));
    let (status, body) = call(
        &relay,
        "POST",
        "/refer/observables",
        &[("Transfer-Encoding", "chunked")],
        &chunked(&just_fits),
    );
    assert_eq!(status, 200);
    check_json(&body, &json!({"data": []}));
    check_alive(&relay);
}

// ---------------------------------------------------------------------------
// Lookups with nothing to look up

#[test]
fn an_empty_list_or_only_unsupported_types_answers_empty_data_without_otx() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    for body in [
        "[]",
        r#"[{"type": "email", "value": "user@example.com"}]"#,
        &json!([
            {"type": "file_name", "value": "a.exe"},
            {"type": "email", "value": "x@y.z"},
            {"type": "Ip", "value": "1.2.3.4"},
        ])
        .to_string(),
    ] {
        for path in ["/observe/observables", "/deliberate/observables"] {
            let (status, answer) = relay.post_auth(path, body);
            assert_eq!(status, 200, "POST {path} {body}");
            check_json(&answer, &json!({"data": {}}));
        }
    }
    assert!(otx.requests().is_empty(), "{:?}", otx.requests());
}
