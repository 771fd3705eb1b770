//! Identifiers: nodes (ed25519 public keys), sessions and ledger accounts.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A node's identity: the 32 bytes of its ed25519 public key.
///
/// Containers, indexers, checkers and gateways are all nodes. A container's
/// id is its node id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// A short prefix for logs and tables (first 8 hex digits).
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A node id must be 64 hex digits.
    #[error("expected a node id of 64 hex digits, found {0:?}")]
    NodeId(String),
    /// A session id must be 32 hex digits.
    #[error("expected a session id of 32 hex digits, found {0:?}")]
    SessionId(String),
    /// An account id is 1..=96 characters of `a-z 0-9 : _ - .`.
    #[error("expected an account id of 1 to 96 characters from a-z 0-9 : _ - ., found {0:?}")]
    AccountId(String),
}

impl FromStr for NodeId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdError::NodeId(s.to_owned()))?;
        Ok(NodeId(out))
    }
}

/// A consumer session: one reservation of one container slot.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// How logs name a session: `#` and 8 hex digits of a hash of the id.
    /// A session id is the capability to watch a render session, so logs
    /// never carry it nor any part of it (R-SEC3); the same session always
    /// gets the same tag, so log lines can still be followed.
    pub fn short(&self) -> String {
        let tag = blake3::Hasher::new_derive_key("dci 2026 session id redacted for logs").update(&self.0).finalize();
        format!("#{}", hex::encode(&tag.as_bytes()[..4]))
    }

    /// The same as [`SessionId::short`], named for what it is for.
    pub fn redacted(&self) -> String {
        self.short()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Redacted like [`SessionId::short`]: `{:?}` of a record in a log line
/// must not carry the capability either.
impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.short())
    }
}

impl FromStr for SessionId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdError::SessionId(s.to_owned()))?;
        Ok(SessionId(out))
    }
}

/// A ledger account, e.g. `consumer:alice`, `node:<hex>`, `pool:mining`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    /// Validates and wraps an account name.
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 96
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b':' | b'_' | b'-' | b'.'));
        if ok { Ok(AccountId(s)) } else { Err(IdError::AccountId(s)) }
    }

    /// The account that receives a node's earnings and holds its stake.
    pub fn for_node(id: &NodeId) -> Self {
        AccountId(format!("node:{id}"))
    }

    /// The account name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        AccountId::new(s)
    }
}

impl From<AccountId> for String {
    fn from(a: AccountId) -> String {
        a.0
    }
}

impl FromStr for AccountId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountId::new(s)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let n = NodeId([7; 32]);
        assert_eq!(n.to_string().parse::<NodeId>().unwrap(), n);
        assert!("xyz".parse::<NodeId>().is_err());
        let s = SessionId([9; 16]);
        assert_eq!(s.to_string().parse::<SessionId>().unwrap(), s);
        assert!(AccountId::new("consumer:alice").is_ok());
        for bad in ["", "Alice", "a b", &"x".repeat(97)] {
            assert!(AccountId::new(bad).is_err(), "{bad:?}");
        }
    }
}
