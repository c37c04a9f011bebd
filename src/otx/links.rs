//! OTX's web pages the relay links to (SPEC §5, §6, §13): built here, from
//! `AVOTX_URL`, and handed to `ctim` and `tiles` as plain strings.
//!
//! Links are quoted exactly as Python's `quote(value, safe='@:')`
//! (`quote_url`): the dot rule of the OTX API paths does not apply to them.

use crate::observable::{quote_url, Kind, Observable};

/// The pulse's page on OTX (a link: Python's quote, no dot rule).
pub fn pulse_page(base: &str, pulse_id: &str) -> String {
    format!("{base}/pulse/{}", quote_url(pulse_id))
}

/// `{AVOTX_URL}/indicator/{category}/{value}`, the value quoted exactly as
/// Python's `quote(value, safe='@:')` (SPEC §5, compatible): the dot rule of
/// the OTX API paths does not apply to links.
pub fn indicator_page(base: &str, observable: &Observable) -> String {
    format!(
        "{base}/indicator/{}/{}",
        category(observable.kind),
        quote_url(&observable.value)
    )
}

/// OTX's search of its pulses for a malware family `name` (SPEC §13).
///
/// The name is quoted as SPEC §5 defines "quoted" for a URL: Python's
/// `quote(name, safe='@:')` (`quote_url`, as the refer links). Python's
/// bare `quote(name)` (`safe='/'`) would differ only on `/` (kept) and
/// `@`, `:` (encoded); all three mean the same in a query, and `&`, `=`,
/// `#`, `+`, `%` and spaces are encoded either way, so no name can end the
/// `q` parameter early.
pub fn pulse_search(base: &str, name: &str) -> String {
    format!("{base}/browse/global/pulses?q={}", quote_url(name))
}

/// The category in OTX's web links (`/indicator/{category}/…`).
fn category(kind: Kind) -> &'static str {
    match kind {
        Kind::Domain => "domain",
        Kind::Email => "email",
        Kind::Md5 | Kind::Sha1 | Kind::Sha256 => "file",
        Kind::Ip | Kind::Ipv6 => "ip",
        Kind::Url => "url",
        Kind::Hostname => "hostname",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicator_pages_quote_like_python() {
        let o = |t: &str, v: &str| Observable::new(Kind::from_type(t).expect("a kind"), v);
        let url = |t: &str, v: &str| indicator_page("https://otx", &o(t, v));
        // `quote('..', safe='@:')` is `..`: no dot rule in links.
        assert_eq!(url("domain", ".."), "https://otx/indicator/domain/..");
        assert_eq!(url("domain", "."), "https://otx/indicator/domain/.");
        assert_eq!(
            url("url", "http://a.b/c?d#e f"),
            "https://otx/indicator/url/http:%2F%2Fa.b%2Fc%3Fd%23e%20f"
        );
        assert_eq!(url("email", "a@b.c"), "https://otx/indicator/email/a@b.c");
        assert_eq!(url("ip", "1.2.3.4"), "https://otx/indicator/ip/1.2.3.4");
        assert_eq!(
            url("hostname", "WWW.Example.com"),
            "https://otx/indicator/hostname/WWW.Example.com"
        );
    }

    #[test]
    fn pulse_searches_cannot_end_the_query_early() {
        assert_eq!(
            pulse_search("http://otx", "Cobalt Strike/Beacon @x:y&z=1#2+3"),
            "http://otx/browse/global/pulses?q=Cobalt%20Strike%2FBeacon%20@x:y%26z%3D1%232%2B3"
        );
        assert_eq!(
            pulse_search("http://otx", "Emotet"),
            "http://otx/browse/global/pulses?q=Emotet"
        );
    }
}
