//! The checker core's configuration.

use std::time::Duration;

use dci_model::NodeId;
use dci_proto::MAX_MESSAGE_BYTES;

/// What the checker core needs to run. The node maps its file config to this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where verdicts are sent (`host:port` of the indexer).
    pub indexer_addr: String,
    /// Indexers trusted to send `InspectionRequest`; anyone else is rejected.
    pub indexers: Vec<NodeId>,
    /// Challenge matrix dimension `n` (`n x n`); devnet default 256.
    pub challenge_n: u32,
    /// Rows opened per challenge; devnet default 8.
    pub rows_to_open: u32,
    /// How long a container has from the challenge to its commitment.
    pub commit_timeout: Duration,
    /// How long a container has from `OpenRows` to its openings.
    pub open_timeout: Duration,
}

impl Config {
    /// The devnet defaults: n = 256, 8 rows, 30 s for each step.
    pub fn devnet(indexer_addr: impl Into<String>, indexers: Vec<NodeId>) -> Self {
        Config {
            indexer_addr: indexer_addr.into(),
            indexers,
            challenge_n: 256,
            rows_to_open: 8,
            commit_timeout: Duration::from_secs(30),
            open_timeout: Duration::from_secs(30),
        }
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.indexer_addr.is_empty() {
            return Err(ConfigError::IndexerAddr);
        }
        if self.indexers.is_empty() {
            return Err(ConfigError::NoIndexers);
        }
        dci_capacity::check_dimension(self.challenge_n)
            .map_err(|_| ConfigError::ChallengeN { max: dci_capacity::MAX_N, found: self.challenge_n })?;
        if self.rows_to_open == 0 || self.rows_to_open > self.challenge_n {
            return Err(ConfigError::RowsToOpen { n: self.challenge_n, found: self.rows_to_open });
        }
        let bytes = openings_bytes(self.challenge_n, self.rows_to_open);
        if bytes > MAX_MESSAGE_BYTES as u64 {
            return Err(ConfigError::OpeningsTooLarge { max: MAX_MESSAGE_BYTES, found: bytes });
        }
        for (field, d) in [("commit_timeout", self.commit_timeout), ("open_timeout", self.open_timeout)] {
            if d.is_zero() {
                return Err(ConfigError::Timeout { field });
            }
        }
        Ok(())
    }
}

/// An upper bound on the encoded size of an `Openings` message: per row the
/// index, `n` f32 values and `depth(n)` hashes, each with a length prefix,
/// plus the envelope's own fields.
fn openings_bytes(n: u32, rows: u32) -> u64 {
    const ENVELOPE: u64 = 256;
    let per_row = 5 + 5 + 4 * u64::from(n) + 5 + 32 * dci_capacity::depth(n as usize) as u64;
    ENVELOPE + u64::from(rows) * per_row
}

/// Why a checker configuration is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No indexer address.
    #[error("indexer_addr: expected a host:port, found an empty string")]
    IndexerAddr,
    /// No trusted indexer: the checker would reject every request.
    #[error("indexers: expected at least one trusted indexer id, found none")]
    NoIndexers,
    /// Challenge dimension out of range.
    #[error("challenge_n: expected 1..={max}, found {found}")]
    ChallengeN {
        /// The largest dimension.
        max: u32,
        /// What was configured.
        found: u32,
    },
    /// Rows to open out of range.
    #[error("rows_to_open: expected 1..={n} (at most challenge_n), found {found}")]
    RowsToOpen {
        /// challenge_n.
        n: u32,
        /// What was configured.
        found: u32,
    },
    /// The openings would not fit in one message.
    #[error("rows_to_open x challenge_n: expected openings of at most {max} bytes, found up to {found}")]
    OpeningsTooLarge {
        /// `dci_proto::MAX_MESSAGE_BYTES`.
        max: usize,
        /// The largest encoded openings.
        found: u64,
    },
    /// A zero timeout.
    #[error("{field}: expected a positive duration, found zero")]
    Timeout {
        /// The field.
        field: &'static str,
    },
}
