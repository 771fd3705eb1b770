//! Signed envelopes, framing, and the checks that open them.

use dci_model::{NodeId, Timestamp};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::Message;

/// Protocol version spoken by this build. 6: challenges and evaluation
/// requests name their container and deadline; `ChallengeRefused`,
/// `ChallengeCancelled`; `StateChanged` names its container. 7: a verdict
/// carries the capacity its proof verified (`Verdict::capacity`). 8:
/// `StakeQuery`, `StakeOf`, `Refused` (a registration needs a bond). 9:
/// `CommitteeSign`, `CommitteeSigned` (committees on chain). 10:
/// `Unregistered` (an indexer that lost a container says so).
pub const VERSION: u16 = 10;
/// Largest sealed message accepted, in bytes: room for a proof-of-capacity
/// answer at the largest challenge (n = 16384, 40 rows: about 2.9 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Bytes of the length prefix of a frame.
pub const FRAME_HEADER_LEN: usize = 4;
/// Domain separation for message signatures.
const DOMAIN: &[u8] = b"dci/msg/v1\0";

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

/// The signed part of an envelope.
#[derive(Serialize, Deserialize)]
struct Header {
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
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
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
    #[error("unsupported protocol version {found}, expected {expected}")]
    Version {
        /// Version received.
        found: u16,
        /// Version spoken here.
        expected: u16,
    },
    /// Signature missing or not valid for the claimed sender.
    #[error("bad signature: expected a valid ed25519 signature by sender {0}")]
    BadSignature(String),
    /// Sent too long ago.
    #[error("expired message: sent at {sent_at}, now {now}, window {window_ms} ms")]
    Expired {
        /// Claimed send time.
        sent_at: Timestamp,
        /// Receiver's clock.
        now: Timestamp,
        /// Accepted age.
        window_ms: u64,
    },
    /// Sent from too far in the future.
    #[error("message from the future: sent at {sent_at}, now {now}, allowed skew {window_ms} ms")]
    FromFuture {
        /// Claimed send time.
        sent_at: Timestamp,
        /// Receiver's clock.
        now: Timestamp,
        /// Accepted skew.
        window_ms: u64,
    },
    /// The same (sender, nonce) was already accepted.
    #[error("replayed message: nonce {nonce} from {sender} was already accepted")]
    Replayed {
        /// Sender.
        sender: String,
        /// Nonce seen before.
        nonce: u64,
    },
}

/// Seals `msg` from `id`: serializes, stamps version, nonce and time, signs.
/// `nonce` must be unique per sender within the freshness window (drivers use
/// a random 64-bit value).
pub fn seal(id: &Identity, nonce: u64, now: Timestamp, msg: &Message) -> Vec<u8> {
    let body = postcard::to_stdvec(msg).expect("messages always serialize");
    let header = Header { version: VERSION, sender: id.id(), nonce, sent_at: now, body };
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

/// Opens sealed messages and remembers accepted nonces to refuse replays.
///
/// Sans-IO: the caller passes `now`. Memory is bounded by the number of
/// messages accepted within one window.
#[derive(Debug)]
pub struct Opener {
    window_ms: u64,
    seen: HashMap<NodeId, HashMap<u64, Timestamp>>,
    by_time: BTreeMap<(Timestamp, NodeId, u64), ()>,
}

impl Opener {
    /// An opener accepting messages at most `window` old (and at most `window`
    /// ahead of the local clock).
    pub fn new(window: Duration) -> Self {
        Opener { window_ms: window.as_millis() as u64, seen: HashMap::new(), by_time: BTreeMap::new() }
    }

    /// Checks and decodes `bytes`. On error nothing is recorded.
    pub fn open(&mut self, now: Timestamp, bytes: &[u8]) -> Result<Opened, ProtoError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(ProtoError::TooLarge { size: bytes.len(), max: MAX_MESSAGE_BYTES });
        }
        let env: Envelope = postcard::from_bytes(bytes).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        let header: Header = postcard::from_bytes(&env.signed).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        if header.version != VERSION {
            return Err(ProtoError::Version { found: header.version, expected: VERSION });
        }
        if !verify_domain(&header.sender, DOMAIN, &env.signed, &env.signature) {
            return Err(ProtoError::BadSignature(header.sender.to_string()));
        }
        self.prune(now);
        if header.sent_at.0.saturating_add(self.window_ms) < now.0 {
            return Err(ProtoError::Expired { sent_at: header.sent_at, now, window_ms: self.window_ms });
        }
        if header.sent_at.0 > now.0.saturating_add(self.window_ms) {
            return Err(ProtoError::FromFuture { sent_at: header.sent_at, now, window_ms: self.window_ms });
        }
        if self.seen.get(&header.sender).is_some_and(|s| s.contains_key(&header.nonce)) {
            return Err(ProtoError::Replayed { sender: header.sender.to_string(), nonce: header.nonce });
        }
        let message: Message = postcard::from_bytes(&header.body).map_err(|e| ProtoError::Malformed(e.to_string()))?;
        self.seen.entry(header.sender).or_default().insert(header.nonce, header.sent_at);
        self.by_time.insert((header.sent_at, header.sender, header.nonce), ());
        Ok(Opened { sender: header.sender, sent_at: header.sent_at, message })
    }

    /// Forgets nonces whose messages could no longer pass the freshness check.
    fn prune(&mut self, now: Timestamp) {
        let horizon = Timestamp(now.0.saturating_sub(self.window_ms + 1));
        while let Some((&(t, sender, nonce), _)) = self.by_time.first_key_value() {
            if t >= horizon {
                break;
            }
            self.by_time.pop_first();
            if let Some(s) = self.seen.get_mut(&sender) {
                s.remove(&nonce);
                if s.is_empty() {
                    self.seen.remove(&sender);
                }
            }
        }
    }

    /// Nonces currently remembered (for tests and metrics).
    pub fn remembered(&self) -> usize {
        self.by_time.len()
    }
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
