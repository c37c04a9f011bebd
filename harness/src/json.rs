//! `check_json`: whole-document comparison with placeholders.

use std::collections::BTreeSet;

use regex::Regex;
use serde_json::Value;

/// What `<<uuid>>` and `<<time>>` stand for.
const UUID: &str = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const TIME: &str = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z";

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
    if let Err(difference) = compare(Some(actual), Some(expected), "$") {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
        panic!(
            "JSON mismatch at {difference}\n--- expected ---\n{}\n--- actual ---\n{}",
            pretty(expected),
            pretty(actual)
        );
    }
}

/// `path` extended by an object key, `.key` when it reads well, else `["key"]`.
fn key_path(path: &str, key: &str) -> String {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if key.starts_with(|c: char| word(c) && !c.is_ascii_digit()) && key.chars().all(word) {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::from(key))
    }
}

/// `value` for a failure message, cut after 200 characters.
fn brief(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The first difference, as `<JSON path>: <what differs>`; `None` stands
/// for a key that one of two objects lacks.
fn compare(actual: Option<&Value>, expected: Option<&Value>, path: &str) -> Result<(), String> {
    let (actual, expected) = match (actual, expected) {
        (Some(actual), Some(expected)) => (actual, expected),
        (Some(a), None) => return Err(format!("{path}: unexpected key, holding {}", brief(a))),
        (None, Some(e)) => return Err(format!("{path}: missing, expected {}", brief(e))),
        (None, None) => return Ok(()),
    };
    let placeholder = expected
        .as_str()
        .and_then(|e| e.strip_prefix("<<")?.strip_suffix(">>"));
    let same = match (placeholder, expected, actual) {
        (Some(inner), _, _) => matches_placeholder(inner, actual),
        (None, Value::Object(e), Value::Object(a)) => {
            let keys: BTreeSet<&String> = e.keys().chain(a.keys()).collect();
            for key in keys {
                compare(a.get(key), e.get(key), &key_path(path, key))?;
            }
            true
        }
        (None, Value::Array(e), Value::Array(a)) if e.len() != a.len() => {
            let (e, a) = (e.len(), a.len());
            return Err(format!("{path}: expected an array of {e} items, found {a}"));
        }
        (None, Value::Array(e), Value::Array(a)) => {
            for (i, (a, e)) in a.iter().zip(e).enumerate() {
                compare(Some(a), Some(e), &format!("{path}[{i}]"))?;
            }
            true
        }
        (None, Value::Number(e), Value::Number(a)) => e.as_f64() == a.as_f64(),
        _ => expected == actual,
    };
    if same {
        return Ok(());
    }
    Err(format!(
        "{path}: expected {}, found {}",
        brief(expected),
        brief(actual)
    ))
}

/// Whether `actual` is a value the placeholder `<<inner>>` stands for.
fn matches_placeholder(inner: &str, actual: &Value) -> bool {
    let pattern = match inner.split_once(':') {
        _ if inner == "any" => return true,
        None if inner == "uuid" => UUID.into(),
        None if inner == "time" => TIME.into(),
        Some(("prefix", prefix)) => regex::escape(prefix) + UUID,
        Some(("re", pattern)) => pattern.into(),
        _ => panic!("unknown placeholder <<{inner}>> in the expected document"),
    };
    let text = actual.as_str();
    text.is_some_and(|text| regex_full_match(&pattern, text))
}

/// Whether all of `text` matches `pattern`, a `regex` crate pattern in which
/// `.` also matches a newline. Panics on a malformed pattern.
pub fn regex_full_match(pattern: &str, text: &str) -> bool {
    Regex::new(&format!(r"(?s)\A(?:{pattern})\z"))
        .unwrap_or_else(|e| panic!("bad pattern {pattern:?}: {e}"))
        .is_match(text)
}
