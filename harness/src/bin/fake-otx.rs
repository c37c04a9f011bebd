//! `fake-otx [--key KEY] [--port PORT]`: the harness's fake OTX on
//! 127.0.0.1, serving the recorded samples of `tests/data/otx/` at the paths
//! they were recorded for (the `general` answers by their indicator, the
//! pulse pages by `page`, `/user/me`) and, for `.ci/docker-smoke`, a made-up
//! 192.0.2.1 found in one pulse. With `--key`, a request whose
//! `X-OTX-API-KEY` differs gets 403. Prints the port it listens on, then
//! serves until killed. `fake-otx --free-port` prints a port free on
//! 127.0.0.1 and exits.

use std::collections::HashMap;
use std::io::Write;

use otx_relay_harness::{free_port, percent_decode, sample, FakeOtx, Reply, SAMPLES_DIR};
use serde_json::{json, Value};

const PULSE: &str = "/api/v1/pulses/57204e9b3c4c3e015d93cb12/indicators";
const SMOKE_PULSE: &str = "5f0000000000000000000001";

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    if args.iter().any(|a| a == "--free-port") {
        println!("{}", free_port());
        return Ok(());
    }
    let key = option("--key").cloned();
    let port = option("--port").map_or("0", String::as_str);
    let otx = FakeOtx::start_on(&format!("127.0.0.1:{port}")).map_err(|e| e.to_string())?;

    // By percent-decoded path (and page, for the pulse).
    let mut answers: HashMap<(String, Option<String>), Value> = HashMap::new();
    let files = std::fs::read_dir(SAMPLES_DIR).map_err(|e| format!("{SAMPLES_DIR}: {e}"))?;
    for name in files.filter_map(|f| f.ok()?.file_name().into_string().ok()) {
        let page = |p: &str| Some(p.to_string());
        let at = match name.strip_suffix(".json") {
            Some("user-me") => ("/api/v1/user/me".to_string(), None),
            Some("pulse-indicators-recorded-single-page") => (PULSE.to_string(), None),
            Some(other) if other.starts_with("pulse-indicators-page") => (
                PULSE.to_string(),
                page(&other["pulse-indicators-page".len()..]),
            ),
            Some(other) if other.starts_with("general-") => {
                let answer = sample(&name);
                let kind = answer["type"].as_str().unwrap_or_default();
                let section = if ["md5", "sha1", "sha256"].contains(&kind) {
                    "file"
                } else {
                    kind
                };
                let indicator = answer["indicator"].as_str().unwrap_or_default();
                (
                    format!("/api/v1/indicators/{section}/{indicator}/general"),
                    None,
                )
            }
            _ => continue,
        };
        answers.insert(at, sample(&name));
    }
    let pulse = json!({"id": SMOKE_PULSE, "name": "Smoke pulse", "description": "Served by fake-otx",
        "author": {"username": "smoke"}, "tags": ["smoke"], "TLP": "white",
        "indicator_type_counts": {"IPv4": 1}});
    let general = json!({"base_indicator": {"indicator": "192.0.2.1", "type": "IPv4"},
        "pulse_info": {"count": 1, "pulses": [pulse]}, "false_positive": [], "validation": []});
    let record =
        json!({"indicator": "192.0.2.1", "created": "2020-07-01T12:00:00", "expiration": null});
    let smoke = [
        (
            "/api/v1/indicators/IPv4/192.0.2.1/general".to_string(),
            general,
        ),
        (
            format!("/api/v1/pulses/{SMOKE_PULSE}/indicators"),
            json!({"results": [record], "next": null}),
        ),
    ];
    answers.extend(smoke.map(|(path, answer)| ((path, None), answer)));

    otx.fallback(move |request| {
        if key.is_some() && request.header("X-OTX-API-KEY") != key.as_deref() {
            return Reply::status(403);
        }
        let path = percent_decode(&request.path);
        let paged = (path.clone(), request.query_param("page"));
        match answers.get(&paged).or_else(|| answers.get(&(path, None))) {
            Some(answer) => Reply::json(answer.clone()),
            None => Reply::status(404),
        }
    });
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", otx.addr().port())
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    loop {
        std::thread::park();
    }
}
