//! The HTTP side: the only code that knows tiny_http.
//!
//! tiny_http reads each connection's request head on its own thread and
//! queues the request only once the head has arrived, so a slow client never
//! holds one of our `RELAY_THREADS` workers while it dawdles over its head.
//! Each worker takes a request, reads its body (at most 1 MiB), routes it
//! under a panic guard, answers, and logs one access line.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{Header, Response, Server};

use crate::error::RelayError;
use crate::handlers::App;
use crate::log;
use crate::routes::{route, Reply, Request};

/// The largest request body read.
pub const MAX_BODY: usize = 1024 * 1024;
/// How long in-flight requests may take to finish after SIGTERM.
pub const DRAIN: Duration = Duration::from_secs(10);

/// What answers a request: [`route`] in the relay; tests may pass another.
pub type Handler = fn(&Arc<App>, &Request) -> Reply;

/// A running relay.
pub struct Relay {
    server: Arc<Server>,
    addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl Relay {
    /// Binds `HOST:PORT` and starts the workers.
    pub fn start(app: App) -> Result<Relay, String> {
        Relay::start_with(app, route)
    }

    /// [`Relay::start`] with another handler (the panic-guard test uses one
    /// that panics).
    pub fn start_with(app: App, handler: Handler) -> Result<Relay, String> {
        let bind = format!("{}:{}", app.config.host, app.config.port);
        let listener = std::net::TcpListener::bind(&bind)
            .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
        let server =
            Server::from_listener_with_timeout(listener, None, Some(app.config.client_timeout))
                .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("{bind} is not an IP address"))?;
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let app = Arc::new(app);
        let workers = (0..app.config.threads)
            .map(|i| {
                let (server, app, stopping) = (server.clone(), app.clone(), stopping.clone());
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || serve(&server, &app, handler, &stopping))
                    .map_err(|e| format!("cannot start a worker thread: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Relay {
            server,
            addr,
            workers,
            stopping,
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking requests, lets the in-flight ones finish (up to
    /// [`DRAIN`]), and returns whether they all did.
    pub fn shutdown(self) -> bool {
        // Close the listener first: new connections are refused from now on,
        // while the requests already taken are answered (SPEC §8).
        self.server.stop_accepting();
        self.stopping.store(true, Ordering::SeqCst);
        // Each unblock wakes one worker, after the requests already queued.
        for _ in &self.workers {
            self.server.unblock();
        }
        let until = Instant::now() + DRAIN;
        for worker in &self.workers {
            while !worker.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let drained = self.workers.iter().all(JoinHandle::is_finished);
        for worker in self.workers {
            if worker.is_finished() {
                let _ = worker.join();
            }
        }
        drained
    }
}

fn serve(server: &Server, app: &Arc<App>, handler: Handler, stopping: &AtomicBool) {
    loop {
        match server.recv() {
            Ok(request) => handle(app, handler, request),
            Err(_) if stopping.load(Ordering::SeqCst) => return,
            Err(e) => {
                // tiny_http's accept loop has ended: nothing more will come.
                // Exit, so that the container's supervisor restarts us.
                log::error(format_args!("the listener failed: {e}"));
                std::process::exit(1);
            }
        }
    }
}

fn handle(app: &Arc<App>, handler: Handler, mut request: tiny_http::Request) {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    // The guard covers the whole handling, the body read included: a panic
    // anywhere in it answers a JSON 500 and this worker serves on.
    let reply = catch_unwind(AssertUnwindSafe(|| {
        match read(&mut request, &method, &path, app.config.client_timeout) {
            Ok(req) => handler(app, &req),
            Err(e) => Reply::error(e),
        }
    }))
    .unwrap_or_else(|_| {
        log::error(format_args!("a panic while handling {method} {path}"));
        Reply::error(RelayError::Internal)
    });
    let body = reply.body.to_string();
    let bytes = body.len();
    let content_type = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .expect("a static header is valid");
    let response = Response::from_string(body)
        .with_status_code(reply.status)
        .with_header(content_type);
    // The client may have gone: nothing to do about it.
    let _ = request.respond(response);
    log::access(
        &method,
        &path,
        reply.status,
        bytes,
        started.elapsed(),
        reply.retries,
    );
}

fn read(
    request: &mut tiny_http::Request,
    method: &str,
    path: &str,
    client_timeout: Duration,
) -> Result<Request, RelayError> {
    if request.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(RelayError::PayloadTooLarge);
    }
    // Each read is bounded by the socket's timeout; the whole body by
    // the client timeout, so a trickling client cannot hold this worker.
    let unreadable =
        || RelayError::InvalidPayload("The body could not be read in time.".to_owned());
    // A timeout too large for `Instant` means no wall-clock bound (a
    // deadline too far to matter); each read is still bounded by the socket.
    let until = Instant::now().checked_add(client_timeout);
    let mut body = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let reader = request.as_reader();
    loop {
        let n = reader.read(&mut chunk).map_err(|_| unreadable())?;
        if n == 0 {
            break;
        }
        if body.len() + n > MAX_BODY {
            return Err(RelayError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk[..n]);
        if until.is_some_and(|until| Instant::now() > until) {
            return Err(unreadable());
        }
    }
    let headers = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_owned(),
                h.value.as_str().to_owned(),
            )
        })
        .collect();
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body,
    })
}
