//! Bearer tokens, independent of the relay's code: HS256 JWTs minted by
//! hand, and RS256 ones (XDR's) signed with a key made by `openssl`.

use std::fmt::Display;
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_SHA256};
use serde_json::{json, Value};

/// The `SECRET_KEY` every relay started by `RelayCommand` gets.
pub const SECRET: &str = "test-secret-key-that-is-at-least-32-bytes-long";
/// The OTX API key carried by `token()`.
pub const KEY: &str = "otx-test-key-0123456789abcdef";

/// Base64url without padding, as JWT segments are written.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An HS256 JWT over `payload`, signed with `secret`.
pub fn jwt(secret: &str, payload: &Value) -> String {
    jwt_with_header(secret, json!({"alg": "HS256", "typ": "JWT"}), payload)
}

/// A JWT with an arbitrary header and payload (JSON, or any text), always
/// signed with HMAC-SHA256 whatever the header's `alg` claims (to test
/// `none`, `RS256`, `HS512`…).
pub fn jwt_with_header(secret: &str, header: impl Display, payload: impl Display) -> String {
    let input = signing_input(header, payload);
    format!("{input}.{}", hs256(secret, &input))
}

/// `base64url(header).base64url(payload)`, what a JWT's signature signs.
fn signing_input(header: impl Display, payload: impl Display) -> String {
    let [header, payload] = [header.to_string(), payload.to_string()].map(b64url);
    format!("{header}.{payload}")
}

/// The base64url HMAC-SHA256 of `signing_input`: a JWT's third segment.
pub fn hs256(secret: &str, signing_input: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    b64url(hmac::sign(&key, signing_input.as_bytes()))
}

/// An unsigned JWT (`header.payload.`, empty signature), as `alg: none` makes.
pub fn jwt_unsigned(header: &Value, payload: &Value) -> String {
    format!("{}.", signing_input(header, payload))
}

/// `jwt(SECRET, {"key": KEY})`: the token of a well-configured tenant.
pub fn token() -> String {
    jwt(SECRET, &json!({"key": KEY}))
}

/// `Bearer <token>`, an `Authorization` header value.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A 2048-bit RSA key made by `openssl` for this run, with its `kid`.
pub struct SigningKey {
    pub kid: &'static str,
    pair: RsaKeyPair,
}

impl SigningKey {
    pub fn generate(kid: &'static str) -> SigningKey {
        // PKCS#1 DER (`RSAPrivateKey`), which ring reads as it is.
        let make = "openssl genrsa -traditional 2048 2>/dev/null \
                    | openssl rsa -traditional -outform DER 2>/dev/null";
        let out = Command::new("sh").args(["-c", make]).output();
        let der = out.map(|out| out.stdout).unwrap_or_default();
        let made = RsaKeyPair::from_der(&der);
        let pair = made.expect("an RSA key from `openssl genrsa` (Debian package: openssl)");
        SigningKey { kid, pair }
    }

    /// The public key's modulus and exponent, big-endian.
    pub fn public(&self) -> (Vec<u8>, Vec<u8>) {
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(self.pair.public());
        (public.n, public.e)
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        let (n, e) = self.public();
        json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
               "n": b64url(n), "e": b64url(e)})
    }

    /// A JWT with `header` and `payload`, signed by this key.
    pub fn sign(&self, header: &Value, payload: &Value) -> String {
        let input = signing_input(header, payload);
        let mut signature = vec![0; self.pair.public().modulus_len()];
        let rng = SystemRandom::new();
        let signed = (self.pair).sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut signature);
        signed.expect("RSA signing");
        format!("{input}.{}", b64url(&signature))
    }
}
