//! Anonymous clients that mean harm (SPEC §8, "anonymous clients are
//! assumed hostile"), spoken in raw TCP: clients that read their answers
//! slowly or not at all hold no worker, a connection pipelining requests it
//! never reads grows nothing, connections are bounded, and running out of
//! file descriptors is one warning and no stall.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use otx_relay_harness::procfs;

use crate::observe::{general, pulse};
use crate::support::{
    bearer, small_window, token, FakeOtx, Relay, RelayCommand, Reply, StartRelay, BIN,
};

/// A `/refer` body of `ips` IP observables: 20 000 make ~0.9 MB, answered
/// with ~5.8 MB.
fn refer_body(ips: usize) -> String {
    let items: Vec<String> = (0..ips)
        .map(|i| {
            format!(
                r#"{{"type":"ip","value":"10.{}.{}.{}"}}"#,
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn refer_request(body: &str) -> String {
    format!(
        "POST /refer/observables HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One request on a new connection; the whole answer, or why not within
/// `within` (connect included).
fn prompt(relay: &Relay, request: &str, within: Duration) -> Result<String, String> {
    let started = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&relay.addr(), within).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(within))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("no answer within {within:?} ({e})"))?;
    let took = started.elapsed();
    if took > within {
        return Err(format!("answered after {took:?}"));
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

const VERSION: &str =
    "POST /version HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// A prompt call a worker answers: `/deliberate` of one observable (its
/// OTX answer cached already where the relay caches).
fn prompt_deliberate() -> String {
    let body = r#"[{"type":"ip","value":"10.0.0.0"}]"#;
    format!(
        "POST /deliberate/observables HTTP/1.1\r\nHost: relay\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        bearer(&token()),
        body.len()
    )
}

/// `/version` (answered on its connection's thread) and a `/deliberate`
/// (a worker's job) each answer within a second, five times.
#[track_caller]
fn check_prompt_calls(relay: &Relay) {
    let deliberate = prompt_deliberate();
    for _ in 0..5 {
        for request in [VERSION, deliberate.as_str()] {
            let answer = prompt(relay, request, Duration::from_secs(1))
                .unwrap_or_else(|e| panic!("a prompt call waited behind the hostile clients: {e}"));
            assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:.300}");
        }
    }
}

/// A fake OTX that finds every IP in three pulses: `/deliberate` judges
/// each Malicious (a judgement and a verdict, about 1 KB of answer).
fn otx_finding_everything() -> FakeOtx {
    let otx = FakeOtx::start();
    let found = general(
        "IPv4",
        vec![
            pulse("p1", "IPv4"),
            pulse("p2", "IPv4"),
            pulse("p3", "IPv4"),
        ],
    );
    otx.fallback(move |_| Reply::json(found.clone()));
    otx
}

/// Eight clients that send a `/deliberate` of 6 000 IPs (an answer of
/// several MB, made by a worker) and then read it at `read_rate` bytes a
/// second (0: never), for at most 15 s; four workers. The OTX answers are
/// cached, so that the eight share one set of OTX calls.
fn check_slow_readers_hold_no_worker(read_rate: usize) {
    let otx = otx_finding_everything();
    let env = [
        ("RELAY_THREADS", "4"),
        ("RELAY_CLIENT_TIMEOUT", "10"),
        ("CACHE_TTL", "300"),
        ("PASSIVE_DNS", "off"),
        ("RELAY_DEADLINE", "120"),
    ];
    let relay = Relay::start(&otx, &env);
    let body = refer_body(6_000);
    let request = format!(
        "POST /deliberate/observables HTTP/1.1\r\nHost: relay\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        bearer(&token()),
        body.len()
    );
    let (started_tx, answers_started) = std::sync::mpsc::channel();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let started_tx = started_tx.clone();
            let mut stream = small_window(&relay);
            stream.write_all(request.as_bytes()).expect("a request");
            thread::spawn(move || {
                // The first bytes of the answer: it has been made, and is
                // being written from now on.
                let mut buf = vec![0u8; (read_rate / 4).max(1024)];
                stream
                    .set_read_timeout(Some(Duration::from_secs(120)))
                    .expect("timeout");
                let mut taken = stream.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..taken]).into_owned();
                let _ = started_tx.send(head);
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(15) {
                    thread::sleep(Duration::from_millis(250));
                    if read_rate > 0 {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => taken += n,
                        }
                    }
                }
                taken
            })
        })
        .collect();
    // Once every answer is made and being written (or not taken), the
    // workers are free, or should be. Each is a 200 of several MB (sent
    // chunked), far more than the socket buffers hold.
    for _ in 0..8 {
        let head = answers_started
            .recv_timeout(Duration::from_secs(120))
            .expect("a big /deliberate was never answered");
        assert!(head.starts_with("HTTP/1.1 200 "), "{head:.300}");
        assert!(head.contains("Transfer-Encoding: chunked"), "{head:.300}");
    }
    check_prompt_calls(&relay);
    drop(readers);
}

#[test]
fn clients_that_never_read_their_answers_hold_no_worker() {
    check_slow_readers_hold_no_worker(0);
}

#[test]
fn clients_that_read_their_answers_at_64_kb_a_second_hold_no_worker() {
    check_slow_readers_hold_no_worker(64 * 1024);
}

#[test]
fn pipelining_into_a_connection_that_is_never_read_grows_nothing() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let pid = relay.pid();
    // Each request: 100 KB in, ~600 KB out.
    let request = refer_request(&refer_body(2_000));
    check_prompt_calls(&relay);
    let before = procfs::status_kib(pid, "VmRSS").expect("the relay's RSS");
    assert!(procfs::reset_peak(pid), "the peak RSS mark cannot be reset");
    // Two connections write up to 25 MB of requests each, until the relay
    // stops reading them (a write blocked for 2 s) or 15 s have passed.
    let pipeliners: Vec<_> = (0..2)
        .map(|_| {
            let mut stream = small_window(&relay);
            let request = request.clone();
            stream
                .set_write_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
            thread::spawn(move || {
                let (started, mut sent) = (Instant::now(), 0usize);
                while sent < 25_000_000 && started.elapsed() < Duration::from_secs(15) {
                    if stream.write_all(request.as_bytes()).is_err() {
                        break;
                    }
                    sent += request.len();
                }
                (sent, stream)
            })
        })
        .collect();
    let streams: Vec<(usize, TcpStream)> = pipeliners
        .into_iter()
        .map(|p| p.join().expect("a pipeliner"))
        .collect();
    // What was sent and not yet read is in the kernel's buffers, not the
    // relay's: a few MB at most.
    let sent: usize = streams.iter().map(|(sent, _)| sent).sum();
    let peak = procfs::status_kib(pid, "VmHWM").expect("the relay's peak RSS");
    let growth_mib = peak.saturating_sub(before) / 1024;
    assert!(
        growth_mib < 48,
        "{sent} bytes pipelined and never read grew the relay by {growth_mib} MiB"
    );
    check_prompt_calls(&relay);
}

/// Whether `/version` is answered on a new connection within `within`,
/// trying again every 50 ms.
fn served_again_within(relay: &Relay, within: Duration) -> bool {
    let started = Instant::now();
    loop {
        match prompt(relay, VERSION, Duration::from_secs(1)) {
            Ok(answer) if answer.starts_with("HTTP/1.1 200 ") => return true,
            _ if started.elapsed() > within => return false,
            _ => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Threads of a process.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |tasks| tasks.count())
}

/// Whether the relay closes `stream` within `within` without a byte.
fn closed_at_once(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn connections_beyond_relay_max_connections_are_closed_at_once() {
    let otx = FakeOtx::start();
    let env = [
        ("RELAY_MAX_CONNECTIONS", "64"),
        ("RELAY_THREADS", "4"),
        ("AVOTX_CONCURRENCY", "4"),
    ];
    let relay = Relay::start(&otx, &env);
    let base = threads(relay.pid());
    let mut held: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(relay.addr()).expect("connect"))
        .collect();
    // The accept loop has counted them by the time /version answers on one.
    held[0]
        .write_all(b"POST /version HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\n\r\n")
        .expect("a request");
    held[0]
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut first = [0u8; 12];
    held[0]
        .read_exact(&mut first)
        .expect("an answer on a held connection");
    assert_eq!(&first, b"HTTP/1.1 200");
    let mut turned_away = 0;
    for _ in 0..136 {
        let mut extra = TcpStream::connect(relay.addr()).expect("connect");
        if closed_at_once(&mut extra, Duration::from_secs(1)) {
            turned_away += 1;
        }
    }
    assert_eq!(turned_away, 136, "connections beyond the 64th were kept");
    // One thread per held connection, not per connection tried.
    let now = threads(relay.pid());
    assert!(now <= base + 64 + 4, "{base} threads became {now}");
    // A held connection is served; freed slots take new connections.
    let mut prompt_held = held.pop().expect("a held connection");
    prompt_held
        .write_all(VERSION.as_bytes())
        .expect("a request");
    let mut answer = String::new();
    prompt_held
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    prompt_held.read_to_string(&mut answer).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    drop(held);
    let served = served_again_within(&relay, Duration::from_secs(3));
    assert!(served, "closed connections did not free their slots");
}

#[test]
fn running_out_of_file_descriptors_is_one_warning_and_the_relay_recovers() {
    let otx = FakeOtx::start();
    // prlimit execs the relay: its process is the relay's.
    let mut command = Command::new("prlimit");
    command.args(["--nofile=64:64", "--", BIN]);
    let relay = RelayCommand::wrapped(command, &otx.url())
        .env(&[("RELAY_THREADS", "2"), ("AVOTX_CONCURRENCY", "2")])
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    // Each connection costs the relay two descriptors (read and write
    // halves): 60 run it out, for a second and a half (75 tries to accept).
    let idle: Vec<TcpStream> = (0..60)
        .map(|_| TcpStream::connect(relay.addr()).expect("connect"))
        .collect();
    thread::sleep(Duration::from_millis(1500));
    drop(idle);
    let served = served_again_within(&relay, Duration::from_secs(5));
    assert!(
        served,
        "the relay did not recover; its output:\n{}",
        relay.logs()
    );
    let warnings: Vec<String> = relay
        .stderr()
        .lines()
        .filter(|l| l.contains("cannot accept a connection"))
        .map(str::to_owned)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("out of file descriptors (EMFILE)"),
        "{}",
        warnings[0]
    );
}
