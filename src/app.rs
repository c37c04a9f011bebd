//! What every handler shares: the configuration and the OTX client.

use std::sync::Arc;

use crate::config::Config;
use crate::jwks::Jwks;
use crate::metrics::Metrics;
use crate::otx::Otx;

/// What every handler shares: the configuration, the OTX client (with the
/// tiles' walks) and the keys of XDR's tokens.
pub struct App {
    pub config: Config,
    pub otx: Arc<Otx>,
    pub jwks: Jwks,
    pub metrics: Arc<Metrics>,
}

impl App {
    pub fn new(config: Config) -> Result<App, String> {
        let metrics = Arc::new(Metrics::new());
        let otx = Arc::new(Otx::new(&config, metrics.clone())?);
        let jwks = Jwks::new(&config, metrics.clone())?;
        Ok(App {
            config,
            otx,
            jwks,
            metrics,
        })
    }
}
