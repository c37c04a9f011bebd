//! A throwaway `redis-server` on a free port of 127.0.0.1, for the fleet
//! tests: no persistence, killed on drop; it can be stopped and started
//! again on the same port (Redis going down and coming back).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::relay::{free_port, poll};

/// A running (or stopped) `redis-server`.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one; `None` where `redis-server` is not installed.
    pub fn start() -> Option<RedisServer> {
        let (port, child) = (free_port(), None);
        let mut server = RedisServer { port, child };
        server.up().then_some(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port; panics if it does not answer.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.up(), "redis-server did not come back on {}", self.port);
    }

    /// A command's raw answer (RESP), e.g. `["DBSIZE"]`.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args).expect("an answer from redis-server")
    }

    fn try_command(&self, args: &[&str]) -> Option<String> {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request += &format!("${}\r\n{arg}\r\n", arg.len());
        }
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = [0u8; 4096];
        let n = stream.read(&mut answer).ok()?;
        Some(String::from_utf8_lossy(&answer[..n]).into_owned())
    }

    /// Spawns `redis-server` (no snapshots: nothing survives a stop) and
    /// waits (max 10 s) for its PONG.
    fn up(&mut self) -> bool {
        let port = self.port.to_string();
        let args = ["--port", &port, "--bind", "127.0.0.1", "--save", ""];
        let mut redis = Command::new("redis-server");
        self.child = redis.args(args).stdout(Stdio::null()).spawn().ok();
        let pong = || self.try_command(&["PING"]).as_deref() == Some("+PONG\r\n");
        self.child.is_some() && poll(Duration::from_secs(10), pong)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
