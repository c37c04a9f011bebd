//! What every handler shares: the configuration and the OTX client.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::auth::{self, Claims};
use crate::config::Config;
use crate::error::RelayError;
use crate::http::Request;
use crate::jwks::Jwks;
use crate::metrics::Metrics;
use crate::otx::Otx;
use crate::tiles::Walks;

/// What every handler shares: the configuration, the OTX client, the keys
/// of XDR's tokens and the tiles' walks.
pub struct App {
    pub config: Config,
    pub otx: Otx,
    pub jwks: Jwks,
    pub walks: Walks,
    pub metrics: Arc<Metrics>,
}

impl App {
    pub fn new(config: Config) -> Result<App, String> {
        let metrics = Arc::new(Metrics::new());
        let otx = Otx::new(&config, metrics.clone())?;
        let jwks = Jwks::new(&config, metrics.clone())?;
        let walks = Walks::new(config.tile_cache_ttl, config.tile_max_pulses);
        Ok(App {
            config,
            otx,
            jwks,
            walks,
            metrics,
        })
    }

    /// The claims of the request's Bearer JWT, checked against `SECRET_KEY` now.
    pub fn authorize(&self, request: &Request) -> Result<Claims, RelayError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let verifier = auth::Verifier {
            secret: self.config.secret_key.as_deref(),
            audiences: &self.config.audiences,
            keys: Some(&self.jwks),
        };
        auth::verify_with(request.header("Authorization"), &verifier, now)
    }
}
