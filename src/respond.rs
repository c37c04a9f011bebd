//! Respond actions (SPEC §12): what the relay offers for observables, and
//! what triggering one writes to OTX. Pure: `handlers` does the I/O.

use serde::Serialize;
use serde_json::Value;

use crate::error::RelayError;
use crate::observable::{Kind, Observable};

pub const SUBMIT_URL: &str = "otx-submit-url";
pub const ADD_TO_PULSE: &str = "otx-add-to-pulse";

/// An action as `/respond/observables` lists it. Fields in alphabetical
/// order, as every document the relay writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub categories: [&'static str; 2],
    pub description: String,
    pub id: &'static str,
    #[serde(rename = "query-params")]
    pub query_params: QueryParams,
    pub title: &'static str,
}

/// The observable an action is for, under XDR's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryParams {
    pub observable_type: &'static str,
    pub observable_value: String,
}

/// The actions for `observables`, in input order: `otx-submit-url` for a
/// URL, and `otx-add-to-pulse` for every type when the token names a pulse.
pub fn actions(observables: &[Observable], pulse_id: Option<&str>) -> Vec<Action> {
    let mut actions = Vec::new();
    for observable in observables {
        let action = |id, title, description| Action {
            categories: ["AlienVault OTX", "Submit"],
            description,
            id,
            query_params: QueryParams {
                observable_type: observable.kind.type_name(),
                observable_value: observable.value.clone(),
            },
            title,
        };
        if observable.kind == Kind::Url {
            actions.push(action(
                SUBMIT_URL,
                "Submit URL to AlienVault OTX",
                "Ask AlienVault OTX to analyse this URL".to_owned(),
            ));
        }
        if let Some(pulse) = pulse_id {
            actions.push(action(
                ADD_TO_PULSE,
                "Add to AlienVault OTX pulse",
                format!(
                    "Add this {} to the pulse {pulse}",
                    observable.kind.display_name()
                ),
            ));
        }
    }
    actions
}

/// What a trigger asks OTX to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    SubmitUrl {
        url: String,
    },
    AddToPulse {
        pulse_id: String,
        observable: Observable,
    },
}

/// A `/respond/trigger` body: `{"action-id", "observable_type",
/// "observable_value"}`, extra keys ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub action: String,
    pub observable_type: String,
    pub value: String,
}

impl Trigger {
    /// Reads a body of that shape (checked before the token, as every
    /// endpoint checks its body first).
    pub fn parse(body: &[u8]) -> Result<Trigger, RelayError> {
        let invalid = |why: String| RelayError::InvalidPayload(why);
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| invalid(format!("The body is not valid JSON: {e}.")))?;
        let Value::Object(fields) = value else {
            return Err(invalid(
                "Expected an object with action-id, observable_type and observable_value."
                    .to_owned(),
            ));
        };
        let field = |name: &str| match fields.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(invalid(format!("'{name}' is not a non-empty string."))),
            None => Err(invalid(format!("'{name}' is missing."))),
        };
        Ok(Trigger {
            action: field("action-id")?,
            observable_type: field("observable_type")?,
            value: field("observable_value")?,
        })
    }

    /// The write it asks for, if the action is one the relay offers for
    /// that observable with the token's pulse; else nothing is written.
    pub fn plan(&self, pulse_id: Option<&str>) -> Result<Write, RelayError> {
        let not_offered = || {
            RelayError::InvalidPayload(format!(
                "The action {} is not offered for this {} observable.",
                Value::String(self.action.clone()),
                Value::String(self.observable_type.clone())
            ))
        };
        let kind = Kind::from_type(&self.observable_type).ok_or_else(not_offered)?;
        match (self.action.as_str(), pulse_id) {
            (SUBMIT_URL, _) if kind == Kind::Url => Ok(Write::SubmitUrl {
                url: self.value.clone(),
            }),
            (ADD_TO_PULSE, Some(pulse_id)) => Ok(Write::AddToPulse {
                pulse_id: pulse_id.to_owned(),
                observable: Observable::new(kind, self.value.clone()),
            }),
            _ => Err(not_offered()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let plan = |body: &[u8], pulse: Option<&str>| Trigger::parse(body)?.plan(pulse);
        let pulse = Some("0123456789abcdef01234567");
        let body = |a: &str, t: &str, v: &str| {
            serde_json::json!({"action-id": a, "observable_type": t, "observable_value": v, "x": 1})
                .to_string()
        };
        assert_eq!(
            plan(body(SUBMIT_URL, "url", "http://a/b").as_bytes(), None),
            Ok(Write::SubmitUrl {
                url: "http://a/b".to_owned()
            })
        );
        assert_eq!(
            plan(body(ADD_TO_PULSE, "sha256", "ab").as_bytes(), pulse),
            Ok(Write::AddToPulse {
                pulse_id: "0123456789abcdef01234567".to_owned(),
                observable: Observable::new(Kind::Sha256, "ab"),
            })
        );
        // SPEC §15: a hostname joins a pulse (as OTX's `hostname`).
        assert_eq!(
            plan(
                body(ADD_TO_PULSE, "hostname", "WWW.Example.com").as_bytes(),
                pulse
            ),
            Ok(Write::AddToPulse {
                pulse_id: "0123456789abcdef01234567".to_owned(),
                observable: Observable::new(Kind::Hostname, "WWW.Example.com"),
            })
        );
        for (b, p) in [
            (body(SUBMIT_URL, "ip", "1.2.3.4"), pulse),
            (body(ADD_TO_PULSE, "ip", "1.2.3.4"), None),
            (body("nope", "url", "http://a"), pulse),
            (body(ADD_TO_PULSE, "mutex", "x"), pulse),
            ("[]".to_owned(), pulse),
            (
                r#"{"action-id": "otx-submit-url", "observable_type": "url"}"#.to_owned(),
                pulse,
            ),
            ("nope".to_owned(), pulse),
        ] {
            let e = plan(b.as_bytes(), p).expect_err(&b);
            assert_eq!(e.code(), "invalid payload received", "{b}");
        }
    }
}
