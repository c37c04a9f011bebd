//! The two tiers every OTX lookup is kept in: the in-process cache (per
//! tenant, single-flight) and the fleet's shared cache (`REDIS_URL`).

use std::sync::Arc;

use super::shared_cache::{Found, SharedCache};
use super::{Otx, Session};
use crate::cache::Memo;
use crate::error::RelayError;
use crate::intel::{General, PassiveDns, Record};

/// `memo`'s value for `key`, fetched once for all concurrent callers. The
/// one who fetches may be a request whose deadline comes sooner: its
/// `timeout` is not ours while this session still has time, so then fetch
/// again (leading or joining a new flight).
/// What both cache tiers hold: cloned from memory, written to Redis as
/// JSON (the relay's own shape).
pub(super) trait Cached: Clone + Send + Sync + 'static {
    fn encode(&self) -> Option<Vec<u8>>;
    fn decode(bytes: &[u8]) -> Option<Self>;
}

impl Cached for Arc<Option<General>> {
    fn encode(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self.as_ref()).ok()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<Option<General>>(bytes)
            .ok()
            .map(Arc::new)
    }
}

impl Cached for Arc<PassiveDns> {
    fn encode(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self.as_ref()).ok()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice::<PassiveDns>(bytes)
            .ok()
            .map(Arc::new)
    }
}

impl Cached for Option<Record> {
    fn encode(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self).ok()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The value of `url` for the session's tenant: from the in-process cache,
/// from an identical lookup in flight, from the fleet's shared cache, or
/// fetched now (and kept in both). A lookup that timed out for an earlier
/// request is fetched again for a later one with time left.
pub(super) fn shared<V: Cached>(
    otx: &Otx,
    memo: &Memo<V>,
    session: &Session,
    url: &str,
    fetch: impl Fn() -> Result<V, RelayError>,
) -> Result<V, RelayError> {
    let tiered = || match &otx.redis {
        None => fetch(),
        Some(redis) => {
            let key = SharedCache::key(session.tenant(), url);
            match redis.find(&key, session.deadline, &otx.metrics) {
                Found::Value(bytes) => match V::decode(&bytes) {
                    Some(value) => Ok(value),
                    None => fetch(),
                },
                Found::Fetch(held) => {
                    let fetched = fetch();
                    match fetched.as_ref().ok().and_then(Cached::encode) {
                        Some(bytes) => redis.store(held, &bytes),
                        // Errors are never shared: the lock is freed.
                        None => redis.release(held),
                    }
                    fetched
                }
                Found::Alone => fetch(),
            }
        }
    };
    let key = session.cache_key(url);
    let (result, lookup) = memo.lookup(key, tiered);
    otx.metrics.cache_lookup("memory", lookup);
    match result {
        Err(RelayError::Timeout) if !session.remaining().is_zero() => {
            let (result, lookup) = memo.lookup(key, tiered);
            otx.metrics.cache_lookup("memory", lookup);
            result
        }
        other => other,
    }
}
