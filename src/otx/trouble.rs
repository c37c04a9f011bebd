//! OTX trouble as the operator sees it (SPEC §8): each kind of failure is a
//! warning on stderr, at most one a minute per kind, the next one saying
//! how many were folded. What these lines hold is the relay's own wording
//! of the failure (a status, a reason, a pulse id): never a header, the OTX
//! key or the JWT.

use std::fmt;

use crate::error::RelayError;
use crate::log::Limiter;

/// A kind of OTX failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// OTX could not be reached or the exchange broke: name resolution,
    /// connection, proxy, a reset, an OTX call's own `AVOTX_TIMEOUT`.
    Transport,
    /// OTX's certificate did not verify with the configured roots.
    Tls,
    /// OTX answered 403: a tenant's key is wrong or revoked.
    Forbidden,
    /// OTX answered 429 (after the retries).
    Throttled,
    /// OTX answered 5xx (after the retries, for reads).
    ServerError,
    /// Any other answer the relay cannot use: an unexpected status, not
    /// JSON, larger than `AVOTX_MAX_BODY`.
    Unusable,
    /// A call cut by its request's `RELAY_DEADLINE`.
    Deadline,
    /// A pulse left out of an answer because its lookup failed.
    PulseDropped,
    /// A passive-DNS lookup left out of an answer because it failed.
    PassiveDnsDropped,
}

const KINDS: usize = 9;

impl Trouble {
    /// Each kind's limiter, for the life of the process.
    fn limiter(self) -> &'static Limiter {
        static LIMITERS: [Limiter; KINDS] = [const { Limiter::new() }; KINDS];
        &LIMITERS[self as usize]
    }

    /// What the line says first.
    fn label(self) -> &'static str {
        match self {
            Trouble::Transport => "OTX unreachable",
            Trouble::Tls => "OTX's certificate did not verify (see SSL_CERT_FILE)",
            Trouble::Forbidden => "OTX refused a tenant's key (wrong or revoked)",
            Trouble::Throttled => "OTX throttles the relay",
            Trouble::ServerError => "OTX failed",
            Trouble::Unusable => "OTX answered something the relay cannot use",
            Trouble::Deadline => "an OTX call was cut by its request's deadline (RELAY_DEADLINE)",
            Trouble::PulseDropped => "a pulse was left out of an answer",
            Trouble::PassiveDnsDropped => "passive DNS was left out of an answer",
        }
    }

    /// Warns of this kind of trouble (at most a line a minute): its label,
    /// then `detail`.
    pub fn warn(self, detail: fmt::Arguments) {
        self.limiter()
            .warn(format_args!("{}: {detail}", self.label()));
    }

    /// Warns of `error`, of this kind, and hands it back.
    pub fn warned(self, error: RelayError) -> RelayError {
        match &error {
            RelayError::Oops(why) | RelayError::Ssl(why) => self.warn(format_args!("{why}")),
            RelayError::OtxAuth => self.warn(format_args!("403 Forbidden")),
            RelayError::TooManyRequests => self.warn(format_args!("429 Too Many Requests")),
            // The label says it all.
            _ => self.limiter().warn(format_args!("{}", self.label())),
        }
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_limiter() {
        let kinds = [
            Trouble::Transport,
            Trouble::Tls,
            Trouble::Forbidden,
            Trouble::Throttled,
            Trouble::ServerError,
            Trouble::Unusable,
            Trouble::Deadline,
            Trouble::PulseDropped,
            Trouble::PassiveDnsDropped,
        ];
        assert_eq!(kinds.len(), KINDS);
        for (i, kind) in kinds.iter().enumerate() {
            assert_eq!(*kind as usize, i);
        }
    }
}
