//! The writes of the respond actions (SPEC §12): `POST submit_url` and
//! `PATCH` a pulse, retried only on 429 so that nothing is written twice.

use super::{kinds, status_error, Otx, Retry, Session};
use crate::error::RelayError;
use crate::observable::{quote_path, Observable};

/// The methods of OTX writes.
#[derive(Clone, Copy)]
enum Method {
    Post,
    Patch,
}

impl Otx {
    /// One write (`POST` or `PATCH`) of a JSON `body`: 2xx is success, any
    /// other status maps as in SPEC §4. Retried only on 429, so nothing is
    /// written twice.
    fn write(
        &self,
        session: &Session,
        method: Method,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<(), RelayError> {
        let bytes = body.to_string();
        let call = match method {
            Method::Post => "submit_url",
            Method::Patch => "pulse_patch",
        };
        let response = self.exchange(session, call, Retry::Write, |timeout| {
            let request = match method {
                Method::Post => self.agent.post(url),
                Method::Patch => self.agent.patch(url),
            };
            request
                .header("X-OTX-API-KEY", &session.key)
                .header("Content-Type", "application/json")
                .config()
                .timeout_global(Some(timeout))
                .build()
                .send(bytes.as_bytes())
        })?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(status_error(status)),
        }
    }

    /// `POST /api/v1/indicators/submit_url`: ask OTX to analyse `url`.
    pub fn submit_url(&self, session: &Session, url: &str) -> Result<(), RelayError> {
        let endpoint = format!("{}/api/v1/indicators/submit_url", self.base);
        self.write(
            session,
            Method::Post,
            &endpoint,
            &serde_json::json!({"url": url}),
        )
    }

    /// `PATCH /api/v1/pulses/{pulse_id}`: add `observable` (as received,
    /// under its OTX type) to the pulse.
    pub fn add_to_pulse(
        &self,
        session: &Session,
        pulse_id: &str,
        observable: &Observable,
    ) -> Result<(), RelayError> {
        let endpoint = format!("{}/api/v1/pulses/{}", self.base, quote_path(pulse_id));
        let (indicator, otx_type) = (&observable.value, kinds::otx_type(observable.kind));
        let body = serde_json::json!({"indicators": {"add": [{"indicator": indicator, "type": otx_type}]}});
        self.write(session, Method::Patch, &endpoint, &body)
    }
}
