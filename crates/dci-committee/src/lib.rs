//! DCI's epoch committee (R-CK6, R-CK7): verifiable sortition of the checker
//! committee, random assignment of inspection targets to its members, and
//! the two-thirds quorum that penalties need.
//!
//! This crate is sans-IO and deterministic: seeds, candidates and proofs go
//! in, committees and assignments come out. It is not the checker role
//! (`dci-checker` inspects), not the ledger (`dci-ledger` holds stakes and
//! applies slashes) and not the network (proofs travel in `dci-proto`
//! messages, driven by `dci-node`).
//!
//! # An epoch
//!
//! 1. Every candidate (a checker with stake, registered with a VRF key before
//!    the epoch's seed was known) evaluates its VRF on the epoch seed:
//!    [`prove`]`(key, seed, epoch)` gives a [`Proof`] (output + DLEQ proof).
//! 2. It computes its [`Ticket`] ([`CandidateSet::ticket`]) and publishes the
//!    proof if the ticket is below the epoch's publish threshold
//!    ([`CandidateSet::publish_threshold`], [`Threshold::admits`]).
//! 3. Every node runs [`verify_and_select`] on the proofs it received and
//!    gets the same [`Committee`]; it checks single proofs from the network
//!    with [`verify_proof`] first.
//! 4. Targets go to members with [`assign_targets`]; penalties need
//!    [`check_quorum`] (≥ ⌈2n/3⌉ member signatures over the same evidence).
//! 5. [`CandidateSet::record`] adds the committee to the public history and
//!    [`EpochSeed::next`] derives the next seed from the members' outputs.
//!
//! # The selection, with its math
//!
//! **Draw.** Node `i`'s VRF output gives a uniform `u_i ∈ (0, 1)` (64 bits,
//! see [`vrf`]), and `E_i = −ln u_i` is an exponential variate of rate 1
//! (integer fixed point, bit-identical on every machine: [`ticket`]).
//!
//! **Key.** `k_i = E_i / w_i ~ Exp(w_i)`. In an exponential race the smallest
//! key belongs to node `i` with probability `w_i / Σ w`; taking the `size`
//! smallest keys is weighted sampling without replacement (Efraimidis and
//! Spirakis, 2006): the committee is `size` successive weighted draws.
//! Keys are compared exactly by cross-multiplication (`E_i·w_j` vs `E_j·w_i`),
//! ties by node id.
//!
//! **Weight.** `w_i = units_i · f_i` with `units_i` the stake in whole ATH
//! and the history factor `f_i = clamp(1 + β·d_i, f_min, f_max)` where
//! `d_i = expected_i − selected_i`, `expected_i = Σ_e m_e · units_i / U_e`
//! (the seats node `i`'s stake share of each past committee of `m_e` members
//! over total stake `U_e`), `selected_i` the committees it was in.
//! Defaults: β = 0.5 per seat, `f ∈ [1/4, 4]` ([`HistoryRule`]). A node
//! selected less often than its stake predicts weighs more, so equal-stake
//! nodes' counts stay close (this also corrects the sampling-without-
//! replacement bias against large stakes, pulling rates towards exact stake
//! proportionality). All of it is integer and public ([`history`]).
//! Newcomers start even (`d = 0`), so fresh identities gain nothing; the cap
//! bounds what any history can be worth (withholding a winning proof keeps
//! a node's deficit, but never lifts it above 4× its stake weight).
//!
//! **Publishing.** Node `i` publishes iff `k_i < τ`, which happens with
//! probability `1 − e^{−w_i τ}`. `τ` is set so that
//! `Σ (1 − e^{−w_i τ}) ≥ K = size · (1 + margin)`: from
//! `1 − e^{−x} ≥ x − x²/2`, `τ = 2K / (W + √(W² − 2QK))` with `W = Σ w_i`,
//! `Q = Σ w_i²` (one pass); when a few nodes hold most of the weight
//! (`W² < 2QK`), τ solves the exact sum by bisection. If at least `size`
//! keys fall below τ, the `size` smallest keys overall are all below τ, all
//! published, and the committee equals the sortition over *all* candidates.
//! τ only decides who speaks: it is advisory (a float), and verifiers do not
//! enforce it.
//!
//! **Verification.** Proofs are ranked by the ticket their output claims;
//! the best `size` are verified (batch DLEQ per core). Lower-ranked proofs
//! cannot change the outcome. Withholding a winning proof only removes the
//! withholder: the next-best published key takes the seat. Fewer than `size`
//! valid proofs give a smaller committee ([`Committee::is_full`] false) with
//! quorum ⌈2n/3⌉ of its actual size.
//!
//! **Grinding.** The VRF input is `(seed, epoch)` only; keys are fixed at
//! registration, before the seed exists (the integrator must freeze the
//! candidate set of epoch `e` before `seed_e` is known); the output is unique
//! per key and input. The next seed hashes the previous one with the members' outputs
//! ([`EpochSeed::next`]); a member can only bias it by withholding, which
//! costs its seat (one bit of influence per withholding member).
//!
//! # Fairness and benchmark
//!
//! [`fairness()`] simulates many epochs on the same code path with fast keyed
//! draws in place of VRF outputs; [`bench::run`] produces `dci bench checker`'s
//! `sortition_ms_1m`, `max_rate_deviation` and `history_spread_ratio`.

pub mod assign;
pub mod bench;
pub mod candidates;
pub mod epoch;
pub mod fairness;
mod hexser;
pub mod history;
mod par;
pub mod quorum;
pub mod select;
pub mod ticket;
pub mod vrf;

pub use assign::{Assignment, assign_targets};
pub use candidates::{Candidate, CandidateSet, Threshold};
pub use epoch::{EpochCoordinator, Registered, assign_one, recompute};
pub use fairness::{Fairness, FairnessConfig, fairness};
pub use history::{History, HistoryRule};
pub use quorum::{QuorumError, check_evidence_quorum, check_quorum, evidence_message, quorum, sign_evidence};
pub use select::{Committee, Member, SortitionError, verify_and_select, verify_proof};
pub use ticket::Ticket;
pub use vrf::{CommitteeKey, EpochSeed, Proof, ProofFault, prove};
