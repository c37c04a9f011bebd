//! Verdicts: what OTX's own signals in one `/general` answer say of an
//! observable (the rule only; its CTIM Judgement and Verdict are
//! `ctim::verdict`'s).
//!
//! The rule, in order:
//! 1. an accepted `false_positive` assessment, or 2+ `validation` entries
//!    → Clean: OTX itself vouches for it;
//! 2. pulses containing it ≥ `OTX_MALICIOUS_PULSES` and no `validation`
//!    entry → Malicious: several independent reports, nothing against;
//! 3. at least one such pulse (even with one `validation` entry)
//!    → Suspicious: reported, but thinly or with a doubt;
//! 4. otherwise no verdict: Threat Response shows Unknown by itself.

use crate::pulse::General;

/// A CTIM disposition the relay can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Clean = 1,
    Malicious = 2,
    Suspicious = 3,
}

impl Disposition {
    pub fn name(self) -> &'static str {
        match self {
            Disposition::Clean => "Clean",
            Disposition::Malicious => "Malicious",
            Disposition::Suspicious => "Suspicious",
        }
    }
}

/// The rule's answer: a disposition and the reason, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub disposition: Disposition,
    pub reason: String,
}

/// Applies the rule to one `/general` answer.
pub fn assess(general: &General, malicious_pulses: usize) -> Option<Assessment> {
    // Pulses that passed the filter, those skipped for lacking an id too;
    // validation entries as OTX sent them, named or not.
    let pulses = general.pulse_count();
    let validations = general.validation_count;
    let whitelisted = || {
        if general.validation.is_empty() {
            let s = if validations == 1 { "y" } else { "ies" };
            format!("Whitelisted by AlienVault OTX ({validations} validation entr{s})")
        } else {
            format!(
                "Whitelisted by AlienVault OTX: {}",
                general.validation.join("; ")
            )
        }
    };
    let found = || {
        let s = if pulses == 1 { "" } else { "s" };
        format!("Found in {pulses} AlienVault OTX pulse{s}")
    };
    let (disposition, reason) = if validations >= 2 {
        (Disposition::Clean, whitelisted())
    } else if general.false_positive {
        let reason = if validations == 0 {
            "Accepted as a false positive by AlienVault OTX".to_owned()
        } else {
            format!("Accepted as a false positive; {}", whitelisted())
        };
        (Disposition::Clean, reason)
    } else if pulses >= malicious_pulses && validations == 0 {
        (Disposition::Malicious, found())
    } else if pulses >= 1 && validations == 0 {
        (Disposition::Suspicious, found())
    } else if pulses >= 1 {
        (
            Disposition::Suspicious,
            format!("{}; {}", found(), whitelisted().replacen("W", "w", 1)),
        )
    } else {
        return None;
    };
    Some(Assessment {
        disposition,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pulse::{general_from_json, Pulse};
    use serde_json::{json, Value};

    fn general(pulses: usize, validation: &[&str], false_positive: bool) -> General {
        General {
            pulses: (0..pulses)
                .map(|i| Pulse {
                    id: i.to_string(),
                    name: None,
                    description: None,
                    author: None,
                    tags: None,
                    tlp: None,
                    malware: Vec::new(),
                    attacks: Vec::new(),
                })
                .collect(),
            validation: validation.iter().map(|s| s.to_string()).collect(),
            validation_count: validation.len(),
            false_positive,
            skipped: 0,
        }
    }

    #[track_caller]
    fn check(g: General, want: Option<(Disposition, &str)>) {
        let got = assess(&g, 2).map(|a| (a.disposition, a.reason));
        assert_eq!(got, want.map(|(d, r)| (d, r.to_owned())));
    }

    #[test]
    fn rule() {
        use Disposition::*;
        check(general(0, &[], false), None);
        check(general(0, &["A"], false), None);
        check(
            general(1, &[], false),
            Some((Suspicious, "Found in 1 AlienVault OTX pulse")),
        );
        check(
            general(2, &[], false),
            Some((Malicious, "Found in 2 AlienVault OTX pulses")),
        );
        check(
            general(7, &[], false),
            Some((Malicious, "Found in 7 AlienVault OTX pulses")),
        );
        check(
            general(5, &["Whitelisted IP"], false),
            Some((
                Suspicious,
                "Found in 5 AlienVault OTX pulses; whitelisted by AlienVault OTX: Whitelisted IP",
            )),
        );
        check(
            general(0, &["Whitelisted IP", "Known False Positive"], false),
            Some((
                Clean,
                "Whitelisted by AlienVault OTX: Whitelisted IP; Known False Positive",
            )),
        );
        check(
            general(9, &[], true),
            Some((Clean, "Accepted as a false positive by AlienVault OTX")),
        );
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
    fn threshold_is_configurable() {
        let a = assess(&general(2, &[], false), 3).map(|a| a.disposition);
        assert_eq!(a, Some(Disposition::Suspicious));
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
}
