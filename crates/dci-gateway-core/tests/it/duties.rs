//! The committee duties on a chain ledger: the epoch's committee is signed
//! by the checkers (each as it recomputes it) and put on chain before any
//! slash of that epoch; the EVM's recovery is handed in, here a stand-in
//! whose "signature" is the signer's address.

use dci_committee::{CommitteeKey, EpochSeed};
use dci_gateway_core::duties::Duties;
use dci_gateway_core::{ChainHooks, CheckerSeat, CommitteeConfig};
use dci_ledger::{LedgerOp, SlashReport, StakeRole};
use dci_model::{AccountId, Amount, NodeId, Timestamp};
use dci_proto::{ChainDomain, Message, SortitionProof};

use crate::world::identity;

/// The stand-in recovery: a 20-byte "signature" is its signer.
fn recover(_: &ChainDomain, _: u64, _: &[[u8; 20]], sig: &[u8]) -> Option<[u8; 20]> {
    sig.try_into().ok()
}

fn vote_recover(_: &ChainDomain, _: &SlashReport, sig: &[u8]) -> Option<[u8; 20]> {
    sig.try_into().ok()
}

fn signer(n: u8) -> [u8; 20] {
    [n; 20]
}

/// Duties over checkers 30..34 on a chain, with epoch 1's committee of 3 selected.
fn selected() -> (Duties, dci_proto::CommitteeAnnouncement) {
    let ids: Vec<_> = (30..34u8).map(identity).collect();
    let seats = ids
        .iter()
        .enumerate()
        .map(|(i, id)| CheckerSeat {
            id: id.id(),
            addr: format!("10.0.2.{i}:7000"),
            vrf_public: CommitteeKey::from_identity(id).public(),
            chain_signer: signer(id.id().0[0]),
        })
        .collect();
    let hooks = ChainHooks {
        domain: ChainDomain { chain_id: 31337, ledger: [9; 20] },
        vote_signer: vote_recover,
        committee_signer: recover,
    };
    let config = CommitteeConfig { network: "test".into(), size: 3, checkers: seats, chain: Some(hooks) };
    let mut d = Duties::new(&config).unwrap();
    let sends = d.open(1, &[Amount::ath(1_000); 4]).unwrap();
    let seed = match &sends[0].1 {
        Message::EpochOpen { seed, .. } => EpochSeed(*seed),
        other => panic!("{other:?}"),
    };
    for id in &ids {
        let p = dci_committee::prove(&CommitteeKey::from_identity(id), &seed, 1);
        let proof = SortitionProof { node: p.node, output: p.output, proof: p.proof.to_vec() };
        d.proof(id.id(), 1, &proof).unwrap();
    }
    let (announcement, _) = d.close().unwrap();
    (d, announcement)
}

#[test]
fn a_committee_goes_on_chain_signed_by_the_checkers_before_its_slashes() {
    let (mut d, announcement) = selected();
    let now = Timestamp(1_000);
    let asks = d.ask_signatures(now, &announcement);
    assert_eq!(asks.len(), 4, "every checker is asked to sign");
    let members: Vec<NodeId> = d.current().unwrap().1.ids();
    // A slash of epoch 1 reaching its quorum now waits for the committee.
    let report = SlashReport {
        offender: AccountId::for_node(&identity(50).id()),
        role: StakeRole::Container,
        epoch: 1,
        evidence_hash: [1; 32],
        amount: Amount::ath(1),
        signatures: vec![],
    };
    assert!(d.ready_to_slash(report.clone(), members.clone()).is_none());
    // Signatures: a stranger's and a mismatched one are refused.
    assert!(d.committee_signed(identity(66).id(), 1, signer(66).to_vec()).is_err());
    let first = identity(30).id();
    assert!(d.committee_signed(first, 1, signer(99).to_vec()).is_err(), "not its registered signer");
    assert!(d.committee_signed(first, 2, signer(first.0[0]).to_vec()).is_err(), "another epoch");
    let mut all = false;
    for n in 30..34u8 {
        let id = identity(n).id();
        all = d.committee_signed(id, 1, signer(id.0[0]).to_vec()).unwrap();
    }
    assert!(all);
    match d.publication(now, true, std::time::Duration::from_secs(10)) {
        Some(LedgerOp::SetCommittee { epoch: 1, members: m, signatures }) => {
            assert_eq!(m.len(), 3);
            assert_eq!(signatures.len(), 4);
        }
        other => panic!("expected the committee to publish, found {other:?}"),
    }
    assert!(d.publication(now, true, std::time::Duration::ZERO).is_none(), "published once");
    // On chain: the waiting slash goes to the ledger, and later ones at once.
    assert_eq!(d.published(1), vec![(report.clone(), members.clone())]);
    assert!(d.ready_to_slash(report, members).is_some());
}

#[test]
fn a_committee_is_published_after_the_wait_with_the_signatures_that_came() {
    let (mut d, announcement) = selected();
    d.ask_signatures(Timestamp(1_000), &announcement);
    let id = identity(31).id();
    assert!(!d.committee_signed(id, 1, signer(id.0[0]).to_vec()).unwrap());
    let wait = std::time::Duration::from_secs(10);
    assert!(d.publication(Timestamp(5_000), false, wait).is_none());
    match d.publication(Timestamp(11_000), false, wait) {
        Some(LedgerOp::SetCommittee { signatures, .. }) => assert_eq!(signatures.len(), 1),
        other => panic!("{other:?}"),
    }
}
