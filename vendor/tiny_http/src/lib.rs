//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![allow(unused, clippy::all)] // otx-relay patch: vendored code, kept as upstream wrote it
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use request::{ReadWrite, Request};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;
pub use wire::Refusal;

mod client;
mod common;
mod connection;
mod request;
mod response;
mod ssl;
mod test;
mod util;
pub mod wire;

/// otx-relay patch: what a client may send, and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A client must deliver a whole request head within this time, and
    /// then its whole body within it again (each a total, however slowly
    /// the bytes come; an idle keep-alive connection is closed after it).
    /// Also the timeout of each write to the client.
    pub client_timeout: Duration,
    /// The largest request body read; a larger one is refused
    /// (`Refusal::BodyTooLarge`) without being read.
    pub max_body: usize,
    /// A client must take each answer within `client_timeout` plus the
    /// time its bytes take at this rate (bytes per second); else the
    /// connection is closed.
    pub min_send_rate: u64,
    /// The most client connections open at once (each costs a thread): a
    /// new one beyond it is closed at once.
    pub max_connections: usize,
    /// Told of each transient error of `accept` (out of file descriptors
    /// or memory, a client that reset during the handshake), after which
    /// the accept loop pauses 20 ms and goes on. Called up to 50 times a
    /// second while the condition lasts: fold them.
    pub on_accept_error: Option<fn(&IoError)>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            client_timeout: Duration::from_secs(30),
            max_body: 16 * 1024 * 1024,
            min_send_rate: 64 * 1024,
            max_connections: usize::MAX,
            on_accept_error: None,
        }
    }
}

/// otx-relay patch: answers a request on its connection's own thread, or
/// gives it back to be queued for a worker (see
/// `Server::from_listener_with_inline`).
pub type Inline = Arc<dyn Fn(Request) -> Option<Request> + Send + Sync>;

/// otx-relay patch: one open connection, counted while it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Relaxed);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // otx-relay patch: answers handed to connections' threads and not yet
    // written (or given up)
    unwritten: Arc<AtomicUsize>,
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with_limits(listener, ssl_config, Limits::default())
    }

    /// otx-relay patch: like `from_listener`, with `limits` on what a
    /// client may send and how long it may take.
    pub fn from_listener_with_limits<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with_inline(listener, ssl_config, limits, None)
    }

    /// otx-relay patch: like `from_listener_with_limits`, and each request
    /// is offered to `inline` first, on its connection's own thread: it
    /// answers the request there (and returns `None`), or gives it back to
    /// be queued for `recv`. For requests that need only the CPU and are
    /// answered quickly: each saves the two thread wake-ups of a hand-over
    /// to a worker and back.
    pub fn from_listener_with_inline<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        limits: Limits,
        inline: Option<Inline>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = listener.into();
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // building the SSL capabilities
        #[cfg(all(feature = "ssl-openssl", feature = "ssl-rustls"))]
        compile_error!(
            "Features 'ssl-openssl' and 'ssl-rustls' must not be enabled at the same time"
        );
        #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
        type SslContext = ();
        #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
        type SslContext = crate::ssl::SslContextImpl;
        let ssl: Option<SslContext> = {
            match ssl_config {
                #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                Some(config) => Some(SslContext::from_pem(
                    config.certificate,
                    Zeroizing::new(config.private_key),
                )?),
                #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                Some(_) => return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                ),
                None => None,
            }
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        // otx-relay patch: answers dispatched and not yet written.
        let unwritten = Arc::new(AtomicUsize::new(0));
        let inside_unwritten = unwritten.clone();
        thread::spawn(move || {
            // a tasks pool is used to dispatch the connections into threads
            let tasks_pool = util::TaskPool::new();
            // otx-relay patch: the connections being served.
            let open = Arc::new(AtomicUsize::new(0));

            log::debug!("Running accept thread");
            while !inside_close_trigger.load(Relaxed) {
                let new_client = match server.accept() {
                    // otx-relay patch: beyond the limit, closed at once
                    // (before any thread or second descriptor is spent).
                    Ok(_) if open.load(Relaxed) >= limits.max_connections => continue,
                    Ok((sock, _)) => {
                        use util::RefinedTcpStream;
                        // otx-relay patch: a write blocked on a client that
                        // reads nothing ends too.
                        let _ = sock.set_write_timeout(Some(limits.client_timeout));
                        let (read_closable, write_closable) = match ssl {
                            // otx-relay patch: no second handle (out of file
                            // descriptors): this connection is dropped, the
                            // server goes on.
                            None => match RefinedTcpStream::new(sock) {
                                Ok(halves) => halves,
                                Err(e) => {
                                    if let Some(report) = limits.on_accept_error {
                                        report(&e);
                                    }
                                    continue;
                                }
                            },
                            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
                            Some(ref ssl) => {
                                // trying to apply SSL over the connection
                                // if an error occurs, we just close the socket and resume listening
                                let sock = match ssl.accept(sock) {
                                    Ok(s) => s,
                                    Err(_) => continue,
                                };

                                match RefinedTcpStream::new(sock) {
                                    Ok(halves) => halves,
                                    Err(_) => continue,
                                }
                            }
                            #[cfg(not(any(feature = "ssl-openssl", feature = "ssl-rustls")))]
                            Some(ref _ssl) => unreachable!(),
                        };

                        Ok(ClientConnection::new(write_closable, read_closable, limits))
                    }
                    Err(e) => Err(e),
                };

                match new_client {
                    Ok(client) => {
                        let messages = inside_messages.clone();
                        let inline = inline.clone();
                        let unwritten = inside_unwritten.clone();
                        let stopping = inside_close_trigger.clone();
                        let mut client = Some(client);
                        // Dropped with the task: when the connection ends,
                        // or at once if no thread could take it.
                        let open = Open::new(&open);
                        tasks_pool.spawn(Box::new(move || {
                            let _open = &open;
                            // otx-relay patch: this thread reads the
                            // requests and writes their answers (over TLS
                            // too: one thread, so no lock order to keep).
                            if let Some(client) = client.take() {
                                client.serve(&unwritten, &stopping, |rq| {
                                    let queued = match &inline {
                                        Some(inline) => inline(rq),
                                        None => Some(rq),
                                    };
                                    if let Some(rq) = queued {
                                        messages.push(rq.into());
                                    }
                                });
                            }
                        }));
                    }

                    // otx-relay patch: running out of file descriptors or
                    // memory, or a client aborting during accept, is
                    // passing; the listener stays up.
                    Err(e) if is_transient_accept_error(&e) => {
                        log::warn!("Error accepting new client (will retry): {}", e);
                        if let Some(report) = limits.on_accept_error {
                            report(&e);
                        }
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => {
                        log::error!("Error accepting new client: {}", e);
                        inside_messages.push(e.into());
                        break;
                    }
                }
            }
            log::debug!("Terminating accept thread");
        });

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            unwritten,
        })
    }

    /// otx-relay patch: how many answers are made, or being made, and not
    /// yet written by their connections' threads (each written, or given
    /// up when its client fails to take it in time). A graceful stop waits
    /// for none to be left once its workers are done.
    pub fn unwritten_answers(&self) -> usize {
        self.unwritten.load(Relaxed)
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        unimplemented!()
        //self.requests_receiver.lock().len()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Server {
    /// otx-relay patch: ends the accept loop as `Drop` does, while the
    /// `Server` lives on: the accept thread drops the listener, so new
    /// connections are refused, and the requests already received (or
    /// still arriving on open connections) can still be `recv`ed and
    /// answered. For a graceful shutdown. Calling it again is harmless.
    pub fn stop_accepting(&self) {
        if self.close.swap(true, Relaxed) {
            return;
        }
        self.wake_accept_thread();
    }

    /// otx-relay patch: connects briefly to ourselves so that a blocked
    /// `accept()` returns and the accept loop sees the `close` flag.
    /// Bounded, so that a full backlog cannot hang the caller (a shutdown).
    fn wake_accept_thread(&self) {
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => {
                TcpStream::connect_timeout(addr, Duration::from_secs(1)).map(Connection::from)
            }
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // otx-relay patch: unless `stop_accepting` already ended the accept
        // loop (the listener is gone: connecting again would be refused at
        // best, or reach whoever bound the port since), connect briefly to
        // ourselves to unblock the accept thread.
        if !self.close.swap(true, Relaxed) {
            self.wake_accept_thread();
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// otx-relay patch: accept errors after which the listener still works.
fn is_transient_accept_error(e: &IoError) -> bool {
    matches!(
        e.kind(),
        IoErrorKind::ConnectionAborted | IoErrorKind::Interrupted | IoErrorKind::WouldBlock
    ) || matches!(e.raw_os_error(), Some(12 | 23 | 24 | 105))
}
