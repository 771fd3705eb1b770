//! Malformed, replayed, misaddressed, unsigned, expired and oversized node
//! messages reach a real indexer over its Noise transport and are rejected:
//! counted and logged by the transport, and the indexer's registry does not
//! change.

use std::sync::Arc;
use std::time::Duration;

use dci_model::{AccountId, ContainerSpec, GeoPoint, ServiceName, Timestamp};
use dci_node::clock;
use dci_node::roles::{Bound, spawn_indexer};
use dci_node::store::RecordStore;
use dci_node::transport::Dialed;
use dci_proto::{Channel, Identity, Message, NetworkId, Registration, frame, seal};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn registration() -> Message {
    Message::Register(Registration {
        addr: "127.0.0.1:9".into(),
        spec: ContainerSpec {
            gpu: None,
            cpu_cores: 4,
            ram_gib: 8,
            disk_gib: 10,
            bandwidth_up_mbps: 100,
            bandwidth_down_mbps: 100,
            location: GeoPoint::new(0.0, 0.0).unwrap(),
        },
        services: vec![ServiceName::new("render").unwrap()],
        price: "1".parse().unwrap(),
        slots: 1,
        payout: AccountId::new("node:test").unwrap(),
    })
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 2 s");
}

#[tokio::test]
async fn bad_messages_are_rejected_and_change_nothing() {
    let shutdown = CancellationToken::new();
    let store = Arc::new(RecordStore::in_memory("containers").unwrap());
    let network = NetworkId::of("test");
    let bound = Bound::bind(Identity::from_secret([1; 32]), network, "127.0.0.1:0").await.unwrap();
    let transport = bound.transport();
    let addr = bound.addr();
    let config = dci_indexer::Config::new("127.0.0.1:9", vec![], vec![]);
    let (_peers, inputs) = tokio::sync::mpsc::channel(1);
    let _indexer = spawn_indexer(bound, config, store.clone(), inputs, shutdown.clone()).unwrap();

    let honest = Identity::from_secret([2; 32]);
    let intruder = Identity::from_secret([3; 32]);
    let now = clock::now();
    let mut conn = Dialed::connect(intruder.clone(), network, &addr).await.unwrap();
    let mut honest_conn = Dialed::connect(honest.clone(), network, &addr).await.unwrap();
    let good = honest_conn.seal(&registration());

    let mut tampered = conn.seal(&registration());
    let n = tampered.len();
    tampered[n - 1] ^= 0x55; // signature no longer verifies
    let unsigned = {
        let mut v = conn.seal(&registration());
        let n = v.len();
        v.truncate(n - 65);
        v.push(0); // empty signature
        v
    };
    let channel = conn.channel();
    let expired = seal(&intruder, &channel, Timestamp(now.0 - 10 * 60 * 1000), &registration());
    let other_network = seal(&intruder, &Channel { network: NetworkId::of("other"), ..channel }, now, &registration());
    let other_recipient =
        seal(&intruder, &Channel { peer: Identity::from_secret([9; 32]).id(), ..channel }, now, &registration());
    let garbage = b"definitely not an envelope".to_vec();

    // 7 rejections: the honest node's message replayed on the intruder's
    // connection, tampered, unsigned, expired, another network, another
    // recipient, garbage.
    for bytes in [&good, &tampered, &unsigned, &expired, &other_network, &other_recipient, &garbage] {
        conn.send_sealed(bytes).await.unwrap();
    }
    wait_until(|| transport.rejected() == 7).await;
    assert!(store.list::<dci_indexer::ContainerRecord>(None).unwrap().is_empty(), "nothing was registered");
    honest_conn.send_sealed(&good).await.unwrap();
    wait_until(|| store.list::<dci_indexer::ContainerRecord>(None).unwrap().len() == 1).await;
    let records: Vec<dci_indexer::ContainerRecord> = store.list(None).unwrap();
    assert_eq!(records[0].id, honest.id(), "only the honest container is registered");

    // An oversized frame length closes that connection and is counted too.
    conn.send_plain(&u32::MAX.to_be_bytes()).await.unwrap();
    wait_until(|| transport.rejected() == 8).await;
    // A connection that does not start with a preface is refused.
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&frame(b"definitely not a preface")).await.unwrap();
    wait_until(|| transport.refused() == 1).await;
    assert_eq!(store.list::<dci_indexer::ContainerRecord>(None).unwrap().len(), 1);
    shutdown.cancel();
}
