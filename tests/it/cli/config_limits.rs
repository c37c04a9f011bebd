//! Values too large to use: every numeric variable has an upper bound and a
//! value above it stops start-up with one line naming the variable (a huge
//! one used to overflow later, in a request); `token --ttl` that would
//! overflow the expiry; `healthcheck` against the address of `HOST`.

use crate::support::{check_refused, free_port, run_cli, FakeOtx, Relay, StartRelay, SECRET};

#[test]
fn values_above_the_upper_bounds_stop_start_up() {
    let otx = FakeOtx::start();
    for (variable, value) in [
        ("AVOTX_TIMEOUT", "86401"),
        ("AVOTX_TIMEOUT", "18446744073709551615"),
        ("RELAY_DEADLINE", "86401"),
        ("RELAY_DEADLINE", "18446744073709551615"),
        ("RELAY_CLIENT_TIMEOUT", "86401"),
        ("RELAY_CLIENT_TIMEOUT", "18446744073709551615"),
        ("CACHE_TTL", "31536001"),
        ("CACHE_TTL", "18446744073709551615"),
        ("RELAY_THREADS", "4097"),
        ("RELAY_THREADS", "100000"),
        ("AVOTX_CONCURRENCY", "100000"),
        ("AVOTX_CONCURRENCY", "18446744073709551615"),
        ("CACHE_MAX_ENTRIES", "100000001"),
        ("AVOTX_MAX_BODY", "4294967297"),
        ("AVOTX_MAX_BODY", "18446744073709551615"),
        ("OTX_MALICIOUS_PULSES", "1000001"),
        ("VERDICT_VALID_DAYS", "3651"),
        ("VERDICT_VALID_DAYS", "18446744073709551615"),
    ] {
        check_refused(&otx, variable, value);
    }
}

#[test]
fn malformed_otx_urls_stop_start_up_without_echoing_credentials() {
    let otx = FakeOtx::start();
    for value in [
        "http://[::1",
        "http://a:b:c",
        "http://%zz",
        "http://127.0.0.1:99999",
        "http://user:pw-not-for-logs@127.0.0.1:1",
    ] {
        let exited = check_refused(&otx, "AVOTX_URL", value);
        assert!(
            !exited.stderr.contains("pw-not-for-logs"),
            "{value}: {exited:?}"
        );
    }
}

#[test]
fn token_ttl_that_would_overflow_the_expiry_is_refused() {
    for ttl in [
        "18446744073709551615",
        "18446744073709551000",
        // Just over the 100-year cap.
        "3155760001",
    ] {
        let run = run_cli(
            &["token", "--key", "K", "--ttl", ttl],
            &[("SECRET_KEY", SECRET)],
        );
        assert_eq!(run.code, Some(1), "--ttl {ttl}: {run:?}");
        assert_eq!(run.stdout, "", "--ttl {ttl}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "--ttl {ttl}: {run:?}");
        assert!(run.stderr.contains("--ttl"), "--ttl {ttl}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "--ttl {ttl}: {run:?}");
    }
    // A long but sane lifetime still mints a token.
    let run = run_cli(
        &["token", "--key", "K", "--ttl", "3153600000"],
        &[("SECRET_KEY", SECRET)],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.trim().split('.').count(), 3, "{run:?}");
}

#[test]
fn healthcheck_connects_to_the_address_host_names() {
    let otx = FakeOtx::start();
    // Linux routes all of 127.0.0.0/8 to the loopback interface.
    let relay = Relay::start(&otx, &[("HOST", "127.0.0.2")]);
    assert_eq!(relay.addr().ip().to_string(), "127.0.0.2");
    let port = relay.addr().port().to_string();
    let run = run_cli(&["healthcheck"], &[("HOST", "127.0.0.2"), ("PORT", &port)]);
    assert_eq!(run.code, Some(0), "{run:?}");

    // A wildcard HOST means the loopback address.
    let local = Relay::start(&otx, &[]);
    let port = local.addr().port().to_string();
    for host in ["0.0.0.0", ""] {
        let run = run_cli(&["healthcheck"], &[("HOST", host), ("PORT", &port)]);
        assert_eq!(run.code, Some(0), "HOST={host:?}: {run:?}");
    }

    // Nothing there: exit 1.
    let idle = free_port().to_string();
    let run = run_cli(&["healthcheck"], &[("HOST", "127.0.0.2"), ("PORT", &idle)]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(!run.stderr.is_empty(), "{run:?}");
}

#[test]
fn a_proxy_the_client_cannot_use_stops_start_up_without_echoing_it() {
    let otx = FakeOtx::start();
    for (variable, value) in [
        ("HTTPS_PROXY", "socks5://user:hunter2@127.0.0.1:1080"),
        ("ALL_PROXY", "socks5h://127.0.0.1:1080"),
        ("https_proxy", "https://user:hunter2@proxy:3128"),
        ("HTTP_PROXY", "http://proxy:99999"),
    ] {
        let exited = check_refused(&otx, variable, value);
        assert!(!exited.stderr.contains("hunter2"), "{exited:?}");
    }
}

#[test]
fn an_endless_ssl_cert_file_stops_start_up() {
    let otx = FakeOtx::start();
    let exited = check_refused(&otx, "SSL_CERT_FILE", "/dev/zero");
    assert!(exited.stderr.contains("larger than 4 MiB"), "{exited:?}");
}

#[test]
fn a_short_secret_key_is_warned_about_at_start_up() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[("SECRET_KEY", "short-secret")]);
    assert!(relay.wait_log("listening on"));
    let warning = "WARN SECRET_KEY is 12 bytes long: use at least 32 random bytes";
    assert!(relay.stderr().contains(warning), "{}", relay.stderr());
    let relay = Relay::start(&otx, &[("SECRET_KEY", SECRET)]);
    assert!(relay.wait_log("listening on"));
    assert!(!relay.stderr().contains("SECRET_KEY"), "{}", relay.stderr());
}
