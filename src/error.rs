//! The one error type of the relay's answers.
//!
//! Every failure a client can see is a variant here; `code` and `message`
//! are the SPEC's strings (clients match on them byte for byte); the
//! envelope `{"errors": [{code, message, type}]}` is built once, in
//! `answer::envelope`. Messages never carry a header value, the JWT, the
//! OTX key or `SECRET_KEY`.

use std::fmt;

/// A failure the relay reports to its client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RelayError {
    /// No `Authorization` header.
    AuthHeaderMissing,
    /// The header is not `Bearer <token>`.
    WrongAuthType,
    /// `SECRET_KEY` is not configured.
    SecretKeyMissing,
    /// Not three base64url segments holding JSON.
    WrongJwtStructure,
    /// The payload has no non-empty string `key`, or a non-numeric `exp`/`nbf`.
    WrongPayloadStructure,
    /// Bad signature or an `alg` other than HS256 (or RS256 with
    /// `RELAY_AUDIENCE` set).
    BadSignature,
    /// An RS256 token without a string `jwks_host` claim.
    JwksHostMissing,
    /// `jwks_host` not allowed by `JWKS_HOSTS`, or its keys unreadable.
    JwksHostWrong,
    /// The header's `kid` is missing, or not among the host's keys even
    /// after a refetch.
    KidNotFound,
    /// The RS256 signature does not verify with the key of `kid`.
    BadRsaSignature,
    /// `aud` names none of `RELAY_AUDIENCE`.
    WrongAudience,
    /// `exp` has passed (after leeway).
    TokenExpired,
    /// `nbf` is still ahead (after leeway).
    TokenNotYetValid,
    /// OTX answered 403, or the key could never be a valid OTX key.
    OtxAuth,
    /// The request body is not a list of `{type, value}`; the text says why.
    InvalidPayload(String),
    /// OTX answered 429.
    TooManyRequests,
    /// Anything else that went wrong talking to OTX; the text is the reason.
    Oops(String),
    /// OTX's TLS certificate did not verify.
    Ssl(String),
    /// `RELAY_DEADLINE` passed before every answer was in.
    Timeout,
    /// `GET /watchdog` without a `Health-Check` header.
    HealthCheckFailed,
    /// No such endpoint (HTTP 404).
    NotFound,
    /// The endpoint exists, with another method (HTTP 405).
    MethodNotAllowed,
    /// The request body is over the 1 MiB limit (HTTP 413).
    PayloadTooLarge,
    /// The request is not valid HTTP/1.1, or is framed ambiguously (HTTP
    /// 400); the text is a short fixed reason, never the client's bytes.
    BadRequest(&'static str),
    /// The request head is over 16 KiB or 128 lines (HTTP 431).
    HeadTooLarge,
    /// An `Expect` other than `100-continue` (HTTP 417).
    ExpectationFailed,
    /// An HTTP version other than 1.0 and 1.1 (HTTP 505).
    VersionNotSupported,
    /// A handler panicked (HTTP 500).
    Internal,
}

impl RelayError {
    /// The SPEC's `code`.
    pub fn code(&self) -> &'static str {
        use RelayError::*;
        match self {
            AuthHeaderMissing
            | WrongAuthType
            | SecretKeyMissing
            | WrongJwtStructure
            | WrongPayloadStructure
            | BadSignature
            | JwksHostMissing
            | JwksHostWrong
            | KidNotFound
            | BadRsaSignature
            | WrongAudience
            | TokenExpired
            | TokenNotYetValid
            | OtxAuth => "authorization error",
            InvalidPayload(_) => "invalid payload received",
            TooManyRequests => "too many requests",
            Oops(_) => "oops",
            Ssl(_) => "ssl certificate verification failed",
            Timeout => "timeout",
            HealthCheckFailed => "health check failed",
            NotFound => "not found",
            MethodNotAllowed => "method not allowed",
            PayloadTooLarge => "payload too large",
            BadRequest(_) => "bad request",
            HeadTooLarge => "request header fields too large",
            ExpectationFailed => "expectation failed",
            VersionNotSupported => "http version not supported",
            Internal => "internal error",
        }
    }

    /// The SPEC's `message`.
    pub fn message(&self) -> String {
        use RelayError::*;
        let auth = |why: &str| format!("Authorization failed: {why}");
        match self {
            AuthHeaderMissing => auth("Authorization header is missing"),
            WrongAuthType => auth("Wrong authorization type"),
            SecretKeyMissing => auth("<SECRET_KEY> is missing"),
            WrongJwtStructure => auth("Wrong JWT structure"),
            WrongPayloadStructure => auth("Wrong JWT payload structure"),
            BadSignature => auth("Failed to decode JWT with provided key"),
            JwksHostMissing => auth(
                "jwks_host is missing in JWT payload. Make sure custom_jwks_host field is present in module_type",
            ),
            JwksHostWrong => auth(
                "Wrong jwks_host in JWT payload. Make sure domain follows the visibility.<region>.cisco.com structure",
            ),
            KidNotFound => auth("kid from JWT header not found in API response"),
            BadRsaSignature => auth(
                "Failed to decode JWT with provided key. Make sure domain in custom_jwks_host corresponds to your SecureX instance region.",
            ),
            WrongAudience => auth("Wrong configuration-token-audience"),
            TokenExpired => auth("Token expired"),
            TokenNotYetValid => auth("Token not yet valid"),
            OtxAuth => auth("Authorization failed on AlienVault OTX side"),
            InvalidPayload(why) => format!("Invalid JSON payload received. {why}"),
            TooManyRequests => {
                "Too many requests to AlienVault OTX have been made. Please try again later."
                    .to_owned()
            }
            Oops(why) => format!("Something went wrong. Reason: {why}."),
            Ssl(why) => format!("Unable to verify SSL certificate: {why}."),
            Timeout => "AlienVault OTX did not answer in time; the results are partial.".to_owned(),
            HealthCheckFailed => "Invalid Health Check".to_owned(),
            NotFound => "Not found.".to_owned(),
            MethodNotAllowed => "Method not allowed.".to_owned(),
            PayloadTooLarge => "The request body is larger than 1 MiB.".to_owned(),
            BadRequest(why) => format!("The request is not valid HTTP/1.1: {why}."),
            HeadTooLarge => "The request head is larger than 16 KiB or 128 lines.".to_owned(),
            ExpectationFailed => "Only \"Expect: 100-continue\" is understood.".to_owned(),
            VersionNotSupported => "Only HTTP/1.0 and HTTP/1.1 are served.".to_owned(),
            Internal => "Internal error.".to_owned(),
        }
    }

    /// The HTTP status of an answer carrying this error: 200 for everything
    /// the SPEC reports in-band, a real status for transport-level failures.
    pub fn http_status(&self) -> u16 {
        match self {
            RelayError::NotFound => 404,
            RelayError::MethodNotAllowed => 405,
            RelayError::PayloadTooLarge => 413,
            RelayError::BadRequest(_) => 400,
            RelayError::HeadTooLarge => 431,
            RelayError::ExpectationFailed => 417,
            RelayError::VersionNotSupported => 505,
            RelayError::Internal => 500,
            _ => 200,
        }
    }
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for RelayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oops_message_ends_with_a_period() {
        assert_eq!(
            RelayError::Oops("500 Internal Server Error".into()).message(),
            "Something went wrong. Reason: 500 Internal Server Error."
        );
    }
}
