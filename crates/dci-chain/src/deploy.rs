//! Deploying the ATH token and the DCI ledger contract (`dci chain deploy`).

use std::path::PathBuf;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, U256, keccak256};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolConstructor;
use dci_ledger::{Genesis, Params, accounts};
use dci_model::{AccountId, Amount};
use serde::{Deserialize, Serialize};

use crate::abi::{AthToken, DciLedger};
use crate::anvil::contracts_dir;
use crate::client::Client;
use crate::{ChainError, account_address, amount_u256};

/// Overrides where the forge artifacts (`out/`) are read from.
pub const ARTIFACTS_ENV: &str = "DCI_CONTRACTS_OUT";

/// Where a DCI ledger lives on a chain; written into the node config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// The chain's id (31337 on anvil, 42161 on Arbitrum One).
    pub chain_id: u64,
    /// The ATH ERC-20 token.
    pub token: Address,
    /// The DciLedger contract (staking, escrow, settlement, rewards).
    pub ledger: Address,
    /// The only address allowed to submit batches.
    pub settler: Address,
    /// Block of the ledger's deployment (event scans start here).
    pub deployed_at_block: u64,
    /// The endpoint registry (DciRegistry: staked checkers and indexers
    /// publish where they are reached); absent in deployments made before
    /// it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<Address>,
}

/// The creation bytecode of `contract` from forge's `out/` directory.
pub fn bytecode(contract: &str) -> Result<Bytes, ChainError> {
    let dir = std::env::var_os(ARTIFACTS_ENV).map(PathBuf::from).unwrap_or_else(|| contracts_dir().join("out"));
    let path = dir.join(format!("{contract}.sol")).join(format!("{contract}.json"));
    let text = std::fs::read_to_string(&path).map_err(|_| ChainError::Missing {
        what: format!("the forge artifact of {contract}"),
        path: path.display().to_string(),
        hint: format!(", or set {ARTIFACTS_ENV} to a forge out/ directory"),
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ChainError::Deployment(format!("{}: expected forge artifact JSON: {e}", path.display())))?;
    let hex_code = json["bytecode"]["object"].as_str().unwrap_or_default();
    let code = hex::decode(hex_code.trim_start_matches("0x")).unwrap_or_default();
    if code.is_empty() {
        return Err(ChainError::Deployment(format!("{}: expected bytecode.object as hex, found none", path.display())));
    }
    Ok(code.into())
}

pub(crate) fn sol_params(p: &Params) -> DciLedger::Params {
    DciLedger::Params {
        unbondingSecs: p.unbonding_secs,
        epochSecs: p.epoch_secs,
        emissionYears: p.emission.years,
        decayBps: p.emission.decay_bps,
        containerSlashBps: p.slash.container_bps,
        checkerSlashBps: p.slash.checker_bps,
        feeProviderBps: p.fees.provider_bps(),
        feeCheckersBps: p.fees.checkers_bps(),
        feeIndexersBps: p.fees.indexers_bps(),
        feeTreasuryBps: p.fees.treasury_bps(),
        rewardContainersBps: p.rewards.containers_bps,
        rewardCheckersBps: p.rewards.checkers_bps,
        rewardIndexersBps: p.rewards.indexers_bps,
    }
}

pub(crate) fn pools() -> DciLedger::Pools {
    DciLedger::Pools {
        mining: account_address(&accounts::mining_pool()),
        checkerFees: account_address(&accounts::checker_fees()),
        indexerFees: account_address(&accounts::indexer_fees()),
        treasury: account_address(&accounts::treasury()),
        slashed: account_address(&accounts::slashed()),
    }
}

pub(crate) fn create(client: &Client, code: Bytes, args: Vec<u8>, what: &str) -> Result<(Address, u64), ChainError> {
    let mut input = code.to_vec();
    input.extend_from_slice(&args);
    let tx = TransactionRequest::default().with_deploy_code(input);
    let receipt = client.send(tx, what)?;
    let address = receipt
        .contract_address
        .ok_or_else(|| ChainError::Deployment(format!("{what}: the receipt names no contract address")))?;
    Ok((address, receipt.block_number.unwrap_or_default()))
}

/// Deploys the ATH token (minting `genesis` to the accounts' addresses) and
/// the ledger contract with `params`, whose settler is the deployer, then
/// binds the ledger as the token's custodian, then deploys the endpoint
/// registry over the ledger with the default minimums
/// ([`crate::RegistryMinimums`]). Four transactions.
///
/// `committee` is the genesis committee, the committee of epoch 0: the
/// chain signers ([`crate::node_signer`]'s addresses) of the checkers
/// staked at deployment, 1 to 256 of them, distinct. It is trusted on
/// deploy, like `genesis`: every later committee needs the signatures of
/// two thirds of the one before it, so whoever holds these keys decides
/// the next. Epoch 0 starts at the ledger's deployment block
/// (`genesisTime()`), and epoch e ends `(e + 1) × params.epoch_secs` later.
pub fn deploy(
    rpc_url: &str,
    deployer_key: &str,
    genesis: &Genesis,
    params: &Params,
    committee: &[Address],
) -> Result<Deployment, ChainError> {
    params.validate()?;
    let members: Vec<[u8; 20]> = committee.iter().map(|a| a.into_array()).collect();
    dci_ledger::rules::committee(0, &members, None)?;
    let client = Client::connect(rpc_url, deployer_key)?;
    let chain_id = client.chain_id()?;
    let amounts = genesis.amounts()?;
    let holders: Vec<Address> = amounts.iter().map(|(a, _)| account_address(a)).collect();
    let values: Vec<U256> = amounts.iter().map(|(_, v)| amount_u256(*v)).collect();
    let token_args = AthToken::constructorCall { holders, amounts: values }.abi_encode();
    let (token, _) = create(&client, bytecode("AthToken")?, token_args, "deploying AthToken")?;
    let mining = amounts.iter().find(|(a, _)| a == &accounts::mining_pool()).map_or(Amount::ZERO, |(_, v)| *v);
    let ledger_args = DciLedger::constructorCall {
        token,
        settler: client.from,
        params: sol_params(params),
        pools: pools(),
        miningGenesis: amount_u256(mining),
        genesisCommittee: committee.to_vec(),
    }
    .abi_encode();
    let (ledger, block) = create(&client, bytecode("DciLedger")?, ledger_args, "deploying DciLedger")?;
    let bind = AthToken::new(token, &client.provider).bindCustodian(ledger).into_transaction_request();
    client.send(bind, "binding the ledger as the token's custodian")?;
    let registry = crate::registry::deploy_with(&client, ledger, &crate::RegistryMinimums::default())?;
    tracing::info!(%token, %ledger, %registry, chain_id, "deployed the dci ledger and its endpoint registry");
    Ok(Deployment { chain_id, token, ledger, settler: client.from, deployed_at_block: block, registry: Some(registry) })
}

/// The address standing for a DCI account on chain: the last 20 bytes of
/// keccak256("dci/account/v1\0" ‖ id). Nobody holds its key; the ledger
/// contract moves its tokens (custody, see AthToken.sol).
pub fn account_address_of(id: &AccountId) -> Address {
    let mut b = b"dci/account/v1\0".to_vec();
    b.extend_from_slice(id.as_str().as_bytes());
    Address::from_slice(&keccak256(&b)[12..])
}
