//! Requests and replies as plain values, and the one `match` that routes
//! them. Nothing here knows tiny_http; `server.rs` converts.

use std::sync::Arc;

use serde_json::Value;

use crate::error::{envelope, RelayError};
use crate::handlers::{self, App};

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

/// Routes one request.
pub fn route(app: &Arc<App>, request: &Request) -> Reply {
    let method = request.method.as_str();
    let allowed = match request.path.as_str() {
        "/health" => "POST",
        "/observe/observables" => "POST",
        "/deliberate/observables" => "POST",
        "/refer/observables" => "POST",
        "/version" => "POST",
        "/watchdog" => "GET",
        _ => return Reply::error(RelayError::NotFound),
    };
    if method != allowed {
        return Reply::error(RelayError::MethodNotAllowed);
    }
    match request.path.as_str() {
        "/health" => handlers::health(app, request),
        "/observe/observables" => handlers::observe(app, request),
        "/deliberate/observables" => handlers::deliberate(app, request),
        "/refer/observables" => handlers::refer(app, request),
        "/version" => handlers::version(),
        _ => handlers::watchdog(request),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_header_names_but_no_values() {
        let request = Request {
            method: "POST".to_owned(),
            path: "/health".to_owned(),
            headers: vec![
                ("Authorization".to_owned(), "Bearer secret".to_owned()),
                ("X-Other".to_owned(), "hidden-value".to_owned()),
            ],
            body: b"[{\"type\":\"ip\",\"value\":\"private-body\"}]".to_vec(),
        };
        let debug = format!("{request:?}");
        for hidden in ["secret", "Bearer", "hidden-value", "private-body"] {
            assert!(!debug.contains(hidden), "{hidden} in {debug}");
        }
        for shown in [
            "POST",
            "/health",
            "Authorization",
            "X-Other",
            "body_len: 38",
        ] {
            assert!(debug.contains(shown), "{shown} not in {debug}");
        }
        let pretty = format!("{request:#?}");
        assert!(!pretty.contains("secret"), "{pretty}");
    }
}
