//! `POST /observe/observables` end to end (SPEC §4, §6, and the verdict
//! docs of §7 that ride along). This file holds the family's fixtures: the
//! synthetic OTX answers, the expected CTIM answer built entity by entity,
//! and the one `check` of a case; the cases are by area:
//!
//! - [`requests`]: what OTX is asked (sections, quoting, pages, the pulse
//!   filter, case rules);
//! - [`documents`]: the CTIM answer (the recorded IPv4 sample, the parts that
//!   fail alone, the input order, text caps, absent fields);
//! - [`limits`]: the order of the records and the entities limit;
//! - [`samples`]: the recorded OTX samples;
//! - [`named`]: the malware and ATT&CK entities of the sighted pulses
//!   (SPEC §13);
//! - [`passive_dns`]: the passive DNS sighting and hostnames (SPEC §15).

mod documents;
mod limits;
mod named;
mod passive_dns;
mod requests;
mod samples;

use serde_json::{json, Value};

use crate::support::*;

const OBSERVE: &str = "/observe/observables";
const USER_AGENT: &str = "SecureX Threat Response Integrations <tr-integrations-support@cisco.com>";

/// The IP of the recorded `general-ipv4.json`.
const SAMPLE_IP: &str = "151.106.3.179";

/// The IP most synthetic cases look up (TEST-NET-2).
pub(crate) const IP: &str = "198.51.100.7";

// ---------------------------------------------------------------------------
// What the fake OTX serves

pub(crate) fn general_path(section: &str, quoted: &str) -> String {
    format!("/api/v1/indicators/{section}/{quoted}/general")
}

pub(crate) fn passive_dns_path(section: &str, quoted: &str) -> String {
    format!("/api/v1/indicators/{section}/{quoted}/passive_dns")
}

pub(crate) fn pulse_path(pulse_id: &str) -> String {
    format!("/api/v1/pulses/{pulse_id}/indicators")
}

/// A synthetic `/general` answer whose base indicator has `base_type`.
pub(crate) fn general(base_type: &str, pulses: Vec<Value>) -> Value {
    json!({
        "base_indicator": {"type": base_type, "title": "", "description": "", "content": ""},
        "pulse_info": {"count": pulses.len(), "pulses": pulses, "references": []},
        "false_positive": [],
        "validation": [],
    })
}

/// A synthetic pulse as `/general` lists it, counting `base_type` indicators,
/// with every optional field set (see `found` for its CTIM).
pub(crate) fn pulse(id: &str, base_type: &str) -> Value {
    json!({
        "id": id,
        "name": format!("Pulse {id}"),
        "description": format!("About pulse {id}"),
        "author": {"id": "7", "username": format!("author-{id}")},
        "TLP": "amber",
        "tags": ["malware", id],
        "indicator_count": 3,
        "indicator_type_counts": {base_type: 3},
        "created": "2019-01-01T00:00:00.000000",
    })
}

/// One record of a pulse's indicator list, without expiration.
pub(crate) fn record(indicator: &str, created: &str) -> Value {
    json!({
        "id": 361850,
        "indicator": indicator,
        "type": "IPv4",
        "created": created,
        "content": "",
        "title": "",
        "description": "",
        "expiration": null,
        "is_active": 1,
    })
}

/// A page of pulse indicators; `more` gives it a `next` link.
fn page(records: Vec<Value>, more: bool) -> Reply {
    let next = more.then_some("https://otx.alienvault.com/api/v1/pulses/x/indicators?page=9");
    Reply::json(json!({
        "count": records.len(),
        "next": next,
        "previous": null,
        "results": records,
    }))
}

/// Serves `pulse_id`'s indicator list as one page holding `records`.
pub(crate) fn serve_records(otx: &FakeOtx, pulse_id: &str, records: Vec<Value>) {
    otx.on(&pulse_path(pulse_id), page(records, false));
}

/// Serves `ip` as found in one pulse, `pulse_id`, whose record of it was
/// created on 2020-01-01 (the fleet and metrics tests' simple case).
pub(crate) fn serve_ip_in_pulse(otx: &FakeOtx, ip: &str, pulse_id: &str) {
    otx.on(
        &general_path("IPv4", ip),
        Reply::json(general("IPv4", vec![pulse(pulse_id, "IPv4")])),
    );
    serve_records(otx, pulse_id, vec![record(ip, "2020-01-01T00:00:00")]);
}

/// Serves `IP`'s `/general` listing the pulses `ids`, each counting IPv4.
fn serve_ip_pulses(otx: &FakeOtx, ids: &[&str]) {
    let pulses = ids.iter().map(|id| pulse(id, "IPv4")).collect();
    otx.on(
        &general_path("IPv4", IP),
        Reply::json(general("IPv4", pulses)),
    );
}

pub(crate) fn obs(type_: &str, value: &str) -> Value {
    json!({"type": type_, "value": value})
}

// ---------------------------------------------------------------------------
// What the relay should answer

/// The whole `data` of an observe answer, built entity by entity.
#[derive(Default)]
pub(crate) struct Expected {
    sightings: Vec<Value>,
    indicators: Vec<Value>,
    relationships: Vec<Value>,
    judgements: Vec<Value>,
    verdicts: Vec<Value>,
    /// SPEC §13: the named malware and techniques, and the `indicates`
    /// relationships, which follow all the `member-of` ones.
    pub(crate) malwares: Vec<Value>,
    pub(crate) attack_patterns: Vec<Value>,
    pub(crate) indicates: Vec<Value>,
    /// The answer's `errors`, beside its `data`.
    pub(crate) errors: Vec<Value>,
}

/// A disposition and what its reason must say (SPEC §7).
pub(crate) enum Judged<'a> {
    /// Malicious, found in this many pulses.
    Malicious(usize),
    /// Suspicious, found in this many pulses.
    Suspicious(usize),
    /// Clean, naming these validation entries.
    Clean(&'a [&'a str]),
}

/// What the CTIM docs of one pulse must show (SPEC §6), given literally.
pub(crate) struct Shown {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) short_description: String,
    pub(crate) description: String,
    pub(crate) producer: String,
    /// `None`: no `tags` key at all.
    pub(crate) tags: Option<Value>,
    /// `None`: no `tlp` key at all.
    pub(crate) tlp: Option<String>,
}

impl Shown {
    /// What the synthetic `pulse(id, _)` shows.
    pub(crate) fn synthetic(id: &str) -> Shown {
        Shown {
            id: id.to_string(),
            title: format!("Pulse {id}"),
            short_description: format!("About pulse {id}"),
            description: format!("About pulse {id}"),
            producer: format!("author-{id}"),
            tags: Some(json!(["malware", id])),
            tlp: Some("amber".to_string()),
        }
    }
}

impl Expected {
    /// The three entities of `observable` found in the synthetic `pulse(id)`,
    /// with the record times as CTIM must show them.
    pub(crate) fn found(
        &mut self,
        otx: &FakeOtx,
        observable: &Value,
        id: &str,
        start: &str,
        end: Option<&str>,
    ) -> &mut Self {
        self.shown(otx, observable, Shown::synthetic(id), start, end)
    }

    /// The three entities of `observable` found in a pulse that shows `shown`.
    pub(crate) fn shown(
        &mut self,
        otx: &FakeOtx,
        observable: &Value,
        shown: Shown,
        start: &str,
        end: Option<&str>,
    ) -> &mut Self {
        let mut valid_time = json!({"start_time": start});
        if let Some(end) = end {
            valid_time["end_time"] = json!(end);
        }
        let source_uri = format!("{}/pulse/{}", otx.url(), shown.id);
        let mut indicator = json!({
            "type": "indicator",
            "schema_version": "1.0.17",
            "id": "<<prefix:transient:indicator->>",
            "confidence": "High",
            "source": "AlienVault OTX",
            "producer": shown.producer,
            "title": shown.title,
            "short_description": shown.short_description,
            "external_ids": [shown.id],
            "source_uri": source_uri,
            "valid_time": valid_time,
        });
        let mut sighting = json!({
            "type": "sighting",
            "schema_version": "1.0.17",
            "id": "<<prefix:transient:sighting->>",
            "confidence": "High",
            "count": 1,
            "internal": false,
            "source": "AlienVault OTX",
            "observables": [observable],
            "description": shown.description,
            "title": shown.title,
            "external_ids": [shown.id],
            "source_uri": source_uri,
            "observed_time": {"start_time": start, "end_time": start},
        });
        if let Some(tags) = shown.tags {
            indicator["tags"] = tags;
        }
        if let Some(tlp) = shown.tlp {
            indicator["tlp"] = json!(tlp);
            sighting["tlp"] = json!(tlp);
        }
        self.entities(indicator, sighting)
    }

    /// A passive DNS sighting (SPEC §15) given whole: no indicator, no
    /// relationship; after its observable's pulse sightings.
    pub(crate) fn sighted(&mut self, sighting: Value) -> &mut Self {
        self.sightings.push(sighting);
        self
    }

    /// An indicator and a sighting given whole, and their relationship.
    fn entities(&mut self, indicator: Value, sighting: Value) -> &mut Self {
        self.indicators.push(indicator);
        self.sightings.push(sighting);
        self.relationships.push(json!({
            "type": "relationship",
            "schema_version": "1.0.17",
            "id": "<<prefix:transient:relationship->>",
            "relationship_type": "member-of",
            "source_ref": "<<prefix:transient:sighting->>",
            "target_ref": "<<prefix:transient:indicator->>",
        }));
        self
    }

    /// The judgement and verdict of `observable`, whose refer link ends in
    /// `refer` (`{category}/{quoted value}`).
    pub(crate) fn judged(
        &mut self,
        otx: &FakeOtx,
        observable: &Value,
        refer: &str,
        judged: Judged,
    ) -> &mut Self {
        let (disposition, reason) = match judged {
            Judged::Malicious(n) => (2, count_reason(n)),
            Judged::Suspicious(n) => (3, count_reason(n)),
            Judged::Clean(names) => (1, names_reason(names)),
        };
        let source_uri = format!("{}/indicator/{refer}", otx.url());
        let (judgement, verdict) = expected_verdict(observable, &source_uri, disposition, &reason);
        self.judgements.push(judgement);
        self.verdicts.push(verdict);
        self
    }

    /// The whole answer: `data`, and `errors` when there are any.
    pub(crate) fn answer(&self) -> Value {
        let mut answer = json!({"data": self.data()});
        if !self.errors.is_empty() {
            answer["errors"] = json!(self.errors);
        }
        answer
    }

    /// `{"sightings": {"count", "docs"}, …}` with only the kinds that have docs.
    pub(crate) fn data(&self) -> Value {
        let mut data = json!({});
        let relationships: Vec<Value> = self
            .relationships
            .iter()
            .chain(&self.indicates)
            .cloned()
            .collect();
        for (name, docs) in [
            ("sightings", &self.sightings),
            ("indicators", &self.indicators),
            ("relationships", &relationships),
            ("judgements", &self.judgements),
            ("verdicts", &self.verdicts),
            ("malwares", &self.malwares),
            ("attack_patterns", &self.attack_patterns),
        ] {
            if !docs.is_empty() {
                data[name] = json!({"count": docs.len(), "docs": docs});
            }
        }
        data
    }
}

/// A reason that states the pulse count `n` as a number.
fn count_reason(n: usize) -> String {
    format!("<<re:(.*\\D)?{n}(\\D.*)?>>")
}

/// A reason that names each of `names` (in any order, for two).
fn names_reason(names: &[&str]) -> String {
    match names {
        [one] => format!("<<re:.*{one}.*>>"),
        [a, b] => format!("<<re:.*{a}.*{b}.*|.*{b}.*{a}.*>>"),
        _ => panic!("names_reason takes one or two names"),
    }
}

/// POSTs `observables` to `/observe/observables` with `token()`; the answer.
pub(crate) fn observe(relay: &Relay, observables: &Value) -> Value {
    let (status, body) = relay.post_auth(OBSERVE, &observables.to_string());
    assert_eq!(status, 200, "{body}");
    body
}

/// One `/observe/observables` case: what the fake OTX serves, the relay's
/// variables, the observables asked, and the answer expected (built against
/// the fake's URL). The whole answer is compared, then the links between its
/// docs. Returns the run, for the tests that then look at the requests the
/// fake got, at the answer's ids, or at the relay's log.
#[track_caller]
pub(crate) fn check(
    serve: impl FnOnce(&FakeOtx),
    env: &[(&str, &str)],
    observables: Value,
    expected: impl FnOnce(&FakeOtx, &mut Expected),
) -> Checked {
    let otx = FakeOtx::start();
    serve(&otx);
    let relay = Relay::start(&otx, env);
    let mut answer = Expected::default();
    expected(&otx, &mut answer);
    let body = check_answer(&relay, &observables, &answer.answer());
    Checked { relay, otx, body }
}

/// What one `check` ran and got.
pub(crate) struct Checked {
    /// Declared first, so that it stops before the fake OTX it talks to.
    pub(crate) relay: Relay,
    pub(crate) otx: FakeOtx,
    /// The answer, already checked whole.
    pub(crate) body: Value,
}

/// `check`'s comparison alone, on a relay already running: observes, checks
/// the whole answer, then the links between its docs.
#[track_caller]
pub(crate) fn check_answer(relay: &Relay, observables: &Value, expected: &Value) -> Value {
    let body = observe(relay, observables);
    check_json(&body, expected);
    check_links(&body);
    body
}

/// What placeholders cannot say: each `member-of` relationship joins the
/// sighting and the indicator of its rank; the `indicates` ones (SPEC §13)
/// come after them, each from an indicator of the answer to one of its
/// malware or attack patterns, no pair twice; each verdict names the
/// judgement of its rank; and every random id is a fresh uuid4.
#[track_caller]
pub(crate) fn check_links(body: &Value) {
    let all_docs = |kind: &str| -> Vec<Value> {
        body.pointer(&format!("/data/{kind}/docs"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (all_sightings, indicators, relationships) = (
        all_docs("sightings"),
        all_docs("indicators"),
        all_docs("relationships"),
    );
    // Passive DNS sightings (SPEC §15) have no indicator and no relationship.
    let sightings: Vec<&Value> = (all_sightings.iter())
        .filter(|s| s.get("relations").is_none())
        .collect();
    let (member_of, indicates) = relationships.split_at(sightings.len().min(relationships.len()));
    for (i, relationship) in member_of.iter().enumerate() {
        assert_eq!(
            relationship["relationship_type"], "member-of",
            "relationship {i}"
        );
        assert_eq!(
            relationship["source_ref"], sightings[i]["id"],
            "relationship {i}"
        );
        assert_eq!(
            relationship["target_ref"], indicators[i]["id"],
            "relationship {i}"
        );
    }
    let ids = |kinds: &[&str]| -> Vec<Value> {
        kinds
            .iter()
            .flat_map(|kind| all_docs(kind))
            .map(|doc| doc["id"].clone())
            .collect()
    };
    let (sources, targets) = (ids(&["indicators"]), ids(&["malwares", "attack_patterns"]));
    let mut pairs = Vec::new();
    for relationship in indicates {
        let (from, to) = (&relationship["source_ref"], &relationship["target_ref"]);
        assert_eq!(
            relationship["relationship_type"], "indicates",
            "{relationship}"
        );
        assert!(sources.contains(from), "{relationship}: no such indicator");
        assert!(targets.contains(to), "{relationship}: no such entity");
        assert!(
            !pairs.contains(&(from, to)),
            "{relationship}: pair repeated"
        );
        pairs.push((from, to));
    }
    for kind in ["malwares", "attack_patterns"] {
        let mut entity_ids = ids(&[kind]);
        let all = entity_ids.len();
        entity_ids.sort_by_key(Value::to_string);
        entity_ids.dedup();
        assert_eq!(entity_ids.len(), all, "{kind} ids repeat");
    }
    for (i, verdict) in all_docs("verdicts").iter().enumerate() {
        assert_eq!(
            verdict["judgement_id"],
            all_docs("judgements")[i]["id"],
            "verdict {i}"
        );
    }
    let mut random: Vec<String> = [all_sightings, relationships, all_docs("judgements")]
        .iter()
        .flatten()
        .map(|doc| doc["id"].as_str().expect("a string id").to_string())
        .collect();
    for id in &random {
        let uuid = &id[id.len().saturating_sub(36)..];
        assert_eq!(uuid.as_bytes().get(14), Some(&b'4'), "{id} is not a uuid4");
    }
    let all = random.len();
    random.sort();
    random.dedup();
    assert_eq!(random.len(), all, "random ids repeat");
}

/// The docs of one kind of a successful answer.
pub(crate) fn docs<'a>(body: &'a Value, kind: &str) -> &'a Vec<Value> {
    body.pointer(&format!("/data/{kind}/docs"))
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no {kind} in {body}"))
}

/// Every request carries the key and the User-Agent.
#[track_caller]
fn check_headers(requests: &[Recorded]) {
    assert!(!requests.is_empty(), "no OTX request at all");
    for r in requests {
        assert_eq!(r.method, "GET", "{}", r.path);
        assert_eq!(r.header("X-OTX-API-KEY"), Some(KEY), "{}", r.path);
        assert_eq!(r.header("User-Agent"), Some(USER_AGENT), "{}", r.path);
    }
}
