//! Arbitrary bytes as the `Authorization` header value: `auth::verify` never
//! panics, and whatever it accepts is a usable claim set.

#![no_main]

use libfuzzer_sys::fuzz_target;
use otx_relay::auth;

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef";
/// 2023-11-14: a fixed `now`, so that a run is reproducible.
const NOW: f64 = 1_700_000_000.0;

fn check(header: &str) {
    let Ok(claims) = auth::verify(Some(header), Some(SECRET), NOW) else {
        return;
    };
    assert!(!claims.key.is_empty(), "an empty key was accepted");
    assert!(
        claims.key.bytes().all(|b| b.is_ascii_graphic()),
        "a key that is not visible ASCII was accepted"
    );
    if let Some(limit) = claims.entities_limit {
        assert!((1..=1000).contains(&limit), "limit {limit} out of range");
    }
}

fuzz_target!(|data: &[u8]| {
    // A header value reaches the relay as text.
    let text = String::from_utf8_lossy(data);
    check(&text);
    // The token alone, behind the scheme word, reaches the later checks
    // (segments, base64url, JSON, signature) without the fuzzer having to
    // find "Bearer " first.
    check(&format!("Bearer {text}"));
    // Without a secret, nothing is ever accepted.
    assert!(auth::verify(Some(&text), None, NOW).is_err());
});
