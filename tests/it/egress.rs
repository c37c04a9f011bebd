//! The relay's calls out, their names: name resolution (SPEC §4): OTX's host looked up at most once a minute,
//! its addresses reused in between, counted on `/metrics`
//! (`otx_relay_dns_lookups_total`); an IP literal never looked up; through
//! a proxy, the proxy's name looked up instead, once. (A failed lookup
//! tried again on the next call: the unit tests of `egress::resolver`,
//! since no name fails here without asking a real DNS server.)

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{json, Value};

use crate::observe::serve_ip_in_pulse;
use crate::support::*;

const OBSERVE: &str = "/observe/observables";

/// Passive DNS (SPEC §15) off: the counts below are of /general and pulse
/// calls only.
const OFF: (&str, &str) = ("PASSIVE_DNS", "off");

/// Three IPs, each in a pulse of its own: 6 OTX calls per `/observe` (with
/// passive DNS off, [`OFF`]).
fn serve_three(otx: &FakeOtx) -> String {
    let ips = ["198.51.100.31", "198.51.100.32", "198.51.100.33"];
    for (i, ip) in ips.iter().enumerate() {
        serve_ip_in_pulse(otx, ip, &format!("5f000000000000000000{i:04}"));
    }
    let body: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"type": "ip", "value": ip}))
        .collect();
    Value::Array(body).to_string()
}

/// `/observe` of `body` answers 200 with the three sightings.
#[track_caller]
fn observe_three(relay: &Relay, body: &str) {
    let (status, answer) = relay.post_auth(OBSERVE, body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["sightings"]["count"], 3, "{answer}");
    assert!(answer.get("errors").is_none(), "{answer}");
}

/// The samples of `otx_relay_dns_lookups_total` on the relay's `/metrics`.
fn lookups(relay: &Relay) -> Vec<String> {
    let (status, _, page) = relay.request("GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let page = String::from_utf8(page).expect("UTF-8");
    let mut samples: Vec<String> = page
        .lines()
        .filter(|l| l.starts_with("otx_relay_dns_lookups_total{"))
        .map(String::from)
        .collect();
    samples.sort();
    if !samples.is_empty() {
        assert!(page.contains("# TYPE otx_relay_dns_lookups_total counter\n"));
    }
    samples
}

#[test]
fn the_otx_host_is_looked_up_once_for_many_calls() {
    let otx = FakeOtx::start();
    let body = serve_three(&otx);
    // A name, so that a lookup happens (`localhost`, from /etc/hosts).
    let url = format!("http://localhost:{}", otx.addr().port());
    let relay = Relay::spawn(&url, &[OFF], &[]);
    for _ in 0..3 {
        observe_three(&relay, &body);
    }
    assert_eq!(otx.request_count(), 18, "no cache: every call asked OTX");
    assert_eq!(
        lookups(&relay),
        ["otx_relay_dns_lookups_total{outcome=\"ok\"} 1"]
    );

    // An IP literal is never looked up.
    let relay = Relay::start(&otx, &[OFF]);
    assert!(otx.url().starts_with("http://127.0.0.1:"));
    observe_three(&relay, &body);
    assert_eq!(lookups(&relay), Vec::<String>::new());
}

/// A CONNECT proxy on 127.0.0.1 that takes any target to `otx` and records
/// each request line.
fn connect_proxy(otx: &FakeOtx) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let port = listener.local_addr().expect("an address").port();
    let (seen, target) = (Arc::new(Mutex::new(Vec::new())), otx.addr());
    let recorded = seen.clone();
    thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let recorded = recorded.clone();
            thread::spawn(move || -> io::Result<()> {
                let mut from_client = BufReader::new(client.try_clone()?);
                let mut line = String::new();
                from_client.read_line(&mut line)?;
                recorded
                    .lock()
                    .expect("a lock")
                    .push(line.trim_end().to_owned());
                while from_client.read_line(&mut line)? > 2 {
                    line.clear();
                }
                let upstream = TcpStream::connect(target)?;
                let mut to_client = client;
                to_client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
                let mut to_upstream = upstream.try_clone()?;
                let mut from_upstream = upstream;
                thread::spawn(move || io::copy(&mut from_upstream, &mut to_client));
                io::copy(&mut from_client, &mut to_upstream)?;
                Ok(())
            });
        }
    });
    (port, seen)
}

#[test]
fn through_a_proxy_only_the_proxys_name_is_looked_up_once() {
    let otx = FakeOtx::start();
    let body = serve_three(&otx);
    let (port, seen) = connect_proxy(&otx);
    let proxy = format!("http://localhost:{port}");
    // A name no one can resolve: only the proxy may (and does) use it.
    let url = format!("http://otx.invalid:{}", otx.addr().port());
    let relay = Relay::spawn(&url, &[("HTTPS_PROXY", &proxy), OFF], &[]);
    for _ in 0..3 {
        observe_three(&relay, &body);
    }
    assert_eq!(otx.request_count(), 18);
    let seen = seen.lock().expect("a lock").clone();
    assert!(!seen.is_empty());
    let connect = format!("CONNECT otx.invalid:{} HTTP/1.1", otx.addr().port());
    assert!(seen.iter().all(|line| *line == connect), "{seen:?}");
    assert_eq!(
        lookups(&relay),
        ["otx_relay_dns_lookups_total{outcome=\"ok\"} 1"]
    );
}
