//! Shared by the integration tests: a devnet-like cast of accounts and
//! signed receipts, and raw RPC helpers for steering anvil.

#![allow(dead_code)]

use alloy::providers::{Provider, ProviderBuilder};
use dci_chain::{Address, Anvil, AnvilOptions, DEV_KEYS, Deployment, EvmLedger};
use dci_ledger::{Genesis, LedgerOp, Params, Transfer, accounts};
use dci_model::{AccountId, Amount, PricePerHour, SessionId, Timestamp, money::ONE_ATH, spec::ServiceName};
use dci_proto::{Identity, SignedReceipt, UsageReceipt};

pub fn acc(s: &str) -> AccountId {
    AccountId::new(s).unwrap()
}

/// The people of a small devnet.
pub struct Cast {
    pub consumer: AccountId,
    pub container: Identity,
    pub checker: Identity,
    pub indexer: Identity,
    pub gateway: Identity,
}

impl Cast {
    pub fn new() -> Cast {
        Cast {
            consumer: acc("consumer:alice"),
            container: Identity::from_secret([1; 32]),
            checker: Identity::from_secret([2; 32]),
            indexer: Identity::from_secret([3; 32]),
            gateway: Identity::from_secret([4; 32]),
        }
    }

    pub fn container_account(&self) -> AccountId {
        AccountId::for_node(&self.container.id())
    }

    pub fn checker_account(&self) -> AccountId {
        AccountId::for_node(&self.checker.id())
    }

    pub fn indexer_account(&self) -> AccountId {
        AccountId::for_node(&self.indexer.id())
    }

    /// Funding from the liquidity allocation.
    pub fn funding(&self) -> Vec<LedgerOp> {
        [(&self.consumer, 100), (&self.container_account(), 50), (&self.checker_account(), 50)]
            .into_iter()
            .map(|(to, ath)| {
                LedgerOp::Transfer(Transfer { from: accounts::liquidity(), to: to.clone(), amount: Amount::ath(ath) })
            })
            .collect()
    }

    /// A receipt for `seconds` at 3.6 ATH/h, signed and acknowledged.
    pub fn receipt(&self, session: SessionId, seconds: u64) -> SignedReceipt {
        let price = PricePerHour(Amount(36 * ONE_ATH / 10));
        let r = UsageReceipt {
            session,
            container: self.container.id(),
            consumer: self.consumer.clone(),
            service: ServiceName::new("llm").unwrap(),
            started_at: Timestamp(1_000),
            ended_at: Timestamp(1_000 + seconds * 1000),
            seconds,
            price,
            amount: price.cost_for_secs(seconds).unwrap(),
        };
        let mut s = r.sign(&self.container);
        s.acknowledge(&self.gateway);
        s
    }

    pub fn settle(&self, session: SessionId, seconds: u64) -> LedgerOp {
        LedgerOp::Settle {
            receipt: self.receipt(session, seconds),
            acker: self.gateway.id(),
            payout: self.container_account(),
            extra: Amount::ZERO,
        }
    }

    pub fn lock(&self, session: SessionId, ath: u64) -> LedgerOp {
        LedgerOp::LockEscrow { session, consumer: self.consumer.clone(), amount: Amount::ath(ath) }
    }
}

pub fn session(n: u8) -> SessionId {
    SessionId([n; 16])
}

/// `n` checkers' identities, from secret `[first; 32]` on.
pub fn checkers(first: u8, n: u8) -> Vec<Identity> {
    (0..n).map(|i| Identity::from_secret([first + i; 32])).collect()
}

/// Their chain signers.
pub fn signers(members: &[Identity]) -> Vec<Address> {
    members.iter().map(|m| dci_chain::node_signer(m).address()).collect()
}

/// The genesis committee every test chain is deployed with.
pub fn genesis_committee() -> Vec<Identity> {
    checkers(50, 3)
}

/// A `SetCommittee` op putting `members` on chain for `epoch`, signed by
/// `by` (members of the latest committee, for the op to be accepted).
pub fn publish(deployment: &Deployment, epoch: u64, members: &[Identity], by: &[Identity]) -> LedgerOp {
    let addrs = signers(members);
    let signatures = by
        .iter()
        .map(|m| dci_chain::committee_signature_at(deployment.chain_id, deployment.ledger, epoch, &addrs, m))
        .collect();
    LedgerOp::SetCommittee { epoch, members: addrs.iter().map(|a| a.into_array()).collect(), signatures }
}

/// anvil + a deployed ledger + the settler's connection.
pub struct Chain {
    pub anvil: Anvil,
    pub deployment: Deployment,
    pub ledger: EvmLedger,
}

/// The ledger's parameters in the tests: the defaults, epochs of 15 min.
pub fn deploy(url: &str) -> Deployment {
    dci_chain::deploy(url, DEV_KEYS[0], &Genesis::default(), &Params::default(), &signers(&genesis_committee()))
        .unwrap()
}

pub fn chain_with(opts: &AnvilOptions) -> Chain {
    let anvil = Anvil::start_with(opts).expect("anvil (run `cargo xtask deps` if it is missing)");
    let deployment = deploy(&anvil.url());
    let ledger = EvmLedger::connect(&anvil.url(), DEV_KEYS[0], &deployment).unwrap();
    Chain { anvil, deployment, ledger }
}

pub fn chain() -> Chain {
    chain_with(&AnvilOptions::default())
}

/// A raw JSON-RPC call to anvil (`evm_mine`, `evm_setAutomine`, ...).
pub fn rpc(url: &str, method: &'static str, params: serde_json::Value) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let p = ProviderBuilder::new().connect_http(url.parse().unwrap());
        p.raw_request::<_, serde_json::Value>(method.into(), params).await.unwrap()
    })
}

/// Moves anvil's clock forward and mines a block.
pub fn advance(url: &str, secs: u64) {
    rpc(url, "evm_increaseTime", serde_json::json!([secs]));
    rpc(url, "evm_mine", serde_json::json!([]));
}
