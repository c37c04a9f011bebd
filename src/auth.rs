//! The Bearer JWT, checked by hand: HS256 with `SECRET_KEY` (SPEC §2), and
//! XDR's RS256 configuration tokens when `RELAY_AUDIENCE` is set (SPEC §9).
//!
//! [`verify_with`] is pure: it takes the header value, the secret, the
//! audiences, a [`KeySource`] for RS256 keys and the current time, and
//! either returns the claims or the SPEC's authorization error. The HS256
//! signature is compared with `Mac::verify_slice`, which is constant time;
//! RS256 is verified by ring. `alg` picks the path and nothing else is
//! accepted, so `none` and algorithm confusion (an RS256 header over an
//! HMAC made with the secret) both fail as a bad signature.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::config;
use crate::error::RelayError;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: f64 = 60.0;
/// The shortest `SECRET_KEY` not warned about: HS256 wants a key at least
/// as long as its hash (RFC 7518 §3.2).
pub const MIN_SECRET_KEY_BYTES: usize = 32;

/// Base64url that accepts segments with or without `=` padding.
const B64_DECODE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// Base64url without padding, as JWTs are written.
const B64_ENCODE: GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a valid token carries.
#[derive(Clone, PartialEq, Eq)]
pub struct Claims {
    /// The OTX API key, sent as `X-OTX-API-KEY`.
    pub key: String,
    /// `CTR_ENTITIES_LIMIT` from the token, already normalised.
    pub entities_limit: Option<usize>,
    /// `respond_pulse_id`: the OTX pulse respond actions add to (SPEC §12),
    /// when the token names one as 24 hex digits (anything else: none).
    pub respond_pulse_id: Option<String>,
}

impl std::fmt::Debug for Claims {
    // The key is a secret: never printable.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims")
            .field("key", &"<redacted>")
            .field("entities_limit", &self.entities_limit)
            .field("respond_pulse_id", &self.respond_pulse_id)
            .finish()
    }
}

/// One usable RSA key: its modulus and exponent, big-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaKey {
    pub kid: String,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

/// Where the keys of RS256 tokens come from: the JWKS store in the relay
/// (`jwks`), anything in tests. `kid` is `None` when the token's header has none.
pub trait KeySource {
    fn key(&self, jwks_host: &str, kid: Option<&str>) -> Result<RsaKey, RelayError>;
}

/// What a token is checked against.
pub struct Verifier<'a> {
    /// `SECRET_KEY`, for HS256 tokens.
    pub secret: Option<&'a [u8]>,
    /// `RELAY_AUDIENCE`; empty: only HS256 tokens, exactly as SPEC §2 says.
    pub audiences: &'a [String],
    /// The keys of RS256 tokens (used only when `audiences` is not empty).
    pub keys: Option<&'a dyn KeySource>,
}

/// Checks an `Authorization` header value with HS256 only (SPEC §2);
/// `now` is seconds since the epoch.
pub fn verify(header: Option<&str>, secret: Option<&[u8]>, now: f64) -> Result<Claims, RelayError> {
    let verifier = Verifier {
        secret,
        audiences: &[],
        keys: None,
    };
    verify_with(header, &verifier, now)
}

/// Checks an `Authorization` header value: HS256 (SPEC §2) or, when
/// `RELAY_AUDIENCE` is set, XDR's RS256 configuration tokens (SPEC §9), the
/// checks in the SPEC's order, the first failure answering.
pub fn verify_with(
    header: Option<&str>,
    verifier: &Verifier,
    now: f64,
) -> Result<Claims, RelayError> {
    let header = header.ok_or(RelayError::AuthHeaderMissing)?;
    let mut words = header.split_whitespace();
    let token = match (words.next(), words.next(), words.next()) {
        (Some(scheme), Some(token), None) if scheme.eq_ignore_ascii_case("bearer") => token,
        _ => return Err(RelayError::WrongAuthType),
    };
    let xdr = !verifier.audiences.is_empty();
    if !xdr {
        verifier.secret.ok_or(RelayError::SecretKeyMissing)?;
    }

    let segments: Vec<&str> = token.split('.').collect();
    let [head_b64, payload_b64, signature_b64] = segments[..] else {
        return Err(RelayError::WrongJwtStructure);
    };
    let head = json_object(head_b64)?;
    let payload = json_object(payload_b64)?;
    let signature = B64_DECODE
        .decode(signature_b64)
        .map_err(|_| RelayError::WrongJwtStructure)?;
    let signing_input = &token[..head_b64.len() + 1 + payload_b64.len()];

    match (head.get("alg").and_then(Value::as_str), verifier.keys) {
        (Some("HS256"), _) => {
            let secret = verifier.secret.ok_or(RelayError::SecretKeyMissing)?;
            let mut mac = hmac_sha256(secret);
            mac.update(signing_input.as_bytes());
            mac.verify_slice(&signature)
                .map_err(|_| RelayError::BadSignature)?;
        }
        (Some("RS256"), Some(keys)) if xdr => {
            let jwks_host = payload
                .get("jwks_host")
                .and_then(Value::as_str)
                .ok_or(RelayError::JwksHostMissing)?;
            let kid = head.get("kid").and_then(Value::as_str);
            let key = keys.key(jwks_host, kid)?;
            verify_rs256(&key, signing_input.as_bytes(), &signature)?;
            check_audience(payload.get("aud"), verifier.audiences)?;
        }
        _ => return Err(RelayError::BadSignature),
    }
    claims(&payload, now)
}

/// RSASSA-PKCS1-v1_5 with SHA-256 (ring; keys of 2048 to 8192 bits).
fn verify_rs256(key: &RsaKey, message: &[u8], signature: &[u8]) -> Result<(), RelayError> {
    use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
    RsaPublicKeyComponents {
        n: &key.n,
        e: &key.e,
    }
    .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
    .map_err(|_| RelayError::BadRsaSignature)
}

/// `aud`, a string or a list of strings, must name one of `audiences`
/// (a trailing `/` ignored on both sides).
fn check_audience(aud: Option<&Value>, audiences: &[String]) -> Result<(), RelayError> {
    let ours = |a: &str| audiences.iter().any(|ours| ours == a.trim_end_matches('/'));
    let matched = match aud {
        Some(Value::String(a)) => ours(a),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(ours),
        _ => false,
    };
    if matched {
        Ok(())
    } else {
        Err(RelayError::WrongAudience)
    }
}

/// The payload's claims, once the signature holds.
fn claims(payload: &Map<String, Value>, now: f64) -> Result<Claims, RelayError> {
    let key = match payload.get("key") {
        Some(Value::String(key)) if !key.is_empty() => key.clone(),
        _ => return Err(RelayError::WrongPayloadStructure),
    };
    let time = |name: &str| match payload.get(name) {
        None => Ok(None),
        // `null` is present and not a number: wrong structure.
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(RelayError::WrongPayloadStructure),
    };
    let (exp, nbf) = (time("exp")?, time("nbf")?);
    let entities_limit = payload.get("CTR_ENTITIES_LIMIT").map(limit_claim);

    if exp.is_some_and(|exp| now > exp + LEEWAY) {
        return Err(RelayError::TokenExpired);
    }
    if nbf.is_some_and(|nbf| now + LEEWAY < nbf) {
        return Err(RelayError::TokenNotYetValid);
    }
    // No OTX key has anything but visible ASCII; such a key could only
    // break the header (or leak into an error), so it is never sent.
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RelayError::OtxAuth);
    }
    let respond_pulse_id = payload
        .get("respond_pulse_id")
        .and_then(Value::as_str)
        .filter(|id| is_pulse_id(id))
        .map(str::to_owned);
    Ok(Claims {
        key,
        entities_limit,
        respond_pulse_id,
    })
}

/// An OTX pulse id: 24 hex digits.
pub fn is_pulse_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `CTR_ENTITIES_LIMIT` claim, as Python's `int()` reads it: a string
/// follows the env variable's rules; an integer of any size, or a float
/// truncated towards zero (`5.9` → 5, `1e30` → 1000); anything else → 100.
fn limit_claim(value: &Value) -> usize {
    match value {
        Value::String(s) => config::entities_limit(Some(s)),
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.is_finite() && f >= 1.0 => {
                if f >= config::MAX_ENTITIES_LIMIT as f64 {
                    config::MAX_ENTITIES_LIMIT
                } else {
                    f.trunc() as usize
                }
            }
            _ => config::DEFAULT_ENTITIES_LIMIT,
        },
        Value::Number(n) => config::entities_limit(Some(&n.to_string())),
        _ => config::DEFAULT_ENTITIES_LIMIT,
    }
}

/// What the `token` subcommand puts in a token beside the key.
#[derive(Debug, Clone, Default)]
pub struct Mint {
    pub limit: Option<usize>,
    pub expires_at: Option<u64>,
    pub pulse_id: Option<String>,
}

/// Mints an HS256 token for `key` (the `token` subcommand).
pub fn mint(secret: &[u8], key: &str, extra: &Mint) -> String {
    let mut payload = Map::new();
    payload.insert("key".to_owned(), json!(key));
    if let Some(limit) = extra.limit {
        payload.insert("CTR_ENTITIES_LIMIT".to_owned(), json!(limit));
    }
    if let Some(pulse_id) = &extra.pulse_id {
        payload.insert("respond_pulse_id".to_owned(), json!(pulse_id));
    }
    let expires_at = extra.expires_at;
    if let Some(exp) = expires_at {
        payload.insert("exp".to_owned(), json!(exp));
    }
    let head = B64_ENCODE.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = B64_ENCODE.encode(Value::Object(payload).to_string());
    let mut mac = hmac_sha256(secret);
    mac.update(format!("{head}.{body}").as_bytes());
    let signature = B64_ENCODE.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{signature}")
}

fn hmac_sha256(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length")
}

fn json_object(segment: &str) -> Result<Map<String, Value>, RelayError> {
    let bytes = B64_DECODE
        .decode(segment)
        .map_err(|_| RelayError::WrongJwtStructure)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(RelayError::WrongJwtStructure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: f64 = 1_700_000_000.0;

    fn sign(head: &Value, payload: &Value, secret: &[u8]) -> String {
        let h = B64_ENCODE.encode(head.to_string());
        let p = B64_ENCODE.encode(payload.to_string());
        let mut mac = hmac_sha256(secret);
        mac.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", B64_ENCODE.encode(mac.finalize().into_bytes()))
    }

    fn hs256(payload: Value) -> String {
        sign(&json!({"alg": "HS256", "typ": "JWT"}), &payload, SECRET)
    }

    #[track_caller]
    fn check(
        header: Option<&str>,
        secret: Option<&[u8]>,
        want: Result<(&str, Option<usize>), RelayError>,
    ) {
        let got = verify(header, secret, NOW).map(|c| (c.key, c.entities_limit));
        let want = want.map(|(k, l)| (k.to_owned(), l));
        assert_eq!(got, want);
    }

    #[test]
    fn valid_token() {
        let t = format!("Bearer {}", hs256(json!({"key": "abc"})));
        check(Some(&t), Some(SECRET), Ok(("abc", None)));
        let t = format!(
            "bEaReR {}",
            hs256(json!({"key": "abc", "CTR_ENTITIES_LIMIT": 5}))
        );
        check(Some(&t), Some(SECRET), Ok(("abc", Some(5))));
    }

    #[test]
    fn padding_is_optional() {
        let t = hs256(json!({"key": "ab"}));
        let padded: Vec<String> = t
            .split('.')
            .map(|s| format!("{s}{}", "=".repeat((4 - s.len() % 4) % 4)))
            .collect();
        let header = format!("Bearer {}", padded.join("."));
        assert!(header.contains('='), "the test must exercise padding");
        check(Some(&header), Some(SECRET), Ok(("ab", None)));
    }

    #[test]
    fn order_of_checks() {
        use RelayError::*;
        check(None, None, Err(AuthHeaderMissing));
        check(Some("Basic abc"), None, Err(WrongAuthType));
        check(Some("Bearer"), Some(SECRET), Err(WrongAuthType));
        check(Some("Bearer a b"), Some(SECRET), Err(WrongAuthType));
        check(Some("Bearer a.b.c"), None, Err(SecretKeyMissing));
        check(Some("Bearer a.b"), Some(SECRET), Err(WrongJwtStructure));
        check(
            Some("Bearer !!.!!.!!"),
            Some(SECRET),
            Err(WrongJwtStructure),
        );
        let not_json = format!("Bearer {0}.{0}.{0}", B64_ENCODE.encode("nope"));
        check(Some(&not_json), Some(SECRET), Err(WrongJwtStructure));
    }

    #[test]
    fn alg_is_pinned() {
        for alg in ["none", "RS256", "HS512", "hs256"] {
            let mut t = sign(&json!({"alg": alg}), &json!({"key": "k"}), SECRET);
            if alg == "none" {
                t.truncate(t.rfind('.').unwrap() + 1);
            }
            check(
                Some(&format!("Bearer {t}")),
                Some(SECRET),
                Err(RelayError::BadSignature),
            );
        }
        let other = sign(
            &json!({"alg": "HS256"}),
            &json!({"key": "k"}),
            b"another secret",
        );
        check(
            Some(&format!("Bearer {other}")),
            Some(SECRET),
            Err(RelayError::BadSignature),
        );
    }

    #[test]
    fn payload_structure() {
        for payload in [
            json!({}),
            json!({"key": ""}),
            json!({"key": 5}),
            json!({"key": "k", "exp": "soon"}),
            json!({"key": "k", "nbf": true}),
            // Present but not numbers.
            json!({"key": "k", "exp": null}),
            json!({"key": "k", "nbf": null}),
        ] {
            let t = format!("Bearer {}", hs256(payload.clone()));
            check(
                Some(&t),
                Some(SECRET),
                Err(RelayError::WrongPayloadStructure),
            );
        }
    }

    #[test]
    fn times_with_leeway() {
        let t = |p: Value| format!("Bearer {}", hs256(p));
        check(
            Some(&t(json!({"key": "k", "exp": NOW - 59.0}))),
            Some(SECRET),
            Ok(("k", None)),
        );
        check(
            Some(&t(json!({"key": "k", "exp": NOW - 61.0}))),
            Some(SECRET),
            Err(RelayError::TokenExpired),
        );
        check(
            Some(&t(json!({"key": "k", "nbf": NOW + 59.0}))),
            Some(SECRET),
            Ok(("k", None)),
        );
        check(
            Some(&t(json!({"key": "k", "nbf": NOW + 61.0}))),
            Some(SECRET),
            Err(RelayError::TokenNotYetValid),
        );
    }

    #[test]
    fn key_must_be_visible_ascii() {
        for key in ["a b", "ключ", "a\tb"] {
            let t = format!("Bearer {}", hs256(json!({"key": key})));
            check(Some(&t), Some(SECRET), Err(RelayError::OtxAuth));
        }
    }

    #[test]
    fn limit_claim_follows_env_rules() {
        for (claim, want) in [
            (json!(0), 100),
            (json!("junk"), 100),
            (json!(5000), 1000),
            (json!("7"), 7),
            (json!(-4), 100),
            (json!(null), 100),
            // Integers beyond i64/u64 and huge floats: still > 1000.
            (json!(18446744073709551615u64), 1000),
            (json!(9223372036854775807i64), 1000),
            (json!(1e30), 1000),
            (json!(f64::MAX), 1000),
            (json!(-1e30), 100),
            // Floats: Python's int() truncates.
            (json!(5.0), 5),
            (json!(5.5), 5),
            (json!(999.9), 999),
            (json!(1000.5), 1000),
            (json!(1.0), 1),
            (json!(0.5), 100),
            (json!(-5.0), 100),
            // Strings follow the env rules.
            (json!("5.0"), 100),
            (json!("99999999999999999999"), 1000),
            (json!(" 12 "), 12),
        ] {
            let t = format!(
                "Bearer {}",
                hs256(json!({"key": "k", "CTR_ENTITIES_LIMIT": claim}))
            );
            check(Some(&t), Some(SECRET), Ok(("k", Some(want))));
        }
    }

    #[test]
    fn mint_roundtrips() {
        let extra = Mint {
            limit: Some(10),
            expires_at: Some(NOW as u64 + 100),
            pulse_id: Some("0123456789abcdef01234567".to_owned()),
        };
        let t = mint(SECRET, "the-key", &extra);
        check(
            Some(&format!("Bearer {t}")),
            Some(SECRET),
            Ok(("the-key", Some(10))),
        );
        let claims = verify(Some(&format!("Bearer {t}")), Some(SECRET), NOW).expect("valid");
        assert_eq!(
            claims.respond_pulse_id.as_deref(),
            Some("0123456789abcdef01234567")
        );
        // Anything but 24 hex digits names no pulse.
        for bad in [
            json!("0123456789abcdef0123456"),
            json!("0123456789abcdef0123456g"),
            json!(5),
        ] {
            let t = format!(
                "Bearer {}",
                hs256(json!({"key": "k", "respond_pulse_id": bad}))
            );
            let claims = verify(Some(&t), Some(SECRET), NOW).expect("valid");
            assert_eq!(claims.respond_pulse_id, None);
        }
        let extra = Mint {
            expires_at: Some(NOW as u64 - 1000),
            ..Mint::default()
        };
        let expired = mint(SECRET, "the-key", &extra);
        check(
            Some(&format!("Bearer {expired}")),
            Some(SECRET),
            Err(RelayError::TokenExpired),
        );
    }
}
