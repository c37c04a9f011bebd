//! The one `match` that routes a request to its handler.

use std::sync::Arc;

use crate::answer;
use crate::app::App;
use crate::error::RelayError;
use crate::handlers;
use crate::http::{Reply, Request};

/// The paths the relay serves, as `/metrics` labels them (`other` for the
/// rest: a label never holds what a client made up).
pub fn endpoint(app: &App, path: &str) -> &'static str {
    const PATHS: [&str; 12] = [
        "/health",
        "/observe/observables",
        "/deliberate/observables",
        "/refer/observables",
        "/version",
        "/watchdog",
        "/tiles",
        "/tiles/tile",
        "/tiles/tile-data",
        "/respond/observables",
        "/respond/trigger",
        "/metrics",
    ];
    PATHS
        .iter()
        .find(|p| **p == path && (path != "/metrics" || app.config.metrics))
        .copied()
        .unwrap_or("other")
}

/// Whether answering a request for `path` may wait on something other
/// than the CPU (OTX, Redis, a JWKS host: every endpoint that checks a
/// token). Those go to one of the `RELAY_THREADS` workers; the rest
/// (`/version`, `/watchdog`, `/metrics`, `/refer`, 404s and 405s) are
/// answered on the connection's own thread, sparing two thread wake-ups
/// each.
pub fn waits(path: &str) -> bool {
    matches!(
        path,
        "/health"
            | "/observe/observables"
            | "/deliberate/observables"
            | "/tiles"
            | "/tiles/tile"
            | "/tiles/tile-data"
            | "/respond/observables"
            | "/respond/trigger"
    )
}

/// Routes one request.
pub fn route(app: &Arc<App>, request: &Request) -> Reply {
    let method = request.method.as_str();
    let allowed = match request.path.as_str() {
        "/metrics" if app.config.metrics => "GET",
        "/health" => "POST",
        "/observe/observables" => "POST",
        "/deliberate/observables" => "POST",
        "/refer/observables" => "POST",
        "/version" => "POST",
        "/watchdog" => "GET",
        "/tiles" | "/tiles/tile" | "/tiles/tile-data" => "POST",
        "/respond/observables" | "/respond/trigger" => "POST",
        _ => return answer::error(RelayError::NotFound),
    };
    if method != allowed {
        return answer::error(RelayError::MethodNotAllowed);
    }
    match request.path.as_str() {
        "/health" => handlers::health(app, request),
        "/observe/observables" => handlers::observe(app, request),
        "/deliberate/observables" => handlers::deliberate(app, request),
        "/refer/observables" => handlers::refer(app, request),
        "/version" => handlers::version(),
        "/metrics" => handlers::metrics(app),
        "/tiles" => handlers::tiles(app, request),
        "/tiles/tile" => handlers::tile(app, request),
        "/tiles/tile-data" => handlers::tile_data(app, request),
        "/respond/observables" => handlers::respond_observables(app, request),
        "/respond/trigger" => handlers::respond_trigger(app, request),
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
