//! The HTTP side: the only code that knows tiny_http.
//!
//! tiny_http (patched, see `vendor/patches/tiny_http/`) reads each
//! connection's requests on that connection's own thread, head and body
//! whole, strictly framed, each within `RELAY_CLIENT_TIMEOUT` as a total,
//! and queues a request only once all of it has arrived: a slow client
//! never holds one of our `RELAY_THREADS` workers. What it refuses (bad
//! framing, a head over its limits, a body over 1 MiB) still comes to a
//! worker, to be answered with a JSON error and logged; tiny_http closes
//! the connection after that answer. Each worker takes a request, routes it
//! under a panic guard, hands the answer back, and logs one access line:
//! the connection's own thread writes it (tiny_http patch 0011), so a
//! client that reads slowly or not at all never holds a worker either, and
//! reads at most one request ahead of an answer it has not written, so
//! pipelining into a connection that is not read grows nothing. Connections
//! are bounded (`RELAY_MAX_CONNECTIONS`): beyond, a new one is closed at
//! once.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{Header, Inline, Limits, Refusal, Response, Server, StatusCode};

use crate::answer;
use crate::app::App;
use crate::auth::MIN_SECRET_KEY_BYTES;
use crate::config::Config;
use crate::error::RelayError;
use crate::http::{Reply, Request};
use crate::log;
use crate::routes::{self, route};

/// The largest request body read.
pub const MAX_BODY: usize = 1024 * 1024;

/// A client must take each answer within `RELAY_CLIENT_TIMEOUT` plus the
/// time its bytes take at this rate (64 KiB/s, 0.5 Mbit/s: a 20 MiB answer
/// may take 5 minutes more); slower, the connection is closed, so that a
/// client reading a big answer a few bytes at a time cannot hold its
/// connection's thread (and the answer's memory) for ever.
pub const MIN_SEND_RATE: u64 = 64 * 1024;
/// Bytes of an answer the kernel may hold unsent (`TCP_NOTSENT_LOWAT`).
const NOTSENT_LOWAT: u32 = 64 * 1024;
/// How long in-flight requests may take to finish after SIGTERM.
pub const DRAIN: Duration = Duration::from_secs(10);

/// What answers a request: [`route`] in the relay; tests may pass another.
pub type Handler = fn(&Arc<App>, &Request) -> Reply;

/// Told, once per worker, that the listener failed for good and no request
/// will come any more: `main` ends the process with an error, so that a
/// supervisor restarts it (no `process::exit` below `main`).
pub type OnFailure = Arc<dyn Fn(String) + Send + Sync>;

/// A running relay.
pub struct Relay {
    server: Arc<Server>,
    addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl Relay {
    /// Binds `HOST:PORT` and starts the workers.
    pub fn start(app: App, on_failure: OnFailure) -> Result<Relay, String> {
        Relay::start_with(app, route, on_failure)
    }

    /// [`Relay::start`] with another handler (the panic-guard test uses one
    /// that panics).
    pub fn start_with(app: App, handler: Handler, on_failure: OnFailure) -> Result<Relay, String> {
        let bind = format!("{}:{}", app.config.host, app.config.port);
        let listener = std::net::TcpListener::bind(&bind)
            .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
        // Inherited by every accepted connection: the kernel holds at most
        // this much of an answer not yet sent (up to 4 MiB otherwise), so
        // what a worker has written is near what the client has taken (see
        // MIN_SEND_RATE). Bytes in flight and in the client's own receive
        // buffer still count as taken: a client with a huge receive buffer
        // (it sets it, up to the kernel's rmem_max) buys itself that much
        // more time at 64 KiB/s, once per answer.
        let _ = socket2::SockRef::from(&listener).set_tcp_notsent_lowat(NOTSENT_LOWAT);
        let limits = Limits {
            client_timeout: app.config.client_timeout,
            max_body: MAX_BODY,
            min_send_rate: MIN_SEND_RATE,
            max_connections: app.config.max_connections,
            on_accept_error: Some(accept_failed),
        };
        let app = Arc::new(app);
        // What needs only the CPU is answered on the connection's own
        // thread; the rest (and what a panic guard test hands in) queues
        // for a worker.
        let inline: Inline = {
            let app = app.clone();
            Arc::new(move |request: tiny_http::Request| {
                let path = request.url().split('?').next().unwrap_or("");
                if request.refusal().is_none() && routes::waits(path) {
                    return Some(request);
                }
                handle(&app, handler, request);
                None
            })
        };
        let server = Server::from_listener_with_inline(listener, None, limits, Some(inline))
            .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("{bind} is not an IP address"))?;
        let server = Arc::new(server);
        let stopping = Arc::new(AtomicBool::new(false));
        let workers = (0..app.config.threads)
            .map(|i| {
                let (server, app, stopping) = (server.clone(), app.clone(), stopping.clone());
                let on_failure = on_failure.clone();
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || work(&server, &app, handler, &stopping, &on_failure))
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
        // A request that came on a kept connection after the workers left
        // is dropped (tiny_http answers it a bare 500); then the answers
        // made are let out: the connections' threads write them.
        while let Ok(Some(late)) = self.server.try_recv() {
            drop(late);
        }
        while self.server.unwritten_answers() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let drained = self.workers.iter().all(JoinHandle::is_finished)
            && self.server.unwritten_answers() == 0;
        for worker in self.workers {
            if worker.is_finished() {
                let _ = worker.join();
            }
        }
        drained
    }
}

/// How often running out of descriptors (or memory) while accepting is
/// logged: it lasts as long as the connections that cause it, and the
/// accept loop retries 50 times a second meanwhile.
const ACCEPT_WARNING_EVERY: Duration = Duration::from_secs(60);

/// tiny_http could not accept a connection for a passing reason: one
/// warning a minute, saying how many more there were.
fn accept_failed(error: &std::io::Error) {
    let why = match error.raw_os_error() {
        Some(24) => "out of file descriptors (EMFILE): raise the limit (ulimit -n) or lower RELAY_MAX_CONNECTIONS",
        Some(23) => "the system is out of file descriptors (ENFILE)",
        Some(12) => "out of memory (ENOMEM)",
        // A client that reset during the handshake: its own business.
        _ => return,
    };
    static LAST: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    let (warned, folded) = &mut *last;
    if warned.is_some_and(|at| at.elapsed() < ACCEPT_WARNING_EVERY) {
        *folded += 1;
        return;
    }
    let more = match std::mem::take(folded) {
        0 => String::new(),
        n => format!(" ({n} more in the last minute)"),
    };
    *warned = Some(Instant::now());
    log::warn(format_args!(
        "cannot accept a connection: {why}; retrying{more}"
    ));
}

fn work(
    server: &Server,
    app: &Arc<App>,
    handler: Handler,
    stopping: &AtomicBool,
    on_failure: &OnFailure,
) {
    loop {
        match server.recv() {
            Ok(request) => handle(app, handler, request),
            Err(_) if stopping.load(Ordering::SeqCst) => return,
            Err(e) => {
                // tiny_http's accept loop has ended: nothing more will come.
                on_failure(format!("the listener failed: {e}"));
                return;
            }
        }
    }
}

fn handle(app: &Arc<App>, handler: Handler, mut request: tiny_http::Request) {
    let started = Instant::now();
    app.metrics.request_started();
    let method = request.method().as_str().to_owned();
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    // The guard covers the whole handling: a panic anywhere in it answers a
    // JSON 500 and this worker serves on.
    let reply = catch_unwind(AssertUnwindSafe(|| {
        match read(&mut request, &method, &path) {
            Ok(req) => handler(app, &req),
            Err(e) => answer::error(e),
        }
    }))
    .unwrap_or_else(|_| {
        log::error(format_args!("a panic while handling {method} {path}"));
        answer::error(RelayError::Internal)
    });
    let body = reply.body;
    let bytes = body.len();
    let content_type = Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes())
        .expect("a static header is valid");
    let response = Response::new(
        StatusCode(reply.status),
        vec![content_type],
        body.into_reader(),
        Some(bytes),
        None,
    );
    // Counted and logged before the answer is handed over: the client may
    // have it (and read /metrics) as soon as the connection's thread writes
    // it, which takes nothing of this worker's time.
    let took = started.elapsed();
    app.metrics
        .request_done(routes::endpoint(app, &path), reply.status, took);
    log::access(&method, &path, reply.status, bytes, took, reply.retries);
    // The client may have gone: nothing to do about it.
    let _ = request.respond(response);
}

/// The request as a value, or why tiny_http refused it. Its body has
/// already been read whole (at most [`MAX_BODY`]), so nothing here waits
/// on the client.
fn read(request: &mut tiny_http::Request, method: &str, path: &str) -> Result<Request, RelayError> {
    if let Some(refusal) = request.refusal() {
        return Err(match refusal {
            Refusal::BadRequest(why) => RelayError::BadRequest(why),
            Refusal::HeadTooLarge => RelayError::HeadTooLarge,
            Refusal::BodyTooLarge => RelayError::PayloadTooLarge,
            Refusal::ExpectationFailed => RelayError::ExpectationFailed,
            Refusal::VersionNotSupported => RelayError::VersionNotSupported,
        });
    }
    let mut body = Vec::with_capacity(request.body_length().unwrap_or(0));
    // An in-memory read: it cannot block, and cannot fail.
    request
        .as_reader()
        .read_to_end(&mut body)
        .map_err(|_| RelayError::Internal)?;
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

/// `otx-relay` (serve): reads the configuration, warns about what is
/// off in it, serves until SIGTERM or SIGINT, then drains.
pub fn serve() -> Result<(), String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    if let Some(warning) = crate::otx::base_url_warning(&config.otx_url) {
        log::warn(format_args!("{warning}"));
    }
    match &config.secret_key {
        // With RELAY_AUDIENCE set, XDR's RS256 tokens need no SECRET_KEY
        // (SPEC §9): the warning must not say every call will fail.
        None if config.audiences.is_empty() => log::warn(format_args!(
            "SECRET_KEY is not set: every authenticated call will answer '<SECRET_KEY> is missing'"
        )),
        None => log::warn(format_args!(
            "SECRET_KEY is not set: HS256 tokens will be refused ('<SECRET_KEY> is missing'); XDR's RS256 tokens are still accepted (RELAY_AUDIENCE is set)"
        )),
        // RFC 7518 §3.2: an HS256 key shorter than the hash is guessable.
        Some(key) if key.len() < MIN_SECRET_KEY_BYTES => log::warn(format_args!(
            "SECRET_KEY is {} bytes long: use at least {MIN_SECRET_KEY_BYTES} random bytes (RFC 7518 §3.2)",
            key.len()
        )),
        Some(_) => {}
    }
    // Block SIGTERM/SIGINT before any thread starts, then wait for them on
    // this one.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let app = App::new(config)?;
    // A listener that fails for good ends the wait below as a signal would,
    // and the process with an error.
    let failure = Arc::new(Mutex::new(None::<String>));
    let on_failure: OnFailure = {
        let (failure, handle) = (failure.clone(), signals.handle());
        Arc::new(move |why: String| {
            failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(why);
            handle.close();
        })
    };
    let relay = Relay::start(app, on_failure)?;
    log::info(format_args!(
        "otx-relay {} listening on http://{}",
        env!("CARGO_PKG_VERSION"),
        relay.addr()
    ));
    let signal = signals.forever().next();
    if let Some(why) = failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        return Err(why);
    }
    log::info(format_args!(
        "signal {} received: finishing in-flight requests",
        signal.unwrap_or(0)
    ));
    if relay.shutdown() {
        log::info(format_args!("stopped"));
    } else {
        log::warn(format_args!(
            "some requests were still running after the drain time"
        ));
    }
    Ok(())
}
