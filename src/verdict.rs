//! Verdicts: what OTX's own signals in one `/general` answer say of an
//! observable, as a CTIM Judgement and Verdict.
//!
//! The rule, in order:
//! 1. an accepted `false_positive` assessment, or 2+ `validation` entries
//!    → Clean: OTX itself vouches for it;
//! 2. pulses containing it ≥ `OTX_MALICIOUS_PULSES` and no `validation`
//!    entry → Malicious: several independent reports, nothing against;
//! 3. at least one such pulse (even with one `validation` entry)
//!    → Suspicious: reported, but thinly or with a doubt;
//! 4. otherwise no verdict: Threat Response shows Unknown by itself.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use uuid::Uuid;

use crate::ctim::{refer_url, TimeSpan, SCHEMA_VERSION, SOURCE};
use crate::observable::Observable;
use crate::pulse::General;
use crate::time::format_time;

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

    fn confidence(self) -> &'static str {
        match self {
            Disposition::Suspicious => "Medium",
            _ => "High",
        }
    }

    fn severity(self) -> &'static str {
        match self {
            Disposition::Clean => "None",
            Disposition::Malicious => "High",
            Disposition::Suspicious => "Medium",
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

/// A CTIM Judgement (SPEC §7); fields in alphabetical order, as in `ctim`.
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

/// Builds the CTIM pair for one assessed observable.
pub fn verdict(
    base: &str,
    observable: &Observable,
    assessment: &Assessment,
    now: SystemTime,
    valid_days: u64,
) -> Verdict {
    let d = assessment.disposition;
    let valid_time = TimeSpan {
        end_time: Some(format_time(now + Duration::from_secs(valid_days * 86_400))),
        start_time: format_time(now),
    };
    let id = format!("transient:judgement-{}", Uuid::new_v4());
    let verdict = CtimVerdict {
        disposition: d as u8,
        disposition_name: d.name(),
        judgement_id: id.clone(),
        observable: observable.clone(),
        type_: "verdict",
        valid_time: valid_time.clone(),
    };
    let judgement = Judgement {
        confidence: d.confidence(),
        disposition: d as u8,
        disposition_name: d.name(),
        id,
        observable: observable.clone(),
        priority: 85,
        reason: assessment.reason.clone(),
        schema_version: SCHEMA_VERSION,
        severity: d.severity(),
        source: SOURCE,
        source_uri: refer_url(base, observable),
        tlp: "white",
        type_: "judgement",
        valid_time,
    };
    Verdict { judgement, verdict }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observable::Kind;
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

    #[test]
    fn shapes() {
        let o = Observable::new(Kind::Ip, "1.2.3.4");
        let a = Assessment {
            disposition: Disposition::Malicious,
            reason: "r".into(),
        };
        let now = std::time::UNIX_EPOCH + Duration::from_secs(86_400);
        let v = verdict("https://otx", &o, &a, now, 7);
        let judgement = serde_json::to_value(&v.judgement).expect("JSON");
        let verdict = serde_json::to_value(&v.verdict).expect("JSON");
        assert_eq!(
            judgement["valid_time"],
            json!({"start_time": "1970-01-02T00:00:00.000Z", "end_time": "1970-01-09T00:00:00.000Z"})
        );
        assert_eq!(judgement["source_uri"], "https://otx/indicator/ip/1.2.3.4");
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
