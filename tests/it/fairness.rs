//! OTX work shared fairly between tenants (SPEC §8): while one tenant's
//! 3 000-observable request runs, another tenant's one-observable lookup
//! waits for a few OTX calls, not behind the whole request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::observe::serve_ip_in_pulse;
use crate::support::*;

const OBSERVE: &str = "/observe/observables";
/// The other tenant's OTX key.
const OTHER_KEY: &str = "otx-other-tenant-key-0000";

#[test]
fn a_huge_request_of_one_tenant_does_not_delay_another_tenants_lookup() {
    let (ip, pulse) = ("198.51.100.77", "5f0000000000000000000f01");
    let otx = FakeOtx::start();
    // Every OTX answer takes 50 ms: 3 000 lookups on 4 threads take
    // about 40 s, well past the 5 s deadline of tenant A's request.
    otx.set_latency(Duration::from_millis(50));
    // Tenant A's IPs are unknown to the fake (404: one call each); tenant
    // B's is in one pulse (two calls).
    serve_ip_in_pulse(&otx, ip, pulse);
    let env = [
        ("AVOTX_CONCURRENCY", "4"),
        ("CACHE_TTL", "0"),
        ("RELAY_DEADLINE", "5"),
    ];
    let relay = Relay::start(&otx, &env);
    let other = jwt(SECRET, &json!({"key": OTHER_KEY}));
    relay.forbid(OTHER_KEY);
    relay.forbid(&other);
    let huge: Vec<Value> = (0..3_000)
        .map(|i| json!({"type": "ip", "value": format!("10.0.{}.{}", i / 250, i % 250 + 1)}))
        .collect();
    let huge = Value::Array(huge).to_string();

    let a_answered = AtomicBool::new(false);
    let (took, a_running, answer) = thread::scope(|s| {
        let a = s.spawn(|| {
            let (status, _) = relay.post_auth(OBSERVE, &huge);
            a_answered.store(true, Ordering::SeqCst);
            status
        });
        // Tenant A's calls are flowing: its queue is thousands deep.
        let waited = Instant::now();
        while otx.request_count() < 12 && waited.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(otx.request_count() >= 12, "tenant A's calls never flowed");
        let started = Instant::now();
        let body = json!([{"type": "ip", "value": ip}]).to_string();
        let (status, answer) = relay.post(OBSERVE, Some(&bearer(&other)), &body);
        let took = started.elapsed();
        assert_eq!(status, 200, "{answer}");
        let a_running = !a_answered.load(Ordering::SeqCst);
        assert_eq!(a.join().expect("tenant A's thread"), 200);
        (took, a_running, answer)
    });
    // Without it the test would prove nothing.
    let over = "tenant A's request was over before B's was answered";
    assert!(a_running, "{over} (B waited {took:?})");
    // A generous bound: B's two calls wait for at most one of A's calls
    // each (50 ms), then take 50 ms each.
    assert!(took < Duration::from_secs(1), "tenant B waited {took:?}");
    assert_eq!(answer["data"]["sightings"]["count"], 1, "{answer}");
    assert!(answer.get("errors").is_none(), "{answer}");
    let asked = otx.requests_to(&format!("/api/v1/indicators/IPv4/{ip}/general"));
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].header("X-OTX-API-KEY"), Some(OTHER_KEY));
}
