//! `POST /observe/observables` end to end (SPEC §4, §6, and the verdict
//! docs of §7 that ride along): the OTX requests as sent, the pulse filter,
//! the record lookups, the ordering and limits, and the CTIM documents whole.
//!
//! Beside it: [`named`], the malware and ATT&CK entities of the sighted
//! pulses (SPEC §13); [`passive_dns`], the passive DNS sighting and
//! hostnames (SPEC §15).

mod named;
mod passive_dns;

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const OBSERVE: &str = "/observe/observables";
const USER_AGENT: &str = "SecureX Threat Response Integrations <tr-integrations-support@cisco.com>";

/// The IP of the recorded `general-ipv4.json`, and its one counted pulse.
const SAMPLE_IP: &str = "151.106.3.179";
const SAMPLE_PULSE: &str = "5fa083b3b6aa093f35e4818a";
/// python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, '5fa083b3b6aa093f35e4818a'))"
const SAMPLE_INDICATOR_ID: &str = "transient:indicator-a7159adb-15e3-527d-b4ab-3f2d7b249507";

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

/// Observes and checks the whole answer, then the links between its docs.
#[track_caller]
pub(crate) fn check(relay: &Relay, observables: &Value, expected: &Value) -> Value {
    let body = observe(relay, observables);
    check_json(&body, expected);
    check_links(&body);
    body
}

/// `check` of an answer whose `data` is `expected`'s, with no errors.
#[track_caller]
pub(crate) fn check_data(relay: &Relay, observables: &Value, expected: &Expected) -> Value {
    check(relay, observables, &json!({"data": expected.data()}))
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

/// The pulse ids of an answer's sightings, in order.
fn sighted_pulses(body: &Value) -> Vec<String> {
    docs(body, "sightings")
        .iter()
        .map(|s| s["external_ids"][0].as_str().expect("an id").to_string())
        .collect()
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

// ---------------------------------------------------------------------------
// The realistic case

/// `general-ipv4.json` for 151.106.3.179, and a page of its one counted pulse
/// holding that IP's record.
fn serve_sample_ip(otx: &FakeOtx) {
    otx.on(
        &general_path("IPv4", SAMPLE_IP),
        Reply::file("general-ipv4.json"),
    );
    let mut found = record(SAMPLE_IP, "2020-11-02T22:10:01");
    found["expiration"] = json!("2020-12-02T22:00:00");
    serve_records(
        otx,
        SAMPLE_PULSE,
        vec![
            record("151.106.3.180", "2020-11-02T22:10:05"),
            found,
            record("151.106.3.178", "2020-11-02T22:09:58"),
        ],
    );
}

fn sample_ip_answer(otx: &FakeOtx) -> Value {
    let source_uri = format!("{}/pulse/{SAMPLE_PULSE}", otx.url());
    let title = "IOCs - 20201122248 - ANIA Threat Feeds - IP Segment 4";
    let description = "ANIA Collector - Advanced Network Interactive Analysis Collector - \
                       Collected from Internet Storm Center IOCs List";
    let observable = obs("ip", SAMPLE_IP);
    let mut expected = Expected::default();
    expected
        .entities(
            json!({
                "type": "indicator",
                "schema_version": "1.0.17",
                "id": SAMPLE_INDICATOR_ID,
                "confidence": "High",
                "source": "AlienVault OTX",
                "producer": "AlessandroFiori",
                "title": title,
                "short_description": description,
                "external_ids": [SAMPLE_PULSE],
                "source_uri": source_uri,
                "tags": [],
                "tlp": "green",
                "valid_time": {
                    "start_time": "2020-11-02T22:10:01Z",
                    "end_time": "2020-12-02T22:00:00Z",
                },
            }),
            json!({
                "type": "sighting",
                "schema_version": "1.0.17",
                "id": "<<prefix:transient:sighting->>",
                "confidence": "High",
                "count": 1,
                "internal": false,
                "source": "AlienVault OTX",
                "observables": [{"type": "ip", "value": SAMPLE_IP}],
                "description": description,
                "title": title,
                "external_ids": [SAMPLE_PULSE],
                "source_uri": source_uri,
                "tlp": "green",
                "observed_time": {
                    "start_time": "2020-11-02T22:10:01Z",
                    "end_time": "2020-11-02T22:10:01Z",
                },
            }),
        )
        .judged(
            otx,
            &observable,
            &format!("ip/{SAMPLE_IP}"),
            Judged::Suspicious(1),
        );
    json!({"data": expected.data()})
}

#[test]
fn the_recorded_ipv4_answer_maps_its_one_counted_pulse_to_whole_ctim_documents() {
    let otx = FakeOtx::start();
    serve_sample_ip(&otx);
    // Passive DNS (SPEC §15) off: the OTX requests are listed below in order.
    let relay = Relay::start(&otx, &[("PASSIVE_DNS", "off")]);
    let expected = sample_ip_answer(&otx);
    let observables = json!([obs("ip", SAMPLE_IP)]);

    let first = check(&relay, &observables, &expected);
    let second = check(&relay, &observables, &expected);

    assert_ne!(
        docs(&first, "sightings")[0]["id"],
        docs(&second, "sightings")[0]["id"],
        "sighting ids are fresh on every request"
    );
    assert_ne!(
        docs(&first, "relationships")[0]["id"],
        docs(&second, "relationships")[0]["id"],
        "relationship ids are fresh on every request"
    );
    // The six pulses that do not count IPv4 are never looked up.
    let requests = otx.requests();
    check_headers(&requests);
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    let general = general_path("IPv4", SAMPLE_IP);
    let pulse = pulse_path(SAMPLE_PULSE);
    assert_eq!(paths, [&general, &pulse, &general, &pulse]);
}

// ---------------------------------------------------------------------------
// The requests as sent

#[test]
fn each_type_asks_its_otx_section_with_the_value_quoted_like_python() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let observables = json!([
        obs("ip", "151.106.3.179"),
        obs("ipv6", "2001:DB8::1"),
        obs("domain", "bÜcher.Example.DE"),
        obs("url", "http://a.b/c d?x=1#f%20/../ü"),
        obs("md5", "D41D8CD98F00B204E9800998ECF8427E"),
        obs("sha1", "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709"),
        obs(
            "sha256",
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
        ),
        obs("email", "user@example.com"),
        obs("hostname", "WWW.Ex@mple.COM"),
        obs("mac_address", "00:00:5e:00:53:01"),
    ]);

    // Nothing is programmed: every /general (and passive DNS) answers 404,
    // which is no data.
    check(&relay, &observables, &json!({"data": {}}));

    let requests = otx.requests();
    check_headers(&requests);
    let mut paths: Vec<String> = requests.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    // python3 -c "from urllib.parse import quote; print(quote(VALUE, safe='@:'))"
    // on the value OTX is asked about (hashes, domains and hostnames in ASCII
    // lower case).
    let mut expected = vec![
        general_path("IPv4", "151.106.3.179"),
        general_path("IPv6", "2001:DB8::1"),
        general_path("domain", "b%C3%9Ccher.example.de"),
        general_path(
            "url",
            "http:%2F%2Fa.b%2Fc%20d%3Fx%3D1%23f%2520%2F..%2F%C3%BC",
        ),
        general_path("file", "d41d8cd98f00b204e9800998ecf8427e"),
        general_path("file", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        general_path(
            "file",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        general_path("hostname", "www.ex@mple.com"),
        // SPEC §15: passive DNS of names and addresses, in the same sections.
        passive_dns_path("IPv4", "151.106.3.179"),
        passive_dns_path("IPv6", "2001:DB8::1"),
        passive_dns_path("domain", "b%C3%9Ccher.example.de"),
        passive_dns_path("hostname", "www.ex@mple.com"),
    ];
    expected.sort();
    assert_eq!(paths, expected, "no request for email or unknown types");
    assert!(requests.iter().all(|r| r.query.is_empty()));
}

#[test]
fn email_and_unknown_types_cause_no_otx_request_and_no_docs() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    check(
        &relay,
        &json!([
            obs("email", "user@example.com"),
            obs("IP", "1.2.3.4"),
            obs("mac", "x")
        ]),
        &json!({"data": {}}),
    );
    assert!(otx.requests().is_empty(), "{:?}", otx.requests());
}

#[test]
fn the_record_on_page_two_is_found_with_sorted_limited_numbered_page_requests() {
    let otx = FakeOtx::start();
    let id = "600000000000000000000001";
    let path = pulse_path(id);
    otx.on(
        &general_path("IPv4", IP),
        Reply::json(general("IPv4", vec![pulse(id, "IPv4")])),
    );
    otx.on_page(
        &path,
        1,
        page(
            vec![
                record("198.51.100.9", "2021-03-05T00:00:00"),
                record("198.51.100.8", "2021-03-04T06:00:00"),
            ],
            true,
        ),
    );
    // `next` is set on page 2 too: finding the record must stop the paging.
    otx.on_page(
        &path,
        2,
        page(
            vec![
                record("198.51.100.70", "2021-03-04T05:06:08"),
                record(IP, "2021-03-04T05:06:07.250"),
            ],
            true,
        ),
    );
    otx.on_page(
        &path,
        3,
        page(vec![record(IP, "1999-01-01T00:00:00")], false),
    );
    let relay = Relay::start(&otx, &[]);
    let observable = obs("ip", IP);

    let mut expected = Expected::default();
    expected
        .found(&otx, &observable, id, "2021-03-04T05:06:07.250Z", None)
        .judged(
            &otx,
            &observable,
            &format!("ip/{IP}"),
            Judged::Suspicious(1),
        );
    check_data(&relay, &json!([observable]), &expected);

    check_headers(&otx.requests());
    let lookups = otx.requests_to(&path);
    let pages: Vec<Option<String>> = lookups.iter().map(|r| r.query_param("page")).collect();
    assert_eq!(pages, [Some("1".into()), Some("2".into())]);
    let limit = lookups[0].query_param("limit");
    for lookup in &lookups {
        assert_eq!(lookup.query_param("sort").as_deref(), Some("-created"));
        assert_eq!(lookup.query_param("limit"), limit, "one page size");
    }
    let limit: u32 = limit.and_then(|l| l.parse().ok()).expect("a numeric limit");
    assert!((1..=10_000).contains(&limit), "limit={limit}");
}

#[test]
fn a_record_missing_from_the_last_page_drops_its_pulse_alone() {
    let otx = FakeOtx::start();
    let (kept, missing) = ("600000000000000000000001", "600000000000000000000002");
    otx.on(
        &general_path("IPv4", IP),
        Reply::json(general(
            "IPv4",
            vec![pulse(missing, "IPv4"), pulse(kept, "IPv4")],
        )),
    );
    otx.on_page(
        &pulse_path(missing),
        1,
        page(vec![record("198.51.100.8", "2021-03-05T00:00:00")], false),
    );
    otx.on_page(
        &pulse_path(missing),
        2,
        page(vec![record(IP, "2021-03-05T00:00:00")], false),
    );
    serve_records(&otx, kept, vec![record(IP, "2021-01-01T00:00:00")]);
    let relay = Relay::start(&otx, &[]);
    let observable = obs("ip", IP);

    // The verdict counts the pulses of /general, found or not.
    let mut expected = Expected::default();
    expected
        .found(&otx, &observable, kept, "2021-01-01T00:00:00Z", None)
        .judged(&otx, &observable, &format!("ip/{IP}"), Judged::Malicious(2));
    check_data(&relay, &json!([observable]), &expected);
    assert_eq!(
        otx.requests_to(&pulse_path(missing)).len(),
        1,
        "no page 2 when `next` is null"
    );
}

#[test]
fn pulses_that_do_not_count_the_base_indicator_type_are_never_looked_up() {
    let otx = FakeOtx::start();
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
        "600000000000000000000004",
    ];
    let mut empty = pulse(ids[1], "IPv4");
    empty["indicator_type_counts"] = json!({});
    let mut absent = pulse(ids[3], "IPv4");
    absent
        .as_object_mut()
        .unwrap()
        .remove("indicator_type_counts");
    otx.on(
        &general_path("IPv4", IP),
        Reply::json(general(
            "IPv4",
            vec![
                pulse(ids[0], "IPv4"),
                empty,
                pulse(ids[2], "domain"),
                absent,
            ],
        )),
    );
    for id in ids {
        serve_records(&otx, id, vec![record(IP, "2021-01-01T00:00:00")]);
    }
    let relay = Relay::start(&otx, &[]);
    let observable = obs("ip", IP);

    let mut expected = Expected::default();
    expected
        .found(&otx, &observable, ids[0], "2021-01-01T00:00:00Z", None)
        .judged(
            &otx,
            &observable,
            &format!("ip/{IP}"),
            Judged::Suspicious(1),
        );
    check_data(&relay, &json!([observable]), &expected);
    assert_eq!(otx.requests_to(&pulse_path(ids[0])).len(), 1);
    for id in &ids[1..] {
        assert!(
            otx.requests_to(&pulse_path(id)).is_empty(),
            "{id} looked up"
        );
    }
}

// ---------------------------------------------------------------------------
// Matching and case

#[test]
fn hashes_and_domains_match_ignoring_ascii_case_and_urls_match_exactly() {
    let otx = FakeOtx::start();
    let domain = obs("domain", "BÜCHER.Example.COM");
    let sha256 = obs(
        "sha256",
        "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    );
    let url = obs("url", "http://Evil.Example.com/Path?Q=1");
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
        "600000000000000000000004",
        "600000000000000000000005",
    ];
    otx.on(
        &general_path("domain", "b%C3%9Ccher.example.com"),
        Reply::json(general(
            "domain",
            vec![pulse(ids[0], "domain"), pulse(ids[1], "domain")],
        )),
    );
    // Only ASCII letters fold: "ü" is not "Ü".
    serve_records(
        &otx,
        ids[0],
        vec![record("bücher.example.com", "2021-02-01T00:00:00")],
    );
    serve_records(
        &otx,
        ids[1],
        vec![record("bÜcher.EXAMPLE.com", "2021-01-01T00:00:00")],
    );
    otx.on(
        &general_path(
            "file",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        Reply::json(general(
            "FileHash-SHA256",
            vec![pulse(ids[2], "FileHash-SHA256")],
        )),
    );
    serve_records(
        &otx,
        ids[2],
        vec![record(
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "2021-01-02T00:00:00",
        )],
    );
    otx.on(
        &general_path("url", "http:%2F%2FEvil.Example.com%2FPath%3FQ%3D1"),
        Reply::json(general(
            "URL",
            vec![pulse(ids[3], "URL"), pulse(ids[4], "URL")],
        )),
    );
    serve_records(
        &otx,
        ids[3],
        vec![record(
            "http://evil.example.com/path?q=1",
            "2021-02-03T00:00:00",
        )],
    );
    serve_records(
        &otx,
        ids[4],
        vec![record(
            "http://Evil.Example.com/Path?Q=1",
            "2021-01-03T00:00:00",
        )],
    );
    let relay = Relay::start(&otx, &[]);

    // The observables echo the values as received.
    let mut expected = Expected::default();
    expected
        .found(&otx, &domain, ids[1], "2021-01-01T00:00:00Z", None)
        .found(&otx, &sha256, ids[2], "2021-01-02T00:00:00Z", None)
        .found(&otx, &url, ids[4], "2021-01-03T00:00:00Z", None)
        .judged(
            &otx,
            &domain,
            "domain/B%C3%9CCHER.Example.COM",
            Judged::Malicious(2),
        )
        .judged(
            &otx,
            &sha256,
            "file/E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            Judged::Suspicious(1),
        )
        .judged(
            &otx,
            &url,
            "url/http:%2F%2FEvil.Example.com%2FPath%3FQ%3D1",
            Judged::Malicious(2),
        );
    check_data(&relay, &json!([domain, sha256, url]), &expected);
}

#[test]
fn identical_observables_are_asked_once_and_answered_once() {
    let otx = FakeOtx::start();
    let id = "600000000000000000000001";
    otx.on(
        &general_path("IPv4", IP),
        Reply::json(general("IPv4", vec![pulse(id, "IPv4")])),
    );
    serve_records(&otx, id, vec![record(IP, "2021-01-01T00:00:00")]);
    let relay = Relay::start(&otx, &[]);
    let observable = obs("ip", IP);

    let mut expected = Expected::default();
    expected
        .found(&otx, &observable, id, "2021-01-01T00:00:00Z", None)
        .judged(
            &otx,
            &observable,
            &format!("ip/{IP}"),
            Judged::Suspicious(1),
        );
    check_data(
        &relay,
        &json!([observable, {"type": "ip", "value": IP, "extra": 1}, observable]),
        &expected,
    );
    assert_eq!(otx.requests_to(&general_path("IPv4", IP)).len(), 1);
    assert_eq!(otx.requests_to(&pulse_path(id)).len(), 1);
}

#[test]
fn domains_differing_only_in_case_are_distinct_observables_both_answered() {
    let otx = FakeOtx::start();
    let id = "600000000000000000000001";
    otx.on(
        &general_path("domain", "example.com"),
        Reply::json(general("domain", vec![pulse(id, "domain")])),
    );
    serve_records(&otx, id, vec![record("example.com", "2021-01-01T00:00:00")]);
    let relay = Relay::start(&otx, &[]);
    let (upper, lower) = (obs("domain", "Example.COM"), obs("domain", "example.com"));

    let mut expected = Expected::default();
    expected
        .found(&otx, &upper, id, "2021-01-01T00:00:00Z", None)
        .found(&otx, &lower, id, "2021-01-01T00:00:00Z", None)
        .judged(&otx, &upper, "domain/Example.COM", Judged::Suspicious(1))
        .judged(&otx, &lower, "domain/example.com", Judged::Suspicious(1));
    let body = check_data(&relay, &json!([upper, lower]), &expected);
    let indicators = docs(&body, "indicators");
    assert_eq!(
        indicators[0]["id"], indicators[1]["id"],
        "one pulse, one id"
    );
    // Whether OTX was asked once or twice, only the lower-case path was used.
    let paths: Vec<String> = otx
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/general"))
        .map(|r| r.path)
        .collect();
    assert!(!paths.is_empty());
    assert!(
        paths
            .iter()
            .all(|p| *p == general_path("domain", "example.com")),
        "{paths:?}"
    );
}

// ---------------------------------------------------------------------------
// Order and limits

/// Serves `count` pulses for `IP`, pulse `i` recording it at minute `i`
/// (the higher `i`, the newer), listed in an order that is neither.
fn serve_many(otx: &FakeOtx, count: usize) -> Vec<String> {
    let ids: Vec<String> = (0..count).map(|i| format!("7{i:023}")).collect();
    let mut listed: Vec<usize> = (0..count).collect();
    listed.sort_by_key(|i| (i * 7919) % count.max(1));
    otx.on(
        &general_path("IPv4", IP),
        Reply::json(general(
            "IPv4",
            listed.iter().map(|&i| pulse(&ids[i], "IPv4")).collect(),
        )),
    );
    for (i, id) in ids.iter().enumerate() {
        serve_records(otx, id, vec![record(IP, &minute(i))]);
    }
    ids
}

/// `2020-01-01T00:00:00` plus `i` minutes (for `i` below 1440).
fn minute(i: usize) -> String {
    format!("2020-01-01T{:02}:{:02}:00", i / 60, i % 60)
}

/// The `n` newest of the pulses `serve_many` made, newest first.
fn newest(ids: &[String], n: usize) -> Vec<String> {
    ids.iter().rev().take(n).cloned().collect()
}

#[test]
fn records_come_newest_first_across_pulses() {
    let otx = FakeOtx::start();
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
    ];
    serve_ip_pulses(&otx, &ids);
    serve_records(&otx, ids[0], vec![record(IP, "2021-01-02T00:00:00")]);
    serve_records(&otx, ids[1], vec![record(IP, "2021-01-02T00:00:00.5")]);
    serve_records(&otx, ids[2], vec![record(IP, "2020-12-31T23:59:59")]);
    let relay = Relay::start(&otx, &[]);
    let observable = obs("ip", IP);

    let mut expected = Expected::default();
    expected
        .found(&otx, &observable, ids[1], "2021-01-02T00:00:00.5Z", None)
        .found(&otx, &observable, ids[0], "2021-01-02T00:00:00Z", None)
        .found(&otx, &observable, ids[2], "2020-12-31T23:59:59Z", None)
        .judged(&otx, &observable, &format!("ip/{IP}"), Judged::Malicious(3));
    check_data(&relay, &json!([observable]), &expected);
}

#[test]
fn entities_limit_from_the_environment_keeps_the_newest_records() {
    let otx = FakeOtx::start();
    let ids = serve_many(&otx, 3);
    let relay = Relay::start(&otx, &[("CTR_ENTITIES_LIMIT", "2")]);
    let observable = obs("ip", IP);

    let mut expected = Expected::default();
    expected
        .found(&otx, &observable, &ids[2], "2020-01-01T00:02:00Z", None)
        .found(&otx, &observable, &ids[1], "2020-01-01T00:01:00Z", None)
        .judged(&otx, &observable, &format!("ip/{IP}"), Judged::Malicious(3));
    check_data(&relay, &json!([observable]), &expected);
}

#[track_caller]
fn check_limit(otx: &FakeOtx, ids: &[String], env: &[(&str, &str)], token: &str, want: usize) {
    let relay = Relay::start(otx, env);
    let (status, body) = relay.post(
        OBSERVE,
        Some(&bearer(token)),
        &json!([obs("ip", IP)]).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{env:?}: {body}");
    for kind in ["sightings", "indicators", "relationships"] {
        assert_eq!(body["data"][kind]["count"], want, "{env:?}: {kind}");
        assert_eq!(docs(&body, kind).len(), want, "{env:?}: {kind}");
    }
    assert_eq!(sighted_pulses(&body), newest(ids, want), "{env:?}");
    check_links(&body);
}

#[test]
fn entities_limit_of_zero_or_junk_means_100_and_a_larger_one_is_honoured() {
    let otx = FakeOtx::start();
    let ids = serve_many(&otx, 120);
    for bad in ["0", "junk", "-5", "1.5"] {
        check_limit(&otx, &ids, &[("CTR_ENTITIES_LIMIT", bad)], &token(), 100);
    }
    check_limit(&otx, &ids, &[], &token(), 100);
    check_limit(&otx, &ids, &[("CTR_ENTITIES_LIMIT", "5000")], &token(), 120);
    check_limit(&otx, &ids, &[("CTR_ENTITIES_LIMIT", "110")], &token(), 110);
}

#[test]
fn entities_limit_above_1000_means_1000() {
    let otx = FakeOtx::start();
    let ids = serve_many(&otx, 1001);
    check_limit(
        &otx,
        &ids,
        &[("CTR_ENTITIES_LIMIT", "5000")],
        &token(),
        1000,
    );
}

#[test]
fn the_jwt_entities_limit_claim_overrides_the_environment() {
    let otx = FakeOtx::start();
    let ids = serve_many(&otx, 120);
    let claim = |limit: Value| jwt(SECRET, &json!({"key": KEY, "CTR_ENTITIES_LIMIT": limit}));
    let env = [("CTR_ENTITIES_LIMIT", "3")];
    check_limit(&otx, &ids, &env, &claim(json!(1)), 1);
    check_limit(&otx, &ids, &env, &claim(json!(5)), 5);
    check_limit(&otx, &ids, &env, &claim(json!("2")), 2);
    // The claim follows the same rules: a bad one means 100, not the env's 3.
    check_limit(&otx, &ids, &env, &claim(json!(0)), 100);
    check_limit(&otx, &ids, &env, &claim(json!("junk")), 100);
    check_limit(
        &otx,
        &ids,
        &[("CTR_ENTITIES_LIMIT", "2")],
        &claim(json!(5000)),
        120,
    );
    check_limit(&otx, &ids, &env, &token(), 3);
}

// ---------------------------------------------------------------------------
// Failures of one part

#[test]
fn a_failing_pulse_lookup_drops_that_pulse_alone_and_logs_a_warning() {
    let otx = FakeOtx::start();
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
    ];
    serve_ip_pulses(&otx, &ids);
    serve_records(&otx, ids[0], vec![record(IP, "2021-01-01T00:00:00")]);
    otx.on(&pulse_path(ids[1]), Reply::status(500));
    serve_records(&otx, ids[2], vec![record(IP, "2021-01-03T00:00:00")]);
    let relay = Relay::start(&otx, &[]);
    let observable = obs("ip", IP);

    let mut expected = Expected::default();
    expected
        .found(&otx, &observable, ids[2], "2021-01-03T00:00:00Z", None)
        .found(&otx, &observable, ids[0], "2021-01-01T00:00:00Z", None)
        .judged(&otx, &observable, &format!("ip/{IP}"), Judged::Malicious(3));
    check_data(&relay, &json!([observable]), &expected);

    assert!(relay.wait_log(ids[1]), "no line names the pulse");
    let stderr = relay.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains(ids[1]))
        .unwrap_or_else(|| panic!("no warning on stderr naming {}:\n{}", ids[1], relay.logs()));
    assert!(line.contains("500"), "the status is named: {line}");
    for id in [ids[0], ids[2]] {
        assert!(!stderr.contains(id), "{id} was not dropped:\n{stderr}");
    }
}

#[test]
fn a_record_without_created_drops_its_pulse() {
    let otx = FakeOtx::start();
    let ids = ["600000000000000000000001", "600000000000000000000002"];
    serve_ip_pulses(&otx, &ids);
    let mut no_created = record(IP, "x");
    no_created.as_object_mut().unwrap().remove("created");
    no_created["expiration"] = json!("2022-01-01T00:00:00");
    serve_records(&otx, ids[0], vec![no_created]);
    serve_records(&otx, ids[1], vec![record(IP, "2021-01-01T00:00:00")]);
    let relay = Relay::start(&otx, &[]);
    let observable = obs("ip", IP);

    let mut expected = Expected::default();
    expected
        .found(&otx, &observable, ids[1], "2021-01-01T00:00:00Z", None)
        .judged(&otx, &observable, &format!("ip/{IP}"), Judged::Malicious(2));
    check_data(&relay, &json!([observable]), &expected);
}

#[test]
fn one_failing_observable_leaves_the_others_data_and_adds_an_oops_error() {
    let otx = FakeOtx::start();
    let id = "600000000000000000000001";
    otx.on(&general_path("IPv4", IP), Reply::status(500));
    otx.on(
        &general_path("domain", "example.com"),
        Reply::json(general("domain", vec![pulse(id, "domain")])),
    );
    serve_records(&otx, id, vec![record("example.com", "2021-01-01T00:00:00")]);
    let relay = Relay::start(&otx, &[]);
    let domain = obs("domain", "example.com");

    let mut expected = Expected::default();
    expected
        .found(&otx, &domain, id, "2021-01-01T00:00:00Z", None)
        .judged(&otx, &domain, "domain/example.com", Judged::Suspicious(1));
    check(
        &relay,
        &json!([obs("ip", IP), domain]),
        &json!({
            "data": expected.data(),
            "errors": [{
                "code": "oops",
                "message": "Something went wrong. Reason: 500 Internal Server Error.",
                "type": "fatal",
            }],
        }),
    );
}

// ---------------------------------------------------------------------------
// Order across observables

#[test]
fn entities_follow_the_input_order_and_one_pulse_gives_one_indicator_per_sighting() {
    let otx = FakeOtx::start();
    let (shared, other) = ("600000000000000000000001", "600000000000000000000002");
    let sha1 = obs("sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    let ip = obs("ip", IP);
    let domain = obs("domain", "example.com");
    // The first observable answers last: the order is the input's, not OTX's.
    otx.on(
        &general_path("file", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        Reply::json(general(
            "FileHash-SHA1",
            vec![pulse(other, "FileHash-SHA1")],
        ))
        .with_head_delay(Duration::from_millis(600)),
    );
    serve_records(
        &otx,
        other,
        vec![record(
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "2021-01-01T00:00:00",
        )],
    );
    let mut both = pulse(shared, "IPv4");
    both["indicator_type_counts"] = json!({"IPv4": 1, "domain": 1});
    otx.on(
        &general_path("IPv4", IP),
        Reply::json(general("IPv4", vec![both.clone()])),
    );
    otx.on(
        &general_path("domain", "example.com"),
        Reply::json(general("domain", vec![both])),
    );
    let mut domain_record = record("example.com", "2021-06-01T00:00:00");
    domain_record["expiration"] = json!("2021-07-01T00:00:00");
    serve_records(
        &otx,
        shared,
        vec![domain_record, record(IP, "2021-05-01T00:00:00")],
    );
    let relay = Relay::start(&otx, &[]);

    let mut expected = Expected::default();
    expected
        .found(&otx, &sha1, other, "2021-01-01T00:00:00Z", None)
        .found(&otx, &ip, shared, "2021-05-01T00:00:00Z", None)
        .found(
            &otx,
            &domain,
            shared,
            "2021-06-01T00:00:00Z",
            Some("2021-07-01T00:00:00Z"),
        )
        .judged(
            &otx,
            &sha1,
            "file/da39a3ee5e6b4b0d3255bfef95601890afd80709",
            Judged::Suspicious(1),
        )
        .judged(&otx, &ip, &format!("ip/{IP}"), Judged::Suspicious(1))
        .judged(&otx, &domain, "domain/example.com", Judged::Suspicious(1));
    let body = check_data(&relay, &json!([sha1, ip, domain]), &expected);
    let indicators = docs(&body, "indicators");
    // python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, '600000000000000000000001'))"
    let shared_id = "transient:indicator-90897192-2b08-5e18-a243-90c3d0f78ec2";
    assert_eq!(indicators[1]["id"], shared_id);
    assert_eq!(indicators[2]["id"], shared_id);
    assert_ne!(indicators[0]["id"], shared_id);
}

// ---------------------------------------------------------------------------
// Text caps and optional fields

#[test]
fn long_texts_are_cut_on_a_character_boundary_ending_in_an_ellipsis() {
    let otx = FakeOtx::start();
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
    ];
    let a = |n: usize, c: &str| c.repeat(n);
    // 1025 characters; the 1023rd kept is two bytes wide.
    let long_name = format!("{}é🦀x", a(1022, "a"));
    // 5001 characters; the 2047th and the 4999th kept are multi-byte.
    let long_description = format!("{}é🦀{}ü€ß", a(2046, "x"), a(2950, "z"));
    let long_tag = format!("{}🦀xy", a(1022, "t"));
    let mut cut = pulse(ids[0], "IPv4");
    cut["name"] = json!(long_name);
    cut["description"] = json!(long_description);
    cut["tags"] = json!([long_tag, a(1024, "🦀"), "short"]);
    // Exactly at the caps: untouched.
    let mut at_caps = pulse(ids[1], "IPv4");
    at_caps["name"] = json!(a(1024, "🦀"));
    at_caps["description"] = json!(a(2048, "é"));
    at_caps["tags"] = json!([]);
    // Over the short_description cap only.
    let mut between = pulse(ids[2], "IPv4");
    between["name"] = json!("n");
    between["description"] = json!(a(5000, "é"));
    between["tags"] = json!(["t"]);
    otx.on(
        &general_path("IPv4", IP),
        Reply::json(general("IPv4", vec![cut, at_caps, between])),
    );
    serve_records(&otx, ids[0], vec![record(IP, "2021-01-03T00:00:00")]);
    serve_records(&otx, ids[1], vec![record(IP, "2021-01-02T00:00:00")]);
    serve_records(&otx, ids[2], vec![record(IP, "2021-01-01T00:00:00")]);
    let relay = Relay::start(&otx, &[]);
    let observable = obs("ip", IP);

    let shown = |id: &str, title: String, short_description: String, description: String| Shown {
        title,
        short_description,
        description,
        ..Shown::synthetic(id)
    };
    let mut expected = Expected::default();
    expected
        .shown(
            &otx,
            &observable,
            Shown {
                tags: Some(json!([
                    format!("{}🦀…", a(1022, "t")),
                    a(1024, "🦀"),
                    "short"
                ])),
                ..shown(
                    ids[0],
                    format!("{}é…", a(1022, "a")),
                    format!("{}é…", a(2046, "x")),
                    format!("{}é🦀{}ü…", a(2046, "x"), a(2950, "z")),
                )
            },
            "2021-01-03T00:00:00Z",
            None,
        )
        .shown(
            &otx,
            &observable,
            Shown {
                tags: Some(json!([])),
                ..shown(ids[1], a(1024, "🦀"), a(2048, "é"), a(2048, "é"))
            },
            "2021-01-02T00:00:00Z",
            None,
        )
        .shown(
            &otx,
            &observable,
            Shown {
                tags: Some(json!(["t"])),
                ..shown(
                    ids[2],
                    "n".to_string(),
                    format!("{}…", a(2047, "é")),
                    a(5000, "é"),
                )
            },
            "2021-01-01T00:00:00Z",
            None,
        );
    expected.judged(&otx, &observable, &format!("ip/{IP}"), Judged::Malicious(3));
    check_data(&relay, &json!([observable]), &expected);
}

#[test]
fn absent_optional_fields_get_their_defaults_and_times_keep_their_zones() {
    let otx = FakeOtx::start();
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
    ];
    let bare = |id: &str| {
        json!({
            "id": id,
            "name": format!("Bare {id}"),
            "indicator_type_counts": {"IPv4": 1},
        })
    };
    let mut nulls = bare(ids[2]);
    nulls["author"] = json!(null);
    nulls["description"] = json!(null);
    nulls["TLP"] = json!(null);
    nulls["tags"] = json!(null);
    otx.on(
        &general_path("IPv4", IP),
        Reply::json(general("IPv4", vec![bare(ids[0]), bare(ids[1]), nulls])),
    );
    let mut zulu = record(IP, "2020-07-03T12:00:00Z");
    zulu["expiration"] = json!("2020-08-01T00:00:00.123456");
    serve_records(&otx, ids[0], vec![zulu]);
    let mut offset = record(IP, "2020-07-02T14:00:00+02:00");
    offset["expiration"] = json!("2020-08-02T00:00:00-05:00");
    serve_records(&otx, ids[1], vec![offset]);
    serve_records(&otx, ids[2], vec![record(IP, "2020-07-01T12:00:00.123456")]);
    let relay = Relay::start(&otx, &[]);
    let observable = obs("ip", IP);

    let mut expected = Expected::default();
    for (id, start, end) in [
        (
            ids[0],
            "2020-07-03T12:00:00Z",
            Some("2020-08-01T00:00:00.123456Z"),
        ),
        (
            ids[1],
            "2020-07-02T14:00:00+02:00",
            Some("2020-08-02T00:00:00-05:00"),
        ),
        (ids[2], "2020-07-01T12:00:00.123456Z", None),
    ] {
        let shown = Shown {
            id: id.to_string(),
            title: format!("Bare {id}"),
            short_description: String::new(),
            description: String::new(),
            producer: "AlienVault OTX".to_string(),
            tags: None,
            tlp: None,
        };
        expected.shown(&otx, &observable, shown, start, end);
    }
    expected.judged(&otx, &observable, &format!("ip/{IP}"), Judged::Malicious(3));
    check_data(&relay, &json!([observable]), &expected);
}

// ---------------------------------------------------------------------------
// The recorded samples

/// One recorded `/general` sample and the observable it answers.
struct GeneralSample {
    file: &'static str,
    type_: &'static str,
    value: &'static str,
    section: &'static str,
    /// The value as quoted in the OTX path and the refer link.
    quoted: &'static str,
    judged: Option<Judged<'static>>,
}

impl GeneralSample {
    fn new(file: &'static str, type_: &'static str, value: &'static str) -> GeneralSample {
        let section = match type_ {
            "ip" => "IPv4",
            "ipv6" => "IPv6",
            "sha1" => "file",
            other => other,
        };
        GeneralSample {
            file,
            type_,
            value,
            section,
            quoted: value,
            judged: None,
        }
    }

    fn quoted(self, quoted: &'static str) -> GeneralSample {
        GeneralSample { quoted, ..self }
    }

    fn judged(self, judged: Judged<'static>) -> GeneralSample {
        GeneralSample {
            judged: Some(judged),
            ..self
        }
    }
}

#[test]
fn every_general_sample_parses_without_error() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let url = "http://www.fotoidea.com/sport/4x4_san_ponso/slides/IMG_0068.html";
    let cases = [
        GeneralSample::new("general-ipv4.json", "ip", SAMPLE_IP).judged(Judged::Suspicious(1)),
        GeneralSample::new("general-ipv4-1pulse-inactive.json", "ip", "98.136.103.23"),
        GeneralSample::new("general-ipv4-no-pulses-whitelisted.json", "ip", "8.8.8.8")
            .judged(Judged::Clean(&["Known False Positive", "Whitelisted IP"])),
        GeneralSample::new("general-unknown-domain.json", "domain", "swimlane.com"),
        GeneralSample::new(
            "general-unknown-ipv6.json",
            "ipv6",
            "0:0:0:0:0:ffff:808:808",
        ),
        GeneralSample::new(
            "general-file-sha1-no-pulses.json",
            "sha1",
            "6c5360d41bd2b14b1565f5b18e5c203cf512e493",
        ),
        GeneralSample::new("general-url-no-pulses.json", "url", url)
            .quoted("http:%2F%2Fwww.fotoidea.com%2Fsport%2F4x4_san_ponso%2Fslides%2FIMG_0068.html"),
    ];
    for case in cases {
        let path = general_path(case.section, case.quoted);
        otx.on(&path, Reply::file(case.file));
        let observable = obs(case.type_, case.value);
        let mut expected = Expected::default();
        if let Some(judged) = case.judged {
            let category = if case.section == "file" {
                "file"
            } else {
                case.type_
            };
            let refer = format!("{category}/{}", case.quoted);
            expected.judged(&otx, &observable, &refer, judged);
        }
        // The counted pulse of general-ipv4.json has no indicator page here
        // (404): no sighting, and no error either.
        let body = observe(&relay, &json!([observable]));
        assert!(body.get("errors").is_none(), "{}: {body}", case.file);
        check_json(&body, &json!({"data": expected.data()}));
        check_links(&body);
        assert_eq!(otx.requests_to(&path).len(), 1, "{}", case.file);
    }
}

#[test]
fn the_pulse_indicator_samples_parse_as_pages() {
    let otx = FakeOtx::start();
    // Recorded pulse 57204e9b…, served in two pages; its records are on both.
    let paged = "57204e9b3c4c3e015d93cb12";
    let single = "57204e9b3c4c3e015d93cbff";
    let on_page_two = obs("sha1", "675A3247F4C0E1105A41C685F4C2FB606E5B1EAC");
    let on_single = obs("domain", "jackhex.md5c.net");
    let sample_pulse = |id: &str, base_type: &str| {
        json!({
            "id": id,
            "name": "Sample pulse",
            "description": "",
            "author": {"username": "AlienVault"},
            "TLP": "white",
            "tags": ["apt"],
            "indicator_type_counts": {base_type: 13},
        })
    };
    otx.on(
        &general_path("file", "675a3247f4c0e1105a41c685f4c2fb606e5b1eac"),
        Reply::json(general(
            "FileHash-SHA1",
            vec![sample_pulse(paged, "FileHash-SHA1")],
        )),
    );
    otx.on(
        &general_path("domain", "jackhex.md5c.net"),
        Reply::json(general("domain", vec![sample_pulse(single, "domain")])),
    );
    otx.on_page(
        &pulse_path(paged),
        1,
        Reply::file("pulse-indicators-page1.json"),
    );
    otx.on_page(
        &pulse_path(paged),
        2,
        Reply::file("pulse-indicators-page2.json"),
    );
    otx.on(
        &pulse_path(single),
        Reply::file("pulse-indicators-recorded-single-page.json"),
    );
    let relay = Relay::start(&otx, &[]);

    let mut expected = Expected::default();
    for (observable, id) in [(&on_page_two, paged), (&on_single, single)] {
        let shown = Shown {
            id: id.to_string(),
            title: "Sample pulse".to_string(),
            short_description: String::new(),
            description: String::new(),
            producer: "AlienVault".to_string(),
            tags: Some(json!(["apt"])),
            tlp: Some("white".to_string()),
        };
        expected.shown(&otx, observable, shown, "2016-04-27T05:31:07Z", None);
    }
    expected
        .judged(
            &otx,
            &on_page_two,
            "file/675A3247F4C0E1105A41C685F4C2FB606E5B1EAC",
            Judged::Suspicious(1),
        )
        .judged(
            &otx,
            &on_single,
            "domain/jackhex.md5c.net",
            Judged::Suspicious(1),
        );
    let body = check_data(&relay, &json!([on_page_two, on_single]), &expected);
    // python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, '57204e9b3c4c3e015d93cb12'))"
    assert_eq!(
        docs(&body, "indicators")[0]["id"],
        "transient:indicator-e5de6383-e922-50ca-bfbc-ee2a9dad3d50"
    );
    let pages: Vec<Option<String>> = otx
        .requests_to(&pulse_path(paged))
        .iter()
        .map(|r| r.query_param("page"))
        .collect();
    assert_eq!(pages, [Some("1".into()), Some("2".into())]);
    assert_eq!(otx.requests_to(&pulse_path(single)).len(), 1);
}
