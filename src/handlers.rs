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

use serde::Serialize;

use crate::app::App;
use crate::ctim::{self, Bundle};
use crate::error::{envelope, RelayError};
use crate::fan_out::{fan_out, Mode};
use crate::http::{Reply, Request};
use crate::observable::{parse_body, Observable};
use crate::otx::{self, Session};
use crate::verdict;

/// `POST /version`.
pub fn version() -> Reply {
    #[derive(Serialize)]
    struct Version {
        version: &'static str,
    }
    Reply::ok(&Version {
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /watchdog`: echoes `Health-Check`.
pub fn watchdog(request: &Request) -> Reply {
    match request.header("Health-Check") {
        Some(value) => Reply::data(value),
        None => Reply::error(RelayError::HealthCheckFailed),
    }
}

/// `POST /refer/observables`: no auth, no OTX.
pub fn refer(app: &App, request: &Request) -> Reply {
    match parse_body(&request.body) {
        Ok(observables) => Reply::data(
            observables
                .iter()
                .map(|o| ctim::refer_link(&app.config.otx_url, o))
                .collect::<Vec<_>>(),
        ),
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
        Ok(()) => {
            #[derive(Serialize)]
            struct Status {
                status: &'static str,
            }
            Reply::data(Status { status: "ok" })
        }
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
        .filter(|o| o.kind.otx_section().is_some())
        .filter(|o| seen.insert(o.clone()))
        .collect();

    let results = fan_out(app, &session, &distinct, mode, limit, answer_by);

    let mut errors = Vec::new();
    let mut data = LookupData::default();
    let mut named = Named::default();
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
            for name in &pulse.malware {
                let malware = ctim::malware(&app.config.otx_url, name);
                if named.link(&e.indicator.id, &malware.id) {
                    data.malwares.docs.push(malware);
                }
            }
            for attack in &pulse.attacks {
                let pattern = ctim::attack_pattern(attack);
                if named.link(&e.indicator.id, &pattern.id) {
                    data.attack_patterns.docs.push(pattern);
                }
            }
            data.sightings.docs.push(e.sighting);
            data.indicators.docs.push(e.indicator);
            data.relationships.docs.push(e.relationship);
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
                data.judgements.docs.push(v.judgement);
                data.verdicts.docs.push(v.verdict);
            }
        }
    }
    // After every `member-of`, so that those keep the rank of their sighting.
    data.relationships.docs.extend(named.indicates);
    let mut reply = Reply::ok(&envelope(any_ok.then_some(data), &errors));
    reply.retries = session.retries();
    reply
}

/// The malware and attack patterns named by the sighted pulses of one
/// answer (SPEC §13): each entity once, however many pulses (or case
/// variants) name it, the first spelling seen giving its title; and one
/// `indicates` per (indicator id, entity id). A pulse sighted twice (two
/// observables in it) gives two indicator docs with one id: its entities
/// are indicated once, since a second relationship would repeat the first
/// but for its random id. Counted against nothing: the entity limit is on
/// sightings.
#[derive(Default)]
struct Named {
    /// The entity ids emitted so far.
    entities: HashSet<String>,
    /// The (indicator id, entity id) pairs related so far.
    links: HashSet<(String, String)>,
    /// The `indicates` relationships, in the order of their sightings.
    indicates: Vec<ctim::Relationship>,
}

impl Named {
    /// Relates the indicator to the entity `id` (once), and tells whether
    /// the entity is new to the answer (its doc is then to be emitted).
    fn link(&mut self, indicator_id: &str, id: &str) -> bool {
        if self.links.insert((indicator_id.to_owned(), id.to_owned())) {
            self.indicates.push(ctim::indicates(indicator_id, id));
        }
        self.entities.insert(id.to_owned())
    }
}

/// What `/observe` and `/deliberate` answer: each kind of entity only when
/// it has docs (`{"data": {}}` when none); keys in alphabetical order.
/// `/deliberate` looks up no pulse record, so it has no sighted pulse and
/// no malware or attack pattern.
#[derive(Default, Serialize)]
struct LookupData {
    #[serde(skip_serializing_if = "Bundle::is_empty")]
    attack_patterns: Bundle<ctim::AttackPattern>,
    #[serde(skip_serializing_if = "Bundle::is_empty")]
    indicators: Bundle<ctim::Indicator>,
    #[serde(skip_serializing_if = "Bundle::is_empty")]
    judgements: Bundle<verdict::Judgement>,
    #[serde(skip_serializing_if = "Bundle::is_empty")]
    malwares: Bundle<ctim::Malware>,
    #[serde(skip_serializing_if = "Bundle::is_empty")]
    relationships: Bundle<ctim::Relationship>,
    #[serde(skip_serializing_if = "Bundle::is_empty")]
    sightings: Bundle<ctim::Sighting>,
    #[serde(skip_serializing_if = "Bundle::is_empty")]
    verdicts: Bundle<verdict::CtimVerdict>,
}
