//! `make soak`: the release relay under sustained load against a flaky OTX.
//!
//! It starts the harness's synthetic OTX on 127.0.0.1 (50 ms of latency,
//! observables in 0 to 2 pulses or unknown, some pages in two; one answer in
//! 20 faulty: 500, 503, 429, a reset before the head, a head later than the
//! relay's `AVOTX_TIMEOUT` of 1 s, a truncated body), then
//! `target/release/otx-relay` against it (default `RELAY_DEADLINE`, no
//! cache), and drives it with many keep-alive clients posting to
//! `/observe`, `/refer` and `/health`. 5 s after the load it counts what the
//! relay still holds, stops it with SIGTERM and prints a summary.
//!
//! Exit status 1 when the relay answered a 5xx, printed a panic, died, left
//! a client without an answer (or over 30 s late), kept file descriptors
//! beyond what its OTX keep-alive pool explains, or did not stop cleanly;
//! 2 on a setup error. Environment: `SOAK_SECONDS` (60), `SOAK_CONCURRENCY`
//! (200), `SOAK_RELAY` (the relay binary; default `target/release/otx-relay`).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use otx_relay_harness::load::{mib, ms, percentile, run};
use otx_relay_harness::procfs::fd_count;
use otx_relay_harness::synth::fnv;
use otx_relay_harness::{bearer, token, Client, FakeOtx, Fault, RelayCommand, Reply, Synth};
use serde_json::{json, Value};

/// The relay's `AVOTX_CONCURRENCY`; it keeps twice as many idle connections.
const OTX_CONCURRENCY: usize = 32;

/// What a client saw of one call.
struct Outcome {
    path: &'static str,
    /// The status, or why there was no answer.
    status: Result<u16, String>,
    /// The `code`s of the answer's `errors`.
    codes: Vec<String>,
}

fn main() -> ExitCode {
    match soak() {
        Ok(failures) if failures.is_empty() => {
            println!("soak: PASS");
            ExitCode::SUCCESS
        }
        Ok(failures) => {
            failures.iter().for_each(|f| println!("soak: FAIL: {f}"));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

fn number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| format!("{name} is not a number: {v:?}")),
        _ => Ok(default),
    }
}

fn soak() -> Result<Vec<String>, String> {
    let seconds = number("SOAK_SECONDS", 60)?.clamp(1, 3600);
    let clients = number("SOAK_CONCURRENCY", 200)?.clamp(1, 2000) as usize;
    // `target/release/examples/soak` → `target/release/otx-relay`.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let beside = exe.parent().and_then(|examples| examples.parent());
    let bin = match std::env::var_os("SOAK_RELAY") {
        Some(bin) => bin.into(),
        None => beside.ok_or("no target directory")?.join("otx-relay"),
    };
    if !bin.is_file() {
        let bin = bin.display();
        return Err(format!(
            "{bin} is missing: `cargo build --release` first (make soak does)"
        ));
    }
    let otx = FakeOtx::start();
    otx.set_latency(Duration::from_millis(50));
    let faults = flaky(&otx);
    let concurrency = OTX_CONCURRENCY.to_string();
    let env = [("AVOTX_TIMEOUT", "1"), ("AVOTX_CONCURRENCY", &concurrency)];
    let mut relay = RelayCommand::new(&bin, &otx.url())
        .env(&env)
        .quiet()
        .start()?;
    let pid = relay.pid();
    println!(
        "soak: relay {pid} on {}, {seconds} s, {clients} clients",
        relay.url()
    );
    let (fds_before, otx_before) = (fd_count(pid).unwrap_or(0), otx.open_connections());
    let auth = bearer(&token());
    let client = || Client::new(relay.addr()).header("Authorization", &auth);
    let load = run(pid, clients, Duration::from_secs(seconds), client, call);
    let max_in_flight = otx.take_max_in_flight();
    thread::sleep(Duration::from_secs(5)); // what the load opened must close meanwhile
    let (fds_after, otx_after) = (fd_count(pid).unwrap_or(0), otx.open_connections());
    let alive = relay.alive();
    let stopped = relay.stop().map(|status| status.to_string());
    let stderr = relay.stderr();
    let panics = stderr.lines().filter(|l| l.contains("panicked")).count();

    let statuses = tally(load.calls.iter().map(|(_, o)| o.status.as_ref().ok()));
    let paths = tally(load.calls.iter().map(|(_, o)| o.path));
    let errors = tally(load.calls.iter().flat_map(|(_, o)| &o.codes));
    let unanswered = load
        .calls
        .iter()
        .filter_map(|(_, o)| o.status.as_ref().err());
    let unanswered: Vec<&String> = unanswered.collect();
    let server_errors: usize = statuses.range(Some(&500)..).map(|(_, n)| n).sum();
    let (times, n) = (load.latencies(), load.calls.len());
    let late = times
        .iter()
        .filter(|t| **t > Duration::from_secs(30))
        .count();
    let quantiles = [0.5, 0.9, 0.99, 1.0].map(|q| ms(percentile(&times, q)));
    let faults = faults.lock().map(|f| f.clone()).unwrap_or_default();
    println!("requests      {n} ({:.0}/s)", load.per_second());
    println!("by status     {statuses:?} (None: no answer)");
    println!("by endpoint   {paths:?}");
    println!("errors        {errors:?}");
    println!(
        "unanswered    {} {:?}",
        unanswered.len(),
        &unanswered[..unanswered.len().min(3)]
    );
    println!("latency       p50, p90, p99, max: {}", quantiles.join(", "));
    let (requests, connections) = (otx.request_count(), otx.connections());
    println!("fake OTX      {requests} requests on {connections} connections; faults {faults:?}");
    println!("              at most {max_in_flight} requests in flight");
    println!("relay RSS     peak {}", mib(load.peak_rss));
    println!("relay fds     {fds_before} before (OTX connections {otx_before})");
    println!("              {fds_after} 5 s after the load (OTX connections {otx_after})");
    println!(
        "relay stop    {}",
        stopped.as_deref().unwrap_or("killed after 15 s")
    );
    println!(
        "relay stderr  {} lines, {panics} panics",
        stderr.lines().count()
    );

    let mut failures = Vec::new();
    let mut fail = |failed: bool, what: String| failures.extend(failed.then_some(what));
    fail(!alive, "the relay died during the soak".into());
    fail(n == 0, "no request was answered".into());
    fail(
        server_errors > 0,
        format!("{server_errors} answers were 5xx"),
    );
    fail(
        panics > 0,
        format!("{panics} panic lines on the relay's stderr"),
    );
    // The relay answers by its deadline (25 s), whatever OTX does.
    fail(
        late + unanswered.len() > 0,
        format!("{late} answers over 30 s, {} none", unanswered.len()),
    );
    // Connections kept in the relay's OTX pool are expected; any other
    // descriptor left over (beyond a few: a pool thread's eventfd…) leaks.
    let pooled = otx_after.saturating_sub(otx_before);
    fail(
        otx_after > 2 * OTX_CONCURRENCY + 1,
        format!("{otx_after} OTX connections kept"),
    );
    fail(
        fds_after > fds_before + pooled + 8,
        format!("open fds {fds_before} -> {fds_after}"),
    );
    fail(
        stopped.as_deref() != Some("exit status: 0"),
        "no clean stop on SIGTERM".into(),
    );
    Ok(failures)
}

/// One call, drawn from the call's number: 80 % `/observe` and 10 %
/// `/refer` of 1 to 4 observables (every type, mixed case, two the relay
/// drops), 10 % `/health`.
fn call(client: &mut Client, n: u64) -> Outcome {
    let hash = fnv(&n.to_string());
    let path = match hash % 10 {
        0..=7 => "/observe/observables",
        8 => "/refer/observables",
        _ => "/health",
    };
    let observable = |i: u64| {
        let (k, h) = (i % 16, fnv(&i.to_string()));
        match i % 7 {
            0 => json!({"type": "ip", "value": format!("198.51.100.{k}")}),
            1 => json!({"type": "domain", "value": format!("Host{k}.Example.com")}),
            2 => json!({"type": "sha256", "value": format!("{h:016X}").repeat(4)}),
            3 => json!({"type": "url", "value": format!("http://h{k}.example.com/p?q={k}")}),
            4 => json!({"type": "md5", "value": format!("{h:016x}").repeat(2)}),
            5 => json!({"type": "ipv6", "value": format!("2001:db8::{k:x}")}),
            _ => {
                let kind = if k % 2 == 0 { "email" } else { "hostname" };
                json!({"type": kind, "value": "soak@example.com"})
            }
        }
    };
    let body = (0..1 + hash / 10 % 4).map(|i| observable(hash / 40 + i));
    let body = Value::Array(body.collect()).to_string();
    let answer = client.post_json(path, &body);
    let status = answer
        .as_ref()
        .map(|a| a.status)
        .map_err(|e| format!("{path}: {e}"));
    let answer: Value = answer.map_or(Value::Null, |a| {
        serde_json::from_slice(&a.body).unwrap_or(json!("not JSON"))
    });
    let errors = answer["errors"].as_array().into_iter().flatten();
    let mut codes: Vec<String> = errors
        .map(|e| e["code"].as_str().unwrap_or("?").to_owned())
        .collect();
    codes.extend(answer.is_string().then(|| "<answer not JSON>".to_owned()));
    Outcome {
        path,
        status,
        codes,
    }
}

/// How many times each key occurs.
fn tally<K: Ord>(keys: impl Iterator<Item = K>) -> BTreeMap<K, usize> {
    let mut counts = BTreeMap::new();
    keys.for_each(|k| *counts.entry(k).or_insert(0) += 1);
    counts
}

/// Serves the synthetic OTX with one answer in 20 replaced by a fault;
/// returns the count of each fault.
fn flaky(otx: &FakeOtx) -> std::sync::Arc<Mutex<BTreeMap<&'static str, u64>>> {
    let (synth, counter) = (Synth::new(2).varied(), AtomicU64::new(0));
    let faults = std::sync::Arc::new(Mutex::new(BTreeMap::new()));
    let counts = faults.clone();
    otx.fallback(move |request| {
        let answer = synth.answer(request);
        let hash = fnv(&counter.fetch_add(1, Ordering::Relaxed).to_string());
        if !hash.is_multiple_of(20) {
            return answer;
        }
        let (name, reply) = match hash / 20 % 6 {
            0 => ("500", Reply::status(500)),
            1 => ("503", Reply::status(503)),
            2 => ("429", Reply::status(429)),
            3 => ("reset", answer.with_fault(Fault::ResetBeforeHead)),
            4 => (
                "slow head",
                answer.with_head_delay(Duration::from_millis(1450)),
            ),
            _ => (
                "truncated",
                answer
                    .with_fault(Fault::TruncateBody)
                    .with_header("Connection", "close"),
            ),
        };
        *counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_insert(0) += 1;
        reply
    });
    faults
}
