//! What every handler shares: the configuration and the OTX client.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::{self, Claims};
use crate::config::Config;
use crate::error::RelayError;
use crate::http::Request;
use crate::otx::Otx;

/// What every handler shares: the configuration and the OTX client.
pub struct App {
    pub config: Config,
    pub otx: Otx,
}

impl App {
    pub fn new(config: Config) -> Result<App, String> {
        let otx = Otx::new(&config)?;
        Ok(App { config, otx })
    }

    /// The claims of the request's Bearer JWT, checked against `SECRET_KEY` now.
    pub fn authorize(&self, request: &Request) -> Result<Claims, RelayError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        auth::verify(
            request.header("Authorization"),
            self.config.secret_key.as_deref(),
            now,
        )
    }
}
