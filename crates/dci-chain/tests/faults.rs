//! Chain faults lose nothing: a batch whose chain stops mid-settlement is
//! applied exactly once after a restart, a batch that landed unseen is
//! reported (not repeated), a stopped or replaced chain gives a clear error.

mod common;

use std::time::Duration;

use common::*;
use dci_chain::{Anvil, AnvilOptions, DEV_KEYS, EvmLedger, tool_path};
use dci_ledger::{LedgerError, LedgerOp, OpOutcome, Settlement};
use dci_model::Amount;
use serde_json::json;

/// Funds the consumer, locks two escrows; returns the settlement batch.
fn prepare(ledger: &mut EvmLedger, c: &Cast) -> Vec<LedgerOp> {
    ledger.apply(&c.funding()).unwrap();
    ledger.apply(&[c.lock(session(1), 2), c.lock(session(2), 2)]).unwrap();
    vec![c.settle(session(1), 600), c.settle(session(2), 1_200)]
}

/// 0.6 + 1.2 ATH at the default 90% provider share.
fn paid_to_provider() -> Amount {
    Amount(Amount::ath(18).0 / 10 * 9 / 10)
}

#[test]
fn a_chain_stopped_mid_settlement_then_restarted_applies_the_batch_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("anvil-state.json");
    let opts = AnvilOptions { state: Some(state.clone()), ..AnvilOptions::default() };
    let Chain { anvil, deployment, mut ledger } = chain_with(&opts);
    let c = Cast::new();
    let batch = prepare(&mut ledger, &c);
    let before = ledger.balance(&c.container_account()).unwrap();

    // The chain accepts the transaction but stops before mining it.
    rpc(&anvil.url(), "evm_setAutomine", json!([false]));
    ledger.set_confirm_timeout(Duration::from_millis(1_500));
    let e = ledger.apply(&batch).unwrap_err();
    assert!(
        e.to_string().contains("outcome of batch") && e.to_string().contains("applied entirely or not at all"),
        "{e}"
    );
    assert!(ledger.has_pending());
    anvil.stop().unwrap();

    // While it is down: a clear error, nothing changes.
    let e = ledger.apply(&batch).unwrap_err();
    assert!(e.to_string().contains("unreachable"), "{e}");
    assert!(ledger.has_pending(), "still pending: nothing is known about the batch");

    // Restarted from its state file: the pending batch did not land; it is
    // cancelled for good and the retried batch applies once.
    let anvil = Anvil::start_with(&opts).unwrap();
    ledger.reconnect(&anvil.url(), DEV_KEYS[0]).unwrap();
    let out = ledger.apply(&batch).unwrap();
    assert!(matches!(out[0], OpOutcome::Settled(_)) && !ledger.has_pending());
    assert_eq!(ledger.balance(&c.container_account()).unwrap(), before.checked_add(paid_to_provider()).unwrap());
    let e = ledger.apply(&batch).unwrap_err();
    assert_eq!(e.unbatch(), LedgerError::AlreadySettled(session(1)));
    ledger.check_invariant().unwrap();

    // A node that restarts too (no memory of the batch) reads the same.
    let fresh = EvmLedger::connect(&anvil.url(), DEV_KEYS[0], &deployment).unwrap();
    assert_eq!(fresh.balance(&c.container_account()).unwrap(), before.checked_add(paid_to_provider()).unwrap());
}

#[test]
fn a_batch_that_landed_unseen_is_reported_not_repeated() {
    let Chain { anvil, mut ledger, .. } = chain();
    let c = Cast::new();
    let batch = prepare(&mut ledger, &c);
    let before = ledger.balance(&c.container_account()).unwrap();
    rpc(&anvil.url(), "evm_setAutomine", json!([false]));
    ledger.set_confirm_timeout(Duration::from_millis(1_500));
    assert!(ledger.apply(&batch).is_err());
    // The chain mines it after the node gave up waiting.
    rpc(&anvil.url(), "evm_mine", json!([]));
    rpc(&anvil.url(), "evm_setAutomine", json!([true]));

    // The next batch is refused and says why; the landed one is reported.
    let next = [c.lock(session(3), 1)];
    let e = ledger.apply(&next).unwrap_err();
    assert!(e.to_string().contains("did land on chain"), "{e}");
    let Some(dci_chain::Resolution::Applied { outcomes, .. }) = ledger.take_resolution() else {
        panic!("no resolution")
    };
    assert_eq!(outcomes.len(), 2);
    assert_eq!(ledger.balance(&c.container_account()).unwrap(), before.checked_add(paid_to_provider()).unwrap());
    // Resubmitting the settlement now is refused: it was paid.
    let e = ledger.apply(&batch).unwrap_err();
    assert_eq!(e.unbatch(), LedgerError::AlreadySettled(session(1)));
    ledger.apply(&next).unwrap();
    ledger.check_invariant().unwrap();
}

#[test]
fn a_stopped_or_replaced_chain_is_a_clear_error() {
    let Chain { anvil, deployment, mut ledger } = chain();
    let c = Cast::new();
    let batch = prepare(&mut ledger, &c);
    anvil.stop().unwrap();
    let e = ledger.apply(&batch).unwrap_err();
    assert!(matches!(e, LedgerError::Storage(_)) && e.to_string().contains("unreachable"), "{e}");
    assert!(!ledger.has_pending(), "refused before sending: nothing pending");

    // A new, empty chain in its place.
    let replaced = Anvil::start().unwrap();
    let e = EvmLedger::connect(&replaced.url(), DEV_KEYS[0], &deployment).unwrap_err();
    assert!(e.to_string().contains("no DciLedger contract") && e.to_string().contains("replaced"), "{e}");
    // A key that is not the settler's.
    let dep = common::deploy(&replaced.url());
    let e = EvmLedger::connect(&replaced.url(), DEV_KEYS[1], &dep).unwrap_err();
    assert!(e.to_string().contains("only the settler's key"), "{e}");
}

#[test]
fn missing_tools_say_how_to_install_them() {
    let e = tool_path("no-such-tool", "DCI_TEST_NO_SUCH_TOOL").unwrap_err();
    let m = e.to_string();
    assert!(m.contains("cargo xtask deps") && m.contains("DCI_TEST_NO_SUCH_TOOL"), "{m}");
}
