//! Feature tests of the embedded ledger: genesis, a paid session end to end,
//! refusals that change nothing, durability across reopen, and the supply
//! invariant under random operation sequences.

mod bad_input;
mod durability;
mod genesis;
mod props;
mod session;

use dci_ledger::{EmbeddedLedger, EscrowView, Genesis, SettlementRecord};
use dci_model::{AccountId, Amount, PricePerHour, ServiceName, SessionId, Timestamp};
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

/// Everything observable about a ledger for the given sessions and accounts.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub accounts: Vec<(AccountId, Amount)>,
    pub escrows: Vec<Option<EscrowView>>,
    pub settlements: Vec<Option<SettlementRecord>>,
}

pub fn snapshot(l: &EmbeddedLedger, sessions: &[SessionId]) -> Snapshot {
    Snapshot {
        accounts: l.accounts().unwrap(),
        escrows: sessions.iter().map(|s| l.escrow(*s).unwrap()).collect(),
        settlements: sessions.iter().map(|s| l.settlement(*s).unwrap()).collect(),
    }
}
