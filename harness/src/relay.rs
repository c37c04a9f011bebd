//! The relay binary run as a child process on a free port, its output
//! captured and checked for secrets.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{bearer, lock, token, Client, Headers, KEY, SECRET};

/// What the child printed, as complete lines.
#[derive(Default)]
struct Printed {
    all: String,
    stdout: String,
    stderr: String,
    /// From the `otx-relay <version> listening on http://<addr>` line.
    listening: Option<SocketAddr>,
    /// A secret in a line that was not kept (see `RelayCommand::quiet`).
    leak: Option<String>,
}

#[derive(Default)]
struct Output {
    printed: Mutex<Printed>,
    /// Notified at each line.
    line: Condvar,
}

impl Output {
    /// Waits (max `within`) until `done` holds; whether it did.
    fn wait_for(&self, within: Duration, done: impl Fn(&Printed) -> bool) -> bool {
        let deadline = Instant::now() + within;
        let mut printed = lock(&self.printed);
        while !done(&printed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let woken = self.line.wait_timeout(printed, left);
            printed = woken.unwrap_or_else(|poisoned| poisoned.into_inner()).0;
        }
        true
    }

    /// Copies the lines of `source` (stdout if `stdout`); `quiet` drops
    /// those after the `listening on` line once checked for secrets.
    fn read(
        self: Arc<Self>,
        source: impl Read + Send + 'static,
        stdout: bool,
        quiet: bool,
    ) -> JoinHandle<()> {
        thread::spawn(move || {
            let (mut reader, mut line) = (BufReader::new(source), Vec::new());
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let mut text = String::from_utf8_lossy(&line).into_owned();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                line.clear();
                let mut printed = lock(&self.printed);
                if quiet && printed.listening.is_some() {
                    if printed.leak.is_none() {
                        printed.leak = find_secret(&text, &[]);
                    }
                    continue;
                }
                if stdout && printed.listening.is_none() {
                    printed.listening = listening_addr(&text);
                }
                printed.all.push_str(&text);
                let own = if stdout {
                    &mut printed.stdout
                } else {
                    &mut printed.stderr
                };
                own.push_str(&text);
                self.line.notify_all();
            }
        })
    }
}

/// The address of an `otx-relay <version> listening on http://<addr>` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let (before, after) = line.split_once(" listening on http://")?;
    let addr = after.trim().trim_end_matches('/').parse().ok();
    addr.filter(|_| before.starts_with("otx-relay "))
}

/// Lets the threads reading a child's pipes drain them (max 2 s: a
/// grandchild holding them open must not hang the caller).
pub fn join_readers(readers: &mut Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    for reader in std::mem::take(readers) {
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
}

/// Whether the relay reads `name` (any case): the variables a caller may
/// have inherited and that must not leak into the relay under test.
fn is_relay_variable(name: &str) -> bool {
    const EXACT: &str = "SECRET_KEY CTR_ENTITIES_LIMIT SSL_CERT_FILE SSL_CERT_DIR HTTPS_PROXY \
                         HTTP_PROXY ALL_PROXY NO_PROXY HOST PORT";
    const PREFIXES: [&str; 5] = ["AVOTX_", "RELAY_", "CACHE_", "OTX_", "VERDICT_"];
    let name = name.to_ascii_uppercase();
    EXACT.split_whitespace().any(|v| v == name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A port free on 127.0.0.1 right now. The relay refuses `PORT=0` (SPEC §1
/// wants 1–65535), so the harness picks the port; `RelayCommand::start`
/// retries if another process takes it in between.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    listener.local_addr().expect("a bound address").port()
}

/// Looks for any secret in `logs`: the built-in ones (`SECRET`, `KEY`,
/// `token()`) and `extra`. Returns a description naming the secret by label and
/// the line by number, never the secret itself (it is redacted from the line).
pub fn find_secret(logs: &str, extra: &[String]) -> Option<String> {
    let mut secrets = vec![
        ("SECRET".to_string(), SECRET.to_string()),
        ("KEY".to_string(), KEY.to_string()),
        ("token()".to_string(), token()),
    ];
    let extra = extra.iter().enumerate().filter(|(_, s)| !s.is_empty());
    secrets.extend(extra.map(|(i, s)| (format!("forbid #{i}"), s.clone())));
    let (number, line, label) = logs.lines().enumerate().find_map(|(i, line)| {
        let (label, _) = secrets.iter().find(|(_, secret)| line.contains(secret))?;
        Some((i + 1, line, label.clone()))
    })?;
    // Redact the longest first, so that no secret is left half-shown when one
    // contains another.
    secrets.sort_by_key(|(_, secret)| std::cmp::Reverse(secret.len()));
    let redact = |line: String, (label, secret): &(String, String)| {
        line.replace(secret.as_str(), &format!("<{label}>"))
    };
    let redacted = secrets.iter().fold(line.to_string(), redact);
    Some(format!(
        "secret {label} appears in the relay's output, line {number}: {redacted}"
    ))
}

/// A relay that exited at start-up (or was killed, not listening after 10 s).
#[derive(Debug)]
pub struct Exited {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Stdout and stderr interleaved by line.
    pub output: String,
    /// `None` when it had to be killed.
    pub status: Option<ExitStatus>,
}

/// How to start the relay: its binary, 127.0.0.1 and a free port, the
/// inherited relay variables removed, then `SECRET_KEY=SECRET`,
/// `AVOTX_URL`, `CACHE_TTL=0`, then `env` (an entry with the value ""
/// sets the variable to empty) and `remove`, in the order given.
#[derive(Clone)]
pub struct RelayCommand {
    bin: PathBuf,
    /// `None` removes the variable.
    env: Vec<(String, Option<String>)>,
    quiet: bool,
}

impl RelayCommand {
    pub fn new(bin: impl Into<PathBuf>, otx_url: &str) -> RelayCommand {
        let env = [
            ("SECRET_KEY", SECRET),
            ("AVOTX_URL", otx_url),
            ("CACHE_TTL", "0"),
        ];
        RelayCommand {
            bin: bin.into(),
            env: Vec::new(),
            quiet: false,
        }
        .env(&env)
    }

    pub fn env(mut self, env: &[(&str, &str)]) -> RelayCommand {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())));
        self.env.extend(env);
        self
    }

    pub fn remove(mut self, names: &[&str]) -> RelayCommand {
        self.env
            .extend(names.iter().map(|name| (name.to_string(), None)));
        self
    }

    /// Drops the access log (stdout after the `listening on` line) once
    /// checked for the built-in secrets, instead of keeping it: for loads.
    pub fn quiet(mut self) -> RelayCommand {
        self.quiet = true;
        self
    }

    /// Starts the relay and waits (max 10 s) for its `listening on` line;
    /// another port if its port was taken meanwhile. The error holds the
    /// relay's output.
    pub fn start(&self) -> Result<Relay, String> {
        let port_chosen = self.env.iter().any(|(name, _)| name == "PORT");
        for attempt in 1.. {
            let exited = match self.launch() {
                Ok(relay) => return Ok(relay),
                Err(exited) => exited,
            };
            let in_use = exited.output.to_ascii_lowercase().contains("in use");
            if port_chosen || attempt == 5 || !in_use {
                let output = &exited.output;
                return Err(match exited.status {
                    Some(status) => format!(
                        "otx-relay exited ({status}) before its `listening on` line; its output:\n{output}"
                    ),
                    None => format!(
                        "otx-relay printed no `listening on` line within 10 s; its output:\n{output}"
                    ),
                });
            }
        }
        unreachable!("the fifth attempt returns")
    }

    /// Runs the relay with a configuration it must refuse: waits (max 10 s)
    /// for it to exit and returns what it printed. Panics if it starts
    /// listening instead, or if its output holds a secret.
    pub fn start_failure(&self) -> Exited {
        match self.launch() {
            Err(exited) if exited.status.is_some() => exited,
            Err(exited) => panic!(
                "otx-relay did not refuse to start; its output:\n{}",
                exited.output
            ),
            Ok(relay) => panic!(
                "otx-relay did not refuse to start; its output:\n{}",
                relay.logs()
            ),
        }
    }

    /// The relay listening, or what it printed before it exited (or was
    /// killed, 10 s after its start). On failure, `Relay`'s `Drop` checks
    /// its output for secrets.
    fn launch(&self) -> Result<Relay, Exited> {
        let mut command = Command::new(&self.bin);
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_relay_variable) {
                command.env_remove(name);
            }
        }
        command
            .env("HOST", "127.0.0.1")
            .env("PORT", free_port().to_string());
        for (name, value) in &self.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = (command.spawn())
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let output = Arc::new(Output::default());
        let readers = vec![
            Arc::clone(&output).read(child.stdout.take().expect("piped"), true, self.quiet),
            Arc::clone(&output).read(child.stderr.take().expect("piped"), false, false),
        ];
        let (addr, forbidden) = (SocketAddr::from(([127, 0, 0, 1], 0)), Mutex::default());
        let mut relay = Relay {
            child,
            addr,
            spawned,
            output,
            readers,
            forbidden,
        };
        let deadline = spawned + Duration::from_secs(10);
        loop {
            let listening = lock(&relay.output.printed).listening;
            if let Some(addr) = listening {
                relay.addr = addr;
                return Ok(relay);
            }
            let exited = relay.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let status = exited.or_else(|| relay.stop_within(Duration::ZERO));
                join_readers(&mut relay.readers);
                let printed = lock(&relay.output.printed);
                return Err(Exited {
                    code: status.and_then(|status| status.code()),
                    stdout: printed.stdout.clone(),
                    stderr: printed.stderr.clone(),
                    output: printed.all.clone(),
                    status,
                });
            }
            relay
                .output
                .wait_for(Duration::from_millis(10), |p| p.listening.is_some());
        }
    }
}

/// A running `otx-relay` child process. Dropping it stops the process and
/// checks that no secret reached its output.
pub struct Relay {
    child: Child,
    addr: SocketAddr,
    spawned: Instant,
    output: Arc<Output>,
    readers: Vec<JoinHandle<()>>,
    forbidden: Mutex<Vec<String>>,
}

impl Relay {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When the process was spawned.
    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// Adds `secret` to the strings the output must never contain (checked on `Drop`).
    pub fn forbid(&self, secret: &str) {
        lock(&self.forbidden).push(secret.to_string());
    }

    /// POSTs `body` (as JSON) with an optional `Authorization` value; returns
    /// the status and the JSON answer. Panics if the answer is not JSON.
    pub fn post(&self, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend(auth.map(|auth| ("Authorization", auth)));
        let (status, _, bytes) = self.request("POST", path, &headers, body.as_bytes());
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            let text = String::from_utf8_lossy(&bytes);
            panic!("POST {path} answered {status} with a body that is not JSON ({e}): {text:?}")
        });
        (status, json)
    }

    /// POST with `Authorization: Bearer <token()>`.
    pub fn post_auth(&self, path: &str, body: &str) -> (u16, Value) {
        self.post(path, Some(&bearer(&token())), body)
    }

    /// One request over a fresh connection (`Connection: close` unless
    /// `headers` says otherwise), see `Client`. Returns the status, the
    /// headers (names lower-cased) and the body (de-chunked).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Headers, Vec<u8>) {
        let mut all = headers.to_vec();
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
        {
            all.insert(0, ("Connection", "close"));
        }
        let answer = Client::new(self.addr).send(method, path, &all, body);
        let answer = answer
            .unwrap_or_else(|e| panic!("{method} {path}: no complete answer from the relay: {e}"));
        (answer.status, answer.headers, answer.body)
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then up to `grace` for the exit, then SIGKILL; the exit
    /// status, `None` if the relay had to be killed.
    fn stop_within(&mut self, grace: Duration) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        // A relay that already exited makes `kill` fail; the wait below tells.
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while self.alive() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let exited = self.child.try_wait().ok().flatten();
        if exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        exited
    }

    /// Sends SIGTERM and waits (max 15 s) for the exit; the exit status, or
    /// `None` if the relay had to be killed.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let status = self.stop_within(Duration::from_secs(15));
        join_readers(&mut self.readers);
        status
    }

    /// `stop`, then the exit code (`None` if a signal ended it). Panics if it
    /// does not exit within 15 s.
    pub fn terminate(mut self) -> Option<i32> {
        match self.stop() {
            Some(status) => status.code(),
            None => panic!(
                "otx-relay did not exit within 15 s of SIGTERM; its output:\n{}",
                self.logs()
            ),
        }
    }

    /// Everything the relay printed so far, stdout and stderr interleaved by line.
    pub fn logs(&self) -> String {
        lock(&self.output.printed).all.clone()
    }

    /// What the relay printed on stdout (start-up line, access log).
    pub fn stdout(&self) -> String {
        lock(&self.output.printed).stdout.clone()
    }

    /// What the relay printed on stderr (warnings, errors).
    pub fn stderr(&self) -> String {
        lock(&self.output.printed).stderr.clone()
    }

    /// Waits (max 5 s) until the output contains `needle`; returns whether it did.
    pub fn wait_log(&self, needle: &str) -> bool {
        self.output
            .wait_for(Duration::from_secs(5), |p| p.all.contains(needle))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SIGTERM first, so the relay exits through its own shutdown path
        // (which is also what lets coverage tools write their data); killed
        // if it has not gone within a second.
        if self.alive() {
            self.stop_within(Duration::from_secs(1));
        }
        let _ = self.child.wait();
        join_readers(&mut self.readers);
        if thread::panicking() {
            return;
        }
        let leak = lock(&self.output.printed).leak.clone();
        let extra = lock(&self.forbidden).clone();
        if let Some(leak) = leak.or_else(|| find_secret(&self.logs(), &extra)) {
            panic!("{leak}");
        }
    }
}

/// What a short-lived `otx-relay` command did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `bin args…` with only `env` in its environment; panics if it has
/// not exited within 10 s.
pub fn run_cli(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    let child = (command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn())
    .expect("run otx-relay");
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    thread::spawn(move || sender.send(child.wait_with_output()));
    let output = (receiver.recv_timeout(Duration::from_secs(10)))
        .unwrap_or_else(|_| panic!("otx-relay {args:?} (pid {pid}) did not exit within 10 s"))
        .expect("wait for otx-relay");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    Run {
        code: output.status.code(),
        stdout: text(&output.stdout),
        stderr: text(&output.stderr),
    }
}
