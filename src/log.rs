//! Log lines: access lines on stdout, warnings and errors on stderr, one
//! line each, written whole. Callers pass only what is safe to print: no
//! header value, JWT, OTX key or `SECRET_KEY` ever reaches these functions.
//!
//! What a client or OTX sent (a method, a path, a pulse id, a reason) may
//! hold any character: every line is [`escape`]d as it is written, so one
//! event is always one line and no terminal sequence reaches a console.

use std::borrow::Cow;
use std::fmt;
use std::io::Write;
use std::time::{Duration, SystemTime};

use crate::time::format_time;

/// One access line: method, path (without query), status, bytes, duration,
/// OTX retries.
pub fn access(method: &str, path: &str, status: u16, bytes: usize, took: Duration, retries: u32) {
    let line = format!(
        "{} {} {} {status} {bytes} {:.1}ms retries={retries}\n",
        format_time(SystemTime::now()),
        escape(method),
        escape(path),
        took.as_secs_f64() * 1000.0
    );
    // A closed stdout must not take the relay down.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

/// Something the operator should know about; the relay goes on.
pub fn warn(message: fmt::Arguments) {
    let line = format!(
        "{} WARN {}\n",
        format_time(SystemTime::now()),
        escape(&message.to_string())
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Something failed.
pub fn error(message: fmt::Arguments) {
    let line = format!(
        "{} ERROR {}\n",
        format_time(SystemTime::now()),
        escape(&message.to_string())
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A start-up or shutdown note, on stdout.
pub fn info(message: fmt::Arguments) {
    let _ = writeln!(std::io::stdout().lock(), "{}", escape(&message.to_string()));
}

/// `text` with every control character (C0, DEL, C1), line separator and
/// bidirectional override written as an escape (`\n`, `\r`, `\t`, `\x1b`,
/// `\u{202e}`): what reaches a log line is printable and holds no line break.
pub fn escape(text: &str) -> Cow<'_, str> {
    let needs = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs(c) && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if needs(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escape_leaves_one_printable_line() {
        assert_eq!(escape("/observe/observables"), "/observe/observables");
        assert_eq!(
            escape("/a\x1b[31m\rFAKE\x08\n\t\u{7f}\u{85}\u{202e}ü"),
            "/a\\x1b[31m\\rFAKE\\x08\\n\\t\\x7f\\x85\\u{202e}ü"
        );
    }
}
