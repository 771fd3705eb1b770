//! DCI's wire format: every message between nodes, and the signed envelope
//! that carries it (R-SEC1).
//!
//! A node seals a [`Message`] with its [`Identity`] into bytes; the receiver
//! opens them with an [`Opener`], which checks, in this order: size, framing,
//! protocol version, ed25519 signature, freshness (clock window) and replay
//! (per-sender nonces seen within the window). Only a message that passes every
//! check is recorded as seen, so a rejected message changes no state.
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
    FRAME_HEADER_LEN, Identity, MAX_MESSAGE_BYTES, Opened, Opener, ProtoError, VERSION, frame, frame_len, seal,
};
pub use messages::*;
pub use node_request::{NodeStake, StakeAs};
pub use receipt::{ReceiptError, SignedReceipt, UsageReceipt};
pub use route::{ConnId, Inbound, Net, Peer};
