//! OTX's `/general` answer: what the verdict rule makes of answers as OTX
//! writes them (read by `pulse::general_from_json`, the reader to move
//! here).

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::pulse::{general_from_json, General};
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
}
