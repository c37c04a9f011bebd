//! The recorded OTX samples through `/observe/observables`: every
//! `/general` sample, and the pulse indicator pages.

use serde_json::json;

use crate::observe::{
    check, check_links, docs, general, general_path, obs, observe, pulse_path, Expected, Judged,
    Shown, SAMPLE_IP,
};
use crate::support::*;

// ---------------------------------------------------------------------------
// The recorded samples

/// One recorded `/general` sample and the observable it answers.
struct GeneralSample {
    file: &'static str,
    type_: &'static str,
    value: &'static str,
    section: &'static str,
    /// The value as quoted in the OTX path and the refer link.
    quoted: &'static str,
    judged: Option<Judged<'static>>,
}

impl GeneralSample {
    fn new(file: &'static str, type_: &'static str, value: &'static str) -> GeneralSample {
        let section = match type_ {
            "ip" => "IPv4",
            "ipv6" => "IPv6",
            "sha1" => "file",
            other => other,
        };
        GeneralSample {
            file,
            type_,
            value,
            section,
            quoted: value,
            judged: None,
        }
    }

    fn quoted(self, quoted: &'static str) -> GeneralSample {
        GeneralSample { quoted, ..self }
    }

    fn judged(self, judged: Judged<'static>) -> GeneralSample {
        GeneralSample {
            judged: Some(judged),
            ..self
        }
    }
}

#[test]
fn every_general_sample_parses_without_error() {
    let otx = FakeOtx::start();
    let relay = Relay::start(&otx, &[]);
    let url = "http://www.fotoidea.com/sport/4x4_san_ponso/slides/IMG_0068.html";
    let cases = [
        GeneralSample::new("general-ipv4.json", "ip", SAMPLE_IP).judged(Judged::Suspicious(1)),
        GeneralSample::new("general-ipv4-1pulse-inactive.json", "ip", "98.136.103.23"),
        GeneralSample::new("general-ipv4-no-pulses-whitelisted.json", "ip", "8.8.8.8")
            .judged(Judged::Clean(&["Known False Positive", "Whitelisted IP"])),
        GeneralSample::new("general-unknown-domain.json", "domain", "swimlane.com"),
        GeneralSample::new(
            "general-unknown-ipv6.json",
            "ipv6",
            "0:0:0:0:0:ffff:808:808",
        ),
        GeneralSample::new(
            "general-file-sha1-no-pulses.json",
            "sha1",
            "6c5360d41bd2b14b1565f5b18e5c203cf512e493",
        ),
        GeneralSample::new("general-url-no-pulses.json", "url", url)
            .quoted("http:%2F%2Fwww.fotoidea.com%2Fsport%2F4x4_san_ponso%2Fslides%2FIMG_0068.html"),
    ];
    for case in cases {
        let path = general_path(case.section, case.quoted);
        otx.on(&path, Reply::file(case.file));
        let observable = obs(case.type_, case.value);
        let mut expected = Expected::default();
        if let Some(judged) = case.judged {
            let category = if case.section == "file" {
                "file"
            } else {
                case.type_
            };
            let refer = format!("{category}/{}", case.quoted);
            expected.judged(&otx, &observable, &refer, judged);
        }
        // The counted pulse of general-ipv4.json has no indicator page here
        // (404): no sighting, and no error either.
        let body = observe(&relay, &json!([observable]));
        assert!(body.get("errors").is_none(), "{}: {body}", case.file);
        check_json(&body, &json!({"data": expected.data()}));
        check_links(&body);
        assert_eq!(otx.requests_to(&path).len(), 1, "{}", case.file);
    }
}

#[test]
fn the_pulse_indicator_samples_parse_as_pages() {
    // Recorded pulse 57204e9b…, served in two pages; its records are on both.
    let paged = "57204e9b3c4c3e015d93cb12";
    let single = "57204e9b3c4c3e015d93cbff";
    let on_page_two = obs("sha1", "675A3247F4C0E1105A41C685F4C2FB606E5B1EAC");
    let on_single = obs("domain", "jackhex.md5c.net");
    let serve = |otx: &FakeOtx| {
        let sample_pulse = |id: &str, base_type: &str| {
            json!({
                "id": id,
                "name": "Sample pulse",
                "description": "",
                "author": {"username": "AlienVault"},
                "TLP": "white",
                "tags": ["apt"],
                "indicator_type_counts": {base_type: 13},
            })
        };
        otx.on(
            &general_path("file", "675a3247f4c0e1105a41c685f4c2fb606e5b1eac"),
            Reply::json(general(
                "FileHash-SHA1",
                vec![sample_pulse(paged, "FileHash-SHA1")],
            )),
        );
        otx.on(
            &general_path("domain", "jackhex.md5c.net"),
            Reply::json(general("domain", vec![sample_pulse(single, "domain")])),
        );
        otx.on_page(
            &pulse_path(paged),
            1,
            Reply::file("pulse-indicators-page1.json"),
        );
        otx.on_page(
            &pulse_path(paged),
            2,
            Reply::file("pulse-indicators-page2.json"),
        );
        otx.on(
            &pulse_path(single),
            Reply::file("pulse-indicators-recorded-single-page.json"),
        );
    };

    let observables = json!([on_page_two, on_single]);
    let run = check(serve, &[], observables, |otx, expected| {
        for (observable, id) in [(&on_page_two, paged), (&on_single, single)] {
            let shown = Shown {
                id: id.to_string(),
                title: "Sample pulse".to_string(),
                short_description: String::new(),
                description: String::new(),
                producer: "AlienVault".to_string(),
                tags: Some(json!(["apt"])),
                tlp: Some("white".to_string()),
            };
            expected.shown(otx, observable, shown, "2016-04-27T05:31:07Z", None);
        }
        expected
            .judged(
                otx,
                &on_page_two,
                "file/675A3247F4C0E1105A41C685F4C2FB606E5B1EAC",
                Judged::Suspicious(1),
            )
            .judged(
                otx,
                &on_single,
                "domain/jackhex.md5c.net",
                Judged::Suspicious(1),
            );
    });
    // python3 -c "import uuid; print(uuid.uuid5(uuid.NAMESPACE_X500, '57204e9b3c4c3e015d93cb12'))"
    assert_eq!(
        docs(&run.body, "indicators")[0]["id"],
        "transient:indicator-e5de6383-e922-50ca-bfbc-ee2a9dad3d50"
    );
    let pages: Vec<Option<String>> = (run.otx.requests_to(&pulse_path(paged)).iter())
        .map(|r| r.query_param("page"))
        .collect();
    assert_eq!(pages, [Some("1".into()), Some("2".into())]);
    assert_eq!(run.otx.requests_to(&pulse_path(single)).len(), 1);
}
