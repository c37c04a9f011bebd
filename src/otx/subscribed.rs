//! `/api/v1/pulses/subscribed`, read as it streams in (serde visitors keep
//! only the fields the tiles use; everything else is skipped as it streams
//! by), and the walks of it the tiles are made from: per tenant and period,
//! kept `TILE_CACHE_TTL`, identical concurrent walks sharing one (SPEC §11).
use std::fmt;
use std::io::BufReader;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::general::names;
use super::{status_error, Otx, Session};
use crate::error::RelayError;
use crate::intel::PulseSummary;
use crate::observable::quote_path;
use crate::time::format_seconds;

/// Pulses per page of the subscribed-pulses walk (SPEC §11).
pub const SUBSCRIBED_PAGE: u32 = 50;

impl Otx {
    /// One page (50 pulses) of `GET /api/v1/pulses/subscribed` modified
    /// since `since` (`YYYY-MM-DDTHH:MM:SS`), read as it streams in: the
    /// pulses' indicator lists are counted, never held.
    pub fn subscribed(
        &self,
        session: &Session,
        since: &str,
        page: u32,
    ) -> Result<SubscribedPage, RelayError> {
        let url = format!(
            "{}/api/v1/pulses/subscribed?limit={SUBSCRIBED_PAGE}&modified_since={}&page={page}",
            self.base,
            quote_path(since)
        );
        let response = self.send(session, "subscribed", &url)?;
        match response.status().as_u16() {
            200 => {
                let reader = self.body_reader(response);
                read_subscribed_page(BufReader::with_capacity(64 * 1024, reader))
                    .map_err(|e| self.transport_error(session, ureq::Error::from(e)))
            }
            status => Err(status_error(status)),
        }
    }
}

/// What one walk read.
#[derive(Debug, Clone)]
pub struct Walk {
    /// Pulses modified in the period, as OTX listed them.
    pub pulses: Vec<PulseSummary>,
    /// Why the walk stopped early, if it did.
    pub error: Option<RelayError>,
    /// When it was made (seconds); tiles are computed as of then.
    pub at: u64,
}

impl Otx {
    /// The walk of `period` for the session's tenant: cached, shared, or
    /// made now, of the pulses modified since `start(now)` (seconds).
    pub fn walk(
        &self,
        session: &Session,
        period: &str,
        start: impl FnOnce(u64) -> u64,
    ) -> Arc<Walk> {
        let mut key = Sha256::new();
        key.update(session.tenant());
        key.update(period.as_bytes());
        let fetched = self.walks.get_or_fetch(key.finalize().into(), || {
            let walk = Arc::new(self.fresh_walk(session, start));
            // A walk cut short is answered, to everyone waiting on it, but
            // not kept.
            match walk.error {
                None => Ok(walk),
                Some(_) => Err(walk),
            }
        });
        fetched.unwrap_or_else(|partial| partial)
    }

    fn fresh_walk(&self, session: &Session, start: impl FnOnce(u64) -> u64) -> Walk {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let since = format_seconds(start(now));
        let mut walk = Walk {
            pulses: Vec::new(),
            error: None,
            at: now,
        };
        for page in 1.. {
            match self.subscribed(session, &since, page) {
                Ok(read) => {
                    walk.pulses.extend(read.pulses);
                    if walk.pulses.len() >= self.tile_max_pulses {
                        walk.pulses.truncate(self.tile_max_pulses);
                        break;
                    }
                    if !read.more {
                        break;
                    }
                }
                Err(e) => {
                    walk.error = Some(e);
                    break;
                }
            }
        }
        walk
    }
}

/// One page of `/api/v1/pulses/subscribed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribedPage {
    pub pulses: Vec<PulseSummary>,
    /// `next` names another page.
    pub more: bool,
}

/// Reads a subscribed-pulses page as it streams in. Each pulse's
/// `indicators` list is walked and counted, never held: a page of 50 pulses
/// with 10 000 indicators each costs the memory of one pulse's small fields.
/// Pulses without an id are skipped. A page that is not JSON of this shape
/// is an `InvalidData` error carrying the `serde_json::Error`.
pub fn read_subscribed_page(reader: impl std::io::Read) -> std::io::Result<SubscribedPage> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let page = SubscribedPage::deserialize(&mut de).map_err(std::io::Error::from)?;
    de.end().map_err(std::io::Error::from)?;
    Ok(page)
}

impl<'de> Deserialize<'de> for SubscribedPage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PageVisitor)
    }
}

struct PageVisitor;

impl<'de> Visitor<'de> for PageVisitor {
    type Value = SubscribedPage;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a page of subscribed pulses")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SubscribedPage, A::Error> {
        let mut page = SubscribedPage::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "results" => page.pulses = map.next_value::<Pulses>()?.0,
                "next" => {
                    page.more =
                        matches!(map.next_value::<Value>()?, Value::String(s) if !s.is_empty())
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(page)
    }
}

/// The `results` list; pulses without an id dropped.
struct Pulses(Vec<PulseSummary>);

impl<'de> Deserialize<'de> for Pulses {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Seq;
        impl<'de> Visitor<'de> for Seq {
            type Value = Pulses;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of pulses")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pulses, A::Error> {
                let mut pulses = Vec::new();
                while let Some(pulse) = seq.next_element::<Option<PulseSummary>>()? {
                    pulses.extend(pulse.filter(|p| !p.id.is_empty()));
                }
                Ok(Pulses(pulses))
            }
        }
        deserializer.deserialize_seq(Seq)
    }
}

impl<'de> Deserialize<'de> for PulseSummary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PulseVisitor)
    }
}

struct PulseVisitor;

impl<'de> Visitor<'de> for PulseVisitor {
    type Value = PulseSummary;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a pulse")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PulseSummary, A::Error> {
        let text = |v: Value| match v {
            Value::String(s) => s,
            _ => String::new(),
        };
        let mut p = PulseSummary::default();
        let (mut count, mut listed, mut author_name) = (None, 0, String::new());
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "id" => p.id = text(map.next_value()?),
                "name" => p.name = text(map.next_value()?),
                "author_name" => author_name = text(map.next_value()?),
                "author" => {
                    if let Value::Object(author) = map.next_value::<Value>()? {
                        p.author = author
                            .get("username")
                            .cloned()
                            .map(text)
                            .unwrap_or_default();
                    }
                }
                "adversary" => p.adversary = text(map.next_value()?),
                "modified" => p.modified = text(map.next_value()?),
                "indicator_count" => count = map.next_value::<Value>()?.as_u64(),
                "indicators" => listed = map.next_value::<Counted>()?.0,
                "malware_families" => {
                    if let Value::Array(list) = map.next_value::<Value>()? {
                        p.malware = names(&list);
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !author_name.is_empty() {
            p.author = author_name;
        }
        if p.name.trim().is_empty() {
            p.name = p.id.clone();
        }
        p.indicators = count.unwrap_or(listed);
        Ok(p)
    }
}

/// A list walked element by element and counted, its elements skipped.
struct Counted(u64);

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Count;
        impl<'de> Visitor<'de> for Count {
            type Value = Counted;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Counted, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Counted(n))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Counted, E> {
                Ok(Counted(0))
            }
        }
        deserializer.deserialize_any(Count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subscribed_pages_are_read_and_indicators_counted() {
        let page = json!({
            "count": 3, "next": "https://otx/api/v1/pulses/subscribed?page=2",
            "results": [
                {"id": "a", "name": "A", "author_name": "alice", "modified": "2026-11-29T14:03:22.1",
                 "adversary": "APT 1", "indicators": [{"indicator": "x"}, {"indicator": "y"}],
                 "malware_families": [{"display_name": "Emotet", "id": "emotet"}, "Ryuk", 5, null, "", {"id": "trickbot"}, {}],
                 "other": {"deep": [1, 2, 3]}},
                {"id": "b", "author": {"username": "bob"}, "indicator_count": 7, "indicators": [], "modified": "2026-11-28T00:00:00"},
                {"name": "no id"},
                null
            ]
        });
        let read = read_subscribed_page(page.to_string().as_bytes()).expect("a page");
        assert!(read.more);
        assert_eq!(read.pulses.len(), 2);
        let a = &read.pulses[0];
        assert_eq!(
            (a.id.as_str(), a.name.as_str(), a.author.as_str()),
            ("a", "A", "alice")
        );
        assert_eq!((a.indicators, a.adversary.as_str()), (2, "APT 1"));
        assert_eq!(a.malware, ["Emotet", "Ryuk", "trickbot"]);
        let b = &read.pulses[1];
        assert_eq!(
            (b.name.as_str(), b.author.as_str(), b.indicators),
            ("b", "bob", 7)
        );
        let last = read_subscribed_page(&br#"{"results": [], "next": null}"#[..]).expect("a page");
        assert!(!last.more && last.pulses.is_empty());
        for bad in [&b"[]"[..], b"{\"results\": 5}", b"{\"results\": [", b"nope"] {
            let e = read_subscribed_page(bad).expect_err("refused");
            assert!(
                e.get_ref()
                    .is_some_and(|inner| inner.is::<serde_json::Error>()),
                "{e}"
            );
        }
    }
}
