//! TLS to OTX (SPEC §1 `SSL_CERT_FILE`, §4 "TLS verification failure"): a
//! tiny HTTPS fake OTX with the self-signed certificate of `tests/data/`.
//! Without `SSL_CERT_FILE` the relay must refuse it (the built-in roots do
//! not know it); with the certificate as `SSL_CERT_FILE` it must trust it.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::json;

use crate::support::*;

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cert.pem");
const KEY_PEM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/key.pem");

/// An HTTPS server on 127.0.0.1 answering every request `200 {}` with
/// `Connection: close`, one connection at a time.
struct HttpsOtx {
    addr: SocketAddr,
    /// Requests read after a completed handshake, with their OTX key header.
    served: Arc<AtomicUsize>,
    keys_seen: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpsOtx {
    fn start() -> HttpsOtx {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(CERT)
            .expect("read tests/data/cert.pem")
            .collect::<Result<_, _>>()
            .expect("a PEM certificate");
        let key = PrivateKeyDer::from_pem_file(KEY_PEM).expect("read tests/data/key.pem");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("the test certificate and key match");
        let config = Arc::new(config);

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the HTTPS fake");
        let addr = listener.local_addr().expect("address");
        let served = Arc::new(AtomicUsize::new(0));
        let keys_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (served, keys_seen, stop) = (served.clone(), keys_seen.clone(), stop.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Some(key) = serve_one(&config, stream) {
                        keys_seen
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(key);
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        };
        HttpsOtx {
            addr,
            served,
            keys_seen,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for HttpsOtx {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Serves one request over TLS; returns its `X-OTX-API-KEY` ("" if none),
/// or `None` when the handshake or the request failed (a client that
/// rejects the certificate ends the handshake with an alert).
fn serve_one(config: &Arc<ServerConfig>, stream: TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let connection = ServerConnection::new(config.clone()).ok()?;
    let mut tls = StreamOwned::new(connection, stream);
    let mut key = String::new();
    {
        let mut reader = BufReader::new(&mut tls);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("x-otx-api-key") {
                    key = value.trim().to_string();
                }
            }
        }
    }
    let body = b"{}";
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).ok()?;
    tls.write_all(body).ok()?;
    tls.flush().ok()?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Some(key)
}

#[test]
fn an_unknown_certificate_is_an_ssl_verification_error() {
    let otx = HttpsOtx::start();
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
    assert_eq!(
        otx.served.load(Ordering::SeqCst),
        0,
        "no request may cross a TLS connection whose certificate failed"
    );
}

#[test]
fn ssl_cert_file_makes_the_relay_trust_its_certificate() {
    let otx = HttpsOtx::start();
    let relay = Relay::spawn(
        &otx.url(),
        &[("AVOTX_TIMEOUT", "2"), ("SSL_CERT_FILE", CERT)],
        &[],
    );

    let (status, body) = relay.post_auth("/health", "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"data": {"status": "ok"}}));
    assert_eq!(otx.served.load(Ordering::SeqCst), 1);
    assert_eq!(
        *otx.keys_seen.lock().unwrap_or_else(|p| p.into_inner()),
        vec![KEY.to_string()],
        "the key travels inside TLS"
    );
}
