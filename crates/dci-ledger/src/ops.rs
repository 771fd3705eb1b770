//! Every ledger mutation as a value ([`LedgerOp`]) and its result
//! ([`OpOutcome`]): the closed set a backend applies in batches, all or none
//! ([`crate::Settlement::apply`]).

use dci_model::{AccountId, Amount, NodeId, SessionId, Timestamp};
use dci_proto::SignedReceipt;
use serde::{Deserialize, Serialize};

use crate::rewards::{EpochInput, EpochSummary};
use crate::slash::{SlashReport, Slashed};
use crate::staking::{StakeRole, UnbondingEntry};
use crate::{LedgerError, Params, Settled, Transfer};

/// One mutation. See the [`crate::Settlement`] method of the same name for
/// what each does and refuses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerOp {
    /// Moves funds between balances.
    Transfer(Transfer),
    /// Bonds balance as stake for a role.
    Stake {
        /// Whose.
        account: AccountId,
        /// For which role.
        role: StakeRole,
        /// How much.
        amount: Amount,
    },
    /// Starts unbonding stake; withdrawable after the unbonding period.
    Unstake {
        /// Whose.
        account: AccountId,
        /// From which role.
        role: StakeRole,
        /// How much.
        amount: Amount,
        /// The current time.
        now: Timestamp,
    },
    /// Returns every unbonding entry released at or before `now`.
    WithdrawUnbonded {
        /// Whose.
        account: AccountId,
        /// The current time.
        now: Timestamp,
    },
    /// Moves all pending rewards to the balance.
    ClaimRewards {
        /// Whose.
        account: AccountId,
    },
    /// Locks consumer funds for a session.
    LockEscrow {
        /// The session.
        session: SessionId,
        /// Who pays.
        consumer: AccountId,
        /// How much.
        amount: Amount,
    },
    /// Pays a session against its receipt.
    Settle {
        /// The signed, acknowledged receipt.
        receipt: SignedReceipt,
        /// Whose acknowledgement is required.
        acker: NodeId,
        /// Who receives the provider's share.
        payout: AccountId,
        /// A charge the gateway metered itself for this session (model
        /// tokens it relayed), taken from the same escrow after the
        /// receipt's amount and split like it ([`crate::rules::settle`]).
        /// Absent in ops queued before it existed: zero.
        #[serde(default)]
        extra: Amount,
    },
    /// Returns a whole open escrow.
    Refund {
        /// The session.
        session: SessionId,
    },
    /// Refunds paid seconds that a failed container did not deliver.
    RefundUndelivered {
        /// The settled session.
        session: SessionId,
        /// Seconds paid but not delivered.
        seconds: u64,
    },
    /// Pays one epoch's rewards.
    DistributeEpoch {
        /// The epoch.
        epoch: u64,
        /// What the miners did.
        input: EpochInput,
    },
    /// Applies a committee-signed penalty.
    Slash {
        /// The report.
        report: SlashReport,
        /// The epoch's committee.
        committee: Vec<NodeId>,
    },
    /// Publishes the committee of `epoch` for the chain ledger: its members'
    /// chain signers, with the signatures the contract counts. The evm
    /// backend sends `DciLedger.setCommittee(epoch, members, signatures)`,
    /// which needs ⌈2n/3⌉ distinct members of the latest committee on chain
    /// (n members) to have signed `dci_chain::committee_digest_at(chain id,
    /// ledger, epoch, members)`, and an epoch after that committee's; the
    /// batch's simulation checks both first. The embedded ledger (one node,
    /// no chain) records it under the same epoch and member rules
    /// ([`crate::rules::committee`]) without checking the signatures, and
    /// its slashes keep counting the ed25519 signatures of the committee
    /// each `Slash` names.
    SetCommittee {
        /// The epoch the committee serves.
        epoch: u64,
        /// The members' chain signer addresses (`dci_chain::node_signer`),
        /// in the order signed.
        #[serde(with = "hex_list")]
        members: Vec<[u8; 20]>,
        /// Signatures of members of the latest committee (65 bytes, r ‖ s ‖
        /// v, EIP-191), each over the digest of `epoch` and `members`.
        #[serde(with = "hex_list")]
        signatures: Vec<Vec<u8>>,
    },
    /// Changes the governance parameters from `now` on.
    SetParams {
        /// The new parameters.
        params: Params,
        /// When they take effect.
        now: Timestamp,
    },
}

/// A refund of paid seconds that were not delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndeliveredRefund {
    /// The session.
    pub session: SessionId,
    /// Seconds refunded.
    pub seconds: u64,
    /// Seconds the receipt billed.
    pub paid_seconds: u64,
    /// `floor((charged − extra_charged) × seconds / paid_seconds)`: the
    /// share of what the receipt's time cost (an extra charge, e.g. model
    /// tokens, was for something delivered).
    pub amount: Amount,
    /// Who got it back.
    pub consumer: AccountId,
    /// Who paid it back (the session's payout account).
    pub payout: AccountId,
    /// Taken from the payout's balance.
    pub from_balance: Amount,
    /// Taken from its pending rewards.
    pub from_rewards: Amount,
    /// Taken from its container stake.
    pub from_stake: Amount,
}

/// What an applied [`LedgerOp`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpOutcome {
    /// Transfer, stake, lock, set committee, set params.
    Done,
    /// Unstake: the new unbonding entry.
    Unbonding(UnbondingEntry),
    /// Withdraw, claim, refund: the amount returned to the balance.
    Amount(Amount),
    /// Settle.
    Settled(Settled),
    /// Refund of undelivered seconds.
    Undelivered(UndeliveredRefund),
    /// Distribute epoch.
    Epoch(EpochSummary),
    /// Slash.
    Slashed(Slashed),
}

impl LedgerOp {
    /// The op's name as in [`crate::Settlement`].
    pub fn name(&self) -> &'static str {
        match self {
            LedgerOp::Transfer(_) => "transfer",
            LedgerOp::Stake { .. } => "stake",
            LedgerOp::Unstake { .. } => "unstake",
            LedgerOp::WithdrawUnbonded { .. } => "withdraw_unbonded",
            LedgerOp::ClaimRewards { .. } => "claim_rewards",
            LedgerOp::LockEscrow { .. } => "lock_escrow",
            LedgerOp::Settle { .. } => "settle",
            LedgerOp::Refund { .. } => "refund",
            LedgerOp::RefundUndelivered { .. } => "refund_undelivered",
            LedgerOp::DistributeEpoch { .. } => "distribute_epoch",
            LedgerOp::Slash { .. } => "slash",
            LedgerOp::SetCommittee { .. } => "set_committee",
            LedgerOp::SetParams { .. } => "set_params",
        }
    }
}

/// A list of byte strings as `0x`-prefixed hex strings.
mod hex_list {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer, T: AsRef<[u8]>>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| format!("0x{}", hex::encode(b.as_ref()))))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<Vec<u8>>>(d: D) -> Result<Vec<T>, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        list.iter()
            .map(|s| {
                let bytes = hex::decode(s.trim_start_matches("0x"))
                    .map_err(|_| serde::de::Error::custom(format!("expected hex bytes, found {s:?}")))?;
                let n = bytes.len();
                T::try_from(bytes).map_err(|_| serde::de::Error::custom(format!("unexpected length {n} of {s:?}")))
            })
            .collect()
    }
}

fn mismatch(what: &str, got: &OpOutcome) -> LedgerError {
    LedgerError::Storage(format!("backend answered {got:?} to {what}"))
}

impl OpOutcome {
    /// Expects [`OpOutcome::Done`].
    pub fn done(self, what: &str) -> Result<(), LedgerError> {
        match self {
            OpOutcome::Done => Ok(()),
            other => Err(mismatch(what, &other)),
        }
    }

    /// Expects [`OpOutcome::Amount`].
    pub fn amount(self, what: &str) -> Result<Amount, LedgerError> {
        match self {
            OpOutcome::Amount(a) => Ok(a),
            other => Err(mismatch(what, &other)),
        }
    }

    /// Expects [`OpOutcome::Unbonding`].
    pub fn unbonding(self, what: &str) -> Result<UnbondingEntry, LedgerError> {
        match self {
            OpOutcome::Unbonding(u) => Ok(u),
            other => Err(mismatch(what, &other)),
        }
    }

    /// Expects [`OpOutcome::Settled`].
    pub fn settled(self, what: &str) -> Result<Settled, LedgerError> {
        match self {
            OpOutcome::Settled(s) => Ok(s),
            other => Err(mismatch(what, &other)),
        }
    }

    /// Expects [`OpOutcome::Undelivered`].
    pub fn undelivered(self, what: &str) -> Result<UndeliveredRefund, LedgerError> {
        match self {
            OpOutcome::Undelivered(u) => Ok(u),
            other => Err(mismatch(what, &other)),
        }
    }

    /// Expects [`OpOutcome::Epoch`].
    pub fn epoch(self, what: &str) -> Result<EpochSummary, LedgerError> {
        match self {
            OpOutcome::Epoch(e) => Ok(e),
            other => Err(mismatch(what, &other)),
        }
    }

    /// Expects [`OpOutcome::Slashed`].
    pub fn slashed(self, what: &str) -> Result<Slashed, LedgerError> {
        match self {
            OpOutcome::Slashed(s) => Ok(s),
            other => Err(mismatch(what, &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContainerWork, EpochInput};

    /// Ops travel as JSON (to a remote backend, into logs) and come back equal.
    #[test]
    fn ops_round_trip_through_json() {
        let a = AccountId::new("node:a").unwrap();
        let mut report = SlashReport::new(a.clone(), StakeRole::Checker, 9, [3; 32], Amount(5));
        report.sign(&dci_proto::Identity::from_secret([4; 32]));
        let ops = vec![
            LedgerOp::Transfer(Transfer { from: a.clone(), to: AccountId::new("node:b").unwrap(), amount: Amount(1) }),
            LedgerOp::Unstake { account: a.clone(), role: StakeRole::Container, amount: Amount(2), now: Timestamp(3) },
            LedgerOp::DistributeEpoch {
                epoch: 4,
                input: EpochInput {
                    containers: vec![ContainerWork { account: a, capacity_units: 1, uptime_ppm: 2 }],
                    ..EpochInput::default()
                },
            },
            LedgerOp::Slash { report, committee: vec![NodeId([1; 32])] },
            LedgerOp::SetCommittee { epoch: 6, members: vec![[0xab; 20], [2; 20]], signatures: vec![vec![7; 65]] },
            LedgerOp::SetParams { params: Params::default(), now: Timestamp(5) },
        ];
        let json = serde_json::to_string(&ops).unwrap();
        assert_eq!(serde_json::from_str::<Vec<LedgerOp>>(&json).unwrap(), ops);
        assert!(json.contains("\"set_params\""), "{json}");
        assert!(json.contains(&format!("\"0x{}\"", "ab".repeat(20))), "addresses as hex: {json}");
    }

    /// Settles queued (and outcomes recorded) before `extra` existed still
    /// decode: no extra, nothing of the charge from it.
    #[test]
    fn settles_and_outcomes_without_extra_still_decode() {
        let id = dci_proto::Identity::from_secret([4; 32]);
        let price: dci_model::PricePerHour = "3.6".parse().unwrap();
        let receipt = dci_proto::UsageReceipt {
            session: SessionId([1; 16]),
            container: id.id(),
            consumer: AccountId::new("consumer:a").unwrap(),
            service: dci_model::ServiceName::new("llm").unwrap(),
            started_at: Timestamp(0),
            ended_at: Timestamp(1_000),
            seconds: 1,
            price,
            amount: price.cost_for_secs(1).unwrap(),
        }
        .sign(&id);
        let op =
            LedgerOp::Settle { receipt, acker: id.id(), payout: AccountId::new("node:p").unwrap(), extra: Amount(7) };
        let mut old = serde_json::to_value(&op).unwrap();
        assert_eq!(old["settle"]["extra"], "7", "{old}");
        old["settle"].as_object_mut().unwrap().remove("extra");
        match serde_json::from_value::<LedgerOp>(old).unwrap() {
            LedgerOp::Settle { extra, .. } => assert_eq!(extra, Amount::ZERO),
            other => panic!("{other:?}"),
        }
        let settled =
            crate::rules::settle(SessionId([1; 16]), Amount(5), Amount(2), Amount(6), &Default::default()).unwrap();
        let mut old = serde_json::to_value(OpOutcome::Settled(settled)).unwrap();
        old["settled"].as_object_mut().unwrap().remove("extra_charged");
        let OpOutcome::Settled(back) = serde_json::from_value(old).unwrap() else { panic!() };
        assert_eq!((back.charged, back.extra_charged), (Amount(6), Amount::ZERO));
    }
}
