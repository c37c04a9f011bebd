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

use crate::intel::General;

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
    use crate::intel::Pulse;

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
    fn threshold_is_configurable() {
        let a = assess(&general(2, &[], false), 3).map(|a| a.disposition);
        assert_eq!(a, Some(Disposition::Suspicious));
    }
}
