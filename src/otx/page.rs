//! One page of a pulse's indicators (`/api/v1/pulses/{id}/indicators`),
//! scanned as it streams in, for the one record of one observable.
//!
//! A popular pulse lists thousands of records per page, so this is the
//! relay's hot loop. The page is read in buffer-sized slices; a small state
//! machine (strings, escapes, nesting depth) finds the top-level keys and
//! the bounds of each element of `results`. An element is parsed (with
//! `serde_json`, from its bytes) only if it can be the observable's record:
//! one with no escape in it must contain the value's bytes literally.
//! Memory per scan is one buffer and one element, whatever the page size;
//! once the record is found the rest of the page is drained unparsed, so
//! the connection can be reused.

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, Read};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::cached::shared;
use super::{kinds, status_error, warn_dropped_pulse_status, Otx, Session};
use crate::error::RelayError;
use crate::intel::Record;
use crate::observable::{quote_path, Observable};

/// Records per pulse-indicator page. Pages are streamed, so memory does not
/// grow with it; a large page saves round trips on big pulses (OTX's own
/// maximum is 10 000, its default 10).
pub const PAGE_SIZE: u32 = 5000;
/// The most pages read for one pulse.
pub const MAX_PAGES: u32 = 100;

impl Otx {
    /// The pulse's own record of `observable`, paging through the pulse's
    /// indicators newest first; `None` when the pulse does not list it.
    pub fn find_record(
        &self,
        session: &Session,
        pulse_id: &str,
        observable: &Observable,
    ) -> Result<Option<Record>, RelayError> {
        let path = format!(
            "{}/api/v1/pulses/{}/indicators",
            self.base,
            quote_path(pulse_id)
        );
        // The kind is part of the key: records match exactly for some kinds
        // and ignoring ASCII case for others, so the same value under two
        // kinds may find different records.
        let key = format!(
            "{path}#{}#{}",
            observable.kind.type_name(),
            kinds::value(observable)
        );
        shared(self, &self.records, session, &key, || {
            for page in 1..=MAX_PAGES {
                let url = format!("{path}?sort=-created&limit={PAGE_SIZE}&page={page}");
                let response = self.send(session, "pulse_indicators", &url)?;
                let status = response.status().as_u16();
                match status {
                    200 => {}
                    400 | 404 => {
                        // The pulse is dropped without telling the client,
                        // but the operator is told (SPEC §4).
                        warn_dropped_pulse_status(pulse_id, status);
                        return Ok(None);
                    }
                    _ => return Err(status_error(status)),
                }
                let reader = self.body_reader(response);
                let outcome = scan_page(Buffered::new(reader), observable)
                    .map_err(|e| self.transport_error(session, ureq::Error::from(e)))?;
                match outcome {
                    Scan::Found(record) => return Ok(record),
                    Scan::NotHere { more: true } => continue,
                    Scan::NotHere { more: false } => return Ok(None),
                }
            }
            Ok(None)
        })
    }
}

/// Runs the page scan over `page` for the fuzz target `otx_page` (`fuzz/`);
/// the scan itself stays private. True when `page` was read as a page (the
/// record found or not), false when it was refused.
#[doc(hidden)]
pub fn scan_page_for_fuzz(page: &[u8], observable: &Observable) -> bool {
    scan_page(page, observable).is_ok()
}

/// The outcome of one page.
#[derive(Debug, PartialEq)]
pub(super) enum Scan {
    /// The observable's record (`None` when it has no `created`).
    Found(Option<Record>),
    /// Not on this page; `more` when `next` is set.
    NotHere { more: bool },
}

/// Scans one page. I/O errors (a body over the limit, a reset, a cut) come
/// back as they are; a page that is not JSON of the page's shape is an
/// `InvalidData` error wrapping a `serde_json::Error`.
pub(super) fn scan_page(mut page: impl BufRead, observable: &Observable) -> io::Result<Scan> {
    let needle = super::kinds::value(observable).into_bytes();
    let case_insensitive = super::kinds::case_insensitive(observable.kind);
    let mut element = Vec::new();
    let mut more = false;
    let mut results_seen = false;

    expect(&mut page, b'{')?;
    if peek(&mut page)? == b'}' {
        page.consume(1);
        return finish(&mut page, Scan::NotHere { more });
    }
    loop {
        let key = key(&mut page)?;
        match key.as_slice() {
            b"results" if !results_seen && peek(&mut page)? == b'[' => {
                results_seen = true;
                page.consume(1);
                if peek(&mut page)? == b']' {
                    page.consume(1);
                } else {
                    loop {
                        element.clear();
                        let escaped = value(&mut page, Some(&mut element))?;
                        let candidate = escaped || contains(&element, &needle, case_insensitive);
                        if candidate {
                            if let Some(record) = parse_element(&element, observable)? {
                                // Drain, unparsed: only the connection wants the rest.
                                drain(&mut page)?;
                                return Ok(Scan::Found(record));
                            }
                        }
                        match next_byte(&mut page)? {
                            b',' => continue,
                            b']' => break,
                            other => {
                                return Err(malformed(format!("'{}' in results", other as char)))
                            }
                        }
                    }
                }
            }
            b"next" => {
                element.clear();
                value(&mut page, Some(&mut element))?;
                more = element.trim_ascii() != b"null";
            }
            _ => {
                value(&mut page, None)?;
            }
        }
        match next_byte(&mut page)? {
            b',' => continue,
            b'}' => return finish(&mut page, Scan::NotHere { more }),
            other => return Err(malformed(format!("'{}' after a value", other as char))),
        }
    }
}

/// Reads the rest of `page` and drops it, in place.
fn drain(page: &mut impl BufRead) -> io::Result<()> {
    loop {
        let n = page.fill_buf()?.len();
        if n == 0 {
            return Ok(());
        }
        page.consume(n);
    }
}

/// Bytes of a page read at a time. ureq hands over at most its input
/// buffer (16 KiB, `egress`) per read; each pool thread keeps one of these
/// (zeroed, so resident), and a smaller one costs only more of those
/// in-memory reads.
const BUFFER: usize = 8 * 1024;

thread_local! {
    /// The buffer of the thread's last page, kept for its next.
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A page read through the thread's own buffer: a `BufReader` per page
/// cost an allocation of its buffer, zeroed on its first fill (std zeroes
/// what a plain `Read` is to fill) and freed again, twenty times per cold
/// `/observe` (a quarter of the relay's instructions for it, by callgrind).
pub(super) struct Buffered<R> {
    inner: R,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: Read> Buffered<R> {
    pub(super) fn new(inner: R) -> Buffered<R> {
        let mut buffer = SPARE.try_with(Cell::take).unwrap_or_default();
        if buffer.len() != BUFFER {
            buffer = vec![0; BUFFER];
        }
        Buffered {
            inner,
            buffer,
            start: 0,
            end: 0,
        }
    }
}

impl<R> Drop for Buffered<R> {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        // The thread may be ending: then the buffer just goes.
        let _ = SPARE.try_with(|spare| spare.set(buffer));
    }
}

impl<R: Read> Read for Buffered<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Buffered<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.end = self.inner.read(&mut self.buffer)?;
            self.start = 0;
        }
        Ok(&self.buffer[self.start..self.end])
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }
}

/// After the page's object only white space may follow.
fn finish(page: &mut impl BufRead, scan: Scan) -> io::Result<Scan> {
    loop {
        let buf = page.fill_buf()?;
        if buf.is_empty() {
            return Ok(scan);
        }
        if let Some(b) = buf.iter().find(|b| !b.is_ascii_whitespace()) {
            return Err(malformed(format!("'{}' after the page", *b as char)));
        }
        let n = buf.len();
        page.consume(n);
    }
}

fn malformed(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        <serde_json::Error as de::Error>::custom(format!("not a page of pulse indicators: {what}")),
    )
}

fn cut_short() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the page is cut short")
}

/// The next byte that is not white space, not consumed.
fn peek(page: &mut impl BufRead) -> io::Result<u8> {
    loop {
        let buf = page.fill_buf()?;
        if buf.is_empty() {
            return Err(cut_short());
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let b = buf[i];
                page.consume(i);
                return Ok(b);
            }
            None => {
                let n = buf.len();
                page.consume(n);
            }
        }
    }
}

/// The next byte that is not white space, consumed.
fn next_byte(page: &mut impl BufRead) -> io::Result<u8> {
    let b = peek(page)?;
    page.consume(1);
    Ok(b)
}

fn expect(page: &mut impl BufRead, want: u8) -> io::Result<()> {
    match next_byte(page)? {
        b if b == want => Ok(()),
        other => Err(malformed(format!(
            "'{}' where '{}' was expected",
            other as char, want as char
        ))),
    }
}

/// A top-level key and its `:`. Its raw bytes: a key with escapes in it is
/// none of the two the scan looks for.
fn key(page: &mut impl BufRead) -> io::Result<Vec<u8>> {
    expect(page, b'"')?;
    let mut key = Vec::new();
    let mut escaped = false;
    loop {
        let buf = page.fill_buf()?;
        if buf.is_empty() {
            return Err(cut_short());
        }
        for (i, &b) in buf.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                key.extend_from_slice(&buf[..i]);
                page.consume(i + 1);
                expect(page, b':')?;
                return Ok(key);
            }
        }
        key.extend_from_slice(buf);
        let n = buf.len();
        page.consume(n);
        if key.len() > 1024 {
            return Err(malformed("a key over 1 KiB".to_owned()));
        }
    }
}

/// Reads one JSON value, up to (not including) the `,`, `]` or `}` that
/// ends it, into `out` when given. Returns whether a string in it holds an
/// escape. Only the structure is checked here: an element that matters is
/// parsed in full afterwards.
fn value(page: &mut impl BufRead, mut out: Option<&mut Vec<u8>>) -> io::Result<bool> {
    let (mut depth, mut in_string, mut escape, mut has_escape) = (0u32, false, false, false);
    let mut started = false;
    loop {
        let buf = page.fill_buf()?;
        if buf.is_empty() {
            return Err(cut_short());
        }
        let mut end = None;
        let mut i = 0;
        while i < buf.len() {
            if in_string {
                if escape {
                    escape = false;
                    i += 1;
                    continue;
                }
                // Most of a page is string content: jump to its next quote
                // or backslash.
                match buf[i..].iter().position(|&c| c == b'"' || c == b'\\') {
                    None => i = buf.len(),
                    Some(k) => {
                        i += k;
                        if buf[i] == b'\\' {
                            escape = true;
                            has_escape = true;
                        } else {
                            in_string = false;
                        }
                        i += 1;
                    }
                }
                continue;
            }
            let b = buf[i];
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => depth -= 1,
                b',' | b'}' | b']' if depth == 0 => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
            started |= !b.is_ascii_whitespace();
            i += 1;
        }
        let n = end.unwrap_or(buf.len());
        if let Some(out) = out.as_deref_mut() {
            out.extend_from_slice(&buf[..n]);
        }
        page.consume(n);
        if end.is_some() {
            return if started {
                Ok(has_escape)
            } else {
                Err(malformed("a missing value".to_owned()))
            };
        }
    }
}

/// Whether `haystack` holds `needle` (ignoring ASCII case when asked).
fn contains(haystack: &[u8], needle: &[u8], case_insensitive: bool) -> bool {
    if needle.is_empty() || haystack.len() < needle.len() {
        return needle.is_empty();
    }
    let first = needle[0];
    let windows = haystack.windows(needle.len());
    if case_insensitive {
        let first = first.to_ascii_lowercase();
        windows
            .filter(|w| w[0].to_ascii_lowercase() == first)
            .any(|w| w.eq_ignore_ascii_case(needle))
    } else {
        windows.filter(|w| w[0] == first).any(|w| w == needle)
    }
}

/// Parses one element: `Some(record)` when it is the observable's.
fn parse_element(bytes: &[u8], observable: &Observable) -> io::Result<Option<Option<Record>>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    RecordSeed { observable }
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// One element of `results`. It is read without allocating unless it is the
/// observable's record: `indicator` is compared in the parser's buffer, and
/// `created` / `expiration` are kept only while the element may still match
/// (OTX lists `indicator` first, so in practice only for the match).
/// Elements that are not objects, and fields of an unexpected type, count as
/// absent.
struct RecordSeed<'a> {
    observable: &'a Observable,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(field_identifier, rename_all = "lowercase")]
enum RecordField {
    Indicator,
    Created,
    Expiration,
    #[serde(other)]
    Other,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    /// `Some(record)` when this element is the observable's record (the
    /// record is `None` when it has no `created`).
    type Value = Option<Option<Record>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = Option<Option<Record>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a record")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // None until `indicator` is read, then whether it matched.
        let mut matched: Option<bool> = None;
        let (mut created, mut expiration) = (None, None);
        while let Some(field) = map.next_key::<RecordField>()? {
            match field {
                RecordField::Indicator => {
                    matched = Some(map.next_value_seed(Matches(self.observable))?);
                }
                RecordField::Created | RecordField::Expiration if matched != Some(false) => {
                    let text = match map.next_value::<Lenient>()? {
                        Lenient::Text(t) => Some(t),
                        Lenient::Other => None,
                    };
                    if field == RecordField::Created {
                        created = text;
                    } else {
                        expiration = text;
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((matched == Some(true)).then(|| {
            created.map(|created| Record {
                created,
                expiration,
            })
        }))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Whether a JSON value is a string naming the observable.
struct Matches<'a>(&'a Observable);

impl<'de> DeserializeSeed<'de> for Matches<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Matches<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an indicator")
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(super::kinds::matches(self.0, v))
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// A string, or anything else (which is dropped). Also what the passive
/// DNS reader takes of a record's fields.
pub(super) enum Lenient {
    Text(String),
    Other,
}

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient::Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Lenient::Text(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Lenient::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Lenient::Other)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(t: &str, v: &str) -> Observable {
        Observable::new(crate::observable::Kind::from_type(t).expect("a kind"), v)
    }

    fn scan(body: &str, o: &Observable) -> Result<Scan, String> {
        scan_page(body.as_bytes(), o).map_err(|e| e.to_string())
    }

    #[test]
    fn scan_finds_and_reports_next() {
        let page = r#"{"count": 3, "results": [
            {"indicator": "a.com", "created": "2020-01-01T00:00:00"},
            {"indicator": "B.com", "created": "2020-01-02T00:00:00", "expiration": "2021-01-01T00:00:00"},
            {"indicator": "c.com", "created": 5}], "next": "https://x/page=2"}"#;
        assert_eq!(
            scan(page, &obs("domain", "b.COM")),
            Ok(Scan::Found(Some(Record {
                created: "2020-01-02T00:00:00".into(),
                expiration: Some("2021-01-01T00:00:00".into())
            })))
        );
        assert_eq!(
            scan(page, &obs("domain", "zzz.com")),
            Ok(Scan::NotHere { more: true })
        );
        assert_eq!(scan(page, &obs("domain", "c.com")), Ok(Scan::Found(None)));
        assert_eq!(
            scan(page, &obs("url", "B.COM")),
            Ok(Scan::NotHere { more: true })
        );
    }

    #[test]
    fn scan_tolerates_odd_shapes() {
        let o = obs("ip", "1.1.1.1");
        assert_eq!(
            scan(r#"{"results": null, "next": null}"#, &o),
            Ok(Scan::NotHere { more: false })
        );
        assert_eq!(
            scan(
                r#"{"results": [1, "x", [], {"indicator": 3}, {"indicator": "1.1.1.1", "created": "t", "expiration": 2.0}]}"#,
                &o
            ),
            Ok(Scan::Found(Some(Record {
                created: "t".into(),
                expiration: None
            })))
        );
        assert!(scan(r#"{"results": [{"indicator": "1.1.1.1""#, &o).is_err());
        assert!(scan("[]", &o).is_err());
    }

    #[test]
    fn samples_scan() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/otx/");
        for (file, value, more) in [
            ("pulse-indicators-page1.json", "nope.example", true),
            ("pulse-indicators-page2.json", "nope.example", false),
            (
                "pulse-indicators-recorded-single-page.json",
                "nope.example",
                false,
            ),
        ] {
            let body = std::fs::read_to_string(format!("{dir}{file}")).expect(file);
            assert_eq!(
                scan(&body, &obs("domain", value)),
                Ok(Scan::NotHere { more }),
                "{file}"
            );
        }
        let body = std::fs::read_to_string(format!("{dir}pulse-indicators-page1.json")).unwrap();
        assert!(matches!(
            scan(&body, &obs("domain", "webserver.servehttp.com")),
            Ok(Scan::Found(Some(_)))
        ));
    }

    #[test]
    fn escapes_and_brackets_inside_strings_do_not_confuse_the_split() {
        let o = obs("domain", "a.com");
        // The indicator written with an escape: found by a full parse.
        let page = r#"{"next": "x", "results": [
            {"indicator": "b.com", "description": "a ] } , [ { \" tricky"},
            {"indicator": "a\u002ecom", "created": "2020-01-01T00:00:00"}]}"#;
        assert_eq!(
            scan(page, &o),
            Ok(Scan::Found(Some(Record {
                created: "2020-01-01T00:00:00".into(),
                expiration: None
            })))
        );
        // The value inside another field does not make a match.
        let page = r#"{"results": [{"indicator": "b.com", "title": "a.com"}], "next": null}"#;
        assert_eq!(scan(page, &o), Ok(Scan::NotHere { more: false }));
        assert_eq!(scan("{ }", &o), Ok(Scan::NotHere { more: false }));
        assert_eq!(
            scan(r#"{"results": []}"#, &o),
            Ok(Scan::NotHere { more: false })
        );
    }

    #[test]
    fn malformed_pages_are_errors_not_panics() {
        let o = obs("ip", "1.1.1.1");
        for page in [
            "",
            "{",
            "{\"results\": [",
            "{\"results\": [1,]}",
            "{\"a\" 1}",
            "{\"a\": }",
            "{\"a\": 1} x",
            "{1: 2}",
            "{\"results\": [{\"indicator\": \"1.1.1.1\",}]}",
        ] {
            assert!(scan(page, &o).is_err(), "{page:?}");
        }
        // Inside an element that cannot be the record only the structure is
        // checked: what it holds is skipped unread.
        assert_eq!(
            scan("{\"results\": [1 2]}", &o),
            Ok(Scan::NotHere { more: false })
        );
    }

    #[test]
    fn pages_read_through_the_threads_buffer_scan_the_same() {
        let o = obs("domain", "y.com");
        let filler = format!("{{\"indicator\": \"{}\"}}, ", "x".repeat(1000)).repeat(100);
        let page = format!(
            r#"{{"results": [{filler}{{"indicator": "y.com", "created": "2"}}], "next": null}}"#
        );
        assert!(page.len() > 3 * BUFFER);
        for _ in 0..3 {
            let mut reader = Buffered::new(page.as_bytes());
            assert_eq!(
                scan_page(&mut reader, &o).map_err(|e| e.to_string()),
                Ok(Scan::Found(Some(Record {
                    created: "2".into(),
                    expiration: None
                })))
            );
            assert_eq!(reader.fill_buf().map(<[u8]>::len).ok(), Some(0), "drained");
        }
        let mut reader = Buffered::new(&b"abc"[..]);
        let mut out = [0; 2];
        assert_eq!(reader.read(&mut out).ok(), Some(2));
        assert_eq!(reader.fill_buf().ok(), Some(&b"c"[..]));
    }

    #[test]
    fn a_page_read_in_tiny_slices_scans_the_same() {
        // BufReader of capacity 1: every state crosses a slice boundary.
        let page = r#"{"count": 2, "results": [{"indicator": "x.com", "created": "1"}, {"indicator": "y.COM", "created": "2", "expiration": "3"}], "next": null}"#;
        let reader = std::io::BufReader::with_capacity(1, page.as_bytes());
        assert_eq!(
            scan_page(reader, &obs("domain", "Y.com")).map_err(|e| e.to_string()),
            Ok(Scan::Found(Some(Record {
                created: "2".into(),
                expiration: Some("3".into())
            })))
        );
    }
}
