//! What the relay keeps of OTX's answers: the domain types [`General`],
//! [`Pulse`], [`Record`] and [`PassiveDns`], and their reading from OTX's
//! `/general` JSON (the passive DNS answer is skimmed in `otx`).
//! With `otx` (its URLs, requests and pages), the only code that knows
//! OTX's JSON shapes. (`General` and `Record` also serialize, as the fleet's
//! shared cache keeps them: the relay's own shape, not OTX's.)

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What OTX says of one observable (`/general`), filtered to the pulses that
/// contain it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct General {
    /// Pulses whose `indicator_type_counts` holds the base indicator's type.
    pub pulses: Vec<Pulse>,
    /// Names of OTX's `validation` entries (whitelists, known false
    /// positives), for the verdict's reason; entries without a name are not
    /// listed here but are counted in `validation_count`.
    pub validation: Vec<String>,
    /// How many `validation` entries OTX sent, named or not: what the
    /// verdict rule counts.
    pub validation_count: usize,
    /// Whether a `false_positive` assessment was accepted.
    pub false_positive: bool,
    /// Pulses that passed the filter but could not be read (no id): they
    /// still count toward the verdict's pulse count.
    pub skipped: usize,
}

impl General {
    /// Pulses that contain the observable (SPEC §4's filter), read or not.
    pub fn pulse_count(&self) -> usize {
        self.pulses.len() + self.skipped
    }
}

/// A pulse, with what CTIM needs of it. Optional fields are `None` when OTX
/// omits them (or sends something that is not of the right type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pulse {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub tags: Option<Vec<String>>,
    /// OTX's `TLP` as sent; `ctim::tlp` maps it to CTIM's.
    pub tlp: Option<String>,
    /// The malware families the pulse names (`malware_families`), trimmed,
    /// in OTX's order, case variants and repeats included.
    pub malware: Vec<String>,
    /// The ATT&CK techniques the pulse names (`attack_ids`), in OTX's order.
    pub attacks: Vec<AttackId>,
}

/// An ATT&CK technique a pulse names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackId {
    /// `T` and four digits, maybe `.` and three more (`T1059`, `T1059.001`),
    /// in upper case: checked when read.
    pub id: String,
    /// OTX's `display_name` (`T1059 - Command and Scripting Interpreter`),
    /// when it sends a non-empty one.
    pub name: Option<String>,
}

/// A pulse's own record of an indicator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub created: String,
    pub expiration: Option<String>,
}

/// What OTX's passive DNS saw of one observable (SPEC §15): the A and AAAA
/// resolutions kept, each (hostname, address) pair once, newest `last`
/// first, at most `PASSIVE_DNS_LIMIT`. Empty when OTX saw none (or has no
/// data, or answered another shape). Serialized for the fleet's cache.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PassiveDns {
    pub resolutions: Vec<Resolution>,
}

/// One name resolved to one address, merged over OTX's records of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// The name (OTX's `hostname`), as OTX wrote it; never empty.
    pub hostname: String,
    /// The address as OTX wrote it: an IPv4 one from an `A` record, an
    /// IPv6 one from an `AAAA` record.
    pub address: String,
    /// Whether it came from `AAAA` records.
    pub ipv6: bool,
    /// The earliest `first` of its records, as OTX writes times; `None`
    /// when none had one.
    pub first: Option<String>,
    /// The latest `last` of its records; `None` when none had one.
    pub last: Option<String>,
}

/// Reads a `/general` answer leniently: whatever is missing or of the wrong
/// type counts as absent; nothing panics.
pub fn general_from_json(value: &Value) -> General {
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

/// What the dashboard tiles keep of one subscribed pulse (SPEC §11).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PulseSummary {
    pub id: String,
    /// `name`, or the id when OTX gives none.
    pub name: String,
    /// `author_name`, else `author.username`; may be empty.
    pub author: String,
    /// `adversary`; may be empty.
    pub adversary: String,
    /// `modified`, as OTX writes it (`2026-11-29T14:03:22.123000`).
    pub modified: String,
    /// `indicator_count`, else the length of `indicators`.
    pub indicators: u64,
    /// The names of `malware_families` (objects or strings; junk skipped).
    pub malware: Vec<String>,
}

/// One page of `/api/v1/pulses/subscribed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribedPage {
    pub pulses: Vec<PulseSummary>,
    /// `next` names another page.
    pub more: bool,
}

/// Reads a subscribed-pulses page as it streams in. Each pulse's
/// `indicators` list is walked and counted, never held: a page of 50 pulses
/// with 10 000 indicators each costs the memory of one pulse's small fields.
/// Pulses without an id are skipped. A page that is not JSON of this shape
/// is an `InvalidData` error carrying the `serde_json::Error`.
pub fn read_subscribed_page(reader: impl std::io::Read) -> std::io::Result<SubscribedPage> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let page = SubscribedPage::deserialize(&mut de).map_err(std::io::Error::from)?;
    de.end().map_err(std::io::Error::from)?;
    Ok(page)
}

/// The names in a `malware_families` list (SPEC §11), as
/// `malware_from_json` reads each item.
pub fn names(list: &[Value]) -> Vec<String> {
    list.iter().filter_map(malware_from_json).collect()
}

mod subscribed {
    //! The serde visitors of a subscribed-pulses page: only the fields the
    //! tiles use are kept; everything else is skipped as it streams by.

    use std::fmt;

    use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;

    use super::{names, PulseSummary, SubscribedPage};

    impl<'de> Deserialize<'de> for SubscribedPage {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_map(PageVisitor)
        }
    }

    struct PageVisitor;

    impl<'de> Visitor<'de> for PageVisitor {
        type Value = SubscribedPage;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a page of subscribed pulses")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SubscribedPage, A::Error> {
            let mut page = SubscribedPage::default();
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "results" => page.pulses = map.next_value::<Pulses>()?.0,
                    "next" => {
                        page.more =
                            matches!(map.next_value::<Value>()?, Value::String(s) if !s.is_empty())
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(page)
        }
    }

    /// The `results` list; pulses without an id dropped.
    struct Pulses(Vec<PulseSummary>);

    impl<'de> Deserialize<'de> for Pulses {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Seq;
            impl<'de> Visitor<'de> for Seq {
                type Value = Pulses;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a list of pulses")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pulses, A::Error> {
                    let mut pulses = Vec::new();
                    while let Some(pulse) = seq.next_element::<Option<PulseSummary>>()? {
                        pulses.extend(pulse.filter(|p| !p.id.is_empty()));
                    }
                    Ok(Pulses(pulses))
                }
            }
            deserializer.deserialize_seq(Seq)
        }
    }

    impl<'de> Deserialize<'de> for PulseSummary {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_map(PulseVisitor)
        }
    }

    struct PulseVisitor;

    impl<'de> Visitor<'de> for PulseVisitor {
        type Value = PulseSummary;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a pulse")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PulseSummary, A::Error> {
            let text = |v: Value| match v {
                Value::String(s) => s,
                _ => String::new(),
            };
            let mut p = PulseSummary::default();
            let (mut count, mut listed, mut author_name) = (None, 0, String::new());
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "id" => p.id = text(map.next_value()?),
                    "name" => p.name = text(map.next_value()?),
                    "author_name" => author_name = text(map.next_value()?),
                    "author" => {
                        if let Value::Object(author) = map.next_value::<Value>()? {
                            p.author = author
                                .get("username")
                                .cloned()
                                .map(text)
                                .unwrap_or_default();
                        }
                    }
                    "adversary" => p.adversary = text(map.next_value()?),
                    "modified" => p.modified = text(map.next_value()?),
                    "indicator_count" => count = map.next_value::<Value>()?.as_u64(),
                    "indicators" => listed = map.next_value::<Counted>()?.0,
                    "malware_families" => {
                        if let Value::Array(list) = map.next_value::<Value>()? {
                            p.malware = names(&list);
                        }
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            if !author_name.is_empty() {
                p.author = author_name;
            }
            if p.name.trim().is_empty() {
                p.name = p.id.clone();
            }
            p.indicators = count.unwrap_or(listed);
            Ok(p)
        }
    }

    /// A list walked element by element and counted, its elements skipped.
    struct Counted(u64);

    impl<'de> Deserialize<'de> for Counted {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Count;
            impl<'de> Visitor<'de> for Count {
                type Value = Counted;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a list")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Counted, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Counted(n))
                }
                fn visit_unit<E: de::Error>(self) -> Result<Counted, E> {
                    Ok(Counted(0))
                }
            }
            deserializer.deserialize_any(Count)
        }
    }
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
    use super::*;
    use serde_json::json;

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

    #[test]
    fn subscribed_pages_are_read_and_indicators_counted() {
        let page = json!({
            "count": 3, "next": "https://otx/api/v1/pulses/subscribed?page=2",
            "results": [
                {"id": "a", "name": "A", "author_name": "alice", "modified": "2026-11-29T14:03:22.1",
                 "adversary": "APT 1", "indicators": [{"indicator": "x"}, {"indicator": "y"}],
                 "malware_families": [{"display_name": "Emotet", "id": "emotet"}, "Ryuk", 5, null, "", {"id": "trickbot"}, {}],
                 "other": {"deep": [1, 2, 3]}},
                {"id": "b", "author": {"username": "bob"}, "indicator_count": 7, "indicators": [], "modified": "2026-11-28T00:00:00"},
                {"name": "no id"},
                null
            ]
        });
        let read = read_subscribed_page(page.to_string().as_bytes()).expect("a page");
        assert!(read.more);
        assert_eq!(read.pulses.len(), 2);
        let a = &read.pulses[0];
        assert_eq!(
            (a.id.as_str(), a.name.as_str(), a.author.as_str()),
            ("a", "A", "alice")
        );
        assert_eq!((a.indicators, a.adversary.as_str()), (2, "APT 1"));
        assert_eq!(a.malware, ["Emotet", "Ryuk", "trickbot"]);
        let b = &read.pulses[1];
        assert_eq!(
            (b.name.as_str(), b.author.as_str(), b.indicators),
            ("b", "bob", 7)
        );
        let last = read_subscribed_page(&br#"{"results": [], "next": null}"#[..]).expect("a page");
        assert!(!last.more && last.pulses.is_empty());
        for bad in [&b"[]"[..], b"{\"results\": 5}", b"{\"results\": [", b"nope"] {
            let e = read_subscribed_page(bad).expect_err("refused");
            assert!(
                e.get_ref()
                    .is_some_and(|inner| inner.is::<serde_json::Error>()),
                "{e}"
            );
        }
    }
}
