//! Feature tests of the embedded ledger: genesis, a paid session end to end,
//! staking and unbonding, epoch rewards and their explanation, slashing,
//! refunds of undelivered time, governance parameters, refusals that change
//! nothing, durability across reopen, and the supply invariant under random
//! operation sequences. (The crash test is `tests/crash.rs`.)

mod bad_input;
mod durability;
mod genesis;
mod params;
mod props;
mod rewards;
mod session;
mod slashing;
mod staking;

use dci_ledger::{EmbeddedLedger, EscrowView, Genesis, LedgerSnapshot, SettlementRecord};
use dci_model::{AccountId, Amount, NodeId, PricePerHour, ServiceName, SessionId, Timestamp};
use dci_proto::{Identity, SignedReceipt, UsageReceipt};

pub fn acc(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

pub fn ledger() -> EmbeddedLedger {
    EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap()
}

pub fn sid(n: u8) -> SessionId {
    SessionId([n; 16])
}

/// The signers of a session: a container that signs receipts and a gateway
/// that acknowledges them for the consumer.
pub struct Signers {
    pub container: Identity,
    pub gateway: Identity,
}

impl Default for Signers {
    fn default() -> Self {
        Signers { container: Identity::from_secret([1; 32]), gateway: Identity::from_secret([2; 32]) }
    }
}

impl Signers {
    /// A receipt for `secs` seconds at `price`, signed and acknowledged.
    pub fn receipt(&self, session: SessionId, consumer: &AccountId, secs: u64, price: &str) -> SignedReceipt {
        let mut r = self.unacked(session, consumer, secs, price).sign(&self.container);
        r.acknowledge(&self.gateway);
        r
    }

    pub fn unacked(&self, session: SessionId, consumer: &AccountId, secs: u64, price: &str) -> UsageReceipt {
        let price: PricePerHour = price.parse().unwrap();
        UsageReceipt {
            session,
            container: self.container.id(),
            consumer: consumer.clone(),
            service: ServiceName::new("llm-chat").unwrap(),
            started_at: Timestamp(1_700_000_000_000),
            ended_at: Timestamp(1_700_000_000_000 + secs * 1000),
            seconds: secs,
            price,
            amount: price.cost_for_secs(secs).unwrap(),
        }
    }
}

/// Everything observable about a ledger, with the records of the given sessions.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub all: LedgerSnapshot,
    pub escrows: Vec<Option<EscrowView>>,
    pub settlements: Vec<Option<SettlementRecord>>,
}

pub fn snapshot(l: &EmbeddedLedger, sessions: &[SessionId]) -> Snapshot {
    Snapshot {
        all: l.snapshot().unwrap(),
        escrows: sessions.iter().map(|s| l.escrow(*s).unwrap()).collect(),
        settlements: sessions.iter().map(|s| l.settlement(*s).unwrap()).collect(),
    }
}

/// `h` hours after the epoch.
pub fn hours(h: u64) -> Timestamp {
    Timestamp(h * 3_600_000)
}

/// A checker committee of `n` members.
pub fn committee(n: u8) -> (Vec<Identity>, Vec<NodeId>) {
    let members: Vec<Identity> = (0..n).map(|i| Identity::from_secret([100 + i; 32])).collect();
    let ids = members.iter().map(Identity::id).collect();
    (members, ids)
}

/// A ledger with `node:p` and `node:q` funded with 1,000 ATH and
/// `consumer:alice` with 100 ATH.
pub fn funded() -> EmbeddedLedger {
    let mut l = ledger();
    let liq = dci_ledger::accounts::liquidity();
    for (who, ath) in [("node:p", 1_000), ("node:q", 1_000), ("consumer:alice", 100)] {
        l.transfer(&liq, &acc(who), Amount::ath(ath)).unwrap();
    }
    l
}
