//! Malformed, replayed, unsigned, expired and oversized node messages reach a
//! real indexer over TCP and are rejected: counted and logged by the
//! transport, and the indexer's registry does not change.

use std::sync::Arc;
use std::time::Duration;

use dci_model::{AccountId, ContainerSpec, GeoPoint, ServiceName, Timestamp};
use dci_node::clock;
use dci_node::roles::{Bound, spawn_indexer};
use dci_node::store::RecordStore;
use dci_proto::{Identity, Message, Registration, frame, seal};
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
    let bound = Bound::bind(Identity::from_secret([1; 32]), "127.0.0.1:0").await.unwrap();
    let transport = bound.transport();
    let addr = bound.addr();
    let config = dci_indexer::Config::new("127.0.0.1:9", vec![], vec![]);
    let (_peers, inputs) = tokio::sync::mpsc::channel(1);
    let _indexer = spawn_indexer(bound, config, store.clone(), inputs, shutdown.clone()).unwrap();

    let honest = Identity::from_secret([2; 32]);
    let intruder = Identity::from_secret([3; 32]);
    let now = clock::now();
    let good = seal(&honest, 1, now, &registration());

    let mut tampered = seal(&intruder, 2, now, &registration());
    let n = tampered.len();
    tampered[n - 1] ^= 0x55; // signature no longer verifies
    let unsigned = {
        let mut v = seal(&intruder, 3, now, &registration());
        let n = v.len();
        v.truncate(n - 65);
        v.push(0); // empty signature
        v
    };
    let expired = seal(&intruder, 4, Timestamp(now.0 - 10 * 60 * 1000), &registration());
    let garbage = b"definitely not an envelope".to_vec();

    let mut conn = TcpStream::connect(&addr).await.unwrap();
    for bytes in [&good, &good, &tampered, &unsigned, &expired, &garbage] {
        conn.write_all(&frame(bytes)).await.unwrap();
    }
    // 5 rejections: the replayed copy, tampered, unsigned, expired, garbage.
    wait_until(|| transport.rejected() == 5).await;
    wait_until(|| store.list::<dci_indexer::ContainerRecord>(None).unwrap().len() == 1).await;
    let records: Vec<dci_indexer::ContainerRecord> = store.list(None).unwrap();
    assert_eq!(records[0].id, honest.id(), "only the honest container is registered");

    // An oversized frame header closes that connection and is counted too.
    conn.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    wait_until(|| transport.rejected() == 6).await;
    assert_eq!(store.list::<dci_indexer::ContainerRecord>(None).unwrap().len(), 1);
    shutdown.cancel();
}
