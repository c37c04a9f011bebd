//! The soak's hostile mix (SPEC §8: anonymous clients are assumed hostile),
//! beside its load: slow readers of big `/refer` answers, a pipeliner that
//! never reads, forged RS256 tokens naming a JWKS host that never answers,
//! one greedy tenant; and prompt calls timed meanwhile. Every client talks
//! to 127.0.0.1 only, and every loop is bounded in rounds and ends when the
//! mix is stopped: raw sockets time out every `STEP` to look, a request
//! waits `PROMPT_TIMEOUT` at most, and the greedy tenant's, which the
//! relay's deadline bounds, a minute.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{bearer, jwt_with_header, lock, Client, SECRET};

/// Rounds of any one hostile client at most.
const MAX_ROUNDS: u64 = 10_000;
/// What the pipeliner writes at most, in all: megabytes (SPEC §8), and no
/// more, as a relay that reads them all ahead may hold gigabytes for them.
const MAX_PIPELINED: u64 = 16 << 20;
/// Connections the silent JWKS host holds open at most.
const MAX_HELD: usize = 256;
/// How long a client that never reads holds its connection before another.
const HOLD: Duration = Duration::from_secs(15);
/// What a slow reader reads at a time, and how often: 64 KiB/s.
const SIP: usize = 8 * 1024;
const SIP_EVERY: Duration = Duration::from_millis(125);
/// The step of every wait, and of every socket timeout but the greedy
/// tenant's: how soon a client sees the mix stopped.
const STEP: Duration = Duration::from_millis(100);
/// The least time between two forged tokens of one client.
const FORGE_EVERY: Duration = Duration::from_millis(100);
/// The time between two rounds of prompt calls.
const PROMPT_EVERY: Duration = Duration::from_millis(250);
/// A prompt call not answered within this counts as failed.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP listener on 127.0.0.1 that accepts connections and never answers
/// (as a JWKS host that hangs), holding up to `MAX_HELD` of them.
pub struct Silent {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    acceptor: Option<JoinHandle<()>>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the silent host");
        let addr = listener.local_addr().expect("its address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let (stop, accepted) = (Arc::<AtomicBool>::default(), Arc::<AtomicU64>::default());
        let (stopped, count) = (stop.clone(), accepted.clone());
        let acceptor = thread::spawn(move || {
            let mut held = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        if held.len() == MAX_HELD {
                            held.remove(0);
                        }
                        held.push(stream);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Silent {
            addr,
            stop,
            accepted,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:PORT`, as `JWKS_HOSTS` and a token's `jwks_host` name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Who the mix is made of.
pub struct Plan {
    pub relay: SocketAddr,
    /// Clients that send a ~1 MiB `/refer` and read its answer at 64 KiB/s.
    pub slow_readers: usize,
    /// Clients that send it and never read (holding the connection `HOLD`).
    pub non_readers: usize,
    /// Clients writing requests into one connection without reading.
    pub pipeliners: usize,
    /// Clients sending RS256 tokens signed by nobody the relay knows.
    pub forgers: usize,
    /// The forged tokens' `jwks_host` (allowed by `JWKS_HOSTS`) and `aud`.
    pub jwks_host: String,
    pub audience: String,
    /// The greedy tenant's token and the size of its `/observe`.
    pub greedy: Option<(String, usize)>,
    /// The prompt calls' tenant token and `/observe` body.
    pub prompt: (String, String),
}

/// What each kind of client saw.
#[derive(Default, Debug)]
pub struct Figures {
    /// Slow readers: requests sent, answers read to the relay's close,
    /// bytes read.
    pub slow_sent: u64,
    pub slow_finished: u64,
    pub slow_bytes: u64,
    /// Clients that never read: requests sent.
    pub unread_sent: u64,
    /// Pipeliner: requests written, connections used.
    pub pipelined: u64,
    pub pipelined_connections: u64,
    /// Forged tokens' answers by status (`None`: no answer).
    pub forged: BTreeMap<Option<u16>, u64>,
    /// Greedy tenant: answers by status (`None`: no answer), and each
    /// request's time.
    pub greedy: BTreeMap<Option<u16>, u64>,
    pub greedy_times: Vec<Duration>,
    /// Prompt `/version` and `/observe` times, sorted; failures (no 200
    /// within `PROMPT_TIMEOUT`).
    pub version: Vec<Duration>,
    pub observe: Vec<Duration>,
    pub prompt_failures: Vec<String>,
}

/// The mix, running.
pub struct Mix {
    stop: Arc<AtomicBool>,
    figures: Arc<Mutex<Figures>>,
    threads: Vec<JoinHandle<()>>,
}

impl Mix {
    pub fn start(plan: Plan) -> Mix {
        let stop = Arc::<AtomicBool>::default();
        let figures = Arc::<Mutex<Figures>>::default();
        let plan = Arc::new(plan);
        let mut threads = Vec::new();
        let mut spawn = |client: fn(&Plan, &AtomicBool, &Mutex<Figures>, usize), i: usize| {
            let (plan, stop, figures) = (plan.clone(), stop.clone(), figures.clone());
            threads.push(thread::spawn(move || client(&plan, &stop, &figures, i)));
        };
        (0..plan.slow_readers).for_each(|i| spawn(slow_reader, i));
        (0..plan.non_readers).for_each(|i| spawn(non_reader, i));
        (0..plan.pipeliners).for_each(|i| spawn(pipeliner, i));
        (0..plan.forgers).for_each(|i| spawn(forger, i));
        if plan.greedy.is_some() {
            spawn(greedy, 0);
        }
        spawn(prompt, 0);
        Mix {
            stop,
            figures,
            threads,
        }
    }

    /// Stops every client, waits for them (the greedy tenant's last
    /// request included) and gives what they saw.
    pub fn stop(self) -> Figures {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        let mut figures = std::mem::take(&mut *lock(&self.figures));
        figures.version.sort();
        figures.observe.sort();
        figures
    }
}

fn stopped(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed)
}

/// A connection to the relay whose reads and writes time out after `STEP`.
fn connect(plan: &Plan) -> Option<TcpStream> {
    let stream = TcpStream::connect_timeout(&plan.relay, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(STEP)).ok()?;
    stream.set_write_timeout(Some(STEP)).ok()?;
    Some(stream)
}

/// A new connection to the relay each round, at most `MAX_ROUNDS`, until
/// the mix stops; a round whose connect failed waits a step and yields
/// nothing.
fn connections<'a>(plan: &'a Plan, stop: &'a AtomicBool) -> impl Iterator<Item = TcpStream> + 'a {
    (0..MAX_ROUNDS)
        .take_while(|_| !stopped(stop))
        .filter_map(|_| {
            connect(plan).or_else(|| {
                thread::sleep(STEP);
                None
            })
        })
}

/// Writes all of `bytes` unless the mix stops or the connection fails.
fn write_all(stream: &mut TcpStream, mut bytes: &[u8], stop: &AtomicBool) -> bool {
    while !bytes.is_empty() && !stopped(stop) {
        match stream.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    bytes.is_empty()
}

/// `POST /refer/observables` with a body of a little under 1 MiB (the
/// relay's limit): 17 000 domains, whose answer is a few MiB.
fn big_refer(round: u64, close: bool) -> Vec<u8> {
    let observables: Vec<Value> = (0..17_000)
        .map(|i| json!({"type": "domain", "value": format!("h{i:05}.r{round}.example.com")}))
        .collect();
    let body = Value::Array(observables).to_string();
    let head = format!(
        "POST /refer/observables HTTP/1.1\r\nHost: relay\r\n{}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        if close { "Connection: close\r\n" } else { "" },
        body.len()
    );
    [head.into_bytes(), body.into_bytes()].concat()
}

/// Sends a big `/refer` (`Connection: close`), then reads the answer at
/// 64 KiB/s until the relay closes.
fn slow_reader(plan: &Plan, stop: &AtomicBool, figures: &Mutex<Figures>, i: usize) {
    let request = big_refer(i as u64, true);
    for mut stream in connections(plan, stop) {
        if !write_all(&mut stream, &request, stop) {
            continue;
        }
        lock(figures).slow_sent += 1;
        let mut buffer = vec![0; SIP];
        let mut read = 0;
        let finished = loop {
            if stopped(stop) {
                break false;
            }
            match stream.read(&mut buffer) {
                Ok(0) => break true,
                Ok(n) => read += n as u64,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break false,
            }
            thread::sleep(SIP_EVERY);
        };
        let mut figures = lock(figures);
        figures.slow_finished += u64::from(finished && read > 0);
        figures.slow_bytes += read;
    }
}

/// Sends a big `/refer` and never reads its answer; another connection
/// after `HOLD`.
fn non_reader(plan: &Plan, stop: &AtomicBool, figures: &Mutex<Figures>, i: usize) {
    let request = big_refer(1_000 + i as u64, false);
    for mut stream in connections(plan, stop) {
        if write_all(&mut stream, &request, stop) {
            lock(figures).unread_sent += 1;
        }
        let held = Instant::now();
        while held.elapsed() < HOLD && !stopped(stop) {
            thread::sleep(STEP);
        }
    }
}

/// Writes `POST /version` requests into one connection and never reads;
/// another connection when the relay closes it.
fn pipeliner(plan: &Plan, stop: &AtomicBool, figures: &Mutex<Figures>, _: usize) {
    const BATCH: usize = 64;
    let one = "POST /version HTTP/1.1\r\nHost: relay\r\nContent-Length: 0\r\n\r\n";
    let batch = one.repeat(BATCH);
    let mut written = 0;
    for mut stream in connections(plan, stop) {
        if written >= MAX_PIPELINED {
            return;
        }
        lock(figures).pipelined_connections += 1;
        while !stopped(stop) && written < MAX_PIPELINED {
            if !write_all(&mut stream, batch.as_bytes(), stop) {
                break;
            }
            written += batch.len() as u64;
            lock(figures).pipelined += BATCH as u64;
        }
    }
}

/// `/observe` with RS256 tokens the relay cannot check but by fetching the
/// keys of `jwks_host`, which never answers; a new `kid` and key each time.
fn forger(plan: &Plan, stop: &AtomicBool, figures: &Mutex<Figures>, i: usize) {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3_600;
    let body = json!([{"type": "ip", "value": "192.0.2.1"}]).to_string();
    for round in 0..MAX_ROUNDS {
        if stopped(stop) {
            return;
        }
        let started = Instant::now();
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": format!("forged-{i}-{round}")});
        let claims = json!({"key": format!("forged-key-{i}-{round}"), "exp": exp,
                            "jwks_host": plan.jwks_host, "aud": plan.audience});
        // Signed with HMAC: no RSA key could check it.
        let token = jwt_with_header(SECRET, header, claims);
        let mut client = Client::new(plan.relay).timeout(PROMPT_TIMEOUT);
        let answer = client.send(
            "POST",
            "/observe/observables",
            &[("Authorization", &bearer(&token)), ("Connection", "close")],
            body.as_bytes(),
        );
        let status = answer.ok().map(|a| a.status);
        *lock(figures).forged.entry(status).or_insert(0) += 1;
        thread::sleep(FORGE_EVERY.saturating_sub(started.elapsed()));
    }
}

/// One tenant's big `/observe`, again and again (new values each time, so
/// that every round asks OTX).
fn greedy(plan: &Plan, stop: &AtomicBool, figures: &Mutex<Figures>, _: usize) {
    let Some((token, size)) = &plan.greedy else {
        return;
    };
    // The relay answers by its deadline; a minute is beyond any.
    let mut client = Client::new(plan.relay)
        .timeout(Duration::from_secs(60))
        .header("Authorization", &bearer(token));
    for round in 0..MAX_ROUNDS {
        if stopped(stop) {
            return;
        }
        let observables: Vec<Value> = (0..*size as u64)
            .map(|i| {
                let n = round * *size as u64 + i;
                let ip = format!("10.{}.{}.{}", n >> 16 & 255, n >> 8 & 255, n & 255);
                json!({"type": "ip", "value": ip})
            })
            .collect();
        let started = Instant::now();
        let answer = client.post_json(
            "/observe/observables",
            &Value::Array(observables).to_string(),
        );
        let status = answer.ok().map(|a| a.status);
        let mut figures = lock(figures);
        *figures.greedy.entry(status).or_insert(0) += 1;
        figures.greedy_times.push(started.elapsed());
    }
}

/// Every `PROMPT_EVERY`: `/version`, then the prompt tenant's small
/// `/observe`, each on a new connection, timed.
fn prompt(plan: &Plan, stop: &AtomicBool, figures: &Mutex<Figures>, _: usize) {
    let (token, body) = &plan.prompt;
    let authorization = bearer(token);
    let call = |path: &str, headers: &[(&str, &str)], body: &str| {
        let started = Instant::now();
        let mut client = Client::new(plan.relay).timeout(PROMPT_TIMEOUT);
        let all = [&[("Connection", "close")], headers].concat();
        let answer = client.send("POST", path, &all, body.as_bytes());
        let took = started.elapsed();
        let failure = match answer {
            Ok(answer) if answer.status == 200 => None,
            Ok(answer) => Some(format!("{path}: {}", answer.status)),
            Err(e) => Some(format!("{path}: {e}")),
        };
        (took, failure)
    };
    for _ in 0..MAX_ROUNDS {
        if stopped(stop) {
            return;
        }
        let round = Instant::now();
        let version = call("/version", &[], "");
        let json = ("Content-Type", "application/json");
        let observe = call(
            "/observe/observables",
            &[("Authorization", &authorization), json],
            body,
        );
        let mut figures = lock(figures);
        figures.version.push(version.0);
        figures.observe.push(observe.0);
        figures
            .prompt_failures
            .extend([version.1, observe.1].into_iter().flatten());
        drop(figures);
        thread::sleep(PROMPT_EVERY.saturating_sub(round.elapsed()));
    }
}
