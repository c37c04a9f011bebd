//! otx-relay patch: the request head and body, read strictly (RFC 9112).
//!
//! Upstream tiny_http guessed at ambiguous framing (it ignored
//! `Content-Length` beside any `Transfer-Encoding`, took the first of several
//! lengths, treated every transfer coding as chunked, accepted bare LFs and
//! control characters, and handed the raw socket over as the body of a
//! `Connection: upgrade` request). Behind a proxy that reads the same bytes
//! differently, that is request smuggling. Here every request is either
//! framed one way only, or refused with a [`Refusal`] after which the
//! connection is closed.
//!
//! [`read_request`] reads one whole request, head and body, from any
//! `BufRead`: the server runs it on the connection's own thread, so a
//! request reaches a worker only once it has fully arrived; the fuzz target
//! runs it over bytes.

use std::io::{BufRead, ErrorKind, Read, Result as IoResult};

use crate::common::{HTTPVersion, Header, Method};

/// The largest request head read, in bytes (request line and headers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The most lines a head may have (request line and headers).
pub const MAX_HEAD_LINES: usize = 128;
/// The longest chunk-size line of a chunked body (with its extensions).
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Why a request is refused before its body is read (whole). The server's
/// user answers it with [`Refusal::status`], and the connection is closed
/// after that answer: where the next request would start is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed or ambiguous (400); the reason is a short static text.
    BadRequest(&'static str),
    /// The head is over [`MAX_HEAD_BYTES`] or [`MAX_HEAD_LINES`] (431).
    HeadTooLarge,
    /// The body is larger than the server's limit (413).
    BodyTooLarge,
    /// An `Expect` other than `100-continue` (417).
    ExpectationFailed,
    /// An HTTP version other than 1.0 and 1.1 (505).
    VersionNotSupported,
}

impl Refusal {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::HeadTooLarge => 431,
            Refusal::BodyTooLarge => 413,
            Refusal::ExpectationFailed => 417,
            Refusal::VersionNotSupported => 505,
        }
    }
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: Method,
    pub target: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
    pub framing: Framing,
    /// `Expect: 100-continue`.
    pub expects_continue: bool,
    /// No request may follow this one on the connection.
    pub close: bool,
}

/// What was read of one request.
#[derive(Debug)]
pub enum Read1 {
    /// The connection ended (or stayed silent) before a byte of a head.
    Idle,
    /// A whole request, its body read to its end.
    Request(Head, Vec<u8>),
    /// A request refused; `method` and `target` are what could be read of
    /// its request line, for the log (possibly empty, never trusted).
    Refused {
        refusal: Refusal,
        method: String,
        target: String,
        /// The parsed head, when the refusal came after it (413).
        head: Option<Head>,
    },
}

/// Reads one request: its head (bounded by [`MAX_HEAD_BYTES`] and
/// [`MAX_HEAD_LINES`]), then its body, at most `max_body` bytes.
/// `before_body` runs between the two, once the head is valid and its body
/// fits (the server sends `100 Continue` there).
///
/// An I/O error (a timeout included) after the first byte is returned as
/// such: the connection is to be dropped.
pub fn read_request<R: BufRead>(
    reader: &mut R,
    max_body: usize,
    before_body: impl FnOnce(&Head) -> IoResult<()>,
) -> IoResult<Read1> {
    let raw = match read_head(reader)? {
        HeadBytes::Idle => return Ok(Read1::Idle),
        HeadBytes::Refused(refusal, first_line) => {
            let (method, target) = request_line_words(&first_line);
            return Ok(Read1::Refused {
                refusal,
                method,
                target,
                head: None,
            });
        }
        HeadBytes::Complete(lines) => lines,
    };
    let head = match parse_head(&raw) {
        Ok(head) => head,
        Err(refusal) => {
            let (method, target) = request_line_words(raw.first().map_or(&[][..], |l| l));
            return Ok(Read1::Refused {
                refusal,
                method,
                target,
                head: None,
            });
        }
    };
    let too_large = |head: Head| Read1::Refused {
        refusal: Refusal::BodyTooLarge,
        method: head.method.as_str().to_owned(),
        target: head.target.clone(),
        head: Some(head),
    };
    let body = match head.framing {
        Framing::None => Vec::new(),
        Framing::Length(n) if n > max_body as u64 => return Ok(too_large(head)),
        Framing::Length(n) => {
            before_body(&head)?;
            let mut body = vec![0u8; n as usize];
            reader.read_exact(&mut body)?;
            body
        }
        Framing::Chunked => {
            before_body(&head)?;
            match read_chunked(reader, max_body)? {
                Ok(body) => body,
                Err(Refusal::BodyTooLarge) => return Ok(too_large(head)),
                Err(refusal) => {
                    return Ok(Read1::Refused {
                        refusal,
                        method: head.method.as_str().to_owned(),
                        target: head.target.clone(),
                        head: Some(head),
                    })
                }
            }
        }
    };
    Ok(Read1::Request(head, body))
}

enum HeadBytes {
    Idle,
    Complete(Vec<Vec<u8>>),
    /// With the request line as far as it was read.
    Refused(Refusal, Vec<u8>),
}

/// Reads the lines of a head up to its empty line, without their CRLFs.
/// Empty lines before the request line are skipped (RFC 9112 §2.2), and
/// count towards the size limit.
fn read_head<R: BufRead>(reader: &mut R) -> IoResult<HeadBytes> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut line = Vec::new();
    let mut total = 0usize;
    let mut started = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if !started => {
                // Silent or gone before a byte: an idle connection ends.
                return match e.kind() {
                    ErrorKind::TimedOut
                    | ErrorKind::WouldBlock
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::UnexpectedEof => Ok(HeadBytes::Idle),
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            if started {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            return Ok(HeadBytes::Idle);
        }
        started = true;
        let take = available.len().min(MAX_HEAD_BYTES + 1 - total);
        let (used, end) = match available[..take].iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (take, false),
        };
        line.extend_from_slice(&available[..used]);
        reader.consume(used);
        total += used;
        let first_line = |lines: &Vec<Vec<u8>>, line: &Vec<u8>| {
            lines.first().cloned().unwrap_or_else(|| line.clone())
        };
        if !end {
            if total > MAX_HEAD_BYTES {
                return Ok(HeadBytes::Refused(
                    Refusal::HeadTooLarge,
                    first_line(&lines, &line),
                ));
            }
            continue;
        }
        // A line ends in LF; it must be CRLF.
        line.pop();
        if line.pop() != Some(b'\r') {
            return Ok(HeadBytes::Refused(
                Refusal::BadRequest("a bare LF in the head"),
                first_line(&lines, &line),
            ));
        }
        if total > MAX_HEAD_BYTES {
            return Ok(HeadBytes::Refused(
                Refusal::HeadTooLarge,
                first_line(&lines, &line),
            ));
        }
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            return Ok(HeadBytes::Complete(lines));
        }
        if lines.len() == MAX_HEAD_LINES {
            return Ok(HeadBytes::Refused(
                Refusal::HeadTooLarge,
                first_line(&lines, &line),
            ));
        }
        lines.push(std::mem::take(&mut line));
    }
}

/// The method and target of a request line, as far as they can be told,
/// for the log of a refused request: the first word, and what lies between
/// it and the last word (a bare CR cannot end the line early). Bytes that
/// are not ASCII are shown as `\xNN`; control characters are kept (the
/// log escapes them).
fn request_line_words(line: &[u8]) -> (String, String) {
    let text: String = line
        .iter()
        .map(|&b| {
            if b.is_ascii() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect();
    let (method, rest) = match text.split_once(' ') {
        Some((m, r)) => (m.to_owned(), r),
        None => return (text, String::new()),
    };
    let target = match rest.rsplit_once(' ') {
        Some((t, _version)) => t,
        None => rest,
    };
    (method, target.to_owned())
}

/// `tchar` of RFC 9110 §5.6.2: what a method or a field name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses the lines of a head (without CRLFs) and decides its framing.
pub fn parse_head(lines: &[Vec<u8>]) -> Result<Head, Refusal> {
    let bad = Refusal::BadRequest;
    let request_line = lines.first().ok_or(bad("no request line"))?;
    let mut words = request_line.split(|&b| b == b' ');
    let (method, target, version) = match (words.next(), words.next(), words.next(), words.next())
    {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(bad("the request line is not method, target and version")),
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad("the method is not a token"));
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(bad("the target is not visible ASCII"));
    }
    let version = match version {
        b"HTTP/1.1" => HTTPVersion(1, 1),
        b"HTTP/1.0" => HTTPVersion(1, 0),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Refusal::VersionNotSupported)
        }
        _ => return Err(bad("the HTTP version is malformed")),
    };
    // Both are plain ASCII now.
    let method: Method = std::str::from_utf8(method)
        .ok()
        .and_then(|m| m.parse().ok())
        .ok_or(bad("the method is not a token"))?;
    let target = String::from_utf8_lossy(target).into_owned();

    let mut headers = Vec::with_capacity(lines.len() - 1);
    for line in &lines[1..] {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Err(bad("an obsolete folded header line"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(bad("a header line without a colon"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(bad("a header name is not a token"));
        }
        // Field values: visible ASCII, spaces and tabs (RFC 9110 §5.5);
        // obs-text is refused too, since tiny_http keeps values as ASCII.
        if !value
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(bad("a control character in a header value"));
        }
        let value = trim_ows(value);
        let header = Header::from_bytes(name.to_vec(), value.to_vec())
            .map_err(|()| bad("a header line is malformed"))?;
        headers.push(header);
    }

    let mut lengths = headers.iter().filter(|h| h.field.equiv("Content-Length"));
    let mut codings = headers
        .iter()
        .filter(|h| h.field.equiv("Transfer-Encoding"));
    let length = lengths.next();
    let coding = codings.next();
    if lengths.next().is_some() {
        return Err(bad("several Content-Length headers"));
    }
    if codings.next().is_some() {
        return Err(bad("several Transfer-Encoding headers"));
    }
    let framing = match (length, coding) {
        (Some(_), Some(_)) => return Err(bad("both Content-Length and Transfer-Encoding")),
        (None, Some(coding)) => {
            if version == HTTPVersion(1, 0) {
                return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
            }
            if !coding.value.as_str().eq_ignore_ascii_case("chunked") {
                return Err(bad("a Transfer-Encoding other than chunked"));
            }
            Framing::Chunked
        }
        (Some(length), None) => Framing::Length(content_length(length.value.as_str())?),
        (None, None) => Framing::None,
    };

    // otx-relay patch: an HTTP/1.1 request names exactly one host (RFC
    // 9112 §3.2): a server "MUST respond with a 400" to one without, or
    // with several, which proxies may read differently.
    if version == HTTPVersion(1, 1) {
        match headers.iter().filter(|h| h.field.equiv("Host")).count() {
            0 => return Err(bad("no Host header")),
            1 => {}
            _ => return Err(bad("several Host headers")),
        }
    }

    let expects_continue = match headers.iter().find(|h| h.field.equiv("Expect")) {
        None => false,
        Some(h) if h.value.as_str().eq_ignore_ascii_case("100-continue") => true,
        Some(_) => return Err(Refusal::ExpectationFailed),
    };
    let connection_has = |token: &str| {
        headers
            .iter()
            .filter(|h| h.field.equiv("Connection"))
            .flat_map(|h| h.value.as_str().split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let close = connection_has("close")
        || (version == HTTPVersion(1, 0) && !connection_has("keep-alive"));
    Ok(Head {
        method,
        target,
        version,
        headers,
        framing,
        expects_continue,
        close,
    })
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// `Content-Length = 1*DIGIT`, and small enough to mean something.
fn content_length(value: &str) -> Result<u64, Refusal> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::BadRequest("an unparsable Content-Length"));
    }
    value
        .parse()
        .map_err(|_| Refusal::BadRequest("an unparsable Content-Length"))
}

/// Reads a chunked body (RFC 9112 §7.1) to its end, trailers included
/// (read and dropped), refusing it once it grows past `max_body`. The
/// outer `Result` is I/O; the inner one the request's fate.
fn read_chunked<R: BufRead>(reader: &mut R, max_body: usize) -> IoResult<Result<Vec<u8>, Refusal>> {
    let bad = |why| Ok(Err(Refusal::BadRequest(why)));
    let mut body = Vec::new();
    loop {
        let line = match read_line(reader, MAX_CHUNK_LINE)? {
            Ok(line) => line,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return bad("a chunk size is not hexadecimal");
        }
        if digits > 16 {
            return bad("a chunk size is too large");
        }
        // What may follow the size: chunk extensions, after optional blanks.
        let rest = trim_ows(&line[digits..]);
        if !(rest.is_empty() || rest[0] == b';') {
            return bad("a chunk size is not hexadecimal");
        }
        if !rest.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return bad("a control character in a chunk extension");
        }
        let size = std::str::from_utf8(&line[..digits])
            .ok()
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or(Refusal::BadRequest("a chunk size is too large"));
        let size = match size {
            Ok(size) => size,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if size == 0 {
            break;
        }
        if size > (max_body - body.len()) as u64 {
            return Ok(Err(Refusal::BodyTooLarge));
        }
        let start = body.len();
        body.resize(start + size as usize, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return bad("a chunk does not end in CRLF");
        }
    }
    // Trailer fields, up to the empty line: bounded like a head.
    let mut lines = 0;
    let mut bytes = 0;
    loop {
        let line = match read_line(reader, MAX_HEAD_BYTES)? {
            Ok(line) => line,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if line.is_empty() {
            return Ok(Ok(body));
        }
        lines += 1;
        bytes += line.len() + 2;
        if lines > MAX_HEAD_LINES || bytes > MAX_HEAD_BYTES {
            return Ok(Err(Refusal::HeadTooLarge));
        }
        if line.iter().any(|&b| b != b'\t' && !(0x20..0x7f).contains(&b)) {
            return bad("a control character in a trailer");
        }
    }
}

/// One CRLF-terminated line of at most `max` bytes (CRLF not included).
fn read_line<R: BufRead>(reader: &mut R, max: usize) -> IoResult<Result<Vec<u8>, Refusal>> {
    let mut line = Vec::new();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        let (used, end) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        line.extend_from_slice(&available[..used]);
        reader.consume(used);
        if line.len() > max + 2 {
            return Ok(Err(Refusal::HeadTooLarge));
        }
        if end {
            line.pop();
            if line.pop() != Some(b'\r') {
                return Ok(Err(Refusal::BadRequest("a bare LF in a chunked body")));
            }
            return Ok(Ok(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> IoResult<Read1> {
        read_request(&mut &bytes[..], 1024, |_| Ok(()))
    }

    fn refusal(bytes: &[u8]) -> Refusal {
        match read(bytes) {
            Ok(Read1::Refused { refusal, .. }) => refusal,
            other => panic!("{:?} not refused: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn a_plain_request_and_its_body() {
        let mut bytes = &b"\r\nPOST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX:  y \r\n\r\n[]rest"[..];
        match read_request(&mut bytes, 1024, |_| Ok(())) {
            Ok(Read1::Request(head, body)) => {
                assert_eq!(head.method, Method::Post);
                assert_eq!(head.target, "/a?b");
                assert_eq!(head.framing, Framing::Length(2));
                assert_eq!(head.headers[2].value.as_str(), "y");
                assert!(!head.close);
                assert_eq!(body, b"[]");
            }
            other => panic!("{:?}", other),
        }
        assert_eq!(bytes, b"rest");
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\nHost: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nX: \x7f\r\n\r\n",
        ] {
            assert!(matches!(refusal(head), Refusal::BadRequest(_)));
        }
        assert_eq!(
            refusal(b"POST / HTTP/2.0\r\n\r\n"),
            Refusal::VersionNotSupported
        );
        assert_eq!(
            refusal(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: later\r\n\r\n"),
            Refusal::ExpectationFailed
        );
    }

    #[test]
    fn limits() {
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(refusal(big.as_bytes()), Refusal::HeadTooLarge);
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", "X: 1\r\n".repeat(MAX_HEAD_LINES));
        assert_eq!(refusal(many.as_bytes()), Refusal::HeadTooLarge);
        assert_eq!(
            refusal(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n"),
            Refusal::BodyTooLarge
        );
    }

    #[test]
    fn chunked_bodies() {
        let ok = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\n[]\r\n1 \r\n \r\n0\r\nT: 1\r\n\r\n";
        match read(ok) {
            Ok(Read1::Request(_, body)) => assert_eq!(body, b"[] "),
            other => panic!("{:?}", other),
        }
        let big = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n";
        assert_eq!(refusal(big), Refusal::BodyTooLarge);
        let odd = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]xx0\r\n\r\n";
        assert!(matches!(refusal(odd), Refusal::BadRequest(_)));
    }

    #[test]
    fn refused_request_lines_are_described_for_the_log() {
        match read(b"GET /a\x1b b HTTP/1.1 \xff\r\n\r\n") {
            Ok(Read1::Refused { method, target, .. }) => {
                assert_eq!(method, "GET");
                assert_eq!(target, "/a\x1b b HTTP/1.1");
            }
            other => panic!("{:?}", other),
        }
    }

    #[test]
    fn an_http_1_1_request_names_exactly_one_host() {
        assert_eq!(
            refusal(b"GET / HTTP/1.1\r\n\r\n"),
            Refusal::BadRequest("no Host header")
        );
        assert_eq!(
            refusal(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            Refusal::BadRequest("several Host headers")
        );
        assert_eq!(
            refusal(b"GET / HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n"),
            Refusal::BadRequest("several Host headers")
        );
        // An empty Host is allowed (RFC 9112 §3.2: no authority in the
        // target), and HTTP/1.0 needs none.
        for ok in [&b"GET / HTTP/1.1\r\nHost:\r\n\r\n"[..], b"GET / HTTP/1.0\r\n\r\n"] {
            assert!(matches!(read(ok), Ok(Read1::Request(..))), "{:?}", read(ok));
        }
    }

    #[test]
    fn silence_and_eof_before_a_head_are_idle() {
        assert!(matches!(read(b""), Ok(Read1::Idle)));
        assert!(matches!(read(b"GET / HT"), Err(_)));
    }
}
