//! The relay binary run as a child process on a free port, its output
//! captured and checked for secrets.

use std::cmp::Reverse;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{bearer, lock, token, Client, Headers, KEY, SECRET};

/// What the child printed, and what the harness learnt from it.
#[derive(Default)]
struct Printed {
    /// Each line, ending in `\n`, and whether it came from stderr.
    lines: Vec<(bool, String)>,
    /// From the `otx-relay <version> listening on http://<addr>` line.
    listening: Option<SocketAddr>,
    /// What the output must not contain besides the built-in secrets.
    forbidden: Vec<String>,
    /// A secret in a line that was not kept (see `RelayCommand::quiet`).
    leak: Option<String>,
}

/// A child process whose stdout and stderr two threads copy, line by line.
struct Process {
    child: Child,
    spawned: Instant,
    printed: Arc<Mutex<Printed>>,
    readers: Vec<JoinHandle<()>>,
}

impl Process {
    fn spawn(command: &mut Command, quiet: bool) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = (command.spawn())
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
        let printed = Arc::default();
        let stdout = read(&printed, child.stdout.take().expect("piped"), false, quiet);
        let stderr = read(&printed, child.stderr.take().expect("piped"), true, false);
        let readers = vec![stdout, stderr];
        Process {
            child,
            spawned,
            printed,
            readers,
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then up to `grace` for the exit, then SIGKILL; then lets the
    /// readers drain the pipes. The exit status, `None` if it was killed.
    fn stop_within(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.alive() {
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            poll(grace, || !self.alive());
        }
        let status = self.child.try_wait().ok().flatten();
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        join_readers(&mut self.readers);
        status
    }

    /// From the `otx-relay <version> listening on http://<addr>` line.
    fn listening(&self) -> Option<SocketAddr> {
        lock(&self.printed).listening
    }

    /// The lines for which `keep(from_stderr)` holds, in arrival order.
    fn text(&self, keep: impl Fn(bool) -> bool) -> String {
        let printed = lock(&self.printed);
        let kept = printed.lines.iter().filter(|(stderr, _)| keep(*stderr));
        kept.map(|(_, line)| line.as_str()).collect()
    }
}

/// Copies the lines of `source` into `printed`; `quiet` drops those after
/// the `listening on` line once checked for secrets.
fn read(
    printed: &Arc<Mutex<Printed>>,
    source: impl Read + Send + 'static,
    stderr: bool,
    quiet: bool,
) -> JoinHandle<()> {
    let printed = Arc::clone(printed);
    thread::spawn(move || {
        for line in BufReader::new(source).split(b'\n').map_while(Result::ok) {
            let text = format!("{}\n", String::from_utf8_lossy(&line));
            let mut printed = lock(&printed);
            if quiet && printed.listening.is_some() {
                if printed.leak.is_none() {
                    printed.leak = find_secret(&text, &printed.forbidden);
                }
                continue;
            }
            if !stderr && printed.listening.is_none() {
                printed.listening = listening_addr(&text);
            }
            printed.lines.push((stderr, text));
        }
    })
}

/// Checks `done` every millisecond for up to `within`; whether it held.
/// (The bench's start-up figure counts from the spawn, this wait included.)
pub(crate) fn poll(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
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
    poll(Duration::from_secs(2), || {
        readers.iter().all(JoinHandle::is_finished)
    });
    // A finished thread needs no join; one still reading is left detached.
    readers.clear();
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
    let builtin = [
        ("SECRET", SECRET.into()),
        ("KEY", KEY.into()),
        ("token()", token()),
    ];
    let mut secrets: Vec<(String, String)> = builtin.map(|(l, s)| (l.into(), s)).into();
    let extra = extra.iter().enumerate().filter(|(_, s)| !s.is_empty());
    secrets.extend(extra.map(|(i, s)| (format!("forbid #{i}"), s.clone())));
    // Longest first, so that no secret is left half-shown when one contains
    // another.
    secrets.sort_by_key(|(_, secret)| Reverse(secret.len()));
    let (line, number, label) = logs.lines().zip(1..).find_map(|(line, number)| {
        let (label, _) = secrets.iter().find(|(_, secret)| line.contains(secret))?;
        Some((line, number, label))
    })?;
    let redact = |line: String, (label, secret): &(String, String)| {
        line.replace(secret.as_str(), &format!("<{label}>"))
    };
    let redacted = secrets.iter().fold(line.to_string(), redact);
    Some(format!(
        "secret {label} appears in the relay's output, line {number}: {redacted}"
    ))
}

/// How to start the relay: its binary, 127.0.0.1 and a free port, the
/// inherited relay variables removed, then `SECRET_KEY=SECRET`,
/// `AVOTX_URL`, `CACHE_TTL=0`, then `env` (an entry with the value ""
/// sets the variable to empty) and `remove`, in the order given.
#[derive(Clone)]
pub struct RelayCommand {
    /// The command that runs the relay, before its environment is set.
    program: Arc<dyn Fn() -> Command + Send + Sync>,
    /// `None` removes the variable.
    env: Vec<(String, Option<String>)>,
    quiet: bool,
}

impl RelayCommand {
    pub fn new(bin: impl Into<PathBuf>, otx_url: &str) -> RelayCommand {
        let bin = bin.into();
        RelayCommand::wrapped(move || Command::new(&bin), otx_url)
    }

    /// The relay run by the command `program` makes (the binary in a jail,
    /// say), whose process must become the relay's (by `exec`).
    pub fn wrapped(
        program: impl Fn() -> Command + Send + Sync + 'static,
        otx_url: &str,
    ) -> RelayCommand {
        let (program, env, quiet) = (Arc::new(program), Vec::new(), false);
        let defaults = [
            ("SECRET_KEY", SECRET),
            ("AVOTX_URL", otx_url),
            ("CACHE_TTL", "0"),
        ];
        RelayCommand {
            program,
            env,
            quiet,
        }
        .env(&defaults)
    }

    pub fn env(mut self, env: &[(&str, &str)]) -> RelayCommand {
        self.env
            .extend(env.iter().map(|&(k, v)| (k.into(), Some(v.into()))));
        self
    }

    pub fn remove(mut self, names: &[&str]) -> RelayCommand {
        self.env
            .extend(names.iter().map(|&name| (name.into(), None)));
        self
    }

    /// Drops the access log (stdout after the `listening on` line) once
    /// checked for secrets, instead of keeping it: for loads.
    pub fn quiet(mut self) -> RelayCommand {
        self.quiet = true;
        self
    }

    /// Starts the relay and waits (max 10 s) for its `listening on` line;
    /// another port if its port was taken meanwhile. The error holds the
    /// relay's output.
    pub fn start(&self) -> Result<Relay, String> {
        let mut command = (self.program)();
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_relay_variable) {
                command.env_remove(name);
            }
        }
        command.env("HOST", "127.0.0.1");
        for (name, value) in &self.env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let port_chosen =
            (command.get_envs()).any(|(name, value)| name == "PORT" && value.is_some());
        for attempt in 1.. {
            if !port_chosen {
                command.env("PORT", free_port().to_string());
            }
            let mut relay = Relay(Process::spawn(&mut command, self.quiet));
            poll(Duration::from_secs(10), || {
                relay.0.listening().is_some() || !relay.alive()
            });
            if relay.0.listening().is_some() {
                return Ok(relay);
            }
            let status = relay.0.stop_within(Duration::ZERO);
            let output = relay.logs();
            let in_use = output.to_ascii_lowercase().contains("in use");
            if in_use && !port_chosen && attempt < 5 {
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

/// A running `otx-relay` child process. Dropping it stops the process and
/// checks that no secret reached its output.
pub struct Relay(Process);

impl Relay {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.listening().expect("a relay listening")
    }

    pub fn pid(&self) -> u32 {
        self.0.child.id()
    }

    pub fn spawned(&self) -> Instant {
        self.0.spawned
    }

    /// Adds `secret` to the strings the output must never contain.
    pub fn forbid(&self, secret: &str) {
        lock(&self.0.printed).forbidden.push(secret.to_string());
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
        self.0.alive()
    }

    /// Sends SIGTERM and waits (max 15 s) for the exit; the exit status, or
    /// `None` if the relay had to be killed.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.0.stop_within(Duration::from_secs(15))
    }

    /// `stop`, then the exit code (`None` if a signal ended it). Panics if it
    /// does not exit within 15 s.
    pub fn terminate(mut self) -> Option<i32> {
        let status = self.stop();
        let output = self.logs();
        let killed =
            || panic!("otx-relay did not exit within 15 s of SIGTERM; its output:\n{output}");
        status.unwrap_or_else(killed).code()
    }

    /// Everything the relay printed so far, stdout and stderr interleaved by line.
    pub fn logs(&self) -> String {
        self.0.text(|_| true)
    }

    /// What the relay printed on stdout (start-up line, access log).
    pub fn stdout(&self) -> String {
        self.0.text(|stderr| !stderr)
    }

    /// What the relay printed on stderr (warnings, errors).
    pub fn stderr(&self) -> String {
        self.0.text(|stderr| stderr)
    }

    /// Waits (max 5 s) until a line of the output contains `needle`; returns
    /// whether one did.
    pub fn wait_log(&self, needle: &str) -> bool {
        let seen = |(_, line): &(bool, String)| line.contains(needle);
        poll(Duration::from_secs(5), || {
            lock(&self.0.printed).lines.iter().any(seen)
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SIGTERM first, so the relay exits through its own shutdown path
        // (which is also what lets coverage tools write their data); killed
        // if it has not gone within a second.
        self.0.stop_within(Duration::from_secs(1));
        if thread::panicking() {
            return;
        }
        let (logs, printed) = (self.logs(), lock(&self.0.printed));
        let leak = printed.leak.clone();
        if let Some(leak) = leak.or_else(|| find_secret(&logs, &printed.forbidden)) {
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

/// Runs `bin args…` with only `env` in its environment; panics (and kills
/// it) if it has not exited within 10 s.
pub fn run_cli(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(bin);
    command.args(args).env_clear().envs(env.iter().copied());
    let mut run = Process::spawn(&mut command, false);
    let exited = poll(Duration::from_secs(10), || !run.alive());
    let status = run.stop_within(Duration::ZERO);
    let output = run.text(|_| true);
    assert!(
        exited,
        "otx-relay {args:?} did not exit within 10 s; its output:\n{output}"
    );
    Run {
        code: status.and_then(|status| status.code()),
        stdout: run.text(|stderr| !stderr),
        stderr: run.text(|stderr| stderr),
    }
}
