//! HTTP/1.1 on the wire, written by hand for both sides: message heads and
//! bodies, and a keep-alive client.

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// HTTP headers as (name, value) pairs, in order.
pub type Headers = Vec<(String, String)>;

/// Reads a message head up to the empty line; the lines come back without
/// their CRLF. `None` on EOF, error, or a head over 64 KiB. Empty lines before
/// the start line are skipped, as RFC 9112 allows.
pub(crate) fn read_head(reader: &mut impl BufRead) -> Option<Vec<String>> {
    let mut limited = reader.by_ref().take(64 * 1024);
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        limited.read_until(b'\n', &mut line).ok()?;
        if !line.ends_with(b"\n") {
            return None;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if !text.is_empty() {
            lines.push(text.to_string());
        } else if !lines.is_empty() {
            return Some(lines);
        }
    }
}

/// Header lines as (lower-case name, trimmed value).
pub(crate) fn parse_headers(lines: &[String]) -> Headers {
    lines
        .iter()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// The first header called `name` (any case).
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let found = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
    found.map(|(_, v)| v.as_str())
}

/// Whether a header `name` lists `token` (comma-separated, any case).
pub(crate) fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Reads the body that `headers` frame: chunked (trailers dropped),
/// `Content-Length`, else up to the close when `to_eof`, else none.
pub(crate) fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    to_eof: bool,
) -> io::Result<Vec<u8>> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut body = Vec::new();
    if has_token(headers, "transfer-encoding", "chunked") {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("bad chunk size {size:?}")))?;
            if size == 0 {
                break;
            }
            // Read through `take`: the size is the peer's word, not an
            // allocation to make up front.
            let start = body.len();
            reader.take(size as u64).read_to_end(&mut body)?;
            let mut crlf = [0; 2];
            reader.read_exact(&mut crlf)?;
            if body.len() - start != size || &crlf != b"\r\n" {
                return Err(invalid("a chunk cut short, or not followed by CRLF".into()));
            }
        }
        // Trailers, up to the empty line.
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 && !line.trim().is_empty() {
            line.clear();
        }
    } else if let Some(length) = header(headers, "content-length") {
        let length: u64 = length
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {length:?}")))?;
        reader.take(length).read_to_end(&mut body)?;
        if body.len() as u64 != length {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    } else if to_eof {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

/// How an exchange failed: `Stale` when the kept connection it used gave
/// back nothing at all (the server had closed it), so that the request may
/// go again on a new one.
enum Attempt {
    Stale,
    Fresh,
}

use Attempt::{Fresh, Stale};

/// One HTTP answer.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Names in lower case, values trimmed, in arrival order.
    pub headers: Headers,
    /// De-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (after any interim 1xx) to the end of its body:
/// `Content-Length`, chunked, or until the connection closes. Returns it and
/// whether the connection may carry another request.
fn read_response(reader: &mut impl BufRead, method: &str) -> io::Result<(Response, bool)> {
    let (status, lines) = loop {
        let lines = read_head(reader).ok_or(io::ErrorKind::UnexpectedEof)?;
        let status = lines[0].split(' ').nth(1).and_then(|s| s.parse().ok());
        let bad = || io::Error::other(format!("bad status line {:?}", lines[0]));
        let status: u16 = status.ok_or_else(bad)?;
        if !(100..200).contains(&status) || status == 101 {
            break (status, lines);
        }
    };
    let headers = parse_headers(&lines[1..]);
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

    /// One request, on the open connection if there is one (and again on a
    /// new one if not a byte of an answer came back on it: the server may
    /// have closed it meanwhile). An answer cut short is an error, never
    /// asked again.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let own = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let all: Vec<(&str, &str)> = own.chain(headers.iter().copied()).collect();
        let given = |name: &str| all.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !given("host") {
            head += &format!("Host: {}\r\n", self.addr);
        }
        for (k, v) in &all {
            head += &format!("{k}: {v}\r\n");
        }
        let bodyless = body.is_empty() && matches!(method, "GET" | "HEAD");
        if !given("content-length") && !given("transfer-encoding") && !bodyless {
            head += &format!("Content-Length: {}\r\n", body.len());
        }
        let message = [head.as_bytes(), b"\r\n", body].concat();
        match self.exchange(&message, method) {
            Err((_, Stale)) => self.exchange(&message, method).map_err(|(e, _)| e),
            result => result.map_err(|(e, _)| e),
        }
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        Ok(stream)
    }

    fn exchange(&mut self, message: &[u8], method: &str) -> Result<Response, (io::Error, Attempt)> {
        let reused = self.connection.is_some();
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => BufReader::new(self.connect().map_err(|e| (e, Fresh))?),
        };
        // The server may answer early (413) and close before reading it all,
        // so a failed write is not an error: the answer is what counts.
        let _ = connection.get_mut().write_all(message);
        let gone = [
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionAborted,
            ErrorKind::BrokenPipe,
        ];
        let stale = match connection.fill_buf() {
            Ok(bytes) => bytes.is_empty(),
            Err(e) => gone.contains(&e.kind()),
        };
        if reused && stale {
            return Err((ErrorKind::ConnectionAborted.into(), Stale));
        }
        let (response, reusable) =
            read_response(&mut connection, method).map_err(|e| (e, Fresh))?;
        if reusable {
            self.connection = Some(connection);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_ends_at_its_empty_line_not_at_the_close() {
        let wire =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT";
        let mut reader = &wire[..];
        let (response, reusable) = read_response(&mut reader, "POST").expect("a response");
        assert_eq!(
            (response.status, &response.body[..], reusable),
            (200, &b"abc"[..], true)
        );
        assert_eq!(reader, b"NEXT", "the bytes after the message stay unread");
    }
}
