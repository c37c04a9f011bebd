//! The fan-out scheduler: one request's OTX work on the OTX pool, one pool
//! job per OTX exchange (observables in parallel, and each observable's
//! pulse lookups in parallel once its `/general` is in; its passive DNS
//! beside its `/general`), collected by the calling HTTP worker until the
//! request's deadline. The jobs go to the tenant's own queue of the pool,
//! which serves tenants in turn.

use std::mem;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
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
    /// (index of the pulse in `general`, its record), newest record first,
    /// at most the entity limit: the pulses are not copied (a copy of every
    /// sighted pulse was a fifth of the heap of a 2 000-observable answer,
    /// by massif).
    records: Vec<(usize, Record)>,
    /// Some pulse lookups were cut short by the deadline.
    pub timed_out: bool,
}

impl Found {
    /// (pulse, record), newest record first, at most the entity limit.
    pub fn pairs(&self) -> impl Iterator<Item = (&Pulse, &Record)> {
        let pulses = self
            .general
            .as_ref()
            .as_ref()
            .map_or(&[][..], |g| &g.pulses[..]);
        (self.records.iter()).filter_map(|(i, record)| Some((pulses.get(*i)?, record)))
    }
}

/// What was learnt of one observable, its passive DNS included.
pub struct Lookup {
    /// `None` while its `/general` is still out.
    pub found: Option<Result<Found, RelayError>>,
    /// What OTX's passive DNS saw, when it was asked and answered; a
    /// failure is logged here and is not the client's (SPEC §15).
    pub passive_dns: Option<Arc<PassiveDns>>,
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

/// One request's OTX work, as its jobs leave it.
struct Work {
    state: Mutex<State>,
    /// Told once, when the last observable is done.
    done: Condvar,
    otx: Arc<Otx>,
    session: Arc<Session>,
    tenant: Tenant,
    observables: Arc<[Observable]>,
    mode: Mode,
}

struct State {
    /// Empty once the handler has stopped waiting: what comes back later
    /// is dropped, and a late `/general` starts no pulse lookups.
    progress: Vec<Progress>,
    /// Observables whose work is not all back.
    unfinished: usize,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Otx {
    /// Runs the OTX work of `observables` on the OTX pool and collects it
    /// until `answer_by`, one [`Lookup`] per observable.
    ///
    /// This thread (an HTTP worker) is the only one that waits, and it is
    /// woken once: each pool job is one OTX exchange that leaves its result
    /// in the request's shared state, the job of a `/general` starts its
    /// pulse lookups itself, and the job that finishes the request's last
    /// observable tells the waiting worker. (With a message to the worker
    /// per exchange, each of a cold `/observe`'s answers cost a futex
    /// wake-up and a context switch on each side: an eighth of the relay's
    /// CPU, by perf.) A pool thread never waits on other jobs, so it can
    /// never be stuck behind another request's work.
    pub fn fan_out(
        self: &Arc<Self>,
        session: &Arc<Session>,
        observables: &Arc<[Observable]>,
        mode: Mode,
        limit: usize,
        answer_by: Instant,
    ) -> Vec<Lookup> {
        let passive_dns = mode == Mode::Observe && self.passive_dns_on;
        let asks_passive_dns = |o: &Observable| passive_dns && o.kind.has_passive_dns();
        // Every job counted before any starts: a job may finish at once.
        let progress = observables
            .iter()
            .map(|o| Progress {
                passive_dns_asked: asks_passive_dns(o),
                pending: 1 + usize::from(asks_passive_dns(o)),
                ..Progress::default()
            })
            .collect();
        let work = Arc::new(Work {
            state: Mutex::new(State {
                progress,
                unfinished: observables.len(),
            }),
            done: Condvar::new(),
            otx: self.clone(),
            session: session.clone(),
            tenant: *session.tenant(),
            observables: observables.clone(),
            mode,
        });
        for i in 0..observables.len() {
            let work2 = work.clone();
            self.pool.spawn(&work.tenant, move || general(&work2, i));
        }
        // Passive DNS in the same wave as `/general` (SPEC §15): no round trip
        // added; queued after the `/general`s, before any pulse lookup.
        for (i, observable) in observables.iter().enumerate() {
            if asks_passive_dns(observable) {
                let work2 = work.clone();
                self.pool
                    .spawn(&work.tenant, move || passive_dns_job(&work2, i));
            }
        }
        let mut state = lock(&work.state);
        while state.unfinished > 0 {
            let left = answer_by.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = work
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let progress = mem::take(&mut state.progress);
        drop(state);
        (progress.into_iter().zip(observables.iter()))
            .map(|(p, observable)| lookup(p, observable, limit))
            .collect()
    }
}

/// `work`, and a panic in it reported as an internal error of that piece
/// of work only.
fn guarded<T>(work: impl FnOnce() -> Result<T, RelayError>) -> Result<T, RelayError> {
    catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(RelayError::Oops("internal error".to_owned())))
}

/// The job of observable `i`'s `/general`: its result kept, then its pulse
/// lookups started (observe only).
fn general(work: &Arc<Work>, i: usize) {
    let observable = &work.observables[i];
    let result = guarded(|| work.otx.general(&work.session, observable));
    if let Ok(Some(g)) = result.as_ref().map(|g| g.as_ref()) {
        if g.skipped > 0 {
            crate::log::warn(format_args!(
                "{} pulse(s) without an id skipped for one {} observable",
                g.skipped,
                observable.kind.type_name()
            ));
        }
    }
    let ids: Vec<String> = match (&result, work.mode) {
        (Ok(general), Mode::Observe) => general.as_ref().as_ref().map_or(Vec::new(), |g| {
            g.pulses.iter().map(|p| p.id.clone()).collect()
        }),
        _ => Vec::new(),
    };
    {
        let mut state = lock(&work.state);
        let Some(progress) = state.progress.get_mut(i) else {
            return; // answered already: nothing more to look up
        };
        progress.records = ids.iter().map(|_| None).collect();
        progress.pending += ids.len();
        progress.general = Some(result);
        finish_one(work, &mut state, i);
    }
    // The last lookup runs here, on the thread already awake: one pool
    // hand-off (a wake-up and a sleep) fewer per observable.
    let mut ids = ids.into_iter().enumerate();
    let here = ids.next_back();
    for (j, id) in ids {
        let work2 = work.clone();
        work.otx
            .pool
            .spawn(&work.tenant, move || record(&work2, i, j, &id));
    }
    if let Some((j, id)) = here {
        record(work, i, j, &id);
    }
}

/// The job of observable `i`'s record in its pulse `j`, `pulse_id`.
fn record(work: &Work, i: usize, j: usize, pulse_id: &str) {
    let observable = &work.observables[i];
    let result = guarded(|| work.otx.find_record(&work.session, pulse_id, observable));
    let mut state = lock(&work.state);
    let Some(progress) = state.progress.get_mut(i) else {
        return;
    };
    progress.records[j] = Some(result);
    finish_one(work, &mut state, i);
}

/// The job of observable `i`'s passive DNS.
fn passive_dns_job(work: &Work, i: usize) {
    let observable = &work.observables[i];
    let result = guarded(|| work.otx.passive_dns(&work.session, observable));
    let mut state = lock(&work.state);
    let Some(progress) = state.progress.get_mut(i) else {
        return;
    };
    progress.passive_dns = Some(result);
    finish_one(work, &mut state, i);
}

/// Counts one job of observable `i` done; when it was its last, one
/// observable fewer is unfinished, and the last one wakes the handler.
fn finish_one(work: &Work, state: &mut State, i: usize) {
    let Some(progress) = state.progress.get_mut(i) else {
        return;
    };
    progress.pending -= 1;
    if progress.pending == 0 {
        state.unfinished -= 1;
        if state.unfinished == 0 {
            work.done.notify_one();
        }
    }
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
        records: Vec::new(),
        timed_out: false,
    };
    if let Some(g) = general.as_ref() {
        // Sized once: these live until the request is answered.
        found.records.reserve_exact(g.pulses.len().min(limit));
        for (i, (pulse, record)) in g.pulses.iter().zip(progress.records).enumerate() {
            match record {
                Some(Ok(Some(record))) => found.records.push((i, record)),
                Some(Ok(None)) => {}
                None | Some(Err(RelayError::Timeout)) => found.timed_out = true,
                Some(Err(e)) => super::warn_dropped_pulse(&pulse.id, &e),
            }
        }
    }
    // Newest record first; a stable sort keeps OTX's order among equals.
    found.records.sort_by(|a, b| b.1.created.cmp(&a.1.created));
    found.records.truncate(limit);
    Some(Ok(found))
}
