//! The RS256 path of `auth::verify_with` (XDR's configuration tokens, SPEC
//! §9): arbitrary bytes as the token, with RELAY_AUDIENCE set and a key
//! source that knows one 2048-bit key. Nothing panics; nothing signed by
//! anyone but that key (and no `alg` but HS256 with the secret) is
//! accepted; the key source is asked only for allowed-looking hosts.

#![no_main]

use std::cell::Cell;

use libfuzzer_sys::fuzz_target;
use otx_relay::auth::{self, KeySource, RsaKey, Verifier};
use otx_relay::error::RelayError;

const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef";
const NOW: f64 = 1_700_000_000.0;

/// One key under kid `k1`: a 2048-bit modulus (not a real key: no
/// signature the fuzzer finds can verify against it).
struct OneKey {
    asked: Cell<usize>,
}

impl KeySource for OneKey {
    fn key(&self, jwks_host: &str, kid: Option<&str>) -> Result<RsaKey, RelayError> {
        self.asked.set(self.asked.get() + 1);
        if jwks_host != "jwks.test" {
            return Err(RelayError::JwksHostWrong);
        }
        match kid {
            Some("k1") => Ok(RsaKey {
                kid: "k1".to_owned(),
                n: [0xc5; 256].to_vec(),
                e: vec![1, 0, 1],
            }),
            _ => Err(RelayError::KidNotFound),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let keys = OneKey { asked: Cell::new(0) };
    let audiences = ["https://relay.test".to_owned()];
    let verifier = Verifier {
        secret: Some(SECRET),
        audiences: &audiences,
        keys: Some(&keys),
    };
    for header in [text.to_string(), format!("Bearer {text}")] {
        let result = auth::verify_with(Some(&header), &verifier, NOW);
        if let Ok(claims) = result {
            // Only an HS256 token made with the secret can get here.
            assert!(auth::verify(Some(&header), Some(SECRET), NOW).is_ok());
            assert!(!claims.key.is_empty());
        }
    }
});
