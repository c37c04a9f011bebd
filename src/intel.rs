//! What OTX said, in the relay's own types: [`General`], [`Pulse`],
//! [`Record`], [`PassiveDns`] and the tiles' [`PulseSummary`]. `otx` reads
//! them from OTX's answers; nothing here knows OTX's JSON. (`General`,
//! `Record` and `PassiveDns` also serialize, as the fleet's shared cache
//! keeps them: the relay's own shape, not OTX's.)

use serde::{Deserialize, Serialize};

/// What OTX says of one observable (`/general`), filtered to the pulses that
/// contain it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct General {
    /// Pulses whose `indicator_type_counts` holds the base indicator's type.
    pub pulses: Vec<Pulse>,
    /// Names of OTX's `validation` entries (whitelists, known false
    /// positives), for the verdict's reason; entries without a name are not
    /// listed here but are counted in `validation_count`.
    pub validation: Vec<String>,
    /// How many `validation` entries OTX sent, named or not: what the
    /// verdict rule counts.
    pub validation_count: usize,
    /// Whether a `false_positive` assessment was accepted.
    pub false_positive: bool,
    /// Pulses that passed the filter but could not be read (no id): they
    /// still count toward the verdict's pulse count.
    pub skipped: usize,
}

impl General {
    /// Pulses that contain the observable (SPEC §4's filter), read or not.
    pub fn pulse_count(&self) -> usize {
        self.pulses.len() + self.skipped
    }
}

/// A pulse, with what CTIM needs of it. Optional fields are `None` when OTX
/// omits them (or sends something that is not of the right type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pulse {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub tags: Option<Vec<String>>,
    /// OTX's `TLP` as sent; `ctim::tlp` maps it to CTIM's.
    pub tlp: Option<String>,
    /// The malware families the pulse names (`malware_families`), trimmed,
    /// in OTX's order, case variants and repeats included.
    pub malware: Vec<String>,
    /// The ATT&CK techniques the pulse names (`attack_ids`), in OTX's order.
    pub attacks: Vec<AttackId>,
}

/// An ATT&CK technique a pulse names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackId {
    /// `T` and four digits, maybe `.` and three more (`T1059`, `T1059.001`),
    /// in upper case: checked when read.
    pub id: String,
    /// OTX's `display_name` (`T1059 - Command and Scripting Interpreter`),
    /// when it sends a non-empty one.
    pub name: Option<String>,
}

/// A pulse's own record of an indicator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub created: String,
    pub expiration: Option<String>,
}

/// What OTX's passive DNS saw of one observable (SPEC §15): the A and AAAA
/// resolutions kept, each (hostname, address) pair once, newest `last`
/// first, at most `PASSIVE_DNS_LIMIT`. Empty when OTX saw none (or has no
/// data, or answered another shape). Serialized for the fleet's cache.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PassiveDns {
    pub resolutions: Vec<Resolution>,
}

/// One name resolved to one address, merged over OTX's records of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// The name (OTX's `hostname`), as OTX wrote it; never empty.
    pub hostname: String,
    /// The address as OTX wrote it: an IPv4 one from an `A` record, an
    /// IPv6 one from an `AAAA` record.
    pub address: String,
    /// Whether it came from `AAAA` records.
    pub ipv6: bool,
    /// The earliest `first` of its records, as OTX writes times; `None`
    /// when none had one.
    pub first: Option<String>,
    /// The latest `last` of its records; `None` when none had one.
    pub last: Option<String>,
}

/// What the dashboard tiles keep of one subscribed pulse (SPEC §11).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PulseSummary {
    pub id: String,
    /// `name`, or the id when OTX gives none.
    pub name: String,
    /// `author_name`, else `author.username`; may be empty.
    pub author: String,
    /// `adversary`; may be empty.
    pub adversary: String,
    /// `modified`, as OTX writes it (`2026-11-29T14:03:22.123000`).
    pub modified: String,
    /// `indicator_count`, else the length of `indicators`.
    pub indicators: u64,
    /// The names of `malware_families` (objects or strings; junk skipped).
    pub malware: Vec<String>,
}
