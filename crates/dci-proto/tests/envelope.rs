//! Malformed, misaddressed, replayed, expired, oversized and unsigned
//! messages are rejected with what was expected; the preface refuses an older
//! release; binding proofs prove a node id for one connection only.

use dci_model::{NodeId, SessionId, Timestamp};
use dci_proto::{
    Channel, Heartbeat, Identity, MAX_MESSAGE_BYTES, MAX_RENEW, Message, NetworkId, Opener, ProtoError, Side,
    bind_proof, check_bind_proof, check_preface, preface, seal,
};
use std::time::Duration;

fn hb(seq: u64) -> Message {
    Message::Heartbeat(Heartbeat { seq, sessions: 0, warm: vec![] })
}

const T0: Timestamp = Timestamp(1_700_000_000_000);

fn net() -> NetworkId {
    NetworkId::of("test")
}

/// One connection between `a` and `b` as each end sees it.
fn pair(a: &Identity, b: &Identity, binding: u8) -> (Channel, Channel) {
    let binding = [binding; 32];
    (
        Channel { network: net(), local: a.id(), peer: b.id(), binding },
        Channel { network: net(), local: b.id(), peer: a.id(), binding },
    )
}

fn opener(channel: Channel) -> Opener {
    Opener::new(Duration::from_secs(60), channel)
}

#[test]
fn a_sealed_message_opens_on_its_own_connection_only() {
    let (a, b, c) = (Identity::from_secret([1; 32]), Identity::from_secret([2; 32]), Identity::from_secret([3; 32]));
    let (at_a, at_b) = pair(&a, &b, 7);
    let bytes = seal(&a, &at_a, T0, &hb(1));
    let opened = opener(at_b).open(T0, &bytes).unwrap();
    assert_eq!((opened.sender, opened.message), (a.id(), hb(1)));

    // The same bytes anywhere else: another connection between the same two
    // nodes (a replay, e.g. after a restart), another recipient, another
    // network, or the connection of another peer.
    let (_, b_later) = pair(&a, &b, 8);
    assert_eq!(opener(b_later).open(T0, &bytes).unwrap_err(), ProtoError::OtherChannel);
    let (_, at_c) = pair(&a, &c, 7);
    assert!(matches!(opener(at_c).open(T0, &bytes), Err(ProtoError::WrongRecipient { .. })));
    let other_net = Channel { network: NetworkId::of("another"), ..at_b };
    let e = opener(other_net).open(T0, &bytes).unwrap_err();
    assert!(matches!(e, ProtoError::WrongNetwork { .. }), "{e}");
    assert!(e.to_string().contains("expected network"), "{e}");
    // c seals for b on c's own connection, but sends it on a's: refused.
    let (c_to_b, _) = pair(&c, &b, 7);
    let e = opener(at_b).open(T0, &seal(&c, &c_to_b, T0, &hb(1))).unwrap_err();
    assert!(matches!(e, ProtoError::WrongSender { .. }), "{e}");
}

#[test]
fn rejections_say_what_was_expected() {
    let (a, b) = (Identity::from_secret([1; 32]), Identity::from_secret([2; 32]));
    let (at_a, at_b) = pair(&a, &b, 1);
    let good = seal(&a, &at_a, T0, &hb(1));
    let mut tampered = good.clone();
    let last = tampered.len() - 70; // inside the signed body
    tampered[last] ^= 1;
    let mut bad_sig = good.clone();
    let n = bad_sig.len();
    bad_sig[n - 1] ^= 0xff;
    // An "unsigned" message: a valid envelope whose signature is empty.
    let unsigned = {
        let mut v = good.clone();
        // Envelope = varint(len signed) signed varint(64) sig: drop the signature.
        v.truncate(n - 65);
        v.push(0);
        v
    };
    type Case = (&'static str, Vec<u8>, Timestamp, fn(&ProtoError) -> bool);
    let cases: Vec<Case> = vec![
        ("empty", vec![], T0, |e| matches!(e, ProtoError::Malformed(_))),
        ("garbage", b"hello world".to_vec(), T0, |e| matches!(e, ProtoError::Malformed(_))),
        ("oversized", vec![0; MAX_MESSAGE_BYTES + 1], T0, |e| matches!(e, ProtoError::TooLarge { .. })),
        ("tampered", tampered, T0, |e| matches!(e, ProtoError::BadSignature(_) | ProtoError::Malformed(_))),
        ("bad signature", bad_sig, T0, |e| matches!(e, ProtoError::BadSignature(_))),
        ("unsigned", unsigned, T0, |e| matches!(e, ProtoError::BadSignature(_))),
        ("expired", good.clone(), T0.plus(Duration::from_secs(61)), |e| matches!(e, ProtoError::Expired { .. })),
        ("future", seal(&a, &at_a, T0.plus(Duration::from_secs(120)), &hb(1)), T0, |e| {
            matches!(e, ProtoError::FromFuture { .. })
        }),
        ("a preface", preface(a.id(), T0), T0, |e| matches!(e, ProtoError::Malformed(_))),
    ];
    let o = opener(at_b);
    for (name, bytes, now, expect) in cases {
        let err = o.open(now, &bytes).unwrap_err();
        assert!(expect(&err), "{name}: unexpected {err:?}");
        assert!(err.to_string().contains("expected"), "{name}: {err}");
    }
    // And the good one still opens afterwards.
    assert!(o.open(T0, &good).is_ok());
}

/// The wire as protocol 10 had it: an old node's message, and how an old
/// node decodes a header.
mod v10 {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub struct Header {
        pub version: u16,
        pub sender: NodeId,
        pub nonce: u64,
        pub sent_at: Timestamp,
        pub body: Vec<u8>,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Envelope {
        pub signed: Vec<u8>,
        pub signature: Vec<u8>,
    }

    pub fn message(sender: NodeId) -> Vec<u8> {
        let body = postcard::to_stdvec(&hb(1)).unwrap();
        let signed = postcard::to_stdvec(&Header { version: 10, sender, nonce: 1, sent_at: T0, body }).unwrap();
        postcard::to_stdvec(&Envelope { signed, signature: vec![0; 64] }).unwrap()
    }
}

#[test]
fn the_preface_refuses_an_older_release_and_an_older_release_refuses_it_for_its_version() {
    let a = Identity::from_secret([1; 32]);
    check_preface(&preface(a.id(), T0)).unwrap();
    // An old node dials and sends its first message: refused for its version.
    let e = check_preface(&v10::message(a.id())).unwrap_err();
    assert_eq!(e, ProtoError::Version { found: 10, expected: dci_proto::VERSION });
    assert!(e.to_string().contains("unsupported protocol version 10, expected 11"), "{e}");
    // An old node reads our preface as it read every message: an envelope
    // whose header it decodes, then refuses for its version.
    let env: v10::Envelope = postcard::from_bytes(&preface(a.id(), T0)).unwrap();
    let header: v10::Header = postcard::from_bytes(&env.signed).unwrap();
    assert_eq!(header.version, 11);
    // Not a preface: a current message, garbage, too large.
    let (at_a, _) = pair(&a, &Identity::from_secret([2; 32]), 1);
    for bytes in [seal(&a, &at_a, T0, &hb(1)), b"GET / HTTP/1.1".to_vec(), vec![0; 5000]] {
        let e = check_preface(&bytes).unwrap_err();
        assert!(e.to_string().contains("expected"), "{e}");
    }
}

#[test]
fn a_binding_proof_proves_its_node_for_one_connection_one_network_one_side() {
    let a = Identity::from_secret([1; 32]);
    let binding = [9; 32];
    let proof = bind_proof(&a, net(), &binding, Side::Initiator);
    assert_eq!(check_bind_proof(&proof, net(), &binding, Side::Initiator).unwrap(), a.id());
    let refused = [
        ("another connection", check_bind_proof(&proof, net(), &[8; 32], Side::Initiator)),
        ("another network", check_bind_proof(&proof, NetworkId::of("x"), &binding, Side::Initiator)),
        ("reflected to its maker", check_bind_proof(&proof, net(), &binding, Side::Responder)),
        ("garbage", check_bind_proof(b"nope", net(), &binding, Side::Initiator)),
    ];
    for (name, r) in refused {
        let e = r.unwrap_err();
        assert!(e.to_string().contains("expected"), "{name}: {e}");
    }
    // A proof whose node id was swapped for another's.
    let mut forged = proof.clone();
    let b = Identity::from_secret([2; 32]).id();
    let at = forged.windows(32).position(|w| w == a.id().0).unwrap();
    forged[at..at + 32].copy_from_slice(&b.0);
    assert!(matches!(check_bind_proof(&forged, net(), &binding, Side::Initiator), Err(ProtoError::BadSignature(_))));
}

#[test]
fn identity_debug_never_shows_the_secret() {
    let id = Identity::from_secret([0xab; 32]);
    let shown = format!("{id:?}");
    assert!(!shown.contains("abab"), "{shown}");
    assert_ne!(id.id(), NodeId([0xab; 32]));
}

/// The largest `Renew` a gateway may send fits in one message and opens
/// unchanged.
#[test]
fn the_largest_renew_fits_in_a_message() {
    let id = Identity::from_secret([4; 32]);
    let sessions = (0..MAX_RENEW as u128).map(|i| SessionId(i.to_le_bytes())).collect();
    let msg = Message::Renew { sessions };
    assert_eq!(msg.kind(), "renew");
    let (at_id, at_peer) = pair(&id, &Identity::from_secret([9; 32]), 1);
    let bytes = seal(&id, &at_id, T0, &msg);
    assert!(bytes.len() <= MAX_MESSAGE_BYTES, "{} bytes", bytes.len());
    assert_eq!(opener(at_peer).open(T0, &bytes).unwrap().message, msg);
}

/// The stake check's messages (issue 14) open unchanged, with their names.
#[test]
fn stake_messages_open_unchanged() {
    let id = Identity::from_secret([5; 32]);
    let node = NodeId([7; 32]);
    let cases = [
        (Message::StakeQuery { request_id: 9, node }, "stake_query"),
        (
            Message::StakeOf {
                request_id: 9,
                node,
                bonded: dci_model::Amount::ath(3),
                minimum: dci_model::Amount::ath(100),
            },
            "stake_of",
        ),
        (Message::Refused { reason: "registration refused: expected ..., found ...".into() }, "refused"),
    ];
    let (at_id, at_peer) = pair(&id, &Identity::from_secret([9; 32]), 1);
    for (msg, kind) in cases {
        assert_eq!(msg.kind(), kind);
        assert_eq!(opener(at_peer).open(T0, &seal(&id, &at_id, T0, &msg)).unwrap().message, msg);
    }
}

/// A service name longer than the model allows (48 characters) never
/// decodes: a registration carrying one is malformed on the wire, so no
/// role ever sees it. (The body is patched at the postcard level, the
/// decoding `Opener::open` does, since no `ServiceName` can hold it.)
#[test]
fn an_overlong_service_name_does_not_decode() {
    let name = "s".repeat(47);
    let reg = dci_proto::Registration {
        addr: "127.0.0.1:9".into(),
        spec: dci_model::ContainerSpec {
            gpu: None,
            cpu_cores: 1,
            ram_gib: 1,
            disk_gib: 1,
            bandwidth_up_mbps: 1,
            bandwidth_down_mbps: 1,
            location: dci_model::GeoPoint::new(0.0, 0.0).unwrap(),
        },
        services: vec![dci_model::ServiceName::new(name.clone()).unwrap()],
        price: "1".parse().unwrap(),
        slots: 1,
        payout: dci_model::AccountId::new("provider:x").unwrap(),
    };
    let body = postcard::to_stdvec(&Message::Register(reg)).unwrap();
    // varint(47) then the name: replace it with a name of `len` characters.
    let mut pattern = vec![47u8];
    pattern.extend_from_slice(name.as_bytes());
    let at = body.windows(pattern.len()).position(|w| w == pattern.as_slice()).expect("the name is in the body");
    let with_name_of = |len: usize| -> Result<Message, postcard::Error> {
        let mut b = body[..at].to_vec();
        b.push(len as u8);
        b.extend_from_slice("s".repeat(len).as_bytes());
        b.extend_from_slice(&body[at + pattern.len()..]);
        postcard::from_bytes::<Message>(&b)
    };
    let Ok(Message::Register(r)) = with_name_of(48) else { panic!("48 characters are allowed") };
    assert_eq!(r.services[0].as_str().len(), 48);
    assert!(with_name_of(49).is_err(), "49 characters decoded");
}
