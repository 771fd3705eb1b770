//! The settlement bench runs end to end on anvil and shows netting at work:
//! the gas per receipt falls as batches grow. (Gas is deterministic; the
//! R-PF6 figure itself comes from `dci bench settlement`, batches of 10,000.)

use dci_chain::bench::{BenchOptions, run};

#[test]
fn gas_per_receipt_falls_with_the_batch_size() {
    let opts = BenchOptions { sizes: vec![1, 100, 1_000], consumers: 10, providers: 5 };
    let r = run(&opts).unwrap();
    assert!((21_000..100_000).contains(&r.erc20_transfer_gas), "{r:?}");
    let per: Vec<u64> = r.batches.iter().map(|b| b.gas_per_receipt).collect();
    assert!(per.windows(2).all(|w| w[1] < w[0]), "{per:?}");
    assert_eq!(
        (r.gas_per_receipt_1, r.gas_per_receipt_100, r.gas_per_receipt_10000),
        (Some(per[0]), Some(per[1]), None)
    );
    // 1,000 netted receipts cost less than a tenth of one transfer each.
    assert!(per[2] * 10 < r.erc20_transfer_gas, "{r:?}");
    let json = serde_json::to_value(&r).unwrap();
    for key in ["workload", "consumers", "providers", "erc20_transfer_gas", "gas_per_receipt_10000", "batches"] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
}
