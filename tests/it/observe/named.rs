//! SPEC §13 end to end: the malware families and ATT&CK techniques of the
//! sighted pulses as CTIM `malware` and `attack_pattern` entities with their
//! `indicates` relationships, and the TLP normalisation; whole documents,
//! built with the observe tests' `Expected`.

use serde_json::{json, Value};

use crate::observe::{
    check, general, general_path, obs, pulse, pulse_path, record, serve_records, Expected, Judged,
    Shown, IP,
};
use crate::support::*;

// The ids are Python's, e.g.
// python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, 'otx-malware:emotet'))"
// python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, 'otx-attack:T1059.001'))"
// python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, 'pulse-a'))"
const EMOTET: &str = "transient:malware-5a66b886-35ad-5cf6-ac61-bb0257516584";
const COBALT_STRIKE: &str = "transient:malware-c05042f8-8431-5fe1-ad73-0d776c2e95d2";
const QAKBOT: &str = "transient:malware-87758843-87a3-5755-a892-57db792ef240";
const T1566: &str = "transient:attack-pattern-1a189102-028b-5985-9a78-092ac0724c7e";
const T1059: &str = "transient:attack-pattern-c0f12bdc-c3c7-5fec-b0ff-6c8d8bef4b34";
const T1059_001: &str = "transient:attack-pattern-1609e7e7-39d9-59be-8872-6cfd6212443f";
const T1105: &str = "transient:attack-pattern-03526e2c-79b1-54f1-bc33-407c0d52582f";

/// The indicator ids of the pulses below.
const PULSE_DEEP: &str = "transient:indicator-afd9bf02-91d2-50a4-9170-bcff250d0772";
const PULSE_A: &str = "transient:indicator-bf320099-efdf-5a23-b4ca-8f40812b98c1";
const PULSE_B: &str = "transient:indicator-0ad4e209-502e-529b-8691-4318dd14debd";
const PULSE_JUNK: &str = "transient:indicator-cc900cb8-9cb4-5d43-9bf6-5ddd7d18eb08";
const PULSE_TWICE: &str = "transient:indicator-13e326f6-5921-525b-a426-35e73d87485b";

const OBSERVE: &str = "/observe/observables";
/// The record time of a pulse listed alone, and as CTIM shows it.
const CREATED: &str = "2021-03-04T05:06:50";
const SHOWN_CREATED: &str = "2021-03-04T05:06:50Z";

/// The synthetic pulse `id` (counting IPv4) naming `families` and `attacks`.
fn naming(id: &str, families: Value, attacks: Value) -> Value {
    let mut p = pulse(id, "IPv4");
    p["malware_families"] = families;
    p["attack_ids"] = attacks;
    p
}

/// Serves `IP`'s `/general` listing `pulses`, and each pulse's page holding
/// `IP`'s record, created `CREATED` minus its rank in seconds (so the
/// answer keeps the listed order).
fn serve(otx: &FakeOtx, pulses: Vec<Value>) {
    for (i, p) in pulses.iter().enumerate() {
        let id = p["id"].as_str().expect("an id");
        let created = format!("2021-03-04T05:06:{:02}", 50 - i);
        serve_records(otx, id, vec![record(IP, &created)]);
    }
    otx.on(
        &general_path("IPv4", IP),
        Reply::json(general("IPv4", pulses)),
    );
}

/// The record time `serve` gives the pulse of rank `i`, as CTIM shows it.
fn shown_created(i: usize) -> String {
    format!("2021-03-04T05:06:{:02}Z", 50 - i)
}

/// A malware entity as SPEC §13 shows it; `quoted` is the name in its link.
fn malware(otx: &FakeOtx, id: &str, name: &str, quoted: &str) -> Value {
    let text = format!("{name}, named by AlienVault OTX pulses");
    json!({
        "type": "malware",
        "schema_version": "1.0.17",
        "id": id,
        "title": name,
        "description": text,
        "short_description": text,
        "labels": ["malware"],
        "source": "AlienVault OTX",
        "source_uri": format!("{}/browse/global/pulses?q={quoted}", otx.url()),
    })
}

/// An attack pattern entity; `path` is the technique's page on attack.mitre.org.
fn attack_pattern(id: &str, technique: &str, title: &str, path: &str) -> Value {
    let text = if title == technique {
        format!("MITRE ATT&CK {technique}, named by AlienVault OTX pulses")
    } else {
        format!("{title} (MITRE ATT&CK {technique}), named by AlienVault OTX pulses")
    };
    json!({
        "type": "attack_pattern",
        "schema_version": "1.0.17",
        "id": id,
        "title": title,
        "description": text,
        "short_description": text,
        "source": "AlienVault OTX",
        "external_references": [{
            "source_name": "mitre-attack",
            "external_id": technique,
            "url": format!("https://attack.mitre.org/techniques/{path}/"),
        }],
    })
}

/// An `indicates` relationship from the indicator `from` to the entity `to`.
fn indicates(from: &str, to: &str) -> Value {
    json!({
        "type": "relationship",
        "schema_version": "1.0.17",
        "id": "<<prefix:transient:relationship->>",
        "relationship_type": "indicates",
        "source_ref": from,
        "target_ref": to,
    })
}

#[test]
fn a_pulse_names_its_families_and_techniques_as_entities_it_indicates() {
    let pulses = vec![naming(
        "pulse-deep",
        json!([
            {"id": "Emotet", "display_name": "Emotet", "target": "/malware/Emotet"},
            "Cobalt Strike",
        ]),
        json!([
            {"id": "T1566", "name": "Phishing", "display_name": "T1566 - Phishing"},
            "T1059",
            {"id": "t1059.001", "name": "PowerShell", "display_name": "T1059.001 - PowerShell"},
        ]),
    )];
    // Passive DNS (SPEC §15) is an OTX call of its own: off, for the count below.
    let env = [("PASSIVE_DNS", "off")];
    let observable = obs("ip", IP);

    let serve_them = |otx: &FakeOtx| serve(otx, pulses);
    let otx = check(serve_them, &env, json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, "pulse-deep", SHOWN_CREATED, None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Suspicious(1));
        expected.malwares = vec![
            malware(otx, EMOTET, "Emotet", "Emotet"),
            malware(otx, COBALT_STRIKE, "Cobalt Strike", "Cobalt%20Strike"),
        ];
        expected.attack_patterns = vec![
            attack_pattern(T1566, "T1566", "T1566 - Phishing", "T1566"),
            attack_pattern(T1059, "T1059", "T1059", "T1059"),
            attack_pattern(
                T1059_001,
                "T1059.001",
                "T1059.001 - PowerShell",
                "T1059/001",
            ),
        ];
        expected.indicates = [EMOTET, COBALT_STRIKE, T1566, T1059, T1059_001]
            .iter()
            .map(|to| indicates(PULSE_DEEP, to))
            .collect();
    })
    .otx;

    // No OTX call more than before: the lists ride on `/general`.
    let paths: Vec<String> = otx.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [general_path("IPv4", IP), pulse_path("pulse-deep")],
        "the OTX requests"
    );
}

#[test]
fn one_family_in_two_pulses_is_one_entity_indicated_twice() {
    let pulses = vec![
        naming(
            "pulse-a",
            json!([{"id": "Emotet", "display_name": "Emotet"}]),
            json!(["T1059"]),
        ),
        naming("pulse-b", json!(["Emotet"]), json!([{"id": "T1059"}])),
    ];
    let observable = obs("ip", IP);

    let serve_them = |otx: &FakeOtx| serve(otx, pulses);
    check(serve_them, &[], json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, "pulse-a", &shown_created(0), None)
            .found(otx, &observable, "pulse-b", &shown_created(1), None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Malicious(2));
        expected.malwares = vec![malware(otx, EMOTET, "Emotet", "Emotet")];
        expected.attack_patterns = vec![attack_pattern(T1059, "T1059", "T1059", "T1059")];
        expected.indicates = vec![
            indicates(PULSE_A, EMOTET),
            indicates(PULSE_A, T1059),
            indicates(PULSE_B, EMOTET),
            indicates(PULSE_B, T1059),
        ];
    });
}

#[test]
fn case_variants_of_a_name_or_technique_are_one_entity_named_as_first_seen() {
    let pulses = vec![naming(
        "pulse-a",
        json!(["Emotet", "EMOTET", {"display_name": "emotet"}, " Emotet "]),
        json!(["t1059", {"id": "T1059", "display_name": "T1059 - Command"}]),
    )];
    let observable = obs("ip", IP);

    let serve_them = |otx: &FakeOtx| serve(otx, pulses);
    check(serve_them, &[], json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, "pulse-a", SHOWN_CREATED, None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Suspicious(1));
        expected.malwares = vec![malware(otx, EMOTET, "Emotet", "Emotet")];
        expected.attack_patterns = vec![attack_pattern(T1059, "T1059", "T1059", "T1059")];
        expected.indicates = vec![indicates(PULSE_A, EMOTET), indicates(PULSE_A, T1059)];
    });
}

/// Two observables sighted in the same pulse give two indicator docs with
/// the same id (SPEC §6); the pulse indicates each of its entities once.
#[test]
fn a_pulse_sighted_twice_indicates_each_entity_once() {
    const OTHER_IP: &str = "198.51.100.8";
    let serve_them = |otx: &FakeOtx| {
        let p = naming("pulse-twice", json!(["Qakbot"]), json!(["T1105"]));
        for ip in [IP, OTHER_IP] {
            otx.on(
                &general_path("IPv4", ip),
                Reply::json(general("IPv4", vec![p.clone()])),
            );
        }
        serve_records(
            otx,
            "pulse-twice",
            vec![record(IP, CREATED), record(OTHER_IP, CREATED)],
        );
    };
    let (first, second) = (obs("ip", IP), obs("ip", OTHER_IP));

    check(serve_them, &[], json!([first, second]), |otx, expected| {
        expected
            .found(otx, &first, "pulse-twice", SHOWN_CREATED, None)
            .found(otx, &second, "pulse-twice", SHOWN_CREATED, None)
            .judged(otx, &first, &format!("ip/{IP}"), Judged::Suspicious(1))
            .judged(
                otx,
                &second,
                &format!("ip/{OTHER_IP}"),
                Judged::Suspicious(1),
            );
        expected.malwares = vec![malware(otx, QAKBOT, "Qakbot", "Qakbot")];
        expected.attack_patterns = vec![attack_pattern(T1105, "T1105", "T1105", "T1105")];
        expected.indicates = vec![
            indicates(PULSE_TWICE, QAKBOT),
            indicates(PULSE_TWICE, T1105),
        ];
    });
}

#[test]
fn junk_entries_are_skipped_without_an_error() {
    let pulses = vec![
        naming(
            "pulse-junk",
            json!([
                5, null, "", "   ", true, [], {}, {"id": null}, {"display_name": ""},
                {"display_name": 7}, {"name": "Emotet"}, {"display_name": "", "id": "Qakbot"},
            ]),
            json!([
                1059, null, "", "X1", "T105", "T10599", "T1059.1", "T1059.0011", "TA0001",
                "T1059-001", "T１０５９", {}, {"name": "Phishing"},
                {"display_name": "T1566 - Phishing"}, {"id": 1566}, {"id": "T1105", "display_name": ""},
            ]),
        ),
        // Lists of another shape name nothing.
        naming("pulse-b", json!("Emotet"), json!({"id": "T1059"})),
    ];
    let observable = obs("ip", IP);

    let serve_them = |otx: &FakeOtx| serve(otx, pulses);
    check(serve_them, &[], json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, "pulse-junk", &shown_created(0), None)
            .found(otx, &observable, "pulse-b", &shown_created(1), None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Malicious(2));
        expected.malwares = vec![malware(otx, QAKBOT, "Qakbot", "Qakbot")];
        expected.attack_patterns = vec![attack_pattern(T1105, "T1105", "T1105", "T1105")];
        expected.indicates = vec![indicates(PULSE_JUNK, QAKBOT), indicates(PULSE_JUNK, T1105)];
    });
}

#[test]
fn tlp_is_lower_cased_and_limited_to_ctim_values() {
    // (pulse id, OTX's TLP, what CTIM shows)
    let cases: [(&str, Option<Value>, Option<&str>); 10] = [
        ("tlp-white", Some(json!("WHITE")), Some("white")),
        ("tlp-clear", Some(json!("clear")), Some("white")),
        ("tlp-strict", Some(json!("amber+strict")), Some("amber")),
        ("tlp-amber", Some(json!("Amber+Strict")), Some("amber")),
        ("tlp-red", Some(json!("Red")), Some("red")),
        ("tlp-green", Some(json!("green")), Some("green")),
        ("tlp-purple", Some(json!("purple")), None),
        ("tlp-empty", Some(json!("")), None),
        ("tlp-number", Some(json!(3)), None),
        ("tlp-missing", None, None),
    ];
    let pulses = cases
        .iter()
        .map(|(id, tlp, _)| {
            let mut p = pulse(id, "IPv4");
            match tlp {
                Some(tlp) => p["TLP"] = tlp.clone(),
                None => {
                    p.as_object_mut().expect("an object").remove("TLP");
                }
            }
            p
        })
        .collect();
    let observable = obs("ip", IP);

    let serve_them = |otx: &FakeOtx| serve(otx, pulses);
    check(serve_them, &[], json!([observable]), |otx, expected| {
        for (i, (id, _, shown)) in cases.iter().enumerate() {
            let shown = Shown {
                tlp: shown.map(str::to_string),
                ..Shown::synthetic(id)
            };
            expected.shown(otx, &observable, shown, &shown_created(i), None);
        }
        // Judgements keep their fixed "white".
        expected.judged(
            otx,
            &observable,
            &format!("ip/{IP}"),
            Judged::Malicious(cases.len()),
        );
    });
}

#[test]
fn deliberate_answers_as_before_with_named_pulses() {
    let otx = FakeOtx::start();
    serve(
        &otx,
        vec![naming(
            "pulse-deep",
            json!(["Emotet"]),
            json!([{"id": "T1059", "display_name": "T1059 - Command"}]),
        )],
    );
    let relay = Relay::start(&otx, &[]);
    let observable = obs("ip", IP);
    let (status, body) = relay.post_auth(
        "/deliberate/observables",
        &json!([observable.clone()]).to_string(),
    );
    assert_eq!(status, 200, "{body}");

    let mut expected = Expected::default();
    expected.judged(
        &otx,
        &observable,
        &format!("ip/{IP}"),
        Judged::Suspicious(1),
    );
    check_json(&body, &json!({"data": expected.data()}));
    let paths: Vec<String> = otx.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, [general_path("IPv4", IP)], "the OTX requests");

    // And `/observe` of the same observable does name them.
    let (_, body) = relay.post_auth(OBSERVE, &json!([observable]).to_string());
    assert_eq!(body["data"]["malwares"]["count"], 1, "{body}");
    assert_eq!(body["data"]["attack_patterns"]["count"], 1, "{body}");
}
