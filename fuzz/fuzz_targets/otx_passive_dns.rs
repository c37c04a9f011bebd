//! Arbitrary bytes as an OTX passive DNS answer (SPEC §15): the streaming
//! reader (`otx::read_passive_dns_for_fuzz`) never panics, and what it keeps
//! holds the rules whatever the answer held: at most the limit, A records of
//! IPv4 addresses and AAAA records of IPv6 ones, non-empty hostnames, each
//! pair once, newest `last` first (none last). The sighting made of it is
//! CTIM's shape.

#![no_main]

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use otx_relay::ctim;
use otx_relay::observable::{Kind, Observable};
use otx_relay::otx::{links, read_passive_dns_for_fuzz};
use serde_json::Value;

const BASE: &str = "http://127.0.0.1:1";

fuzz_target!(|data: &[u8]| {
    // The first byte picks the limit, so that evictions are reached too.
    let limit = data.first().map_or(50, |b| usize::from(b % 8) + 1);
    for (limit, answer) in [(limit, data.get(1..).unwrap_or_default()), (50, data)] {
        let Some(dns) = read_passive_dns_for_fuzz(answer, limit) else {
            continue;
        };
        assert!(dns.resolutions.len() <= limit, "over the limit");
        let mut pairs = HashSet::new();
        for r in &dns.resolutions {
            assert!(!r.hostname.is_empty(), "an empty hostname was kept");
            match r.ipv6 {
                true => assert!(r.address.parse::<Ipv6Addr>().is_ok()),
                false => assert!(r.address.parse::<Ipv4Addr>().is_ok()),
            }
            assert!(pairs.insert((&r.hostname, &r.address)), "a pair kept twice");
        }
        let lasts: Vec<_> = dns.resolutions.iter().map(|r| r.last.as_deref()).collect();
        assert!(lasts.windows(2).all(|w| w[0] >= w[1]), "not newest first");
        let observable = Observable::new(Kind::Hostname, "www.example.com");
        let now = std::time::UNIX_EPOCH;
        let page = links::indicator_page(BASE, &observable);
        match ctim::passive_dns_sighting(&observable, &dns, limit, now, page) {
            None => assert!(dns.resolutions.is_empty()),
            Some(sighting) => {
                let doc = serde_json::to_value(&sighting).expect("serialises");
                let relations = doc["relations"].as_array().expect("relations");
                assert_eq!(relations.len(), dns.resolutions.len());
                assert_eq!(doc["count"], Value::from(relations.len()));
                assert!(doc.get("external_ids").is_none());
                let time = &doc["observed_time"];
                assert!(time["start_time"].is_string() && time["end_time"].is_string());
            }
        }
    }
});
