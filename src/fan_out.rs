//! The fan-out scheduler: one request's OTX work on the OTX pool, one pool
//! job per OTX exchange (observables in parallel, and each observable's
//! pulse lookups in parallel once its `/general` is in), collected by the
//! calling HTTP worker until the request's deadline. The jobs go to the
//! tenant's own queue of the pool, which serves tenants in turn.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use crate::app::App;
use crate::error::RelayError;
use crate::observable::Observable;
use crate::otx::{self, Session};
use crate::pool::Tenant;
use crate::pulse::{General, Pulse, Record};

/// What the OTX work of a request covers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `/general`, then each pulse's record: sightings and verdicts.
    Observe,
    /// `/general` only: verdicts.
    Deliberate,
}

/// What was learnt of one observable.
pub struct Found {
    pub general: Arc<Option<General>>,
    /// (pulse, record), newest record first, at most the entity limit.
    pub pairs: Vec<(Pulse, Record)>,
    /// Some pulse lookups were cut short by the deadline.
    pub timed_out: bool,
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
pub fn fan_out(
    app: &Arc<App>,
    session: &Arc<Session>,
    observables: &[Observable],
    mode: Mode,
    limit: usize,
    answer_by: Instant,
) -> Vec<Option<Result<Found, RelayError>>> {
    let observables = Arc::new(observables.to_vec());
    let tenant = *session.tenant();
    let (tx, rx) = mpsc::channel();
    let mut progress: Vec<Progress> = observables.iter().map(|_| Progress::default()).collect();
    for i in 0..observables.len() {
        let (session, observables) = (session.clone(), observables.clone());
        run(
            app,
            &tenant,
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
                            g.skipped,
                            observables[i].kind.type_name()
                        ));
                    }
                }
                for (j, pulse) in pulses.iter().enumerate() {
                    let (session, observables, id) =
                        (session.clone(), observables.clone(), pulse.id.clone());
                    run(
                        app,
                        &tenant,
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

/// Runs `work` on the OTX pool, in `tenant`'s queue, and sends what it
/// gives; a panic in it is reported as an internal error of that piece of
/// work only.
fn run(
    app: &Arc<App>,
    tenant: &Tenant,
    tx: &mpsc::Sender<Done>,
    work: impl FnOnce(&App) -> Done + Send + 'static,
    failed: impl FnOnce(RelayError) -> Done + Send + 'static,
) {
    let (app2, tx) = (app.clone(), tx.clone());
    app.otx.pool().spawn(tenant, move || {
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
