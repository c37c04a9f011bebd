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
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

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

/// How often one kind of trouble may write a line: once a minute.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// One kind of trouble's warnings: at most one line per [`WARN_EVERY`];
/// those that fall in between are counted, and the next line says how
/// many were folded. A failure that repeats a thousand times a second
/// (OTX down, Redis gone) is then one line a minute, not a flood that
/// buries everything else.
pub struct Limiter(Mutex<Fold>);

impl Limiter {
    pub const fn new() -> Limiter {
        Limiter(Mutex::new(Fold {
            last: None,
            folded: 0,
        }))
    }

    /// Warns `message` unless a line of this kind was written less than a
    /// minute ago (then it is only counted).
    pub fn warn(&self, message: fmt::Arguments) {
        self.warn_at(Instant::now(), message);
    }

    /// [`Limiter::warn`] as of `now`; whether a line was written.
    pub fn warn_at(&self, now: Instant, message: fmt::Arguments) -> bool {
        let admitted = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(now);
        match admitted {
            None => false,
            Some(0) => {
                warn(message);
                true
            }
            Some(folded) => {
                warn(format_args!(
                    "{message} (and {folded} more since the last such line)"
                ));
                true
            }
        }
    }
}

impl Default for Limiter {
    fn default() -> Limiter {
        Limiter::new()
    }
}

/// The state of a [`Limiter`]: when its last line was written, and how
/// many events were folded since.
#[derive(Debug, Default)]
pub struct Fold {
    last: Option<Instant>,
    folded: u64,
}

impl Fold {
    /// An event at `now`: `Some(n)` when it is written, `n` being the
    /// events folded since the last line; `None` when it is folded.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < WARN_EVERY => {
                self.folded += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.folded))
            }
        }
    }
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
    use super::*;

    #[test]
    fn a_burst_is_one_line_and_the_next_says_how_many_were_folded() {
        let start = Instant::now();
        let mut fold = Fold::default();
        let written: Vec<u64> = (0..100)
            .filter_map(|i| fold.admit(start + Duration::from_millis(i * 10)))
            .collect();
        assert_eq!(written, [0], "a burst of 100: one line");
        // Still within the minute of that line: folded.
        assert_eq!(fold.admit(start + Duration::from_secs(59)), None);
        // A minute after it: written, with the 100 folded meanwhile.
        assert_eq!(fold.admit(start + WARN_EVERY), Some(100));
        assert_eq!(
            fold.admit(start + WARN_EVERY + Duration::from_secs(1)),
            None
        );
        // Quiet for an hour: the next one is written with its one folded.
        assert_eq!(fold.admit(start + Duration::from_secs(3600)), Some(1));
        assert_eq!(fold.admit(start + Duration::from_secs(7200)), Some(0));
    }

    #[test]
    fn a_limiter_writes_one_line_a_minute() {
        let limiter = Limiter::new();
        let start = Instant::now();
        let writes: Vec<bool> = (0..100)
            .map(|_| limiter.warn_at(start, format_args!("log.rs unit test: a burst")))
            .collect();
        assert_eq!(writes.iter().filter(|w| **w).count(), 1);
        assert!(limiter.warn_at(start + WARN_EVERY, format_args!("log.rs unit test: again")));
    }

    #[test]
    fn escape_leaves_one_printable_line() {
        assert_eq!(escape("/observe/observables"), "/observe/observables");
        assert_eq!(
            escape("/a\x1b[31m\rFAKE\x08\n\t\u{7f}\u{85}\u{202e}ü"),
            "/a\\x1b[31m\\rFAKE\\x08\\n\\t\\x7f\\x85\\u{202e}ü"
        );
    }
}
