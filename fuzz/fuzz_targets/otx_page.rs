//! Arbitrary bytes as one page of a pulse's indicators: the streaming scan
//! (`otx::scan_page_for_fuzz`) never panics, whatever the page holds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use otx_relay::observable::{Kind, Observable};
use otx_relay::otx::scan_page_for_fuzz;

fuzz_target!(|data: &[u8]| {
    // A case-insensitive kind (found in the sample pages) and an exact one.
    for (kind, value) in [(Kind::Domain, "webserver.servehttp.com"), (Kind::Ip, "1.1.1.1")] {
        let observable = Observable::new(kind, value);
        let _ = scan_page_for_fuzz(data, &observable);
    }
});
