//! The epoch committee in the indexer (R-CK7): an announcement is recomputed
//! before it is used, inspections go to the member assigned to each
//! container, and only that member's verdict counts.

mod common;

use common::*;
use dci_committee::{CommitteeKey, EpochCoordinator, Registered, assign_one, prove};
use dci_indexer::{Indexer, Output, Rejection};
use dci_model::{Amount, NodeId, State, Timestamp};
use dci_proto::{CommitteeAnnouncement, Identity, Message, Net, SortitionProof};

const T0: u64 = 1_700_000_000_000;

fn keys() -> Vec<CommitteeKey> {
    (0..5u8).map(|i| CommitteeKey::from_identity(&Identity::from_secret([0x40 + i; 32]))).collect()
}

fn addr(id: &NodeId) -> String {
    format!("checker-{}.test:7400", id.short())
}

/// Epochs 1..=n of a coordinator where every key proves; the announcements.
fn announcements(n: u64) -> Vec<CommitteeAnnouncement> {
    let keys = keys();
    let reg: Vec<Registered> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Registered {
            id: k.node(),
            addr: addr(&k.node()),
            vrf_public: k.public(),
            stake: Amount::ath(100 * (i as u64 + 1)),
        })
        .collect();
    let mut c = EpochCoordinator::new("indexer-test", 3).unwrap();
    (1..=n)
        .map(|e| {
            let seed = c.open(e, &reg).unwrap();
            for k in &keys {
                let p = prove(k, &seed, e);
                c.proof(k.node(), e, &SortitionProof { node: p.node, output: p.output, proof: p.proof.to_vec() })
                    .unwrap();
            }
            c.close().unwrap().0
        })
        .collect()
}

fn inspection_to(outs: &[Output]) -> Option<String> {
    outs.iter().find_map(|o| match o {
        Output::Net(Net::Send { addr, msg: Message::InspectionRequest(_) }) => Some(addr.clone()),
        _ => None,
    })
}

fn rejection(outs: &[Output]) -> Option<String> {
    outs.iter().find_map(|o| match o {
        Output::Rejected { reason, .. } => Some(reason.to_string()),
        _ => None,
    })
}

#[test]
fn inspections_go_to_the_assigned_member_whose_verdict_alone_counts() {
    let a = announcements(2);
    let mut ix = Indexer::new(config());
    let now = Timestamp(T0);
    assert!(rejection(&ix.handle(now, net(GATEWAY, Message::Committee(a[0].clone())))).is_none());
    let committee = ix.committee().unwrap().clone();
    assert_eq!((committee.epoch, committee.len()), (1, 3));

    for n in 1..=12u8 {
        let c = node(n);
        let outs = ix.handle(now, register(c, registration(big_spec(), &["render"], milli_ath(1000), 1)));
        let member = assign_one(&committee, &c).unwrap();
        assert_eq!(inspection_to(&outs), Some(addr(&member)), "container {n}");
        // Another member, even of the committee, is refused; nothing changes.
        let other = committee.ids().into_iter().find(|m| *m != member).unwrap();
        let outs = ix.feed(now, verdict(other, c, true));
        assert!(
            matches!(
                outs.as_slice(),
                [Output::Rejected { reason: Rejection::WrongChecker { expected, found }, .. }] if *expected == member && *found == other
            ),
            "{outs:?}"
        );
        assert_eq!(ix.container(&c).unwrap().record.state, State::AwaitingInspection);
        ix.feed(now, verdict(member, c, true));
        assert_eq!(ix.container(&c).unwrap().record.state, State::Ready, "container {n}");
    }
    // A later epoch replaces it; an older or equal one is refused.
    assert!(rejection(&ix.handle(now, net(GATEWAY, Message::Committee(a[1].clone())))).is_none());
    assert_eq!(ix.committee().unwrap().epoch, 2);
    let stale = rejection(&ix.handle(now, net(GATEWAY, Message::Committee(a[0].clone())))).unwrap();
    assert!(stale.contains("not newer"), "{stale}");
}

#[test]
fn announcements_that_do_not_recompute_or_come_from_strangers_are_refused() {
    let a = announcements(1).remove(0);
    let mut ix = Indexer::new(config());
    let now = Timestamp(T0);
    let mut tampered = a.clone();
    tampered.seed[5] ^= 0x10;
    let why = rejection(&ix.handle(now, net(GATEWAY, Message::Committee(tampered)))).unwrap();
    assert!(why.contains("recomputes"), "{why}");
    let why = rejection(&ix.handle(now, net(CHECKER, Message::Committee(a)))).unwrap();
    assert!(why.contains("gateway"), "{why}");
    assert!(ix.committee().is_none());
    // Without a committee, inspections go to the configured checker.
    let outs = ix.handle(now, register(node(1), registration(big_spec(), &["render"], milli_ath(1000), 1)));
    assert_eq!(inspection_to(&outs).as_deref(), Some(CHECKER_ADDR));
}
