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
    sink: SequentialWriterBuilder<BufWriter<DeadlineWriter>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // set when the last request was refused before its body was read: told
    // when its answer has been written, so the connection can be closed
    refused_answered: Option<Receiver<()>>,

    // true if the connection goes through SSL
    secure: bool,

    limits: Limits,

    // otx-relay patch: the end of the answer the idle wait was last
    // extended for.
    idle_since: Option<Instant>,
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

/// otx-relay patch: the write half of a connection, whose writes end by a
/// deadline: each answer must be taken by the client within
/// `Limits::client_timeout`, plus the time its bytes take at
/// `Limits::min_send_rate`. A client that reads an answer slowly (a few
/// bytes within each write's timeout) would otherwise hold the worker
/// writing it for as long as it likes. Past the deadline the write fails.
/// A write that fails, for any reason, shuts the connection down and fails
/// every later one: an answer cut short must not be followed by the next,
/// which the client would read as its rest.
pub(crate) struct DeadlineWriter {
    inner: RefinedTcpStream,
    limits: Limits,
    /// When the answer being written began; bytes written since.
    began: Instant,
    written: u64,
    /// The socket's write timeout now.
    timeout: Duration,
    /// A write failed: the connection is shut down.
    broken: bool,
}

/// A socket's write timeout is changed only when it is this far from the
/// deadline's rest: no system call per write for small answers.
const SLACK: Duration = Duration::from_millis(50);

impl DeadlineWriter {
    /// A new answer begins.
    fn begin(&mut self) {
        self.began = Instant::now();
        self.written = 0;
    }
}

impl DeadlineWriter {
    fn write_by_deadline(&mut self, buf: &[u8]) -> IoResult<usize> {
        let rate = self.limits.min_send_rate.max(1) as f64;
        let fair = Duration::try_from_secs_f64(self.written as f64 / rate).unwrap_or(Duration::MAX);
        let allowed = self.limits.client_timeout.saturating_add(fair);
        let left = allowed.saturating_sub(self.began.elapsed());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        let timeout = left.min(self.limits.client_timeout);
        if timeout + SLACK < self.timeout || timeout > self.timeout + SLACK {
            self.inner.set_write_timeout(Some(timeout))?;
            self.timeout = timeout;
        }
        match self.inner.write(buf) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            // SO_SNDTIMEO expiring reads as EAGAIN on Unix.
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(ErrorKind::TimedOut.into()),
            Err(e) => Err(e),
        }
    }
}

impl Write for DeadlineWriter {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        if self.broken {
            return Err(ErrorKind::BrokenPipe.into());
        }
        let written = self.write_by_deadline(buf);
        if written.as_ref().is_err_and(|e| e.kind() != ErrorKind::Interrupted) {
            self.broken = true;
            let _ = self.inner.shutdown_both();
        }
        written
    }

    fn flush(&mut self) -> IoResult<()> {
        self.inner.flush()
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

        // The accept loop set the socket's write timeout to `client_timeout`.
        let writer = DeadlineWriter {
            inner: write_socket,
            limits,
            began: Instant::now(),
            written: 0,
            timeout: limits.client_timeout,
            broken: false,
        };
        ClientConnection {
            source: BufReader::with_capacity(4096, reader),
            sink: SequentialWriterBuilder::with_turn(BufWriter::with_capacity(1024, writer), |w| {
                w.get_mut().begin()
            }),
            remote_addr,
            no_more_requests: false,
            refused_answered: None,
            secure,
            limits,
            idle_since: None,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Writes a bodiless answer of tiny_http's own (`100 Continue`, `408`),
    /// in its turn among the answers to requests already read.
    fn write_interim(
        sink: &mut SequentialWriterBuilder<BufWriter<DeadlineWriter>>,
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
        // Bounded by the answers' own write deadlines (a big answer ahead
        // of it may fairly take minutes).
        let _ = answered.recv();
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
        self.read_by(Instant::now().checked_add(self.limits.client_timeout))
    }

    /// Reads the next request, whole, by `deadline`.
    fn read_by(&mut self, deadline: Option<Instant>) -> Option<Request> {
        self.source.get_mut().deadline = deadline;
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
            // otx-relay patch: the idle time of a keep-alive connection runs
            // from its last answer. It ran from when the last request was
            // read, so a slow answer was followed by a close that came early
            // (or at once), without `Connection: close`, and a client reusing
            // the connection lost its next request. Once per answer, so that
            // a closed connection is not read again and again.
            Read1::Idle => {
                let finished = self.sink.last_finished()?;
                let deadline = finished.checked_add(self.limits.client_timeout)?;
                if self.idle_since == Some(finished) || deadline <= Instant::now() {
                    return None;
                }
                self.idle_since = Some(finished);
                self.read_by(Some(deadline))
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    /// A `DeadlineWriter` on a connection to the `TcpStream` returned.
    fn connected(client_timeout: Duration, min_send_rate: u64) -> (DeadlineWriter, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let limits = Limits {
            client_timeout,
            max_body: 0,
            min_send_rate,
        };
        server.set_write_timeout(Some(client_timeout)).unwrap();
        let server = crate::connection::Connection::from(server);
        let (_, inner) = RefinedTcpStream::new(server).unwrap();
        let mut writer = DeadlineWriter {
            inner,
            limits,
            began: Instant::now(),
            written: 0,
            timeout: client_timeout,
            broken: false,
        };
        writer.begin();
        (writer, client)
    }

    /// 256 MiB through a `DeadlineWriter` asking for 64 MiB/s after 1 s, to
    /// a client that reads `per_tick` bytes every 10 ms (all it can when
    /// `None`): whether it all went, and how long it took.
    fn send(per_tick: Option<usize>) -> (IoResult<()>, Duration) {
        let (mut writer, mut client) = connected(Duration::from_secs(1), 64 << 20);
        let reader = thread::spawn(move || {
            let mut buf = vec![0; per_tick.unwrap_or(1 << 20)];
            while matches!(client.read(&mut buf), Ok(n) if n > 0) {
                if per_tick.is_some() {
                    thread::sleep(Duration::from_millis(10));
                }
            }
        });
        let (started, chunk) = (Instant::now(), vec![b'x'; 1 << 20]);
        let written = (0..256).try_for_each(|_| writer.write_all(&chunk));
        let took = started.elapsed();
        drop(writer);
        reader.join().unwrap();
        (written, took)
    }

    #[test]
    fn a_client_that_takes_an_answer_slowly_is_cut_off_by_the_deadline() {
        // 16 MiB/s: each write goes on well within its 1 s timeout, but the
        // whole would take 16 s; the deadline (1 s, plus the bytes taken
        // at 64 MiB/s, plus what the kernel buffered) ends it in about 2.
        let (written, took) = send(Some(160 * 1024));
        assert_eq!(written.unwrap_err().kind(), ErrorKind::TimedOut, "after {:?}", took);
        assert!(took < Duration::from_secs(8), "{:?}", took);
    }

    #[test]
    fn a_client_that_takes_an_answer_fast_gets_it_whole() {
        let (written, took) = send(None);
        assert!(written.is_ok(), "{:?} after {:?}", written, took);
    }

    #[test]
    fn no_answer_follows_one_cut_short() {
        // A client that reads nothing: the first answer times out once the
        // buffers are full; the next one must not be written behind it.
        let (mut writer, _client) = connected(Duration::from_millis(200), 1 << 20);
        let first = writer.write_all(&vec![b'x'; 64 << 20]);
        assert_eq!(first.unwrap_err().kind(), ErrorKind::TimedOut);
        writer.begin();
        let next = writer.write(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(next.unwrap_err().kind(), ErrorKind::BrokenPipe);
    }
}
