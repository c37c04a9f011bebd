//! The relay's HTTP framing as an attacker sees it (SPEC §8), spoken in raw
//! bytes over TCP: strict framing (400 and close for anything ambiguous),
//! 431 for big heads, the connection closed after a body left unread,
//! `Upgrade` ignored, total deadlines on head and body, no worker ever held
//! by a slow client, no panic when a client vanishes, and log lines that
//! stay one line whatever a client sends.
//!
//! Every framing case hides a second request (`SMUGGLED`) in what follows
//! the head: it must never be answered.
//!
//! Beside it: [`slow_clients`] (no worker held by a slow client) and
//! [`panic_guard`] (a panicking handler answers a JSON 500).

mod panic_guard;
mod slow_clients;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::support::{check_version_answers, FakeOtx, Relay, StartRelay};

/// A complete request for `/version`, as a smuggler would hide it.
const SMUGGLED: &str = "POST /version HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";

fn connect(relay: &Relay) -> TcpStream {
    let stream = TcpStream::connect(relay.addr()).expect("connect to the relay");
    // Far below the relay's default 10 s client timeout: a connection the
    // relay keeps open is seen as a read that times out.
    stream
        .set_read_timeout(Some(Duration::from_secs(4)))
        .expect("read timeout");
    stream
}

/// What the relay sent until it closed the connection, and whether it did
/// close it (rather than keep it open past the read timeout).
fn read_all(stream: &mut TcpStream) -> (String, bool) {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

/// Sends `bytes` on a fresh connection; returns everything answered and
/// whether the relay closed the connection.
fn exchange(relay: &Relay, bytes: &[u8]) -> (String, bool) {
    let mut stream = connect(relay);
    // The relay may close while this is still being written.
    let _ = stream.write_all(bytes);
    read_all(&mut stream)
}

/// `bytes` is answered with exactly one response of `status`, the
/// connection is closed after it, and nothing hidden behind it is served.
#[track_caller]
fn check_refused(relay: &Relay, bytes: &[u8], status: u16) {
    let (answer, closed) = exchange(relay, bytes);
    let shown = String::from_utf8_lossy(bytes);
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "{shown:?} was answered {answer:?}, not {status}"
    );
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "{shown:?}: more than one answer: {answer:?}"
    );
    assert!(
        !answer.contains("\"version\""),
        "{shown:?}: the hidden request was served: {answer:?}"
    );
    assert!(
        closed,
        "{shown:?}: the connection was kept open after {status}"
    );
}

#[test]
fn ambiguous_framing_is_400_and_closed_and_what_follows_is_never_read() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let framed = |headers: &str, body: &str| {
        format!("POST /refer/observables HTTP/1.1\r\nHost: x\r\n{headers}\r\n{body}{SMUGGLED}")
    };
    let cases = [
        // Both lengths: which one a proxy in front believed is unknowable.
        framed(
            "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        framed(
            "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
            "0\r\n\r\n",
        ),
        // Transfer codings other than exactly `chunked`.
        framed("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
        framed("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
        framed("Transfer-Encoding: identity\r\n", ""),
        framed("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
        framed(
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        ),
        // Several or unparsable lengths.
        framed("Content-Length: 2\r\nContent-Length: 0\r\n", "[]"),
        framed("Content-Length: 2\r\nContent-Length: 2\r\n", "[]"),
        framed("Content-Length: abc\r\n", ""),
        framed("Content-Length: -1\r\n", ""),
        framed("Content-Length: +2\r\n", "[]"),
        framed("Content-Length: 1, 1\r\n", "["),
        framed("Content-Length: 0x2\r\n", "[]"),
        framed("Content-Length: 2 2\r\n", "[]"),
        framed("Content-Length:\r\n", ""),
        framed("Content-Length: 12345678901234567890123\r\n", ""),
        // Header syntax that proxies read differently.
        framed("Content-Length : 2\r\n", "[]"),
        framed("X-Folded: a\r\n Content-Length: 2\r\n", "[]"),
        framed("X-Ctl: a\x01b\r\n", ""),
        framed("X-Ctl: a\x1b[2Jb\r\n", ""),
        framed("X-Cr: a\rContent-Length: 2\r\n", "[]"),
        framed("NoColon\r\n", ""),
        framed(": no-name\r\n", ""),
        // A bare LF anywhere in the head.
        format!("POST /refer/observables HTTP/1.1\nHost: x\nContent-Length: 2\n\n[]{SMUGGLED}"),
        format!("POST /refer/observables HTTP/1.1\r\nHost: x\nContent-Length: 2\r\n\r\n[]{SMUGGLED}"),
        // A chunked body in HTTP/1.0, which has no chunked coding.
        format!(
            "POST /refer/observables HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
        ),
        // Request lines that are not `method SP target SP version`.
        format!("POST  /version HTTP/1.1\r\nHost: x\r\n\r\n{SMUGGLED}"),
        format!("POST /version HTTP/1.1 x\r\nHost: x\r\n\r\n{SMUGGLED}"),
        format!("POST /ver\x1bsion HTTP/1.1\r\nHost: x\r\n\r\n{SMUGGLED}"),
        format!("PO\x08ST /version HTTP/1.1\r\nHost: x\r\n\r\n{SMUGGLED}"),
        format!("POST /version HTTP/9\r\nHost: x\r\n\r\n{SMUGGLED}"),
    ];
    for case in &cases {
        check_refused(&relay, case.as_bytes(), 400);
    }
    // Malformed chunked bodies: bad sizes, missing CRLFs, an overflowing size.
    for body in [
        "zz\r\n[]\r\n0\r\n\r\n",
        "2\r\n[]0\r\n\r\n",
        "2\n[]\r\n0\r\n\r\n",
        "-2\r\n[]\r\n0\r\n\r\n",
        "fffffffffffffffffffff\r\n[]\r\n0\r\n\r\n",
        "\r\n[]\r\n0\r\n\r\n",
    ] {
        let request = format!(
            "POST /refer/observables HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}{SMUGGLED}"
        );
        check_refused(&relay, request.as_bytes(), 400);
    }
    check_version_answers(&relay);
}

#[test]
fn an_http_1_1_request_without_exactly_one_host_is_400_and_closed() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    for (head, why) in [
        (
            "POST /version HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "no Host header",
        ),
        (
            "POST /version HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 0\r\n\r\n",
            "several Host headers",
        ),
        (
            "POST /version HTTP/1.1\r\nHost: a\r\nhost: a\r\nContent-Length: 0\r\n\r\n",
            "several Host headers",
        ),
    ] {
        let bytes = format!("{head}{SMUGGLED}");
        check_refused(&relay, bytes.as_bytes(), 400);
        let (answer, _) = exchange(&relay, bytes.as_bytes());
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let expected = format!(
            r#"{{"errors":[{{"code":"bad request","message":"The request is not valid HTTP/1.1: {why}.","type":"fatal"}}]}}"#
        );
        assert_eq!(body, expected, "{head:?}");
    }
    // HTTP/1.0 needs no Host; an empty one is a Host.
    for head in [
        "POST /version HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        "POST /version HTTP/1.1\r\nHost:\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ] {
        let (answer, _) = exchange(&relay, head.as_bytes());
        let served = answer.starts_with("HTTP/1.1 200 ") || answer.starts_with("HTTP/1.0 200 ");
        assert!(
            served && answer.contains("\"version\""),
            "{head:?}: {answer}"
        );
    }
}

#[test]
fn heads_over_16_kib_or_128_lines_are_431_and_closed() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let long_line = format!(
        "POST /version HTTP/1.1\r\nX-Big: {}\r\n\r\n{SMUGGLED}",
        "a".repeat(17 * 1024)
    );
    let many_small = format!(
        "POST /version HTTP/1.1\r\n{}\r\n{SMUGGLED}",
        format!("X-Line: {}\r\n", "b".repeat(200)).repeat(90)
    );
    let many_lines = format!(
        "POST /version HTTP/1.1\r\n{}\r\n{SMUGGLED}",
        "X-N: 1\r\n".repeat(128)
    );
    let long_target = format!(
        "POST /{} HTTP/1.1\r\nHost: x\r\n\r\n{SMUGGLED}",
        "v".repeat(17 * 1024)
    );
    for head in [long_line, many_small, many_lines, long_target] {
        check_refused(&relay, head.as_bytes(), 431);
    }
    // Just inside both limits: served.
    let inside = format!(
        "POST /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n",
        "X-N: 1\r\n".repeat(125)
    );
    let (answer, closed) = exchange(&relay, inside.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(closed);
    check_version_answers(&relay);
}

#[test]
fn a_413_closes_the_connection_and_the_bytes_after_it_are_never_a_request() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    // Sized: announced over 1 MiB, the "body" is a request.
    let sized = format!(
        "POST /refer/observables HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n{SMUGGLED}"
    );
    check_refused(&relay, sized.as_bytes(), 413);
    // Chunked: a chunk that takes the body past 1 MiB, then a request.
    let chunked = format!(
        "POST /refer/observables HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n{SMUGGLED}"
    );
    check_refused(&relay, chunked.as_bytes(), 413);
    // Chunked, many small chunks adding up past 1 MiB.
    let mut many = String::from(
        "POST /refer/observables HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for _ in 0..65 {
        many.push_str(&format!("4000\r\n{}\r\n", " ".repeat(0x4000)));
    }
    many.push_str(SMUGGLED);
    check_refused(&relay, many.as_bytes(), 413);
    // The 413 carries its JSON error.
    let (answer, _) = exchange(&relay, sized.as_bytes());
    assert!(
        answer.contains("The request body is larger than 1 MiB."),
        "{answer}"
    );
    check_version_answers(&relay);
}

#[test]
fn chunked_bodies_with_extensions_and_trailers_are_served_and_keep_alive_holds() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let body = r#"[{"type":"ip","value":"1.2.3.4"}]"#;
    let (first, second) = body.split_at(10);
    let request = format!(
        "POST /refer/observables HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n\
         {:x};name=value\r\n{first}\r\n{:X}\r\n{second}\r\n0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n\
         POST /version HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        first.len(),
        second.len()
    );
    let (answer, closed) = exchange(&relay, request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        answer.contains("ref-avotx-search-ip-1.2.3.4"),
        "the chunked body was not read: {answer}"
    );
    // The request after the trailers is the next request, answered second.
    assert_eq!(answer.matches("HTTP/1.1 200 ").count(), 2, "{answer}");
    assert!(answer.trim_end().ends_with(&format!(
        "{{\"version\":\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(closed);
}

#[test]
fn upgrade_is_not_honoured_the_body_is_framed_as_usual() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let body = r#"[{"type":"domain","value":"example.com"}]"#;
    let request = format!(
        "POST /refer/observables HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = connect(&relay);
    stream.write_all(request.as_bytes()).expect("a request");
    // Answered at once, with the socket still open: the relay did not take
    // the rest of the connection as the body.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let started = Instant::now();
    while !String::from_utf8_lossy(&answer).contains("ref-avotx-search-domain-example.com") {
        let n = stream
            .read(&mut chunk)
            .expect("the upgrade request answered without waiting for the socket's end");
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
        assert!(started.elapsed() < Duration::from_secs(4));
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    // (Not "101" anywhere: the refer link holds the fake's port, 43101 say.)
    assert!(!answer.contains("HTTP/1.1 101"), "{answer}");
}

#[test]
fn pipelined_requests_and_100_continue_are_answered_in_order() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let body = r#"[{"type":"ip","value":"9.9.9.9"}]"#;
    let request = format!(
        "POST /version HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n\
         POST /refer/observables HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}\
         POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]\
         POST /version HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (answer, closed) = exchange(&relay, request.as_bytes());
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answer[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "200", "404", "200"], "{answer}");
    assert!(closed);

    let mut stream = connect(&relay);
    stream
        .write_all(
            format!(
                "POST /refer/observables HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\
                 Connection: close\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .expect("a head");
    let mut interim = [0u8; 25];
    stream
        .read_exact(&mut interim)
        .expect("100 Continue before the body is sent");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).expect("the body");
    let (answer, _) = read_all(&mut stream);
    assert!(answer.contains("ref-avotx-search-ip-9.9.9.9"), "{answer}");
}

#[test]
fn stalled_bodies_and_upgrades_never_delay_a_prompt_request() {
    let otx = FakeOtx::start();
    // Eight workers, and three times as many clients that send a head and
    // then stall their body (for the default 10 s client timeout), plus
    // upgrade requests that never send anything more.
    let relay = Relay::start(&otx, &[("RELAY_THREADS", "8")]);
    let mut stalled = Vec::new();
    for i in 0..24 {
        let mut s = connect(&relay);
        let head = if i % 2 == 0 {
            "POST /refer/observables HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n[{\"type\":"
        } else {
            "POST /refer/observables HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n[{"
        };
        s.write_all(head.as_bytes())
            .expect("a head and part of a body");
        stalled.push(s);
    }
    for _ in 0..8 {
        let mut s = connect(&relay);
        s.write_all(
            b"GET /watchdog HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nHealth-Check: up\r\n\r\n",
        )
        .expect("an upgrade request");
        stalled.push(s);
    }
    // Let the relay take every one of them first.
    thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let started = Instant::now();
        check_version_answers(&relay);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "a prompt /version waited {took:?} behind stalled clients"
        );
    }
    drop(stalled);
}

/// Sends `first` at once, then `trickle` one byte every 250 ms (each read
/// well within the 2 s client timeout, the whole far beyond it; bounded: it
/// stops once the relay closes), and checks that the relay cuts the
/// connection off near the 2 s timeout without serving anything.
#[track_caller]
fn check_trickle_cut_off(first: &str, trickle: String) {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[("RELAY_CLIENT_TIMEOUT", "2")]);
    let mut stream = connect(&relay);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream
        .write_all(first.as_bytes())
        .expect("what comes at once");
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        thread::spawn(move || {
            for byte in trickle.bytes() {
                if stream.write_all(&[byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let started = Instant::now();
    let (answer, closed) = read_all(&mut stream);
    let took = started.elapsed();
    assert!(closed, "the trickling client was never cut off");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "cut off after {took:?}, not near the 2 s client timeout"
    );
    assert!(!answer.contains("\"version\""), "{answer}");
    assert!(!answer.contains("ref-avotx"), "{answer}");
    let _ = stream.shutdown(Shutdown::Both);
    let _ = writer.join();
    check_version_answers(&relay);
}

#[test]
fn a_head_trickled_byte_by_byte_is_cut_off_at_the_client_timeout() {
    check_trickle_cut_off(
        "",
        format!(
            "POST /version HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
            "p".repeat(100)
        ),
    );
}

#[test]
fn a_body_trickled_byte_by_byte_is_cut_off_at_the_client_timeout() {
    check_trickle_cut_off(
        "POST /refer/observables HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
        " ".repeat(100),
    );
}

#[test]
fn clients_that_reset_after_their_head_cause_no_panic_and_at_most_a_short_line() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    for i in 0..100 {
        let mut s = TcpStream::connect(relay.addr()).expect("connect");
        let head = if i % 2 == 0 {
            "POST /refer/observables HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n[{"
        } else {
            "POST /version HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        };
        let _ = s.write_all(head.as_bytes());
        // Linger 0: closing sends a reset instead of a FIN.
        SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER");
        drop(s);
    }
    thread::sleep(Duration::from_millis(500));
    check_version_answers(&relay);
    let stderr = relay.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.lines().count() <= 100, "{stderr}");
    for line in stderr.lines() {
        assert!(
            line.len() < 200,
            "a long line for a vanished client: {line}"
        );
    }
}

#[test]
fn control_characters_never_reach_a_log_line_raw() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    for request in [
        "POST /ver\x1b[31msion\rFAKE 200\x08\x08 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "P\x1bOST /version HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "POST /a\nGET /forged 200 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
    ] {
        let (answer, _) = exchange(&relay, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    }
    // Each refused request is logged, escaped, on a line of its own (its
    // line is written once its answer is out: wait for it).
    for line in [
        "POST /ver\\x1b[31msion\\rFAKE 200\\x08\\x08 400",
        "P\\x1bOST /version 400",
    ] {
        assert!(relay.wait_log(line), "no line {line:?}: {}", relay.stdout());
    }
    check_version_answers(&relay);
    assert!(relay.wait_log("POST /version 200"));
    for line in relay.stdout().lines() {
        assert!(
            !line.bytes().any(|b| b.is_ascii_control()),
            "a raw control character in {line:?}"
        );
        assert!(!line.contains("/forged"), "a forged line: {line:?}");
    }
}
