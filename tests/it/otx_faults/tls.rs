//! TLS to OTX (SPEC §1 `SSL_CERT_FILE`, §4 "TLS verification failure"): a
//! tiny HTTPS fake OTX with the self-signed certificate of `tests/data/`.
//! Without `SSL_CERT_FILE` the relay must refuse it (the built-in roots do
//! not know it); with the certificate as `SSL_CERT_FILE` it must trust it.

use serde_json::json;

use crate::support::*;

/// The fake OTX over HTTPS, answering every request `200 {}`.
fn https_otx() -> FakeOtx {
    let otx = FakeOtx::start_tls();
    otx.fallback(|_| Reply::json(json!({})));
    otx
}

#[test]
fn an_unknown_certificate_is_an_ssl_verification_error() {
    let otx = https_otx();
    let relay = Relay::spawn(&otx.url(), &[("AVOTX_TIMEOUT", "2")], &[]);

    let (status, body) = relay.post_auth("/health", "");
    assert_eq!(status, 200);
    check_json(
        &body,
        &json!({"errors": [{
            "code": "ssl certificate verification failed",
            "message": "<<re:Unable to verify SSL certificate: .+\\.>>",
            "type": "fatal",
        }]}),
    );
    assert!(
        find_secret(&body.to_string(), &[]).is_none(),
        "no secret in {body}"
    );
    assert!(otx.connections() > 0, "the relay tried");
    assert!(
        otx.requests().is_empty(),
        "no request may cross a TLS connection whose certificate failed"
    );
}

#[test]
fn ssl_cert_file_makes_the_relay_trust_its_certificate() {
    let otx = https_otx();
    let relay = Relay::spawn(
        &otx.url(),
        &[("AVOTX_TIMEOUT", "2"), ("SSL_CERT_FILE", TEST_CERT)],
        &[],
    );

    let (status, body) = relay.post_auth("/health", "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"data": {"status": "ok"}}));
    let seen = otx.requests();
    assert_eq!(seen.len(), 1);
    let key = seen[0].header("X-OTX-API-KEY");
    assert_eq!(key, Some(KEY), "the key travels inside TLS");
}
