//! Arbitrary bytes as an OTX `/general` answer: parsed as JSON, read by
//! `otx::general_for_fuzz`, and every pulse mapped to CTIM with a record
//! taken from the same document, its malware and techniques too (SPEC §13).
//! Nothing panics, the CTIM text caps hold, and `tlp` is one of CTIM's;
//! `otx::general_text_for_fuzz` (what the relay runs: a pruned parse)
//! reads the same `General` as a whole parse.

#![no_main]

use libfuzzer_sys::fuzz_target;
use otx_relay::intel::Record;
use otx_relay::observable::{Kind, Observable};
use otx_relay::{ctim, otx, verdict};
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
    let general = otx::general_for_fuzz(&value);
    if let Ok(text) = std::str::from_utf8(data) {
        let pruned = otx::general_text_for_fuzz(text)
            .expect("JSON to a whole parse is JSON to a pruned one");
        assert_eq!(pruned, general, "the pruned parse reads another General");
    }
    // The made-up pulse record: the document's own top-level `created` and
    // `expiration` when it has them, so the fuzzer reaches the time handling.
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let record = Record {
        created: text("created").unwrap_or_else(|| "2020-07-01T12:00:00".to_owned()),
        expiration: text("expiration"),
    };
    let observable = Observable::new(Kind::Ip, "1.2.3.4");
    for pulse in &general.pulses {
        assert!(!pulse.id.is_empty(), "a pulse without an id was kept");
        let e = ctim::entities(
            &observable,
            pulse,
            &record,
            otx::links::pulse_page(BASE, &pulse.id),
        );
        // What the server does with them last.
        let indicator = serde_json::to_value(&e.indicator).expect("serialises");
        let sighting = serde_json::to_value(&e.sighting).expect("serialises");
        let relationship = serde_json::to_value(&e.relationship).expect("serialises");
        for doc in [&indicator, &sighting] {
            assert!(chars(doc, "title") <= 1024, "title over the cap");
        }
        assert!(chars(&indicator, "short_description") <= 2048);
        assert!(chars(&sighting, "description") <= 5000);
        if let Some(tags) = indicator.get("tags").and_then(Value::as_array) {
            for tag in tags {
                assert!(tag.as_str().is_some_and(|t| t.chars().count() <= 1024));
            }
        }
        assert_eq!(relationship["source_ref"], sighting["id"]);
        assert_eq!(relationship["target_ref"], indicator["id"]);
        for doc in [&indicator, &sighting] {
            if let Some(tlp) = doc.get("tlp") {
                assert!(["red", "amber", "green", "white"].contains(&tlp.as_str().unwrap_or("")));
            }
        }
        let malwares = pulse
            .malware
            .iter()
            .map(|name| ctim::malware(name, otx::links::pulse_search(BASE, name)));
        let patterns = pulse.attacks.iter().map(ctim::attack_pattern);
        let named: Vec<Value> = malwares
            .map(|m| serde_json::to_value(&m).expect("serialises"))
            .chain(patterns.map(|a| serde_json::to_value(&a).expect("serialises")))
            .collect();
        for doc in &named {
            assert!(chars(doc, "title") > 0, "an entity without a name");
            assert!(chars(doc, "title") <= 1024, "title over the cap");
            assert!(chars(doc, "short_description") <= 2048);
            assert!(chars(doc, "description") <= 5000);
        }
    }
    if let Some(assessment) = verdict::assess(&general, 2) {
        let page = otx::links::indicator_page(BASE, &observable);
        let v = ctim::verdict(&observable, &assessment, std::time::UNIX_EPOCH, 7, page);
        assert_eq!(v.verdict.judgement_id, v.judgement.id);
        let _ = serde_json::to_vec(&v.judgement).expect("serialises");
    }
});
