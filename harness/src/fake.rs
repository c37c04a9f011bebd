//! A fake OTX: a raw HTTP/1.1 server on `std::net` alone, because it must
//! misbehave on purpose (close or reset a connection, cut a body short,
//! stall), which no HTTP library allows. Over TLS too (`start_tls`), with
//! the test certificate of `tests/data/`: the TLS tests' OTX and the XDR
//! tests' JWKS host.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{json, Value};

use crate::http1::{has_token, header, parse_headers, read_body, read_head, Headers};
use crate::lock;

/// The recorded OTX sample answers, kept in the repository (see its README).
pub const SAMPLES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/otx");

/// The certificate (and trust anchor, as `SSL_CERT_FILE`) of `start_tls`.
pub const TEST_CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/cert.pem");
const TEST_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/key.pem");

/// The raw bytes of the sample `tests/data/otx/<name>`.
pub fn sample_bytes(name: &str) -> Vec<u8> {
    let path = format!("{SAMPLES_DIR}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read OTX sample {path}: {e}"))
}

/// The sample `tests/data/otx/<name>` as JSON, to edit before serving it.
pub fn sample(name: &str) -> Value {
    serde_json::from_slice(&sample_bytes(name))
        .unwrap_or_else(|e| panic!("OTX sample {name} is not JSON: {e}"))
}

/// The standard reason phrase of `status` (as the `http` crate spells it),
/// or "" when there is none.
pub fn reason_phrase(status: u16) -> &'static str {
    let status = http::StatusCode::from_u16(status).ok();
    status.and_then(|s| s.canonical_reason()).unwrap_or("")
}

/// A low-level misbehaviour of the fake OTX for one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Close the connection (FIN) without answering.
    CloseBeforeHead,
    /// Reset the connection (RST: `SO_LINGER` 0, then close) without answering.
    ResetBeforeHead,
    /// Announce the full `Content-Length`, send half the body, then close.
    TruncateBody,
    /// Send the head and half the body, then reset the connection.
    ResetMidBody,
}

/// One programmed answer of the fake OTX.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// The reason phrase; `None` means the standard one for `status` (empty if unknown).
    pub reason: Option<String>,
    /// Shared, so that a big answer costs no copy per request.
    pub body: Arc<[u8]>,
    /// Extra headers. `Content-Length` and `Connection` are added unless present here.
    pub headers: Vec<(String, String)>,
    /// Wait before writing the status line (after the fake's latency); a
    /// close from the client ends the wait and the connection.
    pub head_delay: Duration,
    /// Sleep after the head, before the body.
    pub body_delay: Duration,
    pub fault: Fault,
}

impl Reply {
    /// 200 with `v` as a JSON body.
    pub fn json(v: Value) -> Reply {
        Reply::raw(200, v.to_string().as_bytes()).with_header("Content-Type", "application/json")
    }

    /// `status` with exactly `body` and no `Content-Type`.
    pub fn raw(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            reason: None,
            body: body.into(),
            headers: Vec::new(),
            head_delay: Duration::ZERO,
            body_delay: Duration::ZERO,
            fault: Fault::None,
        }
    }

    /// `status` with a DRF-style error body `{"detail": "..."}`, the shape
    /// OTX is believed to use for its errors.
    pub fn status(status: u16) -> Reply {
        let detail = match status {
            401 | 403 => "Authentication credentials were not provided.",
            404 => "Not found.",
            429 => "Request was throttled.",
            _ => match reason_phrase(status) {
                "" => "Error.",
                phrase => phrase,
            },
        };
        let mut reply = Reply::json(json!({ "detail": detail }));
        reply.status = status;
        reply
    }

    /// 200 with the bytes of the sample `tests/data/otx/<name>`.
    pub fn file(name: &str) -> Reply {
        Reply::raw(200, &sample_bytes(name)).with_header("Content-Type", "application/json")
    }

    pub fn with_header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub fn with_reason(mut self, reason: &str) -> Reply {
        self.reason = Some(reason.to_string());
        self
    }

    pub fn with_head_delay(mut self, d: Duration) -> Reply {
        self.head_delay = d;
        self
    }

    pub fn with_body_delay(mut self, d: Duration) -> Reply {
        self.body_delay = d;
        self
    }

    pub fn with_fault(mut self, f: Fault) -> Reply {
        self.fault = f;
        self
    }
}

/// One request received by the fake OTX.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path exactly as sent (percent-encoding kept), without the query.
    pub path: String,
    /// The raw query, without `?`; "" when there is none.
    pub query: String,
    /// Header names in lower case, values trimmed, in arrival order.
    pub headers: Headers,
    /// The request body (de-chunked), empty for most reads.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The first query parameter called `name`, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| percent_decode(k) == name)
            .map(|(_, v)| percent_decode(v))
    }
}

/// Decodes `+` and `%XX` (a malformed escape is kept as is).
pub fn percent_decode(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&plus_as_space).decode_utf8_lossy();
    decoded.into_owned()
}

/// Answers the requests nothing else was programmed for.
type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// The programmed answers of a fake OTX.
#[derive(Default)]
struct Programming {
    /// For each path, its replies and how many of them were served.
    paths: HashMap<String, (Vec<Reply>, usize)>,
    pages: HashMap<(String, u32), Reply>,
    fallback: Option<Responder>,
    latency: Duration,
}

#[derive(Default)]
struct State {
    programming: Mutex<Programming>,
    log: Mutex<Vec<Recorded>>,
    requests: AtomicUsize,
    connections: AtomicUsize,
    bytes: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    stop: AtomicBool,
    /// A handle on each open connection, so that `Drop` can shut them all.
    open: Mutex<HashMap<usize, TcpStream>>,
}

impl State {
    fn reply_for(&self, request: &Recorded) -> (Reply, Duration) {
        let mut programming = lock(&self.programming);
        let latency = programming.latency;
        let page = request
            .query_param("page")
            .and_then(|page| page.parse::<u32>().ok());
        if let Some(reply) =
            page.and_then(|page| programming.pages.get(&(request.path.clone(), page)))
        {
            return (reply.clone(), latency);
        }
        if let Some((replies, served)) = programming.paths.get_mut(&request.path) {
            *served += 1;
            return (
                replies[(*served - 1).min(replies.len() - 1)].clone(),
                latency,
            );
        }
        let fallback = programming.fallback.clone();
        drop(programming);
        (
            fallback.map_or_else(|| Reply::status(404), |f| f(request)),
            latency,
        )
    }
}

/// A fake OTX on `127.0.0.1:<free port>`: HTTP/1.1, keep-alive, one thread per
/// connection. Unprogrammed paths go to the `fallback`, else answer 404
/// `{"detail": "Not found."}`.
pub struct FakeOtx {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeOtx {
    pub fn start() -> FakeOtx {
        FakeOtx::start_on("127.0.0.1:0").expect("bind the fake OTX")
    }

    /// A fake OTX listening on `addr`.
    pub fn start_on(addr: &str) -> std::io::Result<FakeOtx> {
        FakeOtx::listen(addr, None)
    }

    /// A fake OTX over HTTPS, with the certificate `TEST_CERT`.
    pub fn start_tls() -> FakeOtx {
        let certs = CertificateDer::pem_file_iter(TEST_CERT).expect("read tests/data/cert.pem");
        let certs = certs.collect::<Result<_, _>>().expect("a PEM certificate");
        let key = PrivateKeyDer::from_pem_file(TEST_KEY).expect("read tests/data/key.pem");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|config| config.with_no_client_auth().with_single_cert(certs, key))
            .expect("the test certificate and key match");
        FakeOtx::listen("127.0.0.1:0", Some(Arc::new(config))).expect("bind the fake OTX")
    }

    fn listen(addr: &str, tls: Option<Arc<ServerConfig>>) -> std::io::Result<FakeOtx> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let is_tls = tls.is_some();
        let acceptor = thread::Builder::new()
            .name("fake-otx-accept".into())
            .spawn(move || accept_loop(&listener, &shared, tls))?;
        Ok(FakeOtx {
            addr,
            tls: is_tls,
            state,
            acceptor: Some(acceptor),
        })
    }

    /// `http://127.0.0.1:PORT` (`https://` over TLS), to use as `AVOTX_URL`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request to `path` (raw, no query) gets `reply`.
    pub fn on(&self, path: &str, reply: Reply) {
        self.on_seq(path, vec![reply]);
    }

    /// The n-th request to `path` gets `replies[n]`; the last one repeats.
    /// The count starts again from this call.
    pub fn on_seq(&self, path: &str, replies: Vec<Reply>) {
        assert!(
            !replies.is_empty(),
            "on_seq({path:?}) needs at least one reply"
        );
        lock(&self.state.programming)
            .paths
            .insert(path.to_string(), (replies, 0));
    }

    /// Requests to `path` whose query has `page=<page>` get `reply`, whatever
    /// `on`/`on_seq` say for `path`.
    pub fn on_page(&self, path: &str, page: u32, reply: Reply) {
        lock(&self.state.programming)
            .pages
            .insert((path.to_string(), page), reply);
    }

    /// Requests that `on`, `on_seq` and `on_page` do not cover get what
    /// `responder` makes of them (on the connection's thread).
    pub fn fallback(&self, responder: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        lock(&self.state.programming).fallback = Some(Arc::new(responder));
    }

    /// A delay before every answer, as a network's round trip adds.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.state.programming).latency = latency;
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.log).clone()
    }

    /// The requests whose raw path equals `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        let log = lock(&self.state.log);
        log.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Forgets the recorded requests (the programming and the counts stay).
    pub fn reset_log(&self) {
        lock(&self.state.log).clear();
    }

    /// Requests received so far (`reset_log` does not change it).
    pub fn request_count(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// TCP connections open now.
    pub fn open_connections(&self) -> usize {
        lock(&self.state.open).len()
    }

    /// Bytes of answers (heads and bodies) written so far.
    pub fn bytes(&self) -> u64 {
        self.state.bytes.load(Ordering::SeqCst)
    }

    /// The most requests in flight at once since the last call (or the start).
    pub fn take_max_in_flight(&self) -> usize {
        let now = self.state.in_flight.load(Ordering::SeqCst);
        self.state.max_in_flight.swap(now, Ordering::SeqCst)
    }
}

impl Drop for FakeOtx {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // `accept` blocks; a connection of our own wakes it to see the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for (_, stream) in lock(&self.state.open).drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<State>, tls: Option<Arc<ServerConfig>>) {
    for (id, stream) in listener.incoming().enumerate() {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors or similar: do not spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        if let Ok(handle) = stream.try_clone() {
            lock(&state.open).insert(id, handle);
        }
        let (shared, tls) = (Arc::clone(state), tls.clone());
        let spawned = thread::Builder::new()
            .name(format!("fake-otx-{id}"))
            .spawn(move || {
                // The handshake happens on the first read; one that fails
                // (a client refusing the certificate) ends the connection
                // before any request is recorded.
                match tls.map(ServerConnection::new) {
                    None => serve_connection(stream, &shared),
                    Some(Ok(tls)) => serve_connection(StreamOwned::new(tls, stream), &shared),
                    Some(Err(_)) => {}
                }
                // The socket really closes (FIN, or RST after `SO_LINGER` 0)
                // only once this last handle is gone too.
                lock(&shared.open).remove(&id);
            });
        if spawned.is_err() {
            lock(&state.open).remove(&id);
        }
    }
}

/// No test waits this long; it only bounds a thread a client forgot.
const IDLE: Duration = Duration::from_secs(120);

/// A connection of the fake: TCP, or TLS over TCP.
trait Connection: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Connection for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Connection for StreamOwned<ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

/// Serves requests on one connection until it closes, a fault ends it, or a
/// side asks for `Connection: close`. Never panics: I/O errors end the connection.
fn serve_connection(stream: impl Connection, state: &State) {
    let _ = stream.tcp().set_nodelay(true);
    let _ = stream.tcp().set_read_timeout(Some(IDLE));
    let mut reader = BufReader::new(stream);
    while !state.stop.load(Ordering::SeqCst) {
        let Some(lines) = read_head(&mut reader) else {
            return;
        };
        let arrived = Instant::now();
        let start: Vec<&str> = lines[0].split(' ').collect();
        let (method, target, version) = match start[..] {
            [m, t, v] if !m.is_empty() && !t.is_empty() => (m, t, v),
            _ => {
                let bad =
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = reader.get_mut().write_all(bad.as_bytes());
                return;
            }
        };
        let headers = parse_headers(&lines[1..]);
        let Ok(body) = read_body(&mut reader, &headers, false) else {
            return;
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let keep_alive = !has_token(&headers, "connection", "close")
            && (version != "HTTP/1.0" || has_token(&headers, "connection", "keep-alive"));
        let request = Recorded {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers,
            body,
        };
        lock(&state.log).push(request.clone());
        state.requests.fetch_add(1, Ordering::SeqCst);
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);

        let (reply, latency) = state.reply_for(&request);
        let open = pause(&mut reader, arrived + latency + reply.head_delay);
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !open || !send_reply(reader.get_mut(), &reply, keep_alive, state) {
            return;
        }
    }
}

/// Waits until `until` unless the client closes the connection first;
/// whether it is still open. What the client sends meanwhile stays unread.
/// A socket's read timeout counts in the kernel's ticks (up to 10 ms late),
/// so it watches for a close until 20 ms before `until` and sleeps the rest.
fn pause(reader: &mut BufReader<impl Connection>, until: Instant) -> bool {
    const TICKS: Duration = Duration::from_millis(20);
    let left = || until.saturating_duration_since(Instant::now());
    loop {
        let wait = left().saturating_sub(TICKS);
        if wait.is_zero() {
            break;
        }
        if reader.get_ref().tcp().set_read_timeout(Some(wait)).is_err() {
            return false;
        }
        let timeout = [
            ErrorKind::WouldBlock,
            ErrorKind::TimedOut,
            ErrorKind::Interrupted,
        ];
        match reader.fill_buf() {
            // The client sent something: no close to watch for.
            Ok(bytes) if !bytes.is_empty() => break,
            Err(e) if timeout.contains(&e.kind()) => {}
            _ => return false,
        }
    }
    thread::sleep(left());
    reader.get_ref().tcp().set_read_timeout(Some(IDLE)).is_ok()
}

/// Writes `reply`, applying its fault. Returns whether the connection may
/// serve another request.
fn send_reply(
    writer: &mut impl Connection,
    reply: &Reply,
    client_keeps_alive: bool,
    state: &State,
) -> bool {
    match reply.fault {
        Fault::CloseBeforeHead => {
            let _ = writer.tcp().shutdown(Shutdown::Both);
            return false;
        }
        Fault::ResetBeforeHead => {
            set_linger_zero(writer.tcp());
            return false;
        }
        Fault::None | Fault::TruncateBody | Fault::ResetMidBody => {}
    }
    let has = |name: &str| {
        reply
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    let keep_alive = client_keeps_alive && !has_token(&reply.headers, "connection", "close");
    let reason = (reply.reason.as_deref()).unwrap_or_else(|| reason_phrase(reply.status));
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has("content-length") {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    if !has("connection") {
        let connection = if keep_alive { "keep-alive" } else { "close" };
        head.push_str(&format!("Connection: {connection}\r\n"));
    }
    head.push_str("\r\n");
    let mut write = |bytes: &[u8]| {
        state.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        writer
            .write_all(bytes)
            .and_then(|()| writer.flush())
            .is_ok()
    };
    if !write(head.as_bytes()) {
        return false;
    }
    if !reply.body_delay.is_zero() {
        thread::sleep(reply.body_delay);
    }
    let half = &reply.body[..reply.body.len() / 2];
    match reply.fault {
        Fault::TruncateBody => {
            write(half);
            let _ = writer.tcp().shutdown(Shutdown::Both);
            false
        }
        Fault::ResetMidBody => {
            write(half);
            set_linger_zero(writer.tcp());
            false
        }
        Fault::None | Fault::CloseBeforeHead | Fault::ResetBeforeHead => {
            write(&reply.body) && keep_alive
        }
    }
}

/// Makes the coming close of `stream` send RST instead of FIN.
fn set_linger_zero(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
