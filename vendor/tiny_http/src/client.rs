use std::collections::VecDeque;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Method};
use crate::request::Answer;
use crate::util::RefinedTcpStream;
use crate::wire::{self, Read1};
use crate::{Limits, Request};

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
///
/// otx-relay patch: it serves the connection on the connection's own
/// thread ([`ClientConnection::serve`]): it reads each request whole, head
/// and body, strictly (see `wire`), each within `Limits::client_timeout` as
/// a total, so that a request reaches a worker only once it has fully
/// arrived and a slow sender holds no worker; and it writes each answer the
/// worker made, so that a slow reader holds no worker either.
pub struct ClientConnection {
    // address of the client (None if the client was gone before we asked)
    remote_addr: Option<SocketAddr>,

    // the stream, read whole requests at a time: no body is left to a
    // worker, so no sequencing of readers is needed
    source: BufReader<DeadlineReader>,

    // otx-relay patch: the answers, written by this connection's thread
    // only, one at a time, in the order of their requests
    sink: BufWriter<DeadlineWriter>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // otx-relay patch: the last request was refused before its body was
    // read: once its answer is written, the connection lingers and closes
    refused: bool,

    // true if the connection goes through SSL
    secure: bool,

    limits: Limits,
}

/// otx-relay patch: what reading the next request gave.
enum Next {
    /// A request for a worker, and where its answer will come from.
    Request(Request, Receiver<Answer>),
    /// No request will come: the client closed, stayed silent, or broke.
    End,
    /// The client sent part of a request and then too little: after the
    /// answers due, it is told so (408) and the connection is closed.
    TimedOut,
}

/// otx-relay patch: an answer to come, counted as unwritten until it is
/// written or given up (dropped).
struct Pending {
    answer: Receiver<Answer>,
    unwritten: Arc<AtomicUsize>,
}

impl Pending {
    fn new(answer: Receiver<Answer>, unwritten: &Arc<AtomicUsize>) -> Pending {
        unwritten.fetch_add(1, Ordering::SeqCst);
        let unwritten = unwritten.clone();
        Pending { answer, unwritten }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.unwritten.fetch_sub(1, Ordering::SeqCst);
    }
}

/// otx-relay patch: the last words of a connection whose request timed out.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

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
            sink: BufWriter::with_capacity(1024, writer),
            remote_addr,
            no_more_requests: false,
            refused: false,
            secure,
            limits,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// otx-relay patch: serves the connection until it ends, on the calling
    /// thread: reads each request whole, hands it to `dispatch` (the
    /// server's queue, where a worker takes it), and writes its answer once
    /// the worker has made it, within the write deadline of
    /// `DeadlineWriter`. A worker therefore never waits on the client.
    ///
    /// At most one request is read ahead of an answer not yet written, and
    /// only when its first bytes have already arrived with an earlier one
    /// (pipelining): so a connection whose answers are not read holds at
    /// most two requests and their answers, however much is pipelined into
    /// it, and a request is read only after the answers before it are out,
    /// which makes a keep-alive connection's idle time run from its last
    /// answer. (Reading ahead blindly would leave an answer unwritten while
    /// this thread waits for a request the client sends only after it.)
    ///
    /// `unwritten` counts the answers dispatched and not yet written (or
    /// given up), for a graceful stop to wait on.
    ///
    /// Once `stopping` is set, the answers written say `Connection: close`,
    /// and no request is read after them.
    pub fn serve(
        mut self,
        unwritten: &Arc<AtomicUsize>,
        stopping: &AtomicBool,
        mut dispatch: impl FnMut(Request),
    ) {
        let mut pending: VecDeque<Pending> = VecDeque::with_capacity(2);
        let mut last_words = None;
        loop {
            if stopping.load(Ordering::SeqCst) {
                self.no_more_requests = true;
            }
            let may_read = match pending.len() {
                0 => true,
                1 => !self.source.buffer().is_empty(),
                _ => false,
            };
            if may_read && !self.no_more_requests {
                match self.read(&mut pending) {
                    Next::Request(request, answer) => {
                        let answer = Pending::new(answer, unwritten);
                        dispatch(request);
                        pending.push_back(answer);
                        continue;
                    }
                    Next::End => self.no_more_requests = true,
                    Next::TimedOut => {
                        self.no_more_requests = true;
                        last_words = Some(REQUEST_TIMEOUT);
                    }
                }
            }
            let Some(answer) = pending.pop_front() else {
                break;
            };
            if Self::write_answer(&mut self.sink, answer, Some(stopping)).is_err() {
                // The connection is shut down: nothing more to say.
                return;
            }
        }
        if let Some(words) = last_words {
            let _ = Self::write_bytes(&mut self.sink, words);
        }
        if self.refused {
            self.linger();
        }
    }

    /// Waits for an answer and writes it whole, within its own deadline.
    /// `stopping`, once set when the answer has come, makes it the last.
    fn write_answer(
        sink: &mut BufWriter<DeadlineWriter>,
        answer: Pending,
        stopping: Option<&AtomicBool>,
    ) -> IoResult<()> {
        // A request dropped unanswered answers 500 itself (`Request`'s
        // `Drop`); a closed channel means the server itself is gone.
        let answer = answer.answer.recv().map_err(|_| ErrorKind::BrokenPipe)?;
        let last = stopping.is_some_and(|s| s.load(Ordering::SeqCst));
        sink.get_mut().begin();
        answer(sink, last)?;
        sink.flush()
    }

    /// Writes a bodiless answer of tiny_http's own (`100 Continue`, `408`).
    fn write_bytes(sink: &mut BufWriter<DeadlineWriter>, bytes: &[u8]) -> IoResult<()> {
        sink.get_mut().begin();
        sink.write_all(bytes)?;
        sink.flush()
    }

    /// After a refused request: once its answer is out, ends our side and
    /// reads (and drops) what the client still sends, for a short while, so
    /// that closing does not reset the connection before the client has
    /// read the answer ("lingering close", RFC 9112 §9.6).
    fn linger(&mut self) {
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

    /// Reads the next request, whole, within `client_timeout`. `pending`
    /// holds the answers not yet written: a request that expects
    /// `100 Continue` gets it only after them.
    fn read(&mut self, pending: &mut VecDeque<Pending>) -> Next {
        self.source.get_mut().deadline = Instant::now().checked_add(self.limits.client_timeout);
        let max_body = self.limits.max_body;
        let (source, sink) = (&mut self.source, &mut self.sink);
        let read = wire::read_request(source, max_body, |head| {
            // The client waits for this before it sends the body (never
            // sent to an HTTP/1.0 client, RFC 9110 §10.1.1).
            if head.expects_continue && head.version == HTTPVersion(1, 1) {
                while let Some(answer) = pending.pop_front() {
                    Self::write_answer(sink, answer, None)?;
                }
                Self::write_bytes(sink, b"HTTP/1.1 100 Continue\r\n\r\n")?;
            }
            Ok(())
        });
        let read = match read {
            Ok(read) => read,
            Err(e) if e.kind() == ErrorKind::TimedOut => return Next::TimedOut,
            Err(_) => return Next::End,
        };
        let (answers, answer) = mpsc::channel();
        let request = match read {
            Read1::Idle => return Next::End,
            Read1::Request(head, body) => {
                if head.close {
                    self.no_more_requests = true;
                }
                Request::whole(
                    self.secure,
                    head.method,
                    head.target,
                    head.version,
                    head.headers,
                    self.remote_addr,
                    body,
                    answers,
                    None,
                )
            }
            Read1::Refused {
                refusal,
                method,
                target,
                head,
            } => {
                self.no_more_requests = true;
                self.refused = true;
                let (method, version, headers) = match head {
                    Some(head) => (head.method, head.version, head.headers),
                    None => (
                        // A method that is not even ASCII: a placeholder.
                        method.parse().or_else(|()| "-".parse()).unwrap_or(Method::Get),
                        HTTPVersion(1, 1),
                        Vec::new(),
                    ),
                };
                Request::whole(
                    self.secure,
                    method,
                    target,
                    version,
                    headers,
                    self.remote_addr,
                    Vec::new(),
                    answers,
                    Some(refusal),
                )
            }
        };
        Next::Request(request, answer)
    }
}

/// How long, and for how many bytes, a refused request's connection is
/// drained before it is closed.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

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
            ..Limits::default()
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
