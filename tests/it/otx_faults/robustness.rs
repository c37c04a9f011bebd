//! Robustness fixes seen from outside: SIGTERM stops accepting while the
//! request in flight finishes (SPEC §8), a pulse lookup answered 404 is
//! logged (SPEC §4) with what OTX sent escaped (SPEC §8), and the record
//! cache tells observable kinds apart.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::check;
use crate::support::*;

const OBSERVE: &str = "/observe/observables";

fn general_path(section: &str, quoted: &str) -> String {
    format!("/api/v1/indicators/{section}/{quoted}/general")
}

fn pulse_path(pulse_id: &str) -> String {
    format!("/api/v1/pulses/{pulse_id}/indicators")
}

/// A `/general` answer whose base indicator has `base_type`, listing one
/// pulse per id, each counting the given indicator types.
fn general(base_type: &str, pulse_ids: &[&str], counted: &[&str]) -> Value {
    let counts: serde_json::Map<String, Value> =
        counted.iter().map(|t| (t.to_string(), json!(1))).collect();
    let pulses: Vec<Value> = pulse_ids
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "name": format!("Pulse {id}"),
                "indicator_type_counts": counts,
            })
        })
        .collect();
    json!({
        "base_indicator": {"type": base_type},
        "pulse_info": {"count": pulses.len(), "pulses": pulses},
        "false_positive": [],
        "validation": [],
    })
}

/// One page of a pulse's indicators holding one record of `indicator`.
fn one_record(indicator: &str) -> Reply {
    Reply::json(json!({
        "count": 1,
        "next": null,
        "results": [{
            "indicator": indicator,
            "created": "2021-03-04T05:06:07",
            "expiration": null,
        }],
    }))
}

fn sightings(body: &Value) -> usize {
    body.pointer("/data/sightings/count")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize
}

/// What a new connection to `relay` gets: `Ok(())` when it is refused, or
/// closed (or reset) without a byte of answer; `Err` with what happened
/// otherwise (accepted and answered, or left hanging).
fn new_connection_is_turned_away(relay: &Relay) -> Result<(), String> {
    let mut stream = match TcpStream::connect_timeout(&relay.addr(), Duration::from_secs(1)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Ok(()),
        Err(e) => return Err(format!("connect failed oddly: {e}")),
        Ok(stream) => stream,
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.write_all(
        b"GET /watchdog HTTP/1.1\r\nHost: x\r\nHealth-Check: x\r\nConnection: close\r\n\r\n",
    );
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) if answer.is_empty() => Ok(()),
        Ok(_) => Err(format!(
            "a new connection was answered after SIGTERM: {:?}",
            String::from_utf8_lossy(&answer)
        )),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err("a new connection was accepted after SIGTERM and left hanging".to_owned())
        }
        Err(_) if answer.is_empty() => Ok(()),
        Err(e) => Err(format!("a new connection got a partial answer: {e}")),
    }
}

#[test]
fn sigterm_stops_accepting_while_the_request_in_flight_finishes() {
    let ip = "198.51.100.23";
    let pulse = "5f0000000000000000000a01";
    let otx = FakeOtx::start();
    otx.on(
        &general_path("IPv4", ip),
        Reply::json(general("IPv4", &[pulse], &["IPv4"]))
            .with_head_delay(Duration::from_millis(1500)),
    );
    otx.on(&pulse_path(pulse), one_record(ip));
    let relay = Relay::start(&otx, &[]);
    let body = json!([{"type": "ip", "value": ip}]).to_string();

    let (in_flight, turned_away, finished_first) = thread::scope(|s| {
        let started = Instant::now();
        let observe = s.spawn(|| {
            let answer = relay.post_auth(OBSERVE, &body);
            (answer, Instant::now())
        });
        // Let the request reach the relay and its (slow) OTX call.
        thread::sleep(Duration::from_millis(300));
        assert!(sigterm(relay.pid()), "SIGTERM sent");
        thread::sleep(Duration::from_millis(200));
        let checked = Instant::now();
        let turned_away = new_connection_is_turned_away(&relay);
        let checked_by = Instant::now();
        let (answer, answered) = observe.join().expect("the observe thread");
        // The check must be over before the in-flight request was answered
        // (a relay that has exited turns everyone away, proving nothing).
        assert!(
            checked_by < answered,
            "the check ({:?}..{:?}) did not end before the in-flight answer ({:?})",
            checked - started,
            checked_by - started,
            answered - started
        );
        (answer, turned_away, checked_by < answered)
    });
    assert!(finished_first);
    if let Err(why) = turned_away {
        panic!("{why}; relay output:\n{}", relay.logs());
    }
    let (status, answer) = in_flight;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(sightings(&answer), 1, "{answer}");
    assert_eq!(relay.terminate(), Some(0));
}

#[test]
fn a_pulse_lookup_answered_404_is_logged_with_the_pulse_and_status() {
    let ip = "198.51.100.24";
    let found = "5f0000000000000000000b01";
    let missing = "5f0000000000000000000b404";
    let serve = |otx: &FakeOtx| {
        otx.on(
            &general_path("IPv4", ip),
            Reply::json(general("IPv4", &[found, missing], &["IPv4"])),
        );
        otx.on(&pulse_path(found), one_record(ip));
        otx.on(&pulse_path(missing), Reply::status(404));
    };
    let body = json!([{"type": "ip", "value": ip}]).to_string();
    let run = check(serve, &[], OBSERVE, &body);
    let (relay, otx, answer) = (&run.relay, &run.otx, &run.answer);
    assert_eq!(run.status, 200);
    // The client is not told: one sighting, no error.
    assert!(answer.get("errors").is_none(), "{answer}");
    assert_eq!(sightings(answer), 1, "{answer}");
    assert_eq!(otx.requests_to(&pulse_path(missing)).len(), 1);
    // The operator is.
    assert!(
        relay.wait_log(missing),
        "no warning names the pulse:\n{}",
        relay.logs()
    );
    let stderr = relay.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains(missing))
        .expect("a stderr line names the pulse");
    assert!(
        line.contains("404"),
        "the warning does not give the status: {line}"
    );
    assert!(line.contains("WARN"), "not a warning: {line}");
    assert!(
        !stderr.contains(found),
        "the pulse found was not dropped: {stderr}"
    );
}

#[test]
fn the_record_cache_tells_observable_kinds_apart() {
    // The same value as an MD5 (matched ignoring case) and as a URL
    // (matched exactly), both in one pulse that lists it in upper case.
    let lower = "0123456789abcdef0123456789abcdef";
    let upper = lower.to_ascii_uppercase();
    let pulse = "5f0000000000000000000c01";
    let otx = FakeOtx::start();
    let counted = ["FileHash-MD5", "URL"];
    otx.on(
        &general_path("file", lower),
        Reply::json(general("FileHash-MD5", &[pulse], &counted)),
    );
    otx.on(
        &general_path("url", lower),
        Reply::json(general("URL", &[pulse], &counted)),
    );
    otx.on(&pulse_path(pulse), one_record(&upper));
    let relay = Relay::start(&otx, &[("CACHE_TTL", "300")]);

    let observe = |type_: &str| {
        let (status, answer) = relay.post_auth(
            OBSERVE,
            &json!([{"type": type_, "value": lower}]).to_string(),
        );
        assert_eq!(status, 200, "{answer}");
        assert!(answer.get("errors").is_none(), "{answer}");
        answer
    };
    // The MD5 matches the upper-case record.
    assert_eq!(sightings(&observe("md5")), 1);
    // The URL does not (URLs match exactly), whatever the MD5 lookup cached.
    assert_eq!(sightings(&observe("url")), 0);
    assert_eq!(otx.requests_to(&pulse_path(pulse)).len(), 2);
    // And each kind's answer is cached on its own.
    assert_eq!(sightings(&observe("md5")), 1);
    assert_eq!(sightings(&observe("url")), 0);
    assert_eq!(otx.requests_to(&pulse_path(pulse)).len(), 2);
}

#[test]
fn a_pulse_id_from_otx_reaches_the_warning_escaped() {
    let ip = "198.51.100.25";
    // OTX is not trusted to send clean ids: this one would forge a line
    // and clear an operator's terminal if it were printed raw.
    let forged = "5f01\u{1b}[2J\r\n2026-01-01T00:00:00Z WARN forged\u{8}";
    let serve = |otx: &FakeOtx| {
        otx.on(
            &general_path("IPv4", ip),
            Reply::json(general("IPv4", &[forged], &["IPv4"])),
        );
    };
    let body = json!([{"type": "ip", "value": ip}]).to_string();
    let run = check(serve, &[], OBSERVE, &body);
    assert_eq!(run.status, 200);
    let relay = &run.relay;
    assert!(relay.wait_log("5f01\\x1b[2J\\r\\n2026"), "{}", relay.logs());
    let stderr = relay.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\u{8}'),
        "{stderr:?}"
    );
    assert!(stderr.contains("5f01\\x1b[2J\\r\\n2026-01-01T00:00:00Z WARN forged\\x08"));
}
