//! DCI's wire format: every message between nodes, and the signed envelope
//! that carries it (R-SEC1).
//!
//! Nodes talk over authenticated connections ([`Channel`]): the dialler sends
//! a [`preface`] naming the protocol version, the two ends run a Noise
//! handshake, and each proves its node id by signing the handshake hash
//! ([`bind_proof`]). A node seals a [`Message`] with its [`Identity`] for one
//! channel; the receiver opens it with that channel's [`Opener`], which
//! checks, in this order: size, framing, protocol version, ed25519 signature,
//! network, recipient, sender, channel binding and freshness (clock window).
//! A message opens only on the connection it was sealed for, so a replay,
//! within the connection (Noise's counters) or on any other (the binding),
//! is refused with no state kept, across restarts too.
//!
//! This crate is the only one that defines bytes on the wire. It does no IO:
//! the transport (`dci-node`) moves frames, the roles handle messages.

mod committee;
mod endpoint;
mod envelope;
mod messages;
mod node_request;
mod receipt;
pub mod relay;
mod route;

pub use committee::{
    ChainDomain, CommitteeAnnouncement, CommitteeCandidate, Evidence, SortitionProof, TRANSCRIPT_DOMAIN,
    sign_transcript, transcript_bytes,
};
pub use endpoint::{EndpointError, EndpointRecord, EndpointRole, MAX_ENDPOINT_ADDR, RegistryDomain};
pub use envelope::{
    Channel, FRAME_HEADER_LEN, Identity, MAX_MESSAGE_BYTES, MAX_PREFACE_BYTES, NetworkId, Opened, Opener, ProtoError,
    Side, VERSION, bind_proof, check_bind_proof, check_preface, frame, frame_len, preface, seal,
};
pub use messages::*;
pub use node_request::{NodeStake, StakeAs};
pub use receipt::{ReceiptError, SignedReceipt, UsageReceipt};
pub use route::{ConnId, Inbound, Net, Peer};
