//! `ListContainers` pages: a network too large for one frame is listed in
//! pages that each fit, cover every container once, in id order.

mod common;

use common::*;
use dci_indexer::{ContainerRecord, Indexer, Output};
use dci_model::{Actor, NodeId, State, Timestamp, Transition};
use dci_proto::{MAX_CONTAINERS_PAGE, MAX_MESSAGE_BYTES, Message, Net};

const NOW: u64 = 1_700_000_000_000;

/// `n` containers with full histories (20 transitions with long reasons):
/// about 5 KB each on the wire.
fn network(n: u32) -> Indexer {
    let mut ix = Indexer::new(config());
    let records = (0..n)
        .map(|i| {
            let mut id = [0u8; 32];
            // Ids spread over the whole space, not in insertion order.
            id[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            id[4..8].copy_from_slice(&i.to_be_bytes());
            let transition = |k: u64| Transition {
                from: State::Ready,
                to: State::Healthy,
                actor: Actor::Container,
                reason: format!("{k}: {}", "a heartbeat after a long and carefully described absence ".repeat(4)),
                at: Timestamp(NOW - 1000 + k),
            };
            ContainerRecord {
                id: NodeId(id),
                registration: registration(big_spec(), &["llm", "render"], milli_ath(1000), 2),
                state: State::Healthy,
                reputation: 500,
                transitions: (0..20).map(transition).collect(),
                verdicts: Vec::new(),
                verified: None,
                ever_passed: true,
            }
        })
        .collect();
    ix.restore(records, Timestamp(NOW));
    ix
}

#[test]
fn a_network_larger_than_a_frame_is_listed_in_pages_that_fit() {
    let n = 3000;
    let mut ix = network(n);
    let now = Timestamp(NOW + 10);
    let whole = postcard::to_allocvec(&ix.containers(now)).unwrap().len();
    assert!(whole > MAX_MESSAGE_BYTES, "the test network must not fit in one frame ({whole} bytes)");

    let mut after = None;
    let mut seen: Vec<NodeId> = Vec::new();
    let mut sizes = Vec::new();
    for request_id in 1.. {
        let outs = ix.feed(now, net(GATEWAY, Message::ListContainers { request_id, after }));
        let [Output::Net(Net::Reply { msg, .. })] = outs.as_slice() else { panic!("{outs:?}") };
        let Message::Containers { request_id: r, containers, next } = msg else { panic!("{msg:?}") };
        assert_eq!(*r, request_id);
        assert!(!containers.is_empty() && containers.len() <= MAX_CONTAINERS_PAGE);
        let bytes = postcard::to_allocvec(msg).unwrap().len();
        assert!(bytes <= MAX_MESSAGE_BYTES / 2, "page {request_id}: {bytes} bytes");
        sizes.push((containers.len(), bytes));
        seen.extend(containers.iter().map(|v| v.id));
        match next {
            Some(last) => {
                assert_eq!(Some(last), containers.last().map(|v| &v.id), "next is the page's last id");
                after = Some(*last);
            }
            None => break,
        }
    }
    println!(
        "{n} containers ({whole} bytes as one list, over the {MAX_MESSAGE_BYTES}-byte frame cap) listed in {} pages: {sizes:?}",
        sizes.len()
    );
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "pages are in id order with no repeats");
    assert_eq!(seen.len(), n as usize, "every container is listed once");
}

#[test]
fn small_networks_fit_one_page_and_pages_start_after_the_cursor() {
    let mut ix = network(10);
    let now = Timestamp(NOW + 10);
    let all = ix.containers(now);
    let outs = ix.feed(now, net(GATEWAY, Message::ListContainers { request_id: 1, after: Some(all[6].id) }));
    let [Output::Net(Net::Reply { msg: Message::Containers { containers, next: None, .. }, .. })] = outs.as_slice()
    else {
        panic!("{outs:?}")
    };
    assert_eq!(containers.iter().map(|v| v.id).collect::<Vec<_>>(), all[7..].iter().map(|v| v.id).collect::<Vec<_>>());
    let outs = ix.feed(now, net(GATEWAY, Message::ListContainers { request_id: 2, after: Some(NodeId([0xff; 32])) }));
    let [Output::Net(Net::Reply { msg: Message::Containers { containers, next: None, .. }, .. })] = outs.as_slice()
    else {
        panic!("{outs:?}")
    };
    assert!(containers.is_empty());
}
