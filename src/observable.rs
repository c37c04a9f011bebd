//! Observables: the request body, the supported types, and the
//! percent-encoding that puts a value into a URL path.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::Value;

use crate::error::RelayError;

/// Python's `quote(value, safe='')`: all but `A–Z a–z 0–9 _ . - ~`.
const QUOTE_NOTHING_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');
/// Python's `quote(value, safe='@:')`.
const QUOTE_PATH: &AsciiSet = &QUOTE_NOTHING_SAFE.remove(b'@').remove(b':');

/// `quote(value, safe='@:')`: for values put into an OTX API path (SPEC §4).
/// One case departs from Python: a value of only `.` or `..` would be a
/// relative step to any server or proxy that normalises paths, so its dots
/// are encoded too; no value can leave its path segment.
pub fn quote_path(value: &str) -> String {
    if value == "." || value == ".." {
        return value.replace('.', "%2E");
    }
    quote_url(value)
}

/// Python's `quote(value, safe='@:')` exactly: for the links the relay
/// hands out (SPEC §5's refer URLs), which must match Python's byte for
/// byte, `.` and `..` included.
pub fn quote_url(value: &str) -> String {
    utf8_percent_encode(value, QUOTE_PATH).to_string()
}

/// `quote(value, safe='')`: for ids.
pub fn quote_all(value: &str) -> String {
    utf8_percent_encode(value, QUOTE_NOTHING_SAFE).to_string()
}

/// A supported observable type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Domain,
    Email,
    Md5,
    Sha1,
    Sha256,
    Ip,
    Ipv6,
    Url,
    Hostname,
}

impl Kind {
    /// The CTIM type name, as Threat Response sends it; `None` for the
    /// types the relay does not support.
    pub fn from_type(name: &str) -> Option<Kind> {
        Some(match name {
            "domain" => Kind::Domain,
            "email" => Kind::Email,
            "md5" => Kind::Md5,
            "sha1" => Kind::Sha1,
            "sha256" => Kind::Sha256,
            "ip" => Kind::Ip,
            "ipv6" => Kind::Ipv6,
            "url" => Kind::Url,
            "hostname" => Kind::Hostname,
            _ => return None,
        })
    }

    /// The CTIM type name (`ip`, `sha256`…): what `from_type` reads.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Domain => "domain",
            Kind::Email => "email",
            Kind::Md5 => "md5",
            Kind::Sha1 => "sha1",
            Kind::Sha256 => "sha256",
            Kind::Ip => "ip",
            Kind::Ipv6 => "ipv6",
            Kind::Url => "url",
            Kind::Hostname => "hostname",
        }
    }

    /// The name in refer titles ("Search for this IP").
    pub fn display_name(self) -> &'static str {
        match self {
            Kind::Domain => "domain",
            Kind::Email => "email",
            Kind::Md5 => "MD5",
            Kind::Sha1 => "SHA1",
            Kind::Sha256 => "SHA256",
            Kind::Ip => "IP",
            Kind::Ipv6 => "IPv6",
            Kind::Url => "URL",
            Kind::Hostname => "hostname",
        }
    }

    /// Whether OTX keeps passive DNS for the kind (SPEC §15): names and
    /// addresses.
    pub fn has_passive_dns(self) -> bool {
        matches!(self, Kind::Domain | Kind::Hostname | Kind::Ip | Kind::Ipv6)
    }
}

/// One supported `{type, value}` of the request: its kind parsed once, its
/// value as received. Serializes as CTIM's `{"type", "value"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Observable {
    pub kind: Kind,
    pub value: String,
}

impl Serialize for Observable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_struct("Observable", 2)?;
        map.serialize_field("type", self.kind.type_name())?;
        map.serialize_field("value", &self.value)?;
        map.end()
    }
}

impl Observable {
    pub fn new(kind: Kind, value: impl Into<String>) -> Observable {
        Observable {
            kind,
            value: value.into(),
        }
    }
}

/// Parses a request body: a JSON list of `{"type", "value"}`, both
/// non-empty strings, other keys ignored. Every item is checked; those of
/// an unsupported type are then dropped (SPEC §3).
pub fn parse_body(body: &[u8]) -> Result<Vec<Observable>, RelayError> {
    let invalid = |why: String| RelayError::InvalidPayload(why);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("The body is not valid JSON: {e}.")))?;
    let Value::Array(items) = value else {
        return Err(invalid("Expected a list of observables.".to_owned()));
    };
    let mut observables = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut map) = item else {
            return Err(invalid(format!("Item {i} is not an object.")));
        };
        let mut field = |name: &str| match map.remove(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::String(_)) => Err(invalid(format!("Item {i}: '{name}' is empty."))),
            Some(_) => Err(invalid(format!("Item {i}: '{name}' is not a string."))),
            None => Err(invalid(format!("Item {i}: '{name}' is missing."))),
        };
        let type_ = field("type")?;
        let value = field("value")?;
        if let Some(kind) = Kind::from_type(&type_) {
            observables.push(Observable { kind, value });
        }
    }
    Ok(observables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_like_python() {
        assert_eq!(quote_path("http://a.b/c d"), "http:%2F%2Fa.b%2Fc%20d");
        assert_eq!(quote_path("ü"), "%C3%BC");
        assert_eq!(quote_path("a@b:c_d.e-f~g"), "a@b:c_d.e-f~g");
        assert_eq!(quote_path("/?#% .."), "%2F%3F%23%25%20..");
        assert_eq!(quote_all("a@b:c/d"), "a%40b%3Ac%2Fd");
        assert_eq!(quote_all("Az09_.-~"), "Az09_.-~");
        assert_eq!(quote_path(".."), "%2E%2E");
        assert_eq!(quote_path("."), "%2E");
        assert_eq!(quote_path("..."), "...");
        assert_eq!(quote_path("a.."), "a..");
        // Links are Python's quote exactly: no dot rule.
        assert_eq!(quote_url("."), ".");
        assert_eq!(quote_url(".."), "..");
        assert_eq!(quote_url("http://a.b/c d"), "http:%2F%2Fa.b%2Fc%20d");
        assert_eq!(quote_url("a@b:c_d.e-f~g/ü"), "a@b:c_d.e-f~g%2F%C3%BC");
    }

    #[test]
    fn body_parsing() {
        let ok =
            parse_body(br#"[{"type":"ip","value":"1.2.3.4","extra":1},{"type":"x","value":"y"}]"#);
        assert_eq!(ok, Ok(vec![Observable::new(Kind::Ip, "1.2.3.4")]));
        assert_eq!(parse_body(b"[]"), Ok(vec![]));
        for bad in [
            &b"nope"[..],
            b"{}",
            b"[1]",
            br#"[{"type":"ip"}]"#,
            br#"[{"value":"x"}]"#,
            br#"[{"type":"","value":"x"}]"#,
            br#"[{"type":"ip","value":5}]"#,
            // An unsupported type is checked like any other before it is dropped.
            br#"[{"type":"x","value":""}]"#,
        ] {
            let err = parse_body(bad).expect_err(std::str::from_utf8(bad).unwrap());
            assert_eq!(err.code(), "invalid payload received");
            assert!(err.message().starts_with("Invalid JSON payload received. "));
        }
    }
}
