//! Malformed, replayed, expired, oversized and unsigned messages are rejected,
//! and a rejection leaves the opener exactly as it was.

use dci_model::{NodeId, SessionId, Timestamp};
use dci_proto::{Heartbeat, Identity, MAX_MESSAGE_BYTES, MAX_RENEW, Message, Opener, ProtoError, seal};
use std::time::Duration;

fn hb(seq: u64) -> Message {
    Message::Heartbeat(Heartbeat { seq, sessions: 0, warm: vec![] })
}

fn opener() -> Opener {
    Opener::new(Duration::from_secs(60))
}

const T0: Timestamp = Timestamp(1_700_000_000_000);

#[test]
fn a_sealed_message_opens_once() {
    let id = Identity::from_secret([1; 32]);
    let mut o = opener();
    let bytes = seal(&id, 42, T0, &hb(1));
    let opened = o.open(T0, &bytes).unwrap();
    assert_eq!(opened.sender, id.id());
    assert_eq!(opened.message, hb(1));
    assert!(matches!(o.open(T0, &bytes), Err(ProtoError::Replayed { nonce: 42, .. })));
    // The same nonce from another sender is a different message.
    let other = Identity::from_secret([2; 32]);
    assert!(o.open(T0, &seal(&other, 42, T0, &hb(1))).is_ok());
}

#[test]
fn rejections_change_no_state() {
    let id = Identity::from_secret([1; 32]);
    let good = seal(&id, 7, T0, &hb(1));
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
        ("future", seal(&id, 8, T0.plus(Duration::from_secs(120)), &hb(1)), T0, |e| {
            matches!(e, ProtoError::FromFuture { .. })
        }),
    ];
    for (name, bytes, now, expect) in cases {
        let mut o = opener();
        let err = o.open(now, &bytes).unwrap_err();
        assert!(expect(&err), "{name}: unexpected {err:?}");
        assert!(!err.to_string().is_empty());
        assert_eq!(o.remembered(), 0, "{name}: a rejected message was remembered");
    }
    // And the good one still opens afterwards on a fresh opener.
    assert!(opener().open(T0, &good).is_ok());
}

#[test]
fn replay_window_forgets_old_nonces_but_still_rejects_them() {
    let id = Identity::from_secret([3; 32]);
    let mut o = opener();
    let m = seal(&id, 1, T0, &hb(1));
    o.open(T0, &m).unwrap();
    let later = T0.plus(Duration::from_secs(120));
    o.open(later, &seal(&id, 2, later, &hb(2))).unwrap();
    assert_eq!(o.remembered(), 1, "nonce 1 should have been pruned");
    // The old message is still refused: it is now expired.
    assert!(matches!(o.open(later, &m), Err(ProtoError::Expired { .. })));
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
    let bytes = seal(&id, 1, T0, &msg);
    assert!(bytes.len() <= MAX_MESSAGE_BYTES, "{} bytes", bytes.len());
    assert_eq!(opener().open(T0, &bytes).unwrap().message, msg);
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
    let mut o = opener();
    for (nonce, (msg, kind)) in cases.into_iter().enumerate() {
        assert_eq!(msg.kind(), kind);
        assert_eq!(o.open(T0, &seal(&id, nonce as u64, T0, &msg)).unwrap().message, msg);
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
