//! One function per endpoint: body → auth → OTX → CTIM → [`Reply`].
//!
//! The body is validated before the JWT (compatible). OTX work for one
//! request fans out on the OTX pool (observables in parallel, and each
//! observable's pulse lookups in parallel, one pool job per OTX exchange);
//! the handler waits for the results only until the request's deadline and
//! answers with what it has.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::auth::{self, Claims};
use crate::config::Config;
use crate::ctim;
use crate::error::{envelope, RelayError};
use crate::observable::{parse_body, Observable};
use crate::otx::{self, General, Otx, Pulse, Record, Session};
use crate::routes::{Reply, Request};
use crate::verdict;

/// What every handler shares: the configuration and the OTX client.
pub struct App {
    pub config: Config,
    pub otx: Otx,
}

impl App {
    pub fn new(config: Config) -> Result<App, String> {
        let otx = Otx::new(&config)?;
        Ok(App { config, otx })
    }

    fn authorize(&self, request: &Request) -> Result<Claims, RelayError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        auth::verify(
            request.header("Authorization"),
            self.config.secret_key.as_deref(),
            now,
        )
    }
}

/// `POST /version`.
pub fn version() -> Reply {
    Reply::ok(json!({"version": env!("CARGO_PKG_VERSION")}))
}

/// `GET /watchdog`: echoes `Health-Check`.
pub fn watchdog(request: &Request) -> Reply {
    match request.header("Health-Check") {
        Some(value) => Reply::data(json!(value)),
        None => Reply::error(RelayError::HealthCheckFailed),
    }
}

/// `POST /refer/observables`: no auth, no OTX.
pub fn refer(app: &App, request: &Request) -> Reply {
    match parse_body(&request.body) {
        Ok(observables) => Reply::ok(json!({
            "data": observables
                .iter()
                .filter_map(|o| ctim::refer_link(&app.config.otx_url, o))
                .collect::<Vec<_>>()
        })),
        Err(e) => Reply::error(e),
    }
}

/// `POST /health`: the JWT, then the key at OTX.
pub fn health(app: &App, request: &Request) -> Reply {
    let claims = match app.authorize(request) {
        Ok(claims) => claims,
        Err(e) => return Reply::error(e),
    };
    // Bounded by AVOTX_TIMEOUT per attempt and the retries, not by the
    // observe deadline.
    let budget = app.config.otx_timeout * (otx::MAX_RETRIES + 1) + Duration::from_secs(2);
    let session = Session::new(&claims.key, Instant::now() + budget);
    // On the OTX pool, so AVOTX_CONCURRENCY bounds these calls too.
    let result = app.otx.pool().install(|| app.otx.check_key(&session));
    let mut reply = match result {
        Ok(()) => Reply::data(json!({"status": "ok"})),
        Err(e) => Reply::error(e),
    };
    reply.retries = session.retries();
    reply
}

/// `POST /observe/observables`.
pub fn observe(app: &Arc<App>, request: &Request) -> Reply {
    lookup(app, request, Mode::Observe)
}

/// `POST /deliberate/observables`.
pub fn deliberate(app: &Arc<App>, request: &Request) -> Reply {
    lookup(app, request, Mode::Deliberate)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `/general`, then each pulse's record: sightings and verdicts.
    Observe,
    /// `/general` only: verdicts.
    Deliberate,
}

/// What was learnt of one observable.
struct Found {
    general: Arc<Option<General>>,
    /// (pulse, record), newest record first, at most the entity limit.
    pairs: Vec<(Pulse, Record)>,
    /// Some pulse lookups were cut short by the deadline.
    timed_out: bool,
}

fn lookup(app: &Arc<App>, request: &Request, mode: Mode) -> Reply {
    let observables = match parse_body(&request.body) {
        Ok(o) => o,
        Err(e) => return Reply::error(e),
    };
    let claims = match app.authorize(request) {
        Ok(c) => c,
        Err(e) => return Reply::error(e),
    };
    let limit = claims.entities_limit.unwrap_or(app.config.entities_limit);
    // OTX work stops a little before the answer is due, so that what it
    // gathered (and its timeout error) is in the answer rather than racing it.
    let answer_by = Instant::now() + app.config.deadline;
    let margin = (app.config.deadline / 10).min(Duration::from_millis(300));
    let session = Arc::new(Session::new(&claims.key, answer_by - margin));

    // Identical observables are asked once and answered once; types OTX
    // cannot be asked about are dropped.
    let mut seen = HashSet::new();
    let distinct: Vec<Observable> = observables
        .into_iter()
        .filter(|o| o.kind().and_then(|k| k.otx_section()).is_some())
        .filter(|o| seen.insert(o.clone()))
        .collect();

    let results = fan_out(app, &session, &distinct, mode, limit, answer_by);

    let mut errors = Vec::new();
    let mut kinds: [Vec<Value>; 5] = Default::default();
    let [sightings, indicators, relationships, judgements, verdicts] = &mut kinds;
    let mut any_ok = distinct.is_empty();
    let now = SystemTime::now();
    for (observable, result) in distinct.iter().zip(results) {
        let found = match result {
            Some(Ok(found)) => found,
            Some(Err(e)) => {
                errors.push(e);
                continue;
            }
            None => {
                errors.push(RelayError::Timeout);
                continue;
            }
        };
        any_ok = true;
        if found.timed_out {
            errors.push(RelayError::Timeout);
        }
        for (pulse, record) in &found.pairs {
            let e = ctim::entities(&app.config.otx_url, observable, pulse, record);
            sightings.push(e.sighting);
            indicators.push(e.indicator);
            relationships.push(e.relationship);
        }
        if let Some(general) = found.general.as_ref() {
            if let Some(assessment) = verdict::assess(general, app.config.malicious_pulses) {
                let v = verdict::verdict(
                    &app.config.otx_url,
                    observable,
                    &assessment,
                    now,
                    app.config.verdict_valid_days,
                );
                judgements.push(v.judgement);
                verdicts.push(v.verdict);
            }
        }
    }

    let names = [
        "sightings",
        "indicators",
        "relationships",
        "judgements",
        "verdicts",
    ];
    let mut data = Map::new();
    for (name, docs) in names.into_iter().zip(kinds) {
        if !docs.is_empty() {
            data.insert(name.to_owned(), ctim::bundle(docs));
        }
    }
    let data = any_ok.then_some(Value::Object(data));
    let body = envelope(data, &errors);
    Reply {
        status: 200,
        body,
        retries: session.retries(),
    }
}

/// One piece of OTX work, done.
enum Done {
    /// Observable `i`'s `/general`.
    General(usize, Result<Arc<Option<General>>, RelayError>),
    /// Observable `i`'s record in its pulse `j`.
    Record(usize, usize, Result<Option<Record>, RelayError>),
}

/// What has come back for one observable.
#[derive(Default)]
struct Progress {
    general: Option<Result<Arc<Option<General>>, RelayError>>,
    /// One slot per pulse of `general`, filled as lookups return.
    records: Vec<Option<Result<Option<Record>, RelayError>>>,
    pending: usize,
}

/// Runs the OTX work of `observables` on the OTX pool and collects it until
/// `answer_by`; `None` for an observable whose `/general` is still out.
///
/// This thread (an HTTP worker) is the only one that waits: every pool job
/// is one OTX exchange that reports to it, and the pulse lookups of an
/// observable are spawned when its `/general` arrives. A pool thread never
/// waits on other jobs, so it can never be stuck behind another request's
/// work.
fn fan_out(
    app: &Arc<App>,
    session: &Arc<Session>,
    observables: &[Observable],
    mode: Mode,
    limit: usize,
    answer_by: Instant,
) -> Vec<Option<Result<Found, RelayError>>> {
    let observables = Arc::new(observables.to_vec());
    let (tx, rx) = mpsc::channel();
    let mut progress: Vec<Progress> = observables.iter().map(|_| Progress::default()).collect();
    for i in 0..observables.len() {
        let (session, observables) = (session.clone(), observables.clone());
        run(
            app,
            &tx,
            move |app| Done::General(i, app.otx.general(&session, &observables[i])),
            move |e| Done::General(i, Err(e)),
        );
    }
    let mut unfinished = observables.len();
    while unfinished > 0 {
        let left = answer_by.saturating_duration_since(Instant::now());
        let Ok(done) = rx.recv_timeout(left) else {
            break;
        };
        match done {
            Done::General(i, result) => {
                let pulses = match (&result, mode) {
                    (Ok(general), Mode::Observe) => {
                        general.as_ref().as_ref().map_or(&[][..], |g| &g.pulses[..])
                    }
                    _ => &[],
                };
                if let Ok(Some(g)) = result.as_ref().map(|g| g.as_ref()) {
                    if g.skipped > 0 {
                        crate::log::warn(format_args!(
                            "{} pulse(s) without an id skipped for one {} observable",
                            g.skipped, observables[i].type_
                        ));
                    }
                }
                for (j, pulse) in pulses.iter().enumerate() {
                    let (session, observables, id) =
                        (session.clone(), observables.clone(), pulse.id.clone());
                    run(
                        app,
                        &tx,
                        move |app| {
                            Done::Record(i, j, app.otx.find_record(&session, &id, &observables[i]))
                        },
                        move |e| Done::Record(i, j, Err(e)),
                    );
                }
                progress[i].records = pulses.iter().map(|_| None).collect();
                progress[i].pending = pulses.len();
                if pulses.is_empty() {
                    unfinished -= 1;
                }
                progress[i].general = Some(result);
            }
            Done::Record(i, j, result) => {
                progress[i].records[j] = Some(result);
                progress[i].pending -= 1;
                if progress[i].pending == 0 {
                    unfinished -= 1;
                }
            }
        }
    }
    progress.into_iter().map(|p| found(p, limit)).collect()
}

/// Runs `work` on the OTX pool and sends what it gives; a panic in it is
/// reported as an internal error of that piece of work only.
fn run(
    app: &Arc<App>,
    tx: &mpsc::Sender<Done>,
    work: impl FnOnce(&App) -> Done + Send + 'static,
    failed: impl FnOnce(RelayError) -> Done + Send + 'static,
) {
    let (app2, tx) = (app.clone(), tx.clone());
    app.otx.pool().spawn(move || {
        let done = catch_unwind(AssertUnwindSafe(|| work(&app2)))
            .unwrap_or_else(|_| failed(RelayError::Oops("internal error".to_owned())));
        // The handler may have answered already (deadline): nothing to do.
        let _ = tx.send(done);
    });
}

/// One observable's result from what came back: its records newest first,
/// at most `limit`; lookups still out or cut by the deadline mark it timed
/// out; other failed lookups drop their pulse (logged).
fn found(progress: Progress, limit: usize) -> Option<Result<Found, RelayError>> {
    let general = match progress.general? {
        Ok(general) => general,
        Err(e) => return Some(Err(e)),
    };
    let mut found = Found {
        general: general.clone(),
        pairs: Vec::new(),
        timed_out: false,
    };
    if let Some(g) = general.as_ref() {
        for (pulse, record) in g.pulses.iter().zip(progress.records) {
            match record {
                Some(Ok(Some(record))) => found.pairs.push((pulse.clone(), record)),
                Some(Ok(None)) => {}
                None | Some(Err(RelayError::Timeout)) => found.timed_out = true,
                Some(Err(e)) => otx::warn_dropped_pulse(&pulse.id, &e),
            }
        }
    }
    // Newest record first; a stable sort keeps OTX's order among equals.
    found.pairs.sort_by(|a, b| b.1.created.cmp(&a.1.created));
    found.pairs.truncate(limit);
    Some(Ok(found))
}
