//! SPEC §13 end to end: the TLP normalisation; whole documents, built with
//! the observe tests' `Expected`.

use serde_json::{json, Value};

use crate::observe::{
    check_data, general, general_path, obs, pulse, record, serve_records, Expected, Judged, Shown,
    IP,
};
use crate::support::*;

/// Serves `IP`'s `/general` listing `pulses`, and each pulse's page holding
/// `IP`'s record, created 2021-03-04T05:06:50 minus its rank in seconds (so the
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

#[test]
fn tlp_is_lower_cased_and_limited_to_ctim_values() {
    let otx = FakeOtx::start();
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
    serve(&otx, pulses);
    let relay = Relay::start(&otx, &[]);
    let observable = obs("ip", IP);

    let mut expected = Expected::default();
    for (i, (id, _, shown)) in cases.iter().enumerate() {
        let shown = Shown {
            tlp: shown.map(str::to_string),
            ..Shown::synthetic(id)
        };
        expected.shown(&otx, &observable, shown, &shown_created(i), None);
    }
    // Judgements keep their fixed "white".
    expected.judged(
        &otx,
        &observable,
        &format!("ip/{IP}"),
        Judged::Malicious(cases.len()),
    );
    check_data(&relay, &json!([observable]), &expected);
}
