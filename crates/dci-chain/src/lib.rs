//! The `evm` settlement backend (SPEC R-LG6): the ATH token and the DCI
//! ledger as Solidity contracts (`contracts/`), deployed to an EVM chain — a
//! local anvil in tests and on devnet, Arbitrum One in production — and
//! [`EvmLedger`], which implements [`dci_ledger::Settlement`] on them, so a
//! node switches backends with one config line and users keep the same CLI.
//!
//! Entry points: [`deploy`] (`dci chain deploy`; the ledger and its endpoint
//! registry), [`read_members`] (the registry's active set, verified), [`EvmLedger::connect`]
//! (`dci devnet --settlement evm`), [`bench::run`] (`dci bench settlement`),
//! [`Anvil`] (a local chain on a free port, killed on drop).
//!
//! # Why settlement is netted per batch (R-PF6)
//!
//! One ERC-20 transfer costs ~21,000 gas of transaction overhead plus
//! ~5,000–22,000 per balance written: paying each receipt on chain would cost
//! 40,000–60,000 gas per receipt. A batch instead pays for what changed, not
//! for how many receipts changed it:
//!
//! - the node verifies receipts off chain (ed25519; the EVM has no cheap
//!   ed25519), buffers them, and settles them with one `apply` — one
//!   transaction — per epoch or per flush;
//! - inside it, all settles are **netted**: one debit per consumer (escrow
//!   released, and the unused part returned), one credit per payee
//!   (providers, the fee pools, the treasury). Storage writes grow with the
//!   number of accounts, not receipts;
//! - each session is closed by one bit in a bitmap (sessions get sequential
//!   indices when their escrow is locked, so sessions of one epoch share
//!   256-bit words): "paid at most once" is enforced on chain for ~100 gas a
//!   session instead of ~5,000 for a per-session record;
//! - the per-session records (receipt, charge, payout) are committed as one
//!   hash in the batch's event; the settler keeps and publishes them for
//!   audits and disputes.
//!
//! We chose netting over a Merkle root of receipts with claims: with claims,
//! every provider still sends (and pays for) one claim transaction per epoch
//! and the consumer side still needs netting; netting settles both sides in
//! the same transaction, needs no claim step, and keeps balances final after
//! every batch, so `balance()` means the same as on the embedded ledger. The
//! price is trust: the contract cannot check each receipt's signature or
//! split, only that the batch conserves value, charges no consumer beyond
//! its escrow and closes each session once. A claims design would not remove
//! that trust either (the root is also the settler's), only move it.
//!
//! Measured by [`bench::run`] on anvil (receipts spread over 100 consumers
//! and 50 containers): a plain ERC-20 transfer of ATH costs 51,591 gas;
//! settling costs 209,123 gas for a batch of 1 receipt, 25,155 per receipt
//! for 100 (every account is touched once per batch) and **261 per receipt
//! for 10,000** (target ≤ 500). Locking the sessions' escrows at their start
//! is a separate cost, ~7,100 gas per session in batches of 500.
//!
//! Settlement, staking and the other ops are batched the same way: one
//! [`dci_ledger::Settlement::apply`] is one transaction. The node queues
//! verified receipts (checked with [`EvmLedger::check`]) and sends them per
//! epoch or when its queue is full (`dci-node`'s `NodeLedger::flush`),
//! recording each batch's id and nonce before it leaves
//! ([`EvmLedger::prepare`], [`EvmLedger::resolve_batch`]); the provided
//! one-op methods (`settle`, ...) send one transaction each.
//!
//! The API is blocking (it runs its own small tokio runtime): call it from a
//! blocking thread (`tokio::task::spawn_blocking`), never from inside an
//! async task.
//!
//! # Trust assumptions
//!
//! DCI accounts are custodial: an account id maps to an address nobody holds
//! a key for ([`account_address`]), whose tokens only the DciLedger contract
//! moves, on the instructions of one settler key (the operator's node). The
//! contracts guarantee conservation, escrow bounds, paid-once sessions,
//! idempotent atomic batches, unbonding delays (against the chain's clock,
//! at most 16 entries per account and role), the emission schedule's cap
//! and no epoch paid before it ends on the chain's clock, and that slashing
//! needs ECDSA signatures of two thirds of the epoch's committee on chain.
//! No single key puts a committee there: the genesis committee is fixed at
//! deployment ([`deploy`], trust on deploy), and each later one needs the
//! signatures of two thirds of the latest one ([`committee_digest_at`]).
//! Each contract states its assumptions at its top.
//!
//! # What is not supported on chain
//!
//! `refund_undelivered` (settled sessions keep no per-session record),
//! `set_params` (parameters are fixed at deployment), and
//! `reward_breakdown` of epochs distributed by another process: these return
//! [`dci_ledger::LedgerError::InvalidInput`] saying so. An account whose
//! holdings are all zero is reported as unknown.
//!
//! This crate is not: the ledger rules' reference (dci-ledger), the CLI,
//! nor a wallet: it never holds users' keys, only the settler's.

mod abi;
mod anvil;
pub mod bench;
mod client;
mod deploy;
mod error;
mod ledger;
mod registry;

pub use alloy::primitives::Address;
pub use anvil::{ANVIL_ENV, Anvil, AnvilOptions, CAST_ENV, DEV_KEYS, contracts_dir, tool_path};
pub use deploy::{ARTIFACTS_ENV, Deployment, bytecode, deploy};
pub use error::ChainError;
pub use ledger::{EvmLedger, LastBatch, Prepared, Resolution};
pub use registry::{
    ChainChecker, Ignored, Members, PAGE, RegistryMinimums, deploy_registry, judge, read_members, registry_domain,
};

use alloy::primitives::{B256, U256, keccak256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use dci_ledger::{LedgerError, SlashReport};
use dci_model::{AccountId, Amount, AmountError, NodeId};
use dci_proto::Identity;

/// The address standing for a DCI account on chain: the last 20 bytes of
/// keccak256("dci/account/v1\0" ‖ id). Nobody holds its key; the ledger
/// contract moves its tokens.
pub fn account_address(id: &AccountId) -> Address {
    deploy::account_address_of(id)
}

/// An amount as a uint256.
pub fn amount_u256(a: Amount) -> U256 {
    U256::from(a.0)
}

/// A uint256 as an amount; an error above 128 bits.
pub fn u256_amount(v: U256) -> Result<Amount, LedgerError> {
    u128::try_from(v).map(Amount).map_err(|_| LedgerError::Amount(AmountError::Overflow))
}

/// A node's EVM signing key, derived from its DCI identity:
/// keccak256("dci/evm-signer/v1\0" ‖ ed25519 secret). Committee members sign
/// slash reports for the chain with it.
pub fn node_signer(identity: &Identity) -> PrivateKeySigner {
    let mut b = b"dci/evm-signer/v1\0".to_vec();
    b.extend_from_slice(&identity.secret_bytes());
    let key = keccak256(&b);
    // A keccak output is a valid secp256k1 scalar except with probability
    // ~2^-128; then hash again.
    PrivateKeySigner::from_bytes(&key).unwrap_or_else(|_| {
        PrivateKeySigner::from_bytes(&keccak256(key)).unwrap_or_else(|e| unreachable!("two invalid keys in a row: {e}"))
    })
}

/// What the DciLedger contract at `ledger` on chain `chain_id` verifies
/// for `report` (before the EIP-191 prefix): keccak256(abi.encode(typehash,
/// chain id, ledger, offender address, role, epoch, evidence, amount)).
pub fn slash_digest_at(chain_id: u64, ledger: Address, report: &SlashReport) -> B256 {
    let role = report.role.code();
    keccak256(
        (
            keccak256(b"dci/slash-report/v1"),
            U256::from(chain_id),
            ledger,
            account_address(&report.offender),
            U256::from(role),
            report.epoch,
            B256::from(report.evidence_hash),
            amount_u256(report.amount),
        )
            .abi_encode(),
    )
}

/// [`slash_digest_at`] for `deployment`'s ledger.
pub fn slash_digest(deployment: &Deployment, report: &SlashReport) -> B256 {
    slash_digest_at(deployment.chain_id, deployment.ledger, report)
}

/// `identity`'s chain signature (65 bytes, r ‖ s ‖ v, EIP-191) of `report`
/// for the ledger at `ledger` on chain `chain_id`, with its
/// [`node_signer`] key. What a committee member adds to its penalty vote.
pub fn slash_signature_at(chain_id: u64, ledger: Address, report: &SlashReport, identity: &Identity) -> Vec<u8> {
    let digest = slash_digest_at(chain_id, ledger, report);
    node_signer(identity)
        .sign_message_sync(digest.as_slice())
        .unwrap_or_else(|e| unreachable!("signing a 32-byte message with a local key cannot fail: {e}"))
        .as_bytes()
        .to_vec()
}

/// Who signed `signature` (65 bytes) over `report` for the ledger at
/// `ledger` on chain `chain_id`, as the contract recovers it; `None` if it
/// is not a valid signature.
pub fn slash_signer_at(chain_id: u64, ledger: Address, report: &SlashReport, signature: &[u8]) -> Option<Address> {
    recover(slash_digest_at(chain_id, ledger, report), signature)
}

/// What the members of the latest committee on chain sign to put the
/// committee of `epoch` on the DciLedger contract at `ledger` on chain
/// `chain_id` (before the EIP-191 prefix): keccak256 of
/// `abi.encode(keccak256("dci/committee/v1"), chain id, ledger, epoch,
/// members)`, i.e. of the 32-byte words typehash ‖ chain id ‖ ledger
/// (left-padded) ‖ epoch (left-padded) ‖ 0xa0 (the list's offset) ‖ n ‖
/// each member (left-padded): 32 × (6 + n) bytes. `members` are the chain
/// signers ([`node_signer`]) in the order they will be sent.
pub fn committee_digest_at(chain_id: u64, ledger: Address, epoch: u64, members: &[Address]) -> B256 {
    keccak256(
        (keccak256(b"dci/committee/v1"), U256::from(chain_id), ledger, epoch, members.to_vec()).abi_encode_params(),
    )
}

/// `identity`'s chain signature (65 bytes, r ‖ s ‖ v, EIP-191, with its
/// [`node_signer`] key) of "the committee of `epoch` is `members`" for the
/// ledger at `ledger` on chain `chain_id`: what a member of the latest
/// committee adds to [`dci_ledger::LedgerOp::SetCommittee`]'s signatures.
pub fn committee_signature_at(
    chain_id: u64,
    ledger: Address,
    epoch: u64,
    members: &[Address],
    identity: &Identity,
) -> Vec<u8> {
    let digest = committee_digest_at(chain_id, ledger, epoch, members);
    node_signer(identity)
        .sign_message_sync(digest.as_slice())
        .unwrap_or_else(|e| unreachable!("signing a 32-byte message with a local key cannot fail: {e}"))
        .as_bytes()
        .to_vec()
}

/// Who signed `signature` (65 bytes) over "the committee of `epoch` is
/// `members`" for the ledger at `ledger` on chain `chain_id`, as the
/// contract recovers it; `None` if it is not a valid signature (the
/// contract also refuses a high-s signature, as this does).
pub fn committee_signer_at(
    chain_id: u64,
    ledger: Address,
    epoch: u64,
    members: &[Address],
    signature: &[u8],
) -> Option<Address> {
    recover(committee_digest_at(chain_id, ledger, epoch, members), signature)
}

/// The EIP-191 signer of `digest`, as OpenZeppelin's `ECDSA.tryRecover`
/// finds it: 65 bytes, s in the lower half of the order, v 27 or 28.
pub(crate) fn recover(digest: B256, signature: &[u8]) -> Option<Address> {
    let sig = alloy::primitives::Signature::try_from(signature).ok()?;
    if sig.normalize_s().is_some() || !matches!(signature.get(64), Some(27 | 28)) {
        return None;
    }
    sig.recover_address_from_msg(digest.as_slice()).ok()
}

/// `identity`'s chain signature of `report` (65 bytes, r ‖ s ‖ v), to add to
/// `report.signatures` next to its ed25519 one: the embedded ledger ignores
/// it (not 64 bytes), the EVM backend forwards it to the contract.
pub fn chain_slash_signature(deployment: &Deployment, report: &SlashReport, identity: &Identity) -> (NodeId, Vec<u8>) {
    (identity.id(), slash_signature_at(deployment.chain_id, deployment.ledger, report, identity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dci_ledger::StakeRole;

    const CHAIN: u64 = 31_337;

    fn ledger() -> Address {
        Address::repeat_byte(0x42)
    }

    fn members(n: u8) -> Vec<Address> {
        (0..n).map(|i| Address::repeat_byte(i + 1)).collect()
    }

    /// The digest is keccak256 of the 32-byte words the contract's
    /// `abi.encode` lays out: typehash, chain id, ledger, epoch, the list's
    /// offset (0xa0), its length, then each member, all left-padded.
    #[test]
    fn the_committee_digest_is_the_contracts_abi_encoding() {
        let word = |b: &[u8]| {
            let mut w = [0u8; 32];
            w[32 - b.len()..].copy_from_slice(b);
            w
        };
        for n in [0u8, 1, 3] {
            let list = members(n);
            let mut bytes = Vec::new();
            bytes.extend_from_slice(keccak256(b"dci/committee/v1").as_slice());
            bytes.extend_from_slice(&word(&CHAIN.to_be_bytes()));
            bytes.extend_from_slice(&word(ledger().as_slice()));
            bytes.extend_from_slice(&word(&7u64.to_be_bytes()));
            bytes.extend_from_slice(&word(&[0xa0]));
            bytes.extend_from_slice(&word(&[n]));
            for m in &list {
                bytes.extend_from_slice(&word(m.as_slice()));
            }
            assert_eq!(bytes.len(), 32 * (6 + n as usize));
            assert_eq!(committee_digest_at(CHAIN, ledger(), 7, &list), keccak256(&bytes), "{n} members");
        }
    }

    /// Every input is bound: another chain, ledger, epoch, member, order or
    /// length is another digest.
    #[test]
    fn every_field_of_the_committee_digest_is_bound() {
        let base = committee_digest_at(CHAIN, ledger(), 7, &members(3));
        let mut reordered = members(3);
        reordered.swap(0, 2);
        let others = [
            committee_digest_at(1, ledger(), 7, &members(3)),
            committee_digest_at(CHAIN, Address::repeat_byte(0x43), 7, &members(3)),
            committee_digest_at(CHAIN, ledger(), 8, &members(3)),
            committee_digest_at(CHAIN, ledger(), 7, &members(2)),
            committee_digest_at(CHAIN, ledger(), 7, &reordered),
            committee_digest_at(CHAIN, ledger(), 7, &[members(3), vec![Address::ZERO]].concat()),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(*o, base, "variant {i}");
        }
    }

    /// A member's signature recovers to its node signer over exactly the
    /// committee it signed; malformed and malleated signatures recover to
    /// nobody, as the contract (OpenZeppelin's ECDSA) decides.
    #[test]
    fn committee_signatures_recover_to_the_signer_only_for_what_was_signed() {
        let id = Identity::from_secret([9; 32]);
        let me = node_signer(&id).address();
        let list = members(3);
        let sig = committee_signature_at(CHAIN, ledger(), 7, &list, &id);
        assert_eq!(sig.len(), 65);
        assert!(matches!(sig[64], 27 | 28), "v is 27 or 28");
        assert_eq!(committee_signer_at(CHAIN, ledger(), 7, &list, &sig), Some(me));
        assert_ne!(committee_signer_at(CHAIN, ledger(), 8, &list, &sig), Some(me), "another epoch");
        assert_ne!(committee_signer_at(CHAIN, ledger(), 7, &members(2), &sig), Some(me), "other members");
        assert_ne!(committee_signer_at(1, ledger(), 7, &list, &sig), Some(me), "another chain");
        // Not a slash signature either: the domains differ.
        let report =
            SlashReport::new(AccountId::new("node:x").unwrap(), StakeRole::Container, 7, [1; 32], Amount::ath(1));
        assert_ne!(slash_signer_at(CHAIN, ledger(), &report, &sig), Some(me));
        // Malformed: too short, a bad v, the high-s twin.
        assert_eq!(committee_signer_at(CHAIN, ledger(), 7, &list, &sig[..64]), None);
        let mut bad_v = sig.clone();
        bad_v[64] = 1;
        assert_eq!(committee_signer_at(CHAIN, ledger(), 7, &list, &bad_v), None);
        let parsed = alloy::primitives::Signature::try_from(&sig[..]).unwrap();
        let n = U256::from_be_bytes(
            alloy::primitives::b256!("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141").0,
        );
        let twin = alloy::primitives::Signature::new(parsed.r(), n - parsed.s(), !parsed.v());
        assert_eq!(twin.recover_address_from_msg(committee_digest_at(CHAIN, ledger(), 7, &list)).ok(), Some(me));
        assert_eq!(committee_signer_at(CHAIN, ledger(), 7, &list, &twin.as_bytes()), None, "high s");
    }
}
