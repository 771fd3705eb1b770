//! `dci bench settlement`: amortized gas per usage receipt of netted
//! settlement on anvil, next to a plain ERC-20 transfer measured in the same
//! run (R-PF6: target ≤ 500 gas per receipt for batches of 10,000).
//!
//! Workload: each receipt is one finished session of a devnet-like market —
//! `consumers` consumer accounts (100 by default) buy from `providers`
//! containers (50 by default), session `i` pairing consumer `i mod
//! consumers` with container `i mod providers`; each session locked 1 ATH of
//! escrow at its start, ran 600 s at 3.6 ATH/h and is billed 0.6 ATH, so
//! 0.4 ATH goes back to the consumer and the charge is split provider /
//! checker fees / indexer fees / treasury. Escrows are locked beforehand in
//! batches of 500 (reported separately as `lock_gas_per_session`); the
//! measured transaction is the one `apply` that settles the N receipts.

use dci_ledger::{Genesis, LedgerOp, Params, Settlement, Transfer, accounts};
use dci_model::{AccountId, Amount, PricePerHour, SessionId, Timestamp, money::ONE_ATH};
use dci_proto::{Identity, UsageReceipt};
use serde::{Deserialize, Serialize};

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, U256};
use alloy::sol_types::SolCall;

use crate::abi::{AthToken, DciLedger};
use crate::client::{Client, batch_id};
use crate::{Anvil, AnvilOptions, ChainError, DEV_KEYS, EvmLedger, account_address, deploy};

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchOptions {
    /// Receipts per settlement batch, one measurement each.
    pub sizes: Vec<usize>,
    /// Consumer accounts the receipts spread over.
    pub consumers: usize,
    /// Containers (payout accounts) the receipts spread over.
    pub providers: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions { sizes: vec![1, 100, 10_000], consumers: 100, providers: 50 }
    }
}

/// One measured settlement batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchGas {
    /// Receipts settled by the batch.
    pub receipts: usize,
    /// Distinct consumers among them.
    pub consumers: usize,
    /// Distinct containers among them.
    pub providers: usize,
    /// Gas used by the settlement transaction.
    pub settle_gas: u64,
    /// `settle_gas / receipts`, rounded up.
    pub gas_per_receipt: u64,
    /// Gas of locking the sessions' escrows (batches of 500), per session.
    pub lock_gas_per_session: u64,
}

/// The report of `dci bench settlement --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementBench {
    /// What the receipts look like (see the module docs).
    pub workload: String,
    /// Consumer accounts the receipts spread over.
    pub consumers: usize,
    /// Containers the receipts spread over.
    pub providers: usize,
    /// Gas of one plain ERC-20 `transfer` of ATH to a new holder, same chain.
    pub erc20_transfer_gas: u64,
    /// Amortized gas per receipt, batch of 1 (if measured).
    pub gas_per_receipt_1: Option<u64>,
    /// Amortized gas per receipt, batch of 100 (if measured).
    pub gas_per_receipt_100: Option<u64>,
    /// Amortized gas per receipt, batch of 10,000 (if measured).
    pub gas_per_receipt_10000: Option<u64>,
    /// R-PF6's target for the batch of 10,000.
    pub target_gas_per_receipt: u64,
    /// Every batch measured.
    pub batches: Vec<BatchGas>,
}

/// Runs the bench on a fresh anvil of its own.
pub fn run(opts: &BenchOptions) -> Result<SettlementBench, ChainError> {
    let anvil = Anvil::start_with(&AnvilOptions { gas_limit: Some(100_000_000), ..AnvilOptions::default() })?;
    let report = run_on(&anvil.url(), DEV_KEYS[0], opts);
    anvil.stop()?;
    report
}

/// Runs the bench against `rpc_url` (a dev chain: it deploys a fresh
/// ledger with `key` as deployer and settler).
pub fn run_on(rpc_url: &str, key: &str, opts: &BenchOptions) -> Result<SettlementBench, ChainError> {
    if opts.consumers == 0 || opts.providers == 0 {
        return Err(ChainError::Input("expected at least one consumer and one provider".into()));
    }
    // The settlement bench slashes nothing: any genesis committee will do.
    let committee = [crate::node_signer(&Identity::from_secret(seed(b"checker", 0))).address()];
    let dep = deploy(rpc_url, key, &Genesis::default(), &Params::default(), &committee)?;
    let mut ledger = EvmLedger::connect(rpc_url, key, &dep)?;
    let erc20_transfer_gas = erc20_transfer(rpc_url, key, &dep)?;

    let consumers: Vec<AccountId> = (0..opts.consumers).map(|i| account(&format!("consumer:bench-{i}"))).collect();
    let containers: Vec<Identity> =
        (0..opts.providers).map(|i| Identity::from_secret(seed(b"container", i as u64))).collect();
    let gateway = Identity::from_secret(seed(b"gateway", 0));
    let total: usize = opts.sizes.iter().sum();
    let per_consumer = Amount::ath(total.div_ceil(opts.consumers) as u64 + 1);
    let funding: Vec<LedgerOp> = consumers
        .iter()
        .map(|c| LedgerOp::Transfer(Transfer { from: accounts::liquidity(), to: c.clone(), amount: per_consumer }))
        .collect();
    for chunk in funding.chunks(200) {
        ledger.apply(chunk)?;
    }

    let price = PricePerHour(Amount(36 * ONE_ATH / 10));
    let mut next = 0u64;
    let mut batches = Vec::new();
    for &n in &opts.sizes {
        let sessions: Vec<(SessionId, usize, usize)> = (0..n)
            .map(|i| {
                next += 1;
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&next.to_be_bytes());
                id[8..].copy_from_slice(&seed(b"session", next)[..8]);
                (SessionId(id), i % opts.consumers, i % opts.providers)
            })
            .collect();
        let mut lock_gas = 0u64;
        let locks: Vec<LedgerOp> = sessions
            .iter()
            .map(|(s, c, _)| LedgerOp::LockEscrow {
                session: *s,
                consumer: consumers[*c].clone(),
                amount: Amount::ath(1),
            })
            .collect();
        for chunk in locks.chunks(500) {
            ledger.apply(chunk)?;
            lock_gas += ledger.last_batch().gas_used;
        }
        let settles: Vec<LedgerOp> = sessions
            .iter()
            .map(|(s, c, p)| {
                let container = &containers[*p];
                let r = UsageReceipt {
                    session: *s,
                    container: container.id(),
                    consumer: consumers[*c].clone(),
                    service: dci_model::spec::ServiceName::new("bench").unwrap_or_else(|e| unreachable!("{e}")),
                    started_at: Timestamp(1_000_000),
                    ended_at: Timestamp(1_600_000),
                    seconds: 600,
                    price,
                    amount: price.cost_for_secs(600).unwrap_or_default(),
                };
                let mut signed = r.sign(container);
                signed.acknowledge(&gateway);
                LedgerOp::Settle {
                    receipt: signed,
                    acker: gateway.id(),
                    payout: AccountId::for_node(&container.id()),
                    extra: Amount::ZERO,
                }
            })
            .collect();
        ledger.apply(&settles)?;
        let gas = ledger.last_batch().gas_used;
        batches.push(BatchGas {
            receipts: n,
            consumers: n.min(opts.consumers),
            providers: n.min(opts.providers),
            settle_gas: gas,
            gas_per_receipt: gas.div_ceil(n.max(1) as u64),
            lock_gas_per_session: lock_gas.div_ceil(n.max(1) as u64),
        });
    }
    let per = |n: usize| batches.iter().find(|b| b.receipts == n).map(|b| b.gas_per_receipt);
    Ok(SettlementBench {
        workload: format!(
            "each receipt is one finished session: 600 s at 3.6 ATH/h (0.6 ATH) against a 1 ATH escrow; session i pairs consumer i mod {} with container i mod {}; escrows locked beforehand in batches of 500; one netted settlement transaction per batch",
            opts.consumers, opts.providers
        ),
        consumers: opts.consumers,
        providers: opts.providers,
        erc20_transfer_gas,
        gas_per_receipt_1: per(1),
        gas_per_receipt_100: per(100),
        gas_per_receipt_10000: per(10_000),
        target_gas_per_receipt: 500,
        batches,
    })
}

fn account(s: &str) -> AccountId {
    AccountId::new(s).unwrap_or_else(|e| unreachable!("{e}"))
}

fn seed(domain: &[u8], i: u64) -> [u8; 32] {
    let mut b = domain.to_vec();
    b.extend_from_slice(&i.to_be_bytes());
    alloy::primitives::keccak256(&b).0
}

/// Gives the settler's own address 10 ATH, then measures its plain ERC-20
/// transfer of 1 ATH to an address that held none.
fn erc20_transfer(rpc_url: &str, key: &str, dep: &crate::Deployment) -> Result<u64, ChainError> {
    let client = Client::connect(rpc_url, key)?;
    let fund: alloy::primitives::Bytes = DciLedger::moveCall {
        from: account_address(&accounts::liquidity()),
        to: client.from,
        amount: U256::from(Amount::ath(10).0),
    }
    .abi_encode()
    .into();
    let calls = vec![fund];
    let id = batch_id(&calls, u64::MAX);
    let tx = DciLedger::new(dep.ledger, &client.provider).batch(id, calls).into_transaction_request();
    client.send(tx, "funding the settler for the erc-20 transfer")?;
    let to = Address::from_slice(&seed(b"erc20-recipient", 0)[12..]);
    let tx = AthToken::new(dep.token, &client.provider)
        .transfer(to, U256::from(ONE_ATH))
        .into_transaction_request()
        .with_from(client.from);
    Ok(client.send(tx, "a plain erc-20 transfer")?.gas_used)
}
