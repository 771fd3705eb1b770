//! The relay's wire format (R-SC3): how a container host that nobody can
//! dial (behind a NAT) reaches the gateway's relay, proves who it is, and
//! asks for public ports. The tunnel itself (`dci-relay`) multiplexes
//! streams with yamux; this module defines only the frames before and on
//! top of it.
//!
//! The handshake, on a TCP connection the host opens to the relay:
//! 1. relay → host: [`Challenge`]: the relay's id and 32 fresh random bytes;
//! 2. host → relay: [`Hello`]: the host's id, the relay's id and nonce, the
//!    node port it held before (if any), signed with the host's node key
//!    under [`HELLO_DOMAIN`]. A hello answers one challenge only, so a
//!    copied hello is useless on any other connection (no replay), and one
//!    addressed to another relay is refused;
//! 3. relay → host: [`Welcome`] (the host's public node address, signed by
//!    the relay's key over the host and the challenge, so the host knows it
//!    reached the relay its network file names) or [`Refused`] with why.
//!
//! Then both sides speak yamux on the same connection. The first stream the
//! host opens is its control stream: [`Request`]s, each answered in order by
//! a [`Response`]. Every other stream is opened by the relay for one TCP
//! connection that arrived at a public port, and starts with [`StreamOpen`]
//! naming that port. Frames are a u32 big-endian length and postcard bytes,
//! at most [`MAX_RELAY_FRAME`].

use dci_model::NodeId;
use serde::{Deserialize, Serialize};

use crate::envelope::{Identity, verify_domain};

/// Domain tag of a host's hello signature.
pub const HELLO_DOMAIN: &[u8] = b"dci/relay-hello/v1\0";
/// Domain tag of the relay's welcome signature.
pub const WELCOME_DOMAIN: &[u8] = b"dci/relay-welcome/v1\0";
/// Largest relay frame body, in bytes (a refusal's reason included).
pub const MAX_RELAY_FRAME: usize = 4096;

/// Relay → host: prove you hold your key by signing this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The relay's node id (the gateway's).
    pub relay: NodeId,
    /// Fresh random bytes, one challenge per connection.
    pub nonce: [u8; 32],
}

/// Host → relay: who it is, signed over the challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The host's node id.
    pub node: NodeId,
    /// The relay it means (the challenge's).
    pub relay: NodeId,
    /// The challenge's nonce.
    pub nonce: [u8; 32],
    /// The public node port it held before (a reconnect keeps its address).
    pub want_node_port: Option<u16>,
    /// The host's signature under [`HELLO_DOMAIN`].
    pub signature: Vec<u8>,
}

#[derive(Serialize)]
struct HelloBody<'a> {
    node: &'a NodeId,
    relay: &'a NodeId,
    nonce: &'a [u8; 32],
    want_node_port: Option<u16>,
}

impl Hello {
    /// The hello of `identity` answering `challenge`.
    pub fn sign(identity: &Identity, challenge: &Challenge, want_node_port: Option<u16>) -> Hello {
        let node = identity.id();
        let body = HelloBody { node: &node, relay: &challenge.relay, nonce: &challenge.nonce, want_node_port };
        let signature = identity.sign_domain(HELLO_DOMAIN, &postcard::to_stdvec(&body).expect("serializes")).to_vec();
        Hello { node, relay: challenge.relay, nonce: challenge.nonce, want_node_port, signature }
    }

    /// Why this hello does not answer `challenge` with the node's own key
    /// (`None`: it does).
    pub fn check(&self, challenge: &Challenge) -> Option<&'static str> {
        if self.relay != challenge.relay {
            return Some("the hello is addressed to another relay");
        }
        if self.nonce != challenge.nonce {
            return Some("the hello answers another challenge (a replayed hello?)");
        }
        let body =
            HelloBody { node: &self.node, relay: &self.relay, nonce: &self.nonce, want_node_port: self.want_node_port };
        let bytes = postcard::to_stdvec(&body).expect("serializes");
        if !verify_domain(&self.node, HELLO_DOMAIN, &bytes, &self.signature) {
            return Some("the hello's signature is not the node's");
        }
        None
    }
}

/// Relay → host: admitted; the host's public node address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Where others reach the relay's public ports.
    pub public_host: String,
    /// The public port that forwards to the host's node listener.
    pub node_port: u16,
    /// The relay's signature under [`WELCOME_DOMAIN`] over the host, the
    /// challenge's nonce and the address.
    pub signature: Vec<u8>,
}

#[derive(Serialize)]
struct WelcomeBody<'a> {
    node: &'a NodeId,
    nonce: &'a [u8; 32],
    public_host: &'a str,
    node_port: u16,
}

impl Welcome {
    /// The relay `identity` welcomes `node`, which answered `nonce`.
    pub fn sign(identity: &Identity, node: &NodeId, nonce: &[u8; 32], public_host: String, node_port: u16) -> Welcome {
        let body = WelcomeBody { node, nonce, public_host: &public_host, node_port };
        let signature = identity.sign_domain(WELCOME_DOMAIN, &postcard::to_stdvec(&body).expect("serializes")).to_vec();
        Welcome { public_host, node_port, signature }
    }

    /// True when `relay` signed this welcome for `node` and `nonce`.
    pub fn verifies(&self, relay: &NodeId, node: &NodeId, nonce: &[u8; 32]) -> bool {
        let body = WelcomeBody { node, nonce, public_host: &self.public_host, node_port: self.node_port };
        verify_domain(relay, WELCOME_DOMAIN, &postcard::to_stdvec(&body).expect("serializes"), &self.signature)
    }
}

/// Relay → host, after a hello: admitted or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Admitted.
    Welcome(Welcome),
    /// Not admitted, and why (what was expected, what was found).
    Refused(String),
}

/// Host → relay, on the control stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A public port whose connections come to the host's `local_port`
    /// (always on the host itself: the relay only opens streams back over
    /// the asking host's own tunnel). `want`: the port it held before.
    Forward {
        /// The host's local port.
        local_port: u16,
        /// The public port it asks for, if any.
        want: Option<u16>,
    },
    /// Give back a public port it holds.
    Release {
        /// The public port.
        public_port: u16,
    },
}

/// Relay → host: the answer to one [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Connections to `public_port` now reach `local_port`.
    Forwarded {
        /// The host's local port.
        local_port: u16,
        /// The public port.
        public_port: u16,
    },
    /// The port is given back.
    Released {
        /// The public port.
        public_port: u16,
    },
    /// Refused, and why; nothing changed.
    Refused(String),
}

/// Relay → host, first on every stream the relay opens: the public port
/// the connection arrived at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOpen {
    /// The public port.
    pub public_port: u16,
}

/// Why a relay frame could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelayFrameError {
    /// The length prefix is above [`MAX_RELAY_FRAME`].
    #[error("expected a relay frame of at most {MAX_RELAY_FRAME} bytes, found one of {0}")]
    TooLong(usize),
    /// The body does not decode.
    #[error("the relay frame does not decode: {0}")]
    Decode(String),
}

/// `msg` as a frame: a u32 big-endian length, then its postcard bytes.
pub fn encode_relay<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = postcard::to_stdvec(msg).expect("relay messages serialize");
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The body length a frame's 4-byte header announces, if acceptable.
pub fn relay_frame_len(header: [u8; 4]) -> Result<usize, RelayFrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_RELAY_FRAME { Err(RelayFrameError::TooLong(len)) } else { Ok(len) }
}

/// Decodes a frame's body.
pub fn decode_relay<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RelayFrameError> {
    postcard::from_bytes(body).map_err(|e| RelayFrameError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_verifies_only_for_its_challenge_and_key() {
        let (host, relay, other) =
            (Identity::from_secret([1; 32]), Identity::from_secret([2; 32]), Identity::from_secret([3; 32]));
        let challenge = Challenge { relay: relay.id(), nonce: [9; 32] };
        let hello = Hello::sign(&host, &challenge, Some(41000));
        assert_eq!(hello.check(&challenge), None);
        let fresh = Challenge { nonce: [8; 32], ..challenge.clone() };
        assert!(hello.check(&fresh).unwrap().contains("another challenge"), "replayed on another connection");
        let elsewhere = Challenge { relay: other.id(), ..challenge.clone() };
        assert!(hello.check(&elsewhere).unwrap().contains("another relay"));
        let claimed = Hello { node: other.id(), ..hello.clone() };
        assert!(claimed.check(&challenge).unwrap().contains("signature"), "someone else's id");
        let moved = Hello { want_node_port: Some(41001), ..hello.clone() };
        assert!(moved.check(&challenge).unwrap().contains("signature"), "another port than signed");
        let w = Welcome::sign(&relay, &host.id(), &challenge.nonce, "10.0.0.1".into(), 41000);
        assert!(w.verifies(&relay.id(), &host.id(), &challenge.nonce));
        assert!(!w.verifies(&other.id(), &host.id(), &challenge.nonce), "another relay's");
        assert!(!Welcome { node_port: 41001, ..w.clone() }.verifies(&relay.id(), &host.id(), &challenge.nonce));
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let req = Request::Forward { local_port: 8080, want: None };
        let bytes = encode_relay(&req);
        let len = relay_frame_len(bytes[..4].try_into().unwrap()).unwrap();
        assert_eq!(decode_relay::<Request>(&bytes[4..4 + len]).unwrap(), req);
        assert_eq!(relay_frame_len(5000u32.to_be_bytes()), Err(RelayFrameError::TooLong(5000)));
        assert!(decode_relay::<Request>(&[0xff, 0xff]).is_err());
    }
}
