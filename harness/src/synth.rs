//! A synthetic OTX for loads (the bench, the soak, `fake-otx`), with nothing
//! to program: every observable is in a few pulses whose ids carry the
//! value (`<n, 2 hex digits><the value in hex>`), so that a pulse's page can
//! list it; its passive DNS holds three resolutions. `POPULAR` is in 50
//! pulses of 5 000 records each, its own last: the costliest lookup there
//! is. `Synth::demo` is the one `make demo` shows: its pulses name malware
//! and techniques, and the tenant's subscriptions hold pulses of the last
//! day.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::{hex, lock, percent_decode, unhex, FakeOtx, Recorded, Reply};

pub const POPULAR: &str = "popular.example.com";
pub const POPULAR_PULSES: usize = 50;
pub const POPULAR_RECORDS: usize = 5000;
/// The `next` of a pulse's page, but for the number of that page.
const NEXT_PAGE: &str = "https://otx.example/api/v1/pulses/x/indicators?page=";

type Pages = HashMap<(usize, usize), Arc<[u8]>>;

#[derive(Default)]
pub struct Synth {
    pulses: usize,
    varied: bool,
    demo: bool,
    /// The popular pulses' pages by (limit, page), made once: 61 MiB.
    popular: Mutex<Pages>,
}

impl Synth {
    /// Every observable in `pulses` pulses, on their first page.
    pub fn new(pulses: usize) -> Synth {
        Synth {
            pulses,
            ..Synth::default()
        }
    }

    /// What `make demo` shows (`fake-otx --demo`): every observable in
    /// three pulses of its own OTX type (Malicious at the relay's default
    /// `OTX_MALICIOUS_PULSES` of 2), each naming malware families (as a
    /// string and as an object) and an ATT&CK technique; and
    /// `/api/v1/pulses/subscribed` answering one page of 20 pulses modified
    /// in the last 24 hours, so that every dashboard tile has something to
    /// show. `Synth::new`'s answers stay as they were: the bench reads them.
    pub fn demo() -> Synth {
        Synth {
            pulses: 3,
            demo: true,
            ..Synth::default()
        }
    }

    /// Each observable (by a stable hash of it) in 0 to `pulses` pulses or
    /// unknown to OTX (404), and a third of the pulses on their second page.
    pub fn varied(mut self) -> Synth {
        self.varied = true;
        self
    }

    /// Answers what `otx` was not programmed for.
    pub fn serve(self, otx: &FakeOtx) {
        let synth = Arc::new(self);
        otx.fallback(move |request| synth.answer(request));
    }

    pub fn answer(&self, request: &Recorded) -> Reply {
        let param = |name| request.query_param(name).and_then(|v| v.parse().ok());
        let (limit, page) = (param("limit").unwrap_or(10), param("page").unwrap_or(1));
        let segments: Vec<&str> = request.path.split('/').skip(3).collect();
        match segments[..] {
            ["user", "me"] => Reply::json(json!({"username": "synthetic"})),
            ["indicators", section, value, "general"] => {
                self.general(section, &percent_decode(value))
            }
            ["indicators", _, value, "passive_dns"] => self.passive_dns(&percent_decode(value)),
            ["pulses", "subscribed"] if self.demo => Reply::json(subscribed(now())),
            ["pulses", id, "indicators"] if id.starts_with("b0b0") => {
                self.popular_page(limit.max(1), page.max(1))
            }
            ["pulses", id, "indicators"] => match (id.get(..2), id.get(2..).and_then(unhex)) {
                (Some(n), Some(value)) => Reply::json(self.page(id, n, &value, page)),
                _ => Reply::status(404),
            },
            _ => Reply::status(404),
        }
    }

    fn general(&self, section: &str, value: &str) -> Reply {
        let hash = fnv(value);
        let count = match value {
            POPULAR => POPULAR_PULSES,
            _ if !self.varied => self.pulses,
            _ if hash.is_multiple_of(8) => return Reply::status(404),
            _ => hash as usize % (self.pulses + 1),
        };
        let hex = hex(value);
        let kind = match self.demo {
            true => otx_type(section, value),
            false => "X",
        };
        let pulses: Vec<Value> = (0..count)
            .map(|n| {
                let id = match value {
                    POPULAR => format!("b0b0{n:020x}"),
                    _ => format!("{n:02x}{hex}"),
                };
                if self.demo {
                    return demo_pulse(id, n, kind);
                }
                json!({"id": id, "name": format!("Campaign {n} infrastructure"),
                       "description": "Indicators observed in a phishing and malware campaign.",
                       "author": {"username": "analyst", "id": "1"},
                       "tags": ["phishing", "malware", "c2"], "TLP": "white",
                       "created": "2024-03-01T10:00:00.000000",
                       "modified": "2024-03-02T10:00:00.000000", "indicator_count": 5000,
                       "indicator_type_counts": {"X": 1}, "references": [],
                       "targeted_countries": [], "malware_families": [], "attack_ids": []})
            })
            .collect();
        Reply::json(json!({
            "indicator": value,
            "base_indicator": {"indicator": value, "type": kind, "id": 1},
            "pulse_info": {"count": pulses.len(), "pulses": pulses, "references": []},
            "validation": [], "false_positive": [],
        }))
    }

    /// What passive DNS saw of `value`: three resolutions (two A, one
    /// AAAA), or nothing (404) when `varied` says it is unknown.
    fn passive_dns(&self, value: &str) -> Reply {
        let hash = fnv(value);
        if self.varied && hash.is_multiple_of(8) {
            return Reply::status(404);
        }
        let (a, b) = (hash % 250 + 1, hash / 250 % 250 + 1);
        let record = |hostname: String, address: String, kind: &str, day: u64| {
            json!({"address": address, "first": format!("2024-01-{day:02}T08:00:00"),
                   "last": format!("2024-02-{day:02}T08:00:00"), "hostname": hostname,
                   "record_type": kind, "indicator_link": "/indicator/hostname/x",
                   "flag_url": "assets/images/flags/us.png", "flag_title": "United States",
                   "asset_type": "hostname", "asn": "AS64496 example"})
        };
        let records = [
            record(
                format!("www.{value}"),
                format!("198.51.100.{a}"),
                "A",
                1 + a % 28,
            ),
            record(
                format!("mail.{value}"),
                format!("203.0.113.{b}"),
                "A",
                1 + b % 28,
            ),
            record(
                format!("www.{value}"),
                format!("2001:db8::{a:x}"),
                "AAAA",
                1 + b % 28,
            ),
        ];
        Reply::json(json!({"passive_dns": records, "count": records.len()}))
    }

    /// Page `page` of pulse `n` of `value`: ten records, the value's at
    /// position `n` (or twenty others first, when `varied` says so).
    fn page(&self, id: &str, n: &str, value: &str, page: usize) -> Value {
        let n = usize::from_str_radix(n, 16).unwrap_or(0) % 10;
        let first_of_two = self.varied && fnv(id).is_multiple_of(3) && page == 1;
        let records: Vec<Value> = (0..if first_of_two { 20 } else { 10 })
            .map(|i| {
                let indicator = match i == n && !first_of_two {
                    true => value.to_owned(),
                    false => format!("other-{i}.example.org"),
                };
                json!({"id": 2_000_000 + i, "indicator": indicator, "type": "X",
                       "created": format!("2024-02-{:02}T08:00:00", 1 + (i + n) % 28),
                       "content": "", "title": "", "description": "", "expiration": null,
                       "is_active": 1, "role": null})
            })
            .collect();
        let next = first_of_two.then(|| format!("{NEXT_PAGE}2"));
        json!({"results": records, "count": records.len(), "previous": null, "next": next})
    }

    /// The popular pulses' page `page` of `limit` records, newest first.
    fn popular_page(&self, limit: usize, page: usize) -> Reply {
        let mut pages = lock(&self.popular);
        let body = pages.entry((limit, page)).or_insert_with(|| {
            let start = (page - 1).saturating_mul(limit).min(POPULAR_RECORDS);
            let end = start.saturating_add(limit).min(POPULAR_RECORDS);
            let records = (start..end)
                .map(popular_record)
                .collect::<Vec<_>>()
                .join(", ");
            let next = json!((end < POPULAR_RECORDS).then(|| format!("{NEXT_PAGE}{}", page + 1)));
            let count = POPULAR_RECORDS;
            let body = format!(
                r#"{{"results": [{records}], "count": {count}, "previous": null, "next": {next}}}"#
            );
            body.into_bytes().into()
        });
        Reply::json_bytes(Arc::clone(body))
    }
}

/// The OTX type of `value` asked for under `section`, as `base_indicator`
/// and `indicator_type_counts` spell it (the relay keeps the pulses whose
/// counts hold the base indicator's type).
fn otx_type(section: &str, value: &str) -> &'static str {
    match (section, value.len()) {
        ("IPv4", _) => "IPv4",
        ("IPv6", _) => "IPv6",
        ("hostname", _) => "hostname",
        ("url", _) => "URL",
        ("file", 32) => "FileHash-MD5",
        ("file", 40) => "FileHash-SHA1",
        ("file", _) => "FileHash-SHA256",
        _ => "domain",
    }
}

/// Pulse `n` of a demo observable of OTX type `kind`.
fn demo_pulse(id: String, n: usize, kind: &str) -> Value {
    const FAMILIES: [&str; 3] = ["Emotet", "Cobalt Strike", "Qakbot"];
    let (name, technique) = [
        ("Emotet phishing wave", ("T1566", "Phishing")),
        (
            "Cobalt Strike beacons",
            ("T1071", "Application Layer Protocol"),
        ),
        ("Qakbot loader infrastructure", ("T1059.001", "PowerShell")),
    ][n % 3];
    let (malware, other) = (FAMILIES[n % 3], FAMILIES[(n + 1) % 3]);
    json!({"id": id, "name": format!("{name} (demo)"),
           "description": "Synthetic pulse of the otx-relay demo: no real data.",
           "author": {"username": "demo-analyst", "id": "1"},
           "tags": ["phishing", "malware", "c2"], "TLP": "green",
           "created": "2026-11-20T10:00:00.000000",
           "modified": "2026-11-21T10:00:00.000000", "indicator_count": 10,
           "indicator_type_counts": {kind: 1}, "references": [], "targeted_countries": [],
           "malware_families": [malware, {"id": other, "display_name": other,
                                          "target": format!("/malware/{other}")}],
           "attack_ids": [{"id": technique.0, "name": technique.1,
                           "display_name": format!("{} - {}", technique.0, technique.1)}]})
}

/// One page (the only one) of the demo tenant's subscribed pulses: 20
/// pulses modified between 5 minutes and about 21 hours before `now`.
fn subscribed(now: u64) -> Value {
    const MALWARE: [&str; 7] = [
        "Emotet",
        "Qakbot",
        "Cobalt Strike",
        "AsyncRAT",
        "LockBit",
        "Remcos",
        "Emotet",
    ];
    const ADVERSARIES: [&str; 4] = ["TA505", "FIN7", "", "Lazarus Group"];
    let pulses: Vec<Value> = (0..20usize)
        .map(|i| {
            let age = 300 + 3840 * i as u64;
            json!({"id": format!("64d0c0ffee{i:014x}"),
                   "name": format!("Demo campaign {} ({})", i + 1, MALWARE[i % 7]),
                   "author": {"username": "demo-analyst"},
                   "adversary": ADVERSARIES[i % 4],
                   "modified": otx_time(now.saturating_sub(age)),
                   "indicator_count": 5 + i * 3,
                   "malware_families": [MALWARE[i % 7], MALWARE[(i + 3) % 7]]})
        })
        .collect();
    json!({"results": pulses, "count": pulses.len(), "previous": null, "next": null})
}

/// Seconds since the epoch, now.
fn now() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map(|d| d.as_secs()).unwrap_or_default()
}

/// `secs` as OTX writes its times, in UTC: `2026-11-30T16:05:12.000000`.
/// The harness never links the relay, so it has its own calendar
/// (Howard Hinnant's `civil_from_days`).
pub fn otx_time(secs: u64) -> String {
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (rest / 3600, rest / 60 % 60, rest % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.000000")
}

/// Record `i` of the popular pulses; the last is `POPULAR` itself.
fn popular_record(i: usize) -> String {
    let indicator = match i == POPULAR_RECORDS - 1 {
        true => POPULAR.to_owned(),
        false => format!("host-{i:05}.campaign.example.net"),
    };
    let (day, minute, second) = (28 - i * 28 / POPULAR_RECORDS, i % 60, i / 60 % 60);
    format!(
        r#"{{"id": {}, "indicator": "{indicator}", "type": "domain", "created": "2024-03-{day:02}T12:{minute:02}:{second:02}", "content": "", "title": "", "description": "", "expiration": null, "is_active": 1, "false_positive": {{"assessment": null}}, "role": null}}"#,
        3_100_000_000u64 + i as u64
    )
}

/// FNV-1a: a stable hash, so that a value is answered the same way each time.
pub fn fnv(text: &str) -> u64 {
    (text.bytes()).fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::otx_time;

    #[test]
    fn otx_time_is_utc_calendar_time() {
        assert_eq!(otx_time(0), "1970-01-01T00:00:00.000000");
        assert_eq!(otx_time(951_782_400), "2000-02-29T00:00:00.000000");
        assert_eq!(
            otx_time(1_795_392_000 + 3_661),
            "2026-11-23T01:01:01.000000"
        );
        assert_eq!(otx_time(4_107_542_399), "2100-02-28T23:59:59.000000");
    }
}
