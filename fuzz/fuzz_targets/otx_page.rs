//! Arbitrary bytes as one page of a pulse's indicators: the streaming scan
//! (`otx::scan_page_for_fuzz`) never panics, whatever the page holds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use otx_relay::observable::Observable;
use otx_relay::otx::scan_page_for_fuzz;

fuzz_target!(|data: &[u8]| {
    // A case-insensitive kind (found in the sample pages) and an exact one.
    for (type_, value) in [("domain", "webserver.servehttp.com"), ("ip", "1.1.1.1")] {
        let observable = Observable {
            type_: type_.to_owned(),
            value: value.to_owned(),
        };
        let _ = scan_page_for_fuzz(data, &observable);
    }
});
