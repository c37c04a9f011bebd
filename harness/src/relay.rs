//! The relay binary run as a child process on a free port, its output
//! captured and checked for secrets.

use std::cmp::Reverse;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{bearer, lock, token, Client, Headers, KEY, SECRET};

/// Checks `done` every millisecond for up to `within`; whether it held.
/// (The bench's start-up figure counts from the spawn, this wait included.)
pub(crate) fn poll(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    done()
}

/// A port free on 127.0.0.1 right now. The relay refuses `PORT=0` (SPEC §1
/// wants 1–65535), so the harness picks the port; `RelayCommand::start`
/// retries if another process takes it in between.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    listener.local_addr().expect("a bound address").port()
}

/// A port of 127.0.0.1 that refuses connections for as long as this lives:
/// bound by a socket that never listens, so that no other test can take it
/// (a `free_port` could be taken meanwhile, and answer).
pub struct RefusedPort(socket2::Socket);

impl RefusedPort {
    pub fn bind() -> RefusedPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None);
        let socket = socket.expect("a TCP socket");
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        socket.bind(&any.into()).expect("a free port on 127.0.0.1");
        RefusedPort(socket)
    }

    pub fn port(&self) -> u16 {
        let addr = self.0.local_addr().ok().and_then(|addr| addr.as_socket());
        addr.expect("a bound address").port()
    }
}

/// The secrets no output may hold, each with its label: `SECRET`, `KEY`,
/// `token()` and its payload and signature segments (the payload is the key
/// in base64), then `extra`. Longest first, so that no secret is left
/// half-shown when one contains another.
fn secrets(extra: &[String]) -> Vec<(String, &str)> {
    // Minted once: a quiet relay's every line is scanned during a load.
    static TOKEN: OnceLock<String> = OnceLock::new();
    let token = TOKEN.get_or_init(token).as_str();
    let segment = |i| token.split('.').nth(i).unwrap_or(token);
    let builtin = [("SECRET", SECRET), ("KEY", KEY), ("token()", token)];
    let segments = [
        ("token()'s payload", segment(1)),
        ("token()'s signature", segment(2)),
    ];
    let builtin = builtin.into_iter().chain(segments);
    let builtin = builtin.map(|(label, secret)| (label.to_string(), secret));
    let extra = extra.iter().enumerate();
    let extra = extra.map(|(i, secret)| (format!("forbid #{i}"), secret.as_str()));
    let mut secrets: Vec<_> = builtin.chain(extra).collect();
    secrets.retain(|(_, secret)| !secret.is_empty());
    secrets.sort_by_key(|(_, secret)| Reverse(secret.len()));
    secrets
}

/// `text` with each secret (see `find_secret`) replaced by `<its label>`:
/// what a failure message may show of the relay's output.
pub fn redact(text: &str, extra: &[String]) -> String {
    redact_all(text, &secrets(extra))
}

/// `text` with each of `secrets` replaced by `<its label>`.
fn redact_all(text: &str, secrets: &[(String, &str)]) -> String {
    let redact = |text: String, (label, secret): &(String, &str)| {
        text.replace(secret, &format!("<{label}>"))
    };
    secrets.iter().fold(text.to_string(), redact)
}

/// Looks for any secret in `logs`: the built-in ones (`SECRET`, `KEY`,
/// `token()` and its segments) and `extra`. Returns a description naming the
/// secret by label and the line by number, never the secret itself (it is
/// redacted from the line).
pub fn find_secret(logs: &str, extra: &[String]) -> Option<String> {
    let secrets = secrets(extra);
    let (line, number, label) = logs.lines().zip(1..).find_map(|(line, number)| {
        let (label, _) = secrets.iter().find(|(_, secret)| line.contains(secret))?;
        Some((line, number, label))
    })?;
    let redacted = redact_all(line, &secrets);
    Some(format!(
        "secret {label} appears in the relay's output, line {number}: {redacted}"
    ))
}

/// How to start the relay: 127.0.0.1 and a free port, the inherited relay
/// variables removed, then `SECRET_KEY=SECRET`, `AVOTX_URL`, `CACHE_TTL=0`,
/// then `env` (an entry with the value "" sets the variable to empty) and
/// `remove`, in the order given.
pub struct RelayCommand {
    command: Command,
    quiet: bool,
}

impl RelayCommand {
    pub fn new(bin: impl AsRef<OsStr>, otx_url: &str) -> RelayCommand {
        RelayCommand::wrapped(Command::new(bin), otx_url)
    }

    /// The relay run by `command` (the binary in a jail, say), whose process
    /// must become the relay's (by `exec`).
    pub fn wrapped(mut command: Command, otx_url: &str) -> RelayCommand {
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_relay_variable) {
                command.env_remove(name);
            }
        }
        command.env("HOST", "127.0.0.1").env("SECRET_KEY", SECRET);
        command.env("AVOTX_URL", otx_url).env("CACHE_TTL", "0");
        let quiet = false;
        RelayCommand { command, quiet }
    }

    pub fn env(mut self, env: &[(&str, &str)]) -> RelayCommand {
        self.command.envs(env.iter().copied());
        self
    }

    pub fn remove(mut self, names: &[&str]) -> RelayCommand {
        for name in names {
            self.command.env_remove(name);
        }
        self
    }

    /// Drops the access log (stdout after the `listening on` line) but for
    /// the lines that hold a secret: for loads, whose access log is long.
    pub fn quiet(mut self) -> RelayCommand {
        self.quiet = true;
        self
    }

    /// Starts the relay and waits (max 10 s) for its `listening on` line;
    /// another port if its port was taken meanwhile. The error holds the
    /// relay's output.
    pub fn start(mut self) -> Result<Relay, String> {
        let mut env = self.command.get_envs();
        let port_chosen = env.any(|(name, value)| name == "PORT" && value.is_some());
        for attempt in 1.. {
            if !port_chosen {
                self.command.env("PORT", free_port().to_string());
            }
            let mut relay = Relay::spawn(&mut self.command, self.quiet);
            let started = || relay.listening() || !relay.alive();
            poll(Duration::from_secs(10), started);
            if relay.listening() {
                return Ok(relay);
            }
            let status = relay.stop_within(Duration::ZERO);
            let output = relay.logs();
            if output.to_ascii_lowercase().contains("in use") && !port_chosen && attempt < 5 {
                continue;
            }
            let why = match status {
                Some(status) => format!("exited ({status}) before its `listening on` line"),
                None => "printed no `listening on` line within 10 s".to_string(),
            };
            return Err(format!("otx-relay {why}; its output:\n{output}"));
        }
        unreachable!("the fifth attempt returns")
    }
}

/// Whether the relay reads `name` (any case): the variables a caller may
/// have inherited (a developer's `REDIS_URL`, say) and that must not leak
/// into the relay under test. `tests/it/smoke.rs` holds it to `src/config.rs`.
pub fn is_relay_variable(name: &str) -> bool {
    const EXACT: &str = "SECRET_KEY CTR_ENTITIES_LIMIT SSL_CERT_FILE SSL_CERT_DIR HTTPS_PROXY \
                         HTTP_PROXY ALL_PROXY NO_PROXY HOST PORT METRICS REDIS_URL \
                         PASSIVE_DNS PASSIVE_DNS_LIMIT";
    const PREFIXES: [&str; 7] = [
        "AVOTX_", "RELAY_", "CACHE_", "OTX_", "VERDICT_", "JWKS_", "TILE_",
    ];
    let name = name.to_ascii_uppercase();
    EXACT.split_whitespace().any(|v| v == name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// What the relay printed: each line, ending in `\n`, and whether it came
/// from stderr; what it must not contain besides the built-in secrets.
#[derive(Default)]
struct Output {
    lines: Vec<(bool, String)>,
    forbidden: Vec<String>,
    quiet: bool,
    /// From the `otx-relay <version> listening on http://<addr>` line.
    listening: Option<SocketAddr>,
}

/// A running `otx-relay` child process, whose stdout and stderr two threads
/// copy line by line. Dropping it stops the process and checks that no
/// secret reached its output.
pub struct Relay {
    child: Child,
    spawned: Instant,
    output: Arc<Mutex<Output>>,
    readers: Vec<JoinHandle<()>>,
}

impl Relay {
    fn spawn(command: &mut Command, quiet: bool) -> Relay {
        command.stdin(Stdio::null());
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = (command.spawn())
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
        let output = Arc::<Mutex<Output>>::default();
        lock(&output).quiet = quiet;
        let stdout = read(&output, child.stdout.take().expect("piped"), false);
        let stderr = read(&output, child.stderr.take().expect("piped"), true);
        let readers = vec![stdout, stderr];
        Relay {
            child,
            spawned,
            output,
            readers,
        }
    }

    fn listening(&self) -> bool {
        lock(&self.output).listening.is_some()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        lock(&self.output).listening.expect("a relay listening")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// `text` with the secrets (`forbid`'s too) replaced by their labels.
    fn redacted(&self, text: &str) -> String {
        redact(text, &lock(&self.output).forbidden)
    }

    /// Adds `secret` to the strings the output must never contain.
    pub fn forbid(&self, secret: &str) {
        lock(&self.output).forbidden.push(secret.to_string());
    }

    /// POSTs `body` (as JSON) with an optional `Authorization` value; returns
    /// the status and the JSON answer. Panics if the answer is not JSON.
    pub fn post(&self, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend(auth.map(|auth| ("Authorization", auth)));
        let (status, _, bytes) = self.request("POST", path, &headers, body.as_bytes());
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            let text = self.redacted(&String::from_utf8_lossy(&bytes));
            panic!("POST {path} answered {status} with a body that is not JSON ({e}): {text:?}")
        });
        (status, json)
    }

    /// POST with `Authorization: Bearer <token()>`.
    pub fn post_auth(&self, path: &str, body: &str) -> (u16, Value) {
        self.post(path, Some(&bearer(&token())), body)
    }

    /// One request over a fresh connection (`Connection: close`), see
    /// `Client`. Returns the status, the headers (names lower-cased) and the
    /// body (de-chunked).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Headers, Vec<u8>) {
        let all = [&[("Connection", "close")], headers].concat();
        let answer = (Client::new(self.addr()).send(method, path, &all, body))
            .unwrap_or_else(|e| panic!("{method} {path}: no complete answer from the relay: {e}"));
        (answer.status, answer.headers, answer.body)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits (max 15 s) for the exit; the exit status, or
    /// `None` if the relay had to be killed.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.stop_within(Duration::from_secs(15))
    }

    /// SIGTERM, then up to `grace` for the exit, then SIGKILL; then up to
    /// 2 s for the readers to drain the pipes (a grandchild holding them
    /// open must not hang the caller: a reader still at work is left
    /// detached). The exit status, `None` if it was killed.
    fn stop_within(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.alive() {
            sigterm(self.child.id());
            poll(grace, || !self.alive());
        }
        let status = self.child.try_wait().ok().flatten();
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let readers = std::mem::take(&mut self.readers);
        let drained = || readers.iter().all(JoinHandle::is_finished);
        poll(Duration::from_secs(2), drained);
        status
    }

    /// `stop`, then the exit code (`None` if a signal ended it). Panics if it
    /// does not exit within 15 s.
    pub fn terminate(mut self) -> Option<i32> {
        let status = self.stop();
        let killed = "otx-relay did not exit within 15 s of SIGTERM; its output";
        status
            .unwrap_or_else(|| panic!("{killed}:\n{}", self.redacted(&self.logs())))
            .code()
    }

    /// Everything the relay printed so far, stdout and stderr interleaved by line.
    pub fn logs(&self) -> String {
        self.text(|_| true)
    }

    /// What the relay printed on stdout (start-up line, access log).
    pub fn stdout(&self) -> String {
        self.text(|stderr| !stderr)
    }

    /// What the relay printed on stderr (warnings, errors).
    pub fn stderr(&self) -> String {
        self.text(|stderr| stderr)
    }

    /// The lines for which `keep(from_stderr)` holds, in arrival order.
    fn text(&self, keep: impl Fn(bool) -> bool) -> String {
        let output = lock(&self.output);
        let kept = output.lines.iter().filter(|(stderr, _)| keep(*stderr));
        kept.map(|(_, line)| line.as_str()).collect()
    }

    /// Waits (max 5 s) until a line of the output contains `needle`; returns
    /// whether one did.
    pub fn wait_log(&self, needle: &str) -> bool {
        let seen = |(_, line): &(bool, String)| line.contains(needle);
        let any = || lock(&self.output).lines.iter().any(seen);
        poll(Duration::from_secs(5), any)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SIGTERM first, so the relay exits through its own shutdown path
        // (which is also what lets coverage tools write their data); killed
        // if it has not gone within a second.
        self.stop_within(Duration::from_secs(1));
        if thread::panicking() {
            return;
        }
        let logs = self.logs();
        if let Some(leak) = find_secret(&logs, &lock(&self.output).forbidden) {
            panic!("{leak}");
        }
    }
}

/// Sends SIGTERM to `pid` through the shell's `kill` builtin (no procps
/// needed); whether it was delivered.
pub fn sigterm(pid: u32) -> bool {
    let kill = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status();
    kill.is_ok_and(|status| status.success())
}

/// Copies the lines of `source` into `output`, noting the `listening on`
/// line; a quiet relay's stdout lines after it are kept only if they hold a
/// secret.
fn read(
    output: &Arc<Mutex<Output>>,
    source: impl Read + Send + 'static,
    stderr: bool,
) -> JoinHandle<()> {
    let output = Arc::clone(output);
    thread::spawn(move || {
        for line in BufReader::new(source).split(b'\n').map_while(Result::ok) {
            let line = format!("{}\n", String::from_utf8_lossy(&line));
            let mut output = lock(&output);
            if !stderr && output.listening.is_none() {
                output.listening = listening_addr(&line);
            } else if !stderr && output.quiet && find_secret(&line, &output.forbidden).is_none() {
                continue;
            }
            output.lines.push((stderr, line));
        }
    })
}

/// The address of an `otx-relay <version> listening on http://<addr>` line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let (before, after) = line.split_once(" listening on http://")?;
    let addr = after.trim().trim_end_matches('/').parse().ok();
    addr.filter(|_| before.starts_with("otx-relay "))
}

/// What a short-lived `otx-relay` command did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `bin args…` with only `env` in its environment; panics if it cannot
/// start, or has not exited within 10 s (coreutils' `timeout` then ends it:
/// SIGTERM, and SIGKILL a second later).
pub fn run_cli(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let (mut command, started) = (Command::new("timeout"), Instant::now());
    command.args(["-k", "1", "10", bin]).args(args);
    let out = command.env_clear().envs(env.iter().copied()).output();
    let out = out.expect("coreutils' timeout runs");
    let text = |bytes| String::from_utf8_lossy(bytes).into_owned();
    let (stdout, stderr, code) = (text(&out.stdout), text(&out.stderr), out.status.code());
    // `timeout` exits 125 to 127 when the command could not run.
    assert!(
        !matches!(code, Some(125..=127)),
        "cannot start {bin}: {stderr}"
    );
    let hung = format!("otx-relay {args:?} did not exit within 10 s; its output");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{hung}:\n{}",
        redact(&format!("{stdout}{stderr}"), &[])
    );
    Run {
        code,
        stdout,
        stderr,
    }
}
