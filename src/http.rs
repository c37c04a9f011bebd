//! Requests and replies as plain values. Nothing here knows tiny_http
//! (`server.rs` converts) or any endpoint (`routes.rs` dispatches); JSON
//! answers are made by `answer.rs`.

use std::io::Read;

/// A request, read whole (the body is at most 1 MiB).
#[derive(Default)]
pub struct Request {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for Request {
    // Hand-written: header values (the Bearer JWT) and the body (observables)
    // are never printed, only header names and the body's length.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// An answer's bytes: one buffer, or parts sent one after the other (a big
/// answer's docs are never copied into one buffer).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Body(Vec<Vec<u8>>);

impl Body {
    pub fn parts(parts: Vec<Vec<u8>>) -> Body {
        Body(parts)
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, in order, without copying them; each part is freed once
    /// it has been read.
    pub fn into_reader(self) -> impl std::io::Read + Send + 'static {
        Parts {
            parts: self.0.into_iter(),
            part: std::io::Cursor::new(Vec::new()),
        }
    }

    /// The bytes in one buffer (for tests).
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.concat()
    }
}

/// A `Body` being read.
struct Parts {
    parts: std::vec::IntoIter<Vec<u8>>,
    part: std::io::Cursor<Vec<u8>>,
}

impl Read for Parts {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.part.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.parts.next() {
                Some(next) => self.part = std::io::Cursor::new(next),
                None => return Ok(0),
            }
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body(vec![bytes])
    }
}

/// An answer: an HTTP status and a body, already serialized (the CTIM
/// entities are written straight to it; no JSON tree is built).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Body,
    /// `application/json`, but for `/metrics`.
    pub content_type: &'static str,
    /// OTX retries it took (for the access log).
    pub retries: u32,
}

impl Reply {
    /// A JSON answer (HTTP 200) already serialized.
    pub fn body(body: Body) -> Reply {
        Reply {
            status: 200,
            body,
            content_type: "application/json",
            retries: 0,
        }
    }

    /// A text answer (HTTP 200) of `content_type`.
    pub fn text(body: String, content_type: &'static str) -> Reply {
        Reply {
            status: 200,
            body: body.into_bytes().into(),
            content_type,
            retries: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_reads_as_its_parts_in_order_empty_ones_included() {
        let body = Body::parts(vec![
            b"ab".to_vec(),
            Vec::new(),
            b"cde".to_vec(),
            Vec::new(),
        ]);
        let mut read = Vec::new();
        body.into_reader().read_to_end(&mut read).unwrap();
        assert_eq!(read, b"abcde");
    }
}
