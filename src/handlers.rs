//! One function per endpoint: body → auth → OTX → [`answer`] → [`Reply`].
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

use crate::answer;
use crate::app::App;
use crate::auth::{self, Claims};
use crate::error::RelayError;
use crate::http::{Reply, Request};
use crate::observable::{parse_body, Observable};
use crate::otx::{self, Mode, Session};
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
    answer::ok(&Version {
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
        Some(value) => answer::data(value),
        None => answer::error(RelayError::HealthCheckFailed),
    }
}

/// `POST /refer/observables`: no auth, no OTX.
pub fn refer(app: &App, request: &Request) -> Reply {
    match parse_body(&request.body) {
        Ok(observables) => answer::refer(&app.config.otx_url, &observables),
        Err(e) => answer::error(e),
    }
}

/// `POST /health`: the JWT, then the key at OTX.
pub fn health(app: &Arc<App>, request: &Request) -> Reply {
    let claims = match claims(app, request) {
        Ok(claims) => claims,
        Err(e) => return answer::error(e),
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
            answer::data(Status { status: "ok" })
        }
        Err(e) => answer::error(e),
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
        Ok(_) => answer::data(&tiles::TILES[..]),
        Err(e) => answer::error(e),
    }
}

/// `POST /tiles/tile` `{"tile_id"}`: one tile.
pub fn tile(app: &App, request: &Request) -> Reply {
    let tile = match tile_request(&request.body, false).and_then(|(id, _)| tiles::find(&id)) {
        Ok(tile) => tile,
        Err(e) => return answer::error(e),
    };
    match claims(app, request) {
        Ok(_) => answer::data(tile),
        Err(e) => answer::error(e),
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
        Err(e) => return answer::error(e),
    };
    let claims = match claims(app, request) {
        Ok(claims) => claims,
        Err(e) => return answer::error(e),
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
    let mut reply = answer::partial(data, &errors);
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
        Err(e) => return answer::error(e),
    };
    match claims(app, request) {
        Ok(claims) => answer::data(respond::actions(
            &observables,
            claims.respond_pulse_id.as_deref(),
        )),
        Err(e) => answer::error(e),
    }
}

/// `POST /respond/trigger`: one action, written to OTX (never retried but
/// on 429, so nothing is written twice).
pub fn respond_trigger(app: &Arc<App>, request: &Request) -> Reply {
    #[derive(Serialize)]
    struct Outcome {
        status: &'static str,
    }
    let failure = |e: RelayError| answer::partial(Outcome { status: "failure" }, &[e]);
    let trigger = match respond::Trigger::parse(&request.body) {
        Ok(trigger) => trigger,
        Err(e) => return failure(e),
    };
    let claims = match claims(app, request) {
        Ok(claims) => claims,
        Err(e) => return answer::error(e),
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
            observable,
        } => otx.add_to_pulse(session, pulse_id, observable),
    });
    let mut reply = match result {
        Ok(()) => answer::data(Outcome { status: "success" }),
        Err(e) => failure(e),
    };
    reply.retries = session.retries();
    reply
}

fn lookup(app: &Arc<App>, request: &Request, mode: Mode) -> Reply {
    let observables = match parse_body(&request.body) {
        Ok(o) => o,
        Err(e) => return answer::error(e),
    };
    let claims = match claims(app, request) {
        Ok(c) => c,
        Err(e) => return answer::error(e),
    };
    let limit = claims.entities_limit.unwrap_or(app.config.entities_limit);
    // OTX work stops a little before the answer is due, so that what it
    // gathered (and its timeout error) is in the answer rather than racing it.
    let answer_by = Instant::now() + app.config.deadline;
    let session = Arc::new(Session::new(&claims.key, work_deadline(app, answer_by)));

    // Identical observables are asked once and answered once; types OTX
    // cannot be asked about are dropped.
    let mut seen = HashSet::new();
    let keep: Vec<bool> = (observables.iter())
        .map(|o| otx::askable(o.kind) && seen.insert(o))
        .collect();
    drop(seen);
    // Shared with the OTX jobs, not copied for them.
    let distinct: Arc<[Observable]> = (observables.into_iter().zip(keep))
        .filter_map(|(o, keep)| keep.then_some(o))
        .collect();

    let results = app.otx.fan_out(&session, &distinct, mode, limit, answer_by);

    let mut reply = answer::observe(&app.config, &distinct, results, SystemTime::now());
    reply.retries = session.retries();
    reply
}
