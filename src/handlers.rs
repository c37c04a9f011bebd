//! One function per endpoint: body → auth → OTX → CTIM → [`Reply`].
//!
//! The body is validated before the JWT (compatible). OTX work for one
//! request fans out on the OTX pool (observables in parallel, and each
//! observable's pulse lookups in parallel, one pool job per OTX exchange);
//! the handler waits for the results only until the request's deadline and
//! answers with what it has.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use crate::app::App;
use crate::ctim;
use crate::error::{envelope, RelayError};
use crate::fan_out::{fan_out, Mode};
use crate::http::{Reply, Request};
use crate::observable::{parse_body, Observable};
use crate::otx::{self, Session};
use crate::verdict;

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
