//! The test harness shared by every module of the `it` binary.
//!
//! - `jwt`, `token`: Bearer tokens minted by hand, independent of `src/`.
//! - `FakeOtx`: a raw HTTP/1.1 server standing in for OTX. It is written on
//!   `std::net` alone because it must misbehave on purpose (close or reset a
//!   connection, cut a body short, stall), which no HTTP library allows.
//! - `Relay`: the real `otx-relay` binary run as a child process on a free
//!   port; on `Drop` it checks that no secret ever reached its output.
//! - `check_json`: whole-document comparison with `<<...>>` placeholders.
#![allow(dead_code)] // Not every helper is used by every test module.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The `SECRET_KEY` every relay started by `Relay::start` gets.
pub const SECRET: &str = "test-secret-key-that-is-at-least-32-bytes-long";
/// The OTX API key carried by `token()`.
pub const KEY: &str = "otx-test-key-0123456789abcdef";

/// The recorded OTX sample answers, kept in the repository (see its README).
pub const SAMPLES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/otx");

/// A lock that survives a panicked holder: a failing test must not turn every
/// later access (from the fake server's threads, or `Drop`) into a second panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// JWT

/// Base64url without padding, as JWT segments are written.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An HS256 JWT over `payload`, signed with `secret`.
pub fn jwt(secret: &str, payload: &Value) -> String {
    jwt_with_header(secret, &json!({"alg": "HS256", "typ": "JWT"}), payload)
}

/// A JWT with an arbitrary header, always signed with HMAC-SHA256 whatever
/// the header's `alg` claims (to test `none`, `RS256`, `HS512`…).
pub fn jwt_with_header(secret: &str, header: &Value, payload: &Value) -> String {
    jwt_raw(secret, &header.to_string(), &payload.to_string())
}

/// A JWT over raw header and payload text, which need not be JSON at all.
pub fn jwt_raw(secret: &str, header: &str, payload: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    format!("{signing_input}.{}", hs256(secret, &signing_input))
}

/// The base64url HMAC-SHA256 of `signing_input`: a JWT's third segment.
pub fn hs256(secret: &str, signing_input: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(signing_input.as_bytes());
    b64url(&mac.finalize().into_bytes())
}

/// An unsigned JWT (`header.payload.`, empty signature), as `alg: none` makes.
pub fn jwt_unsigned(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(payload.to_string().as_bytes())
    )
}

/// `jwt(SECRET, {"key": KEY})`: the token of a well-configured tenant.
pub fn token() -> String {
    jwt(SECRET, &json!({"key": KEY}))
}

/// `Bearer <token>`, an `Authorization` header value.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------------------
// Fake OTX

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
    pub body: Vec<u8>,
    /// Extra headers. `Content-Length` and `Connection` are added unless present here.
    pub headers: Vec<(String, String)>,
    /// Sleep before writing the status line.
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
            body: body.to_vec(),
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
        Reply::raw(status, json!({ "detail": detail }).to_string().as_bytes())
            .with_header("Content-Type", "application/json")
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

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }
}

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
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

/// HTTP headers as (name, value) pairs, in order.
pub type Headers = Vec<(String, String)>;

/// One request received by the fake OTX.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path exactly as sent (percent-encoding kept), without the query.
    pub path: String,
    /// The raw query, without `?`; "" when there is none.
    pub query: String,
    /// Header names in lower case, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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

/// Decodes `%XX` and `+`; a malformed escape is kept as is.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = || {
            let digits = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            u8::from_str_radix(digits, 16).ok()
        };
        match bytes[i] {
            b'%' if hex().is_some() => {
                out.push(hex().unwrap_or_default());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The programmed answers of a fake OTX.
#[derive(Default)]
struct Programming {
    paths: HashMap<String, Sequence>,
    pages: HashMap<(String, u32), Reply>,
}

/// The replies for one path and how many of them were served.
struct Sequence {
    replies: Vec<Reply>,
    served: usize,
}

#[derive(Default)]
struct OtxState {
    programming: Mutex<Programming>,
    log: Mutex<Vec<Recorded>>,
    connections: AtomicUsize,
    stop: AtomicBool,
    /// A handle on each open connection, so that `Drop` can shut them all.
    open: Mutex<HashMap<usize, TcpStream>>,
}

impl OtxState {
    fn reply_for(&self, request: &Recorded) -> Reply {
        let mut programming = lock(&self.programming);
        let page = request
            .query_param("page")
            .and_then(|page| page.parse::<u32>().ok());
        if let Some(page) = page {
            if let Some(reply) = programming.pages.get(&(request.path.clone(), page)) {
                return reply.clone();
            }
        }
        if let Some(sequence) = programming.paths.get_mut(&request.path) {
            let index = sequence.served.min(sequence.replies.len() - 1);
            sequence.served += 1;
            return sequence.replies[index].clone();
        }
        Reply::status(404)
    }
}

/// A fake OTX on `127.0.0.1:<free port>`: HTTP/1.1, keep-alive, one thread per
/// connection. Unprogrammed paths answer 404 `{"detail": "Not found."}`.
pub struct FakeOtx {
    addr: SocketAddr,
    state: Arc<OtxState>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeOtx {
    pub fn start() -> FakeOtx {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake OTX");
        let addr = listener.local_addr().expect("fake OTX address");
        let state = Arc::new(OtxState::default());
        let acceptor = {
            let state = Arc::clone(&state);
            thread::Builder::new()
                .name("fake-otx-accept".into())
                .spawn(move || accept_loop(&listener, &state))
                .expect("spawn the fake OTX")
        };
        FakeOtx {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`, to use as `AVOTX_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
            .insert(path.to_string(), Sequence { replies, served: 0 });
    }

    /// Requests to `path` whose query has `page=<page>` get `reply`, whatever
    /// `on`/`on_seq` say for `path`.
    pub fn on_page(&self, path: &str, page: u32, reply: Reply) {
        lock(&self.state.programming)
            .pages
            .insert((path.to_string(), page), reply);
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.log).clone()
    }

    /// The requests whose raw path equals `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        lock(&self.state.log)
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Forgets the recorded requests (the programming stays).
    pub fn reset_log(&self) {
        lock(&self.state.log).clear();
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

fn accept_loop(listener: &TcpListener, state: &Arc<OtxState>) {
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
        let shared = Arc::clone(state);
        let spawned = thread::Builder::new()
            .name(format!("fake-otx-{id}"))
            .spawn(move || {
                serve_connection(stream, &shared);
                // The socket really closes (FIN, or RST after `SO_LINGER` 0)
                // only once this last handle is gone too.
                lock(&shared.open).remove(&id);
            });
        if spawned.is_err() {
            lock(&state.open).remove(&id);
        }
    }
}

/// Serves requests on one connection until it closes, a fault ends it, or a
/// side asks for `Connection: close`. Never panics: I/O errors end the connection.
fn serve_connection(stream: TcpStream, state: &OtxState) {
    let _ = stream.set_nodelay(true);
    // No test waits this long; it only bounds a thread a client forgot.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Some(lines) = read_head(&mut reader) else {
            return;
        };
        let Some((request, version)) = parse_request(&lines) else {
            let _ = writer.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        };
        if discard_body(&mut reader, &request.headers).is_err() {
            return;
        }
        let client_keeps_alive = keeps_alive(&version, &request.headers);
        lock(&state.log).push(request.clone());
        let reply = state.reply_for(&request);
        if !send_reply(&mut writer, &reply, client_keeps_alive) {
            return;
        }
    }
}

/// Reads a message head up to the empty line; the lines come back without
/// their CRLF. `None` on EOF, error, or a head over 64 KiB. Empty lines before
/// the start line are skipped, as RFC 9112 allows.
fn read_head(reader: &mut impl BufRead) -> Option<Vec<String>> {
    const MAX_HEAD: usize = 64 * 1024;
    let mut lines = Vec::new();
    let mut size = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .by_ref()
            .take((MAX_HEAD - size + 1) as u64)
            .read_until(b'\n', &mut line)
            .ok()?;
        size += n;
        if n == 0 || size > MAX_HEAD || !line.ends_with(b"\n") {
            return None;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            if lines.is_empty() {
                continue;
            }
            return Some(lines);
        }
        lines.push(text.to_string());
    }
}

/// Header lines as (lower-case name, trimmed value).
fn parse_headers(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn header_has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The request and its HTTP version, or `None` if the start line is malformed.
fn parse_request(lines: &[String]) -> Option<(Recorded, String)> {
    let (start, rest) = lines.split_first()?;
    let mut parts = start.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let version = parts.next()?.to_string();
    if method.is_empty() || target.is_empty() || parts.next().is_some() {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = Recorded {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers: parse_headers(rest),
    };
    Some((request, version))
}

fn keeps_alive(version: &str, headers: &[(String, String)]) -> bool {
    if header_has_token(headers, "connection", "close") {
        false
    } else if version == "HTTP/1.0" {
        header_has_token(headers, "connection", "keep-alive")
    } else {
        true
    }
}

/// Reads and drops a request body (`Content-Length` or chunked).
fn discard_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> io::Result<()> {
    if header_has_token(headers, "transfer-encoding", "chunked") {
        read_chunked(reader).map(drop)
    } else if let Some(length) = header_value(headers, "content-length") {
        let length: u64 = length
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length"))?;
        let copied = io::copy(&mut reader.take(length), &mut io::sink())?;
        if copied == length {
            Ok(())
        } else {
            Err(io::ErrorKind::UnexpectedEof.into())
        }
    } else {
        Ok(())
    }
}

/// Reads a chunked body to its end (trailers dropped) and returns its bytes.
fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

/// Writes `reply`, applying its delays and fault. Returns whether the
/// connection may serve another request.
fn send_reply(writer: &mut TcpStream, reply: &Reply, client_keeps_alive: bool) -> bool {
    if !reply.head_delay.is_zero() {
        thread::sleep(reply.head_delay);
    }
    match reply.fault {
        Fault::CloseBeforeHead => {
            let _ = writer.shutdown(Shutdown::Both);
            return false;
        }
        Fault::ResetBeforeHead => {
            set_linger_zero(writer);
            return false;
        }
        Fault::None | Fault::TruncateBody | Fault::ResetMidBody => {}
    }
    let keep_alive = client_keeps_alive && !header_has_token(&reply.headers, "connection", "close");
    let reason = reply
        .reason
        .clone()
        .unwrap_or_else(|| reason_phrase(reply.status).to_string());
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !reply.has_header("content-length") {
        head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    if !reply.has_header("connection") {
        let connection = if keep_alive { "keep-alive" } else { "close" };
        head.push_str(&format!("Connection: {connection}\r\n"));
    }
    head.push_str("\r\n");
    if writer
        .write_all(head.as_bytes())
        .and_then(|()| writer.flush())
        .is_err()
    {
        return false;
    }
    if !reply.body_delay.is_zero() {
        thread::sleep(reply.body_delay);
    }
    let half = &reply.body[..reply.body.len() / 2];
    match reply.fault {
        Fault::TruncateBody => {
            let _ = writer.write_all(half).and_then(|()| writer.flush());
            let _ = writer.shutdown(Shutdown::Both);
            false
        }
        Fault::ResetMidBody => {
            let _ = writer.write_all(half).and_then(|()| writer.flush());
            set_linger_zero(writer);
            false
        }
        Fault::None | Fault::CloseBeforeHead | Fault::ResetBeforeHead => {
            writer
                .write_all(&reply.body)
                .and_then(|()| writer.flush())
                .is_ok()
                && keep_alive
        }
    }
}

/// Makes the coming close of `stream` send RST instead of FIN. std keeps
/// `TcpStream::set_linger` unstable, so this calls `setsockopt` directly.
#[cfg(unix)]
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    use std::os::raw::{c_int, c_void};

    #[repr(C)]
    struct Linger {
        l_onoff: c_int,
        l_linger: c_int,
    }
    extern "C" {
        fn setsockopt(
            socket: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
    }
    #[cfg(target_os = "linux")]
    const SOL_SOCKET: c_int = 1;
    #[cfg(target_os = "linux")]
    const SO_LINGER: c_int = 13;
    #[cfg(not(target_os = "linux"))]
    const SOL_SOCKET: c_int = 0xffff;
    #[cfg(not(target_os = "linux"))]
    const SO_LINGER: c_int = 0x0080;

    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a pointer to a live `struct
    // linger` of the size passed.
    unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            std::ptr::addr_of!(linger).cast::<c_void>(),
            std::mem::size_of::<Linger>() as u32,
        );
    }
}

#[cfg(not(unix))]
fn set_linger_zero(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Both);
}

/// A ureq agent for talking to the fake OTX directly: statuses are not
/// errors, no proxy from the environment, a 10 s global timeout.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

// ---------------------------------------------------------------------------
// The relay process

/// Which stream of the child a line came from.
#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Everything the child printed, as complete lines.
#[derive(Default)]
struct Output {
    all: Mutex<String>,
    stdout: Mutex<String>,
    stderr: Mutex<String>,
}

impl Output {
    fn push(&self, stream: Stream, line: &str) {
        let own = match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        };
        lock(own).push_str(line);
        lock(&self.all).push_str(line);
    }
}

fn spawn_reader(
    source: impl Read + Send + 'static,
    output: &Arc<Output>,
    stream: Stream,
) -> JoinHandle<()> {
    let output = Arc::clone(output);
    thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let mut text = String::from_utf8_lossy(&line).into_owned();
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    output.push(stream, &text);
                }
            }
        }
    })
}

/// Whether the relay reads `name` (any case): the variables a test process may
/// have inherited and that must not leak into the relay under test.
fn is_relay_variable(name: &str) -> bool {
    const EXACT: [&str; 10] = [
        "SECRET_KEY",
        "CTR_ENTITIES_LIMIT",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "HOST",
        "PORT",
    ];
    const PREFIXES: [&str; 5] = ["AVOTX_", "RELAY_", "CACHE_", "OTX_", "VERDICT_"];
    let name = name.to_ascii_uppercase();
    EXACT.contains(&name.as_str()) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A port free on 127.0.0.1 right now. The relay refuses `PORT=0` (SPEC §1
/// wants 1–65535), so the harness picks the port; `Relay::spawn` retries if
/// another process takes it in between.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}

/// The relay binary with a clean environment: the inherited relay variables
/// removed, then the test defaults, `env`, and the removals of `remove`.
fn relay_command(otx_url: &str, env: &[(&str, &str)], remove: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_otx-relay"));
    let inherited: Vec<OsString> = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.to_str().is_some_and(is_relay_variable))
        .collect();
    for name in inherited {
        command.env_remove(name);
    }
    command
        .env("HOST", "127.0.0.1")
        .env("PORT", free_port().to_string())
        .env("SECRET_KEY", SECRET)
        .env("AVOTX_URL", otx_url)
        .env("CACHE_TTL", "0");
    for (name, value) in env {
        command.env(name, value);
    }
    for name in remove {
        command.env_remove(name);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The address of the `otx-relay <version> listening on http://<addr>` line.
fn listening_addr(stdout: &str) -> Option<SocketAddr> {
    stdout.lines().find_map(|line| {
        let (before, after) = line.split_once(" listening on http://")?;
        if !before.starts_with("otx-relay ") {
            return None;
        }
        after.trim().trim_end_matches('/').parse().ok()
    })
}

/// The secrets no log line may hold, with the labels that name them in failures.
fn builtin_secrets() -> Vec<(String, String)> {
    vec![
        ("SECRET".to_string(), SECRET.to_string()),
        ("KEY".to_string(), KEY.to_string()),
        ("token()".to_string(), token()),
    ]
}

/// Looks for any secret in `logs`: the built-in ones (`SECRET`, `KEY`,
/// `token()`) and `extra`. Returns a description naming the secret by label and
/// the line by number, never the secret itself (it is redacted from the line).
pub fn find_secret(logs: &str, extra: &[String]) -> Option<String> {
    let mut secrets = builtin_secrets();
    secrets.extend(
        extra
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .map(|(i, s)| (format!("forbid #{i}"), s.clone())),
    );
    let (number, line, label) = logs.lines().enumerate().find_map(|(i, line)| {
        let (label, _) = secrets.iter().find(|(_, secret)| line.contains(secret))?;
        Some((i + 1, line, label.clone()))
    })?;
    // Redact the longest first, so that no secret is left half-shown when one
    // contains another.
    secrets.sort_by_key(|(_, secret)| std::cmp::Reverse(secret.len()));
    let redacted = secrets
        .iter()
        .fold(line.to_string(), |line, (label, secret)| {
            line.replace(secret.as_str(), &format!("<{label}>"))
        });
    Some(format!(
        "secret {label} appears in the relay's output, line {number}: {redacted}"
    ))
}

/// A relay that exited at start-up, as `Relay::start_failure` saw it.
#[derive(Debug)]
pub struct Exited {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// A running `otx-relay` child process. Dropping it kills the process and
/// checks that no secret reached its output.
pub struct Relay {
    child: Child,
    addr: SocketAddr,
    output: Arc<Output>,
    readers: Vec<JoinHandle<()>>,
    forbidden: Mutex<Vec<String>>,
}

impl Relay {
    /// Starts the relay on 127.0.0.1 and a free port, against `otx`, with the
    /// test defaults (`SECRET_KEY=SECRET`, `CACHE_TTL=0`) overridden by `env`;
    /// an entry with the value "" sets the variable to empty. Waits (max 10 s)
    /// for the `listening on` line, and panics with the relay's output if it
    /// exits before.
    pub fn start(otx: &FakeOtx, env: &[(&str, &str)]) -> Relay {
        Relay::start_without(otx, env, &[])
    }

    /// As `start`, then unsets each variable of `remove` (e.g. `SECRET_KEY`).
    pub fn start_without(otx: &FakeOtx, env: &[(&str, &str)], remove: &[&str]) -> Relay {
        Relay::spawn(&otx.url(), env, remove)
    }

    /// As `start_without`, with any `AVOTX_URL` (an unreachable one, say).
    pub fn spawn(otx_url: &str, env: &[(&str, &str)], remove: &[&str]) -> Relay {
        let port_chosen_by_test =
            env.iter().any(|(name, _)| *name == "PORT") || remove.contains(&"PORT");
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Relay::launch(otx_url, env, remove) {
                Ok(relay) => return relay,
                Err(failure)
                    if !port_chosen_by_test
                        && attempts < 5
                        && failure.to_ascii_lowercase().contains("in use") => {}
                Err(failure) => panic!("{failure}"),
            }
        }
    }

    /// One start: the relay listening, or why not (with its output).
    fn launch(otx_url: &str, env: &[(&str, &str)], remove: &[&str]) -> Result<Relay, String> {
        let binary = env!("CARGO_BIN_EXE_otx-relay");
        let mut child = relay_command(otx_url, env, remove)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let output = Arc::new(Output::default());
        let readers = vec![
            spawn_reader(
                child.stdout.take().expect("piped stdout"),
                &output,
                Stream::Stdout,
            ),
            spawn_reader(
                child.stderr.take().expect("piped stderr"),
                &output,
                Stream::Stderr,
            ),
        ];
        // Dropped on failure: `Drop` kills the child and checks its output.
        let mut relay = Relay {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            output,
            readers,
            forbidden: Mutex::new(Vec::new()),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listening = listening_addr(&lock(&relay.output.stdout));
            if let Some(addr) = listening {
                relay.addr = addr;
                return Ok(relay);
            }
            if let Ok(Some(status)) = relay.child.try_wait() {
                relay.join_readers();
                return Err(format!(
                    "otx-relay exited ({status}) before its `listening on` line; its output:\n{}",
                    relay.logs()
                ));
            }
            if Instant::now() > deadline {
                let _ = relay.child.kill();
                let _ = relay.child.wait();
                relay.join_readers();
                return Err(format!(
                    "otx-relay printed no `listening on` line within 10 s; its output:\n{}",
                    relay.logs()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs the relay with a configuration it must refuse: waits (max 10 s)
    /// for it to exit and returns what it printed. Panics if it starts
    /// listening instead, or if its output holds a secret.
    pub fn start_failure(otx: &FakeOtx, env: &[(&str, &str)], remove: &[&str]) -> Exited {
        let mut child = relay_command(&otx.url(), env, remove)
            .spawn()
            .expect("start otx-relay");
        let output = Arc::new(Output::default());
        let readers = [
            spawn_reader(
                child.stdout.take().expect("piped stdout"),
                &output,
                Stream::Stdout,
            ),
            spawn_reader(
                child.stderr.take().expect("piped stderr"),
                &output,
                Stream::Stderr,
            ),
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline || listening_addr(&lock(&output.stdout)).is_some() {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "otx-relay did not refuse to start; its output:\n{}",
                    lock(&output.all)
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        for reader in readers {
            let _ = reader.join();
        }
        if let Some(leak) = find_secret(&lock(&output.all), &[]) {
            panic!("{leak}");
        }
        let stdout = lock(&output.stdout).clone();
        let stderr = lock(&output.stderr).clone();
        Exited {
            code: status.code(),
            stdout,
            stderr,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Adds `secret` to the strings the output must never contain (checked on `Drop`).
    pub fn forbid(&self, secret: &str) {
        lock(&self.forbidden).push(secret.to_string());
    }

    /// POSTs `body` (as JSON) with an optional `Authorization` value; returns
    /// the status and the JSON answer. Panics if the answer is not JSON.
    pub fn post(&self, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        let (status, _, bytes) = self.request("POST", path, &headers, body.as_bytes());
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "POST {path} answered {status} with a body that is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, json)
    }

    /// POST with `Authorization: Bearer <token()>`.
    pub fn post_auth(&self, path: &str, body: &str) -> (u16, Value) {
        self.post(path, Some(&bearer(&token())), body)
    }

    /// One request over a fresh connection (`Connection: close` unless
    /// `headers` says otherwise), written and read by hand so that nothing is
    /// added or hidden. `Host` and `Content-Length` are added unless given.
    /// Returns the status, the headers (names lower-cased) and the body
    /// (de-chunked).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Headers, Vec<u8>) {
        let given = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !given("host") {
            head.push_str(&format!("Host: {}\r\n", self.addr));
        }
        if !given("connection") {
            head.push_str("Connection: close\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let bodyless = body.is_empty() && matches!(method, "GET" | "HEAD");
        if !given("content-length") && !given("transfer-encoding") && !bodyless {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");

        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to the relay at {}: {e}", self.addr));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
        // The relay may answer early (413) and close before reading it all,
        // so a failed write is not an error: the answer is what counts.
        let _ = stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body));
        let mut reader = BufReader::new(stream);
        read_response(&mut reader, method)
            .unwrap_or_else(|e| panic!("{method} {path}: no complete answer from the relay: {e}"))
    }

    /// Sends SIGTERM and waits (max 15 s) for the exit; returns the exit code
    /// (`None` if a signal ended it). Panics if it does not exit.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        // A relay that already exited makes `kill` fail; the wait below tells.
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.join_readers();
                    return status.code();
                }
                Ok(None) if Instant::now() > deadline => panic!(
                    "otx-relay did not exit within 15 s of SIGTERM; its output:\n{}",
                    self.logs()
                ),
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for otx-relay: {e}"),
            }
        }
    }

    /// Everything the relay printed so far, stdout and stderr interleaved by line.
    pub fn logs(&self) -> String {
        lock(&self.output.all).clone()
    }

    /// What the relay printed on stdout (start-up line, access log).
    pub fn stdout(&self) -> String {
        lock(&self.output.stdout).clone()
    }

    /// What the relay printed on stderr (warnings, errors).
    pub fn stderr(&self) -> String {
        lock(&self.output.stderr).clone()
    }

    /// Waits (max 5 s) until the output contains `needle`; returns whether it did.
    pub fn wait_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if lock(&self.output.all).contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn join_readers(&mut self) {
        join_readers(&mut self.readers);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SIGTERM first, so the relay exits through its own shutdown path
        // (which is also what lets coverage tools write their data); kill it
        // if it has not gone within a second.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(1);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < until {
                thread::sleep(Duration::from_millis(5));
            }
            if matches!(self.child.try_wait(), Ok(None)) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        self.join_readers();
        if thread::panicking() {
            return;
        }
        let extra = lock(&self.forbidden).clone();
        if let Some(leak) = find_secret(&self.logs(), &extra) {
            panic!("{leak}");
        }
    }
}

/// Reads one HTTP/1.1 response (skipping 1xx interim ones) to the end of its
/// body: `Content-Length`, chunked, or until the connection closes.
fn read_response(reader: &mut impl BufRead, method: &str) -> io::Result<(u16, Headers, Vec<u8>)> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    loop {
        let lines = read_head(reader).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a complete head",
            )
        })?;
        let status_line = &lines[0];
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let headers = parse_headers(&lines[1..]);
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else if header_has_token(&headers, "transfer-encoding", "chunked") {
            read_chunked(reader)?
        } else if let Some(length) = header_value(&headers, "content-length") {
            let length: usize = length
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {length:?}")))?;
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            body
        } else {
            let mut body = Vec::new();
            reader.read_to_end(&mut body)?;
            body
        };
        return Ok((status, headers, body));
    }
}

// ---------------------------------------------------------------------------
// JSON checks

/// Compares `actual` to `expected` as whole documents (no missing, no extra
/// key; arrays in order). A string of `expected` can be a placeholder:
///
/// - `<<any>>`: any value at all;
/// - `<<uuid>>`: a lower-case 8-4-4-4-12 hex UUID;
/// - `<<prefix:XYZ>>`: `XYZ` followed by such a UUID;
/// - `<<time>>`: `YYYY-MM-DDTHH:MM:SS.sssZ`;
/// - `<<re:PATTERN>>`: a string fully matching PATTERN, a small regex subset:
///   literals, `.`, `[a-z]`/`[^…]`, `\d \w \s \D \W \S`, `\` before any other
///   character for itself, `( | )`, and `* + ? {n} {n,} {n,m}` (greedy).
///
/// On a mismatch, panics with the JSON path of the first difference and both
/// documents pretty-printed.
#[track_caller]
pub fn check_json(actual: &Value, expected: &Value) {
    if let Err((path, why)) = compare(actual, expected, "$") {
        panic!(
            "JSON mismatch at {path}: {why}\n--- expected ---\n{}\n--- actual ---\n{}",
            pretty(expected),
            pretty(actual)
        );
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// `path` extended by an object key, `.key` when it reads well, else `["key"]`.
fn key_path(path: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if simple {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::from(key))
    }
}

/// A short rendering of `value` for a failure message.
fn brief(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text
    }
}

fn compare(actual: &Value, expected: &Value, path: &str) -> Result<(), (String, String)> {
    let mismatch = |why: String| Err((path.to_string(), why));
    match (expected, actual) {
        (Value::String(pattern), _) if is_placeholder(pattern) => {
            match_placeholder(pattern, actual).or_else(mismatch)
        }
        (Value::Object(expected), Value::Object(actual)) => {
            let mut keys: Vec<&String> = expected.keys().chain(actual.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = key_path(path, key);
                match (expected.get(key), actual.get(key)) {
                    (Some(e), Some(a)) => compare(a, e, &child)?,
                    (Some(e), None) => {
                        return Err((child, format!("missing, expected {}", brief(e))))
                    }
                    (None, Some(a)) => {
                        return Err((child, format!("unexpected key, holding {}", brief(a))))
                    }
                    (None, None) => {}
                }
            }
            Ok(())
        }
        (Value::Array(expected), Value::Array(actual)) => {
            if expected.len() != actual.len() {
                return mismatch(format!(
                    "expected an array of {} items, found {}",
                    expected.len(),
                    actual.len()
                ));
            }
            for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
                compare(a, e, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Number(e), Value::Number(a)) if e == a || e.as_f64() == a.as_f64() => Ok(()),
        _ if expected == actual => Ok(()),
        _ => mismatch(format!(
            "expected {}, found {}",
            brief(expected),
            brief(actual)
        )),
    }
}

fn is_placeholder(s: &str) -> bool {
    s.len() >= 4 && s.starts_with("<<") && s.ends_with(">>")
}

fn match_placeholder(placeholder: &str, actual: &Value) -> Result<(), String> {
    let inner = &placeholder[2..placeholder.len() - 2];
    if inner == "any" {
        return Ok(());
    }
    let fail = || Err(format!("expected {placeholder}, found {}", brief(actual)));
    let Value::String(text) = actual else {
        return fail();
    };
    let ok = if inner == "uuid" {
        is_uuid(text)
    } else if inner == "time" {
        is_time(text)
    } else if let Some(prefix) = inner.strip_prefix("prefix:") {
        text.strip_prefix(prefix).is_some_and(is_uuid)
    } else if let Some(pattern) = inner.strip_prefix("re:") {
        regex_full_match(pattern, text)
    } else {
        panic!("unknown placeholder {placeholder:?} in the expected document")
    };
    if ok {
        Ok(())
    } else {
        fail()
    }
}

/// A lower-case 8-4-4-4-12 hex UUID.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ`.
pub fn is_time(s: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddZ";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(b, &shape)| match shape {
            b'd' => b.is_ascii_digit(),
            _ => b == shape,
        })
}

// A tiny backtracking regex, enough for error messages and ids.

/// Alternatives, each a sequence of pieces.
type Alternatives = Vec<Vec<Piece>>;

struct Piece {
    node: Node,
    min: usize,
    max: usize,
}

enum Node {
    Char(char),
    Any,
    Class {
        ranges: Vec<(char, char)>,
        negated: bool,
    },
    Group(Alternatives),
}

/// Whether all of `text` matches `pattern`. Panics on a malformed pattern.
pub fn regex_full_match(pattern: &str, text: &str) -> bool {
    let mut parser = RegexParser {
        chars: pattern.chars().collect(),
        pos: 0,
    };
    let alternatives = parser
        .alternatives()
        .and_then(|alts| match parser.peek() {
            None => Ok(alts),
            Some(c) => Err(format!("unexpected {c:?}")),
        })
        .unwrap_or_else(|e| panic!("bad pattern {pattern:?} at {}: {e}", parser.pos));
    let input: Vec<char> = text.chars().collect();
    match_alternatives(&alternatives, &input, 0, &mut |end| end == input.len())
}

struct RegexParser {
    chars: Vec<char>,
    pos: usize,
}

impl RegexParser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Result<char, String> {
        let c = self.peek().ok_or("unexpected end")?;
        self.pos += 1;
        Ok(c)
    }

    fn alternatives(&mut self) -> Result<Alternatives, String> {
        let mut alternatives = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alternatives.push(self.sequence()?);
        }
        Ok(alternatives)
    }

    fn sequence(&mut self) -> Result<Vec<Piece>, String> {
        let mut pieces = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let node = self.atom()?;
            let (min, max) = self.quantifier()?;
            pieces.push(Piece { node, min, max });
        }
        Ok(pieces)
    }

    fn atom(&mut self) -> Result<Node, String> {
        match self.next()? {
            '(' => {
                if self.chars[self.pos..].starts_with(&['?', ':']) {
                    self.pos += 2;
                }
                let alternatives = self.alternatives()?;
                if self.next()? != ')' {
                    return Err("expected ')'".into());
                }
                Ok(Node::Group(alternatives))
            }
            '.' => Ok(Node::Any),
            '[' => self.class(),
            '\\' => self.escape(),
            c @ ('*' | '+' | '?' | '{' | ')' | '^' | '$') => Err(format!(
                "{c:?} is not supported here (matches are always whole)"
            )),
            c => Ok(Node::Char(c)),
        }
    }

    fn escape(&mut self) -> Result<Node, String> {
        let class = |ranges: &[(char, char)], negated| Node::Class {
            ranges: ranges.to_vec(),
            negated,
        };
        const DIGIT: &[(char, char)] = &[('0', '9')];
        const WORD: &[(char, char)] = &[('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')];
        const SPACE: &[(char, char)] = &[(' ', ' '), ('\t', '\r')];
        Ok(match self.next()? {
            'd' => class(DIGIT, false),
            'D' => class(DIGIT, true),
            'w' => class(WORD, false),
            'W' => class(WORD, true),
            's' => class(SPACE, false),
            'S' => class(SPACE, true),
            c => Node::Char(c),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self.next()?;
            if c == ']' && !first {
                return Ok(Node::Class { ranges, negated });
            }
            first = false;
            let low = match c {
                '\\' => match self.escape()? {
                    Node::Char(c) => c,
                    Node::Class { ranges: more, .. } => {
                        ranges.extend(more);
                        continue;
                    }
                    Node::Any | Node::Group(_) => unreachable!("escape gives a char or a class"),
                },
                c => c,
            };
            let is_range = self.peek() == Some('-') && self.chars.get(self.pos + 1) != Some(&']');
            if is_range {
                self.pos += 1;
                let high = match self.next()? {
                    '\\' => self.next()?,
                    c => c,
                };
                ranges.push((low, high));
            } else {
                ranges.push((low, low));
            }
        }
    }

    fn quantifier(&mut self) -> Result<(usize, usize), String> {
        let bounds = match self.peek() {
            Some('*') => (0, usize::MAX),
            Some('+') => (1, usize::MAX),
            Some('?') => (0, 1),
            Some('{') => {
                let close = self.chars[self.pos..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or("unclosed '{'")?;
                let inside: String = self.chars[self.pos + 1..self.pos + close].iter().collect();
                let number = |s: &str| s.trim().parse::<usize>().map_err(|e| e.to_string());
                let bounds = match inside.split_once(',') {
                    None => (number(&inside)?, number(&inside)?),
                    Some((min, "")) => (number(min)?, usize::MAX),
                    Some((min, max)) => (number(min)?, number(max)?),
                };
                self.pos += close;
                bounds
            }
            _ => return Ok((1, 1)),
        };
        self.pos += 1;
        Ok(bounds)
    }
}

fn match_alternatives(
    alternatives: &[Vec<Piece>],
    input: &[char],
    pos: usize,
    then: &mut dyn FnMut(usize) -> bool,
) -> bool {
    alternatives
        .iter()
        .any(|sequence| match_sequence(sequence, input, pos, then))
}

fn match_sequence(
    sequence: &[Piece],
    input: &[char],
    pos: usize,
    then: &mut dyn FnMut(usize) -> bool,
) -> bool {
    match sequence.split_first() {
        None => then(pos),
        Some((piece, rest)) => match_piece(piece, 0, input, pos, &mut |end| {
            match_sequence(rest, input, end, then)
        }),
    }
}

/// Greedy repetition: one more of `piece` if allowed, else what follows.
fn match_piece(
    piece: &Piece,
    count: usize,
    input: &[char],
    pos: usize,
    then: &mut dyn FnMut(usize) -> bool,
) -> bool {
    if count < piece.max {
        let more = match_node(&piece.node, input, pos, &mut |end| {
            // An empty repetition past the minimum would loop forever.
            (end != pos || count < piece.min) && match_piece(piece, count + 1, input, end, then)
        });
        if more {
            return true;
        }
    }
    count >= piece.min && then(pos)
}

fn match_node(
    node: &Node,
    input: &[char],
    pos: usize,
    then: &mut dyn FnMut(usize) -> bool,
) -> bool {
    let Some(&c) = input.get(pos) else {
        return match node {
            Node::Group(alternatives) => match_alternatives(alternatives, input, pos, then),
            _ => false,
        };
    };
    match node {
        Node::Char(expected) => c == *expected && then(pos + 1),
        Node::Any => then(pos + 1),
        Node::Class { ranges, negated } => {
            ranges.iter().any(|&(low, high)| (low..=high).contains(&c)) != *negated && then(pos + 1)
        }
        Node::Group(alternatives) => match_alternatives(alternatives, input, pos, then),
    }
}

/// `POST /version` answers 200 with the crate version: the relay serves.
#[track_caller]
pub fn check_version_answers(relay: &Relay) {
    let (status, body) = relay.post("/version", None, "");
    assert_eq!(status, 200);
    check_json(&body, &json!({"version": env!("CARGO_PKG_VERSION")}));
}

/// The relay refuses `variable=value` at start-up: a non-zero exit, one
/// line on stderr that names the variable (`invalid VAR: …`), no panic.
#[track_caller]
pub fn check_refused(otx: &FakeOtx, variable: &str, value: &str) -> Exited {
    let exited = Relay::start_failure(otx, &[(variable, value)], &[]);
    let context = format!("{variable}={value:?}: {exited:?}");
    assert!(
        exited.code.is_some_and(|code| code != 0),
        "a non-zero exit code: {context}"
    );
    assert_eq!(
        exited.stderr.lines().count(),
        1,
        "one line on stderr: {context}"
    );
    assert!(
        exited.stderr.contains(&format!("invalid {variable}: ")),
        "the line names the variable: {context}"
    );
    let all = format!("{}{}", exited.stdout, exited.stderr);
    assert!(
        !all.contains("panicked") && !all.contains("RUST_BACKTRACE"),
        "no panic: {context}"
    );
    exited
}

/// The judgement and verdict expected for `observable` with `disposition`
/// (1 Clean, 2 Malicious, 3 Suspicious), as `check_json` patterns: ids,
/// times and the judgement id by placeholder; confidence and severity as
/// SPEC §7 ties them to the disposition.
pub fn expected_verdict(
    observable: &Value,
    source_uri: &str,
    disposition: u8,
    reason: &str,
) -> (Value, Value) {
    let (name, confidence, severity) = match disposition {
        1 => ("Clean", "High", "None"),
        2 => ("Malicious", "High", "High"),
        _ => ("Suspicious", "Medium", "Medium"),
    };
    let valid_time = json!({"start_time": "<<time>>", "end_time": "<<time>>"});
    let judgement = json!({
        "type": "judgement",
        "schema_version": "1.0.17",
        "id": "<<prefix:transient:judgement->>",
        "observable": observable,
        "disposition": disposition,
        "disposition_name": name,
        "source": "AlienVault OTX",
        "source_uri": source_uri,
        "priority": 85,
        "confidence": confidence,
        "severity": severity,
        "tlp": "white",
        "reason": reason,
        "valid_time": valid_time,
    });
    let verdict = json!({
        "type": "verdict",
        "disposition": disposition,
        "disposition_name": name,
        "observable": observable,
        "valid_time": valid_time,
        "judgement_id": "<<prefix:transient:judgement->>",
    });
    (judgement, verdict)
}

/// What a short-lived `otx-relay` command did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `otx-relay args…` with only `env` in its environment; fails the
/// test if it has not exited within 10 s.
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_otx-relay"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run otx-relay");
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = receiver
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("otx-relay {args:?} (pid {pid}) did not exit within 10 s"))
        .expect("wait for otx-relay");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Lets the threads reading a child's pipes drain them (max 2 s: a
/// grandchild holding them open must not hang the suite).
pub fn join_readers(readers: &mut Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    for reader in std::mem::take(readers) {
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
}
