//! Requests and replies as plain values. Nothing here knows tiny_http
//! (`server.rs` converts) or any endpoint (`routes.rs` dispatches).

use serde::Serialize;

use crate::error::{envelope, RelayError};

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

/// An answer: an HTTP status and a body, already serialized (the CTIM
/// entities are written straight to it; no JSON tree is built).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// `application/json`, but for `/metrics`.
    pub content_type: &'static str,
    /// OTX retries it took (for the access log).
    pub retries: u32,
}

impl Reply {
    /// `body` as JSON, HTTP 200.
    pub fn ok(body: &impl Serialize) -> Reply {
        Reply::json(200, body)
    }

    /// `{"data": data}`.
    pub fn data(data: impl Serialize) -> Reply {
        Reply::ok(&envelope(Some(data), &[]))
    }

    /// A lone error, with its HTTP status.
    pub fn error(error: RelayError) -> Reply {
        Reply::json(error.http_status(), &envelope::<()>(None, &[error]))
    }

    /// `body` as JSON with `status`.
    pub fn json(status: u16, body: &impl Serialize) -> Reply {
        // The relay's documents hold only strings, numbers and string-keyed
        // structs: serializing them cannot fail. Should it, the client gets
        // an internal error rather than a half-written answer.
        let body = serde_json::to_vec(body).unwrap_or_else(|_| {
            br#"{"errors":[{"code":"internal error","message":"Internal error.","type":"fatal"}]}"#
                .to_vec()
        });
        Reply {
            status,
            body,
            content_type: "application/json",
            retries: 0,
        }
    }

    /// A text answer (HTTP 200) of `content_type`.
    pub fn text(body: String, content_type: &'static str) -> Reply {
        Reply {
            status: 200,
            body: body.into_bytes(),
            content_type,
            retries: 0,
        }
    }
}
