//! The epoch clock of a single-ledger network (R-LG3, R-CK7). At each
//! epoch's start it opens the committee sortition (the checkers answer with
//! their proofs during the first sampling interval, then the committee is
//! selected and announced: [`crate::committee`]). It samples the network
//! during the epoch and, at the epoch's end, asks the ledger to release that
//! epoch's mining rewards, shared by
//!
//! - containers: verified capacity (total GPU memory in GiB, or CPU cores for a
//!   CPU-only host) × uptime (the share of samples in which the container was
//!   schedulable with a fresh heartbeat);
//! - checkers: inspections they completed in the epoch (the verdicts the
//!   indexer accepted from each);
//! - indexers: matches they served to this gateway.
//!
//! Before the rewards, the epoch's queued settlement is flushed: on the
//! chain backend, every receipt settled in the epoch goes on chain in one
//! batch ([`crate::settlement::NodeLedger::flush`]).
//!
//! The arithmetic, and the explanation of every account's share, belong to
//! the ledger (`EmbeddedLedger::distribute_epoch`, `reward_breakdown`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dci_ledger::{CheckerWork, ContainerWork, EpochInput, IndexerWork};
use dci_model::{AccountId, NodeId, State};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::gateway::Gateway;

/// Samples taken per epoch to measure uptime.
const SAMPLES_PER_EPOCH: u32 = 20;

#[derive(Default)]
struct Tally {
    account: Option<AccountId>,
    capacity: u64,
    up: u64,
    samples: u64,
}

/// Runs epochs of `period` until `shutdown`.
pub async fn run(gateway: Arc<Gateway>, period: Duration, shutdown: CancellationToken) {
    let sample_every = period / SAMPLES_PER_EPOCH;
    loop {
        let start = clock::now();
        gateway.open_committee(gateway.next_epoch());
        let mut tally: BTreeMap<NodeId, Tally> = BTreeMap::new();
        for sample in 0..SAMPLES_PER_EPOCH {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(sample_every) => {}
            }
            if sample == 0 {
                gateway.close_committee();
            }
            let Ok(views) = gateway.container_views().await else { continue };
            let fresh = 3 * 1000; // three heartbeat intervals, as the indexer judges freshness
            for v in views {
                let t = tally.entry(v.id).or_default();
                t.account = Some(v.payout.clone());
                t.capacity = match &v.spec.gpu {
                    Some(g) => g.count as u64 * g.vram_gib as u64,
                    None => v.spec.cpu_cores as u64,
                };
                t.samples += 1;
                let alive = v.last_heartbeat_ago_ms.is_some_and(|ms| ms <= fresh);
                if matches!(v.state, State::Ready | State::Healthy) && alive {
                    t.up += 1;
                }
            }
        }
        let end = clock::now();
        // Inspections completed in this epoch, per checker, from the verdicts the indexer accepted.
        let mut inspections: BTreeMap<NodeId, u64> = BTreeMap::new();
        if let Ok(views) = gateway.container_views().await {
            for v in views.iter().flat_map(|v| v.verdicts.iter()).filter(|v| v.at >= start && v.at < end) {
                *inspections.entry(v.checker).or_default() += 1;
            }
        }
        // The epoch's settlement goes on chain (one batch) before its rewards.
        match gateway.with_ledger(|l| l.flush()) {
            Ok(0) => {}
            Ok(ops) => tracing::info!(ops, "the epoch's settlement is on chain"),
            Err(e) => tracing::warn!(error = %e, "the epoch's settlement stays queued"),
        }
        let input = epoch_input(&tally, &inspections, gateway.take_served_matches());
        match gateway.distribute_next_epoch(&input) {
            Ok((epoch, total)) => tracing::info!(epoch, released = %total, "epoch rewards distributed"),
            Err(e) => tracing::warn!(error = %e, "epoch rewards not distributed"),
        }
    }
}

fn epoch_input(
    tally: &BTreeMap<NodeId, Tally>,
    inspections: &BTreeMap<NodeId, u64>,
    served: std::collections::HashMap<NodeId, u64>,
) -> EpochInput {
    let containers = tally
        .values()
        .filter(|t| t.samples > 0 && t.up > 0)
        .filter_map(|t| {
            Some(ContainerWork {
                account: t.account.clone()?,
                capacity_units: t.capacity,
                uptime_ppm: (t.up * 1_000_000 / t.samples) as u32,
            })
        })
        .collect();
    let checkers = inspections
        .iter()
        .map(|(id, n)| CheckerWork { account: AccountId::for_node(id), correct_inspections: *n })
        .collect();
    let mut indexers: Vec<IndexerWork> = served
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(id, n)| IndexerWork { account: AccountId::for_node(&id), served_matches: n })
        .collect();
    indexers.sort_by(|a, b| a.account.cmp(&b.account));
    EpochInput { containers, checkers, indexers }
}
