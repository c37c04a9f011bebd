//! Tests of the harness itself, touching the relay only through endpoints
//! that exist from the start (`/version`, `/watchdog`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::support::*;
use otx_relay_harness::run_cli as run_cli_of;

const PATH: &str = "/api/v1/indicators/IPv4/1.2.3.4/general";
const PULSE_PATH: &str = "/api/v1/pulses/57204e9b3c4c3e015d93cb12/indicators";

/// The message of the panic `f` raises; fails the test if it does not panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload = panic::catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// GET `path` on the fake OTX; returns the status and the body (or the error
/// met while reading the body).
fn get(agent: &ureq::Agent, otx: &FakeOtx, path: &str) -> (u16, Result<String, ureq::Error>) {
    let mut response = agent
        .get(&format!("{}{path}", otx.url()))
        .header("X-OTX-API-KEY", KEY)
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string())
}

fn get_json(agent: &ureq::Agent, otx: &FakeOtx, path: &str) -> (u16, Value) {
    let (status, body) = get(agent, otx, path);
    let body = body.unwrap_or_else(|e| panic!("GET {path}: reading the body: {e}"));
    (status, serde_json::from_str(&body).expect("a JSON body"))
}

#[test]
fn version_answers_the_crate_version_and_sigterm_exits_zero() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    assert!(relay.logs().contains(" listening on http://127.0.0.1:"));
    assert_ne!(relay.addr().port(), 0);
    assert_eq!(relay.url(), format!("http://{}", relay.addr()));

    let (status, body) = relay.post("/version", None, "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"version": env!("CARGO_PKG_VERSION")}));
    assert!(otx.requests().is_empty(), "/version must not call OTX");

    assert_eq!(relay.terminate(), Some(0));
}

#[test]
fn watchdog_echoes_the_health_check_header() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    relay.forbid("a-secret-of-this-test-only");
    let (status, headers, body) = relay.request("GET", "/watchdog", &[("Health-Check", "ok")], b"");
    assert_eq!(status, 200);
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert!(
        content_type.is_some_and(|v| v.starts_with("application/json")),
        "Content-Type: {content_type:?}"
    );
    let body: Value = serde_json::from_slice(&body).expect("a JSON body");
    check_json(&body, &json!({"data": "ok"}));
    assert!(relay.wait_log("listening on"));
}

#[test]
fn jwt_is_three_base64url_segments_signed_with_hmac_sha256() {
    let payload = json!({"key": KEY, "CTR_ENTITIES_LIMIT": 5});
    let signed = jwt(SECRET, &payload);
    let segments: Vec<&str> = signed.split('.').collect();
    assert_eq!(segments.len(), 3, "{signed}");
    assert!(!signed.contains('='), "no padding: {signed}");

    let decode = |s: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url")).expect("JSON")
    };
    assert_eq!(decode(segments[0]), json!({"alg": "HS256", "typ": "JWT"}));
    assert_eq!(decode(segments[1]), payload);

    let signature = URL_SAFE_NO_PAD.decode(segments[2]).expect("base64url");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{}.{}", segments[0], segments[1]).as_bytes());
    mac.verify_slice(&signature).expect("signature verifies");

    let other = jwt_with_header(SECRET, json!({"alg": "none"}), &payload);
    assert_eq!(
        decode(other.split('.').next().unwrap()),
        json!({"alg": "none"})
    );
    assert!(jwt_unsigned(&json!({"alg": "none"}), &payload).ends_with('.'));
    assert_eq!(token(), jwt(SECRET, &json!({"key": KEY})));
}

#[test]
fn fake_otx_keeps_connections_alive_and_records_requests() {
    let otx = FakeOtx::start();
    otx.on(PATH, Reply::json(json!({"pulse_info": {"pulses": []}})));
    let agent = http_agent();

    let (status, body) = get_json(&agent, &otx, &format!("{PATH}?a=1&b=x%20y"));
    assert_eq!(status, 200);
    check_json(&body, &json!({"pulse_info": {"pulses": []}}));
    let (status, body) = get_json(
        &agent,
        &otx,
        "/api/v1/indicators/url/http:%2F%2Fa.b%2Fc%20d/general",
    );
    assert_eq!(status, 404);
    check_json(&body, &json!({"detail": "Not found."}));
    assert_eq!(
        otx.connections(),
        1,
        "both requests on one kept-alive connection"
    );

    let requests = otx.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, PATH);
    assert_eq!(requests[0].query, "a=1&b=x%20y");
    assert_eq!(requests[0].query_param("b").as_deref(), Some("x y"));
    assert_eq!(requests[0].query_param("c"), None);
    assert_eq!(requests[0].header("X-OTX-API-KEY"), Some(KEY));
    assert!(requests[0]
        .headers
        .iter()
        .all(|(k, _)| *k == k.to_ascii_lowercase()));
    assert_eq!(
        requests[1].path,
        "/api/v1/indicators/url/http:%2F%2Fa.b%2Fc%20d/general"
    );
    assert_eq!(requests[1].query, "");
    assert_eq!(otx.requests_to(PATH).len(), 1);

    otx.reset_log();
    assert!(otx.requests().is_empty());
    let (status, _) = get_json(&agent, &otx, PATH);
    assert_eq!(status, 200, "the programming survives reset_log");
}

#[test]
fn fake_otx_honours_connection_close() {
    let otx = FakeOtx::start();
    otx.on(
        PATH,
        Reply::json(json!({})).with_header("Connection", "close"),
    );
    let agent = http_agent();
    get_json(&agent, &otx, PATH);
    get_json(&agent, &otx, PATH);
    assert_eq!(otx.connections(), 2);
}

#[test]
fn fake_otx_serves_sequences_in_order_then_repeats_the_last() {
    let otx = FakeOtx::start();
    otx.on_seq(
        PATH,
        vec![
            Reply::status(503),
            Reply::status(429).with_header("Retry-After", "1"),
            Reply::file("general-ipv4.json"),
        ],
    );
    let agent = http_agent();
    let statuses: Vec<u16> = (0..4).map(|_| get_json(&agent, &otx, PATH).0).collect();
    assert_eq!(statuses, [503, 429, 200, 200]);
    assert_eq!(otx.requests_to(PATH).len(), 4);
    let (_, body) = get_json(&agent, &otx, PATH);
    assert_eq!(body, sample("general-ipv4.json"));

    otx.on(PATH, Reply::raw(599, b"{}"));
    let response = agent
        .get(&format!("{}{PATH}", otx.url()))
        .call()
        .expect("an answer");
    assert_eq!(
        response.status().as_u16(),
        599,
        "on() replaces the sequence"
    );
}

#[test]
fn fake_otx_page_programming_takes_precedence() {
    let otx = FakeOtx::start();
    otx.on_page(PULSE_PATH, 2, Reply::file("pulse-indicators-page2.json"));
    otx.on(PULSE_PATH, Reply::json(json!({"plain": true})));
    let agent = http_agent();

    let (_, page2) = get_json(
        &agent,
        &otx,
        &format!("{PULSE_PATH}?sort=-created&limit=10&page=2"),
    );
    assert_eq!(page2, sample("pulse-indicators-page2.json"));
    let (_, page1) = get_json(
        &agent,
        &otx,
        &format!("{PULSE_PATH}?sort=-created&limit=10&page=1"),
    );
    check_json(&page1, &json!({"plain": true}));
    let (_, no_page) = get_json(&agent, &otx, PULSE_PATH);
    check_json(&no_page, &json!({"plain": true}));
}

#[test]
fn fake_otx_faults_break_the_exchange() {
    let otx = FakeOtx::start();
    let big = json!({"results": vec!["x".repeat(100); 100]});
    otx.on(
        "/truncate",
        Reply::json(big.clone()).with_fault(Fault::TruncateBody),
    );
    otx.on(
        "/reset-mid",
        Reply::json(big).with_fault(Fault::ResetMidBody),
    );
    otx.on(
        "/close",
        Reply::json(json!({})).with_fault(Fault::CloseBeforeHead),
    );
    otx.on(
        "/reset",
        Reply::json(json!({})).with_fault(Fault::ResetBeforeHead),
    );
    let agent = http_agent();

    for path in ["/truncate", "/reset-mid"] {
        let (status, body) = get(&agent, &otx, path);
        assert_eq!(status, 200, "{path}: the head arrives");
        assert!(body.is_err(), "{path}: reading the body must fail");
    }
    for path in ["/close", "/reset"] {
        let result = agent.get(&format!("{}{path}", otx.url())).call();
        assert!(result.is_err(), "{path}: no answer expected");
        assert!(
            !otx.requests_to(path).is_empty(),
            "{path}: recorded before the fault"
        );
    }
}

/// What a raw client reads after sending one request: `Ok(bytes)` up to EOF,
/// or the error that ended the read.
fn raw_exchange(otx: &FakeOtx, path: &str) -> Result<Vec<u8>, std::io::ErrorKind> {
    let mut stream = TcpStream::connect(otx.addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: otx\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .map(|_| received)
        .map_err(|e| e.kind())
}

#[test]
fn fake_otx_faults_close_with_fin_or_rst() {
    let otx = FakeOtx::start();
    let body = json!({"results": vec!["x".repeat(100); 10]}).to_string();
    let reply = Reply::raw(200, body.as_bytes());
    otx.on("/close", reply.clone().with_fault(Fault::CloseBeforeHead));
    otx.on("/reset", reply.clone().with_fault(Fault::ResetBeforeHead));
    otx.on("/truncate", reply.clone().with_fault(Fault::TruncateBody));
    otx.on("/reset-mid", reply.with_fault(Fault::ResetMidBody));

    assert_eq!(raw_exchange(&otx, "/close"), Ok(Vec::new()));
    assert_eq!(
        raw_exchange(&otx, "/reset"),
        Err(std::io::ErrorKind::ConnectionReset)
    );
    let truncated = raw_exchange(&otx, "/truncate").expect("a FIN after half the body");
    let text = String::from_utf8(truncated).expect("text");
    let (head, sent) = text.split_once("\r\n\r\n").expect("a complete head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert_eq!(sent, &body[..body.len() / 2]);
    assert_eq!(
        raw_exchange(&otx, "/reset-mid"),
        Err(std::io::ErrorKind::ConnectionReset)
    );
}

#[test]
fn fake_otx_writes_unknown_statuses_with_an_empty_reason() {
    let otx = FakeOtx::start();
    otx.on("/odd", Reply::raw(599, b"{}"));
    otx.on(
        "/custom",
        Reply {
            reason: Some("Oh No".into()),
            ..Reply::status(500)
        },
    );
    let odd = raw_exchange(&otx, "/odd").expect("an answer");
    assert!(odd.starts_with(b"HTTP/1.1 599 \r\n"));
    let custom = raw_exchange(&otx, "/custom").expect("an answer");
    assert!(custom.starts_with(b"HTTP/1.1 500 Oh No\r\n"));
}

#[test]
fn fake_otx_delays_the_answer() {
    let otx = FakeOtx::start();
    otx.on(
        PATH,
        Reply::json(json!({})).with_head_delay(Duration::from_millis(1500)),
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(Duration::from_millis(300)))
        .build()
        .into();
    assert!(agent.get(&format!("{}{PATH}", otx.url())).call().is_err());
    assert_eq!(otx.requests_to(PATH).len(), 1, "recorded before the delay");
    // The client gave up and closed: the wait ends, and the connection with it.
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        otx.open_connections() == 0
    });
    assert!(
        gone,
        "the fake still holds the connection of a client that left"
    );
    assert_eq!(otx.take_max_in_flight(), 1);
    assert_eq!(
        otx.take_max_in_flight(),
        0,
        "nothing in flight once it left"
    );
}

#[test]
fn fake_otx_counts_a_request_in_flight_until_its_answer_is_written() {
    let otx = FakeOtx::start();
    let slow_body = Reply {
        body_delay: Duration::from_secs(1),
        ..Reply::json(json!({}))
    };
    otx.on(PATH, slow_body);
    let agent = http_agent();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert_eq!(get(&agent, &otx, PATH).0, 200));
        }
    });
    assert_eq!(
        otx.take_max_in_flight(),
        4,
        "the four bodies were late at once"
    );
}

#[test]
fn fake_otx_refuses_a_request_line_without_a_target() {
    let otx = FakeOtx::start();
    let answer = raw_exchange(&otx, "").expect("an answer");
    assert!(answer.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    assert!(otx.requests().is_empty(), "nothing recorded");
}

#[test]
fn a_refused_port_refuses_and_cannot_be_taken() {
    let refused = RefusedPort::bind();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], refused.port()));
    let kind = TcpStream::connect(addr).map(drop).map_err(|e| e.kind());
    assert_eq!(kind, Err(std::io::ErrorKind::ConnectionRefused));
    assert!(TcpListener::bind(addr).is_err(), "the port stays taken");
}

#[test]
fn run_cli_fails_on_a_command_that_cannot_start_or_hangs() {
    let missing = panic_message(|| drop(run_cli_of("/nonexistent/otx-relay", &[], &[])));
    assert!(missing.contains("cannot start"), "{missing}");
    // It ignores SIGTERM, so `timeout` has to kill it (and itself).
    let stubborn = ["-c", "trap '' TERM; echo started; sleep 30"];
    let hung = panic_message(|| drop(run_cli_of("/bin/sh", &stubborn, &[])));
    assert!(hung.contains("did not exit within 10 s"), "{hung}");
    assert!(hung.contains("started"), "with its output: {hung}");
}

#[test]
fn the_relay_under_test_inherits_none_of_its_variables() {
    // Every upper-case string of src/config.rs is a variable the relay reads.
    let config = include_str!("../../src/config.rs");
    let name = |s: &&str| s.len() > 2 && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    let names: BTreeSet<&str> = config.split('"').skip(1).step_by(2).filter(name).collect();
    assert!(names.contains("REDIS_URL") && names.len() > 20, "{names:?}");
    let inherited: Vec<&&str> = names.iter().filter(|n| !is_relay_variable(n)).collect();
    assert!(
        inherited.is_empty(),
        "RelayCommand passes these on: {inherited:?}"
    );
    assert!(is_relay_variable("redis_url") && !is_relay_variable("PATH"));
}

/// An answer after a 100, in chunks with an extension and a trailer.
const CHUNKED: &str = "HTTP/1.1 100 Continue\r\n\r\n\
    HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
    3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";
const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// 3 bytes of the 10 announced.
const CUT_SHORT: &str = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";

/// Accepts a connection and writes `answers` on it, one a request head,
/// then closes it.
fn answer_raw(listener: &TcpListener, answers: &[&str]) {
    let (mut stream, _) = listener.accept().expect("a connection");
    let mut reader = BufReader::new(stream.try_clone().expect("a second handle"));
    for answer in answers {
        let mut line = String::new();
        while reader.read_line(&mut line).expect("a request line") > 2 {
            line.clear();
        }
        stream.write_all(answer.as_bytes()).expect("write");
    }
}

#[test]
fn client_reads_chunks_skips_1xx_and_asks_again_only_when_a_kept_connection_gave_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("an address");
    let (closed, has_closed) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        answer_raw(&listener, &[CHUNKED, NO_CONTENT]);
        closed.send(()).expect("the test waits");
        // The second request is taken, and the connection closed unanswered.
        answer_raw(&listener, &[OK, ""]);
        answer_raw(&listener, &[OK]);
        answer_raw(&listener, &[CUT_SHORT]);
        listener.set_nonblocking(true).expect("non-blocking");
        std::thread::sleep(Duration::from_millis(300));
        listener.accept().is_ok()
    });
    // A body read up to the close would wait for the server, which waits for
    // the next request on the same connection.
    let mut client = Client::new(addr).timeout(Duration::from_secs(5));
    let first = client.send("GET", "/a", &[], b"").expect("an answer");
    assert_eq!((first.status, first.text().as_str()), (200, "abcde"));
    let second = client
        .send("GET", "/b", &[], b"")
        .expect("on the same connection");
    assert_eq!((second.status, second.resent), (204, false));
    has_closed.recv().expect("the server closed");
    std::thread::sleep(Duration::from_millis(50));
    let third = client
        .send("GET", "/c", &[], b"")
        .expect("on a new connection: the kept one was closed");
    assert_eq!((third.status, third.text().as_str()), (200, "ok"));
    assert!(!third.resent, "its close was seen before it went out");
    let fourth = client.send("GET", "/d", &[], b"").expect("sent again");
    assert_eq!((fourth.status, fourth.resent), (200, true));
    std::thread::sleep(Duration::from_millis(50)); // the server closes that one too
    let cut = client.send("GET", "/e", &[], b"");
    assert!(cut.is_err(), "cut short: {cut:?}");
    let asked_again = server.join().expect("the server");
    assert!(!asked_again, "an answer cut short is not asked again");
}

#[test]
fn client_refuses_bytes_after_an_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("an address");
    let extra = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n";
    let server = std::thread::spawn(move || answer_raw(&listener, &[extra, OK]));
    let mut client = Client::new(addr).timeout(Duration::from_secs(5));
    assert_eq!(
        client.send("GET", "/", &[], b"").expect("an answer").status,
        200
    );
    std::thread::sleep(Duration::from_millis(50));
    let next = client.send("GET", "/", &[], b"");
    let error = next.expect_err("the CRLF after the body");
    assert!(
        error.to_string().contains("2 bytes after the last answer"),
        "{error}"
    );
    drop(client);
    let _ = server.join();
}

#[test]
fn client_refuses_framing_errors_and_a_server_that_does_not_close() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("an address");
    let bad = [
        "\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 2\r\n\r\nok",
    ];
    let server = std::thread::spawn(move || {
        bad.iter()
            .for_each(|answer| answer_raw(&listener, &[answer]));
        // Asked to close, it answers and keeps the connection open.
        let (mut stream, _) = listener.accept().expect("a connection");
        let mut reader = BufReader::new(stream.try_clone().expect("a second handle"));
        let mut line = String::new();
        while reader.read_line(&mut line).expect("a request line") > 2 {
            line.clear();
        }
        stream.write_all(OK.as_bytes()).expect("write");
        std::thread::sleep(Duration::from_secs(1));
    });
    for answer in bad {
        let mut client = Client::new(addr).timeout(Duration::from_secs(5));
        let error = client.send("GET", "/", &[], b"");
        assert!(error.is_err(), "accepted {answer:?}: {error:?}");
    }
    let mut client = Client::new(addr).timeout(Duration::from_millis(300));
    let kept_open = client.send("GET", "/", &[("Connection", "close")], b"");
    let error = kept_open.expect_err("the server must close");
    assert!(
        error.to_string().contains("no close after the answer"),
        "{error}"
    );
    server.join().expect("the server");
}

#[test]
fn client_refuses_a_chunk_not_followed_by_crlf() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("an address");
    // Read without its check, "XY" would pass for the chunk's CRLF.
    let bad = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n";
    let server = std::thread::spawn(move || answer_raw(&listener, &[bad]));
    let mut client = Client::new(addr).timeout(Duration::from_secs(5));
    assert!(client.send("GET", "/", &[], b"").is_err());
    server.join().expect("the server");
}

#[test]
fn check_json_matches_placeholders() {
    let actual = json!({
        "id": "transient:sighting-0c2f3b5e-2f0d-4c4a-9a53-7b1c4f6e2d10",
        "uuid": "0c2f3b5e-2f0d-4c4a-9a53-7b1c4f6e2d10",
        "time": "2024-01-31T23:59:59.123Z",
        "message": "Something went wrong. Reason: 500 Internal Server Error.",
        "whatever": [1, {"x": null}],
        "count": 1,
    });
    check_json(
        &actual,
        &json!({
            "id": "<<prefix:transient:sighting->>",
            "uuid": "<<uuid>>",
            "time": "<<time>>",
            "message": "<<re:Something went wrong\\. Reason: \\d{3}( [A-Za-z ]+)?\\.>>",
            "whatever": "<<any>>",
            "count": 1,
        }),
    );
}

#[test]
fn check_json_reports_the_path_of_the_first_difference() {
    let actual = json!({"data": {"docs": [{"id": "a"}, {"id": "B"}]}});
    let message = panic_message(|| {
        check_json(
            &actual,
            &json!({"data": {"docs": [{"id": "a"}, {"id": "<<uuid>>"}]}}),
        )
    });
    assert!(message.contains("at $.data.docs[1].id:"), "{message}");

    let message = panic_message(|| check_json(&actual, &json!({"data": {}})));
    assert!(
        message.contains("at $.data.docs: unexpected key"),
        "{message}"
    );

    let message = panic_message(|| check_json(&json!({}), &json!({"a-b": 1})));
    assert!(message.contains("at $[\"a-b\"]: missing"), "{message}");

    let message = panic_message(|| check_json(&json!({"n": 2}), &json!({"n": 1.0})));
    assert!(
        message.contains("at $.n: expected 1.0, found 2"),
        "{message}"
    );
    // Exact: CTIM's readers tell an integer from a float (`count 1`, not 1.0).
    let message = panic_message(|| check_json(&json!({"n": 1}), &json!({"n": 1.0})));
    assert!(
        message.contains("at $.n: expected 1.0, found 1"),
        "{message}"
    );

    let message = panic_message(|| check_json(&json!([1, 2]), &json!([1])));
    assert!(
        message.contains("at $: expected an array of 1 items, found 2"),
        "{message}"
    );
}

#[test]
fn tiny_regex_covers_its_subset() {
    assert!(regex_full_match("a(b|cd)*e?", "abcdb"));
    assert!(!regex_full_match("a(b|cd)*e?", "abcdbx"));
    assert!(regex_full_match("[^a-c]{2,3}", "xyz"));
    assert!(!regex_full_match("[^a-c]{2,3}", "xaz"));
    assert!(regex_full_match("\\w+@[a-z.-]+", "tr_1@a-b.c"));
    assert!(regex_full_match("(a*)*b", "aab"));
    assert!(!regex_full_match("a+", ""));
    assert!(regex_full_match(".*", ""));
}

#[test]
fn secret_check_names_the_secret_and_line_without_showing_it() {
    let logs = format!("start\nPOST /health 200 key={KEY}\n");
    let message = find_secret(&logs, &[]).expect("the key is found");
    assert!(
        message.contains("secret KEY") && message.contains("line 2"),
        "{message}"
    );
    assert!(!message.contains(KEY), "{message}");

    let extra = vec!["s3cr3t".to_string()];
    let message =
        find_secret(&format!("x\ny\nsaw s3cr3t and {}\n", token()), &extra).expect("found");
    assert!(message.contains("line 3"), "{message}");
    assert!(
        !message.contains("s3cr3t") && !message.contains(&token()),
        "{message}"
    );
    assert!(find_secret("nothing here\n", &extra).is_none());

    // The token's payload is the key in base64: a leak too, and so is its signature.
    let token = token();
    let [_, payload, signature] = [0, 1, 2].map(|i| token.split('.').nth(i).unwrap_or_default());
    let message = find_secret(&format!("payload {payload}\n"), &[]).expect("found");
    assert!(message.contains("secret token()'s payload"), "{message}");
    let message = find_secret(&format!("sig={signature}\n"), &[]).expect("found");
    assert!(message.contains("secret token()'s signature"), "{message}");
    let shown = redact(&format!("{token} {KEY} {payload} s3cr3t"), &extra);
    let hidden = "<token()> <KEY> <token()'s payload> <forbid #0>";
    assert_eq!(shown, hidden);
}

#[test]
fn a_relay_whose_output_holds_a_forbidden_string_fails_when_dropped_quiet_or_not() {
    let otx = FakeOtx::start();
    for quiet in [false, true] {
        let mut command = RelayCommand::new(BIN, &otx.url());
        if quiet {
            command = command.quiet();
        }
        let relay = command.start().unwrap_or_else(|e| panic!("{e}"));
        relay.forbid("harness-canary");
        relay.request("GET", "/harness-canary", &[], b"");
        assert!(
            relay.wait_log("/harness-canary"),
            "quiet {quiet}: the line is kept"
        );
        let message = panic_message(|| drop(relay));
        assert!(
            message.contains("secret forbid #0"),
            "quiet {quiet}: {message}"
        );
        assert!(!message.contains("harness-canary"), "{message}");
    }
}

/// `make demo`'s sequence, with its secret, observables and tile read from
/// the Makefile, against the same synthetic OTX (`fake-otx --demo` serves
/// `Synth::demo`) and a token minted as it mints one: the demo keeps
/// showing what the README says it shows.
#[test]
fn make_demo_shows_sightings_a_malicious_verdict_malware_and_busy_tiles() {
    let makefile = include_str!("../../Makefile");
    let variable = |name: &str| {
        let value = makefile.lines().find_map(|line| {
            let (left, right) = line.split_once(":=")?;
            (left.trim() == name).then(|| right.trim())
        });
        value.unwrap_or_else(|| panic!("no `{name} :=` in the Makefile"))
    };
    let secret = variable("DEMO_SECRET");
    let otx = FakeOtx::start();
    Synth::demo().serve(&otx);
    let relay = Relay::start(&otx, &[("SECRET_KEY", secret)]);
    relay.forbid(secret);
    let minted = run_cli(&["token", "--key", "demo"], &[("SECRET_KEY", secret)]);
    assert_eq!(minted.code, Some(0), "otx-relay token: {}", minted.stderr);
    let auth = bearer(minted.stdout.trim());
    relay.forbid(minted.stdout.trim());

    let observables = variable("DEMO_OBSERVABLES");
    let (status, observed) = relay.post("/observe/observables", Some(&auth), observables);
    assert_eq!(status, 200, "{observed}");
    let data = &observed["data"];
    assert!(observed.get("errors").is_none(), "{observed}");
    let asked = serde_json::from_str::<Value>(observables).expect("DEMO_OBSERVABLES is JSON");
    let asked = asked.as_array().map_or(0, Vec::len) as u64;
    let count = |kind: &str| data[kind]["count"].as_u64().unwrap_or(0);
    assert!(
        count("sightings") >= 2 * asked,
        "several sightings each: {data}"
    );
    for kind in ["indicators", "relationships", "malwares", "attack_patterns"] {
        assert!(count(kind) > 0, "{kind}: {data}");
    }
    assert_eq!(count("verdicts"), asked, "{data}");
    let verdicts = data["verdicts"]["docs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for verdict in verdicts {
        assert_eq!(verdict["disposition_name"], "Malicious", "{verdict}");
    }

    let (status, tile) = relay.post("/tiles/tile-data", Some(&auth), variable("DEMO_TILE"));
    assert_eq!(status, 200, "{tile}");
    let metrics = tile["data"]["data"].as_array().cloned().unwrap_or_default();
    let labels: Vec<&str> = metrics.iter().filter_map(|m| m["label"].as_str()).collect();
    let expected = ["Pulses", "Indicators", "Adversaries", "Malware families"];
    assert_eq!(labels, expected, "{tile}");
    for metric in &metrics {
        assert!(metric["value"].as_u64() > Some(0), "{metric}");
    }
}
