//! The CTIM answer of `/observe/observables` (SPEC §6, §7): the recorded
//! IPv4 sample whole, the parts that fail alone, the input order, the text
//! caps and the defaults of absent fields.

use std::time::Duration;

use serde_json::json;

use crate::observe::{
    check, check_answer, check_headers, docs, general, general_path, obs, pulse, pulse_path,
    record, serve_ip_pulses, serve_records, Expected, Judged, Shown, IP, SAMPLE_IP,
};
use crate::support::*;

/// The one counted pulse of `general-ipv4.json`.
const SAMPLE_PULSE: &str = "5fa083b3b6aa093f35e4818a";
/// python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, '5fa083b3b6aa093f35e4818a'))"
const SAMPLE_INDICATOR_ID: &str = "transient:indicator-a7159adb-15e3-527d-b4ab-3f2d7b249507";

// ---------------------------------------------------------------------------
// The realistic case

/// `general-ipv4.json` for 151.106.3.179, and a page of its one counted pulse
/// holding that IP's record.
fn serve_sample_ip(otx: &FakeOtx) {
    otx.on(
        &general_path("IPv4", SAMPLE_IP),
        Reply::file("general-ipv4.json"),
    );
    let mut found = record(SAMPLE_IP, "2020-11-02T22:10:01");
    found["expiration"] = json!("2020-12-02T22:00:00");
    serve_records(
        otx,
        SAMPLE_PULSE,
        vec![
            record("151.106.3.180", "2020-11-02T22:10:05"),
            found,
            record("151.106.3.178", "2020-11-02T22:09:58"),
        ],
    );
}

/// The whole CTIM answer to `general-ipv4.json`.
fn sample_ip_answer(otx: &FakeOtx, expected: &mut Expected) {
    let source_uri = format!("{}/pulse/{SAMPLE_PULSE}", otx.url());
    let title = "IOCs - 20201122248 - ANIA Threat Feeds - IP Segment 4";
    let description = "ANIA Collector - Advanced Network Interactive Analysis Collector - \
                       Collected from Internet Storm Center IOCs List";
    let observable = obs("ip", SAMPLE_IP);
    expected
        .entities(
            json!({
                "type": "indicator",
                "schema_version": "1.0.17",
                "id": SAMPLE_INDICATOR_ID,
                "confidence": "High",
                "source": "AlienVault OTX",
                "producer": "AlessandroFiori",
                "title": title,
                "short_description": description,
                "external_ids": [SAMPLE_PULSE],
                "source_uri": source_uri,
                "tags": [],
                "tlp": "green",
                "valid_time": {
                    "start_time": "2020-11-02T22:10:01Z",
                    "end_time": "2020-12-02T22:00:00Z",
                },
            }),
            json!({
                "type": "sighting",
                "schema_version": "1.0.17",
                "id": "<<prefix:transient:sighting->>",
                "confidence": "High",
                "count": 1,
                "internal": false,
                "source": "AlienVault OTX",
                "observables": [{"type": "ip", "value": SAMPLE_IP}],
                "description": description,
                "title": title,
                "external_ids": [SAMPLE_PULSE],
                "source_uri": source_uri,
                "tlp": "green",
                "observed_time": {
                    "start_time": "2020-11-02T22:10:01Z",
                    "end_time": "2020-11-02T22:10:01Z",
                },
            }),
        )
        .judged(
            otx,
            &observable,
            &format!("ip/{SAMPLE_IP}"),
            Judged::Suspicious(1),
        );
}

#[test]
fn the_recorded_ipv4_answer_maps_its_one_counted_pulse_to_whole_ctim_documents() {
    let observables = json!([obs("ip", SAMPLE_IP)]);
    // Passive DNS (SPEC §15) off: the OTX requests are listed below in order.
    let env = [("PASSIVE_DNS", "off")];

    let first = check(serve_sample_ip, &env, observables.clone(), sample_ip_answer);
    // The same observables again, to the same relay.
    let mut expected = Expected::default();
    sample_ip_answer(&first.otx, &mut expected);
    let second = check_answer(&first.relay, &observables, &expected.answer());

    assert_ne!(
        docs(&first.body, "sightings")[0]["id"],
        docs(&second, "sightings")[0]["id"],
        "sighting ids are fresh on every request"
    );
    assert_ne!(
        docs(&first.body, "relationships")[0]["id"],
        docs(&second, "relationships")[0]["id"],
        "relationship ids are fresh on every request"
    );
    // The six pulses that do not count IPv4 are never looked up.
    let requests = first.otx.requests();
    check_headers(&requests);
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    let general = general_path("IPv4", SAMPLE_IP);
    let pulse = pulse_path(SAMPLE_PULSE);
    assert_eq!(paths, [&general, &pulse, &general, &pulse]);
}

// ---------------------------------------------------------------------------
// Failures of one part

#[test]
fn a_failing_pulse_lookup_drops_that_pulse_alone_and_logs_a_warning() {
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
    ];
    let observable = obs("ip", IP);
    let serve = |otx: &FakeOtx| {
        serve_ip_pulses(otx, &ids);
        serve_records(otx, ids[0], vec![record(IP, "2021-01-01T00:00:00")]);
        otx.on(&pulse_path(ids[1]), Reply::status(500));
        serve_records(otx, ids[2], vec![record(IP, "2021-01-03T00:00:00")]);
    };

    let run = check(serve, &[], json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, ids[2], "2021-01-03T00:00:00Z", None)
            .found(otx, &observable, ids[0], "2021-01-01T00:00:00Z", None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Malicious(3));
    });
    let relay = &run.relay;

    assert!(relay.wait_log(ids[1]), "no line names the pulse");
    let stderr = relay.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains(ids[1]))
        .unwrap_or_else(|| panic!("no warning on stderr naming {}:\n{}", ids[1], relay.logs()));
    assert!(line.contains("500"), "the status is named: {line}");
    for id in [ids[0], ids[2]] {
        assert!(!stderr.contains(id), "{id} was not dropped:\n{stderr}");
    }
}

#[test]
fn a_record_without_created_drops_its_pulse() {
    let ids = ["600000000000000000000001", "600000000000000000000002"];
    let observable = obs("ip", IP);
    let serve = |otx: &FakeOtx| {
        serve_ip_pulses(otx, &ids);
        let mut no_created = record(IP, "x");
        no_created.as_object_mut().unwrap().remove("created");
        no_created["expiration"] = json!("2022-01-01T00:00:00");
        serve_records(otx, ids[0], vec![no_created]);
        serve_records(otx, ids[1], vec![record(IP, "2021-01-01T00:00:00")]);
    };

    check(serve, &[], json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, ids[1], "2021-01-01T00:00:00Z", None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Malicious(2));
    });
}

#[test]
fn one_failing_observable_leaves_the_others_data_and_adds_an_oops_error() {
    let id = "600000000000000000000001";
    let domain = obs("domain", "example.com");
    let serve = |otx: &FakeOtx| {
        otx.on(&general_path("IPv4", IP), Reply::status(500));
        otx.on(
            &general_path("domain", "example.com"),
            Reply::json(general("domain", vec![pulse(id, "domain")])),
        );
        serve_records(otx, id, vec![record("example.com", "2021-01-01T00:00:00")]);
    };

    let observables = json!([obs("ip", IP), domain]);
    check(serve, &[], observables, |otx, expected| {
        expected
            .found(otx, &domain, id, "2021-01-01T00:00:00Z", None)
            .judged(otx, &domain, "domain/example.com", Judged::Suspicious(1));
        expected.errors.push(json!({
            "code": "oops",
            "message": "Something went wrong. Reason: 500 Internal Server Error.",
            "type": "fatal",
        }));
    });
}

// ---------------------------------------------------------------------------
// Order across observables

#[test]
fn entities_follow_the_input_order_and_one_pulse_gives_one_indicator_per_sighting() {
    let (shared, other) = ("600000000000000000000001", "600000000000000000000002");
    let sha1 = obs("sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    let ip = obs("ip", IP);
    let domain = obs("domain", "example.com");
    let serve = |otx: &FakeOtx| {
        // The first observable answers last: the order is the input's, not OTX's.
        otx.on(
            &general_path("file", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            Reply::json(general(
                "FileHash-SHA1",
                vec![pulse(other, "FileHash-SHA1")],
            ))
            .with_head_delay(Duration::from_millis(600)),
        );
        serve_records(
            otx,
            other,
            vec![record(
                "da39a3ee5e6b4b0d3255bfef95601890afd80709",
                "2021-01-01T00:00:00",
            )],
        );
        let mut both = pulse(shared, "IPv4");
        both["indicator_type_counts"] = json!({"IPv4": 1, "domain": 1});
        otx.on(
            &general_path("IPv4", IP),
            Reply::json(general("IPv4", vec![both.clone()])),
        );
        otx.on(
            &general_path("domain", "example.com"),
            Reply::json(general("domain", vec![both])),
        );
        let mut domain_record = record("example.com", "2021-06-01T00:00:00");
        domain_record["expiration"] = json!("2021-07-01T00:00:00");
        serve_records(
            otx,
            shared,
            vec![domain_record, record(IP, "2021-05-01T00:00:00")],
        );
    };

    let observables = json!([sha1, ip, domain]);
    let body = check(serve, &[], observables, |otx, expected| {
        expected
            .found(otx, &sha1, other, "2021-01-01T00:00:00Z", None)
            .found(otx, &ip, shared, "2021-05-01T00:00:00Z", None)
            .found(
                otx,
                &domain,
                shared,
                "2021-06-01T00:00:00Z",
                Some("2021-07-01T00:00:00Z"),
            )
            .judged(
                otx,
                &sha1,
                "file/da39a3ee5e6b4b0d3255bfef95601890afd80709",
                Judged::Suspicious(1),
            )
            .judged(otx, &ip, &format!("ip/{IP}"), Judged::Suspicious(1))
            .judged(otx, &domain, "domain/example.com", Judged::Suspicious(1));
    })
    .body;
    let indicators = docs(&body, "indicators");
    // python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, '600000000000000000000001'))"
    let shared_id = "transient:indicator-90897192-2b08-5e18-a243-90c3d0f78ec2";
    assert_eq!(indicators[1]["id"], shared_id);
    assert_eq!(indicators[2]["id"], shared_id);
    assert_ne!(indicators[0]["id"], shared_id);
}

// ---------------------------------------------------------------------------
// Text caps and optional fields

#[test]
fn long_texts_are_cut_on_a_character_boundary_ending_in_an_ellipsis() {
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
    ];
    let a = |n: usize, c: &str| c.repeat(n);
    let serve = |otx: &FakeOtx| {
        // 1025 characters; the 1023rd kept is two bytes wide.
        let long_name = format!("{}é🦀x", a(1022, "a"));
        // 5001 characters; the 2047th and the 4999th kept are multi-byte.
        let long_description = format!("{}é🦀{}ü€ß", a(2046, "x"), a(2950, "z"));
        let long_tag = format!("{}🦀xy", a(1022, "t"));
        let mut cut = pulse(ids[0], "IPv4");
        cut["name"] = json!(long_name);
        cut["description"] = json!(long_description);
        cut["tags"] = json!([long_tag, a(1024, "🦀"), "short"]);
        // Exactly at the caps: untouched.
        let mut at_caps = pulse(ids[1], "IPv4");
        at_caps["name"] = json!(a(1024, "🦀"));
        at_caps["description"] = json!(a(2048, "é"));
        at_caps["tags"] = json!([]);
        // Over the short_description cap only.
        let mut between = pulse(ids[2], "IPv4");
        between["name"] = json!("n");
        between["description"] = json!(a(5000, "é"));
        between["tags"] = json!(["t"]);
        otx.on(
            &general_path("IPv4", IP),
            Reply::json(general("IPv4", vec![cut, at_caps, between])),
        );
        serve_records(otx, ids[0], vec![record(IP, "2021-01-03T00:00:00")]);
        serve_records(otx, ids[1], vec![record(IP, "2021-01-02T00:00:00")]);
        serve_records(otx, ids[2], vec![record(IP, "2021-01-01T00:00:00")]);
    };
    let observable = obs("ip", IP);

    let shown = |id: &str, title: String, short_description: String, description: String| Shown {
        title,
        short_description,
        description,
        ..Shown::synthetic(id)
    };
    check(serve, &[], json!([observable]), |otx, expected| {
        expected
            .shown(
                otx,
                &observable,
                Shown {
                    tags: Some(json!([
                        format!("{}🦀…", a(1022, "t")),
                        a(1024, "🦀"),
                        "short"
                    ])),
                    ..shown(
                        ids[0],
                        format!("{}é…", a(1022, "a")),
                        format!("{}é…", a(2046, "x")),
                        format!("{}é🦀{}ü…", a(2046, "x"), a(2950, "z")),
                    )
                },
                "2021-01-03T00:00:00Z",
                None,
            )
            .shown(
                otx,
                &observable,
                Shown {
                    tags: Some(json!([])),
                    ..shown(ids[1], a(1024, "🦀"), a(2048, "é"), a(2048, "é"))
                },
                "2021-01-02T00:00:00Z",
                None,
            )
            .shown(
                otx,
                &observable,
                Shown {
                    tags: Some(json!(["t"])),
                    ..shown(
                        ids[2],
                        "n".to_string(),
                        format!("{}…", a(2047, "é")),
                        a(5000, "é"),
                    )
                },
                "2021-01-01T00:00:00Z",
                None,
            );
        expected.judged(otx, &observable, &format!("ip/{IP}"), Judged::Malicious(3));
    });
}

#[test]
fn absent_optional_fields_get_their_defaults_and_times_keep_their_zones() {
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
    ];
    let serve = |otx: &FakeOtx| {
        let bare = |id: &str| {
            json!({
                "id": id,
                "name": format!("Bare {id}"),
                "indicator_type_counts": {"IPv4": 1},
            })
        };
        let mut nulls = bare(ids[2]);
        nulls["author"] = json!(null);
        nulls["description"] = json!(null);
        nulls["TLP"] = json!(null);
        nulls["tags"] = json!(null);
        otx.on(
            &general_path("IPv4", IP),
            Reply::json(general("IPv4", vec![bare(ids[0]), bare(ids[1]), nulls])),
        );
        let mut zulu = record(IP, "2020-07-03T12:00:00Z");
        zulu["expiration"] = json!("2020-08-01T00:00:00.123456");
        serve_records(otx, ids[0], vec![zulu]);
        let mut offset = record(IP, "2020-07-02T14:00:00+02:00");
        offset["expiration"] = json!("2020-08-02T00:00:00-05:00");
        serve_records(otx, ids[1], vec![offset]);
        serve_records(otx, ids[2], vec![record(IP, "2020-07-01T12:00:00.123456")]);
    };
    let observable = obs("ip", IP);

    check(serve, &[], json!([observable]), |otx, expected| {
        for (id, start, end) in [
            (
                ids[0],
                "2020-07-03T12:00:00Z",
                Some("2020-08-01T00:00:00.123456Z"),
            ),
            (
                ids[1],
                "2020-07-02T14:00:00+02:00",
                Some("2020-08-02T00:00:00-05:00"),
            ),
            (ids[2], "2020-07-01T12:00:00.123456Z", None),
        ] {
            let shown = Shown {
                id: id.to_string(),
                title: format!("Bare {id}"),
                short_description: String::new(),
                description: String::new(),
                producer: "AlienVault OTX".to_string(),
                tags: None,
                tlp: None,
            };
            expected.shown(otx, &observable, shown, start, end);
        }
        expected.judged(otx, &observable, &format!("ip/{IP}"), Judged::Malicious(3));
    });
}
