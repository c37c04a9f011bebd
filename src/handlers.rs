//! One function per endpoint: body → auth → OTX → CTIM → [`Reply`].
//!
//! The body is validated before the JWT (compatible). OTX work for one
//! request fans out on the OTX pool (observables in parallel, and each
//! observable's pulse lookups in parallel, one pool job per OTX exchange);
//! the handler waits for the results only until the request's deadline and
//! answers with what it has.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::app::App;
use crate::auth::{self, Claims};
use crate::ctim::{self, Bundle};
use crate::error::{envelope, RelayError};
use crate::http::{Body, Reply, Request};
use crate::observable::{parse_body, Observable};
use crate::otx::{self, Mode, Session};
use crate::verdict;
use crate::{respond, tiles};

/// The claims of the request's Bearer JWT, checked against `SECRET_KEY`
/// (or XDR's keys) now.
fn claims(app: &App, request: &Request) -> Result<Claims, RelayError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let verifier = auth::Verifier {
        secret: app.config.secret_key.as_deref(),
        audiences: &app.config.audiences,
        keys: Some(&app.jwks),
    };
    auth::verify_with(request.header("Authorization"), &verifier, now)
}

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

/// `GET /metrics`: the Prometheus text format 0.0.4, no token (SPEC §14).
pub fn metrics(app: &App) -> Reply {
    Reply::text(
        app.metrics.render(app.otx.cache_entries()),
        "text/plain; version=0.0.4; charset=utf-8",
    )
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
pub fn health(app: &Arc<App>, request: &Request) -> Reply {
    let claims = match claims(app, request) {
        Ok(claims) => claims,
        Err(e) => return Reply::error(e),
    };
    // Bounded by AVOTX_TIMEOUT per attempt and the retries, not by the
    // observe deadline.
    let budget = app.config.otx_timeout * (otx::MAX_RETRIES + 1) + Duration::from_secs(2);
    let session = Arc::new(Session::new(&claims.key, Instant::now() + budget));
    let result = app
        .otx
        .on_pool(&session, |otx, session| otx.check_key(session));
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

/// The deadline of a request's OTX work, a little before its answer is
/// due so that what it gathered (and its timeout error) is in the answer
/// rather than racing it.
fn work_deadline(app: &App, answer_by: Instant) -> Instant {
    let margin = (app.config.deadline / 10).min(Duration::from_millis(300));
    answer_by - margin
}

/// `POST /tiles` (any body): the tiles the relay offers.
pub fn tiles(app: &App, request: &Request) -> Reply {
    match claims(app, request) {
        Ok(_) => Reply::data(&tiles::TILES[..]),
        Err(e) => Reply::error(e),
    }
}

/// `POST /tiles/tile` `{"tile_id"}`: one tile.
pub fn tile(app: &App, request: &Request) -> Reply {
    let tile = match tile_request(&request.body, false).and_then(|(id, _)| tiles::find(&id)) {
        Ok(tile) => tile,
        Err(e) => return Reply::error(e),
    };
    match claims(app, request) {
        Ok(_) => Reply::data(tile),
        Err(e) => Reply::error(e),
    }
}

/// `POST /tiles/tile-data` `{"tile_id", "period"}`: a tile's data, from
/// the tenant's walk of that period (cached, shared, or made now within
/// `RELAY_DEADLINE`).
pub fn tile_data(app: &App, request: &Request) -> Reply {
    let checked = tile_request(&request.body, true).and_then(|(id, period)| {
        let tile = tiles::find(&id)?;
        Ok((
            tile,
            tiles::period(tile, period.as_deref().unwrap_or_default())?,
        ))
    });
    let (tile, period) = match checked {
        Ok(checked) => checked,
        Err(e) => return Reply::error(e),
    };
    let claims = match claims(app, request) {
        Ok(claims) => claims,
        Err(e) => return Reply::error(e),
    };
    let answer_by = Instant::now() + app.config.deadline;
    let session = Session::new(&claims.key, work_deadline(app, answer_by));
    let walk = app
        .otx
        .walk(&session, period, |now| tiles::Span::new(period, now).start);
    let data = tiles::data(
        tile,
        period,
        &walk,
        &app.config.otx_url,
        app.config.tile_cache_ttl,
    );
    let errors: Vec<RelayError> = walk.error.iter().cloned().collect();
    let mut reply = Reply::ok(&envelope(Some(data), &errors));
    reply.retries = session.retries();
    reply
}

/// `{"tile_id"}` (and `"period"` when `with_period`), both strings.
fn tile_request(body: &[u8], with_period: bool) -> Result<(String, Option<String>), RelayError> {
    let expected = if with_period {
        "Expected an object with a string tile_id and period."
    } else {
        "Expected an object with a string tile_id."
    };
    let invalid = || RelayError::InvalidPayload(expected.to_owned());
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| invalid())?;
    let text = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let id = text("tile_id").ok_or_else(invalid)?;
    let period = text("period");
    if with_period && period.is_none() {
        return Err(invalid());
    }
    Ok((id, period))
}

/// `POST /respond/observables`: the actions offered for the observables.
pub fn respond_observables(app: &App, request: &Request) -> Reply {
    let observables = match parse_body(&request.body) {
        Ok(o) => o,
        Err(e) => return Reply::error(e),
    };
    match claims(app, request) {
        Ok(claims) => Reply::data(respond::actions(
            &observables,
            claims.respond_pulse_id.as_deref(),
        )),
        Err(e) => Reply::error(e),
    }
}

/// `POST /respond/trigger`: one action, written to OTX (never retried but
/// on 429, so nothing is written twice).
pub fn respond_trigger(app: &Arc<App>, request: &Request) -> Reply {
    #[derive(Serialize)]
    struct Outcome {
        status: &'static str,
    }
    let failure = |e: RelayError| Reply::ok(&envelope(Some(Outcome { status: "failure" }), &[e]));
    let trigger = match respond::Trigger::parse(&request.body) {
        Ok(trigger) => trigger,
        Err(e) => return failure(e),
    };
    let claims = match claims(app, request) {
        Ok(claims) => claims,
        Err(e) => return Reply::error(e),
    };
    let write = match trigger.plan(claims.respond_pulse_id.as_deref()) {
        Ok(write) => write,
        Err(e) => return failure(e),
    };
    let answer_by = Instant::now() + app.config.deadline;
    let session = Session::new(&claims.key, work_deadline(app, answer_by));
    let session = Arc::new(session);
    let result = app.otx.on_pool(&session, move |otx, session| match &write {
        respond::Write::SubmitUrl { url } => otx.submit_url(session, url),
        respond::Write::AddToPulse {
            pulse_id,
            indicator,
            otx_type,
        } => otx.add_to_pulse(session, pulse_id, indicator, otx_type),
    });
    let mut reply = match result {
        Ok(()) => Reply::data(Outcome { status: "success" }),
        Err(e) => failure(e),
    };
    reply.retries = session.retries();
    reply
}

fn lookup(app: &Arc<App>, request: &Request, mode: Mode) -> Reply {
    let observables = match parse_body(&request.body) {
        Ok(o) => o,
        Err(e) => return Reply::error(e),
    };
    let claims = match claims(app, request) {
        Ok(c) => c,
        Err(e) => return Reply::error(e),
    };
    let limit = claims.entities_limit.unwrap_or(app.config.entities_limit);
    // OTX work stops a little before the answer is due, so that what it
    // gathered (and its timeout error) is in the answer rather than racing it.
    let answer_by = Instant::now() + app.config.deadline;
    let session = Arc::new(Session::new(&claims.key, work_deadline(app, answer_by)));

    // Identical observables are asked once and answered once; types OTX
    // cannot be asked about are dropped.
    let mut seen = HashSet::new();
    let distinct: Vec<Observable> = observables
        .into_iter()
        .filter(|o| o.kind.otx_section().is_some())
        .filter(|o| seen.insert(o.clone()))
        .collect();

    let results = app.otx.fan_out(&session, &distinct, mode, limit, answer_by);

    let mut errors = Vec::new();
    let mut data = LookupData::default();
    let mut named = Named::default();
    let mut any_ok = distinct.is_empty();
    let now = SystemTime::now();
    for (observable, lookup) in distinct.iter().zip(results) {
        // SPEC §15: after the observable's pulse sightings, whether or not
        // its `/general` answered.
        let passive_dns = lookup.passive_dns.and_then(|p| {
            let limit = app.config.passive_dns_limit;
            ctim::passive_dns_sighting(&app.config.otx_url, observable, &p, limit, now)
        });
        let found = match lookup.found {
            Some(Ok(found)) => found,
            Some(Err(e)) => {
                errors.push(e);
                any_ok |= data.passive_dns(passive_dns);
                continue;
            }
            None => {
                errors.push(RelayError::Timeout);
                any_ok |= data.passive_dns(passive_dns);
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
                    data.malwares.push(&malware);
                }
            }
            for attack in &pulse.attacks {
                let pattern = ctim::attack_pattern(attack);
                if named.link(&e.indicator.id, &pattern.id) {
                    data.attack_patterns.push(&pattern);
                }
            }
            data.sightings.push(&e.sighting);
            data.indicators.push(&e.indicator);
            data.relationships.push(&e.relationship);
        }
        data.passive_dns(passive_dns);
        if let Some(general) = found.general.as_ref() {
            if let Some(assessment) = verdict::assess(general, app.config.malicious_pulses) {
                let v = ctim::verdict(
                    &app.config.otx_url,
                    observable,
                    &assessment,
                    now,
                    app.config.verdict_valid_days,
                );
                data.judgements.push(&v.judgement);
                data.verdicts.push(&v.verdict);
            }
        }
    }
    // After every `member-of`, so that those keep the rank of their sighting.
    for relationship in &named.indicates {
        data.relationships.push(relationship);
    }
    let mut reply = Reply::body(data.answer(any_ok, &errors));
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
/// no malware or attack pattern. The docs are JSON already (see `Bundle`):
/// the answer is their concatenation, sized exactly, written once.
#[derive(Default)]
struct LookupData {
    attack_patterns: Bundle<ctim::AttackPattern>,
    indicators: Bundle<ctim::Indicator>,
    judgements: Bundle<ctim::Judgement>,
    malwares: Bundle<ctim::Malware>,
    relationships: Bundle<ctim::Relationship>,
    sightings: Bundle<ctim::Sighting>,
    verdicts: Bundle<ctim::CtimVerdict>,
}

impl LookupData {
    /// Adds an observable's passive DNS sighting, if any (counted against
    /// nothing, with no indicator or relationship); whether there was one.
    fn passive_dns(&mut self, sighting: Option<ctim::Sighting>) -> bool {
        sighting.inspect(|s| self.sightings.push(s)).is_some()
    }

    /// The answer's bytes: `{"data":{…},"errors":[…]}`, `data` only when
    /// `with_data`, `errors` only when there are some (as `envelope`).
    fn answer(self, with_data: bool, errors: &[RelayError]) -> Body {
        let kinds = [
            ("attack_patterns", self.attack_patterns.into_json()),
            ("indicators", self.indicators.into_json()),
            ("judgements", self.judgements.into_json()),
            ("malwares", self.malwares.into_json()),
            ("relationships", self.relationships.into_json()),
            ("sightings", self.sightings.into_json()),
            ("verdicts", self.verdicts.into_json()),
        ];
        // `{"errors":[…]}` or `{}`, from the one place errors become JSON.
        let errors = serde_json::to_vec(&envelope::<()>(None, errors)).unwrap_or_default();
        let errors = errors
            .get(1..errors.len().saturating_sub(1))
            .unwrap_or_default();
        let mut parts = Vec::new();
        let mut text = String::from("{");
        if with_data {
            text.push_str("\"data\":{");
            let mut first = true;
            for (name, (count, docs)) in kinds {
                if count == 0 {
                    continue;
                }
                if !first {
                    text.push(',');
                }
                first = false;
                text.push_str(&format!("\"{name}\":{{\"count\":{count},\"docs\":"));
                parts.push(std::mem::take(&mut text).into_bytes());
                parts.extend(docs);
                text.push_str("]}");
            }
            text.push('}');
            if !errors.is_empty() {
                text.push(',');
            }
        }
        text.push_str(&String::from_utf8_lossy(errors));
        text.push('}');
        parts.push(text.into_bytes());
        Body::parts(parts)
    }
}
