//! A small HTTPS server on 127.0.0.1 with the test certificate of
//! `tests/data/` (trusted by a relay given it as `SSL_CERT_FILE`): the
//! fake OTX of the TLS tests and the JWKS host of XDR's tokens. One thread
//! per connection, one request per connection (`Connection: close`); it
//! counts connections and keeps every request's path and headers.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::http1::Headers;

/// The certificate (and trust anchor) of the test servers.
pub const TEST_CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/cert.pem");
const TEST_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/key.pem");

/// What the server answers a request with: status and JSON body.
type Answer = dyn Fn(&str) -> (u16, String) + Send + Sync;

/// A request the server read: path and headers (names lower-cased).
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: Headers,
}

/// A running HTTPS server; it serves until the test process ends.
pub struct HttpsServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl HttpsServer {
    /// Serves every request with `answer(path)`.
    pub fn start(answer: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) -> HttpsServer {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(TEST_CERT)
            .expect("read tests/data/cert.pem")
            .collect::<Result<_, _>>()
            .expect("a PEM certificate");
        let key = PrivateKeyDer::from_pem_file(TEST_KEY).expect("read tests/data/key.pem");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("the test certificate and key match"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the HTTPS server");
        let server = HttpsServer {
            addr: listener.local_addr().expect("address"),
            connections: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let (connections, seen) = (server.connections.clone(), server.seen.clone());
        let answer: Arc<Answer> = Arc::new(answer);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                connections.fetch_add(1, Ordering::SeqCst);
                let (config, seen, answer) = (config.clone(), seen.clone(), answer.clone());
                thread::spawn(move || serve(&config, stream, &seen, &*answer));
            }
        });
        server
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// TCP connections accepted (a refused handshake included).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The requests read after a completed handshake, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One request over TLS; nothing is recorded when the handshake or the
/// request fails (a client that rejects the certificate ends the
/// handshake with an alert).
fn serve(config: &Arc<ServerConfig>, stream: TcpStream, seen: &Mutex<Vec<Seen>>, answer: &Answer) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(connection) = ServerConnection::new(config.clone()) else {
        return;
    };
    let mut tls = BufReader::new(StreamOwned::new(connection, stream));
    let mut line = String::new();
    if tls.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        match tls.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {
                if let Some((name, value)) = header.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
            }
        }
    }
    let (status, body) = answer(&path);
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Seen { path, headers });
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut tls = tls.into_inner();
    let _ = tls.write_all(head.as_bytes());
    let _ = tls.write_all(body.as_bytes());
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}
