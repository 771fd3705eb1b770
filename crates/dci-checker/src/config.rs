//! The checker core's configuration.

use std::time::Duration;

use dci_model::NodeId;
use dci_proto::{MAX_MESSAGE_BYTES, Peer};

/// What the checker core needs to run. The node maps its file config to this.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Indexers trusted to send `InspectionRequest` (anyone else is
    /// rejected); each one's verdicts go to its address.
    pub indexers: Vec<Peer>,
    /// The largest challenge dimension `n`. A challenge is sized to the
    /// memory the container claims ([`dci_capacity::size_for`]) and capped
    /// here; the devnet uses a small cap so that inspections take
    /// milliseconds.
    pub challenge_n: u32,
    /// Freivalds rounds, rows opened and elements checked per row.
    pub params: dci_capacity::Params,
    /// No deadline is shorter than this, whatever the class's expected time:
    /// on shared or loaded machines (the devnet, CI) a tiny challenge must
    /// not fail on scheduling noise. Zero in production.
    pub min_deadline: Duration,
    /// The epoch coordinator (R-CK6, R-CK7): it asks for sortition proofs,
    /// receives evidence of failed challenges and proposes penalties. Without
    /// one the checker inspects but never sits on a committee.
    pub coordinator: Option<Coordinator>,
    /// How in-service evaluations are run and judged (R-CK3, R-CK4).
    pub evaluation: EvaluationFloor,
    /// The chain signer address of every checker of the network, as this
    /// checker knows them (its own network file, not the coordinator's
    /// word): a committee it signs for a chain ledger lists these addresses
    /// of the members it recomputed, so a coordinator cannot slip its own
    /// keys in. Empty: it signs no committee.
    pub chain_signers: std::collections::BTreeMap<NodeId, [u8; 20]>,
}

/// The service an in-service evaluation must deliver to pass, as the
/// checker's scripted simulated user measures it, and how long it may take.
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluationFloor {
    /// Fewest frames per second.
    pub min_fps: f64,
    /// Largest 99th-percentile input-to-frame latency, ms.
    pub max_input_p99_ms: f64,
    /// Least share of inputs that must change the picture, percent.
    pub min_changed_pct: u32,
    /// How long the container may take to start the evaluation session, ms.
    pub session_start_ms: u64,
    /// How long the simulated user may run, ms.
    pub run_ms: u64,
}

impl EvaluationFloor {
    /// What an interactive stream must sustain in production: 24 frames/s
    /// and 150 ms input-to-frame at the 99th percentile.
    pub const PRODUCTION: EvaluationFloor = EvaluationFloor {
        min_fps: 24.0,
        max_input_p99_ms: 150.0,
        min_changed_pct: 90,
        session_start_ms: 30_000,
        run_ms: 60_000,
    };
    /// The devnet's floor: its services are CPU renderers sharing a small
    /// machine with every other role (and debug builds in tests), so only a
    /// stream that barely moves or ignores input fails.
    pub const DEVNET: EvaluationFloor = EvaluationFloor {
        min_fps: 3.0,
        max_input_p99_ms: 2_000.0,
        min_changed_pct: 50,
        session_start_ms: 30_000,
        run_ms: 60_000,
    };

    /// Passed or failed, with the reason in words.
    pub fn judge(&self, r: &crate::ServiceReport) -> (bool, String) {
        let p99 = r.input_to_frame_p99_ms;
        let measured = format!(
            "{:.1} frames/s, input-to-frame p99 {}, {}/{} inputs answered, {} changed the picture",
            r.fps,
            p99.map_or("n/a".to_owned(), |p| format!("{p:.0} ms")),
            r.answered,
            r.inputs,
            r.changed
        );
        let why = if let Some(s) = &r.stalled {
            Some(format!("stalled: {s}"))
        } else if r.fps < self.min_fps {
            Some(format!("slow_stream: expected at least {} frames/s", self.min_fps))
        } else if r.answered < r.inputs || r.inputs == 0 {
            Some("unresponsive: not every input was answered".to_owned())
        } else if p99.is_none_or(|p| p > self.max_input_p99_ms) {
            Some(format!("laggy: expected input-to-frame p99 at most {} ms", self.max_input_p99_ms))
        } else if u64::from(r.changed) * 100 < u64::from(self.min_changed_pct) * u64::from(r.inputs) {
            Some(format!("frozen: expected at least {}% of inputs to change the picture", self.min_changed_pct))
        } else {
            None
        };
        match why {
            None => (true, format!("passed: in-service evaluation: {measured}")),
            Some(w) => (false, format!("failed: {w}: {measured}")),
        }
    }
}

/// Who runs the epoch clock and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coordinator {
    /// Its node id: `EpochOpen` and `PenaltyProposal` are accepted only from it.
    pub id: NodeId,
    /// Where evidence goes (`host:port`).
    pub addr: String,
}

impl Config {
    /// The devnet defaults: n at most 256, the default Freivalds parameters,
    /// deadlines of at least 10 s.
    pub fn devnet(indexers: Vec<Peer>) -> Self {
        Config {
            indexers,
            challenge_n: 256,
            params: dci_capacity::Params::DEFAULT,
            min_deadline: Duration::from_secs(10),
            coordinator: None,
            evaluation: EvaluationFloor::DEVNET,
            chain_signers: std::collections::BTreeMap::new(),
        }
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.indexers.is_empty() {
            return Err(ConfigError::NoIndexers);
        }
        if let Some(p) = self.indexers.iter().find(|p| p.addr.trim().is_empty()) {
            return Err(ConfigError::IndexerAddr(p.id));
        }
        dci_capacity::check_dimension(self.challenge_n)
            .map_err(|_| ConfigError::ChallengeN { max: dci_capacity::MAX_N, found: self.challenge_n })?;
        let p = self.params;
        if p.rounds == 0 || p.rounds > dci_capacity::MAX_ROUNDS {
            return Err(ConfigError::Rounds { max: dci_capacity::MAX_ROUNDS, found: p.rounds });
        }
        if p.rows == 0 || p.rows > dci_capacity::MAX_ROWS || p.columns == 0 {
            return Err(ConfigError::Rows { max: dci_capacity::MAX_ROWS, rows: p.rows, columns: p.columns });
        }
        let bytes = answer_bytes(self.challenge_n, p.rounds, p.rows.min(self.challenge_n));
        if bytes > MAX_MESSAGE_BYTES as u64 {
            return Err(ConfigError::AnswerTooLarge { max: MAX_MESSAGE_BYTES, found: bytes });
        }
        Ok(())
    }
}

/// An upper bound on the encoded size of an `Answer`: per round `n` f32
/// values, per row its index, `n` values and `depth(n)` hashes, each with a
/// length prefix, plus the envelope's own fields.
fn answer_bytes(n: u32, rounds: u32, rows: u32) -> u64 {
    const ENVELOPE: u64 = 256;
    let products = u64::from(rounds) * (5 + 4 * u64::from(n));
    let per_row = 5 + 5 + 4 * u64::from(n) + 5 + 32 * dci_capacity::depth(n as usize) as u64;
    ENVELOPE + products + u64::from(rows) * per_row
}

/// Why a checker configuration is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An indexer without an address.
    #[error("indexers: expected a host:port for indexer {0}, found an empty string")]
    IndexerAddr(NodeId),
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
    /// Freivalds rounds out of range.
    #[error("params.rounds: expected 1..={max}, found {found}")]
    Rounds {
        /// The most rounds.
        max: u32,
        /// What was configured.
        found: u32,
    },
    /// Rows or columns out of range.
    #[error("params: expected 1..={max} rows and at least 1 column, found {rows} rows and {columns} columns")]
    Rows {
        /// The most rows.
        max: u32,
        /// Rows configured.
        rows: u32,
        /// Columns configured.
        columns: u32,
    },
    /// The answers would not fit in one message.
    #[error("challenge_n x params: expected answers of at most {max} bytes, found up to {found}")]
    AnswerTooLarge {
        /// `dci_proto::MAX_MESSAGE_BYTES`.
        max: usize,
        /// The largest encoded answer.
        found: u64,
    },
}
