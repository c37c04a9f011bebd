//! Arbitrary bytes as a request body: `observable::parse_body` never
//! panics, and every observable it returns has a non-empty type and value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use otx_relay::observable::{parse_body, quote_all, quote_path};
use otx_relay::otx;

fuzz_target!(|data: &[u8]| {
    let Ok(observables) = parse_body(data) else {
        return;
    };
    for o in &observables {
        assert!(!o.value.is_empty(), "empty value accepted");
        // What the relay does next with a value: none of it may panic, and
        // a quoted value never leaves its path segment.
        assert!(otx::matches_itself_for_fuzz(o));
        let path = quote_path(&o.value);
        assert!(
            !path.contains(['/', '?', '#']),
            "{path} escapes the segment"
        );
        let id = quote_all(&o.value);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-~%".contains(&b)));
    }
});
