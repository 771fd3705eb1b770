//! The crate's invariant, enforced: `dci-sim` holds no matching,
//! verification, settlement or reward logic of its own. Its sources (code,
//! not comments) must not call the entry points of that logic nor build
//! the ledger operations that move money between parties: the cores and
//! the ledger do all of it. Setting up the network (funding and bonding
//! stakes, as the devnet does) is the only ledger write allowed here.

use std::path::Path;

/// Identifiers of matching, verification, settlement and reward logic.
const FORBIDDEN: &[(&str, &str)] = &[
    // Matching: the indexer's scan, index and policies.
    ("match_scan", "matching"),
    ("evaluate_scan", "matching"),
    (".evaluate(", "matching"),
    ("evaluate_with_stats", "matching"),
    ("balanced_score", "matching"),
    ("serving_indexer", "matching"),
    ("Policy::", "matching"),
    // Verification: the capacity proof and the checker's judgement.
    ("verify(", "verification"),
    ("verify_opening", "verification"),
    ("freivalds", "verification"),
    ("deadline_ms", "verification"),
    ("is_container_fault", "verification"),
    ("Violation", "verification"),
    ("recompute", "verification"),
    // Settlement: escrow, receipts, fees, slashing.
    ("LedgerOp::Settle", "settlement"),
    ("LedgerOp::Lock", "settlement"),
    ("LedgerOp::Refund", "settlement"),
    ("LedgerOp::Slash", "settlement"),
    ("lock_escrow", "settlement"),
    (".settle(", "settlement"),
    (".slash(", "settlement"),
    ("fee_split", "settlement"),
    ("cost_for_secs", "settlement"),
    ("receipts::check", "settlement"),
    // Rewards.
    ("DistributeEpoch", "rewards"),
    ("distribute_epoch", "rewards"),
    ("EpochInput", "rewards"),
];

#[test]
fn the_sim_crate_has_no_matching_verification_settlement_or_reward_logic() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (word, what) in FORBIDDEN {
                if code.contains(word) {
                    found.push(format!("{}:{}: {what} ({word}): {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(files >= 4, "expected the crate's sources in {}, found {files} files", src.display());
    assert!(found.is_empty(), "dci-sim must leave these to the cores and the ledger:\n{}", found.join("\n"));
}

/// The check itself can fail: a line calling the indexer's scan is caught.
#[test]
fn the_check_catches_a_forbidden_call() {
    let line = "let choice = dci_indexer::scan::match_scan(&containers, &request);";
    assert!(FORBIDDEN.iter().any(|(w, _)| line.contains(w)));
}
