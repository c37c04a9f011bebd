//! SPEC §1, §3, §5 and §8 seen from outside: `/version`, `/watchdog`,
//! `/refer/observables`, invalid bodies, HTTP-level errors, empty lookups,
//! start-up configuration, the command line, the access log and a graceful
//! stop.

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const USER_ME: &str = "/api/v1/user/me";
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
fn check_alive(relay: &Relay) {
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
fn link(
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

// ---------------------------------------------------------------------------
// Start-up configuration

/// A file in the temporary directory, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("otx-relay-endpoints-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write a temporary file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_bad_configuration_value_stops_the_start_with_one_line_naming_it() {
    let otx = FakeOtx::start();
    let not_pem = TempFile::new("not-a-pem.txt", "this is not a certificate\n");
    let empty = TempFile::new("empty.pem", "");
    let broken = TempFile::new(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    );
    for (variable, value) in [
        ("PORT", "0"),
        ("PORT", "70000"),
        ("PORT", "65536"),
        ("PORT", "-1"),
        ("PORT", "abc"),
        ("AVOTX_URL", "ftp://x"),
        ("AVOTX_URL", "nohost"),
        ("AVOTX_URL", "http://"),
        ("AVOTX_TIMEOUT", "0"),
        ("AVOTX_TIMEOUT", "1.5"),
        ("RELAY_DEADLINE", "-1"),
        ("RELAY_THREADS", "x"),
        ("RELAY_THREADS", "0"),
        ("AVOTX_CONCURRENCY", "0"),
        ("CACHE_TTL", "-1"),
        ("CACHE_TTL", "soon"),
        ("CACHE_MAX_ENTRIES", "0"),
        ("AVOTX_MAX_BODY", "x"),
        ("OTX_MALICIOUS_PULSES", "0"),
        ("VERDICT_VALID_DAYS", "0"),
        ("SSL_CERT_FILE", "/nonexistent/otx-relay/ca.pem"),
        ("SSL_CERT_FILE", not_pem.path()),
        ("SSL_CERT_FILE", empty.path()),
        ("SSL_CERT_FILE", broken.path()),
    ] {
        check_refused(&otx, variable, value);
    }
    assert!(otx.requests().is_empty());
}

#[test]
fn cache_ttl_zero_and_a_junk_entities_limit_start_fine() {
    let otx = FakeOtx::start();
    for env in [
        [("CACHE_TTL", "0")],
        [("CTR_ENTITIES_LIMIT", "junk")],
        [("CTR_ENTITIES_LIMIT", "-5")],
    ] {
        let relay = Relay::start(&otx, &env);
        check_alive(&relay);
    }
}

#[test]
fn empty_variables_count_as_unset() {
    let otx = FakeOtx::start();
    otx.on(USER_ME, Reply::file("user-me.json"));
    let empty: Vec<(&str, &str)> = [
        "CTR_ENTITIES_LIMIT",
        "AVOTX_TIMEOUT",
        "RELAY_DEADLINE",
        "RELAY_THREADS",
        "AVOTX_CONCURRENCY",
        "CACHE_TTL",
        "CACHE_MAX_ENTRIES",
        "AVOTX_MAX_BODY",
        "OTX_MALICIOUS_PULSES",
        "VERDICT_VALID_DAYS",
        "SSL_CERT_FILE",
        "HTTPS_PROXY",
        "NO_PROXY",
    ]
    .into_iter()
    .map(|name| (name, ""))
    .collect();
    let relay = Relay::start(&otx, &empty);
    check_alive(&relay);
    let (status, body) = relay.post_auth("/health", "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"data": {"status": "ok"}}));
    drop(relay);

    // An empty AVOTX_URL is the default OTX, which the refer links show.
    let relay = Relay::start(&otx, &[("AVOTX_URL", "")]);
    let (status, body) = relay.post(
        "/refer/observables",
        None,
        r#"[{"type": "ip", "value": "1.2.3.4"}]"#,
    );
    assert_eq!(status, 200);
    let default_link = link(
        "https://otx.alienvault.com",
        "ip",
        "IP",
        "ip",
        "1.2.3.4",
        "1.2.3.4",
    );
    check_json(&body, &json!({"data": [default_link]}));
}

// ---------------------------------------------------------------------------
// The command line

/// A `PORT` nothing listens on, so that a binary that wrongly starts
/// serving cannot take a real one.
fn idle_port() -> String {
    free_port().to_string()
}

#[test]
fn help_and_the_readme_show_the_one_table_of_variables() {
    let run = run_cli(&["--help"], &[]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let help = otx_relay::config::help();
    assert!(
        run.stdout.ends_with(&help),
        "--help lists the variables otherwise:\n{}",
        run.stdout
    );
    let table = otx_relay::config::markdown();
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&table),
        "README.md's configuration table is not the variables' table; paste this:\n{table}"
    );
}

#[test]
fn help_names_the_subcommands_and_every_variable() {
    let port = idle_port();
    let run = run_cli(&["--help"], &[("PORT", &port)]);
    assert_eq!(run.code, Some(0), "{run:?}");
    for word in [
        "token",
        "healthcheck",
        "--version",
        "SECRET_KEY",
        "AVOTX_URL",
        "CTR_ENTITIES_LIMIT",
        "PORT",
        "HOST",
        "AVOTX_TIMEOUT",
        "RELAY_DEADLINE",
        "RELAY_THREADS",
        "AVOTX_CONCURRENCY",
        "CACHE_TTL",
        "CACHE_MAX_ENTRIES",
        "AVOTX_MAX_BODY",
        "OTX_MALICIOUS_PULSES",
        "VERDICT_VALID_DAYS",
        "SSL_CERT_FILE",
        "HTTPS_PROXY",
        "NO_PROXY",
        "PASSIVE_DNS",
        "PASSIVE_DNS_LIMIT",
    ] {
        assert!(run.stdout.contains(word), "--help does not mention {word}");
    }
}

#[test]
fn version_flag_prints_the_name_and_version() {
    let port = idle_port();
    let run = run_cli(&["--version"], &[("PORT", &port)]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, format!("otx-relay {VERSION}\n"));
    assert_eq!(run.stderr, "");
}

#[test]
fn an_unknown_argument_exits_non_zero_with_a_message() {
    let port = idle_port();
    for arg in ["--frobnicate", "serve-please"] {
        let run = run_cli(&[arg], &[("PORT", &port)]);
        assert!(run.code.is_some_and(|c| c != 0), "{run:?}");
        assert!(run.stderr.contains(arg), "the message names {arg}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{run:?}");
        assert_eq!(run.stdout, "", "{run:?}");
    }
}

/// The JSON of a base64url (unpadded) JWT segment.
fn segment_json(segment: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .unwrap_or_else(|e| panic!("segment {segment:?} is not base64url: {e}"));
    serde_json::from_slice(&bytes).expect("a JSON segment")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs()
}

#[test]
fn token_prints_a_jwt_the_relay_accepts() {
    let key = "cli-minted-otx-key-0123456789abcdef";
    let before = unix_now();
    let run = run_cli(
        &["token", "--key", key, "--limit", "5", "--ttl", "60"],
        &[("SECRET_KEY", SECRET)],
    );
    let after = unix_now();
    assert_eq!(run.code, Some(0), "{run:?}");
    let minted = run.stdout.trim().to_string();
    assert_eq!(run.stdout, format!("{minted}\n"), "one line: {run:?}");

    let segments: Vec<&str> = minted.split('.').collect();
    assert_eq!(segments.len(), 3, "{minted}");
    assert_eq!(segment_json(segments[0])["alg"], "HS256");
    let payload = segment_json(segments[1]);
    let exp = payload["exp"].as_u64().expect("a numeric exp");
    assert!(
        (before + 60..=after + 60).contains(&exp),
        "exp {exp} is 60 s after the run ({before}..={after})"
    );
    check_json(
        &payload,
        &json!({"key": key, "CTR_ENTITIES_LIMIT": 5, "exp": exp}),
    );

    let otx = FakeOtx::start();
    otx.on(USER_ME, Reply::file("user-me.json"));
    let relay = Relay::start(&otx, &[]);
    relay.forbid(key);
    relay.forbid(&minted);
    let (status, body) = relay.post("/health", Some(&bearer(&minted)), "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"data": {"status": "ok"}}));
    let requests = otx.requests_to(USER_ME);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("X-OTX-API-KEY"), Some(key));
}

#[test]
fn token_refuses_a_missing_or_short_secret_key_and_a_missing_key() {
    let args = ["token", "--key", "K", "--limit", "5", "--ttl", "60"];
    let short = "s".repeat(31);
    let long_enough = "s".repeat(32);
    for (env, needle) in [
        (vec![], "SECRET_KEY"),
        (vec![("SECRET_KEY", "")], "SECRET_KEY"),
        (vec![("SECRET_KEY", short.as_str())], "SECRET_KEY"),
    ] {
        let run = run_cli(&args, &env);
        assert!(run.code.is_some_and(|c| c != 0), "{env:?}: {run:?}");
        assert!(run.stderr.contains(needle), "{env:?}: {run:?}");
        assert_eq!(run.stdout, "", "no token printed: {run:?}");
        if let Some((_, secret)) = env.first().filter(|(_, s)| !s.is_empty()) {
            assert!(
                !run.stderr.contains(secret),
                "the secret is not echoed: {run:?}"
            );
        }
    }
    let run = run_cli(&["token", "--limit", "5"], &[("SECRET_KEY", SECRET)]);
    assert!(run.code.is_some_and(|c| c != 0), "{run:?}");
    assert!(run.stderr.contains("--key"), "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");

    // 32 bytes is enough.
    let run = run_cli(
        &["token", "--key", "K"],
        &[("SECRET_KEY", long_enough.as_str())],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.trim().split('.').count(), 3, "{run:?}");
}

#[test]
fn healthcheck_exits_zero_against_a_running_relay_and_one_when_nothing_listens() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let port = relay.addr().port().to_string();
    let run = run_cli(&["healthcheck"], &[("PORT", &port)]);
    assert_eq!(run.code, Some(0), "{run:?}");
    access_line(&relay, "GET", "/watchdog", 200);

    let idle = idle_port();
    let run = run_cli(&["healthcheck"], &[("PORT", &idle)]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(!run.stderr.is_empty(), "{run:?}");
}

// ---------------------------------------------------------------------------
// Operations

/// Waits (max 5 s) for the access line of `method path` answered `status`
/// on stdout; returns its whitespace-separated words.
fn access_line(relay: &Relay, method: &str, path: &str, status: u16) -> Vec<String> {
    let status = status.to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stdout = relay.stdout();
        let found = stdout.lines().find_map(|line| {
            let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            let has = |w: &str| words.iter().any(|x| x == w);
            (has(method) && has(path) && has(&status)).then_some(words)
        });
        if let Some(words) = found {
            return words;
        }
        assert!(
            Instant::now() < deadline,
            "no access line for {method} {path} {status} in:\n{stdout}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn each_request_logs_an_access_line_without_the_query() {
    let otx = FakeOtx::start();
    otx.on_seq(
        USER_ME,
        vec![Reply::status(503), Reply::file("user-me.json")],
    );
    let relay = Relay::start(&otx, &[]);
    relay.forbid("secret-ish");

    let (status, _, body) = relay.request("POST", "/version?x=secret-ish", &[], b"");
    assert_eq!(status, 200);
    let words = access_line(&relay, "POST", "/version", 200);
    assert!(words.contains(&body.len().to_string()), "bytes: {words:?}");
    assert!(words.contains(&"retries=0".to_string()), "{words:?}");

    let (status, _, body) = relay.request("GET", "/missing?token=secret-ish", &[], b"");
    assert_eq!(status, 404);
    let words = access_line(&relay, "GET", "/missing", 404);
    assert!(words.contains(&body.len().to_string()), "bytes: {words:?}");

    // One 503 from OTX, then a success: the line counts the retry.
    let (status, body) = relay.post_auth("/health", "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"data": {"status": "ok"}}));
    let words = access_line(&relay, "POST", "/health", 200);
    assert!(words.contains(&"retries=1".to_string()), "{words:?}");
    assert!(!relay.stdout().contains('?'), "{}", relay.stdout());
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let otx = FakeOtx::start();
    otx.on(
        USER_ME,
        Reply::file("user-me.json").with_head_delay(Duration::from_millis(1500)),
    );
    let relay = Relay::start(&otx, &[]);
    let pid = relay.pid();
    let signaller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        sigterm(pid)
    });
    let (status, body) = relay.post_auth("/health", "");
    assert!(signaller.join().expect("the signaller"), "SIGTERM sent");
    assert_eq!(status, 200);
    check_json(&body, &json!({"data": {"status": "ok"}}));
    assert_eq!(otx.requests_to(USER_ME).len(), 1);
    // The first SIGTERM alone stops the relay: it soon stops listening.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&relay.addr(), Duration::from_secs(1)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still listening 5 s after SIGTERM: {}",
            relay.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(relay.terminate(), Some(0));
}
