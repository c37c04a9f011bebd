//! The fan-out scheduler: one request's OTX work on the OTX pool, one pool
//! job per OTX exchange (observables in parallel, and each observable's
//! pulse lookups in parallel once its `/general` is in; its passive DNS
//! beside its `/general`), collected by the calling HTTP worker until the
//! request's deadline. The jobs go to the tenant's own queue of the pool,
//! which serves tenants in turn.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use super::pool::Tenant;
use super::{Otx, Session};
use crate::error::RelayError;
use crate::intel::{General, PassiveDns, Pulse, Record};
use crate::observable::Observable;

/// What the OTX work of a request covers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `/general`, then each pulse's record: sightings and verdicts; and
    /// passive DNS (unless `PASSIVE_DNS=off`).
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

/// What was learnt of one observable, its passive DNS included.
pub struct Lookup {
    /// `None` while its `/general` is still out.
    pub found: Option<Result<Found, RelayError>>,
    /// What OTX's passive DNS saw, when it was asked and answered; a
    /// failure is logged here and is not the client's (SPEC §15).
    pub passive_dns: Option<Arc<PassiveDns>>,
}

/// One piece of OTX work, done.
enum Done {
    /// Observable `i`'s `/general`.
    General(usize, Result<Arc<Option<General>>, RelayError>),
    /// Observable `i`'s record in its pulse `j`.
    Record(usize, usize, Result<Option<Record>, RelayError>),
    /// Observable `i`'s passive DNS.
    PassiveDns(usize, Result<Arc<PassiveDns>, RelayError>),
}

/// What has come back for one observable.
#[derive(Default)]
struct Progress {
    general: Option<Result<Arc<Option<General>>, RelayError>>,
    /// One slot per pulse of `general`, filled as lookups return.
    records: Vec<Option<Result<Option<Record>, RelayError>>>,
    /// Whether its passive DNS was asked, and what came back.
    passive_dns_asked: bool,
    passive_dns: Option<Result<Arc<PassiveDns>, RelayError>>,
    /// Jobs still out: its `/general` (until it returns), its pulse
    /// lookups, its passive DNS.
    pending: usize,
}

impl Otx {
    /// Runs the OTX work of `observables` on the OTX pool and collects it
    /// until `answer_by`, one [`Lookup`] per observable.
    ///
    /// This thread (an HTTP worker) is the only one that waits: every pool
    /// job is one OTX exchange that reports to it, and the pulse lookups of
    /// an observable are spawned when its `/general` arrives. A pool thread
    /// never waits on other jobs, so it can never be stuck behind another
    /// request's work.
    pub fn fan_out(
        self: &Arc<Self>,
        session: &Arc<Session>,
        observables: &[Observable],
        mode: Mode,
        limit: usize,
        answer_by: Instant,
    ) -> Vec<Lookup> {
        let otx = self;
        let observables = Arc::new(observables.to_vec());
        let tenant = *session.tenant();
        let (tx, rx) = mpsc::channel();
        let mut progress: Vec<Progress> = observables.iter().map(|_| Progress::default()).collect();
        for i in 0..observables.len() {
            let (session, observables) = (session.clone(), observables.clone());
            run(
                otx,
                &tenant,
                &tx,
                move |otx| Done::General(i, otx.general(&session, &observables[i])),
                move |e| Done::General(i, Err(e)),
            );
            progress[i].pending = 1;
        }
        // Passive DNS in the same wave as `/general` (SPEC §15): no round trip
        // added; queued after the `/general`s, before any pulse lookup.
        let passive_dns = mode == Mode::Observe && otx.passive_dns_on;
        for i in 0..observables.len() {
            if !passive_dns || !observables[i].kind.has_passive_dns() {
                continue;
            }
            let (session, observables) = (session.clone(), observables.clone());
            run(
                otx,
                &tenant,
                &tx,
                move |otx| Done::PassiveDns(i, otx.passive_dns(&session, &observables[i])),
                move |e| Done::PassiveDns(i, Err(e)),
            );
            progress[i].passive_dns_asked = true;
            progress[i].pending += 1;
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
                            otx,
                            &tenant,
                            &tx,
                            move |otx| {
                                Done::Record(i, j, otx.find_record(&session, &id, &observables[i]))
                            },
                            move |e| Done::Record(i, j, Err(e)),
                        );
                    }
                    progress[i].records = pulses.iter().map(|_| None).collect();
                    progress[i].pending += pulses.len();
                    progress[i].general = Some(result);
                    unfinished -= finish_one(&mut progress[i]);
                }
                Done::Record(i, j, result) => {
                    progress[i].records[j] = Some(result);
                    unfinished -= finish_one(&mut progress[i]);
                }
                Done::PassiveDns(i, result) => {
                    progress[i].passive_dns = Some(result);
                    unfinished -= finish_one(&mut progress[i]);
                }
            }
        }
        (progress.into_iter().zip(observables.iter()))
            .map(|(p, observable)| lookup(p, observable, limit))
            .collect()
    }
}

/// Counts one job of the observable done: 1 when it was its last.
fn finish_one(progress: &mut Progress) -> usize {
    progress.pending -= 1;
    usize::from(progress.pending == 0)
}

/// One observable's lookup from what came back: its `found`, and its
/// passive DNS unless that failed or is still out (then logged).
fn lookup(mut progress: Progress, observable: &Observable, limit: usize) -> Lookup {
    let passive_dns = match progress.passive_dns.take() {
        Some(Ok(passive_dns)) => Some(passive_dns),
        Some(Err(e)) => {
            super::warn_passive_dns_failed(observable.kind, &e);
            None
        }
        None if progress.passive_dns_asked => {
            super::warn_passive_dns_failed(observable.kind, &RelayError::Timeout);
            None
        }
        None => None,
    };
    Lookup {
        found: found(progress, limit),
        passive_dns,
    }
}

/// Runs `work` on the OTX pool, in `tenant`'s queue, and sends what it
/// gives; a panic in it is reported as an internal error of that piece of
/// work only.
fn run(
    otx: &Arc<Otx>,
    tenant: &Tenant,
    tx: &mpsc::Sender<Done>,
    work: impl FnOnce(&Otx) -> Done + Send + 'static,
    failed: impl FnOnce(RelayError) -> Done + Send + 'static,
) {
    let (otx2, tx) = (otx.clone(), tx.clone());
    otx.pool.spawn(tenant, move || {
        let done = catch_unwind(AssertUnwindSafe(|| work(&otx2)))
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
                Some(Err(e)) => super::warn_dropped_pulse(&pulse.id, &e),
            }
        }
    }
    // Newest record first; a stable sort keeps OTX's order among equals.
    found.pairs.sort_by(|a, b| b.1.created.cmp(&a.1.created));
    found.pairs.truncate(limit);
    Some(Ok(found))
}
