//! The tests' side of the harness (`harness/`, the `otx-relay-harness`
//! crate): all it exports, the relay started from this package's binary,
//! and the checks that know the relay's answers.
#![allow(dead_code)] // Not every helper is used by every test module.

use std::process::Command;
use std::time::Duration;

pub use otx_relay_harness::*;
use serde_json::{json, Value};

/// The relay binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_otx-relay");

/// The harness's `Relay` run from `BIN` as `RelayCommand` says (test
/// defaults, then `env`); panics with the relay's output if it does not start.
pub trait StartRelay {
    /// Against `otx`.
    fn start(otx: &FakeOtx, env: &[(&str, &str)]) -> Relay {
        Self::spawn(&otx.url(), env, &[])
    }

    /// With any `AVOTX_URL` (an unreachable one, say), then unsets each
    /// variable of `remove` (e.g. `SECRET_KEY`).
    fn spawn(otx_url: &str, env: &[(&str, &str)], remove: &[&str]) -> Relay {
        let command = RelayCommand::new(BIN, otx_url).env(env).remove(remove);
        command.start().unwrap_or_else(|e| panic!("{e}"))
    }
}

impl StartRelay for Relay {}

/// Runs `otx-relay args…` with only `env` in its environment; fails the
/// test if it has not exited within 10 s.
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Run {
    otx_relay_harness::run_cli(BIN, args, env)
}

/// A ureq agent for talking to the fake OTX directly: statuses are not
/// errors, no proxy from the environment, a 10 s global timeout.
pub fn http_agent() -> ureq::Agent {
    let ten = Some(Duration::from_secs(10));
    let config = ureq::Agent::config_builder().http_status_as_error(false);
    config.proxy(None).timeout_global(ten).build().into()
}

/// `POST /version` answers 200 with the crate version: the relay serves.
#[track_caller]
pub fn check_version_answers(relay: &Relay) {
    let (status, body) = relay.post("/version", None, "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"version": env!("CARGO_PKG_VERSION")}));
}

/// The relay refuses `variable=value` at start-up: a non-zero exit, one
/// line on stderr that names the variable (`invalid VAR: …`), no panic, no
/// secret.
#[track_caller]
pub fn check_refused(otx: &FakeOtx, variable: &str, value: &str) -> Run {
    let port = free_port().to_string();
    let env = [
        ("HOST", "127.0.0.1"),
        ("PORT", &port),
        ("SECRET_KEY", SECRET),
        ("AVOTX_URL", &otx.url()),
        (variable, value),
    ];
    let run = run_cli(&[], &env);
    // The output shown on a failure is redacted: the last check may have failed.
    let context = redact(&format!("{variable}={value:?}: {run:?}"), &[]);
    assert_ne!(run.code.unwrap_or(0), 0, "a non-zero exit: {context}");
    let naming = run.stderr.contains(&format!("invalid {variable}: "));
    let named = naming && run.stderr.lines().count() == 1;
    assert!(named, "one line on stderr, naming the variable: {context}");
    let all = run.stdout.clone() + &run.stderr;
    assert!(!all.contains("panicked"), "no panic: {context}");
    assert_eq!(find_secret(&all, &[]), None, "{context}");
    run
}

/// The judgement and verdict expected for the observable `obs` with `disposition`
/// (1 Clean, 2 Malicious, 3 Suspicious), as `check_json` patterns: ids,
/// times and the judgement id by placeholder; confidence and severity as
/// SPEC §7 ties them to the disposition.
pub fn expected_verdict(obs: &Value, uri: &str, disposition: u8, reason: &str) -> (Value, Value) {
    let (name, confidence, severity) = match disposition {
        1 => ("Clean", "High", "None"),
        2 => ("Malicious", "High", "High"),
        _ => ("Suspicious", "Medium", "Medium"),
    };
    let judgement = json!({
        "type": "judgement", "schema_version": "1.0.17",
        "id": "<<prefix:transient:judgement->>",
        "observable": obs,
        "disposition": disposition, "disposition_name": name,
        "source": "AlienVault OTX", "source_uri": uri,
        "priority": 85, "confidence": confidence, "severity": severity, "tlp": "white",
        "reason": reason,
        "valid_time": {"start_time": "<<time>>", "end_time": "<<time>>"},
    });
    let verdict = json!({
        "type": "verdict", "judgement_id": judgement["id"],
        "disposition": disposition, "disposition_name": name,
        "observable": obs, "valid_time": judgement["valid_time"],
    });
    (judgement, verdict)
}

/// A tool the test needs (`promtool`, `kubectl`, `redis-server`): its name,
/// or `None` once [`skip`] has said why the test is skipped. A tool named in
/// `OTX_RELAY_REQUIRE_TOOLS` (comma-separated; `.ci/run` sets it for what
/// it installs) must be there: its absence is a failure. One named in
/// `OTX_RELAY_SKIP_TOOLS` counts as missing (to see a skip on purpose:
/// `OTX_RELAY_SKIP_TOOLS=redis-server make test`).
pub fn tool(name: &str) -> Option<&str> {
    let listed = |variable: &str| {
        let list = std::env::var(variable).unwrap_or_default();
        list.split(',').any(|t| t.trim() == name)
    };
    let hidden = listed("OTX_RELAY_SKIP_TOOLS");
    if !hidden && Command::new(name).arg("--version").output().is_ok() {
        return Some(name);
    }
    let why = if hidden {
        format!("{name} counts as missing (OTX_RELAY_SKIP_TOOLS)")
    } else {
        format!("{name} is not installed (Debian: see .ci/run)")
    };
    assert!(
        !listed("OTX_RELAY_REQUIRE_TOOLS"),
        "OTX_RELAY_REQUIRE_TOOLS names {name}: {why}"
    );
    skip(&why);
    None
}

/// Where skipped tests are listed, one line each, for `make test` to print
/// at its end: libtest shows nothing a passing test prints, and a skipped
/// test passes.
pub const SKIPPED: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/skipped-tests.txt");

/// Says why the calling test is skipped: on stderr at once, and in
/// [`SKIPPED`]. With `OTX_RELAY_NO_SKIPS=1` (`.ci/run`), a skip is a
/// failure instead.
#[track_caller]
pub fn skip(why: &str) {
    let no_skips = std::env::var_os("OTX_RELAY_NO_SKIPS").is_some_and(|v| v == "1");
    assert!(
        !no_skips,
        "OTX_RELAY_NO_SKIPS=1, so no test may be skipped: {why}"
    );
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    // To the process's stderr, around libtest's capture (which keeps
    // `eprintln!` to itself), and to the list `make test` prints.
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("skipped: {test}: {why}\n").as_bytes());
    record_skip(std::path::Path::new(SKIPPED), &test, why);
}

/// Appends `skipped: TEST: WHY` to `file`.
pub fn record_skip(file: &std::path::Path, test: &str, why: &str) {
    use std::io::Write;
    let line = format!("skipped: {test}: {why}\n");
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = appended {
        let _ = writeln!(
            std::io::stderr(),
            "cannot list the skip in {}: {e}",
            file.display()
        );
    }
}

/// A connection whose receive buffer is small: what it does not read stops
/// the relay's writes soon.
pub fn small_window(relay: &Relay) -> std::net::TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    socket
        .connect(&relay.addr().into())
        .expect("connect to the relay");
    std::net::TcpStream::from(socket)
}
