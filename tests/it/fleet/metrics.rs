//! `GET /metrics` (SPEC §14): exact values after a known sequence of calls,
//! a page that `promtool check metrics` accepts, no label holding what a
//! client or tenant sent, and `METRICS=off`.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::observe::serve_ip_in_pulse;
use crate::support::*;

const OBSERVE: &str = "/observe/observables";

fn scrape(relay: &Relay) -> String {
    let (status, headers, body) = relay.request("GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        content_type,
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    String::from_utf8(body).expect("UTF-8")
}

/// The sample lines of `name` (labels included), sorted.
fn samples<'a>(page: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .collect();
    lines.sort_unstable();
    lines
}

#[test]
fn exact_counts_after_a_known_sequence_and_promtool_agrees() {
    let ip = "198.51.100.90";
    let retried = "198.51.100.91";
    let pulse = "5f0000000000000000000d01";
    let otx = FakeOtx::start();
    serve_ip_in_pulse(&otx, ip, pulse);
    otx.on_seq(
        &format!("/api/v1/indicators/IPv4/{retried}/general"),
        vec![Reply::status(503), Reply::json(json!({}))],
    );
    // Passive DNS (SPEC §15) off: its calls are counted in passive_dns.rs.
    // OTX by name, so that its one lookup is counted too.
    let url = format!("http://localhost:{}", otx.addr().port());
    let relay = Relay::spawn(&url, &[("CACHE_TTL", "300"), ("PASSIVE_DNS", "off")], &[]);
    let one = json!([{"type": "ip", "value": ip}]).to_string();
    for _ in 0..2 {
        relay.post("/version", None, "");
    }
    relay.post("/refer/observables", None, &one);
    let (status, _, _) = relay.request("POST", "/secret-path-of-a-client", &[], b"");
    assert_eq!(status, 404);
    for _ in 0..2 {
        let (status, _) = relay.post_auth(OBSERVE, &one);
        assert_eq!(status, 200);
    }
    relay.post_auth(
        OBSERVE,
        &json!([{"type": "ip", "value": retried}]).to_string(),
    );

    let page = scrape(&relay);
    assert_eq!(
        samples(&page, "otx_relay_requests_total"),
        [
            "otx_relay_requests_total{endpoint=\"/observe/observables\",status=\"200\"} 3",
            "otx_relay_requests_total{endpoint=\"/refer/observables\",status=\"200\"} 1",
            "otx_relay_requests_total{endpoint=\"/version\",status=\"200\"} 2",
            "otx_relay_requests_total{endpoint=\"other\",status=\"404\"} 1",
        ],
        "{page}"
    );
    assert_eq!(
        samples(&page, "otx_relay_otx_requests_total"),
        [
            "otx_relay_otx_requests_total{call=\"general\",outcome=\"200\"} 2",
            "otx_relay_otx_requests_total{call=\"general\",outcome=\"503\"} 1",
            "otx_relay_otx_requests_total{call=\"pulse_indicators\",outcome=\"200\"} 1",
        ]
    );
    assert_eq!(
        samples(&page, "otx_relay_otx_retries_total"),
        ["otx_relay_otx_retries_total 1"]
    );
    // The second /observe of `ip` came from the cache: its /general and its
    // pulse record.
    assert_eq!(
        samples(&page, "otx_relay_dns_lookups_total"),
        ["otx_relay_dns_lookups_total{outcome=\"ok\"} 1"]
    );
    assert_eq!(
        samples(&page, "otx_relay_cache_lookups_total"),
        [
            "otx_relay_cache_lookups_total{tier=\"memory\",result=\"hit\"} 2",
            "otx_relay_cache_lookups_total{tier=\"memory\",result=\"miss\"} 3",
        ]
    );
    assert_eq!(
        samples(&page, "otx_relay_cache_entries"),
        ["otx_relay_cache_entries 3"]
    );
    // This scrape is the one request in flight.
    assert_eq!(
        samples(&page, "otx_relay_in_flight_requests"),
        ["otx_relay_in_flight_requests 1"]
    );
    assert_eq!(
        samples(&page, "otx_relay_build_info"),
        [format!(
            "otx_relay_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )]
    );
    assert!(page.contains(
        "otx_relay_request_duration_seconds_count{endpoint=\"/observe/observables\"} 3\n"
    ));
    assert!(page.contains("otx_relay_otx_request_duration_seconds_count{call=\"general\"} 3\n"));
    for process in [
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_cpu_seconds_total ",
    ] {
        assert!(page.contains(process), "{process}");
    }
    // No label holds an observable, a key, a tenant or a client's path.
    for private in [ip, retried, KEY, "secret-path-of-a-client", pulse] {
        assert!(!page.contains(private), "{private} in /metrics");
    }
    // The scrape itself is counted once done.
    let again = scrape(&relay);
    assert!(again.contains("otx_relay_requests_total{endpoint=\"/metrics\",status=\"200\"} 1\n"));

    let Some(promtool) = tool("promtool") else {
        return;
    };
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(again.as_bytes())
        .expect("the page to promtool");
    let out = check.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{again}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_off_removes_the_endpoint() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[("METRICS", "off")]);
    let (status, _, body) = relay.request("GET", "/metrics", &[], b"");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("not found"));
    let relay = Relay::start(&otx, &[("METRICS", "on")]);
    let (status, _, _) = relay.request("POST", "/metrics", &[], b"");
    assert_eq!(status, 405);
    check_refused(&otx, "METRICS", "maybe");
}
