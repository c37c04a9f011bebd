//! The CTIM entities the relay emits, built from OTX's domain types.
//!
//! Each function here is pure: the same input gives the same document,
//! except for the random (uuid4) ids and the `now` the caller passes.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::observable::{quote_all, quote_url, Observable};
use crate::pulse::{Pulse, Record};
use crate::time::utc;

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

fn transient(kind: &str) -> String {
    format!("transient:{kind}-{}", Uuid::new_v4())
}

/// The pulse's page on OTX (a link: Python's quote, no dot rule).
pub fn pulse_uri(base: &str, pulse_id: &str) -> String {
    format!("{base}/pulse/{}", quote_url(pulse_id))
}

/// The three entities one (pulse, record) pair gives.
pub struct Entities {
    pub indicator: Value,
    pub sighting: Value,
    pub relationship: Value,
}

/// Maps one pulse containing `observable` to CTIM.
pub fn entities(base: &str, observable: &Observable, pulse: &Pulse, record: &Record) -> Entities {
    let description = pulse.description.as_deref().unwrap_or("");
    let created = utc(&record.created);
    let source_uri = pulse_uri(base, &pulse.id);
    let indicator_id = indicator_id(&pulse.id);

    // Fields shared by indicator and sighting.
    let mut common = Map::new();
    common.insert("schema_version".into(), json!(SCHEMA_VERSION));
    common.insert("confidence".into(), json!("High"));
    common.insert("source".into(), json!(SOURCE));
    common.insert("external_ids".into(), json!([pulse.id]));
    common.insert("source_uri".into(), json!(source_uri));
    if let Some(name) = &pulse.name {
        common.insert("title".into(), json!(cap(name, TITLE_MAX)));
    }
    if let Some(tlp) = &pulse.tlp {
        common.insert("tlp".into(), json!(tlp));
    }

    let mut indicator = common.clone();
    indicator.insert("type".into(), json!("indicator"));
    indicator.insert("id".into(), json!(indicator_id));
    indicator.insert(
        "producer".into(),
        json!(pulse.author.as_deref().unwrap_or(SOURCE)),
    );
    indicator.insert(
        "short_description".into(),
        json!(cap(description, SHORT_DESCRIPTION_MAX)),
    );
    if let Some(tags) = &pulse.tags {
        let tags: Vec<String> = tags.iter().map(|t| cap(t, TAG_MAX)).collect();
        indicator.insert("tags".into(), json!(tags));
    }
    let mut valid_time = Map::new();
    valid_time.insert("start_time".into(), json!(created));
    if let Some(end) = &record.expiration {
        valid_time.insert("end_time".into(), json!(utc(end)));
    }
    indicator.insert("valid_time".into(), Value::Object(valid_time));

    let sighting_id = transient("sighting");
    let mut sighting = common;
    sighting.insert("type".into(), json!("sighting"));
    sighting.insert("id".into(), json!(sighting_id));
    sighting.insert("count".into(), json!(1));
    sighting.insert("internal".into(), json!(false));
    sighting.insert("observables".into(), json!([observable.to_json()]));
    sighting.insert(
        "description".into(),
        json!(cap(description, DESCRIPTION_MAX)),
    );
    sighting.insert(
        "observed_time".into(),
        json!({"start_time": created, "end_time": created}),
    );

    let relationship = json!({
        "type": "relationship",
        "schema_version": SCHEMA_VERSION,
        "id": transient("relationship"),
        "relationship_type": "member-of",
        "source_ref": sighting_id,
        "target_ref": indicator_id,
    });
    Entities {
        indicator: Value::Object(indicator),
        sighting: Value::Object(sighting),
        relationship,
    }
}

/// The refer link of one observable (SPEC 5).
pub fn refer_link(base: &str, observable: &Observable) -> Option<Value> {
    let kind = observable.kind()?;
    let name = kind.display_name();
    Some(json!({
        "id": format!("ref-avotx-search-{}-{}", observable.type_, quote_all(&observable.value)),
        "title": format!("Search for this {name}"),
        "description": format!("Lookup this {name} on AlienVault OTX"),
        "url": refer_url(base, observable)?,
        "categories": ["Search", "AlienVault OTX"],
    }))
}

/// `{AVOTX_URL}/indicator/{category}/{value}`, the value quoted exactly as
/// Python's `quote(value, safe='@:')` (SPEC §5, compatible): the dot rule of
/// the OTX API paths does not apply to links.
pub fn refer_url(base: &str, observable: &Observable) -> Option<String> {
    let kind = observable.kind()?;
    Some(format!(
        "{base}/indicator/{}/{}",
        kind.refer_category(),
        quote_url(&observable.value)
    ))
}

/// `{"count": n, "docs": [...]}`.
pub fn bundle(docs: Vec<Value>) -> Value {
    json!({"count": docs.len(), "docs": docs})
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn refer_links_quote_like_python() {
        let o = |t: &str, v: &str| Observable {
            type_: t.into(),
            value: v.into(),
        };
        let url = |t: &str, v: &str| refer_url("https://otx", &o(t, v)).unwrap();
        // `quote('..', safe='@:')` is `..`: no dot rule in links.
        assert_eq!(url("domain", ".."), "https://otx/indicator/domain/..");
        assert_eq!(url("domain", "."), "https://otx/indicator/domain/.");
        assert_eq!(
            url("url", "http://a.b/c?d#e f"),
            "https://otx/indicator/url/http:%2F%2Fa.b%2Fc%3Fd%23e%20f"
        );
        assert_eq!(url("email", "a@b.c"), "https://otx/indicator/email/a@b.c");
        let link = refer_link("https://otx", &o("domain", "..")).unwrap();
        assert_eq!(link["id"], "ref-avotx-search-domain-..");
        assert_eq!(link["url"], "https://otx/indicator/domain/..");
        assert_eq!(refer_url("https://otx", &o("nope", "x")), None);
    }

    #[test]
    fn mapping_fields() {
        let o = Observable {
            type_: "ip".into(),
            value: "1.2.3.4".into(),
        };
        let p = Pulse {
            id: "p1".into(),
            name: Some("N".into()),
            description: None,
            author: None,
            tags: None,
            tlp: None,
        };
        let r = Record {
            created: "2020-01-01T00:00:00".into(),
            expiration: None,
        };
        let e = entities("http://otx", &o, &p, &r);
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k.join(",")
        };
        assert_eq!(
            keys(&e.indicator),
            "confidence,external_ids,id,producer,schema_version,short_description,source,source_uri,title,type,valid_time"
        );
        assert_eq!(e.indicator["producer"], "AlienVault OTX");
        assert_eq!(
            e.indicator["valid_time"],
            json!({"start_time": "2020-01-01T00:00:00Z"})
        );
        assert_eq!(
            keys(&e.sighting),
            "confidence,count,description,external_ids,id,internal,observables,observed_time,schema_version,source,source_uri,title,type"
        );
        assert_eq!(e.relationship["source_ref"], e.sighting["id"]);
        assert_eq!(e.relationship["target_ref"], e.indicator["id"]);
    }
}
