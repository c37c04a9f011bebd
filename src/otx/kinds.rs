//! How OTX names and matches each kind of observable: its API section, its
//! indicator type, and the value it is asked about and matched by.

use crate::observable::{Kind, Observable};

/// Whether OTX can be asked about the kind at all.
pub fn askable(kind: Kind) -> bool {
    section(kind).is_some()
}

/// The OTX API section (`/api/v1/indicators/{section}/…`); `None` for the
/// types OTX cannot be asked about.
pub(super) fn section(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Domain => Some("domain"),
        Kind::Email => None,
        Kind::Md5 | Kind::Sha1 | Kind::Sha256 => Some("file"),
        Kind::Ip => Some("IPv4"),
        Kind::Ipv6 => Some("IPv6"),
        Kind::Url => Some("url"),
        Kind::Hostname => Some("hostname"),
    }
}

/// OTX's indicator type for a kind (SPEC §12).
pub(super) fn otx_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Ip => "IPv4",
        Kind::Ipv6 => "IPv6",
        Kind::Domain => "domain",
        Kind::Url => "URL",
        Kind::Md5 => "FileHash-MD5",
        Kind::Sha1 => "FileHash-SHA1",
        Kind::Sha256 => "FileHash-SHA256",
        Kind::Email => "email",
        Kind::Hostname => "hostname",
    }
}

/// Hashes, domains and hostnames are case-insensitive at OTX.
pub(super) fn case_insensitive(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Domain | Kind::Hostname | Kind::Md5 | Kind::Sha1 | Kind::Sha256
    )
}

/// The value as OTX is asked about it and as records are matched: ASCII
/// lower case for case-insensitive kinds, as received otherwise.
pub(super) fn value(observable: &Observable) -> String {
    if case_insensitive(observable.kind) {
        observable.value.to_ascii_lowercase()
    } else {
        observable.value.clone()
    }
}

/// Whether a pulse record's `indicator` is this observable.
pub(super) fn matches(observable: &Observable, indicator: &str) -> bool {
    if case_insensitive(observable.kind) {
        indicator.eq_ignore_ascii_case(&observable.value)
    } else {
        indicator == observable.value
    }
}

/// For the fuzz target `body`: the value OTX would be asked about is made,
/// and whether the observable matches a record of its own value (it must).
#[doc(hidden)]
pub fn matches_itself_for_fuzz(observable: &Observable) -> bool {
    let _ = value(observable);
    matches(observable, &observable.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_rules() {
        let o = |t: &str, v: &str| Observable::new(Kind::from_type(t).expect("a kind"), v);
        assert_eq!(value(&o("md5", "ABCdef")), "abcdef");
        assert_eq!(value(&o("domain", "Example.COM")), "example.com");
        assert_eq!(value(&o("hostname", "WWW.Example.COM")), "www.example.com");
        assert!(matches(
            &o("hostname", "www.example.com"),
            "WWW.example.COM"
        ));
        assert_eq!(value(&o("url", "http://A/B")), "http://A/B");
        assert!(matches(&o("sha1", "AB"), "ab"));
        assert!(!matches(&o("url", "http://A"), "http://a"));
    }

    #[test]
    fn indicator_types() {
        assert_eq!(otx_type(Kind::Sha256), "FileHash-SHA256");
        // SPEC §15: a hostname joins a pulse as OTX's `hostname`.
        assert_eq!(otx_type(Kind::Hostname), "hostname");
        assert_eq!(otx_type(Kind::Ip), "IPv4");
        assert!(!askable(Kind::Email) && askable(Kind::Hostname));
    }
}
