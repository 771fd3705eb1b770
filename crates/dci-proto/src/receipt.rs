//! Usage receipts: what a session used, signed by the container and
//! acknowledged by the consumer's side (R-AG4). The ledger pays only against a
//! receipt whose signatures verify.

use dci_model::{AccountId, Amount, NodeId, PricePerHour, ServiceName, SessionId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::envelope::{Identity, verify_domain};

const RECEIPT_DOMAIN: &[u8] = b"dci/receipt/v1\0";
const ACK_DOMAIN: &[u8] = b"dci/receipt-ack/v1\0";

/// Metered use of one session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReceipt {
    /// The session.
    pub session: SessionId,
    /// The container that served it.
    pub container: NodeId,
    /// Who pays.
    pub consumer: AccountId,
    /// The service.
    pub service: ServiceName,
    /// Session start.
    pub started_at: Timestamp,
    /// Session end.
    pub ended_at: Timestamp,
    /// Whole seconds served (metering is per second).
    pub seconds: u64,
    /// Agreed price.
    pub price: PricePerHour,
    /// `price * seconds / 3600`, rounded down.
    pub amount: Amount,
}

/// Why a receipt is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The container's signature does not verify.
    #[error("receipt for session {0}: the container's signature does not verify")]
    ContainerSignature(SessionId),
    /// No acknowledgement, or it does not verify.
    #[error("receipt for session {0}: expected a valid acknowledgement by the consumer's gateway")]
    Ack(SessionId),
    /// The numbers do not add up.
    #[error("receipt for session {session}: {why}")]
    Inconsistent {
        /// The session.
        session: SessionId,
        /// What is wrong.
        why: String,
    },
}

impl UsageReceipt {
    fn bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("receipts always serialize")
    }

    /// Checks the arithmetic: seconds fit the interval, amount = price × seconds.
    pub fn check(&self) -> Result<(), ReceiptError> {
        let bad = |why: String| Err(ReceiptError::Inconsistent { session: self.session, why });
        if self.ended_at < self.started_at {
            return bad(format!("ends at {} before it starts at {}", self.ended_at, self.started_at));
        }
        let span = self.ended_at.since(self.started_at).as_secs();
        if self.seconds > span {
            return bad(format!("bills {} s but the session lasted {span} s", self.seconds));
        }
        match self.price.cost_for_secs(self.seconds) {
            Ok(a) if a == self.amount => Ok(()),
            Ok(a) => bad(format!("amount {} does not equal price x seconds = {a}", self.amount)),
            Err(e) => bad(e.to_string()),
        }
    }

    /// Signs the receipt as its container.
    pub fn sign(self, container: &Identity) -> SignedReceipt {
        let container_sig = container.sign_domain(RECEIPT_DOMAIN, &self.bytes()).to_vec();
        SignedReceipt { receipt: self, container_sig, ack: None }
    }
}

/// A receipt with the container's signature and, once acknowledged, the
/// consumer-side signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// What was used.
    pub receipt: UsageReceipt,
    /// The container's signature.
    pub container_sig: Vec<u8>,
    /// The acknowledging node and its signature.
    pub ack: Option<(NodeId, Vec<u8>)>,
}

impl SignedReceipt {
    /// Acknowledges the receipt on the consumer's behalf.
    pub fn acknowledge(&mut self, by: &Identity) {
        let mut msg = self.receipt.bytes();
        msg.extend_from_slice(&self.container_sig);
        self.ack = Some((by.id(), by.sign_domain(ACK_DOMAIN, &msg).to_vec()));
    }

    /// Verifies the container signature and the arithmetic.
    pub fn verify_container(&self) -> Result<(), ReceiptError> {
        let r = &self.receipt;
        if !verify_domain(&r.container, RECEIPT_DOMAIN, &r.bytes(), &self.container_sig) {
            return Err(ReceiptError::ContainerSignature(r.session));
        }
        r.check()
    }

    /// Verifies everything, requiring the acknowledgement to be by `acker`.
    pub fn verify(&self, acker: &NodeId) -> Result<(), ReceiptError> {
        self.verify_container()?;
        let r = &self.receipt;
        let Some((by, sig)) = &self.ack else { return Err(ReceiptError::Ack(r.session)) };
        let mut msg = r.bytes();
        msg.extend_from_slice(&self.container_sig);
        if by != acker || !verify_domain(by, ACK_DOMAIN, &msg, sig) {
            return Err(ReceiptError::Ack(r.session));
        }
        Ok(())
    }
}
