//! Signed envelopes, framing, the connection preface, channel binding, and
//! the checks that open them.
//!
//! A message travels on one authenticated connection (a [`Channel`]): the
//! transport runs a Noise handshake, then each end proves its node id by
//! signing the handshake hash ([`bind_proof`]). Every envelope names its
//! network, sender, recipient and that channel's binding inside the signed
//! header, so a message signed for one node, one network or one connection
//! opens nowhere else. That is the replay protection: Noise's counters
//! refuse a replay inside a connection, the binding refuses one on any other
//! connection, before or after either end restarts, with no state to keep.

use dci_model::{NodeId, Timestamp};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::Message;

/// Protocol version spoken by this build. 6: challenges and evaluation
/// requests name their container and deadline; `ChallengeRefused`,
/// `ChallengeCancelled`; `StateChanged` names its container. 7: a verdict
/// carries the capacity its proof verified (`Verdict::capacity`). 8:
/// `StakeQuery`, `StakeOf`, `Refused` (a registration needs a bond). 9:
/// `CommitteeSign`, `CommitteeSigned` (committees on chain). 10:
/// `Unregistered` (an indexer that lost a container says so). 11: Noise
/// between nodes, a connection preface, channel binding; the signed header
/// names the network, the recipient and the channel; `ListContainers` and
/// its answer are paged.
pub const VERSION: u16 = 11;
/// Largest sealed message accepted, in bytes: room for a proof-of-capacity
/// answer at the largest challenge (n = 16384, 40 rows: about 2.9 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Largest connection preface accepted, in bytes.
pub const MAX_PREFACE_BYTES: usize = 4 << 10;
/// Bytes of the length prefix of a frame.
pub const FRAME_HEADER_LEN: usize = 4;
/// Domain separation for message signatures.
const DOMAIN: &[u8] = b"dci/msg/v2\0";
/// Domain separation for channel binding proofs.
const BIND_DOMAIN: &[u8] = b"dci/bind/v1\0";
/// What a preface carries: the transport that follows it.
const PREFACE_BODY: &[u8] = b"dci/noise/v1";

/// A node's ed25519 key pair. `Debug` shows only the public id: the secret is
/// never printed or logged (R-SEC3).
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// The identity whose secret key is `secret`.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Identity { key: SigningKey::from_bytes(&secret) }
    }

    /// The secret key bytes (to store at rest with 0600 permissions).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public node id.
    pub fn id(&self) -> NodeId {
        NodeId(self.key.verifying_key().to_bytes())
    }

    /// Signs `msg` under a domain tag.
    pub(crate) fn sign_domain(&self, domain: &[u8], msg: &[u8]) -> [u8; 64] {
        let mut buf = Vec::with_capacity(domain.len() + msg.len());
        buf.extend_from_slice(domain);
        buf.extend_from_slice(msg);
        self.key.sign(&buf).to_bytes()
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.id().short())
    }
}

pub(crate) fn verify_domain(signer: &NodeId, domain: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&signer.0) else { return false };
    let Ok(sig) = <[u8; 64]>::try_from(sig) else { return false };
    let mut buf = Vec::with_capacity(domain.len() + msg.len());
    buf.extend_from_slice(domain);
    buf.extend_from_slice(msg);
    key.verify_strict(&buf, &Signature::from_bytes(&sig)).is_ok()
}

/// Which network a message belongs to: a hash of the network's name (the
/// `name` of its network file), so a message of one network opens in no
/// other.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NetworkId(pub [u8; 32]);

impl NetworkId {
    /// The id of the network named `name`.
    pub fn of(name: &str) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"dci/network/v1\0");
        h.update(name.as_bytes());
        NetworkId(*h.finalize().as_bytes())
    }

    /// The first 4 bytes in hex, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl std::fmt::Debug for NetworkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NetworkId({})", self.short())
    }
}

/// One authenticated connection, as one of its ends sees it: the network,
/// this end's id, the other end's (proved by its [`bind_proof`]) and the
/// binding (the Noise handshake hash, unique to the connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    /// The network both ends are in.
    pub network: NetworkId,
    /// This end.
    pub local: NodeId,
    /// The other end.
    pub peer: NodeId,
    /// The connection's handshake hash.
    pub binding: [u8; 32],
}

/// The signed part of an envelope.
#[derive(Serialize, Deserialize)]
struct Header {
    version: u16,
    network: NetworkId,
    sender: NodeId,
    recipient: NodeId,
    binding: [u8; 32],
    sent_at: Timestamp,
    body: Vec<u8>,
}

/// The header of protocol versions up to 10, kept for the preface: an old
/// node decodes it and refuses it for its version, which it logs.
#[derive(Serialize, Deserialize)]
struct LegacyHeader {
    version: u16,
    sender: NodeId,
    nonce: u64,
    sent_at: Timestamp,
    body: Vec<u8>,
}

/// What travels: the signed header bytes and the signature over them.
#[derive(Serialize, Deserialize)]
struct Envelope {
    signed: Vec<u8>,
    signature: Vec<u8>,
}

/// Why a message was rejected. Every variant says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {size} bytes exceeds the limit: expected at most {max} bytes")]
    TooLarge {
        /// Size received.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Not a well-formed envelope or body.
    #[error("malformed message: expected a postcard-encoded dci envelope ({0})")]
    Malformed(String),
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {found}, expected {expected}: the peer runs another dci release")]
    Version {
        /// Version received.
        found: u16,
        /// Version spoken here.
        expected: u16,
    },
    /// Signature missing or not valid for the claimed sender.
    #[error("bad signature: expected a valid ed25519 signature by sender {0}")]
    BadSignature(String),
    /// Sealed for another network.
    #[error("message of another network: expected network {expected}, found {found}")]
    WrongNetwork {
        /// This network's id (short hex).
        expected: String,
        /// The id in the message.
        found: String,
    },
    /// Sealed for another node.
    #[error("message for another node: expected recipient {expected}, found {found}")]
    WrongRecipient {
        /// This node.
        expected: String,
        /// The recipient named.
        found: String,
    },
    /// Signed by another node than the connection's authenticated peer.
    #[error("message signed by {found} on the connection of {expected}: expected the connection's own peer")]
    WrongSender {
        /// The connection's peer.
        expected: String,
        /// The signer.
        found: String,
    },
    /// Sealed for another connection: a replay.
    #[error("message sealed for another connection (a replay): expected this connection's binding")]
    OtherChannel,
    /// Sent too long ago.
    #[error("expired message: sent at {sent_at}, now {now}: expected one at most {window_ms} ms old")]
    Expired {
        /// Claimed send time.
        sent_at: Timestamp,
        /// Receiver's clock.
        now: Timestamp,
        /// Accepted age.
        window_ms: u64,
    },
    /// Sent from too far in the future.
    #[error("message from the future: sent at {sent_at}, now {now}: expected a clock at most {window_ms} ms ahead")]
    FromFuture {
        /// Claimed send time.
        sent_at: Timestamp,
        /// Receiver's clock.
        now: Timestamp,
        /// Accepted skew.
        window_ms: u64,
    },
}

/// Seals `msg` from `id` for the peer of `channel`: serializes, stamps
/// version, network, recipient, binding and time, signs.
pub fn seal(id: &Identity, channel: &Channel, now: Timestamp, msg: &Message) -> Vec<u8> {
    let body = postcard::to_stdvec(msg).expect("messages always serialize");
    let header = Header {
        version: VERSION,
        network: channel.network,
        sender: id.id(),
        recipient: channel.peer,
        binding: channel.binding,
        sent_at: now,
        body,
    };
    let signed = postcard::to_stdvec(&header).expect("headers always serialize");
    let signature = id.sign_domain(DOMAIN, &signed).to_vec();
    postcard::to_stdvec(&Envelope { signed, signature }).expect("envelopes always serialize")
}

/// A message that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// Authenticated sender.
    pub sender: NodeId,
    /// When the sender says it sent it (within the window).
    pub sent_at: Timestamp,
    /// The message.
    pub message: Message,
}

/// Opens the messages of one [`Channel`]. Stateless: a rejection changes
/// nothing, and connections open their messages independently (no lock is
/// shared between them).
#[derive(Debug, Clone)]
pub struct Opener {
    window_ms: u64,
    channel: Channel,
}

impl Opener {
    /// An opener for messages the peer of `channel` sealed for it, at most
    /// `window` old (and at most `window` ahead of the local clock).
    pub fn new(window: Duration, channel: Channel) -> Self {
        Opener { window_ms: window.as_millis() as u64, channel }
    }

    /// Checks and decodes `bytes`, in this order: size, framing, version,
    /// signature, network, recipient, sender, binding, freshness.
    pub fn open(&self, now: Timestamp, bytes: &[u8]) -> Result<Opened, ProtoError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(ProtoError::TooLarge { size: bytes.len(), max: MAX_MESSAGE_BYTES });
        }
        let env: Envelope = postcard::from_bytes(bytes).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        version_of(&env.signed)?;
        let header: Header = postcard::from_bytes(&env.signed).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        if !verify_domain(&header.sender, DOMAIN, &env.signed, &env.signature) {
            return Err(ProtoError::BadSignature(header.sender.to_string()));
        }
        let c = &self.channel;
        if header.network != c.network {
            return Err(ProtoError::WrongNetwork { expected: c.network.short(), found: header.network.short() });
        }
        if header.recipient != c.local {
            return Err(ProtoError::WrongRecipient {
                expected: c.local.to_string(),
                found: header.recipient.to_string(),
            });
        }
        if header.sender != c.peer {
            return Err(ProtoError::WrongSender { expected: c.peer.to_string(), found: header.sender.to_string() });
        }
        if header.binding != c.binding {
            return Err(ProtoError::OtherChannel);
        }
        if header.sent_at.0.saturating_add(self.window_ms) < now.0 {
            return Err(ProtoError::Expired { sent_at: header.sent_at, now, window_ms: self.window_ms });
        }
        if header.sent_at.0 > now.0.saturating_add(self.window_ms) {
            return Err(ProtoError::FromFuture { sent_at: header.sent_at, now, window_ms: self.window_ms });
        }
        let message: Message = postcard::from_bytes(&header.body).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        Ok(Opened { sender: header.sender, sent_at: header.sent_at, message })
    }
}

/// The protocol version of a signed header, refused unless it is
/// [`VERSION`]. Every header of every version starts with it.
fn version_of(signed: &[u8]) -> Result<(), ProtoError> {
    let (found, _) = postcard::take_from_bytes::<u16>(signed).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    if found != VERSION {
        return Err(ProtoError::Version { found, expected: VERSION });
    }
    Ok(())
}

/// The first frame on every connection, from the side that dials: it names
/// this protocol version and the transport that follows. It is shaped like a
/// message of protocol 10 and earlier, so a node of an older release opens
/// it far enough to refuse it for its version, and says so in its log.
pub fn preface(sender: NodeId, now: Timestamp) -> Vec<u8> {
    let header = LegacyHeader { version: VERSION, sender, nonce: 0, sent_at: now, body: PREFACE_BODY.to_vec() };
    let signed = postcard::to_stdvec(&header).expect("headers always serialize");
    postcard::to_stdvec(&Envelope { signed, signature: Vec::new() }).expect("envelopes always serialize")
}

/// Checks a connection's first frame: a [`preface`] of this version. A
/// node of an older release sends a message of its own version first: that
/// is refused as [`ProtoError::Version`].
pub fn check_preface(bytes: &[u8]) -> Result<(), ProtoError> {
    if bytes.len() > MAX_PREFACE_BYTES {
        return Err(ProtoError::TooLarge { size: bytes.len(), max: MAX_PREFACE_BYTES });
    }
    let env: Envelope = postcard::from_bytes(bytes).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    version_of(&env.signed)?;
    match postcard::from_bytes::<LegacyHeader>(&env.signed) {
        Ok(h) if h.body == PREFACE_BODY => Ok(()),
        _ => Err(ProtoError::Malformed("expected a connection preface naming the noise transport".into())),
    }
}

/// Which end of a connection signs a binding proof (so a proof cannot be
/// reflected back to the end that made it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The end that dialled.
    Initiator,
    /// The end that accepted.
    Responder,
}

impl Side {
    fn tag(self) -> u8 {
        match self {
            Side::Initiator => b'i',
            Side::Responder => b'r',
        }
    }
}

#[derive(Serialize, Deserialize)]
struct BindProof {
    node: NodeId,
    signature: Vec<u8>,
}

fn bind_message(network: NetworkId, binding: &[u8; 32], side: Side) -> Vec<u8> {
    let mut m = Vec::with_capacity(65);
    m.extend_from_slice(&network.0);
    m.extend_from_slice(binding);
    m.push(side.tag());
    m
}

/// `id`'s proof that it is the `side` end of the connection whose handshake
/// hash is `binding`, in `network`.
pub fn bind_proof(id: &Identity, network: NetworkId, binding: &[u8; 32], side: Side) -> Vec<u8> {
    let signature = id.sign_domain(BIND_DOMAIN, &bind_message(network, binding, side)).to_vec();
    postcard::to_stdvec(&BindProof { node: id.id(), signature }).expect("proofs always serialize")
}

/// The node id a binding proof from the `side` end proves, or why it does
/// not (another network, another connection, a forged signature).
pub fn check_bind_proof(
    bytes: &[u8],
    network: NetworkId,
    binding: &[u8; 32],
    side: Side,
) -> Result<NodeId, ProtoError> {
    let proof: BindProof = postcard::from_bytes(bytes).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    if !verify_domain(&proof.node, BIND_DOMAIN, &bind_message(network, binding, side), &proof.signature) {
        return Err(ProtoError::BadSignature(format!(
            "{} (its proof of the connection, in network {})",
            proof.node,
            network.short()
        )));
    }
    Ok(proof.node)
}

/// Prefixes a sealed message with its length for a byte stream.
pub fn frame(sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + sealed.len());
    out.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
    out.extend_from_slice(sealed);
    out
}

/// The body length announced by a frame header, refused if over the limit.
pub fn frame_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, ProtoError> {
    let n = u32::from_be_bytes(header) as usize;
    if n > MAX_MESSAGE_BYTES { Err(ProtoError::TooLarge { size: n, max: MAX_MESSAGE_BYTES }) } else { Ok(n) }
}
