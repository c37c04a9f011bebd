//! OTX's `/general` answer, read leniently into [`General`]: whatever is
//! missing or of the wrong type counts as absent; nothing panics. Also the
//! readers of the lists pulses hold (`malware_families`, `attack_ids`),
//! which the subscribed pages share.
use std::sync::Arc;

use serde::de::DeserializeSeed;
use serde_json::Value;

use super::cached::shared;
use super::{kinds, not_json, status_error, Otx, Session, Trouble};
use crate::error::RelayError;
use crate::intel::{AttackId, General, Pulse};
use crate::observable::{quote_path, Observable};

impl Otx {
    /// `GET /api/v1/indicators/{section}/{value}/general`, cached. `None`
    /// when OTX has no data (400/404) or the type has no OTX section.
    pub fn general(
        &self,
        session: &Session,
        observable: &Observable,
    ) -> Result<Arc<Option<General>>, RelayError> {
        let Some(section) = kinds::section(observable.kind) else {
            return Ok(Arc::new(None));
        };
        let url = format!(
            "{}/api/v1/indicators/{section}/{}/general",
            self.base,
            quote_path(&kinds::value(observable))
        );
        shared(self, &self.generals, session, &url, || {
            let response = self.send(session, "general", &url)?;
            match response.status().as_u16() {
                200 => {
                    let body = self.read_body(session, response)?;
                    // Checked as UTF-8 first: `from_utf8_lossy` walks valid
                    // text several times slower (2 % of a cold `/observe`'s
                    // instructions, by callgrind).
                    let text = match std::str::from_utf8(&body) {
                        Ok(text) => std::borrow::Cow::Borrowed(text),
                        Err(_) => String::from_utf8_lossy(&body),
                    };
                    let general = general_from_text(&text)
                        .map_err(|e| Trouble::Unusable.warned(not_json(e)))?;
                    Ok(Arc::new(Some(general)))
                }
                400 | 404 => Ok(Arc::new(None)),
                status => Err(status_error(status)),
            }
        })
    }
}

/// For the fuzz target `otx_general`: a `/general` answer as read.
#[doc(hidden)]
pub fn general_for_fuzz(value: &Value) -> General {
    general_from_json(value)
}

/// For the fuzz target `otx_general`: a `/general` answer (JSON text) as
/// the relay reads it, pruned ([`general_from_text`]).
#[doc(hidden)]
pub fn general_text_for_fuzz(text: &str) -> Result<General, serde_json::Error> {
    general_from_text(text)
}

/// Parses a `/general` answer (JSON text) and reads it as
/// [`general_from_json`] does, building only the parts that function reads
/// (see `pruned`): the rest is checked as JSON and skipped, never built
/// into a tree and freed again (two fifths of the relay's instructions for
/// a cold `/observe` went to building and freeing whole `/general` trees,
/// by callgrind). An answer that is not JSON is the parser's error.
pub(super) fn general_from_text(text: &str) -> Result<General, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = pruned::Pruned(pruned::GENERAL).deserialize(&mut de)?;
    de.end()?;
    Ok(general_from_json(&value))
}

/// Reads a `/general` answer leniently: whatever is missing or of the wrong
/// type counts as absent; nothing panics.
pub(super) fn general_from_json(value: &Value) -> General {
    let base_type = value
        .pointer("/base_indicator/type")
        .and_then(Value::as_str);
    let mut general = General::default();
    if let Some(pulses) = value
        .pointer("/pulse_info/pulses")
        .and_then(Value::as_array)
    {
        for p in pulses {
            let contains = match (
                base_type,
                p.get("indicator_type_counts").and_then(Value::as_object),
            ) {
                (Some(t), Some(counts)) => counts.contains_key(t),
                _ => false,
            };
            if !contains {
                continue;
            }
            match pulse_from_json(p) {
                Some(pulse) => general.pulses.push(pulse),
                None => general.skipped += 1,
            }
        }
    }
    if let Some(entries) = value.get("validation").and_then(Value::as_array) {
        general.validation_count = entries.len();
        general.validation = entries
            .iter()
            .filter_map(|v| match v {
                Value::Object(o) => o
                    .get("name")
                    .or_else(|| o.get("message"))
                    .or_else(|| o.get("source"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                _ => None,
            })
            .collect();
    }
    general.false_positive = value
        .get("false_positive")
        .and_then(Value::as_array)
        .is_some_and(|fps| {
            fps.iter()
                .any(|fp| fp.get("assessment").and_then(Value::as_str) == Some("accepted"))
        });
    // A `General` lives until its request is answered: pushed one by one,
    // a single pulse held room for four (two fifths of a 2 000-observable
    // answer's `General`s, by massif).
    general.pulses.shrink_to_fit();
    general
}

fn pulse_from_json(p: &Value) -> Option<Pulse> {
    let text = |name: &str| p.get(name).and_then(Value::as_str).map(str::to_owned);
    let id = match p.get("id")? {
        Value::String(s) if !s.is_empty() => s.clone(),
        _ => return None,
    };
    Some(Pulse {
        id,
        name: text("name"),
        description: text("description"),
        author: p
            .pointer("/author/username")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tags: p.get("tags").and_then(Value::as_array).map(|tags| {
            tags.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        }),
        tlp: text("TLP"),
        malware: items(p, "malware_families")
            .filter_map(malware_from_json)
            .collect(),
        attacks: items(p, "attack_ids")
            .filter_map(attack_from_json)
            .collect(),
    })
}

/// The names in a `malware_families` list (SPEC §11), as
/// `malware_from_json` reads each item.
pub(super) fn names(list: &[Value]) -> Vec<String> {
    list.iter().filter_map(malware_from_json).collect()
}

/// The items of the list `name` of a pulse; none when it is not a list.
fn items<'a>(p: &'a Value, name: &str) -> impl Iterator<Item = &'a Value> {
    p.get(name)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
}

/// A string of `value`, trimmed, unless empty.
fn name(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// An item of `malware_families` (SPEC §11): a plain string, or an object
/// whose `display_name`, else `id`, is the name. Anything else (numbers,
/// `null`, empty names, objects without a usable name) names nothing.
fn malware_from_json(item: &Value) -> Option<String> {
    match item {
        Value::String(_) => name(Some(item)),
        Value::Object(o) => name(o.get("display_name")).or_else(|| name(o.get("id"))),
        _ => None,
    }
    .map(str::to_owned)
}

/// An item of `attack_ids` (SPEC §11): a plain string that is a technique
/// id, or an object whose `id` (else, `display_name`) is one; its
/// `display_name` names it. Anything else names nothing: numbers, `null`,
/// and every string that is not a technique id as `technique_id` reads it
/// (tactics `TA0001`, `X1`, `T1059 - Command…` as an id).
fn attack_from_json(item: &Value) -> Option<AttackId> {
    match item {
        Value::String(s) => Some(AttackId {
            id: technique_id(s)?,
            name: None,
        }),
        Value::Object(o) => {
            let display_name = name(o.get("display_name"));
            let id = name(o.get("id"))
                .and_then(technique_id)
                .or_else(|| display_name.and_then(technique_id))?;
            Some(AttackId {
                id,
                name: display_name.map(str::to_owned),
            })
        }
        _ => None,
    }
}

/// `text` as an ATT&CK technique id, upper-cased: `T` and four ASCII
/// digits, maybe followed by `.` and three more (`T\d{4}(\.\d{3})?`, any
/// case, surrounding spaces ignored). Anything else is not one and is
/// skipped by the caller: a link to `attack.mitre.org/techniques/<id>/`
/// built from it would lead nowhere (or somewhere else).
fn technique_id(text: &str) -> Option<String> {
    let text = text.trim();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let rest = text.strip_prefix(['T', 't'])?;
    let ok = match rest.split_once('.') {
        None => digits(rest, 4),
        Some((technique, sub)) => digits(technique, 4) && digits(sub, 3),
    };
    ok.then(|| text.to_ascii_uppercase())
}

mod pruned {
    //! A `/general` answer as a `Value` holding only what
    //! `general_from_json` reads. Where a part is read, its type is kept;
    //! elsewhere an object or array read only for some keys, or a count of
    //! keys, becomes `null` when it is of another type: `general_from_json`
    //! reads both as absent. So both give the same `General`
    //! (`pruned_and_whole_answers_read_the_same`).

    use std::fmt;

    use serde::de::{
        self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };
    use serde::Deserialize;
    use serde_json::{Map, Value};

    /// What is kept of a value.
    #[derive(Clone, Copy)]
    pub(super) enum Keep {
        /// All of it.
        All,
        /// An object's keys, each with `null` for its value.
        Keys,
        /// These keys of an object, each kept as said.
        Object(&'static [(&'static str, Keep)]),
        /// An array's elements, each kept as said.
        Array(&'static Keep),
    }

    const VALIDATION: Keep = Keep::Object(&[
        ("name", Keep::All),
        ("message", Keep::All),
        ("source", Keep::All),
    ]);
    const FALSE_POSITIVE: Keep = Keep::Object(&[("assessment", Keep::All)]);
    const PULSE: Keep = Keep::Object(&[
        ("id", Keep::All),
        ("name", Keep::All),
        ("description", Keep::All),
        ("author", Keep::Object(&[("username", Keep::All)])),
        ("tags", Keep::All),
        ("TLP", Keep::All),
        ("malware_families", Keep::All),
        ("attack_ids", Keep::All),
        ("indicator_type_counts", Keep::Keys),
    ]);
    pub(super) const GENERAL: Keep = Keep::Object(&[
        ("base_indicator", Keep::Object(&[("type", Keep::All)])),
        (
            "pulse_info",
            Keep::Object(&[("pulses", Keep::Array(&PULSE))]),
        ),
        ("validation", Keep::Array(&VALIDATION)),
        ("false_positive", Keep::Array(&FALSE_POSITIVE)),
    ]);

    /// Parses a value, keeping what `.0` says.
    pub(super) struct Pruned(pub(super) Keep);

    impl<'de> DeserializeSeed<'de> for Pruned {
        type Value = Value;

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            match self.0 {
                Keep::All => Value::deserialize(deserializer),
                _ => deserializer.deserialize_any(self),
            }
        }
    }

    /// The index in `fields` of a key, without building it.
    struct Field(&'static [(&'static str, Keep)]);

    impl<'de> DeserializeSeed<'de> for Field {
        type Value = Option<usize>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for Field {
        type Value = Option<usize>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a key")
        }

        fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
            Ok(self.0.iter().position(|(name, _)| *name == key))
        }
    }

    impl<'de> Visitor<'de> for Pruned {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            match self.0 {
                Keep::Object(fields) => {
                    while let Some(found) = map.next_key_seed(Field(fields))? {
                        match found {
                            Some(i) => {
                                let (name, keep) = fields[i];
                                let value = map.next_value_seed(Pruned(keep))?;
                                // A repeated key: the last one counts, as in a whole parse.
                                out.insert(name.to_owned(), value);
                            }
                            None => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                }
                Keep::Keys => {
                    while let Some(key) = map.next_key::<String>()? {
                        map.next_value::<IgnoredAny>()?;
                        out.insert(key, Value::Null);
                    }
                }
                Keep::All | Keep::Array(_) => {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    return Ok(Value::Null);
                }
            }
            Ok(Value::Object(out))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let Keep::Array(each) = self.0 else {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(Value::Null);
            };
            let mut out = Vec::new();
            while let Some(value) = seq.next_element_seed(Pruned(*each))? {
                out.push(value);
            }
            Ok(Value::Array(out))
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::verdict::{assess, Disposition};

    #[track_caller]
    fn check(g: General, want: Option<(Disposition, &str)>) {
        let got = assess(&g, 2).map(|a| (a.disposition, a.reason));
        assert_eq!(got, want.map(|(d, r)| (d, r.to_owned())));
    }

    #[test]
    fn validation_entries_are_counted_not_their_names() {
        use Disposition::*;
        let ip = |pulses: Vec<Value>, validation: Value| {
            general_from_json(&json!({
                "base_indicator": {"type": "IPv4"},
                "pulse_info": {"pulses": pulses},
                "validation": validation,
            }))
        };
        let pulse = |id: &str| json!({"id": id, "indicator_type_counts": {"IPv4": 1}});
        // Two entries, one of them without a name: two entries, so Clean;
        // the reason names the one that has a name.
        let g = ip(
            vec![pulse("a"), pulse("b")],
            json!([{"name": "Whitelisted IP"}, {"kind": "x"}]),
        );
        assert_eq!((g.validation.len(), g.validation_count), (1, 2));
        check(
            g,
            Some((Clean, "Whitelisted by AlienVault OTX: Whitelisted IP")),
        );
        // Two entries, no names at all (one not even an object): Clean.
        check(
            ip(vec![], json!([{}, "junk"])),
            Some((
                Clean,
                "Whitelisted by AlienVault OTX (2 validation entries)",
            )),
        );
        // One unnamed entry: a validation entry all the same, so two
        // pulses are only Suspicious.
        check(
            ip(vec![pulse("a"), pulse("b")], json!([{"kind": "x"}])),
            Some((
                Suspicious,
                "Found in 2 AlienVault OTX pulses; whitelisted by AlienVault OTX (1 validation entry)",
            )),
        );
    }

    #[test]
    fn pulses_without_an_id_still_count() {
        // Both pulses pass the filter; one has no id, so it cannot be looked
        // up, but OTX does say the observable is in two pulses.
        let g = general_from_json(&json!({
            "base_indicator": {"type": "domain"},
            "pulse_info": {"pulses": [
                {"id": "a", "indicator_type_counts": {"domain": 1}},
                {"indicator_type_counts": {"domain": 1}},
                {"id": "c", "indicator_type_counts": {"IPv4": 1}},
            ]},
        }));
        assert_eq!((g.pulses.len(), g.skipped, g.pulse_count()), (1, 1, 2));
        check(
            g,
            Some((Disposition::Malicious, "Found in 2 AlienVault OTX pulses")),
        );
    }

    #[test]
    fn samples() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/otx/");
        let read = |f: &str| -> General {
            let text = std::fs::read_to_string(format!("{dir}{f}")).expect(f);
            general_from_json(&serde_json::from_str(&text).expect(f))
        };
        let rule = |f: &str| assess(&read(f), 2).map(|a| (a.disposition, a.reason));
        // One of the seven pulses counts its IPv4 indicators; the other six are empty.
        assert_eq!(
            rule("general-ipv4.json"),
            Some((
                Disposition::Suspicious,
                "Found in 1 AlienVault OTX pulse".into()
            ))
        );
        // Its one pulse does not list IPv4 in indicator_type_counts.
        assert_eq!(rule("general-ipv4-1pulse-inactive.json"), None);
        assert_eq!(
            rule("general-ipv4-no-pulses-whitelisted.json"),
            Some((
                Disposition::Clean,
                "Whitelisted by AlienVault OTX: Known False Positive; Whitelisted IP".into()
            ))
        );
        for f in [
            "general-unknown-domain.json",
            "general-unknown-ipv6.json",
            "general-file-sha1-no-pulses.json",
            "general-url-no-pulses.json",
        ] {
            assert_eq!(rule(f), None, "{f}");
        }
    }

    #[test]
    fn pruned_and_whole_answers_read_the_same() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/otx/");
        let mut texts: Vec<String> = std::fs::read_dir(dir)
            .expect("tests/data/otx")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| std::fs::read_to_string(p).expect("a sample"))
            .collect();
        assert!(texts.len() >= 7);
        let pulse = |id: Value| {
            json!({"id": id, "name": "n", "description": 7, "author": {"username": "u", "x": [1]},
                   "tags": ["a", 1], "TLP": "green", "malware_families": [{"display_name": "M"}, "m2", 3],
                   "attack_ids": ["T1059", {"id": "t1566.001", "display_name": "P"}],
                   "indicator_type_counts": {"IPv4": 1, "domain": {"deep": [1]}},
                   "references": [{"a": {"b": [null]}}], "created": "2024"})
        };
        for doc in [
            json!([]),
            json!("text"),
            json!(null),
            json!({"pulse_info": "x", "validation": "x", "false_positive": {}}),
            json!({"pulse_info": {"pulses": {}}}),
            json!({"base_indicator": {"type": "IPv4"}, "pulse_info": {"pulses": [
                pulse(json!("a")), pulse(json!("")), pulse(json!(5)), 1, "p", null, [],
                {"id": "b", "indicator_type_counts": ["IPv4"]},
                {"id": "c", "indicator_type_counts": {"IPv4": 1}, "author": "x", "tags": "t"}]},
                "validation": [{"name": "n"}, {"message": 1, "source": "s"}, {"source": "s"}, 1, null],
                "false_positive": [{"assessment": "accepted"}, "accepted", {"assessment": 1}]}),
            json!({"base_indicator": 1, "pulse_info": {"pulses": [pulse(json!("a"))]}}),
        ] {
            texts.push(doc.to_string());
        }
        // A repeated key (the last counts) and an escaped one.
        texts.push(
            r#"{"base_indicator": {"type": "X"}, "base_indicator": {"type": "IPv4"},
                "pulse_info": {"pul\u0073es": [{"id": "e", "indicator_type_counts": {"IPv4": 1}}]}}"#
                .to_owned(),
        );
        for text in &texts {
            let whole: Value = serde_json::from_str(text).expect("JSON");
            let pruned = general_from_text(text).expect("JSON");
            assert_eq!(pruned, general_from_json(&whole), "{text}");
        }
        assert!(general_from_text(&texts[texts.len() - 3]).is_ok_and(|g| g.pulses.len() == 2));
        for not_json in [
            "",
            "{",
            "{\"a\": }",
            "{} x",
            "[1,]",
            "{\"pulse_info\": {\"pulses\": [tru]}}",
        ] {
            assert!(general_from_text(not_json).is_err(), "{not_json}");
        }
    }

    #[test]
    fn general_filter_and_signals() {
        let g = general_from_json(&json!({
            "base_indicator": {"type": "IPv4"},
            "pulse_info": {"pulses": [
                {"id": "a", "name": "A", "indicator_type_counts": {"IPv4": 3}, "tags": ["x", 1], "author": {"username": "u"}},
                {"id": "b", "indicator_type_counts": {}},
                {"id": "c", "indicator_type_counts": {"domain": 1}},
                {"indicator_type_counts": {"IPv4": 1}},
                "junk"
            ]},
            "validation": [{"name": "Whitelisted IP", "source": "whitelist"}],
            "false_positive": [{"assessment": "accepted"}]
        }));
        assert_eq!(g.pulses.len(), 1);
        assert_eq!(g.skipped, 1);
        assert_eq!(g.pulses[0].tags, Some(vec!["x".to_owned()]));
        assert_eq!(g.pulses[0].author.as_deref(), Some("u"));
        assert_eq!(g.validation, vec!["Whitelisted IP".to_owned()]);
        assert_eq!(g.validation_count, 1);
        assert_eq!(g.pulse_count(), 2);
        assert!(g.false_positive);
        assert_eq!(
            general_from_json(&json!({"pulse_info": null})),
            General::default()
        );
        assert_eq!(
            general_from_json(&json!({"pulse_info": {"pulses": {}}})),
            General::default()
        );
    }

    #[test]
    fn malware_and_attack_ids_in_both_shapes_junk_skipped() {
        let g = general_from_json(&json!({
            "base_indicator": {"type": "IPv4"},
            "pulse_info": {"pulses": [{
                "id": "a",
                "indicator_type_counts": {"IPv4": 1},
                "malware_families": [
                    {"id": "Emotet", "display_name": "Emotet", "target": "/malware/Emotet"},
                    " Cobalt Strike ", {"id": "Qakbot", "display_name": ""}, "EMOTET",
                    5, null, "", " ", true, [], {}, {"name": "x"}, {"display_name": 7}
                ],
                "attack_ids": [
                    {"id": "T1566", "name": "Phishing", "display_name": "T1566 - Phishing"},
                    "t1059.001", {"display_name": "T1105"}, {"id": "T1071", "display_name": ""},
                    1059, null, "", "X1", "TA0001", "T105", "T10599", "T1059.01",
                    "T1059.0011", "T1059-001", "T1059.", ".001", "T１０５９",
                    {"display_name": "T1566 - Phishing"}, {"id": 1566}, {"id": "Phishing"}
                ]
            }, {
                "id": "b",
                "indicator_type_counts": {"IPv4": 1},
                "malware_families": "Emotet",
                "attack_ids": {"id": "T1059"}
            }]}
        }));
        let attack = |id: &str, name: Option<&str>| AttackId {
            id: id.to_owned(),
            name: name.map(str::to_owned),
        };
        assert_eq!(
            g.pulses[0].malware,
            ["Emotet", "Cobalt Strike", "Qakbot", "EMOTET"]
        );
        assert_eq!(
            g.pulses[0].attacks,
            [
                attack("T1566", Some("T1566 - Phishing")),
                attack("T1059.001", None),
                attack("T1105", Some("T1105")),
                attack("T1071", None),
            ]
        );
        assert!(g.pulses[1].malware.is_empty());
        assert!(g.pulses[1].attacks.is_empty());
    }

    #[test]
    fn technique_ids() {
        assert_eq!(technique_id("T1059").as_deref(), Some("T1059"));
        assert_eq!(technique_id(" t1059.001").as_deref(), Some("T1059.001"));
        for bad in [
            "",
            "T",
            "T105",
            "T10590",
            "T1059.1",
            "T1059.0011",
            "TA0001",
            "X1059",
        ] {
            assert_eq!(technique_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn validation_entries_are_counted_even_without_a_name() {
        let g = general_from_json(&json!({
            "validation": [{"name": "A"}, {"source": "s"}, {}, 5, {"name": 7}]
        }));
        assert_eq!(g.validation, vec!["A".to_owned(), "s".to_owned()]);
        assert_eq!(g.validation_count, 5);
        assert_eq!(
            general_from_json(&json!({"validation": "x"})).validation_count,
            0
        );
    }
}
