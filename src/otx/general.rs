//! OTX's `/general` answer, read leniently into [`General`]: whatever is
//! missing or of the wrong type counts as absent; nothing panics. Also the
//! readers of the lists pulses hold (`malware_families`, `attack_ids`),
//! which the subscribed pages share.
use std::sync::Arc;

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
                    let text = String::from_utf8_lossy(&body);
                    let value: Value = serde_json::from_str(&text)
                        .map_err(|e| Trouble::Unusable.warned(not_json(e)))?;
                    Ok(Arc::new(Some(general_from_json(&value))))
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
