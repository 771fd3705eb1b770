//! Addressing shared by every role's sans-IO core.
//!
//! A connection is a duplex byte stream carrying sealed frames. A role core
//! sees each inbound message together with the [`ConnId`] it arrived on, and
//! answers either on that same connection ([`Net::Reply`]) or by sending to a
//! node's listening address ([`Net::Send`]). The transport in `dci-node` owns
//! the sockets; the cores only name them.

use crate::Message;
use dci_model::NodeId;

/// An opaque handle to a live connection, assigned by the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A node another names in its configuration: its id (what its envelopes
/// are signed with) and where it listens (`host:port`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The node id.
    pub id: NodeId,
    /// `host:port`.
    pub addr: String,
}

/// An authenticated inbound message.
#[derive(Clone, Debug, PartialEq)]
pub struct Inbound {
    /// The connection it came on (reply here).
    pub conn: ConnId,
    /// The authenticated sender.
    pub from: NodeId,
    /// The message.
    pub msg: Message,
}

/// A message a core wants sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Net {
    /// Answer on the connection a message came from.
    Reply {
        /// The connection.
        conn: ConnId,
        /// The answer.
        msg: Message,
    },
    /// Send to a node's listening address (`host:port`).
    Send {
        /// Where.
        addr: String,
        /// What.
        msg: Message,
    },
}
