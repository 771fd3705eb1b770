//! A blocking handle on an RPC endpoint with the settler's key: a small
//! tokio runtime of its own, so the [`dci_ledger::Settlement`] methods can
//! stay synchronous.

use std::future::IntoFuture;
use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolInterface;
use alloy::transports::{RpcError, TransportErrorKind};

use crate::ChainError;
use crate::abi::DciLedger::DciLedgerErrors;

pub(crate) struct Client {
    rt: tokio::runtime::Runtime,
    pub(crate) provider: DynProvider,
    pub(crate) url: String,
    pub(crate) from: Address,
    pub(crate) confirm_timeout: Duration,
}

impl Client {
    pub(crate) fn connect(url: &str, key: &str) -> Result<Client, ChainError> {
        let signer: PrivateKeySigner = key
            .trim()
            .parse()
            .map_err(|_| ChainError::Input("expected a secp256k1 private key as 64 hex digits (0x optional)".into()))?;
        let from = signer.address();
        let parsed =
            url.parse().map_err(|e| ChainError::Input(format!("expected an http(s) RPC URL, found {url:?}: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ChainError::Process(format!("cannot start the chain client runtime: {e}")))?;
        let provider = rt.block_on(async {
            ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(parsed).erased()
        });
        Ok(Client { rt, provider, url: url.to_owned(), from, confirm_timeout: Duration::from_secs(60) })
    }

    pub(crate) fn block_on<F: IntoFuture>(&self, f: F) -> F::Output {
        self.rt.block_on(f.into_future())
    }

    pub(crate) fn chain_id(&self) -> Result<u64, ChainError> {
        self.block_on(self.provider.get_chain_id()).map_err(|e| self.rpc_error("eth_chainId", e))
    }

    /// Sends `tx`, waits for its receipt, and fails if it reverted.
    pub(crate) fn send(&self, tx: TransactionRequest, what: &str) -> Result<TransactionReceipt, ChainError> {
        let receipt =
            self.block_on(async {
                let pending = self.provider.send_transaction(tx).await.map_err(|e| self.rpc_error(what, e))?;
                pending.with_timeout(Some(self.confirm_timeout)).get_receipt().await.map_err(|e| {
                    ChainError::Unreachable { url: self.url.clone(), why: format!("waiting for {what}: {e}") }
                })
            })?;
        if !receipt.status() {
            return Err(ChainError::Refused {
                what: what.to_owned(),
                why: format!("transaction {} reverted", receipt.transaction_hash),
            });
        }
        Ok(receipt)
    }

    /// Maps a transport error: a revert becomes [`ChainError::Refused`] with
    /// the contract error decoded; anything else means the chain is unreachable.
    pub(crate) fn rpc_error(&self, what: &str, e: RpcError<TransportErrorKind>) -> ChainError {
        match e.as_error_resp() {
            Some(payload) => {
                let why = payload
                    .as_decoded_interface_error::<DciLedgerErrors>()
                    .map(|d| describe(&d))
                    .unwrap_or_else(|| payload.message.to_string());
                ChainError::Refused { what: what.to_owned(), why }
            }
            None => ChainError::Unreachable { url: self.url.clone(), why: format!("{what}: {}", with_causes(&e)) },
        }
    }

    pub(crate) fn contract_error(&self, what: &str, e: alloy::contract::Error) -> ChainError {
        match e {
            alloy::contract::Error::TransportError(t) => self.rpc_error(what, t),
            other => ChainError::Refused { what: what.to_owned(), why: other.to_string() },
        }
    }
}

/// A contract error in words; a failed call inside a batch is unwrapped.
pub(crate) fn describe(e: &DciLedgerErrors) -> String {
    match e {
        DciLedgerErrors::BatchCallFailed(f) => {
            let inner = DciLedgerErrors::abi_decode(&f.reason)
                .map(|d| describe(&d))
                .unwrap_or_else(|_| format!("undecoded revert 0x{}", hex::encode(&f.reason)));
            format!("call {} of the batch failed: {inner}", f.index)
        }
        other => format!("{other:?}"),
    }
}

/// A batch id: the hash of its calls and a nonce the settler never reuses.
pub(crate) fn batch_id(calls: &[alloy::primitives::Bytes], nonce: u64) -> B256 {
    let mut h = alloy::primitives::Keccak256::new();
    h.update(b"dci/batch/v1\0");
    h.update(nonce.to_be_bytes());
    for c in calls {
        h.update((c.len() as u64).to_be_bytes());
        h.update(c);
    }
    h.finalize()
}

/// An error with its causes (a transport error's own text is often only
/// "error sending request"; the cause says why: refused, a certificate not
/// trusted, …), and for an untrusted certificate what to do.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = s.source();
    }
    if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        text.push_str(
            " (the RPC's TLS certificate is not trusted: its issuer must be a public root or in the system's \
             trust store, or in a PEM file named by SSL_CERT_FILE)",
        );
    }
    text
}
