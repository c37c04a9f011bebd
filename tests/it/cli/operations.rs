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
    // Passive DNS off: its calls would fail too, and double the count.
    let relay = Relay::start(&otx, &[("PASSIVE_DNS", "off")]);
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

// ---------------------------------------------------------------------------
// otx-relay check

const INDICATOR: &str = "/api/v1/indicators/IPv4/8.8.8.8/general";

/// A fake OTX (HTTPS with `tls`) where the key and the known indicator answer.
fn good_otx(tls: bool) -> FakeOtx {
    let otx = if tls {
        FakeOtx::start_tls()
    } else {
        FakeOtx::start()
    };
    otx.on(USER_ME, Reply::file("user-me.json"));
    otx.on(
        INDICATOR,
        Reply::json(json!({"indicator": "8.8.8.8", "pulse_info": {"count": 0, "pulses": []}})),
    );
    otx
}

/// `otx-relay check args…` with `env` (the key from `OTX_API_KEY`): its
/// exit code and its lines, each step's time as `[t]`.
fn check(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, Vec<String>) {
    let env = [&[("OTX_API_KEY", KEY)], env].concat();
    let run = run_cli(&[&["check"], args].concat(), &env);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(find_secret(&all, &[]), None, "{run:?}");
    assert_eq!(run.stderr, "", "{run:?}");
    let lines = run.stdout.lines().map(|line| {
        let timed = line.strip_prefix('[').and_then(|l| l.split_once(" ms] "));
        let (took, rest) = timed.unwrap_or_else(|| panic!("no time on {line:?}"));
        assert!(took.trim().parse::<u64>().is_ok(), "{line}");
        format!("[t] {rest}")
    });
    (run.code, lines.collect())
}

#[test]
fn check_passes_every_step_against_a_good_otx() {
    let otx = good_otx(false);
    let url = otx.url();
    let addr = otx.addr();
    let (code, lines) = check(&[("AVOTX_URL", &url)], &[]);
    assert_eq!(
        lines,
        [
            "[t] resolve 127.0.0.1: ok (127.0.0.1)".to_owned(),
            format!("[t] connect {addr}: ok"),
            "[t] GET /api/v1/user/me: ok".to_owned(),
            format!("[t] GET {INDICATOR}: ok"),
        ]
    );
    assert_eq!(code, Some(0));
    let asked = otx.requests_to(INDICATOR);
    assert_eq!(asked[0].header("X-OTX-API-KEY"), Some(KEY));

    // Over TLS with SSL_CERT_FILE, with --key, and a JWKS host.
    let otx = good_otx(true);
    let jwks = FakeOtx::start_tls();
    let key = SigningKey::generate("check-1").jwk();
    jwks.on("/.well-known/jwks", Reply::json(json!({"keys": [key]})));
    let (url, host) = (otx.url(), jwks.addr().to_string());
    let env = [
        ("AVOTX_URL", url.as_str()),
        ("SSL_CERT_FILE", TEST_CERT),
        ("OTX_API_KEY", ""),
    ];
    let (code, lines) = check(&env, &["--key", KEY, "--jwks-host", &host]);
    assert_eq!(
        lines,
        [
            "[t] resolve 127.0.0.1: ok (127.0.0.1)".to_owned(),
            format!("[t] connect {}: ok", otx.addr()),
            "[t] TLS 127.0.0.1: ok".to_owned(),
            "[t] GET /api/v1/user/me: ok".to_owned(),
            format!("[t] GET {INDICATOR}: ok"),
            "[t] resolve 127.0.0.1: ok (127.0.0.1)".to_owned(),
            format!("[t] connect {host}: ok"),
            "[t] TLS 127.0.0.1: ok".to_owned(),
            "[t] GET /.well-known/jwks: ok (1 usable keys)".to_owned(),
        ]
    );
    assert_eq!(code, Some(0));
    let keyed = otx.requests_to(USER_ME);
    assert_eq!(
        keyed.last().and_then(|r| r.header("X-OTX-API-KEY")),
        Some(KEY)
    );
}

#[test]
fn check_names_what_fails_and_the_variable_to_fix() {
    let refused = RefusedPort::bind();
    let closed = format!("http://127.0.0.1:{}", refused.port());
    let wrong_ca = good_otx(true);
    let forbidden = FakeOtx::start();
    forbidden.on(USER_ME, Reply::status(403));
    let throttled = FakeOtx::start();
    throttled.on(USER_ME, Reply::status(429));
    let good = good_otx(false);
    let with_path = format!("{}/api/v1", good.url());
    let connect = |addr: &str| format!("[t] connect {addr}: ok");
    let resolved = "[t] resolve 127.0.0.1: ok (127.0.0.1)".to_owned();
    for (url, lines) in [
        (
            closed.clone(),
            vec![
                resolved.clone(),
                format!("[t] connect 127.0.0.1:{}: refused; check AVOTX_URL", refused.port()),
            ],
        ),
        (
            "https://otx.invalid".to_owned(),
            vec!["[t] resolve otx.invalid: the name does not resolve; check AVOTX_URL (and this host's DNS)".to_owned()],
        ),
        (
            wrong_ca.url(),
            vec![
                resolved.clone(),
                connect(&wrong_ca.addr().to_string()),
                "[t] TLS 127.0.0.1: the certificate did not verify (invalid peer certificate: UnknownIssuer); check SSL_CERT_FILE".to_owned(),
            ],
        ),
        (
            forbidden.url(),
            vec![
                resolved.clone(),
                connect(&forbidden.addr().to_string()),
                "[t] GET /api/v1/user/me: OTX refused the key (403 Forbidden); check --key or OTX_API_KEY".to_owned(),
            ],
        ),
        (
            throttled.url(),
            vec![
                resolved.clone(),
                connect(&throttled.addr().to_string()),
                "[t] GET /api/v1/user/me: OTX throttles this key or address (429 Too Many Requests); try again later".to_owned(),
            ],
        ),
        (
            with_path.clone(),
            vec![
                format!("[t] AVOTX_URL has a path (/api/v1): the relay will call {with_path}/api/v1/indicators/...; did you mean {}?", good.url()),
                resolved.clone(),
                connect(&good.addr().to_string()),
                "[t] GET /api/v1/api/v1/user/me: OTX answered 404 Not Found; check AVOTX_URL".to_owned(),
            ],
        ),
    ] {
        let (code, got) = check(&[("AVOTX_URL", &url), ("AVOTX_TIMEOUT", "5")], &[]);
        assert_eq!(got, lines, "{url}");
        assert_eq!(code, Some(1), "{url}");
    }
    // No key at all.
    let (code, got) = check(&[("AVOTX_URL", &good.url()), ("OTX_API_KEY", "")], &[]);
    assert_eq!(
        got.last().map(String::as_str),
        Some("[t] GET /api/v1/user/me: no key: pass --key KEY or set OTX_API_KEY")
    );
    assert_eq!(code, Some(1));
}

#[test]
fn check_goes_through_the_proxy_and_names_it() {
    let otx = good_otx(false);
    let closed = RefusedPort::bind();
    let proxy = format!("http://127.0.0.1:{}", closed.port());
    let (code, got) = check(&[("AVOTX_URL", &otx.url()), ("HTTPS_PROXY", &proxy)], &[]);
    assert_eq!(
        got,
        [
            "[t] resolve 127.0.0.1 (the proxy): ok (127.0.0.1)".to_owned(),
            format!(
                "[t] connect 127.0.0.1:{} (the proxy): refused; check HTTPS_PROXY",
                closed.port()
            ),
        ]
    );
    assert_eq!(code, Some(1));
    let refusing = FakeOtx::start();
    refusing.fallback(|_| Reply::status(403));
    let proxy = format!("http://{}", refusing.addr());
    let (code, got) = check(&[("AVOTX_URL", &otx.url()), ("HTTPS_PROXY", &proxy)], &[]);
    assert_eq!(
        got,
        [
            "[t] resolve 127.0.0.1 (the proxy): ok (127.0.0.1)".to_owned(),
            format!("[t] connect {} (the proxy): ok", refusing.addr()),
            format!("[t] CONNECT {} through the proxy: the proxy refused (403 Forbidden); check HTTPS_PROXY and NO_PROXY", otx.addr()),
        ]
    );
    assert_eq!(code, Some(1));
    // NO_PROXY sends it around the proxy.
    let env = [
        ("AVOTX_URL", otx.url()),
        ("HTTPS_PROXY", proxy),
        ("NO_PROXY", "127.0.0.0/8".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, got) = check(&env, &[]);
    assert_eq!(code, Some(0), "{got:?}");
}

// ---------------------------------------------------------------------------
// Paper cuts

#[test]
fn avotx_concurrency_is_bounded_with_a_line_naming_it() {
    let otx = FakeOtx::start();
    for value in ["4096", "1025"] {
        let run = check_refused(&otx, "AVOTX_CONCURRENCY", value);
        assert_eq!(
            run.stderr,
            "otx-relay: invalid AVOTX_CONCURRENCY: must be a positive integer no larger than 1024\n"
        );
    }
    // (The bound itself is accepted: config.rs's unit tests. Starting
    // 1024 pool threads takes 0.3 s in a release build, but seconds in the
    // debug build the tests run.)
}

/// A fresh directory of this test process for `name`.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("otx-relay-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

#[test]
fn an_ssl_cert_file_that_is_a_fifo_or_holds_a_corrupt_block_stops_start_up() {
    let otx = FakeOtx::start();
    let dir = scratch("ca");
    let fifo = dir.join("fifo.pem");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let fifo = fifo.to_string_lossy().into_owned();
    // (run_cli fails the test on a hang.)
    let run = check_refused(&otx, "SSL_CERT_FILE", &fifo);
    let want =
        format!("otx-relay: invalid SSL_CERT_FILE: {fifo} is a pipe or a socket, not a PEM file\n");
    assert_eq!(run.stderr, want);

    let good = std::fs::read_to_string(TEST_CERT).expect("the test certificate");
    let body: String = good.lines().filter(|l| !l.starts_with("-----")).collect();
    for (name, bundle, why) in [
        (
            "bad-base64.pem",
            format!(
                "{good}-----BEGIN CERTIFICATE-----\n!!!{}\n-----END CERTIFICATE-----\n",
                &body[3..]
            ),
            "PEM block 2 is corrupt",
        ),
        (
            "not-a-certificate.pem",
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n{good}",
                &body[..64]
            ),
            "PEM block 1 is not a usable certificate",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bundle).expect("write a bundle");
        let path = path.to_string_lossy().into_owned();
        let run = check_refused(&otx, "SSL_CERT_FILE", &path);
        assert!(
            run.stderr
                .starts_with(&format!("otx-relay: invalid SSL_CERT_FILE: {path}: {why}")),
            "{run:?}"
        );
    }
    // The test certificate alone is fine.
    let relay = Relay::start(&otx, &[("SSL_CERT_FILE", TEST_CERT)]);
    check_version_answers(&relay);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shared-cache warning of a relay on `redis_url` after one lookup.
fn redis_warning(redis_url: &str, env: &[(&str, &str)]) -> String {
    let otx = FakeOtx::start();
    let relay = Relay::start(
        &otx,
        &[&[("REDIS_URL", redis_url), ("CACHE_TTL", "300")], env].concat(),
    );
    let (status, _) = relay.post_auth(OBSERVE, &ips(1, 9));
    assert_eq!(status, 200);
    let lines = lines_with(&relay, "the shared cache (REDIS_URL) is unavailable");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (_, warning) = lines[0].split_once(" WARN ").expect("a warning");
    warning.to_owned()
}

#[test]
fn redis_warnings_say_what_failed() {
    if tool("redis-server").is_none() {
        return;
    }
    // A password is required.
    let redis = RedisServer::start().expect("redis-server starts");
    redis.command(&["CONFIG", "SET", "requirepass", "fleet-password"]);
    assert_eq!(
        redis_warning(&redis.url(), &[]),
        "the shared cache (REDIS_URL) is unavailable (NOAUTH Authentication required.; see the password in REDIS_URL); going on without it"
    );
    // rediss:// to a certificate the roots do not know.
    let port = free_port().to_string();
    let key = TEST_CERT.replace("cert.pem", "key.pem");
    let args = [
        "--port",
        "0",
        "--tls-port",
        &port,
        "--tls-cert-file",
        TEST_CERT,
        "--tls-key-file",
        &key,
    ];
    let args = [
        &args[..],
        &[
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--bind",
            "127.0.0.1",
        ],
    ]
    .concat();
    let mut tls = std::process::Command::new("redis-server")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let up = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap_or(0))).is_ok()
    });
    let url = format!("rediss://127.0.0.1:{port}");
    let warning = up.then(|| redis_warning(&url, &[]));
    let _ = tls.kill();
    let _ = tls.wait();
    assert_eq!(
        warning.as_deref(),
        Some("the shared cache (REDIS_URL) is unavailable (invalid peer certificate: UnknownIssuer; see SSL_CERT_FILE); going on without it")
    );
}

// ---------------------------------------------------------------------------
// Skips you can see

#[test]
fn a_skip_is_listed_where_make_test_shows_it() {
    let dir = scratch("skips");
    let file = dir.join("skipped-tests.txt");
    record_skip(&file, "fleet::some_test", "redis-server is not installed");
    record_skip(&file, "metrics::other", "promtool is not installed");
    let listed = std::fs::read_to_string(&file).expect("the list");
    assert_eq!(
        listed,
        "skipped: fleet::some_test: redis-server is not installed\n\
         skipped: metrics::other: promtool is not installed\n"
    );
    // The list is the file `make test` prints at its end (and empties first).
    assert!(SKIPPED.ends_with("/tmp/skipped-tests.txt"), "{SKIPPED}");
    let makefile = include_str!("../../../Makefile");
    let recipe = "SKIPPED := $(or $(CARGO_TARGET_DIR),target)/tmp/skipped-tests.txt";
    assert!(makefile.contains(recipe), "the Makefile names the list");
    assert!(makefile.contains("@rm -f $(SKIPPED)") && makefile.contains("cat $(SKIPPED)"));
    // And CI fails on any skip.
    let ci = include_str!("../../../.ci/run");
    assert!(ci.contains("export OTX_RELAY_NO_SKIPS=1"), "{ci}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn answers_written_during_the_drain_say_connection_close() {
    let otx = FakeOtx::start();
    let slow = Reply::file("user-me.json").with_head_delay(Duration::from_millis(1500));
    otx.on(USER_ME, slow);
    let relay = Relay::start(&otx, &[]);
    let mut client = Client::new(relay.addr()).header("Authorization", &bearer(&token()));
    // A first answer on the kept connection: no `Connection: close`.
    let answer = client
        .send("POST", "/version", &[], b"")
        .expect("an answer");
    assert_eq!(connection(&answer), None);
    let pid = relay.pid();
    let signaller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        sigterm(pid)
    });
    // In flight when SIGTERM comes: answered, with `Connection: close`.
    let answer = client.send("POST", "/health", &[], b"").expect("an answer");
    assert!(signaller.join().expect("the signaller"), "SIGTERM sent");
    assert_eq!(answer.status, 200);
    assert_eq!(connection(&answer), Some("close"), "{:?}", answer.headers);
}

/// The answer's `Connection` header.
fn connection(answer: &Response) -> Option<&str> {
    let mut headers = answer.headers.iter();
    let found = headers.find(|(name, _)| name.eq_ignore_ascii_case("connection"));
    found.map(|(_, value)| value.as_str())
}
