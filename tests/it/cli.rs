//! The binary as an operator runs it (SPEC §1, §8): start-up
//! configuration, the command line (`--help`, `--version`, `token`,
//! `healthcheck`), the access log and a graceful stop.
//!
//! Beside it: [`config_limits`], the upper bounds of the variables;
//! [`operations`], `otx-relay check`, start-up warnings and OTX trouble in
//! the log.

mod config_limits;
mod operations;

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::endpoints::{check_alive, link, USER_ME, VERSION};
use crate::support::*;

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
