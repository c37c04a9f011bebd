//! `check_json`: whole-document comparison with placeholders.

use std::collections::BTreeSet;

use regex::Regex;
use serde_json::Value;

/// What `<<uuid>>` and `<<time>>` stand for.
const UUID: &str = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const TIME: &str = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z";

/// Compares `actual` to `expected` as whole documents (no missing, no extra
/// key; arrays in order; numbers exactly: `1` is not `1.0`). A string of
/// `expected` can be a placeholder:
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
    if let Err(difference) = compare(actual, expected, "$") {
        let documents = format!("--- expected ---\n{expected:#}\n--- actual ---\n{actual:#}");
        panic!("JSON mismatch at {difference}\n{documents}");
    }
}

/// `path` extended by an object key, `.key` when it reads well, else `["key"]`.
fn key_path(path: &str, key: &str) -> String {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match key.starts_with(|c: char| word(c) && !c.is_ascii_digit()) && key.chars().all(word) {
        true => format!("{path}.{key}"),
        false => format!("{path}[{}]", Value::from(key)),
    }
}

/// `value` for a failure message, cut after 200 characters.
fn cut(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The first difference, as `<JSON path>: <what differs>`.
fn compare(actual: &Value, expected: &Value, path: &str) -> Result<(), String> {
    let placeholder = expected
        .as_str()
        .and_then(|e| e.strip_prefix("<<")?.strip_suffix(">>"));
    match (placeholder, expected, actual) {
        (Some(inner), _, _) if matches_placeholder(inner, actual) => Ok(()),
        (None, Value::Object(e), Value::Object(a)) => {
            for key in e.keys().chain(a.keys()).collect::<BTreeSet<_>>() {
                let path = key_path(path, key);
                match (a.get(key), e.get(key)) {
                    (Some(a), Some(e)) => compare(a, e, &path)?,
                    (Some(a), None) => return Err(format!("{path}: unexpected key: {}", cut(a))),
                    (None, _) => return Err(format!("{path}: missing, expected {}", cut(&e[key]))),
                }
            }
            Ok(())
        }
        (None, Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            let mut pairs = a.iter().zip(e).enumerate();
            pairs.try_for_each(|(i, (a, e))| compare(a, e, &format!("{path}[{i}]")))
        }
        (None, Value::Array(e), Value::Array(a)) => {
            let (e, a) = (e.len(), a.len());
            Err(format!("{path}: expected an array of {e} items, found {a}"))
        }
        (None, _, _) if expected == actual => Ok(()),
        _ => {
            let (e, a) = (cut(expected), cut(actual));
            Err(format!("{path}: expected {e}, found {a}"))
        }
    }
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
