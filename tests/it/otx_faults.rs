//! The fault matrix of SPEC §4: every way OTX can fail (a status, a broken
//! connection, a slow or bad answer), once on `/health` and once on one of
//! three observables of an `/observe` call, whose other two must come back
//! intact. Then retries, the deadline, a refused connection, lenient reading
//! of odd OTX JSON, and error messages that never echo a secret.
//!
//! Beside it: [`tls`], TLS to OTX; [`robustness`], a 404 pulse lookup
//! logged and escaped, the record cache telling kinds apart, and SIGTERM
//! letting the request in flight finish.

mod robustness;
mod tls;

use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;

const USER_ME: &str = "/api/v1/user/me";

/// `oops` with a reason the SPEC leaves open (transport and body problems).
const ANY_REASON: &str = "<<re:Something went wrong\\. Reason: .+\\.>>";

/// The environment of the matrix: short OTX timeout, small body limit, the
/// default deadline spelled out (a slow head must be `oops`, not `timeout`).
const MATRIX_ENV: &[(&str, &str)] = &[
    ("AVOTX_TIMEOUT", "1"),
    ("AVOTX_MAX_BODY", "1000"),
    ("RELAY_DEADLINE", "25"),
];

// ---------------------------------------------------------------------------
// OTX fixtures and the CTIM they give

/// What a pulse says of itself; `None` fields are left out of its OTX JSON.
#[derive(Clone, Copy)]
struct PulseSpec {
    id: &'static str,
    name: Option<&'static str>,
    description: Option<&'static str>,
    author: Option<&'static str>,
    tags: Option<&'static [&'static str]>,
    tlp: Option<&'static str>,
}

impl PulseSpec {
    /// A pulse with every field CTIM uses.
    const fn full(id: &'static str, name: &'static str) -> PulseSpec {
        PulseSpec {
            id,
            name: Some(name),
            description: Some("Seen talking to a C2 server."),
            author: Some("analyst_1"),
            tags: Some(&["c2", "botnet"]),
            tlp: Some("green"),
        }
    }

    /// The pulse as `/general` lists it, claiming indicators of `base_type`.
    fn otx_json(&self, base_type: &str) -> Value {
        let mut pulse = json!({
            "id": self.id,
            "indicator_type_counts": {base_type: 1},
            "modified": "2023-01-01T00:00:00.000000",
        });
        let fields = [
            ("name", self.name.map(Value::from)),
            ("description", self.description.map(Value::from)),
            (
                "author",
                self.author.map(|a| json!({"id": "1", "username": a})),
            ),
            ("tags", self.tags.map(|t| json!(t))),
            ("TLP", self.tlp.map(Value::from)),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                pulse[key] = value;
            }
        }
        pulse
    }

    /// The fields the indicator and the sighting share.
    fn common(&self, base: &str) -> serde_json::Map<String, Value> {
        let mut common = json!({
            "schema_version": "1.0.17",
            "confidence": "High",
            "source": "AlienVault OTX",
            "external_ids": [self.id],
            "source_uri": format!("{base}/pulse/{}", self.id),
        });
        if let Some(name) = self.name {
            common["title"] = json!(name);
        }
        if let Some(tlp) = self.tlp {
            common["tlp"] = json!(tlp);
        }
        let Value::Object(common) = common else {
            unreachable!("json! of an object literal is an object")
        };
        common
    }
}

/// `{"type", "value"}`.
fn observable(type_: &str, value: &str) -> Value {
    json!({"type": type_, "value": value})
}

/// One pulse's record of an indicator, as a page of pulse indicators.
fn page(indicator: &str, created: Value) -> Value {
    json!({
        "count": 1,
        "next": null,
        "previous": null,
        "results": [{"id": 1, "indicator": indicator, "type": "x", "created": created, "expiration": null}],
    })
}

fn general_path(section: &str, value: &str) -> String {
    format!("/api/v1/indicators/{section}/{value}/general")
}

fn pulse_path(pulse_id: &str) -> String {
    format!("/api/v1/pulses/{pulse_id}/indicators")
}

/// The CTIM an `/observe` answer is expected to hold, built kind by kind.
#[derive(Default)]
struct Expected {
    sightings: Vec<Value>,
    indicators: Vec<Value>,
    relationships: Vec<Value>,
    judgements: Vec<Value>,
    verdicts: Vec<Value>,
}

impl Expected {
    /// The three entities of `observable` found in `pulse` by a record
    /// `created` (with no expiration).
    fn hit(&mut self, base: &str, observable: &Value, pulse: &PulseSpec, created: &str) {
        let created = format!("{created}Z");
        let description = pulse.description.unwrap_or("");
        let indicator_id = format!(
            "transient:indicator-{}",
            Uuid::new_v5(&Uuid::NAMESPACE_X500, pulse.id.as_bytes())
        );

        let mut sighting = pulse.common(base);
        for (key, value) in [
            ("type", json!("sighting")),
            ("id", json!("<<prefix:transient:sighting->>")),
            ("count", json!(1)),
            ("internal", json!(false)),
            ("observables", json!([observable])),
            ("description", json!(description)),
            (
                "observed_time",
                json!({"start_time": created, "end_time": created}),
            ),
        ] {
            sighting.insert(key.into(), value);
        }
        self.sightings.push(Value::Object(sighting));

        let mut indicator = pulse.common(base);
        for (key, value) in [
            ("type", json!("indicator")),
            ("id", json!(indicator_id)),
            ("producer", json!(pulse.author.unwrap_or("AlienVault OTX"))),
            ("short_description", json!(description)),
            ("valid_time", json!({"start_time": created})),
        ] {
            indicator.insert(key.into(), value);
        }
        if let Some(tags) = pulse.tags {
            indicator.insert("tags".into(), json!(tags));
        }
        self.indicators.push(Value::Object(indicator));

        self.relationships.push(json!({
            "type": "relationship",
            "schema_version": "1.0.17",
            "id": "<<prefix:transient:relationship->>",
            "relationship_type": "member-of",
            "source_ref": "<<prefix:transient:sighting->>",
            "target_ref": indicator_id,
        }));
    }

    /// The judgement and verdict of `observable`, found in `pulses` pulses
    /// (SPEC §7 with `OTX_MALICIOUS_PULSES=2` and no validation entries).
    fn verdict(&mut self, base: &str, observable: &Value, category: &str, pulses: usize) {
        let disposition = if pulses >= 2 { 2 } else { 3 };
        let plural = if pulses == 1 { "" } else { "s" };
        let value = observable["value"].as_str().unwrap_or_default();
        let (judgement, verdict) = expected_verdict(
            observable,
            &format!("{base}/indicator/{category}/{value}"),
            disposition,
            &format!("Found in {pulses} AlienVault OTX pulse{plural}"),
        );
        self.judgements.push(judgement);
        self.verdicts.push(verdict);
    }

    /// `data` as `/observe` answers it: only the kinds that have docs.
    fn data(self) -> Value {
        let mut data = json!({});
        for (name, docs) in [
            ("sightings", self.sightings),
            ("indicators", self.indicators),
            ("relationships", self.relationships),
            ("judgements", self.judgements),
            ("verdicts", self.verdicts),
        ] {
            if !docs.is_empty() {
                data[name] = json!({"count": docs.len(), "docs": docs});
            }
        }
        data
    }
}

/// An observable OTX knows in exactly one pulse, which has its record.
struct Known {
    type_: &'static str,
    value: &'static str,
    /// The OTX `/indicators/` section.
    section: &'static str,
    /// `base_indicator.type` in its `/general`.
    base_type: &'static str,
    /// The category of refer links.
    category: &'static str,
    pulse: PulseSpec,
    created: &'static str,
}

const IP: Known = Known {
    type_: "ip",
    value: "198.51.100.7",
    section: "IPv4",
    base_type: "IPv4",
    category: "ip",
    pulse: PulseSpec::full("5f7a000000000000000000a1", "Botnet C2 addresses"),
    created: "2021-03-04T05:06:07",
};

const MD5: Known = Known {
    type_: "md5",
    value: "0123456789abcdef0123456789abcdef",
    section: "file",
    base_type: "FileHash-MD5",
    category: "file",
    pulse: PulseSpec::full("5f7a000000000000000000a3", "Dropper samples"),
    created: "2022-01-02T03:04:05.123000",
};

/// The observable the faults hit, between `IP` and `MD5`.
const FAULTY: (&str, &str) = ("domain", "faulty.example");
const FAULTY_GENERAL: &str = "/api/v1/indicators/domain/faulty.example/general";

impl Known {
    fn observable(&self) -> Value {
        observable(self.type_, self.value)
    }

    fn general_path(&self) -> String {
        general_path(self.section, self.value)
    }

    fn pulse_path(&self) -> String {
        pulse_path(self.pulse.id)
    }

    fn general(&self) -> Value {
        json!({
            "base_indicator": {"indicator": self.value, "type": self.base_type},
            "pulse_info": {"count": 1, "pulses": [self.pulse.otx_json(self.base_type)]},
            "false_positive": [],
            "validation": [],
        })
    }

    /// Programs `otx` to answer this observable's two calls normally.
    fn serve(&self, otx: &FakeOtx) {
        otx.on(&self.general_path(), Reply::json(self.general()));
        otx.on(
            &self.pulse_path(),
            Reply::json(page(self.value, json!(self.created))),
        );
    }
}

/// `data` holding exactly the docs of `knowns`, in that order.
fn data_of(base: &str, knowns: &[&Known]) -> Value {
    let mut expected = Expected::default();
    for known in knowns {
        expected.hit(base, &known.observable(), &known.pulse, known.created);
        expected.verdict(base, &known.observable(), known.category, 1);
    }
    expected.data()
}

/// The body of the matrix's `/observe` call: IP, the faulty domain, MD5.
fn three_observables() -> String {
    json!([
        IP.observable(),
        observable(FAULTY.0, FAULTY.1),
        MD5.observable()
    ])
    .to_string()
}

// ---------------------------------------------------------------------------
// Helpers

/// One case of the family: what the fake OTX serves, the relay's variables,
/// and the first request, `body` POSTed to `path` with the test token.
/// Returns the run, status unchecked (not every case states it): the cases
/// then compare the answer, count what OTX was asked, read the relay's log
/// or ask the same relay again.
#[track_caller]
fn check(serve: impl FnOnce(&FakeOtx), env: &[(&str, &str)], path: &str, body: &str) -> Checked {
    let otx = FakeOtx::start();
    serve(&otx);
    let relay = Relay::start(&otx, env);
    let (status, answer) = relay.post_auth(path, body);
    Checked {
        relay,
        otx,
        status,
        answer,
    }
}

/// What one `check` ran and got.
struct Checked {
    /// Declared first, so that it stops before the fake OTX it talks to.
    relay: Relay,
    otx: FakeOtx,
    /// The first request's status and answer.
    status: u16,
    answer: Value,
}

/// `{"code", "message", "type": "fatal"}`.
fn error(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message, "type": "fatal"})
}

fn oops(reason: &str) -> Value {
    error("oops", &format!("Something went wrong. Reason: {reason}."))
}

fn oops_any() -> Value {
    error("oops", ANY_REASON)
}

fn too_many_requests() -> Value {
    error(
        "too many requests",
        "Too many requests to AlienVault OTX have been made. Please try again later.",
    )
}

fn otx_auth_error() -> Value {
    error(
        "authorization error",
        "Authorization failed: Authorization failed on AlienVault OTX side",
    )
}

fn timeout() -> Value {
    error(
        "timeout",
        "AlienVault OTX did not answer in time; the results are partial.",
    )
}

/// Fails if the answer holds a secret of the harness (`SECRET`, `KEY`, the token).
#[track_caller]
fn assert_no_secret(body: &Value) {
    if let Some(leak) = find_secret(&body.to_string(), &[]) {
        panic!("the answer leaks a secret: {leak}");
    }
}

/// The relay still serves: `POST /version` answers the crate version.
#[track_caller]
fn assert_still_serves(relay: &Relay) {
    let (status, body) = relay.post("/version", None, "");
    assert_eq!(status, 200, "POST /version afterwards");
    check_json(&body, &json!({"version": env!("CARGO_PKG_VERSION")}));
}

/// Waits for the access line of `POST <path>` and checks its retry count.
#[track_caller]
fn assert_access_retries(relay: &Relay, path: &str, retries: usize) {
    let needle = format!(" POST {path} 200 ");
    assert!(
        relay.wait_log(&needle),
        "no access line for POST {path}:\n{}",
        relay.logs()
    );
    let stdout = relay.stdout();
    let line = stdout
        .lines()
        .find(|line| line.contains(&needle))
        .unwrap_or_default();
    assert!(
        line.ends_with(&format!(" retries={retries}")),
        "expected retries={retries} in the access line {line:?}"
    );
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

// ---------------------------------------------------------------------------
// The matrix

/// What one endpoint answers under a fault.
#[derive(Clone)]
enum Outcome {
    /// As if OTX had answered well: `{"status": "ok"}` on `/health`, the
    /// other two observables' data and no error on `/observe`.
    Fine,
    /// This one error (beside the other two observables' data on `/observe`).
    Error(Value),
}

/// One fault: the answers OTX gives (the last repeats), how many requests
/// the relay makes, and what `/health` and `/observe` answer.
struct FaultCase {
    name: &'static str,
    replies: Vec<Reply>,
    attempts: usize,
    health: Outcome,
    observe: Outcome,
}

fn fault(
    name: &'static str,
    reply: Reply,
    attempts: usize,
    health: Outcome,
    observe: Outcome,
) -> FaultCase {
    FaultCase {
        name,
        replies: vec![reply],
        attempts,
        health,
        observe,
    }
}

/// Runs every case at once (each with its own fake OTX and relay), then
/// reports all the failures, each under its case's name.
#[track_caller]
fn check_faults(cases: Vec<FaultCase>) {
    let running: Vec<_> = cases
        .into_iter()
        .map(|case| (case.name, thread::spawn(move || run_fault(&case))))
        .collect();
    let failures: Vec<String> = running
        .into_iter()
        .filter_map(|(name, handle)| {
            let payload = handle.join().err()?;
            Some(format!("[{name}] {}", panic_text(payload.as_ref())))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} fault case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn run_fault(case: &FaultCase) {
    let serve = |otx: &FakeOtx| {
        IP.serve(otx);
        MD5.serve(otx);
        otx.on_seq(USER_ME, case.replies.clone());
        otx.on_seq(FAULTY_GENERAL, case.replies.clone());
    };
    // (a) The fault on `/api/v1/user/me`.
    let run = check(serve, MATRIX_ENV, "/health", "");
    let (relay, otx, body) = (&run.relay, &run.otx, &run.answer);
    let base = otx.url();
    assert_eq!(run.status, 200, "/health");
    let expected = match &case.health {
        Outcome::Fine => json!({"data": {"status": "ok"}}),
        Outcome::Error(e) => json!({"errors": [e]}),
    };
    check_json(body, &expected);
    assert_no_secret(body);
    assert_eq!(
        otx.requests_to(USER_ME).len(),
        case.attempts,
        "requests to {USER_ME}"
    );
    assert_access_retries(relay, "/health", case.attempts - 1);

    // (b) The fault on one observable's `/general`; the other two stand.
    let (status, body) = relay.post_auth("/observe/observables", &three_observables());
    assert_eq!(status, 200, "/observe/observables");
    let data = data_of(&base, &[&IP, &MD5]);
    let expected = match &case.observe {
        Outcome::Fine => json!({ "data": data }),
        Outcome::Error(e) => json!({"data": data, "errors": [e]}),
    };
    check_json(&body, &expected);
    assert_no_secret(&body);
    assert_eq!(
        otx.requests_to(FAULTY_GENERAL).len(),
        case.attempts,
        "requests to {FAULTY_GENERAL}"
    );
    for path in [
        IP.general_path(),
        IP.pulse_path(),
        MD5.general_path(),
        MD5.pulse_path(),
    ] {
        assert_eq!(otx.requests_to(&path).len(), 1, "requests to {path}");
    }

    assert_still_serves(relay);
}

#[test]
fn otx_error_statuses_map_to_the_spec_codes_and_messages() {
    use Outcome::*;
    check_faults(vec![
        fault(
            "400",
            Reply::status(400),
            1,
            Error(oops("400 Bad Request")),
            Fine,
        ),
        fault(
            "403",
            Reply::status(403),
            1,
            Error(otx_auth_error()),
            Error(otx_auth_error()),
        ),
        fault(
            "404",
            Reply::status(404),
            1,
            Error(oops("404 Not Found")),
            Fine,
        ),
        fault(
            "500",
            Reply::status(500),
            1,
            Error(oops("500 Internal Server Error")),
            Error(oops("500 Internal Server Error")),
        ),
        fault(
            "599",
            Reply::status(599),
            1,
            Error(oops("599")),
            Error(oops("599")),
        ),
        fault(
            "500 with an odd reason phrase",
            Reply {
                reason: Some("Oh No".into()),
                ..Reply::status(500)
            },
            1,
            Error(oops("500 Internal Server Error")),
            Error(oops("500 Internal Server Error")),
        ),
    ]);
}

#[test]
fn retried_statuses_give_the_mapped_error_after_three_requests() {
    use Outcome::*;
    check_faults(vec![
        fault(
            "429",
            Reply::status(429),
            3,
            Error(too_many_requests()),
            Error(too_many_requests()),
        ),
        fault(
            "429 with Retry-After: 1",
            Reply::status(429).with_header("Retry-After", "1"),
            3,
            Error(too_many_requests()),
            Error(too_many_requests()),
        ),
        fault(
            "502",
            Reply::status(502),
            3,
            Error(oops("502 Bad Gateway")),
            Error(oops("502 Bad Gateway")),
        ),
        fault(
            "503",
            Reply::status(503),
            3,
            Error(oops("503 Service Unavailable")),
            Error(oops("503 Service Unavailable")),
        ),
        fault(
            "504",
            Reply::status(504),
            3,
            Error(oops("504 Gateway Timeout")),
            Error(oops("504 Gateway Timeout")),
        ),
    ]);
}

/// A 200 whose body is about 500 bytes of valid JSON (under the matrix's
/// `AVOTX_MAX_BODY`), so that cutting it in half cuts real content.
fn padded_answer() -> Reply {
    Reply::json(json!({"pulse_info": {"pulses": []}, "padding": "x".repeat(500)}))
}

#[test]
fn broken_connections_and_slow_answers_are_oops_errors() {
    use Outcome::*;
    check_faults(vec![
        fault(
            "a head slower than AVOTX_TIMEOUT",
            padded_answer().with_head_delay(Duration::from_secs(3)),
            1,
            Error(oops_any()),
            Error(oops_any()),
        ),
        fault(
            "a body slower than AVOTX_TIMEOUT",
            Reply {
                body_delay: Duration::from_secs(3),
                ..padded_answer()
            },
            1,
            Error(oops_any()),
            Error(oops_any()),
        ),
        fault(
            "a reset before the head",
            padded_answer().with_fault(Fault::ResetBeforeHead),
            3,
            Error(oops_any()),
            Error(oops_any()),
        ),
        fault(
            "a reset in the middle of the body",
            padded_answer().with_fault(Fault::ResetMidBody),
            1,
            Error(oops_any()),
            Error(oops_any()),
        ),
        fault(
            "a body cut short",
            padded_answer().with_fault(Fault::TruncateBody),
            1,
            Error(oops_any()),
            Error(oops_any()),
        ),
    ]);
}

#[test]
fn answers_that_are_not_json_or_too_large_are_oops_but_odd_json_is_no_data() {
    use Outcome::*;
    let html = Reply::raw(200, b"<html><body>Service temporarily down</body></html>")
        .with_header("Content-Type", "text/html");
    let large = Reply::json(json!({"pulse_info": {"pulses": []}, "padding": "x".repeat(5000)}));
    check_faults(vec![
        fault("HTML", html, 1, Error(oops_any()), Error(oops_any())),
        fault(
            "JSON cut in the middle of an object",
            Reply::raw(200, br#"{"pulse_info": {"pulses": ["#),
            1,
            Error(oops_any()),
            Error(oops_any()),
        ),
        fault("a JSON list", Reply::raw(200, b"[]"), 1, Fine, Fine),
        fault(
            "a string as pulse_info",
            Reply::json(json!({"pulse_info": "x"})),
            1,
            Fine,
            Fine,
        ),
        fault("JSON null", Reply::raw(200, b"null"), 1, Fine, Fine),
        fault(
            "a body larger than AVOTX_MAX_BODY",
            large,
            1,
            Error(oops_any()),
            Error(oops_any()),
        ),
    ]);
}

// ---------------------------------------------------------------------------
// Retries

/// A first answer that is retried, then a good one: success after one retry.
#[track_caller]
fn check_recovers(first: Reply) {
    let serve = |otx: &FakeOtx| {
        let user_me = Reply::file("user-me.json");
        otx.on_seq(USER_ME, vec![first.clone(), user_me]);
        otx.on_seq(&IP.general_path(), vec![first, Reply::json(IP.general())]);
        otx.on(
            &IP.pulse_path(),
            Reply::json(page(IP.value, json!(IP.created))),
        );
    };
    let run = check(serve, &[("AVOTX_TIMEOUT", "1")], "/health", "");
    let (relay, otx) = (&run.relay, &run.otx);
    check_json(&run.answer, &json!({"data": {"status": "ok"}}));
    assert_eq!(otx.requests_to(USER_ME).len(), 2, "requests to {USER_ME}");
    assert_access_retries(relay, "/health", 1);

    let request = json!([IP.observable()]).to_string();
    let (_, body) = relay.post_auth("/observe/observables", &request);
    check_json(&body, &json!({"data": data_of(&otx.url(), &[&IP])}));
    assert_eq!(
        otx.requests_to(&IP.general_path()).len(),
        2,
        "requests to /general"
    );
    assert_access_retries(relay, "/observe/observables", 1);
}

#[test]
fn a_retried_failure_followed_by_a_good_answer_is_a_success() {
    check_recovers(Reply::status(503));
    check_recovers(Reply::status(502));
    check_recovers(Reply::json(json!({})).with_fault(Fault::ResetBeforeHead));
    check_recovers(Reply::status(429).with_header("Retry-After", "1"));
}

#[test]
fn a_retry_after_beyond_the_deadline_is_not_waited_for() {
    let serve = |otx: &FakeOtx| {
        let throttled = Reply::status(429).with_header("Retry-After", "100");
        otx.on(USER_ME, throttled.clone());
        otx.on(&IP.general_path(), throttled);
    };
    let env = [("AVOTX_TIMEOUT", "1"), ("RELAY_DEADLINE", "3")];
    let run = check(serve, &env, "/health", "");
    let (relay, otx) = (&run.relay, &run.otx);
    check_json(&run.answer, &json!({"errors": [too_many_requests()]}));
    assert_eq!(otx.requests_to(USER_ME).len(), 1);

    // Had the relay slept until the deadline, the answer would be `timeout`.
    let request = json!([IP.observable()]).to_string();
    let (_, body) = relay.post_auth("/observe/observables", &request);
    check_json(&body, &json!({"errors": [too_many_requests()]}));
    assert_eq!(otx.requests_to(&IP.general_path()).len(), 1);
    assert_still_serves(relay);
}

// ---------------------------------------------------------------------------
// The deadline

#[test]
fn a_general_slower_than_the_deadline_leaves_the_others_data_and_a_timeout_error() {
    let serve = |otx: &FakeOtx| {
        IP.serve(otx);
        MD5.serve(otx);
        otx.on(
            FAULTY_GENERAL,
            Reply::json(json!({"pulse_info": {"pulses": []}}))
                .with_head_delay(Duration::from_secs(4)),
        );
    };
    let env = [("RELAY_DEADLINE", "2")];
    let run = check(serve, &env, "/observe/observables", &three_observables());
    check_json(
        &run.answer,
        &json!({"data": data_of(&run.otx.url(), &[&IP, &MD5]), "errors": [timeout()]}),
    );
    assert_eq!(run.otx.requests_to(FAULTY_GENERAL).len(), 1);
    assert_still_serves(&run.relay);
}

/// Removes from `body`'s judgements and verdicts those of `value`, fixing
/// the counts: whether an observable cut short by the deadline still gets
/// its verdict (its `/general` is in) is a race the SPEC does not settle.
fn without_verdicts_of(mut body: Value, value: &str) -> Value {
    for kind in ["judgements", "verdicts"] {
        let Some(bundle) = body.pointer_mut(&format!("/data/{kind}")) else {
            continue;
        };
        if let Some(docs) = bundle["docs"].as_array_mut() {
            docs.retain(|doc| doc["observable"]["value"] != value);
            let count = docs.len();
            bundle["count"] = json!(count);
        }
    }
    body
}

#[test]
fn a_pulse_lookup_slower_than_the_deadline_leaves_the_others_data_and_a_timeout_error() {
    let slow = Known {
        type_: "domain",
        value: "slow.example",
        section: "domain",
        base_type: "domain",
        category: "domain",
        pulse: PulseSpec::full("5f7a000000000000000000a2", "Slow pulse"),
        created: "2021-06-01T00:00:00",
    };
    let serve = |otx: &FakeOtx| {
        IP.serve(otx);
        MD5.serve(otx);
        slow.serve(otx);
        otx.on(
            &slow.pulse_path(),
            Reply::json(page(slow.value, json!(slow.created)))
                .with_head_delay(Duration::from_secs(4)),
        );
    };
    let request = json!([IP.observable(), slow.observable(), MD5.observable()]).to_string();
    let env = [("RELAY_DEADLINE", "2")];
    let run = check(serve, &env, "/observe/observables", &request);
    let (relay, otx, body) = (&run.relay, &run.otx, run.answer);
    // OTX work stops just before the answer is due, so the slow observable's
    // verdict (its /general answered) is always in the answer.
    let slow_verdicts: Vec<&Value> = body["data"]["verdicts"]["docs"]
        .as_array()
        .expect("verdicts")
        .iter()
        .filter(|v| v["observable"]["value"] == slow.value)
        .collect();
    assert_eq!(slow_verdicts.len(), 1, "{body:#}");
    assert_eq!(slow_verdicts[0]["disposition_name"], "Suspicious");
    check_json(
        &without_verdicts_of(body, slow.value),
        &json!({"data": data_of(&otx.url(), &[&IP, &MD5]), "errors": [timeout()]}),
    );
    assert_eq!(otx.requests_to(&slow.pulse_path()).len(), 1);
    assert_still_serves(relay);
}

// ---------------------------------------------------------------------------
// No OTX at all

#[test]
fn a_refused_connection_is_an_oops_error() {
    let closed = RefusedPort::bind();
    let relay = Relay::spawn(&format!("http://127.0.0.1:{}", closed.port()), &[], &[]);

    let (_, body) = relay.post_auth("/health", "");
    check_json(&body, &json!({"errors": [oops_any()]}));
    assert_no_secret(&body);

    // The three observables fail alike: one error, no data.
    let (_, body) = relay.post_auth("/observe/observables", &three_observables());
    check_json(&body, &json!({"errors": [oops_any()]}));
    assert_no_secret(&body);
    assert_still_serves(&relay);
}

// ---------------------------------------------------------------------------
// Lenient reading of OTX JSON

#[test]
fn odd_otx_json_drops_only_what_cannot_be_read() {
    const ODD_IP: &str = "203.0.113.10";
    const FULL: PulseSpec = PulseSpec::full("5f7b000000000000000000b1", "Full pulse");
    const BARE: PulseSpec = PulseSpec {
        id: "5f7b000000000000000000b2",
        name: Some("Bare pulse"),
        description: None,
        author: None,
        tags: None,
        tlp: None,
    };
    const FLOATY: PulseSpec = PulseSpec::full("5f7b000000000000000000b3", "Floaty pulse");
    const NUMERIC_CREATED: PulseSpec =
        PulseSpec::full("5f7b000000000000000000b4", "Record created is a number");
    let mut floaty = FLOATY.otx_json("IPv4");
    floaty["indicator_count"] = json!(2.0);
    floaty["indicator_type_counts"] = json!({"IPv4": 2.0, "domain": 1.5});
    floaty["unknown_field"] = json!({"nested": [1, {"deeper": null}]});
    let odd_general = json!({
        "base_indicator": {"type": "IPv4", "id": 1.5},
        "brand_new_top_level_field": [1, 2, 3],
        "pulse_info": {"count": 7.0, "pulses": [
            FULL.otx_json("IPv4"),
            "not a pulse",
            42,
            null,
            [],
            BARE.otx_json("IPv4"),
            floaty,
            NUMERIC_CREATED.otx_json("IPv4"),
        ]},
    });

    // Non-UTF-8 bytes inside a string of `/general`, served raw: a lone
    // Latin-1 `é` (0xE9), which a lenient reader turns into U+FFFD.
    const BYTES_DOMAIN: &str = "bytes.example";
    const LATIN1: PulseSpec = PulseSpec {
        description: Some("caf\u{fffd} au lait"),
        ..PulseSpec::full("5f7b000000000000000000b5", "Latin-1 description")
    };
    const CLEAN: PulseSpec = PulseSpec::full("5f7b000000000000000000b6", "Clean neighbour");
    let mut latin1 = LATIN1.otx_json("domain");
    latin1["description"] = json!("caf<E9> au lait");
    let text = json!({
        "base_indicator": {"type": "domain"},
        "pulse_info": {"pulses": [latin1, CLEAN.otx_json("domain")]},
    })
    .to_string();
    let (before, after) = text.split_once("<E9>").expect("the marker");
    let bytes_general = [before.as_bytes(), &[0xE9], after.as_bytes()].concat();
    assert!(std::str::from_utf8(&bytes_general).is_err());

    let serve = |otx: &FakeOtx| {
        otx.on(&general_path("IPv4", ODD_IP), Reply::json(odd_general));
        let records = [
            (FULL.id, json!("2021-01-01T00:00:00")),
            (BARE.id, json!("2021-02-01T00:00:00")),
            (FLOATY.id, json!("2021-03-01T00:00:00")),
            (NUMERIC_CREATED.id, json!(1_617_235_200)),
        ];
        for (id, created) in records {
            otx.on(&pulse_path(id), Reply::json(page(ODD_IP, created)));
        }
        for (value, general) in [
            ("203.0.113.11", json!({"base_indicator": {"type": "IPv4"}})),
            (
                "203.0.113.12",
                json!({"base_indicator": {"type": "IPv4"}, "pulse_info": null}),
            ),
            (
                "203.0.113.13",
                json!({"base_indicator": {"type": "IPv4"}, "pulse_info": {"pulses": {"id": FULL.id}}}),
            ),
        ] {
            otx.on(&general_path("IPv4", value), Reply::json(general));
        }
        otx.on(
            &general_path("domain", BYTES_DOMAIN),
            Reply::raw(200, &bytes_general).with_header("Content-Type", "application/json"),
        );
        otx.on(
            &pulse_path(LATIN1.id),
            Reply::json(page(BYTES_DOMAIN, json!("2020-05-05T05:05:05"))),
        );
        otx.on(
            &pulse_path(CLEAN.id),
            Reply::json(page(BYTES_DOMAIN, json!("2020-06-06T06:06:06"))),
        );
    };
    let ip = observable("ip", ODD_IP);
    let domain = observable("domain", BYTES_DOMAIN);
    let request = json!([
        ip,
        observable("ip", "203.0.113.11"),
        observable("ip", "203.0.113.12"),
        observable("ip", "203.0.113.13"),
        domain,
    ])
    .to_string();
    let run = check(serve, &[], "/observe/observables", &request);
    assert_eq!(run.status, 200);

    let base = run.otx.url();
    let mut expected = Expected::default();
    // Newest record first; the pulse whose record has a numeric `created` is
    // dropped, yet counts for the verdict (it holds the observable).
    expected.hit(&base, &ip, &FLOATY, "2021-03-01T00:00:00");
    expected.hit(&base, &ip, &BARE, "2021-02-01T00:00:00");
    expected.hit(&base, &ip, &FULL, "2021-01-01T00:00:00");
    expected.hit(&base, &domain, &CLEAN, "2020-06-06T06:06:06");
    expected.hit(&base, &domain, &LATIN1, "2020-05-05T05:05:05");
    expected.verdict(&base, &ip, "ip", 4);
    expected.verdict(&base, &domain, "domain", 2);
    check_json(&run.answer, &json!({"data": expected.data()}));
    assert_still_serves(&run.relay);
}

// ---------------------------------------------------------------------------
// Secrets

/// Answers of `/health` and `/observe` to an `Authorization` value: `error`,
/// and not one of `secrets` in the answer (nor, on `Drop`, in the logs).
#[track_caller]
fn check_no_echo(relay: &Relay, authorization: &str, error: Value, secrets: &[&str]) {
    for secret in secrets {
        relay.forbid(secret);
    }
    let request = json!([IP.observable()]).to_string();
    for (path, body) in [("/health", ""), ("/observe/observables", request.as_str())] {
        let (status, answer) = relay.post(path, Some(authorization), body);
        assert_eq!(status, 200, "{path}");
        check_json(&answer, &json!({"errors": [error]}));
        let text = answer.to_string();
        for secret in secrets {
            assert!(!text.contains(secret), "{path} echoes {secret:?}: {text}");
        }
        assert_no_secret(&answer);
    }
}

#[test]
fn errors_never_echo_a_header_value() {
    let otx = FakeOtx::start();
    otx.on(USER_ME, Reply::status(500));
    otx.on(&IP.general_path(), Reply::status(500));
    let relay = Relay::start(&otx, &[]);
    let auth = |message: &str| {
        error(
            "authorization error",
            &format!("Authorization failed: {message}"),
        )
    };

    check_no_echo(
        &relay,
        "Basic czNjcjN0LWhlYWRlcg==",
        auth("Wrong authorization type"),
        &["czNjcjN0LWhlYWRlcg=="],
    );
    check_no_echo(
        &relay,
        "Bearer not.a-jwt.s3cr3t-header-value",
        auth("Wrong JWT structure"),
        &["s3cr3t-header-value", "not.a-jwt"],
    );
    let forged = jwt(
        "another-secret-of-at-least-32-bytes!!",
        &json!({"key": "forged-k3y-value"}),
    );
    check_no_echo(
        &relay,
        &bearer(&forged),
        auth("Failed to decode JWT with provided key"),
        &[&forged, "forged-k3y-value"],
    );
    let spaced = jwt(SECRET, &json!({"key": "sp4ced key value"}));
    check_no_echo(
        &relay,
        &bearer(&spaced),
        otx_auth_error(),
        &[&spaced, "sp4ced key value"],
    );
    // A key that reaches OTX, which fails: the reason names no header.
    let weird = jwt(SECRET, &json!({"key": "w3ird-but-visible-key!$"}));
    check_no_echo(
        &relay,
        &bearer(&weird),
        oops("500 Internal Server Error"),
        &[&weird, "w3ird-but-visible-key!$"],
    );
    assert!(
        otx.requests()
            .iter()
            .all(|r| r.header("X-OTX-API-KEY") == Some("w3ird-but-visible-key!$")),
        "only the visible key is ever sent to OTX"
    );
    assert_still_serves(&relay);
}
