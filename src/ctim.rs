//! The CTIM entities the relay emits, built from OTX's domain types.
//!
//! Each function here is pure: the same input gives the same document,
//! except for the random (uuid4) ids and the `now` the caller passes. The
//! links to OTX's pages come in as arguments (`otx::links` makes them).

use std::time::{Duration, SystemTime};

use serde::Serialize;
use uuid::Uuid;

use crate::intel::{AttackId, PassiveDns, Pulse, Record};
use crate::observable::{quote_all, Kind, Observable};
use crate::time::{format_time, utc};
use crate::verdict::{Assessment, Disposition};

pub const SCHEMA_VERSION: &str = "1.0.17";
pub const SOURCE: &str = "AlienVault OTX";

/// CTIM's length caps, in characters.
const TITLE_MAX: usize = 1024;
const SHORT_DESCRIPTION_MAX: usize = 2048;
const DESCRIPTION_MAX: usize = 5000;
const TAG_MAX: usize = 1024;

/// `text` cut to `max` characters, ending in `…` when cut.
pub fn cap(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) => {
            let end = text
                .char_indices()
                .nth(max - 1)
                .map_or(text.len(), |(i, _)| i);
            format!("{}…", &text[..end])
        }
    }
}

/// The indicator id of a pulse: stable across requests (uuid5 in the X.500
/// namespace, as the older relay made it).
pub fn indicator_id(pulse_id: &str) -> String {
    format!(
        "transient:indicator-{}",
        Uuid::new_v5(&Uuid::NAMESPACE_X500, pulse_id.as_bytes())
    )
}

/// The id of a malware family, from its name in any case (SPEC §13):
/// stable across requests and pulses, like the indicator's.
pub fn malware_id(name: &str) -> String {
    format!(
        "transient:malware-{}",
        Uuid::new_v5(
            &Uuid::NAMESPACE_X500,
            format!("otx-malware:{}", name.to_lowercase()).as_bytes()
        )
    )
}

/// The id of an ATT&CK technique (SPEC §13), from its id in any case.
pub fn attack_pattern_id(technique: &str) -> String {
    format!(
        "transient:attack-pattern-{}",
        Uuid::new_v5(
            &Uuid::NAMESPACE_X500,
            format!("otx-attack:{}", technique.to_uppercase()).as_bytes()
        )
    )
}

/// CTIM's `tlp` for OTX's `TLP` (SPEC §13): CTIM knows `red`, `amber`,
/// `green` and `white` only. TLP 2.0's `clear` is 1.0's `white`, and
/// `amber+strict` is an `amber` narrowed to the organisation, the nearest
/// CTIM has; any other value (`purple`, empty, misspelt) gives no `tlp` at
/// all rather than one XDR would refuse or misread. ASCII case is ignored;
/// nothing else is (no trimming, no guessing).
pub fn tlp(otx: &str) -> Option<&'static str> {
    Some(match otx.to_ascii_lowercase().as_str() {
        "red" => "red",
        "amber" | "amber+strict" => "amber",
        "green" => "green",
        "white" | "clear" => "white",
        _ => return None,
    })
}

/// A transient id: `transient:{kind}-{random UUID}`.
fn transient(kind: &str) -> String {
    format!("transient:{kind}-{}", random_uuid())
}

/// Random UUIDs (v4) made per thread from one batch of the system's random
/// bytes: `Uuid::new_v4` asks the kernel for each (a `getrandom` call per
/// CTIM entity, ~50 per cold `/observe`).
fn random_uuid() -> Uuid {
    use std::cell::RefCell;
    const BATCH: usize = 64;
    thread_local! {
        static BYTES: RefCell<([u8; 16 * BATCH], usize)> =
            const { RefCell::new(([0; 16 * BATCH], BATCH)) };
    }
    let batched = BYTES.try_with(|cell| {
        let (bytes, next) = &mut *cell.try_borrow_mut().ok()?;
        if *next == BATCH {
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), bytes).ok()?;
            *next = 0;
        }
        let mut one = [0; 16];
        one.copy_from_slice(&bytes[*next * 16..][..16]);
        *next += 1;
        Some(uuid::Builder::from_random_bytes(one).into_uuid())
    });
    batched.ok().flatten().unwrap_or_else(Uuid::new_v4)
}

// The entities below are written straight to the answer by serde: their
// fields are exactly the fields CTIM gets (SPEC §6, §7, §13), and they are
// declared in alphabetical order, so the bytes are those a sorted JSON
// object would give.

/// `{"start_time", "end_time"}` of a CTIM time span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeSpan {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    pub start_time: String,
}

/// The pulse as a feed (SPEC §6).
#[derive(Debug, Clone, Serialize)]
pub struct Indicator {
    pub confidence: &'static str,
    pub external_ids: [String; 1],
    pub id: String,
    pub producer: String,
    pub schema_version: &'static str,
    pub short_description: String,
    pub source: &'static str,
    pub source_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tlp: Option<&'static str>,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub valid_time: TimeSpan,
}

/// The observable seen in the pulse (SPEC §6), or in OTX's passive DNS
/// (SPEC §15: no `external_ids`, but `relations`).
#[derive(Debug, Clone, Serialize)]
pub struct Sighting {
    pub confidence: &'static str,
    pub count: u32,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_ids: Option<[String; 1]>,
    pub id: String,
    pub internal: bool,
    pub observables: [Observable; 1],
    pub observed_time: TimeSpan,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relations: Option<Vec<Relation>>,
    pub schema_version: &'static str,
    pub source: &'static str,
    pub source_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tlp: Option<&'static str>,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

/// Ties a sighting to its indicator (`member-of`, SPEC §6), or an indicator
/// to a malware or attack pattern its pulse names (`indicates`, SPEC §13).
#[derive(Debug, Clone, Serialize)]
pub struct Relationship {
    pub id: String,
    pub relationship_type: &'static str,
    pub schema_version: &'static str,
    pub source_ref: String,
    pub target_ref: String,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

fn relationship(
    relationship_type: &'static str,
    source_ref: &str,
    target_ref: &str,
) -> Relationship {
    Relationship {
        id: transient("relationship"),
        relationship_type,
        schema_version: SCHEMA_VERSION,
        source_ref: source_ref.to_owned(),
        target_ref: target_ref.to_owned(),
        type_: "relationship",
    }
}

/// `indicates` from a pulse's indicator to an entity (SPEC §13).
pub fn indicates(indicator_id: &str, target_id: &str) -> Relationship {
    relationship("indicates", indicator_id, target_id)
}

/// The three entities one (pulse, record) pair gives.
pub struct Entities {
    pub indicator: Indicator,
    pub sighting: Sighting,
    pub relationship: Relationship,
}

/// Maps one pulse containing `observable` to CTIM; `pulse_page` is the
/// pulse's page on OTX.
pub fn entities(
    observable: &Observable,
    pulse: &Pulse,
    record: &Record,
    pulse_page: String,
) -> Entities {
    let description = pulse.description.as_deref().unwrap_or("");
    let created = utc(&record.created);
    let source_uri = pulse_page;
    let indicator_id = indicator_id(&pulse.id);
    let title = pulse.name.as_deref().map(|name| cap(name, TITLE_MAX));
    let sighting_id = transient("sighting");
    let relationship = relationship("member-of", &sighting_id, &indicator_id);
    let tlp = pulse.tlp.as_deref().and_then(tlp);
    let sighting = Sighting {
        confidence: "High",
        count: 1,
        description: cap(description, DESCRIPTION_MAX),
        external_ids: Some([pulse.id.clone()]),
        id: sighting_id,
        internal: false,
        observables: [observable.clone()],
        observed_time: TimeSpan {
            end_time: Some(created.clone()),
            start_time: created.clone(),
        },
        relations: None,
        schema_version: SCHEMA_VERSION,
        source: SOURCE,
        source_uri: source_uri.clone(),
        title: title.clone(),
        tlp,
        type_: "sighting",
    };
    let indicator = Indicator {
        confidence: "High",
        external_ids: [pulse.id.clone()],
        id: indicator_id,
        producer: pulse.author.as_deref().unwrap_or(SOURCE).to_owned(),
        schema_version: SCHEMA_VERSION,
        short_description: cap(description, SHORT_DESCRIPTION_MAX),
        source: SOURCE,
        source_uri,
        tags: pulse
            .tags
            .as_ref()
            .map(|tags| tags.iter().map(|t| cap(t, TAG_MAX)).collect()),
        title,
        tlp,
        type_: "indicator",
        valid_time: TimeSpan {
            end_time: record.expiration.as_deref().map(utc),
            start_time: created,
        },
    };
    Entities {
        indicator,
        sighting,
        relationship,
    }
}

/// A CTIM observed relation: what OTX's passive DNS saw a name resolve to
/// (SPEC §15).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Relation {
    pub origin: &'static str,
    pub related: Observable,
    pub relation: &'static str,
    pub source: Observable,
}

/// The sighting of `observable` in OTX's passive DNS (SPEC §15): one
/// `Resolved_To` relation per resolution, the first `limit` of them (what
/// was cached may come from a relay of the fleet with a larger limit);
/// `None` when there is none. It spans the relations' times: the earliest
/// `first` to the latest `last`, one standing for the other when no
/// relation has it, `now` when none has either. `indicator_page` is the
/// observable's page on OTX.
pub fn passive_dns_sighting(
    observable: &Observable,
    passive_dns: &PassiveDns,
    limit: usize,
    now: std::time::SystemTime,
    indicator_page: String,
) -> Option<Sighting> {
    let kept = passive_dns
        .resolutions
        .get(..limit)
        .unwrap_or(&passive_dns.resolutions);
    if kept.is_empty() {
        return None;
    }
    let start = kept.iter().filter_map(|r| r.first.as_deref()).min();
    let end = kept.iter().filter_map(|r| r.last.as_deref()).max();
    let (start, end) = match (start.or(end), end.or(start)) {
        (Some(start), Some(end)) => (utc(start), utc(end)),
        _ => (format_time(now), format_time(now)),
    };
    let relations: Vec<Relation> = kept
        .iter()
        .map(|r| Relation {
            origin: "AlienVault OTX passive DNS",
            related: Observable::new(
                if r.ipv6 { Kind::Ipv6 } else { Kind::Ip },
                r.address.clone(),
            ),
            relation: "Resolved_To",
            source: Observable::new(Kind::Domain, r.hostname.clone()),
        })
        .collect();
    Some(Sighting {
        confidence: "High",
        count: u32::try_from(relations.len()).unwrap_or(u32::MAX),
        description: format!(
            "AlienVault OTX passive DNS saw {} resolution(s) for this {}.",
            relations.len(),
            observable.kind.display_name()
        ),
        external_ids: None,
        id: transient("sighting"),
        internal: false,
        observables: [observable.clone()],
        observed_time: TimeSpan {
            end_time: Some(end),
            start_time: start,
        },
        relations: Some(relations),
        schema_version: SCHEMA_VERSION,
        source: SOURCE,
        source_uri: indicator_page,
        title: Some("Seen in AlienVault OTX passive DNS".to_owned()),
        tlp: None,
        type_: "sighting",
    })
}

/// A malware family a pulse names (SPEC §13).
#[derive(Debug, Clone, Serialize)]
pub struct Malware {
    pub description: String,
    pub id: String,
    pub labels: [&'static str; 1],
    pub schema_version: &'static str,
    pub short_description: String,
    pub source: &'static str,
    pub source_uri: String,
    pub title: String,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

/// The malware entity of a family named `name` (as the pulse spells it);
/// `search` is OTX's search of its pulses for the name.
pub fn malware(name: &str, search: String) -> Malware {
    let text = format!("{name}, named by AlienVault OTX pulses");
    Malware {
        description: cap(&text, DESCRIPTION_MAX),
        id: malware_id(name),
        labels: ["malware"],
        schema_version: SCHEMA_VERSION,
        short_description: cap(&text, SHORT_DESCRIPTION_MAX),
        source: SOURCE,
        source_uri: search,
        title: cap(name, TITLE_MAX),
        type_: "malware",
    }
}

/// An ATT&CK technique a pulse names (SPEC §13).
#[derive(Debug, Clone, Serialize)]
pub struct AttackPattern {
    pub description: String,
    pub external_references: [ExternalReference; 1],
    pub id: String,
    pub schema_version: &'static str,
    pub short_description: String,
    pub source: &'static str,
    pub title: String,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

/// Where an entity is described outside CTIM: here, MITRE's page.
#[derive(Debug, Clone, Serialize)]
pub struct ExternalReference {
    pub external_id: String,
    pub source_name: &'static str,
    pub url: String,
}

/// The attack pattern entity of a technique (its id already checked when
/// read): titled with OTX's `display_name`, else the id; linked to its page
/// on attack.mitre.org, where a sub-technique `T1059.001` is
/// `techniques/T1059/001/`.
pub fn attack_pattern(attack: &AttackId) -> AttackPattern {
    let technique = &attack.id;
    let title = attack.name.as_deref().unwrap_or(technique);
    // "T1059 (MITRE ATT&CK T1059)" would say the id twice.
    let text = if title == technique {
        format!("MITRE ATT&CK {technique}, named by AlienVault OTX pulses")
    } else {
        format!("{title} (MITRE ATT&CK {technique}), named by AlienVault OTX pulses")
    };
    AttackPattern {
        description: cap(&text, DESCRIPTION_MAX),
        external_references: [ExternalReference {
            external_id: technique.clone(),
            source_name: "mitre-attack",
            url: format!(
                "https://attack.mitre.org/techniques/{}/",
                technique.replace('.', "/")
            ),
        }],
        id: attack_pattern_id(technique),
        schema_version: SCHEMA_VERSION,
        short_description: cap(&text, SHORT_DESCRIPTION_MAX),
        source: SOURCE,
        title: cap(title, TITLE_MAX),
        type_: "attack_pattern",
    }
}

/// A "Search for this …" link (SPEC §5).
#[derive(Debug, Clone, Serialize)]
pub struct ReferLink {
    pub categories: [&'static str; 2],
    pub description: String,
    pub id: String,
    pub title: String,
    pub url: String,
}

/// The refer link of one observable (SPEC 5) to `url`, its page on OTX.
pub fn refer_link(observable: &Observable, url: String) -> ReferLink {
    let name = observable.kind.display_name();
    ReferLink {
        categories: ["Search", "AlienVault OTX"],
        description: format!("Lookup this {name} on AlienVault OTX"),
        id: format!(
            "ref-avotx-search-{}-{}",
            observable.kind.type_name(),
            quote_all(&observable.value)
        ),
        title: format!("Search for this {name}"),
        url,
    }
}

/// A CTIM Judgement (SPEC §7).
#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    pub confidence: &'static str,
    pub disposition: u8,
    pub disposition_name: &'static str,
    pub id: String,
    pub observable: Observable,
    pub priority: u8,
    pub reason: String,
    pub schema_version: &'static str,
    pub severity: &'static str,
    pub source: &'static str,
    pub source_uri: String,
    pub tlp: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub valid_time: TimeSpan,
}

/// A CTIM Verdict, pointing at its judgement.
#[derive(Debug, Clone, Serialize)]
pub struct CtimVerdict {
    pub disposition: u8,
    pub disposition_name: &'static str,
    pub judgement_id: String,
    pub observable: Observable,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub valid_time: TimeSpan,
}

/// A Judgement and its Verdict.
pub struct Verdict {
    pub judgement: Judgement,
    pub verdict: CtimVerdict,
}

/// The CTIM Judgement and Verdict of one observable `verdict::assess`ed;
/// `indicator_page` is its page on OTX.
pub fn verdict(
    observable: &Observable,
    assessment: &Assessment,
    now: SystemTime,
    valid_days: u64,
    indicator_page: String,
) -> Verdict {
    let d = assessment.disposition;
    let valid_time = TimeSpan {
        end_time: Some(format_time(now + Duration::from_secs(valid_days * 86_400))),
        start_time: format_time(now),
    };
    let id = transient("judgement");
    let verdict = CtimVerdict {
        disposition: d as u8,
        disposition_name: d.name(),
        judgement_id: id.clone(),
        observable: observable.clone(),
        type_: "verdict",
        valid_time: valid_time.clone(),
    };
    let judgement = Judgement {
        confidence: confidence(d),
        disposition: d as u8,
        disposition_name: d.name(),
        id,
        observable: observable.clone(),
        priority: 85,
        reason: assessment.reason.clone(),
        schema_version: SCHEMA_VERSION,
        severity: severity(d),
        source: SOURCE,
        source_uri: indicator_page,
        tlp: "white",
        type_: "judgement",
        valid_time,
    };
    Verdict { judgement, verdict }
}

/// CTIM's `confidence` of a judgement of `disposition`.
fn confidence(disposition: Disposition) -> &'static str {
    match disposition {
        Disposition::Suspicious => "Medium",
        _ => "High",
    }
}

/// CTIM's `severity` of a judgement of `disposition`.
fn severity(disposition: Disposition) -> &'static str {
    match disposition {
        Disposition::Clean => "None",
        Disposition::Malicious => "High",
        Disposition::Suspicious => "Medium",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observable::Kind;
    use erased_serialize::Doc;
    use serde_json::{json, Value};

    #[test]
    fn random_uuids_are_version_4_and_differ_across_batches() {
        let ids: std::collections::HashSet<Uuid> = (0..200).map(|_| random_uuid()).collect();
        assert_eq!(ids.len(), 200);
        for id in &ids {
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
        let id = transient("sighting");
        assert!(
            id.starts_with("transient:sighting-") && id.len() == 19 + 36,
            "{id}"
        );
    }

    #[test]
    fn caps_on_char_boundaries() {
        assert_eq!(cap("abc", 3), "abc");
        assert_eq!(cap("abcd", 3), "ab…");
        assert_eq!(cap("ééééé", 4), "ééé…");
        assert_eq!(cap("ééééé", 4).chars().count(), 4);
        assert_eq!(cap("", 3), "");
    }

    #[test]
    fn uuid5_matches_python() {
        // python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, '5fa083b3b6aa093f35e4818a'))"
        assert_eq!(
            indicator_id("5fa083b3b6aa093f35e4818a"),
            "transient:indicator-a7159adb-15e3-527d-b4ab-3f2d7b249507"
        );
    }

    #[test]
    fn refer_link_ids_quote_like_python() {
        let o = |t: &str, v: &str| Observable::new(Kind::from_type(t).expect("a kind"), v);
        let link = refer_link(&o("domain", ".."), "https://otx/page".to_owned());
        assert_eq!(link.id, "ref-avotx-search-domain-..");
        assert_eq!(link.url, "https://otx/page");
    }

    #[test]
    fn mapping_fields() {
        let o = Observable::new(Kind::Ip, "1.2.3.4");
        let p = Pulse {
            id: "p1".into(),
            name: Some("N".into()),
            description: None,
            author: None,
            tags: None,
            tlp: None,
            malware: Vec::new(),
            attacks: Vec::new(),
        };
        let r = Record {
            created: "2020-01-01T00:00:00".into(),
            expiration: None,
        };
        let e = entities(&o, &p, &r, "http://otx/page".to_owned());
        let as_value = |doc: &dyn erased_serialize::Doc| doc.value();
        let (indicator, sighting, relationship) = (
            as_value(&e.indicator),
            as_value(&e.sighting),
            as_value(&e.relationship),
        );
        // The bytes list the keys in order: those of a sorted JSON object.
        let keys = |doc: &dyn erased_serialize::Doc| {
            let text = doc.text();
            let v: Value = serde_json::from_str(&text).expect("JSON");
            let mut sorted: Vec<&String> = v.as_object().expect("an object").keys().collect();
            sorted.sort();
            // Each key is found after the one before it.
            let mut from = 0;
            for k in &sorted {
                let at = text[from..].find(&format!("\"{k}\":"));
                from += at.unwrap_or_else(|| panic!("{k} out of order in {text}")) + 1;
            }
            sorted
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(
            keys(&e.indicator),
            "confidence,external_ids,id,producer,schema_version,short_description,source,source_uri,title,type,valid_time"
        );
        assert_eq!(indicator["producer"], "AlienVault OTX");
        assert_eq!(
            indicator["valid_time"],
            json!({"start_time": "2020-01-01T00:00:00Z"})
        );
        assert_eq!(
            keys(&e.sighting),
            "confidence,count,description,external_ids,id,internal,observables,observed_time,schema_version,source,source_uri,title,type"
        );
        assert_eq!(
            sighting["observables"],
            json!([{"type": "ip", "value": "1.2.3.4"}])
        );
        assert_eq!(relationship["source_ref"], sighting["id"]);
        assert_eq!(relationship["target_ref"], indicator["id"]);
    }

    #[test]
    fn passive_dns_sighting_fields_and_times() {
        use crate::intel::Resolution;
        let r = |h: &str, a: &str, first: Option<&str>, last: Option<&str>| Resolution {
            hostname: h.into(),
            address: a.into(),
            ipv6: a.contains(':'),
            first: first.map(str::to_owned),
            last: last.map(str::to_owned),
        };
        let o = Observable::new(Kind::Hostname, "WWW.Example.com");
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        let dns = PassiveDns {
            resolutions: vec![
                r(
                    "www.example.com",
                    "192.0.2.1",
                    Some("2021-02-01T00:00:00"),
                    Some("2022-01-01T00:00:00"),
                ),
                r(
                    "www.example.com",
                    "2001:db8::1",
                    Some("2020-01-01T00:00:00+02:00"),
                    None,
                ),
                r(
                    "x.example.com",
                    "192.0.2.3",
                    None,
                    Some("2019-01-01T00:00:00"),
                ),
            ],
        };
        let page = || "http://otx/page/WWW.Example.com".to_owned();
        let s = passive_dns_sighting(&o, &dns, 50, now, page()).expect("a sighting");
        // The bytes, keys in alphabetical order.
        assert!(s.text().starts_with(
            "{\"confidence\":\"High\",\"count\":3,\"description\":\"AlienVault OTX passive DNS saw 3 resolution(s) for this hostname.\",\"id\":\"transient:sighting-"
        ), "{}", s.text());
        assert_eq!(
            s.value()["observed_time"],
            json!({"start_time": "2020-01-01T00:00:00+02:00", "end_time": "2022-01-01T00:00:00Z"})
        );
        assert_eq!(
            s.value()["relations"][1],
            json!({"origin": "AlienVault OTX passive DNS", "relation": "Resolved_To",
                   "source": {"type": "domain", "value": "www.example.com"},
                   "related": {"type": "ipv6", "value": "2001:db8::1"}})
        );
        assert_eq!(s.source_uri, "http://otx/page/WWW.Example.com");
        assert!(s.text().ends_with(
            "\"schema_version\":\"1.0.17\",\"source\":\"AlienVault OTX\",\"source_uri\":\"http://otx/page/WWW.Example.com\",\"title\":\"Seen in AlienVault OTX passive DNS\",\"type\":\"sighting\"}"
        ));
        // The limit cuts what a relay with a larger one cached.
        let one = passive_dns_sighting(&o, &dns, 1, now, page()).expect("a sighting");
        assert_eq!(one.count, 1);
        assert_eq!(
            one.value()["observed_time"],
            json!({"start_time": "2021-02-01T00:00:00Z", "end_time": "2022-01-01T00:00:00Z"})
        );
        // A time missing on every relation: the other; both: now.
        let only = |first, last| PassiveDns {
            resolutions: vec![r("a.example", "192.0.2.9", first, last)],
        };
        let time = |dns: &PassiveDns| {
            passive_dns_sighting(&o, dns, 50, now, page())
                .expect("a sighting")
                .value()["observed_time"]
                .clone()
        };
        let same = |t: &str| json!({"start_time": t, "end_time": t});
        assert_eq!(
            time(&only(None, Some("2021-01-01T00:00:00"))),
            same("2021-01-01T00:00:00Z")
        );
        assert_eq!(
            time(&only(Some("2021-01-01T00:00:00"), None)),
            same("2021-01-01T00:00:00Z")
        );
        assert_eq!(time(&only(None, None)), same("2023-11-14T22:13:20.123Z"));
        assert!(passive_dns_sighting(&o, &PassiveDns::default(), 50, now, page()).is_none());
    }

    #[test]
    fn named_entity_ids_match_python() {
        // python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, 'otx-malware:emotet'))"
        let emotet = "transient:malware-5a66b886-35ad-5cf6-ac61-bb0257516584";
        assert_eq!(malware_id("Emotet"), emotet);
        assert_eq!(malware_id("EMOTET"), emotet);
        assert_eq!(malware_id("emotet"), emotet);
        // python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, 'otx-attack:T1059.001'))"
        let powershell = "transient:attack-pattern-1609e7e7-39d9-59be-8872-6cfd6212443f";
        assert_eq!(attack_pattern_id("T1059.001"), powershell);
        assert_eq!(attack_pattern_id("t1059.001"), powershell);
        assert_ne!(attack_pattern_id("T1059"), powershell);
    }

    #[test]
    fn tlp_normalised() {
        for (otx, ctim) in [
            ("red", Some("red")),
            ("RED", Some("red")),
            ("Amber", Some("amber")),
            ("amber+strict", Some("amber")),
            ("AMBER+STRICT", Some("amber")),
            ("green", Some("green")),
            ("WHITE", Some("white")),
            ("clear", Some("white")),
            ("Clear", Some("white")),
            ("purple", None),
            ("", None),
            (" white", None),
            ("amber strict", None),
        ] {
            assert_eq!(tlp(otx), ctim, "{otx:?}");
        }
    }

    #[test]
    fn malware_and_attack_pattern_fields() {
        let search = || "http://otx/search".to_owned();
        let m = malware("Cobalt Strike/Beacon @x:y&z=1#2+3", search());
        assert_eq!(m.source_uri, "http://otx/search");
        assert_eq!(m.title, "Cobalt Strike/Beacon @x:y&z=1#2+3");
        assert_eq!(
            m.description,
            "Cobalt Strike/Beacon @x:y&z=1#2+3, named by AlienVault OTX pulses"
        );
        // The bytes, keys in alphabetical order.
        assert_eq!(
            malware("Emotet", search()).text(),
            "{\"description\":\"Emotet, named by AlienVault OTX pulses\",\
             \"id\":\"transient:malware-5a66b886-35ad-5cf6-ac61-bb0257516584\",\
             \"labels\":[\"malware\"],\"schema_version\":\"1.0.17\",\
             \"short_description\":\"Emotet, named by AlienVault OTX pulses\",\
             \"source\":\"AlienVault OTX\",\
             \"source_uri\":\"http://otx/search\",\
             \"title\":\"Emotet\",\"type\":\"malware\"}"
        );
        let sub = attack_pattern(&AttackId {
            id: "T1059.001".into(),
            name: Some("T1059.001 - PowerShell".into()),
        });
        assert_eq!(
            sub.value(),
            json!({
                "description": "T1059.001 - PowerShell (MITRE ATT&CK T1059.001), named by AlienVault OTX pulses",
                "external_references": [{
                    "external_id": "T1059.001",
                    "source_name": "mitre-attack",
                    "url": "https://attack.mitre.org/techniques/T1059/001/"
                }],
                "id": "transient:attack-pattern-1609e7e7-39d9-59be-8872-6cfd6212443f",
                "schema_version": "1.0.17",
                "short_description": "T1059.001 - PowerShell (MITRE ATT&CK T1059.001), named by AlienVault OTX pulses",
                "source": "AlienVault OTX",
                "title": "T1059.001 - PowerShell",
                "type": "attack_pattern"
            })
        );
        assert!(sub.text().starts_with(
            "{\"description\":\"T1059.001 - PowerShell (MITRE ATT&CK T1059.001), named by AlienVault OTX pulses\",\"external_references\":[{\"external_id\":\"T1059.001\",\"source_name\":\"mitre-attack\",\"url\":"
        ));
        let bare = attack_pattern(&AttackId {
            id: "T1059".into(),
            name: None,
        });
        assert_eq!(bare.title, "T1059");
        assert_eq!(
            bare.description,
            "MITRE ATT&CK T1059, named by AlienVault OTX pulses"
        );
        let r = indicates("transient:indicator-x", &bare.id);
        assert_eq!(r.relationship_type, "indicates");
        assert_eq!(r.source_ref, "transient:indicator-x");
        assert_eq!(r.target_ref, bare.id);
        assert!(r.id.starts_with("transient:relationship-"));
    }

    #[test]
    fn named_entities_keep_the_caps() {
        let long = "é".repeat(6000);
        let m = malware(&long, "http://otx/search".to_owned());
        assert_eq!(m.title.chars().count(), TITLE_MAX);
        assert_eq!(m.short_description.chars().count(), SHORT_DESCRIPTION_MAX);
        assert_eq!(m.description.chars().count(), DESCRIPTION_MAX);
        assert!(m.description.ends_with('…'));
        // The id is the whole name's, not the cut title's.
        assert_eq!(m.id, malware_id(&long));
        let a = attack_pattern(&AttackId {
            id: "T1566".into(),
            name: Some(long.clone()),
        });
        assert_eq!(a.title.chars().count(), TITLE_MAX);
        assert_eq!(a.short_description.chars().count(), SHORT_DESCRIPTION_MAX);
        assert_eq!(a.description.chars().count(), DESCRIPTION_MAX);
    }

    /// Any entity as a JSON value and as the text the answer carries.
    mod erased_serialize {
        pub trait Doc {
            fn value(&self) -> serde_json::Value;
            fn text(&self) -> String;
        }
        impl<T: serde::Serialize> Doc for T {
            fn value(&self) -> serde_json::Value {
                serde_json::to_value(self).expect("serializable")
            }
            fn text(&self) -> String {
                serde_json::to_string(self).expect("serializable")
            }
        }
    }

    #[test]
    fn shapes() {
        let o = Observable::new(Kind::Ip, "1.2.3.4");
        let a = Assessment {
            disposition: Disposition::Malicious,
            reason: "r".into(),
        };
        let now = std::time::UNIX_EPOCH + Duration::from_secs(86_400);
        let v = verdict(&o, &a, now, 7, "https://otx/page".to_owned());
        let judgement = serde_json::to_value(&v.judgement).expect("JSON");
        let verdict = serde_json::to_value(&v.verdict).expect("JSON");
        assert_eq!(
            judgement["valid_time"],
            json!({"start_time": "1970-01-02T00:00:00.000Z", "end_time": "1970-01-09T00:00:00.000Z"})
        );
        assert_eq!(judgement["source_uri"], "https://otx/page");
        assert_eq!(
            judgement["observable"],
            json!({"type": "ip", "value": "1.2.3.4"})
        );
        assert_eq!(verdict["judgement_id"], judgement["id"]);
        assert_eq!(verdict["valid_time"], judgement["valid_time"]);
        assert_eq!(
            (
                judgement["severity"].as_str(),
                judgement["confidence"].as_str()
            ),
            (Some("High"), Some("High"))
        );
        assert_eq!(judgement.as_object().map(|o| o.len()), Some(14));
        assert_eq!(verdict.as_object().map(|o| o.len()), Some(6));
    }
}
