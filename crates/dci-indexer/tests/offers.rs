//! `dci offers`: filtering and sorting the index (R-IX5).

mod common;

use common::*;
use dci_indexer::filter::Filter;
use dci_indexer::{ContainerRecord, Indexer, SortKey};
use dci_model::{State, Timestamp};
use dci_proto::OfferView;

const NOW: u64 = 1_700_000_000_000;

/// Five containers: (id, gpu, city, price in mATH, reputation, state, slots, reserved).
fn fleet() -> Indexer {
    let mut ix = Indexer::new(config());
    let rows = [
        (1, gpu("NVIDIA H100", 8, 80), "frankfurt", 2500, 900, State::Healthy),
        (2, gpu("NVIDIA H100", 1, 80), "lisbon", 2000, 500, State::Healthy),
        (3, gpu("RTX 4090", 1, 24), "tokyo", 400, 700, State::Ready),
        (4, None, "virginia", 100, 1000, State::Healthy),
        (5, gpu("NVIDIA A100", 4, 40), "frankfurt", 1500, 800, State::ReinspectionRequired),
    ];
    for (id, g, place, price, reputation, state) in rows {
        let mut spec = big_spec();
        spec.gpu = g;
        spec.location = city(place);
        let record = ContainerRecord {
            id: node(id),
            registration: registration(spec, &["llm", "render"], milli_ath(price), 1),
            state,
            reputation,
            transitions: Vec::new(),
            verdicts: Vec::new(),
            verified: None,
            ever_passed: false,
        };
        ix.restore(vec![record], Timestamp(NOW));
    }
    ix
}

fn ids(rows: &[OfferView]) -> Vec<u8> {
    rows.iter().map(|r| r.id.0[0]).collect()
}

#[test]
fn filters_and_sorts() {
    let ix = fleet();
    let now = Timestamp(NOW + 1000);
    let rows: &[(&str, SortKey, usize, &[u8])] = &[
        // Available = ready/healthy, fresh, a free slot: not 5.
        ("", SortKey::Price, 10, &[4, 3, 2, 1]),
        ("", SortKey::Price, 2, &[4, 3]),
        ("", SortKey::Reputation, 10, &[4, 1, 3, 2]),
        ("", SortKey::Vram, 10, &[1, 2, 3, 4]),
        ("gpu=h100", SortKey::Price, 10, &[2, 1]),
        ("gpu=h100 count>=2", SortKey::Price, 10, &[1]),
        ("vram>=40 price<=2", SortKey::Price, 10, &[2]),
        ("near=38.72,-9.14", SortKey::Rtt, 10, &[2, 1, 4, 3]),
        ("near=38.72,-9.14 rtt<30", SortKey::Price, 10, &[2, 1]),
        ("rep>=800", SortKey::Price, 10, &[4, 1]),
        ("state=any", SortKey::Price, 10, &[4, 3, 5, 2, 1]),
        ("state=reinspection-required", SortKey::Price, 10, &[5]),
        ("state=ready gpu=4090", SortKey::Price, 10, &[3]),
        ("service=embeddings", SortKey::Price, 10, &[]),
        ("service=llm gpu=a100 state=any", SortKey::Price, 10, &[5]),
        ("", SortKey::Price, 0, &[]),
    ];
    for &(text, sort, limit, want) in rows {
        let filter = Filter::parse(text).unwrap();
        assert_eq!(ids(&ix.offers(now, &filter, sort, limit)), want, "{text:?} by {sort}");
    }
}

#[test]
fn rows_show_what_a_consumer_needs() {
    let mut ix = fleet();
    let now = Timestamp(NOW + 1000);
    ix.feed(now, heartbeat(node(2), 0));
    let filter = Filter::parse("gpu=h100 near=38.72,-9.14").unwrap();
    let rows = ix.offers(now, &filter, SortKey::Rtt, 1);
    let r = &rows[0];
    assert_eq!((r.id, r.state, r.free_slots, r.slots, r.reputation), (node(2), State::Healthy, 1, 1, 500));
    assert_eq!((r.estimated_rtt_ms, r.last_heartbeat_ago_ms, r.price), (Some(1), Some(0), milli_ath(2000)));
    // Stale containers are not available, but still listed with state=any.
    let later = Timestamp(NOW + 5000);
    assert_eq!(ids(&ix.offers(later, &Filter::default(), SortKey::Price, 10)), Vec::<u8>::new());
    assert_eq!(ix.offers(later, &Filter::parse("state=any").unwrap(), SortKey::Price, 10).len(), 5);
    // A full container is not available.
    ix.feed(now, match_req(GATEWAY, session(1), dci_model::MatchRequest::for_service(svc("llm"))));
    assert_eq!(ids(&ix.offers(now, &Filter::default(), SortKey::Price, 10)), [3, 2, 1]);
}

#[test]
fn sort_keys_parse() {
    for (text, key) in
        [("price", SortKey::Price), ("rtt", SortKey::Rtt), ("vram", SortKey::Vram), ("rep", SortKey::Reputation)]
    {
        assert_eq!(text.parse::<SortKey>(), Ok(key));
    }
    assert_eq!(
        "cost".parse::<SortKey>().unwrap_err().to_string(),
        r#"expected a sort key: price, rtt, vram, reputation or free; found "cost""#
    );
}
