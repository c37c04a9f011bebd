//! What the relay keeps of OTX's answers: the domain types [`General`],
//! [`Pulse`] and [`Record`], and their reading from OTX's `/general` JSON.
//! With `otx` (its URLs, requests and pages), the only code that knows
//! OTX's JSON shapes.

use serde_json::Value;

/// What OTX says of one observable (`/general`), filtered to the pulses that
/// contain it.
#[derive(Debug, Clone, PartialEq, Default)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct Pulse {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub tags: Option<Vec<String>>,
    pub tlp: Option<String>,
}

/// A pulse's own record of an indicator.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub created: String,
    pub expiration: Option<String>,
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
    })
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
