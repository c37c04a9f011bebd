use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Method};
use crate::util::RefinedTcpStream;
use crate::util::SequentialWriterBuilder;
use crate::wire::{self, Read1};
use crate::{Limits, Request};

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
///
/// otx-relay patch: it reads each request whole, head and body, on the
/// connection's own thread, strictly (see `wire`), each within
/// `Limits::client_timeout` as a total, so that a request reaches a worker
/// only once it has fully arrived and a slow client holds no worker.
pub struct ClientConnection {
    // address of the client (None if the client was gone before we asked)
    remote_addr: Option<SocketAddr>,

    // the stream, read whole requests at a time: no body is left to a
    // worker, so no sequencing of readers is needed
    source: BufReader<DeadlineReader>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // set when the last request was refused before its body was read: told
    // when its answer has been written, so the connection can be closed
    refused_answered: Option<Receiver<()>>,

    // true if the connection goes through SSL
    secure: bool,

    limits: Limits,
}

/// otx-relay patch: the read half of a connection, whose every read ends by
/// a deadline: a total for a head or a body, however slowly bytes come.
pub(crate) struct DeadlineReader {
    inner: RefinedTcpStream,
    deadline: Option<Instant>,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            self.inner.set_read_timeout(Some(left))?;
        }
        match self.inner.read(buf) {
            // SO_RCVTIMEO expiring reads as EAGAIN on Unix.
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(ErrorKind::TimedOut.into()),
            other => other,
        }
    }
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Limits,
    ) -> ClientConnection {
        // otx-relay patch: a client that is already gone has no address;
        // upstream unwrapped it later, a panic per such client.
        let remote_addr = read_socket.peer_addr().ok().flatten();
        let secure = read_socket.secure();
        let reader = DeadlineReader {
            inner: read_socket,
            deadline: None,
        };

        ClientConnection {
            source: BufReader::with_capacity(4096, reader),
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            no_more_requests: false,
            refused_answered: None,
            secure,
            limits,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    fn set_deadline(&mut self) {
        self.source.get_mut().deadline = Instant::now().checked_add(self.limits.client_timeout);
    }

    /// Writes a bodiless answer of tiny_http's own (`100 Continue`, `408`),
    /// in its turn among the answers to requests already read.
    fn write_interim(
        sink: &mut SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,
        status_line: &[u8],
    ) -> IoResult<()> {
        match sink.next() {
            Some(mut writer) => {
                writer.write_all(status_line)?;
                writer.flush()
            }
            None => Err(ErrorKind::BrokenPipe.into()),
        }
    }

    /// After a refused request: once its answer is out, ends our side and
    /// reads (and drops) what the client still sends, for a short while, so
    /// that closing does not reset the connection before the client has
    /// read the answer ("lingering close", RFC 9112 §9.6).
    fn linger(&mut self, answered: Receiver<()>) {
        let _ = answered.recv_timeout(self.limits.client_timeout + Duration::from_secs(60));
        let _ = self.source.get_mut().inner.shutdown_write();
        self.source.get_mut().deadline = Some(Instant::now() + LINGER);
        let mut sink = [0u8; 16 * 1024];
        let mut budget = LINGER_BYTES;
        while budget > 0 {
            match self.source.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    }

    /// Reads the next request, whole.
    fn read(&mut self) -> Option<Request> {
        self.set_deadline();
        let max_body = self.limits.max_body;
        let (source, sink) = (&mut self.source, &mut self.sink);
        let read = wire::read_request(source, max_body, |head| {
            // The client waits for this before it sends the body (never
            // sent to an HTTP/1.0 client, RFC 9110 §10.1.1).
            if head.expects_continue && head.version == HTTPVersion(1, 1) {
                Self::write_interim(sink, b"HTTP/1.1 100 Continue\r\n\r\n")?;
            }
            Ok(())
        });
        let read = match read {
            Ok(read) => read,
            Err(e) => {
                if e.kind() == ErrorKind::TimedOut {
                    let _ = Self::write_interim(
                        &mut self.sink,
                        b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
                return None;
            }
        };
        match read {
            Read1::Idle => None,
            Read1::Request(head, body) => {
                if head.close {
                    self.no_more_requests = true;
                }
                let writer = self.sink.next()?;
                Some(Request::whole(
                    self.secure,
                    head.method,
                    head.target,
                    head.version,
                    head.headers,
                    self.remote_addr,
                    body,
                    writer,
                    None,
                ))
            }
            Read1::Refused {
                refusal,
                method,
                target,
                head,
            } => {
                self.no_more_requests = true;
                let (method, version, headers) = match head {
                    Some(head) => (head.method, head.version, head.headers),
                    None => (
                        // A method that is not even ASCII: a placeholder.
                        method.parse().or_else(|()| "-".parse()).unwrap_or(Method::Get),
                        HTTPVersion(1, 1),
                        Vec::new(),
                    ),
                };
                let writer = self.sink.next()?;
                let (sender, receiver) = mpsc::channel();
                self.refused_answered = Some(receiver);
                let request = Request::whole(
                    self.secure,
                    method,
                    target,
                    version,
                    headers,
                    self.remote_addr,
                    Vec::new(),
                    writer,
                    Some(refusal),
                );
                Some(request.with_notify_sender(sender))
            }
        }
    }
}

/// How long, and for how many bytes, a refused request's connection is
/// drained before it is closed.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        if let Some(answered) = self.refused_answered.take() {
            self.linger(answered);
        }
        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }
        self.read()
    }
}
