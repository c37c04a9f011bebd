//! `check_json`: whole-document comparison with placeholders.

use regex::Regex;
use serde_json::Value;

/// Compares `actual` to `expected` as whole documents (no missing, no extra
/// key; arrays in order). A string of `expected` can be a placeholder:
///
/// - `<<any>>`: any value at all;
/// - `<<uuid>>`: a lower-case 8-4-4-4-12 hex UUID;
/// - `<<prefix:XYZ>>`: `XYZ` followed by such a UUID;
/// - `<<time>>`: `YYYY-MM-DDTHH:MM:SS.sssZ`;
/// - `<<re:PATTERN>>`: a string that PATTERN matches whole (`regex_full_match`).
///
/// On a mismatch, panics with the JSON path of the first difference and both
/// documents pretty-printed.
#[track_caller]
pub fn check_json(actual: &Value, expected: &Value) {
    if let Err((path, why)) = compare(actual, expected, "$") {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
        panic!(
            "JSON mismatch at {path}: {why}\n--- expected ---\n{}\n--- actual ---\n{}",
            pretty(expected),
            pretty(actual)
        );
    }
}

/// `path` extended by an object key, `.key` when it reads well, else `["key"]`.
fn key_path(path: &str, key: &str) -> String {
    let simple = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if simple {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::from(key))
    }
}

/// A short rendering of `value` for a failure message.
fn brief(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text
    }
}

fn compare(actual: &Value, expected: &Value, path: &str) -> Result<(), (String, String)> {
    let mismatch = |why: String| Err((path.to_string(), why));
    match (expected, actual) {
        (Value::String(pattern), _) if is_placeholder(pattern) => {
            match_placeholder(pattern, actual).or_else(mismatch)
        }
        (Value::Object(expected), Value::Object(actual)) => {
            let mut keys: Vec<&String> = expected.keys().chain(actual.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = key_path(path, key);
                match (expected.get(key), actual.get(key)) {
                    (Some(e), Some(a)) => compare(a, e, &child)?,
                    (Some(e), None) => {
                        return Err((child, format!("missing, expected {}", brief(e))))
                    }
                    (None, Some(a)) => {
                        return Err((child, format!("unexpected key, holding {}", brief(a))))
                    }
                    (None, None) => {}
                }
            }
            Ok(())
        }
        (Value::Array(expected), Value::Array(actual)) => {
            if expected.len() != actual.len() {
                let (e, a) = (expected.len(), actual.len());
                return mismatch(format!("expected an array of {e} items, found {a}"));
            }
            for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
                compare(a, e, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Number(e), Value::Number(a)) if e == a || e.as_f64() == a.as_f64() => Ok(()),
        _ if expected == actual => Ok(()),
        _ => mismatch(format!(
            "expected {}, found {}",
            brief(expected),
            brief(actual)
        )),
    }
}

fn is_placeholder(s: &str) -> bool {
    s.len() >= 4 && s.starts_with("<<") && s.ends_with(">>")
}

fn match_placeholder(placeholder: &str, actual: &Value) -> Result<(), String> {
    let inner = &placeholder[2..placeholder.len() - 2];
    if inner == "any" {
        return Ok(());
    }
    let fail = || Err(format!("expected {placeholder}, found {}", brief(actual)));
    let Value::String(text) = actual else {
        return fail();
    };
    let ok = if inner == "uuid" {
        is_uuid(text)
    } else if inner == "time" {
        is_time(text)
    } else if let Some(prefix) = inner.strip_prefix("prefix:") {
        text.strip_prefix(prefix).is_some_and(is_uuid)
    } else if let Some(pattern) = inner.strip_prefix("re:") {
        regex_full_match(pattern, text)
    } else {
        panic!("unknown placeholder {placeholder:?} in the expected document")
    };
    if ok {
        Ok(())
    } else {
        fail()
    }
}

/// A lower-case 8-4-4-4-12 hex UUID.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ`.
pub fn is_time(s: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddZ";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(b, &shape)| match shape {
            b'd' => b.is_ascii_digit(),
            _ => b == shape,
        })
}

/// Whether all of `text` matches `pattern`, a `regex` crate pattern in which
/// `.` also matches a newline and `\d \w \s` (and `\D \W \S`) are ASCII
/// classes. Panics on a malformed pattern.
pub fn regex_full_match(pattern: &str, text: &str) -> bool {
    let mut ascii = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let escaped = if c == '\\' { chars.next() } else { None };
        ascii.push_str(&match escaped {
            Some('d') => "[0-9]".into(),
            Some('D') => "[^0-9]".into(),
            Some('w') => "[0-9A-Za-z_]".into(),
            Some('W') => "[^0-9A-Za-z_]".into(),
            Some('s') => r"[\t-\r ]".into(),
            Some('S') => r"[^\t-\r ]".into(),
            Some(e) => format!("\\{e}"),
            None => c.to_string(),
        });
    }
    Regex::new(&format!(r"(?s)\A(?:{ascii})\z"))
        .unwrap_or_else(|e| panic!("bad pattern {pattern:?}: {e}"))
        .is_match(text)
}
