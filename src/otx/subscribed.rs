//! The walks of `/api/v1/pulses/subscribed` the tiles are made from: per
//! tenant and period, kept `TILE_CACHE_TTL`, identical concurrent walks
//! sharing one (SPEC §11).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::{Otx, Session};
use crate::error::RelayError;
use crate::pulse::PulseSummary;
use crate::time::format_seconds;

/// What one walk read.
#[derive(Debug, Clone)]
pub struct Walk {
    /// Pulses modified in the period, as OTX listed them.
    pub pulses: Vec<PulseSummary>,
    /// Why the walk stopped early, if it did.
    pub error: Option<RelayError>,
    /// When it was made (seconds); tiles are computed as of then.
    pub at: u64,
}

impl Otx {
    /// The walk of `period` for the session's tenant: cached, shared, or
    /// made now, of the pulses modified since `start(now)` (seconds).
    pub fn walk(
        &self,
        session: &Session,
        period: &str,
        start: impl FnOnce(u64) -> u64,
    ) -> Arc<Walk> {
        let mut key = Sha256::new();
        key.update(session.tenant());
        key.update(period.as_bytes());
        let fetched = self.walks.get_or_fetch(key.finalize().into(), || {
            let walk = Arc::new(self.fresh_walk(session, start));
            // A walk cut short is answered, to everyone waiting on it, but
            // not kept.
            match walk.error {
                None => Ok(walk),
                Some(_) => Err(walk),
            }
        });
        fetched.unwrap_or_else(|partial| partial)
    }

    fn fresh_walk(&self, session: &Session, start: impl FnOnce(u64) -> u64) -> Walk {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let since = format_seconds(start(now));
        let mut walk = Walk {
            pulses: Vec::new(),
            error: None,
            at: now,
        };
        for page in 1.. {
            match self.subscribed(session, &since, page) {
                Ok(read) => {
                    walk.pulses.extend(read.pulses);
                    if walk.pulses.len() >= self.tile_max_pulses {
                        walk.pulses.truncate(self.tile_max_pulses);
                        break;
                    }
                    if !read.more {
                        break;
                    }
                }
                Err(e) => {
                    walk.error = Some(e);
                    break;
                }
            }
        }
        walk
    }
}
