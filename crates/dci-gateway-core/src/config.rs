//! What a gateway is told at start: the indexer it trusts, its timing, the
//! model catalogue's terms, and its epoch and committee duties.

use std::collections::BTreeMap;
use std::time::Duration;

use dci_model::{Amount, ServiceName};

use crate::duties::{ChainHooks, CheckerSeat};

pub use dci_proto::Peer;

/// The gateway's clocks. Every bound here is stated in ARCHITECTURE.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long the indexer has to answer a request.
    pub indexer_timeout: Duration,
    /// How long an indexer that did not answer in time is left out.
    pub indexer_down: Duration,
    /// How long a container has to start or stop a service.
    pub container_timeout: Duration,
    /// A placement with no usage receipt for this long has failed.
    pub silence: Duration,
    /// Pause between match attempts of a failover while nothing matches.
    pub retry: Duration,
    /// A failover that has not placed the session after this long gives up.
    pub give_up: Duration,
    /// The latest receipt is persisted at most this often (and at every
    /// change of placement): what a restarted gateway settles.
    pub persist_every: Duration,
    /// How often the indexer's reservations of live placements are renewed.
    pub renew_every: Duration,
    /// How far a container's clock may be from the gateway's: a receipt may
    /// start this much before the gateway asked and bill this much more
    /// than the gateway's own wall time.
    pub receipt_skew: Duration,
    /// A session is stopped when its escrow would not cover this much more
    /// time at its price (so no host works unpaid).
    pub exhaust_margin: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            indexer_timeout: Duration::from_secs(5),
            indexer_down: Duration::from_secs(10),
            container_timeout: Duration::from_secs(30),
            silence: Duration::from_secs(3),
            retry: Duration::from_millis(500),
            give_up: Duration::from_secs(60),
            persist_every: Duration::from_secs(5),
            renew_every: Duration::from_secs(10),
            receipt_skew: Duration::from_secs(2),
            exhaust_margin: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// The stated failover bound for a service that starts within
    /// `start`: from the failed container's last receipt until the session
    /// serves elsewhere. The silence, one tick of the driver (250 ms) to
    /// notice it, a match and the ledger batch (well under a second
    /// together), and the new container's start.
    pub fn failover_bound(&self, start: Duration) -> Duration {
        self.silence + Duration::from_millis(250) + Duration::from_secs(1) + start
    }
}

/// How a catalogue model is placed and billed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelTerms {
    /// Memory it needs: the match asks at least this much RAM (GiB, rounded up).
    pub memory_mib: u64,
    /// What 1,000 tokens relayed through the gateway cost, besides the seconds.
    pub price_per_1k_tokens: Amount,
}

/// The epoch committee this gateway coordinates (R-CK6, R-CK7).
#[derive(Clone, Debug)]
pub struct CommitteeConfig {
    /// The network's name (part of every epoch seed).
    pub network: String,
    /// Seats of each epoch's committee.
    pub size: usize,
    /// The checkers that may sit on it.
    pub checkers: Vec<CheckerSeat>,
    /// When the ledger is a chain: its domain, and how to recover the EVM's
    /// signatures (handed in so this crate knows no EVM).
    pub chain: Option<ChainHooks>,
}

/// A gateway's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The indexers it asks to match and reserve. Each request goes to the
    /// one `dci_indexer::serving_indexer` names among those not
    /// known to be down (verifiable: rendezvous hashing over the epoch seed);
    /// an indexer that does not answer in time is left out for
    /// [`Timing::indexer_down`], and the request goes to the next.
    pub indexers: Vec<Peer>,
    /// Its clocks.
    pub timing: Timing,
    /// A session moves to another container at most this many times.
    pub max_failovers: u32,
    /// The catalogue's models by service name (placed by memory, billed per token too).
    pub models: BTreeMap<ServiceName, ModelTerms>,
    /// Length of a reward epoch; `None`: this gateway runs no epoch clock.
    pub epoch: Option<Duration>,
    /// Samples of the network taken per epoch (uptime).
    pub samples_per_epoch: u32,
    /// The committee duties, if this gateway coordinates the committee.
    pub committee: Option<CommitteeConfig>,
    /// The network's genesis declares it a dev network: hosts with
    /// simulated GPUs earn (weighted by what their CPU proved). Elsewhere a
    /// simulated profile earns nothing.
    pub dev_network: bool,
    /// The container stake a host must have bonded to be inspected and to
    /// earn (the ledger's governance parameter `min_container_stake`).
    pub min_container_stake: Amount,
}

impl Config {
    /// A gateway that asks `indexers`, with the default timing and no duties.
    pub fn new(indexers: Vec<Peer>) -> Config {
        Config {
            indexers,
            timing: Timing::default(),
            max_failovers: 3,
            models: BTreeMap::new(),
            epoch: None,
            samples_per_epoch: 20,
            committee: None,
            dev_network: false,
            min_container_stake: dci_ledger::params::DEFAULT_MIN_CONTAINER_STAKE,
        }
    }
}
