//! Dashboard tiles (SPEC §11): what the tenant's OTX subscriptions brought
//! in over a period, from one walk of `/api/v1/pulses/subscribed`.
//!
//! A walk reads pages of 50 pulses (their indicator lists counted as they
//! stream by, never held) until OTX has no more, `TILE_MAX_PULSES` or the
//! request's deadline; it serves all four tiles of one (tenant, period) for
//! `TILE_CACHE_TTL`, and identical concurrent walks share one. A walk cut
//! short by an OTX failure or the deadline answers what it read plus the
//! error, and is not cached. The walks are made and kept by
//! [`Otx::walk`](crate::otx::Otx::walk).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::error::RelayError;
use crate::intel::PulseSummary;
use crate::otx::{links, Walk};
use crate::time::{format_time, parse_otx_time};

/// The periods every tile offers.
pub const PERIODS: [&str; 3] = ["last_24_hours", "last_7_days", "last_30_days"];
/// The period a dashboard starts with.
pub const DEFAULT_PERIOD: &str = "last_7_days";

/// A tile as `/tiles` and `/tiles/tile` describe it.
#[derive(Debug, Clone, Serialize)]
pub struct Tile {
    pub default_period: &'static str,
    pub description: &'static str,
    pub id: &'static str,
    pub periods: [&'static str; 3],
    pub short_description: &'static str,
    pub tags: [&'static str; 2],
    pub title: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

const fn tile(
    id: &'static str,
    type_: &'static str,
    title: &'static str,
    short_description: &'static str,
    description: &'static str,
    tag: &'static str,
) -> Tile {
    Tile {
        default_period: DEFAULT_PERIOD,
        description,
        id,
        periods: PERIODS,
        short_description,
        tags: ["AlienVault OTX", tag],
        title,
        type_,
    }
}

/// The four tiles, in the order `/tiles` lists them.
pub const TILES: [Tile; 4] = [
    tile(
        "otx-activity-summary",
        "metric_group",
        "OTX subscriptions: activity",
        "Pulses, indicators, adversaries and malware families from your OTX subscriptions",
        "What the AlienVault OTX pulses you subscribe to brought in over the period: pulses modified, the indicators they hold, and the distinct adversaries and malware families they name.",
        "summary",
    ),
    tile(
        "otx-pulses-per-period",
        "vertical_bar_chart",
        "OTX subscriptions: pulses over time",
        "Subscribed pulses modified per hour or per day",
        "The AlienVault OTX pulses you subscribe to, counted by the UTC hour (last 24 hours) or day (7 and 30 days) they were last modified; empty hours and days included.",
        "timeline",
    ),
    tile(
        "otx-latest-pulses",
        "markdown",
        "OTX subscriptions: latest pulses",
        "The 10 most recently modified subscribed pulses",
        "The ten AlienVault OTX pulses from your subscriptions modified last, with their author, their indicator count and a link to each on OTX.",
        "pulses",
    ),
    tile(
        "otx-top-malware",
        "donut_graph",
        "OTX subscriptions: top malware",
        "The malware families most named by subscribed pulses",
        "The five malware families named by the most AlienVault OTX pulses of your subscriptions over the period, and all others together.",
        "malware",
    ),
];

/// The tile named `id`.
pub fn find(id: &str) -> Result<&'static Tile, RelayError> {
    TILES
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| RelayError::InvalidPayload(format!("Unknown tile_id {}.", quoted(id))))
}

/// `"text"`, JSON-quoted, for messages about what the client sent.
fn quoted(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// A tile's period, checked.
pub fn period(tile: &Tile, period: &str) -> Result<&'static str, RelayError> {
    tile.periods
        .iter()
        .find(|p| **p == period)
        .copied()
        .ok_or_else(|| {
            RelayError::InvalidPayload(format!(
                "Unknown period {} for tile {}.",
                quoted(period),
                quoted(tile.id)
            ))
        })
}

/// A period ending at `now` (seconds), and its bars (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Exactly 24 hours, 7 days or 30 days before `now`: the first instant
    /// of the period, and the `modified_since` of its walk.
    pub start: u64,
    /// The start of the UTC hour or day that holds `start`: the first bar's.
    pub first_bar: u64,
    /// A bar's length: an hour (`last_24_hours`) or a day.
    pub step: u64,
    /// The UTC hours or days that overlap `[start, now]`: 25, 8 or 31, the
    /// first and the last partial (the last ends after `now`).
    pub bars: usize,
}

impl Span {
    /// The span of `period` ending at `now`.
    pub fn new(period: &str, now: u64) -> Span {
        let (length, step) = match period {
            "last_24_hours" => (86_400, 3600),
            "last_30_days" => (30 * 86_400, 86_400),
            _ => (7 * 86_400, 86_400),
        };
        let start = now.saturating_sub(length);
        let first_bar = start - start % step;
        let last_bar = now - now % step;
        Span {
            start,
            first_bar,
            step,
            bars: ((last_bar - first_bar) / step) as usize + 1,
        }
    }
}

/// The `data` of a tile-data answer: the tile's own fields beside the
/// times every tile carries (SPEC §11). Fields in alphabetical order.
#[derive(Debug, Clone, Serialize)]
pub struct TileData {
    pub cache_scope: &'static str,
    pub data: Value,
    pub hide_legend: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
    pub observed_time: TimeRange,
    pub valid_time: TimeRange,
}

/// `{"start_time", "end_time"}`, both set.
#[derive(Debug, Clone, Serialize)]
pub struct TimeRange {
    pub end_time: String,
    pub start_time: String,
}

fn time(secs: u64) -> String {
    format_time(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The data of `tile` over `period`, from `walk`; `otx_url` makes links;
/// `valid` is `TILE_CACHE_TTL`.
pub fn data(tile: &Tile, period: &str, walk: &Walk, otx_url: &str, valid: Duration) -> TileData {
    let span = Span::new(period, walk.at);
    // Pulses in the period with a readable `modified`, as (time, pulse).
    let mut pulses: Vec<(u64, &PulseSummary)> = walk
        .pulses
        .iter()
        .filter_map(|p| parse_otx_time(&p.modified).map(|t| (t, p)))
        .filter(|(t, _)| (span.start..=walk.at).contains(t))
        .collect();
    let mut tile_data = TileData {
        cache_scope: "org",
        data: Value::Null,
        hide_legend: false,
        key_type: None,
        keys: None,
        labels: None,
        observed_time: TimeRange {
            end_time: time(walk.at),
            start_time: time(span.start),
        },
        valid_time: TimeRange {
            end_time: time(walk.at + valid.as_secs()),
            start_time: time(walk.at),
        },
    };
    match tile.id {
        "otx-activity-summary" => {
            let indicators: u64 = pulses.iter().map(|(_, p)| p.indicators).sum();
            let adversaries: BTreeSet<&str> = pulses
                .iter()
                .map(|(_, p)| p.adversary.trim())
                .filter(|a| !a.is_empty())
                .collect();
            let malware: BTreeSet<String> = pulses
                .iter()
                .flat_map(|(_, p)| p.malware.iter().map(|m| m.to_lowercase()))
                .collect();
            let metric = |icon: &str, label: &str, value: u64| serde_json::json!({"icon": icon, "label": label, "value": value, "value_unit": "integer"});
            tile_data.data = Value::Array(vec![
                metric("report", "Pulses", pulses.len() as u64),
                metric("target", "Indicators", indicators),
                metric("user", "Adversaries", adversaries.len() as u64),
                metric("bug", "Malware families", malware.len() as u64),
            ]);
        }
        "otx-pulses-per-period" => {
            let mut counts = vec![0u64; span.bars];
            for (t, _) in &pulses {
                if let Some(slot) = counts.get_mut(((t - span.first_bar) / span.step) as usize) {
                    *slot += 1;
                }
            }
            let bars: Vec<Value> = counts
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let at = span.first_bar + i as u64 * span.step;
                    let stamp = time(at);
                    let label = if span.step == 3600 {
                        stamp[11..16].to_owned()
                    } else {
                        stamp[..10].to_owned()
                    };
                    let tooltip = format!("{n} pulse{}", if n == 1 { "" } else { "s" });
                    serde_json::json!({"key": at * 1000, "label": label, "value": n,
                        "values": [{"key": "pulses", "value": n, "tooltip": tooltip}]})
                })
                .collect();
            tile_data.key_type = Some("timestamp");
            tile_data.keys = Some(serde_json::json!([{"key": "pulses", "label": "Pulses"}]));
            tile_data.data = Value::Array(bars);
        }
        "otx-latest-pulses" => {
            // Newest first; a stable sort keeps OTX's order among equals.
            pulses.sort_by_key(|(t, _)| Reverse(*t));
            let mut lines = vec![
                "| Modified (UTC) | Pulse | Author | Indicators |".to_owned(),
                "| --- | --- | --- | --- |".to_owned(),
            ];
            for (t, p) in pulses.iter().take(10) {
                let stamp = time(*t);
                lines.push(format!(
                    "| {} {} | [{}]({}) | {} | {} |",
                    &stamp[..10],
                    &stamp[11..16],
                    markdown(&p.name),
                    links::pulse_page(otx_url, &p.id),
                    markdown(&p.author),
                    p.indicators
                ));
            }
            tile_data.data = Value::Array(lines.into_iter().map(Value::String).collect());
        }
        _ => {
            // Pulses per family (one count per pulse, names compared
            // without case; the first spelling seen is shown).
            let mut families: HashMap<String, (String, u64)> = HashMap::new();
            for (_, p) in &pulses {
                let mut seen = BTreeSet::new();
                for name in &p.malware {
                    let key = name.to_lowercase();
                    if seen.insert(key.clone()) {
                        families.entry(key).or_insert_with(|| (name.clone(), 0)).1 += 1;
                    }
                }
            }
            let mut ranked: Vec<(String, u64)> = families.into_values().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let other: u64 = ranked.iter().skip(5).map(|(_, n)| n).sum();
            ranked.truncate(5);
            if other > 0 {
                ranked.push(("Other".to_owned(), other));
            }
            let names: Vec<&str> = ranked.iter().map(|(name, _)| name.as_str()).collect();
            tile_data.labels = Some(serde_json::json!([names]));
            tile_data.data = Value::Array(
                ranked
                    .iter()
                    .enumerate()
                    .map(|(i, (_, n))| serde_json::json!({"key": i, "value": n}))
                    .collect(),
            );
        }
    }
    tile_data
}

/// OTX text made safe inside a markdown table cell: line breaks become
/// spaces, and `|`, `[`, `]`, `\` and backquotes are escaped.
fn markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' | '\n' | '\u{2028}' | '\u{2029}' => out.push(' '),
            '|' | '[' | ']' | '\\' | '`' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_end_now_and_their_bars_overlap_them() {
        // 2026-11-30T14:20:00Z.
        let now = 1_796_047_200 + 20 * 60;
        for (period, start, first_bar, step, bars) in [
            (
                "last_24_hours",
                "2026-11-29T14:20:00.000Z",
                "2026-11-29T14:00:00.000Z",
                3600,
                25,
            ),
            (
                "last_7_days",
                "2026-11-23T14:20:00.000Z",
                "2026-11-23T00:00:00.000Z",
                86_400,
                8,
            ),
            (
                "last_30_days",
                "2026-10-31T14:20:00.000Z",
                "2026-10-31T00:00:00.000Z",
                86_400,
                31,
            ),
        ] {
            let span = Span::new(period, now);
            assert_eq!(time(span.start), start, "{period}");
            assert_eq!(time(span.first_bar), first_bar, "{period}");
            assert_eq!((span.step, span.bars), (step, bars), "{period}");
            // The last bar holds `now`.
            assert_eq!(span.first_bar + (bars as u64 - 1) * step, now - now % step);
        }
        // On the very hour, the last bar starts at `now`: still 25.
        let on_the_hour = Span::new("last_24_hours", 1_796_047_200);
        assert_eq!(
            (on_the_hour.start, on_the_hour.bars),
            (1_796_047_200 - 86_400, 25)
        );
        assert_eq!(Span::new("last_7_days", 1_796_083_200).bars, 8);
    }

    /// A pulse `modified` at `at` (seconds).
    fn pulse(id: &str, at: u64) -> PulseSummary {
        PulseSummary {
            id: id.to_owned(),
            name: id.to_owned(),
            author: String::new(),
            adversary: String::new(),
            modified: time(at)[..19].to_owned(),
            indicators: 1,
            malware: Vec::new(),
        }
    }

    #[test]
    fn the_first_and_last_bars_are_partial() {
        // 2026-11-30T14:20:00Z; the period starts 2026-11-29T14:20:00Z.
        let now = 1_796_047_200 + 20 * 60;
        let start = now - 86_400;
        let walk = Walk {
            pulses: vec![
                pulse("before the period", start - 1),
                pulse("at its start", start),
                pulse("in the first hour", start + 39 * 60),
                pulse("in the last hour", now - 60),
                pulse("now", now),
            ],
            error: None,
            at: now,
        };
        let tile = find("otx-pulses-per-period").expect("a tile");
        let data = data(tile, "last_24_hours", &walk, "https://otx", Duration::ZERO);
        assert_eq!(data.observed_time.start_time, "2026-11-29T14:20:00.000Z");
        assert_eq!(data.observed_time.end_time, "2026-11-30T14:20:00.000Z");
        let bars = data.data.as_array().expect("bars");
        let counts: Vec<u64> = bars.iter().filter_map(|b| b["value"].as_u64()).collect();
        let mut want = vec![0; 25];
        (want[0], want[24]) = (2, 2);
        assert_eq!(counts, want);
        assert_eq!(bars[0]["label"], "14:00");
        assert_eq!(bars[24]["label"], "14:00");
        assert_eq!(bars[0]["key"], (start - 20 * 60) * 1000);
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        assert_eq!(
            markdown("a|b [c](d)\r\ne\\`f`\u{7}"),
            "a\\|b \\[c\\](d)  e\\\\\\`f\\`"
        );
    }
}
