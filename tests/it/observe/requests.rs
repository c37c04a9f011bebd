//! What OTX is asked for an `/observe/observables` (SPEC §4): the section
//! and the value quoted, the record pages, the pulse filter on the base
//! indicator type, the case rules, and identical observables asked once.

use serde_json::json;

use crate::observe::{
    check, check_headers, docs, general, general_path, obs, page, passive_dns_path, pulse,
    pulse_path, record, serve_records, Judged, IP,
};
use crate::support::*;

// ---------------------------------------------------------------------------
// The requests as sent

#[test]
fn each_type_asks_its_otx_section_with_the_value_quoted_like_python() {
    let observables = json!([
        obs("ip", "151.106.3.179"),
        obs("ipv6", "2001:DB8::1"),
        obs("domain", "bÜcher.Example.DE"),
        obs("url", "http://a.b/c d?x=1#f%20/../ü"),
        obs("md5", "D41D8CD98F00B204E9800998ECF8427E"),
        obs("sha1", "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709"),
        obs(
            "sha256",
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
        ),
        obs("email", "user@example.com"),
        obs("hostname", "WWW.Ex@mple.COM"),
        obs("mac_address", "00:00:5e:00:53:01"),
    ]);

    // Nothing is programmed: every /general (and passive DNS) answers 404,
    // which is no data.
    let otx = check(|_| {}, &[], observables, |_, _| {}).otx;

    let requests = otx.requests();
    check_headers(&requests);
    let mut paths: Vec<String> = requests.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    // python3 -c "from urllib.parse import quote; print(quote(VALUE, safe='@:'))"
    // on the value OTX is asked about (hashes, domains and hostnames in ASCII
    // lower case).
    let mut expected = vec![
        general_path("IPv4", "151.106.3.179"),
        general_path("IPv6", "2001:DB8::1"),
        general_path("domain", "b%C3%9Ccher.example.de"),
        general_path(
            "url",
            "http:%2F%2Fa.b%2Fc%20d%3Fx%3D1%23f%2520%2F..%2F%C3%BC",
        ),
        general_path("file", "d41d8cd98f00b204e9800998ecf8427e"),
        general_path("file", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        general_path(
            "file",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        general_path("hostname", "www.ex@mple.com"),
        // SPEC §15: passive DNS of names and addresses, in the same sections.
        passive_dns_path("IPv4", "151.106.3.179"),
        passive_dns_path("IPv6", "2001:DB8::1"),
        passive_dns_path("domain", "b%C3%9Ccher.example.de"),
        passive_dns_path("hostname", "www.ex@mple.com"),
    ];
    expected.sort();
    assert_eq!(paths, expected, "no request for email or unknown types");
    assert!(requests.iter().all(|r| r.query.is_empty()));
}

#[test]
fn email_and_unknown_types_cause_no_otx_request_and_no_docs() {
    let observables = json!([
        obs("email", "user@example.com"),
        obs("IP", "1.2.3.4"),
        obs("mac", "x")
    ]);
    let otx = check(|_| {}, &[], observables, |_, _| {}).otx;
    assert!(otx.requests().is_empty(), "{:?}", otx.requests());
}

#[test]
fn the_record_on_page_two_is_found_with_sorted_limited_numbered_page_requests() {
    let id = "600000000000000000000001";
    let path = pulse_path(id);
    let observable = obs("ip", IP);
    let serve = |otx: &FakeOtx| {
        otx.on(
            &general_path("IPv4", IP),
            Reply::json(general("IPv4", vec![pulse(id, "IPv4")])),
        );
        otx.on_page(
            &path,
            1,
            page(
                vec![
                    record("198.51.100.9", "2021-03-05T00:00:00"),
                    record("198.51.100.8", "2021-03-04T06:00:00"),
                ],
                true,
            ),
        );
        // `next` is set on page 2 too: finding the record must stop the paging.
        otx.on_page(
            &path,
            2,
            page(
                vec![
                    record("198.51.100.70", "2021-03-04T05:06:08"),
                    record(IP, "2021-03-04T05:06:07.250"),
                ],
                true,
            ),
        );
        otx.on_page(
            &path,
            3,
            page(vec![record(IP, "1999-01-01T00:00:00")], false),
        );
    };

    let otx = check(serve, &[], json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, id, "2021-03-04T05:06:07.250Z", None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Suspicious(1));
    })
    .otx;

    check_headers(&otx.requests());
    let lookups = otx.requests_to(&path);
    let pages: Vec<Option<String>> = lookups.iter().map(|r| r.query_param("page")).collect();
    assert_eq!(pages, [Some("1".into()), Some("2".into())]);
    let limit = lookups[0].query_param("limit");
    for lookup in &lookups {
        assert_eq!(lookup.query_param("sort").as_deref(), Some("-created"));
        assert_eq!(lookup.query_param("limit"), limit, "one page size");
    }
    let limit: u32 = limit.and_then(|l| l.parse().ok()).expect("a numeric limit");
    assert!((1..=10_000).contains(&limit), "limit={limit}");
}

#[test]
fn a_record_missing_from_the_last_page_drops_its_pulse_alone() {
    let (kept, missing) = ("600000000000000000000001", "600000000000000000000002");
    let observable = obs("ip", IP);
    let serve = |otx: &FakeOtx| {
        otx.on(
            &general_path("IPv4", IP),
            Reply::json(general(
                "IPv4",
                vec![pulse(missing, "IPv4"), pulse(kept, "IPv4")],
            )),
        );
        otx.on_page(
            &pulse_path(missing),
            1,
            page(vec![record("198.51.100.8", "2021-03-05T00:00:00")], false),
        );
        otx.on_page(
            &pulse_path(missing),
            2,
            page(vec![record(IP, "2021-03-05T00:00:00")], false),
        );
        serve_records(otx, kept, vec![record(IP, "2021-01-01T00:00:00")]);
    };

    // The verdict counts the pulses of /general, found or not.
    let otx = check(serve, &[], json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, kept, "2021-01-01T00:00:00Z", None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Malicious(2));
    })
    .otx;
    assert_eq!(
        otx.requests_to(&pulse_path(missing)).len(),
        1,
        "no page 2 when `next` is null"
    );
}

#[test]
fn pulses_that_do_not_count_the_base_indicator_type_are_never_looked_up() {
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
        "600000000000000000000004",
    ];
    let observable = obs("ip", IP);
    let serve = |otx: &FakeOtx| {
        let mut empty = pulse(ids[1], "IPv4");
        empty["indicator_type_counts"] = json!({});
        let mut absent = pulse(ids[3], "IPv4");
        absent
            .as_object_mut()
            .unwrap()
            .remove("indicator_type_counts");
        otx.on(
            &general_path("IPv4", IP),
            Reply::json(general(
                "IPv4",
                vec![
                    pulse(ids[0], "IPv4"),
                    empty,
                    pulse(ids[2], "domain"),
                    absent,
                ],
            )),
        );
        for id in ids {
            serve_records(otx, id, vec![record(IP, "2021-01-01T00:00:00")]);
        }
    };

    let otx = check(serve, &[], json!([observable]), |otx, expected| {
        expected
            .found(otx, &observable, ids[0], "2021-01-01T00:00:00Z", None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Suspicious(1));
    })
    .otx;
    assert_eq!(otx.requests_to(&pulse_path(ids[0])).len(), 1);
    for id in &ids[1..] {
        assert!(
            otx.requests_to(&pulse_path(id)).is_empty(),
            "{id} looked up"
        );
    }
}

// ---------------------------------------------------------------------------
// Matching and case

#[test]
fn hashes_and_domains_match_ignoring_ascii_case_and_urls_match_exactly() {
    let domain = obs("domain", "BÜCHER.Example.COM");
    let sha256 = obs(
        "sha256",
        "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    );
    let url = obs("url", "http://Evil.Example.com/Path?Q=1");
    let ids = [
        "600000000000000000000001",
        "600000000000000000000002",
        "600000000000000000000003",
        "600000000000000000000004",
        "600000000000000000000005",
    ];
    let serve = |otx: &FakeOtx| {
        otx.on(
            &general_path("domain", "b%C3%9Ccher.example.com"),
            Reply::json(general(
                "domain",
                vec![pulse(ids[0], "domain"), pulse(ids[1], "domain")],
            )),
        );
        // Only ASCII letters fold: "ü" is not "Ü".
        serve_records(
            otx,
            ids[0],
            vec![record("bücher.example.com", "2021-02-01T00:00:00")],
        );
        serve_records(
            otx,
            ids[1],
            vec![record("bÜcher.EXAMPLE.com", "2021-01-01T00:00:00")],
        );
        otx.on(
            &general_path(
                "file",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            Reply::json(general(
                "FileHash-SHA256",
                vec![pulse(ids[2], "FileHash-SHA256")],
            )),
        );
        serve_records(
            otx,
            ids[2],
            vec![record(
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "2021-01-02T00:00:00",
            )],
        );
        otx.on(
            &general_path("url", "http:%2F%2FEvil.Example.com%2FPath%3FQ%3D1"),
            Reply::json(general(
                "URL",
                vec![pulse(ids[3], "URL"), pulse(ids[4], "URL")],
            )),
        );
        serve_records(
            otx,
            ids[3],
            vec![record(
                "http://evil.example.com/path?q=1",
                "2021-02-03T00:00:00",
            )],
        );
        serve_records(
            otx,
            ids[4],
            vec![record(
                "http://Evil.Example.com/Path?Q=1",
                "2021-01-03T00:00:00",
            )],
        );
    };

    // The observables echo the values as received.
    let observables = json!([domain, sha256, url]);
    check(serve, &[], observables, |otx, expected| {
        expected
            .found(otx, &domain, ids[1], "2021-01-01T00:00:00Z", None)
            .found(otx, &sha256, ids[2], "2021-01-02T00:00:00Z", None)
            .found(otx, &url, ids[4], "2021-01-03T00:00:00Z", None)
            .judged(
                otx,
                &domain,
                "domain/B%C3%9CCHER.Example.COM",
                Judged::Malicious(2),
            )
            .judged(
                otx,
                &sha256,
                "file/E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                Judged::Suspicious(1),
            )
            .judged(
                otx,
                &url,
                "url/http:%2F%2FEvil.Example.com%2FPath%3FQ%3D1",
                Judged::Malicious(2),
            );
    });
}

#[test]
fn identical_observables_are_asked_once_and_answered_once() {
    let id = "600000000000000000000001";
    let observable = obs("ip", IP);
    let serve = |otx: &FakeOtx| {
        otx.on(
            &general_path("IPv4", IP),
            Reply::json(general("IPv4", vec![pulse(id, "IPv4")])),
        );
        serve_records(otx, id, vec![record(IP, "2021-01-01T00:00:00")]);
    };

    let observables = json!([observable, {"type": "ip", "value": IP, "extra": 1}, observable]);
    let otx = check(serve, &[], observables, |otx, expected| {
        expected
            .found(otx, &observable, id, "2021-01-01T00:00:00Z", None)
            .judged(otx, &observable, &format!("ip/{IP}"), Judged::Suspicious(1));
    })
    .otx;
    assert_eq!(otx.requests_to(&general_path("IPv4", IP)).len(), 1);
    assert_eq!(otx.requests_to(&pulse_path(id)).len(), 1);
}

#[test]
fn domains_differing_only_in_case_are_distinct_observables_both_answered() {
    let id = "600000000000000000000001";
    let (upper, lower) = (obs("domain", "Example.COM"), obs("domain", "example.com"));
    let serve = |otx: &FakeOtx| {
        otx.on(
            &general_path("domain", "example.com"),
            Reply::json(general("domain", vec![pulse(id, "domain")])),
        );
        serve_records(otx, id, vec![record("example.com", "2021-01-01T00:00:00")]);
    };

    let run = check(serve, &[], json!([upper, lower]), |otx, expected| {
        expected
            .found(otx, &upper, id, "2021-01-01T00:00:00Z", None)
            .found(otx, &lower, id, "2021-01-01T00:00:00Z", None)
            .judged(otx, &upper, "domain/Example.COM", Judged::Suspicious(1))
            .judged(otx, &lower, "domain/example.com", Judged::Suspicious(1));
    });
    let indicators = docs(&run.body, "indicators");
    assert_eq!(
        indicators[0]["id"], indicators[1]["id"],
        "one pulse, one id"
    );
    // Whether OTX was asked once or twice, only the lower-case path was used.
    let paths: Vec<String> = (run.otx.requests().into_iter())
        .filter(|r| r.path.ends_with("/general"))
        .map(|r| r.path)
        .collect();
    assert!(!paths.is_empty());
    assert!(
        paths
            .iter()
            .all(|p| *p == general_path("domain", "example.com")),
        "{paths:?}"
    );
}
