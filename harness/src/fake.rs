//! A fake OTX: a raw HTTP/1.1 server on `std::net` alone, because it must
//! misbehave on purpose (close or reset a connection, cut a body short,
//! stall), which no HTTP library allows. Over TLS too (`start_tls`), with
//! the test certificate of `tests/data/`: the TLS tests' OTX and the XDR
//! tests' JWKS host.

use std::collections::HashMap;
use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{json, Value};
use socket2::SockRef;

use crate::http1::{has_token, head, header, read_body, read_head, Headers};
use crate::lock;

/// The certificate (and trust anchor, as `SSL_CERT_FILE`) of `start_tls`.
pub const TEST_CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/cert.pem");
const TEST_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/key.pem");

/// The recorded OTX answer `tests/data/otx/<name>` (see its README) as
/// JSON, to edit before serving it.
pub fn sample(name: &str) -> Value {
    serde_json::from_slice(&Reply::file(name).body)
        .unwrap_or_else(|e| panic!("OTX sample {name} is not JSON: {e}"))
}

/// The standard reason phrase of `status`, as the `http` crate spells it.
fn reason(status: u16) -> Option<&'static str> {
    http::StatusCode::from_u16(status).ok()?.canonical_reason()
}

/// A low-level misbehaviour of the fake OTX for one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
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
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub status: u16,
    /// The reason phrase; `None` means the standard one for `status` (empty if unknown).
    pub reason: Option<String>,
    /// Shared, so that a big answer costs no copy per request.
    pub body: Arc<[u8]>,
    /// Extra headers. `Content-Length` and `Connection` are added unless present here.
    pub headers: Headers,
    /// Wait before writing the status line (after the fake's latency); a
    /// close from the client ends the wait and the connection.
    pub head_delay: Duration,
    /// Sleep after the head, before the body.
    pub body_delay: Duration,
    pub fault: Option<Fault>,
}

impl Reply {
    /// `status` with exactly `body` and no `Content-Type`.
    pub fn raw(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            body: body.into(),
            ..Reply::default()
        }
    }

    /// 200 with `body`, already JSON.
    pub fn json_bytes(body: impl Into<Arc<[u8]>>) -> Reply {
        let mut reply = Reply::raw(200, b"").with_header("Content-Type", "application/json");
        reply.body = body.into();
        reply
    }

    /// 200 with `v` as a JSON body.
    pub fn json(v: Value) -> Reply {
        Reply::json_bytes(v.to_string().into_bytes())
    }

    /// 200 with the bytes of the sample `tests/data/otx/<name>`.
    pub fn file(name: &str) -> Reply {
        let path = format!("{}/../tests/data/otx/{name}", env!("CARGO_MANIFEST_DIR"));
        let body = std::fs::read(&path);
        Reply::json_bytes(body.unwrap_or_else(|e| panic!("cannot read OTX sample {path}: {e}")))
    }

    /// `status` with a DRF-style error body `{"detail": "..."}`, the shape
    /// OTX is believed to use for its errors.
    pub fn status(status: u16) -> Reply {
        let detail = match status {
            401 | 403 => "Authentication credentials were not provided.",
            404 => "Not found.",
            429 => "Request was throttled.",
            _ => reason(status).unwrap_or("Error."),
        };
        let reply = Reply::json(json!({ "detail": detail }));
        Reply { status, ..reply }
    }

    pub fn with_header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub fn with_head_delay(mut self, d: Duration) -> Reply {
        self.head_delay = d;
        self
    }

    pub fn with_fault(mut self, f: Fault) -> Reply {
        self.fault = Some(f);
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
        let mut pairs = (self.query.split('&')).map(|p| p.split_once('=').unwrap_or((p, "")));
        let (_, value) = pairs.find(|(k, _)| percent_decode(k) == name)?;
        Some(percent_decode(value))
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

/// What a fake OTX was programmed with, and what it has seen.
#[derive(Default)]
struct State {
    /// For each path, its replies and how many of them were served.
    paths: HashMap<String, (Vec<Reply>, usize)>,
    pages: HashMap<(String, u32), Reply>,
    fallback: Option<Responder>,
    latency: Duration,
    log: Vec<Recorded>,
    /// A handle on each open connection, so that `Drop` can shut them all.
    open: HashMap<usize, TcpStream>,
    requests: usize,
    connections: usize,
    bytes: u64,
    in_flight: usize,
    max_in_flight: usize,
    stop: bool,
}

/// A fake OTX on `127.0.0.1:<free port>`: HTTP/1.1, keep-alive, one thread per
/// connection. Unprogrammed paths go to the `fallback`, else answer 404
/// `{"detail": "Not found."}`.
pub struct FakeOtx {
    addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeOtx {
    pub fn start() -> FakeOtx {
        FakeOtx::start_on("127.0.0.1:0").expect("bind the fake OTX")
    }

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
        let (addr, state) = (listener.local_addr()?, Arc::default());
        let (shared, is_tls) = (Arc::clone(&state), tls.is_some());
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
        assert!(!replies.is_empty(), "on_seq({path:?}) without a reply");
        lock(&self.state).paths.insert(path.into(), (replies, 0));
    }

    /// Requests to `path` whose query has `page=<page>` get `reply`, whatever
    /// `on`/`on_seq` say for `path`.
    pub fn on_page(&self, path: &str, page: u32, reply: Reply) {
        lock(&self.state).pages.insert((path.into(), page), reply);
    }

    /// Requests that `on`, `on_seq` and `on_page` do not cover get what
    /// `responder` makes of them (on the connection's thread).
    pub fn fallback(&self, responder: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) {
        lock(&self.state).fallback = Some(Arc::new(responder));
    }

    /// A delay before every answer, as a network's round trip adds.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.state).latency = latency;
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).log.clone()
    }

    /// The requests whose raw path equals `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        let state = lock(&self.state);
        let log = state.log.iter();
        log.filter(|r| r.path == path).cloned().collect()
    }

    /// Forgets the recorded requests (the programming and the counts stay).
    pub fn reset_log(&self) {
        lock(&self.state).log.clear();
    }

    /// Requests received so far (`reset_log` does not change it).
    pub fn request_count(&self) -> usize {
        lock(&self.state).requests
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        lock(&self.state).connections
    }

    /// TCP connections open now.
    pub fn open_connections(&self) -> usize {
        lock(&self.state).open.len()
    }

    /// Bytes of answers (heads and bodies) written so far.
    pub fn bytes(&self) -> u64 {
        lock(&self.state).bytes
    }

    /// The most requests in flight at once (from their head's arrival to the
    /// last write of their answer) since the last call (or the start).
    pub fn take_max_in_flight(&self) -> usize {
        let state = &mut *lock(&self.state);
        std::mem::replace(&mut state.max_in_flight, state.in_flight)
    }
}

impl Drop for FakeOtx {
    fn drop(&mut self) {
        lock(&self.state).stop = true;
        // `accept` blocks; a connection of our own wakes it to see the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for (_, stream) in lock(&self.state).open.drain() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<Mutex<State>>, tls: Option<Arc<ServerConfig>>) {
    for (id, stream) in listener.incoming().enumerate() {
        let Ok(stream) = stream else {
            // Out of file descriptors or similar: do not spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        {
            let mut state = lock(state);
            if state.stop {
                return;
            }
            state.connections += 1;
            if let Ok(handle) = stream.try_clone() {
                state.open.insert(id, handle);
            }
        }
        let (shared, tls) = (Arc::clone(state), tls.clone());
        let spawned = thread::Builder::new()
            .name(format!("fake-otx-{id}"))
            .spawn(move || {
                // The handshake happens on the first read; one that fails
                // (a client refusing the certificate) ends the connection
                // before any request is recorded.
                let tcp = &stream;
                match tls.map(ServerConnection::new) {
                    None => serve(tcp, tcp, &shared),
                    Some(Ok(tls)) => serve(StreamOwned::new(tls, tcp), tcp, &shared),
                    Some(Err(_)) => {}
                }
                // The socket really closes (FIN, or RST after `SO_LINGER` 0)
                // only once this last handle is gone too.
                lock(&shared).open.remove(&id);
            });
        if spawned.is_err() {
            lock(state).open.remove(&id);
        }
    }
}

/// No test waits this long; it only bounds a thread a client forgot.
const IDLE: Duration = Duration::from_secs(120);

/// Serves requests on one connection (`io`, over the socket `tcp`) until it
/// closes, a fault ends it, or a side asks for `Connection: close`. Never
/// panics: I/O errors end the connection.
fn serve(io: impl Read + Write, tcp: &TcpStream, state: &Mutex<State>) {
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(IDLE));
    let mut reader = BufReader::new(io);
    while let Some((start, headers)) = read_head(&mut reader) {
        let arrived = Instant::now();
        let parts: Vec<&str> = start.split(' ').collect();
        let (method, target, version) = match parts[..] {
            [m, t, v] if !m.is_empty() && !t.is_empty() => (m, t, v),
            _ => {
                let in_flight = InFlight::start(state);
                send_reply(
                    reader.get_mut(),
                    tcp,
                    &Reply::raw(400, b""),
                    false,
                    in_flight,
                );
                return;
            }
        };
        let Ok(body) = read_body(&mut reader, &headers, false) else {
            return;
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let keep_alive = !has_token(&headers, "connection", "close")
            && (version != "HTTP/1.0" || has_token(&headers, "connection", "keep-alive"));
        let request = Recorded {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers,
            body,
        };
        let latency = {
            let state = &mut *lock(state);
            state.log.push(request.clone());
            state.requests += 1;
            state.latency
        };
        let in_flight = InFlight::start(state);
        let reply = reply_for(state, &request);
        let open = pause(&mut reader, tcp, arrived + latency + reply.head_delay);
        if !open || !send_reply(reader.get_mut(), tcp, &reply, keep_alive, in_flight) {
            return;
        }
    }
}

/// A request counted in flight (see `take_max_in_flight`) until this is
/// dropped: just before the last write of its answer (so that the count ends
/// before the client can have the whole answer and ask again), or when the
/// exchange ends otherwise.
struct InFlight<'a>(&'a Mutex<State>);

impl InFlight<'_> {
    fn start(state: &Mutex<State>) -> InFlight<'_> {
        let counts = &mut *lock(state);
        counts.in_flight += 1;
        counts.max_in_flight = counts.max_in_flight.max(counts.in_flight);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(self.0).in_flight -= 1;
    }
}

/// Waits until `until` unless the client closes the connection first;
/// whether it is still open. What the client sends meanwhile stays unread.
/// A socket's read timeout counts in the kernel's ticks (up to 10 ms late),
/// so it watches for a close until 20 ms before `until` and sleeps the rest.
fn pause(reader: &mut impl BufRead, tcp: &TcpStream, until: Instant) -> bool {
    let left = || until.saturating_duration_since(Instant::now());
    loop {
        let wait = left().saturating_sub(Duration::from_millis(20));
        if wait.is_zero() {
            break;
        }
        let _ = tcp.set_read_timeout(Some(wait));
        match reader.fill_buf() {
            // The client sent something: no close to watch for.
            Ok(bytes) if !bytes.is_empty() => break,
            Err(e) if matches!(e.kind(), WouldBlock | TimedOut | Interrupted) => {}
            _ => return false,
        }
    }
    thread::sleep(left());
    tcp.set_read_timeout(Some(IDLE)).is_ok()
}

/// The reply programmed for `request`; the fallback runs outside the lock.
fn reply_for(state: &Mutex<State>, request: &Recorded) -> Reply {
    let mut state = lock(state);
    let page = request
        .query_param("page")
        .and_then(|page| page.parse().ok());
    if let Some(reply) = page.and_then(|page| state.pages.get(&(request.path.clone(), page))) {
        return reply.clone();
    }
    if let Some((replies, served)) = state.paths.get_mut(&request.path) {
        *served += 1;
        return replies[(*served).min(replies.len()) - 1].clone();
    }
    let fallback = state.fallback.clone();
    drop(state);
    fallback.map_or_else(|| Reply::status(404), |f| f(request))
}

/// Writes `reply`, applying its fault. Returns whether the connection may
/// serve another request.
fn send_reply(
    io: &mut impl Write,
    tcp: &TcpStream,
    reply: &Reply,
    keep_alive: bool,
    in_flight: InFlight,
) -> bool {
    let state = in_flight.0;
    if let Some(fault @ (Fault::CloseBeforeHead | Fault::ResetBeforeHead)) = reply.fault {
        close(tcp, fault);
        return false;
    }
    let keep_alive = keep_alive && !has_token(&reply.headers, "connection", "close");
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let phrase = (reply.reason.as_deref()).or_else(|| reason(reply.status));
    let length = reply.body.len();
    let head = head(
        format_args!("HTTP/1.1 {} {}", reply.status, phrase.unwrap_or("")),
        &[("Content-Length", &length), ("Connection", &connection)],
        &reply.headers,
    );
    let mut write = |bytes: &[u8]| {
        lock(state).bytes += bytes.len() as u64;
        io.write_all(bytes).and_then(|()| io.flush()).is_ok()
    };
    let mut in_flight = Some(in_flight);
    if reply.body.is_empty() {
        drop(in_flight.take()); // The head is the last write.
    }
    if !write(head.as_bytes()) {
        return false;
    }
    thread::sleep(reply.body_delay);
    drop(in_flight);
    let Some(fault) = reply.fault else {
        return write(&reply.body) && keep_alive;
    };
    write(&reply.body[..reply.body.len() / 2]);
    close(tcp, fault);
    false
}

/// Ends the connection as `fault` says: FIN, or RST (`SO_LINGER` 0: the
/// close that follows sends RST).
fn close(tcp: &TcpStream, fault: Fault) {
    use Fault::*;
    let _ = match fault {
        CloseBeforeHead | TruncateBody => tcp.shutdown(Shutdown::Both),
        ResetBeforeHead | ResetMidBody => SockRef::from(tcp).set_linger(Some(Duration::ZERO)),
    };
}
