//! Log lines: access lines on stdout, warnings and errors on stderr, one
//! line each, written whole. Callers pass only what is safe to print: no
//! header value, JWT, OTX key or `SECRET_KEY` ever reaches these functions.

use std::fmt;
use std::io::Write;
use std::time::{Duration, SystemTime};

use crate::ctim::format_time;

/// One access line: method, path (without query), status, bytes, duration,
/// OTX retries.
pub fn access(method: &str, path: &str, status: u16, bytes: usize, took: Duration, retries: u32) {
    let line = format!(
        "{} {method} {path} {status} {bytes} {:.1}ms retries={retries}\n",
        format_time(SystemTime::now()),
        took.as_secs_f64() * 1000.0
    );
    // A closed stdout must not take the relay down.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

/// Something the operator should know about; the relay goes on.
pub fn warn(message: fmt::Arguments) {
    let line = format!("{} WARN {message}\n", format_time(SystemTime::now()));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Something failed.
pub fn error(message: fmt::Arguments) {
    let line = format!("{} ERROR {message}\n", format_time(SystemTime::now()));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A start-up or shutdown note, on stdout.
pub fn info(message: fmt::Arguments) {
    let _ = writeln!(std::io::stdout().lock(), "{message}");
}
