//! HTTP/1.1 on the wire, written by hand for both sides: message heads and
//! bodies, and a keep-alive client.

use std::fmt::{self, Display, Write as _};
use std::io::ErrorKind::{self, BrokenPipe, ConnectionAborted, ConnectionReset};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// HTTP headers as (name, value) pairs, in order.
pub type Headers = Vec<(String, String)>;

/// Reads a message head up to the empty line: its start line, and its
/// headers as (lower-case name, trimmed value). `None` on EOF, error, a head
/// over 64 KiB, or a header line without a colon. Strict, to catch the
/// relay's framing bugs: an empty line before the start line is the start
/// line.
pub(crate) fn read_head(reader: &mut impl BufRead) -> Option<(String, Headers)> {
    let mut limited = reader.by_ref().take(64 * 1024);
    let (mut start, mut headers) = (None, Vec::new());
    loop {
        let mut line = Vec::new();
        limited.read_until(b'\n', &mut line).ok()?;
        if !line.ends_with(b"\n") {
            return None;
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        if start.is_none() {
            start = Some(line.to_string());
        } else if line.is_empty() {
            return Some((start?, headers));
        } else {
            let (k, v) = line.split_once(':')?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

/// The first header called `name` (any case).
pub(crate) fn header<'a, S: AsRef<str>>(headers: &'a [(S, S)], name: &str) -> Option<&'a str> {
    let named = |(k, _): &&(S, S)| k.as_ref().eq_ignore_ascii_case(name);
    headers.iter().find(named).map(|(_, v)| v.as_ref())
}

/// Whether a header `name` lists `token` (comma-separated, any case).
pub(crate) fn has_token<S: AsRef<str>>(headers: &[(S, S)], name: &str, token: &str) -> bool {
    let mut values = headers
        .iter()
        .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name));
    values.any(|(_, v)| {
        v.as_ref()
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

/// A message head: `start`, each of `defaults` that `headers` lack (any
/// case), `headers`, then the empty line.
pub(crate) fn head<S: AsRef<str>>(
    start: fmt::Arguments,
    defaults: &[(&str, &dyn Display)],
    headers: &[(S, S)],
) -> String {
    let mut head = format!("{start}\r\n");
    for (k, v) in defaults {
        if header(headers, k).is_none() {
            let _ = write!(head, "{k}: {v}\r\n");
        }
    }
    for (k, v) in headers {
        let _ = write!(head, "{}: {}\r\n", k.as_ref(), v.as_ref());
    }
    head + "\r\n"
}

/// Reads the body that `headers` frame: chunked (trailers dropped),
/// `Content-Length`, else up to the close when `to_eof`, else none.
pub(crate) fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    to_eof: bool,
) -> io::Result<Vec<u8>> {
    let invalid = |what: String| io::Error::new(ErrorKind::InvalidData, what);
    let mut body = Vec::new();
    // Strict, to catch the relay's framing bugs (RFC 9112 §6.3).
    let (coding, length) = (
        header(headers, "transfer-encoding"),
        header(headers, "content-length"),
    );
    let mut lengths = headers.iter().filter(|(k, _)| k == "content-length");
    let agreed = lengths.all(|(_, v)| Some(v.as_str()) == length);
    let digits = length.is_none_or(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    if !agreed || !digits || (coding.is_some() && length.is_some()) {
        let framing = format!("Content-Length {length:?} (all alike: {agreed}), {coding:?}");
        return Err(invalid(framing));
    }
    if coding.is_some_and(|coding| !coding.eq_ignore_ascii_case("chunked")) {
        return Err(invalid(format!("Transfer-Encoding {coding:?}")));
    }
    if coding.is_some() {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let hex = !size.is_empty() && size.bytes().all(|b| b.is_ascii_hexdigit());
            let size = (u64::from_str_radix(size, 16).ok())
                .filter(|_| hex)
                .ok_or_else(|| invalid(format!("bad chunk size {size:?}")))?;
            if size == 0 {
                break;
            }
            append(reader, size, &mut body)?;
            let mut crlf = [0; 2];
            reader.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(invalid("a chunk not followed by CRLF".into()));
            }
        }
        // Trailers, up to the empty line.
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 && !line.trim().is_empty() {
            line.clear();
        }
    } else if let Some(length) = header(headers, "content-length") {
        let length = length
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {length:?}")))?;
        append(reader, length, &mut body)?;
    } else if to_eof {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// Appends `n` bytes of `reader` to `body`, else fails with `UnexpectedEof`.
/// Read through `take`: `n` is the peer's word, not an allocation to make.
fn append(reader: &mut impl Read, n: u64, body: &mut Vec<u8>) -> io::Result<()> {
    if reader.take(n).read_to_end(body)? as u64 != n {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// One HTTP answer.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Names in lower case, values trimmed, in arrival order.
    pub headers: Headers,
    /// De-chunked.
    pub body: Vec<u8>,
    /// Whether the request went out twice (see `Client::send`).
    pub resent: bool,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (after any interim 1xx) to the end of its body:
/// `Content-Length`, chunked, or until the connection closes. Returns it and
/// whether the connection may carry another request.
fn read_response(reader: &mut impl BufRead, method: &str) -> io::Result<(Response, bool)> {
    let (status, headers) = loop {
        let (start, headers) = read_head(reader).ok_or(ErrorKind::UnexpectedEof)?;
        let status = start.split(' ').nth(1).and_then(|s| s.parse().ok());
        let bad = || io::Error::other(format!("bad status line {start:?}"));
        let status: u16 = status.ok_or_else(bad)?;
        if !(100..200).contains(&status) || status == 101 {
            break (status, headers);
        }
    };
    let bodyless = method == "HEAD" || status == 204 || status == 304;
    let framed = bodyless
        || header(&headers, "content-length").is_some()
        || has_token(&headers, "transfer-encoding", "chunked");
    let body = if bodyless {
        Vec::new()
    } else {
        read_body(reader, &headers, true)?
    };
    let reusable = framed && !has_token(&headers, "connection", "close");
    let response = Response {
        status,
        headers,
        body,
        resent: false,
    };
    Ok((response, reusable))
}

/// A keep-alive HTTP/1.1 client of one server, written by hand so that
/// nothing is added or hidden and a load generator costs little CPU.
/// `Host` and `Content-Length` are added unless given.
pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
    headers: Headers,
    connection: Option<BufReader<TcpStream>>,
}

impl Client {
    /// Connects on the first request; reads and writes time out after 60 s.
    pub fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            timeout: Duration::from_secs(60),
            headers: Vec::new(),
            connection: None,
        }
    }

    /// The read and write timeout of each later connection.
    pub fn timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// A header sent with every request (`Authorization`, say).
    pub fn header(mut self, name: &str, value: &str) -> Client {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// POSTs `body` as JSON.
    pub fn post_json(&mut self, path: &str, body: &str) -> io::Result<Response> {
        let json = [("Content-Type", "application/json")];
        self.send("POST", path, &json, body.as_bytes())
    }

    /// One request, on the kept connection if the server has not closed it
    /// meanwhile, else on a new one. If the kept connection gives back
    /// nothing at all (the server closed it as the request went out), the
    /// request goes once more on a new connection, as HTTP clients do, and
    /// the answer says so (`resent`); an answer cut short is an error, never
    /// asked again. Bytes after an answer are an error too, and after
    /// `Connection: close` the server must close.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let own = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let all: Vec<(&str, &str)> = own.chain(headers.iter().copied()).collect();
        let sized = !(body.is_empty() && matches!(method, "GET" | "HEAD"));
        let sized = sized && header(&all, "transfer-encoding").is_none();
        let defaults: [(&str, &dyn Display); 2] =
            [("Host", &self.addr), ("Content-Length", &body.len())];
        let defaults = &defaults[..if sized { 2 } else { 1 }];
        let head = head(format_args!("{method} {path} HTTP/1.1"), defaults, &all);
        let closing = has_token(&all, "connection", "close");
        let message = [head.as_bytes(), body].concat();
        let mut resent = false;
        let (mut connection, response, reusable) = loop {
            let kept = self.kept()?;
            let reused = kept.is_some();
            let mut connection = match kept {
                Some(connection) => connection,
                None => {
                    let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(self.timeout))?;
                    stream.set_write_timeout(Some(self.timeout))?;
                    BufReader::new(stream)
                }
            };
            // The server may answer early (413) and close before reading it
            // all, so a failed write is not an error: the answer is what counts.
            let _ = connection.get_mut().write_all(&message);
            let nothing = match connection.fill_buf() {
                Ok(bytes) => bytes.is_empty(),
                Err(e) => matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe),
            };
            if reused && nothing && !resent {
                resent = true;
                continue;
            }
            let (mut response, reusable) = read_response(&mut connection, method)?;
            response.resent = resent;
            break (connection, response, reusable);
        };
        if reusable && !closing {
            self.connection = Some(connection);
            return Ok(response);
        }
        // The server must close now, and nothing may follow the answer.
        let mut rest = Vec::new();
        let read = connection.read_to_end(&mut rest);
        if !rest.is_empty() {
            return Err(unasked(rest.len()));
        }
        match read {
            Err(e) if e.kind() != ErrorKind::ConnectionReset => {
                let what = format!("no close after the answer: {e}");
                Err(io::Error::new(e.kind(), what))
            }
            _ => Ok(response),
        }
    }

    /// The kept connection, `None` if there is none or the server has
    /// closed it since its last answer.
    fn kept(&mut self) -> io::Result<Option<BufReader<TcpStream>>> {
        let Some(connection) = self.connection.take() else {
            return Ok(None);
        };
        let stream = connection.get_ref();
        stream.set_nonblocking(true)?;
        let peeked = stream.peek(&mut [0; 64]);
        stream.set_nonblocking(false)?;
        let unasked = connection.buffer().len() + peeked.as_ref().map_or(0, |n| *n);
        match peeked {
            _ if unasked > 0 => Err(self::unasked(unasked)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(Some(connection)),
            _ => Ok(None),
        }
    }
}

/// The error of `n` bytes that followed an answer unannounced.
fn unasked(n: usize) -> io::Error {
    let what = format!("{n} bytes after the last answer, unannounced");
    io::Error::new(ErrorKind::InvalidData, what)
}
