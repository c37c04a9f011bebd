//! OTX's passive DNS of one observable
//! (`/api/v1/indicators/{section}/{value}/passive_dns`, SPEC §15), skimmed
//! as it streams in.
//!
//! A busy name or address has tens of thousands of records, and the answer
//! is never held whole: a serde visitor over the reader sees one record at
//! a time (as the tiles read subscribed pages), and [`Kept`] keeps what the
//! sighting needs of them in memory that does not grow with the answer:
//!
//! - the best `limit` relations so far by their merged `last` (newest
//!   first; one without a `last` ranks below any with one; among equals,
//!   the pair OTX listed first). A pair's merged `last` only grows as its
//!   records come in, so the best `limit` of the whole answer are exactly
//!   those left at the end: a pair pushed out ranked below `limit` others,
//!   and comes back only with a record that ranks it above the weakest.
//! - the earliest `first` and first position of the first [`SEEN_CAP`]
//!   distinct pairs met, so that a pair pushed out and met again, or first
//!   met in a record too old to be kept, still gets its earliest `first`
//!   (and its place among equals). Past that many distinct pairs, a pair
//!   met for the first time merges only the `first`s of the records seen
//!   while it is among the best: which relations are kept, and their
//!   order, stay exact; the sighting's `start_time` may then be later than
//!   OTX's earliest. That is the price of never growing with the answer;
//!   a real answer has far fewer distinct pairs.
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, BufReader, Read};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::cached::shared;
use super::page::Lenient;
use super::{kinds, status_error, Otx, Session, Trouble};
use crate::error::RelayError;
use crate::intel::{PassiveDns, Resolution};
use crate::observable::{quote_path, Kind, Observable};

impl Otx {
    /// `GET /api/v1/indicators/{section}/{value}/passive_dns`, cached like
    /// `/general` (SPEC §15): the resolutions kept, read as the answer
    /// streams in. No data (400/404) or an answer of another shape is no
    /// resolution; other statuses, transport failures, an answer that is
    /// not JSON and the deadline are errors, for the caller to log.
    pub fn passive_dns(
        &self,
        session: &Session,
        observable: &Observable,
    ) -> Result<Arc<PassiveDns>, RelayError> {
        let Some(section) = kinds::section(observable.kind) else {
            return Ok(Arc::default());
        };
        let url = format!(
            "{}/api/v1/indicators/{section}/{}/passive_dns",
            self.base,
            quote_path(&kinds::value(observable))
        );
        shared(self, &self.passive_dns, session, &url, || {
            let response = self.send(session, "passive_dns", &url)?;
            match response.status().as_u16() {
                200 => {
                    let reader = self.body_reader(response);
                    let reader = BufReader::with_capacity(64 * 1024, reader);
                    read_passive_dns(reader, self.passive_dns_limit)
                        .map(Arc::new)
                        .map_err(|e| self.transport_error(session, ureq::Error::from(e)))
                }
                400 | 404 => Ok(Arc::default()),
                status => Err(status_error(status)),
            }
        })
    }
}

/// Reads `answer` as a passive DNS answer for the fuzz target
/// `otx_passive_dns` (`fuzz/`); the reader itself stays private. `None`
/// when it was refused (not JSON).
#[doc(hidden)]
pub fn read_passive_dns_for_fuzz(answer: &[u8], limit: usize) -> Option<PassiveDns> {
    read_passive_dns(answer, limit).ok()
}

/// Logs a passive DNS lookup that failed (SPEC §15), at most a line a
/// minute: the observable's type and what went wrong, never its value; the
/// client is not told.
pub fn warn_passive_dns_failed(kind: Kind, error: &RelayError) {
    Trouble::PassiveDnsDropped.warn(format_args!(
        "a {} observable: {}",
        kind.type_name(),
        error.message()
    ));
}

/// The distinct (hostname, address) pairs whose earliest `first` is
/// remembered: about 1.5 MiB at most.
pub(super) const SEEN_CAP: usize = 10_000;

/// Reads a passive DNS answer, keeping at most `limit` relations (at least
/// one). Another shape of JSON (`[]`, `{"passive_dns": null}`, records
/// that are not objects) holds no records; I/O errors (a body over the
/// limit, a reset, a cut) come back as they are, and an answer that is not
/// JSON is an `InvalidData` error wrapping a `serde_json::Error`.
pub(super) fn read_passive_dns(reader: impl Read, limit: usize) -> io::Result<PassiveDns> {
    let mut kept = Kept::new(limit);
    let mut de = serde_json::Deserializer::from_reader(reader);
    Answer(&mut kept)
        .deserialize(&mut de)
        .map_err(io::Error::from)?;
    de.end().map_err(io::Error::from)?;
    Ok(kept.into_passive_dns())
}

type Pair = (String, String);

/// How good a relation is: its merged `last` (`None` is the worst), then
/// the earlier position in OTX's list. The greatest rank is the best.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    last: Option<String>,
    position: Reverse<u64>,
}

struct Entry {
    first: Option<String>,
    rank: Rank,
    ipv6: bool,
}

struct Seen {
    first: Option<String>,
    position: u64,
}

/// What is kept of the records read so far (see the module's doc).
pub(super) struct Kept {
    limit: usize,
    best: HashMap<Pair, Entry>,
    /// The ranks of `best`, weakest first.
    ranks: BTreeMap<Rank, Pair>,
    seen: HashMap<Pair, Seen>,
    records: u64,
}

/// `slot` becomes the earlier of itself and `time` (OTX writes its times
/// alike, so the text's order is the time's).
fn earliest(slot: &mut Option<String>, time: Option<String>) {
    if let Some(time) = time {
        if slot.as_ref().is_none_or(|t| time < *t) {
            *slot = Some(time);
        }
    }
}

impl Kept {
    pub(super) fn new(limit: usize) -> Kept {
        Kept {
            limit: limit.max(1),
            best: HashMap::new(),
            ranks: BTreeMap::new(),
            seen: HashMap::new(),
            records: 0,
        }
    }

    /// One record, as OTX listed it (empty times already `None`). Kept
    /// only when it is an `A` record of an IPv4 address or an `AAAA`
    /// record of an IPv6 one, with a non-empty hostname.
    pub(super) fn offer(
        &mut self,
        hostname: String,
        address: String,
        record_type: &str,
        first: Option<String>,
        last: Option<String>,
    ) {
        let position = self.records;
        self.records += 1;
        let ipv6 = match record_type {
            "A" if address.parse::<Ipv4Addr>().is_ok() => false,
            "AAAA" if address.parse::<Ipv6Addr>().is_ok() => true,
            _ => return,
        };
        if hostname.is_empty() {
            return;
        }
        let pair = (hostname, address);
        let (first, position) = match self.seen.get_mut(&pair) {
            Some(seen) => {
                earliest(&mut seen.first, first);
                (seen.first.clone(), seen.position)
            }
            None => {
                if self.seen.len() < SEEN_CAP {
                    let seen = Seen {
                        first: first.clone(),
                        position,
                    };
                    self.seen.insert(pair.clone(), seen);
                }
                (first, position)
            }
        };
        if let Some(entry) = self.best.get_mut(&pair) {
            earliest(&mut entry.first, first);
            if last > entry.rank.last {
                let newer = Rank {
                    last,
                    position: entry.rank.position,
                };
                self.ranks.remove(&entry.rank);
                self.ranks.insert(newer.clone(), pair);
                entry.rank = newer;
            }
            return;
        }
        let rank = Rank {
            last,
            position: Reverse(position),
        };
        if self.best.len() >= self.limit {
            match self.ranks.first_key_value() {
                Some((weakest, _)) if rank > *weakest => {}
                _ => return,
            }
            if let Some((_, out)) = self.ranks.pop_first() {
                self.best.remove(&out);
            }
        }
        self.ranks.insert(rank.clone(), pair.clone());
        self.best.insert(pair, Entry { first, rank, ipv6 });
    }

    /// The relations kept, best first.
    pub(super) fn into_passive_dns(mut self) -> PassiveDns {
        let resolutions = self
            .ranks
            .into_iter()
            .rev()
            .filter_map(|(_, pair)| {
                let entry = self.best.remove(&pair)?;
                let (hostname, address) = pair;
                Some(Resolution {
                    hostname,
                    address,
                    ipv6: entry.ipv6,
                    first: entry.first,
                    last: entry.rank.last,
                })
            })
            .collect();
        PassiveDns { resolutions }
    }
}

/// The visits of scalars, for a visitor to which anything but the shape it
/// looks for means nothing.
macro_rules! scalars_mean_nothing {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum AnswerField {
    PassiveDns,
    #[serde(other)]
    Other,
}

/// The whole answer: `{"passive_dns": [...], "count": n, …}`.
struct Answer<'a>(&'a mut Kept);

impl<'de> DeserializeSeed<'de> for Answer<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Answer<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a passive DNS answer")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(field) = map.next_key::<AnswerField>()? {
            match field {
                AnswerField::PassiveDns => map.next_value_seed(Records(&mut *self.0))?,
                AnswerField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    scalars_mean_nothing!();
}

/// The `passive_dns` list, each record offered as it is read.
struct Records<'a>(&'a mut Kept);

impl<'de> DeserializeSeed<'de> for Records<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Records<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of passive DNS records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Record(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    scalars_mean_nothing!();
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum RecordField {
    Address,
    Hostname,
    RecordType,
    First,
    Last,
    #[serde(other)]
    Other,
}

/// One record; fields of another type count as absent.
struct Record<'a>(&'a mut Kept);

impl<'de> DeserializeSeed<'de> for Record<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Record<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a passive DNS record")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut address, mut hostname, mut record_type) = (None, None, None);
        let (mut first, mut last) = (None, None);
        while let Some(field) = map.next_key::<RecordField>()? {
            let slot = match field {
                RecordField::Address => &mut address,
                RecordField::Hostname => &mut hostname,
                RecordField::RecordType => &mut record_type,
                RecordField::First => &mut first,
                RecordField::Last => &mut last,
                RecordField::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = match map.next_value::<Lenient>()? {
                Lenient::Text(text) if !text.is_empty() => Some(text),
                _ => None,
            };
        }
        if let (Some(hostname), Some(address), Some(record_type)) = (hostname, address, record_type)
        {
            self.0.offer(hostname, address, &record_type, first, last);
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    scalars_mean_nothing!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn read(answer: &Value, limit: usize) -> PassiveDns {
        read_passive_dns(answer.to_string().as_bytes(), limit).expect("an answer")
    }

    fn record(hostname: &str, address: &str, kind: &str, first: &str, last: &str) -> Value {
        json!({"address": address, "first": first, "last": last, "hostname": hostname,
               "record_type": kind, "indicator_link": format!("/indicator/hostname/{hostname}"),
               "flag_url": "", "flag_title": "", "asset_type": "hostname", "asn": null})
    }

    /// A relation as kept.
    fn row(h: &str, a: &str, ipv6: bool, first: Option<&str>, last: Option<&str>) -> Resolution {
        let text = |t: Option<&str>| t.map(str::to_owned);
        Resolution {
            hostname: h.to_owned(),
            address: a.to_owned(),
            ipv6,
            first: text(first),
            last: text(last),
        }
    }

    #[test]
    fn kept_and_skipped_records() {
        let answer = json!({"passive_dns": [
            record("a.example", "192.0.2.1", "A", "2021-01-01T00:00:00", "2021-01-02T00:00:00"),
            record("b.example", "2001:db8::1", "AAAA", "2021-01-01T00:00:00", "2021-01-03T00:00:00"),
            record("c.example", "a.example", "CNAME", "2021-01-01T00:00:00", "2021-01-09T00:00:00"),
            record("d.example", "192.0.2.4", "AAAA", "2021-01-01T00:00:00", "2021-01-09T00:00:00"),
            record("e.example", "2001:db8::5", "A", "2021-01-01T00:00:00", "2021-01-09T00:00:00"),
            record("f.example", "NXDOMAIN", "A", "2021-01-01T00:00:00", "2021-01-09T00:00:00"),
            record("", "192.0.2.7", "A", "2021-01-01T00:00:00", "2021-01-09T00:00:00"),
            record("h.example", "192.0.2.8", "a", "2021-01-01T00:00:00", "2021-01-09T00:00:00"),
            {"address": "192.0.2.9", "record_type": "A", "last": "2021-01-09T00:00:00"},
            {"hostname": 5, "address": "192.0.2.10", "record_type": "A"},
            "junk", 7, null, [record("i.example", "192.0.2.11", "A", "x", "y")],
            {"hostname": "j.example", "address": "192.0.2.12", "record_type": "A"},
            {"hostname": "k.example", "address": "192.0.2.13", "record_type": "A", "first": "", "last": 3},
        ], "count": 14});
        assert_eq!(
            read(&answer, 50).resolutions,
            [
                row(
                    "b.example",
                    "2001:db8::1",
                    true,
                    Some("2021-01-01T00:00:00"),
                    Some("2021-01-03T00:00:00")
                ),
                row(
                    "a.example",
                    "192.0.2.1",
                    false,
                    Some("2021-01-01T00:00:00"),
                    Some("2021-01-02T00:00:00")
                ),
                row("j.example", "192.0.2.12", false, None, None),
                row("k.example", "192.0.2.13", false, None, None),
            ]
        );
    }

    #[test]
    fn duplicates_merge_and_the_newest_come_first_up_to_the_limit() {
        let answer = json!({"passive_dns": [
            record("a.example", "192.0.2.1", "A", "2021-03-01T00:00:00", "2021-03-02T00:00:00"),
            record("b.example", "192.0.2.2", "A", "2021-01-01T00:00:00", "2021-05-01T00:00:00"),
            record("a.example", "192.0.2.1", "A", "2021-02-01T00:00:00", "2021-02-02T00:00:00"),
            record("a.example", "192.0.2.1", "A", "2021-04-01T00:00:00", "2021-06-01T00:00:00"),
            {"hostname": "c.example", "address": "192.0.2.3", "record_type": "A", "first": "2020-01-01T00:00:00"},
            record("d.example", "192.0.2.4", "A", "2021-01-01T00:00:00", "2021-05-01T00:00:00"),
            // Another address of a known name is another relation.
            record("a.example", "192.0.2.9", "A", "2021-01-01T00:00:00", "2021-01-01T00:00:00"),
        ]});
        let all = [
            row(
                "a.example",
                "192.0.2.1",
                false,
                Some("2021-02-01T00:00:00"),
                Some("2021-06-01T00:00:00"),
            ),
            // Equal `last`: OTX's order.
            row(
                "b.example",
                "192.0.2.2",
                false,
                Some("2021-01-01T00:00:00"),
                Some("2021-05-01T00:00:00"),
            ),
            row(
                "d.example",
                "192.0.2.4",
                false,
                Some("2021-01-01T00:00:00"),
                Some("2021-05-01T00:00:00"),
            ),
            row(
                "a.example",
                "192.0.2.9",
                false,
                Some("2021-01-01T00:00:00"),
                Some("2021-01-01T00:00:00"),
            ),
            // No `last`: last.
            row(
                "c.example",
                "192.0.2.3",
                false,
                Some("2020-01-01T00:00:00"),
                None,
            ),
        ];
        assert_eq!(read(&answer, 50).resolutions, all);
        for limit in 1..=5 {
            assert_eq!(
                read(&answer, limit).resolutions,
                all[..limit],
                "limit {limit}"
            );
        }
    }

    #[test]
    fn a_pair_pushed_out_or_first_met_too_old_keeps_its_earliest_first() {
        // Limit 1. a.example is pushed out by b.example, then comes back
        // with the newest `last`: the `first` of its record read while it
        // was out still counts.
        let answer = json!({"passive_dns": [
            record("a.example", "192.0.2.1", "A", "2018-01-01T00:00:00", "2019-01-02T00:00:00"),
            record("b.example", "192.0.2.2", "A", "2020-01-01T00:00:00", "2020-01-02T00:00:00"),
            record("a.example", "192.0.2.1", "A", "2021-01-01T00:00:00", "2021-01-02T00:00:00"),
        ]});
        let a = |first| {
            row(
                "a.example",
                "192.0.2.1",
                false,
                Some(first),
                Some("2021-01-02T00:00:00"),
            )
        };
        assert_eq!(read(&answer, 1).resolutions, [a("2018-01-01T00:00:00")]);
        // c.example is first met in a record too old to be kept, then in
        // the newest one.
        let answer = json!({"passive_dns": [
            record("b.example", "192.0.2.2", "A", "2020-01-01T00:00:00", "2020-01-02T00:00:00"),
            record("c.example", "192.0.2.3", "A", "2017-01-01T00:00:00", "2017-01-02T00:00:00"),
            record("c.example", "192.0.2.3", "A", "2022-01-01T00:00:00", "2022-01-02T00:00:00"),
        ]});
        assert_eq!(
            read(&answer, 1).resolutions,
            [row(
                "c.example",
                "192.0.2.3",
                false,
                Some("2017-01-01T00:00:00"),
                Some("2022-01-02T00:00:00")
            )]
        );
        // Past SEEN_CAP distinct pairs, a pair first met too old is not
        // remembered: only the records read while it is kept count.
        let mut kept = Kept::new(1);
        let filler = |i: u32| std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
        for i in 0..SEEN_CAP as u32 {
            kept.offer(
                format!("f{i}.example"),
                filler(i),
                "A",
                None,
                Some("2020-01-01T00:00:00".into()),
            );
        }
        let c = |first: &str, last: &str| (first.to_owned(), Some(last.to_owned()));
        for (first, last) in [
            c("2017-01-01T00:00:00", "2017-01-02T00:00:00"),
            c("2022-01-01T00:00:00", "2022-01-02T00:00:00"),
        ] {
            kept.offer(
                "c.example".into(),
                "192.0.2.3".into(),
                "A",
                Some(first),
                last,
            );
        }
        assert_eq!(
            kept.into_passive_dns().resolutions,
            [row(
                "c.example",
                "192.0.2.3",
                false,
                Some("2022-01-01T00:00:00"),
                Some("2022-01-02T00:00:00")
            )]
        );
    }

    #[test]
    fn memory_stays_bounded_however_many_distinct_pairs() {
        let mut kept = Kept::new(50);
        for i in 0..(SEEN_CAP as u32 * 3) {
            let address = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            let last = format!("2021-01-01T00:00:{:02}.{i:06}", i % 60);
            kept.offer(format!("h{i}.example"), address, "A", None, Some(last));
        }
        assert_eq!((kept.best.len(), kept.ranks.len()), (50, 50));
        assert_eq!(kept.seen.len(), SEEN_CAP);
        let dns = kept.into_passive_dns();
        assert_eq!(dns.resolutions.len(), 50);
        let lasts: Vec<_> = dns.resolutions.iter().map(|r| r.last.clone()).collect();
        let mut sorted = lasts.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(lasts, sorted, "newest first");
        assert_eq!(
            dns.resolutions[0].last.as_deref(),
            Some("2021-01-01T00:00:59.029999")
        );
    }

    #[test]
    fn other_shapes_hold_no_records_and_non_json_is_an_error() {
        for answer in [
            json!([]),
            json!({}),
            json!({"passive_dns": null}),
            json!({"passive_dns": "x"}),
            json!({"passive_dns": {"hostname": "a.example"}}),
            json!({"detail": "Not found."}),
            json!("text"),
            json!(null),
            json!({"passive_dns": [], "count": 0}),
        ] {
            assert_eq!(read(&answer, 50), PassiveDns::default(), "{answer}");
        }
        for bad in [
            &b""[..],
            b"{",
            b"{\"passive_dns\": [",
            b"nope",
            b"{} x",
            b"{\"passive_dns\": [1,]}",
        ] {
            let e = read_passive_dns(bad, 50).expect_err("refused");
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ),
                "{e}"
            );
        }
    }

    #[test]
    fn an_answer_read_in_tiny_slices_reads_the_same() {
        let answer = json!({"count": 2, "passive_dns": [
            record("a.example", "192.0.2.1", "A", "2021-01-01T00:00:00", "2021-01-02T00:00:00"),
            record("b.example", "2001:db8::1", "AAAA", "2021-01-01T00:00:00", "2021-01-03T00:00:00"),
        ]})
        .to_string();
        let tiny = io::BufReader::with_capacity(1, answer.as_bytes());
        assert_eq!(
            read_passive_dns(tiny, 50).expect("an answer"),
            read_passive_dns(answer.as_bytes(), 50).expect("an answer")
        );
    }

    #[test]
    fn the_sample_answer_reads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/otx/passive-dns-domain.json"
        );
        let body = std::fs::read(path).expect("the sample");
        let dns = read_passive_dns(&body[..], 50).expect("an answer");
        assert!(!dns.resolutions.is_empty());
        assert!(dns.resolutions.iter().all(|r| !r.hostname.is_empty()));
    }
}
