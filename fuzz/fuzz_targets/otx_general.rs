//! Arbitrary bytes as an OTX `/general` answer: parsed as JSON, read by
//! `otx::general_from_json`, and every pulse mapped to CTIM with a record
//! taken from the same document. Nothing panics, and the CTIM text caps hold.

#![no_main]

use libfuzzer_sys::fuzz_target;
use otx_relay::observable::Observable;
use otx_relay::pulse::{general_from_json, Record};
use otx_relay::{ctim, verdict};
use serde_json::Value;

const BASE: &str = "http://127.0.0.1:1";

/// The length of a CTIM text field, in characters, or 0 when absent.
fn chars(doc: &Value, field: &str) -> usize {
    doc.get(field)
        .and_then(Value::as_str)
        .map_or(0, |s| s.chars().count())
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let general = general_from_json(&value);
    // The made-up pulse record: the document's own top-level `created` and
    // `expiration` when it has them, so the fuzzer reaches the time handling.
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let record = Record {
        created: text("created").unwrap_or_else(|| "2020-07-01T12:00:00".to_owned()),
        expiration: text("expiration"),
    };
    let observable = Observable {
        type_: "ip".to_owned(),
        value: "1.2.3.4".to_owned(),
    };
    for pulse in &general.pulses {
        assert!(!pulse.id.is_empty(), "a pulse without an id was kept");
        let e = ctim::entities(BASE, &observable, pulse, &record);
        for doc in [&e.indicator, &e.sighting] {
            assert!(chars(doc, "title") <= 1024, "title over the cap");
        }
        assert!(chars(&e.indicator, "short_description") <= 2048);
        assert!(chars(&e.sighting, "description") <= 5000);
        if let Some(tags) = e.indicator.get("tags").and_then(Value::as_array) {
            for tag in tags {
                assert!(tag.as_str().is_some_and(|t| t.chars().count() <= 1024));
            }
        }
        assert_eq!(e.relationship["source_ref"], e.sighting["id"]);
        assert_eq!(e.relationship["target_ref"], e.indicator["id"]);
        // What the server does with it last.
        let _ = serde_json::to_vec(&e.indicator).expect("serialises");
    }
    if let Some(assessment) = verdict::assess(&general, 2) {
        let v = verdict::verdict(BASE, &observable, &assessment, std::time::UNIX_EPOCH, 7);
        assert_eq!(v.verdict["judgement_id"], v.judgement["id"]);
    }
});
