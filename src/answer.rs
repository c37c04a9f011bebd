//! What the relay answers, written in one place: the envelope `{"data",
//! "errors"}` and every error document (SPEC §3), JSON replies, the refer
//! links, and the CTIM answer of `/observe` and `/deliberate` assembled
//! from what OTX said, its docs written as JSON the moment they are made
//! and the answer sent as their concatenation.

use std::collections::HashSet;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::Config;
use crate::ctim;
use crate::error::RelayError;
use crate::http::{Body, Reply};
use crate::observable::Observable;
use crate::otx::{links, Lookup};
use crate::verdict;

/// `body` as JSON, HTTP 200.
pub fn ok(body: &impl Serialize) -> Reply {
    json(200, body)
}

/// `{"data": data}`.
pub fn data(data: impl Serialize) -> Reply {
    ok(&envelope(Some(data), &[]))
}

/// `{"data": data, "errors": [...]}`, HTTP 200: data with what went wrong
/// beside it.
pub fn partial(data: impl Serialize, errors: &[RelayError]) -> Reply {
    ok(&envelope(Some(data), errors))
}

/// A lone error, with its HTTP status.
pub fn error(error: RelayError) -> Reply {
    json(error.http_status(), &envelope::<()>(None, &[error]))
}

/// `body` as JSON with `status`.
pub fn json(status: u16, body: &impl Serialize) -> Reply {
    // The relay's documents hold only strings, numbers and string-keyed
    // structs: serializing them cannot fail. Should it, the client gets
    // an internal error rather than a half-written answer.
    let body = serde_json::to_vec(body).unwrap_or_else(|_| internal_error());
    Reply {
        status,
        body: body.into(),
        content_type: "application/json",
        retries: 0,
    }
}

/// The answer of a failure to write an answer.
fn internal_error() -> Vec<u8> {
    serde_json::to_vec(&envelope::<()>(None, &[RelayError::Internal])).unwrap_or_default()
}

/// `POST /refer/observables`: one "Search for this …" link an observable.
pub fn refer(base: &str, observables: &[Observable]) -> Reply {
    data(
        observables
            .iter()
            .map(|o| ctim::refer_link(o, links::indicator_page(base, o)))
            .collect::<Vec<_>>(),
    )
}

/// The answer of `/observe` or `/deliberate` from the lookups of the
/// (distinct) `observables`, one each, in their order; `now` dates the
/// verdicts and passive DNS sightings.
pub fn observe(
    config: &Config,
    observables: &[Observable],
    results: Vec<Lookup>,
    now: SystemTime,
) -> Reply {
    let mut errors = Vec::new();
    let mut data = Docs::default();
    let mut named = Named::default();
    let mut any_ok = observables.is_empty();
    for (observable, lookup) in observables.iter().zip(results) {
        // SPEC §15: after the observable's pulse sightings, whether or not
        // its `/general` answered.
        let passive_dns = lookup.passive_dns.and_then(|p| {
            let limit = config.passive_dns_limit;
            let page = links::indicator_page(&config.otx_url, observable);
            ctim::passive_dns_sighting(observable, &p, limit, now, page)
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
        for (pulse, record) in found.pairs() {
            let page = links::pulse_page(&config.otx_url, &pulse.id);
            let e = ctim::entities(observable, pulse, record, page);
            for name in &pulse.malware {
                let malware = ctim::malware(name, links::pulse_search(&config.otx_url, name));
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
            if let Some(assessment) = verdict::assess(general, config.malicious_pulses) {
                let v = ctim::verdict(
                    observable,
                    &assessment,
                    now,
                    config.verdict_valid_days,
                    links::indicator_page(&config.otx_url, observable),
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
    Reply::body(data.answer(any_ok, &errors))
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
/// no malware or attack pattern. The docs are JSON already (see [`Bundle`]):
/// the answer is their concatenation, sized exactly, written once.
#[derive(Default)]
struct Docs {
    attack_patterns: Bundle<ctim::AttackPattern>,
    indicators: Bundle<ctim::Indicator>,
    judgements: Bundle<ctim::Judgement>,
    malwares: Bundle<ctim::Malware>,
    relationships: Bundle<ctim::Relationship>,
    sightings: Bundle<ctim::Sighting>,
    verdicts: Bundle<ctim::CtimVerdict>,
}

impl Docs {
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
        // `"errors":[…]` when there are some, as `envelope` writes it.
        let errors = error_docs(errors);
        let errors = match serde_json::to_vec(&errors) {
            Ok(docs) if !errors.is_empty() => [&b"\"errors\":"[..], &docs].concat(),
            _ => Vec::new(),
        };
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
        text.push_str(&String::from_utf8_lossy(&errors));
        text.push('}');
        parts.push(text.into_bytes());
        Body::parts(parts)
    }
}

/// One error as the answer carries it: `{"code", "message", "type": "fatal"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorDoc {
    pub code: &'static str,
    pub message: String,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

/// The answer envelope: `{"data": …, "errors": […]}`, each part only when
/// present, written straight to the answer by serde.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorDoc>,
}

/// The envelope of `data` and `errors`, the errors de-duplicated on (code,
/// message), first one first. The one place errors become JSON.
pub fn envelope<T>(data: Option<T>, errors: &[RelayError]) -> Envelope<T> {
    Envelope {
        data,
        errors: error_docs(errors),
    }
}

/// The documents of `errors`, de-duplicated on (code, message), first one
/// first.
fn error_docs(errors: &[RelayError]) -> Vec<ErrorDoc> {
    let mut docs: Vec<ErrorDoc> = Vec::new();
    for e in errors {
        let doc = ErrorDoc {
            code: e.code(),
            message: e.message(),
            type_: "fatal",
        };
        if !docs.contains(&doc) {
            docs.push(doc);
        }
    }
    docs
}

/// `{"count": n, "docs": [...]}` of one kind of entity, each doc written
/// as JSON the moment it is added, so that a big answer holds its docs as
/// their text (about the answer's size) rather than as structs (several
/// times it); the count is the docs' number, always. The text goes into
/// chunks of about `CHUNK` bytes, never into one growing buffer: doubling
/// one would hold up to twice the text, and three times while it copies.
/// A doc is written to a scratch buffer first and goes whole into a chunk
/// with room for it, so that no chunk is reallocated once full-sized and
/// each is filled to within one doc of `CHUNK` (writing into the chunk
/// left up to an eighth of each empty: 11 % of a 2 000-observable answer,
/// by massif).
pub struct Bundle<T> {
    /// `[doc,doc,…` (the closing `]` is written when serialized).
    chunks: Vec<Vec<u8>>,
    count: usize,
    /// The doc being added.
    scratch: Vec<u8>,
    kind: std::marker::PhantomData<fn(T)>,
}

/// The size of a bundle's chunks.
const CHUNK: usize = 64 * 1024;

impl<T: Serialize> Bundle<T> {
    pub fn push(&mut self, doc: &T) {
        let scratch = &mut self.scratch;
        scratch.clear();
        scratch.push(if self.count == 0 { b'[' } else { b',' });
        // A struct of strings, numbers and string-keyed structs: writing it
        // to memory cannot fail.
        let _ = serde_json::to_writer(&mut *scratch, doc);
        let n = scratch.len();
        let first = self.chunks.len() == 1;
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() + n <= chunk.capacity() => chunk.extend_from_slice(scratch),
            // The first chunk grows as small answers need, in powers of
            // two up to CHUNK.
            Some(chunk) if first && chunk.len() + n <= CHUNK => {
                let want = (chunk.len() + n).next_power_of_two().min(CHUNK);
                chunk.reserve_exact(want - chunk.len());
                chunk.extend_from_slice(scratch);
            }
            last => {
                // Later chunks are made whole (a doc over CHUNK: its size).
                let capacity = if last.is_none() { n } else { CHUNK.max(n) };
                let mut chunk = Vec::with_capacity(capacity);
                chunk.extend_from_slice(scratch);
                self.chunks.push(chunk);
            }
        }
        self.count += 1;
    }
}

impl<T> Default for Bundle<T> {
    fn default() -> Bundle<T> {
        Bundle {
            chunks: Vec::new(),
            count: 0,
            scratch: Vec::new(),
            kind: std::marker::PhantomData,
        }
    }
}

impl<T> Bundle<T> {
    /// The count, and the docs as `[doc,doc,…` in chunks (no closing `]`;
    /// no chunk when there is no doc).
    pub fn into_json(self) -> (usize, Vec<Vec<u8>>) {
        (self.count, self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn envelope_dedups_errors_and_keeps_data() {
        let v = serde_json::to_value(envelope(
            Some(json!({})),
            &[
                RelayError::Timeout,
                RelayError::Timeout,
                RelayError::TooManyRequests,
            ],
        ))
        .expect("JSON");
        assert_eq!(v["errors"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["data"], json!({}));
        assert_eq!(v["errors"][0]["type"], "fatal");
    }

    #[test]
    fn a_bundle_is_its_docs_in_chunks_of_about_64_kib() {
        let mut bundle = Bundle::<Value>::default();
        assert_eq!(bundle.into_json(), (0, Vec::<Vec<u8>>::new()));
        bundle = Bundle::default();
        let doc = json!({"text": "x".repeat(1000)});
        (0..200).for_each(|_| bundle.push(&doc));
        let (count, chunks) = bundle.into_json();
        assert_eq!(count, 200);
        assert!(chunks.len() > 1 && chunks.iter().all(|c| c.len() <= CHUNK));
        // Each chunk but the last is full to within one doc, never regrown.
        let (last, full) = chunks.split_last().unwrap();
        assert!(full
            .iter()
            .all(|c| c.len() > CHUNK - 1100 && c.capacity() == CHUNK));
        assert!(!last.is_empty());
        let text = String::from_utf8(chunks.concat()).unwrap() + "]";
        assert_eq!(
            serde_json::from_str::<Vec<Value>>(&text).unwrap(),
            vec![doc; 200]
        );
    }

    #[test]
    fn a_failure_to_write_an_answer_is_an_internal_error() {
        assert_eq!(
            internal_error(),
            br#"{"errors":[{"code":"internal error","message":"Internal error.","type":"fatal"}]}"#
        );
    }
}
