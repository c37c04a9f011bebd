//! A synthetic OTX for loads (the bench, the soak, `fake-otx`), with nothing
//! to program: every observable is in a few pulses whose ids carry the
//! value (`<n, 2 hex digits><the value in hex>`), so that a pulse's page can
//! list it; its passive DNS holds three resolutions. `POPULAR` is in 50
//! pulses of 5 000 records each, its own last: the costliest lookup there is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
            ["indicators", _, value, "general"] => self.general(&percent_decode(value)),
            ["indicators", _, value, "passive_dns"] => self.passive_dns(&percent_decode(value)),
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

    fn general(&self, value: &str) -> Reply {
        let hash = fnv(value);
        let count = match value {
            POPULAR => POPULAR_PULSES,
            _ if !self.varied => self.pulses,
            _ if hash.is_multiple_of(8) => return Reply::status(404),
            _ => hash as usize % (self.pulses + 1),
        };
        let hex = hex(value);
        let pulses: Vec<Value> = (0..count)
            .map(|n| {
                let id = match value {
                    POPULAR => format!("b0b0{n:020x}"),
                    _ => format!("{n:02x}{hex}"),
                };
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
            "base_indicator": {"indicator": value, "type": "X", "id": 1},
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
