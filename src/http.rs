//! Requests and replies as plain values. Nothing here knows tiny_http
//! (`server.rs` converts) or any endpoint (`routes.rs` dispatches).

use serde_json::Value;

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

/// An answer: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// OTX retries it took (for the access log).
    pub retries: u32,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body,
            retries: 0,
        }
    }

    /// `{"data": data}`.
    pub fn data(data: Value) -> Reply {
        Reply::ok(envelope(Some(data), &[]))
    }

    /// A lone error, with its HTTP status.
    pub fn error(error: RelayError) -> Reply {
        Reply {
            status: error.http_status(),
            body: envelope(None, &[error]),
            retries: 0,
        }
    }
}
