//! What a run observed, and the report it gives. Everything here is
//! counted from the cores' outputs and the ledger's state; nothing is
//! decided here. The report holds no wall-clock figure, so the same seed
//! and scenario give a byte-identical JSON (the caller times the run).

use std::collections::BTreeMap;

use dci_capacity::Behaviour;
use dci_gateway_core::{Event, SessionRecord};
use dci_model::{Amount, SessionId, State};
use serde::Serialize;

use crate::scenario::Scenario;

/// The report of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Virtual time simulated, ms.
    pub simulated_ms: u64,
    /// Nodes by role.
    pub nodes: Nodes,
    /// Events the engine processed (deliveries, ticks, computations,
    /// consumers' arrivals…).
    pub events: u64,
    /// Messages sent between nodes.
    pub messages: u64,
    /// Messages lost to outages (to or from a node that was out).
    pub dropped_messages: u64,
    /// Outages that began (dark, crashed, maintenance locks).
    pub outages: u64,
    /// What consumers got.
    pub sessions: Sessions,
    /// From the gateway sending `Match` to the indexer's answer arriving, ms (virtual).
    pub match_latency_ms: Percentiles,
    /// From the consumer's deploy to the session serving, ms (virtual).
    pub deploy_latency_ms: Percentiles,
    /// Per placement: the estimated RTT from the consumer to the host it
    /// got, over the best any host offering the service could give,
    /// per mille (1000: the best; measured, never used to decide).
    pub rtt_over_best_permille: Percentiles,
    /// What each role's nodes hold at the end beyond what they bonded at
    /// the start (fees, rewards, less slashes), ATH base units.
    pub earnings: BTreeMap<String, Earnings>,
    /// Inspections and what they found.
    pub inspections: Inspections,
    /// Dishonest hosts caught, honest ones penalised.
    pub fraud: Fraud,
    /// The ledger's books.
    pub supply: Supply,
    /// Epochs whose rewards were released.
    pub epochs_distributed: u64,
    /// Messages the cores refused, by role and reason.
    pub rejected: BTreeMap<String, u64>,
    /// `Indexer::check_invariants` failures (debug builds check after every step).
    pub index_violations: Vec<String>,
}

/// Nodes by role.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Nodes {
    /// Gateways.
    pub gateways: usize,
    /// Indexers.
    pub indexers: usize,
    /// Checkers.
    pub checkers: usize,
    /// Container hosts.
    pub hosts: usize,
}

/// Sessions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sessions {
    /// Deploys consumers asked for.
    pub asked: u64,
    /// Deploys that served.
    pub deployed: u64,
    /// Deploys refused, by the kind of reason.
    pub failed: BTreeMap<String, u64>,
    /// Stops the users asked for that the gateway carried out.
    pub stopped: u64,
    /// Stops refused (the session had ended already).
    pub stop_refused: u64,
    /// Sessions that ended and were settled.
    pub ended: u64,
    /// Sessions that moved to another container.
    pub failovers: u64,
    /// Sessions still running at the end.
    pub running_at_end: u64,
    /// What the ended sessions charged their consumers, ATH base units.
    pub settled_paid: String,
}

/// Nearest-rank percentiles.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: Option<u64>,
    /// 99th percentile.
    pub p99: Option<u64>,
    /// Largest.
    pub max: Option<u64>,
}

impl Percentiles {
    /// Of these samples.
    pub fn of(mut v: Vec<u64>) -> Percentiles {
        v.sort_unstable();
        let rank = |p: usize| (!v.is_empty()).then(|| v[(v.len() * p).div_ceil(100).max(1) - 1]);
        Percentiles { count: v.len(), p50: rank(50), p99: rank(99), max: v.last().copied() }
    }
}

/// One role's earnings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Earnings {
    /// Nodes.
    pub nodes: usize,
    /// Sum, base units (negative: slashes exceeded earnings).
    pub total: String,
    /// Smallest, median, largest, base units.
    pub min: String,
    /// Median.
    pub p50: String,
    /// Largest.
    pub max: String,
    /// Gini coefficient of the earnings (negative ones counted as 0), per mille.
    pub gini_permille: u64,
}

impl Earnings {
    /// Of these per-node earnings.
    pub fn of(mut v: Vec<i128>) -> Earnings {
        v.sort_unstable();
        let at = |i: usize| v.get(i).map_or("0".to_owned(), |x| x.to_string());
        let pos: Vec<u128> = v.iter().map(|&x| x.max(0) as u128).collect();
        let sum: u128 = pos.iter().sum();
        // Gini over sorted values: sum_i (2i - n - 1) x_i / (n * sum).
        let n = pos.len() as i128;
        let gini_permille = if sum == 0 || n == 0 {
            0
        } else {
            let num: i128 = pos.iter().enumerate().map(|(i, &x)| (2 * (i as i128 + 1) - n - 1) * x as i128).sum();
            (num * 1000 / (n * sum as i128)).max(0) as u64
        };
        Earnings {
            nodes: v.len(),
            total: v.iter().sum::<i128>().to_string(),
            min: at(0),
            p50: at(v.len().saturating_sub(1) / 2),
            max: at(v.len().saturating_sub(1)),
            gini_permille,
        }
    }
}

/// Inspections.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inspections {
    /// Verdicts that passed.
    pub passed: u64,
    /// Verdicts that failed, by the first word of the reason.
    pub failed: BTreeMap<String, u64>,
    /// In-service evaluations asked (none run here: answered as failed to run).
    pub evaluations: u64,
    /// Challenge computations that failed.
    pub compute_errors: u64,
    /// Lifecycle changes hosts were told of.
    pub transitions: u64,
}

/// Fraud caught and false penalties.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fraud {
    /// Honest hosts.
    pub honest_hosts: u64,
    /// Dishonest hosts.
    pub dishonest_hosts: u64,
    /// Dishonest hosts slashed by the committee, or out of the market at
    /// the end (no indexer would schedule them).
    pub caught: u64,
    /// `caught` as a share of `dishonest_hosts`, percent (two decimals).
    pub caught_pct: String,
    /// Per behaviour: hosts, slashed, out of market.
    pub by_behaviour: BTreeMap<String, BehaviourOutcome>,
    /// From the start to each caught host's first failed verdict, ms.
    pub time_to_first_failure_ms: Percentiles,
    /// Honest hosts slashed (must be 0).
    pub false_slashes: u64,
    /// Honest hosts out of the market at the end.
    pub honest_out_of_market: u64,
    /// Failed verdicts about honest hosts.
    pub honest_failed_verdicts: u64,
    /// Penalties the committee decided, by outcome.
    pub penalties: BTreeMap<String, u64>,
    /// Penalties taken without a quorum of signatures (must be empty).
    pub penalty_violations: Vec<String>,
}

/// What happened to the hosts of one behaviour.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BehaviourOutcome {
    /// Hosts.
    pub hosts: u64,
    /// Slashed.
    pub slashed: u64,
    /// Out of the market at the end.
    pub out_of_market: u64,
}

/// The supply invariant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Supply {
    /// Times checked (after every ledger batch, every simulated minute, at the end).
    pub checks: u64,
    /// Violations found (must be empty).
    pub violations: Vec<String>,
    /// The total supply at the end, ATH base units (`None`: the check failed).
    pub total: Option<String>,
}

/// The network's state at the end, by node index.
pub(crate) struct End<'a> {
    /// Each host's states at the indexers that know it (`None`: not a host).
    pub states: Vec<Option<Vec<State>>>,
    /// Whether each node was slashed.
    pub slashed: Vec<bool>,
    /// The total supply, if the books add up.
    pub supply: Option<Amount>,
    /// The gateway's session records.
    pub sessions: &'a BTreeMap<SessionId, SessionRecord>,
    /// Each node's earnings, by role.
    pub earnings: BTreeMap<String, Vec<i128>>,
}

/// What the engine counts as it runs.
pub(crate) struct Collector {
    seed: u64,
    pub events: u64,
    pub messages: u64,
    pub undeliverable: u64,
    pub dropped: u64,
    pub outages: u64,
    pub deploys_asked: u64,
    pub deployed: u64,
    pub deploy_failures: BTreeMap<String, u64>,
    pub stopped: u64,
    pub stop_refused: u64,
    pub ended: u64,
    pub failovers: u64,
    pub match_latency: Vec<u64>,
    pub deploy_latency: Vec<u64>,
    pub rtt_ratio: Vec<u64>,
    pub passed: u64,
    pub failed: BTreeMap<String, u64>,
    /// First failed verdict per host node, ms.
    first_failure: BTreeMap<usize, u64>,
    honest_failed: u64,
    pub evaluations: u64,
    pub compute_errors: u64,
    pub transitions: u64,
    pub registrations_refused: u64,
    pub pruned: u64,
    pub penalties: BTreeMap<String, u64>,
    pub epochs: u64,
    rejected: BTreeMap<String, u64>,
    pub supply_checks: u64,
    pub supply_violations: Vec<String>,
    pub index_violations: Vec<String>,
    penalty_violations: Vec<String>,
    /// Each host node's behaviour.
    behaviours: BTreeMap<usize, Behaviour>,
}

impl Collector {
    pub fn new(scenario: &Scenario, seed: u64) -> Collector {
        let first_host = 1 + scenario.indexers.len() + scenario.checkers.len();
        let mut behaviours = BTreeMap::new();
        let mut i = first_host;
        for g in &scenario.hosts {
            let b = g.behaviour().expect("validated");
            for _ in 0..g.count {
                behaviours.insert(i, b);
                i += 1;
            }
        }
        Collector {
            seed,
            events: 0,
            messages: 0,
            undeliverable: 0,
            dropped: 0,
            outages: 0,
            deploys_asked: 0,
            deployed: 0,
            deploy_failures: BTreeMap::new(),
            stopped: 0,
            stop_refused: 0,
            ended: 0,
            failovers: 0,
            match_latency: Vec::new(),
            deploy_latency: Vec::new(),
            rtt_ratio: Vec::new(),
            passed: 0,
            failed: BTreeMap::new(),
            first_failure: BTreeMap::new(),
            honest_failed: 0,
            evaluations: 0,
            compute_errors: 0,
            transitions: 0,
            registrations_refused: 0,
            pruned: 0,
            penalties: BTreeMap::new(),
            epochs: 0,
            rejected: BTreeMap::new(),
            supply_checks: 0,
            supply_violations: Vec::new(),
            index_violations: Vec::new(),
            penalty_violations: Vec::new(),
            behaviours,
        }
    }

    /// A checker's verdict about host node `host`.
    pub fn verdict(
        &mut self,
        now: u64,
        host: Option<usize>,
        meta: Option<(usize, Behaviour)>,
        passed: bool,
        reason: &str,
    ) {
        if passed {
            self.passed += 1;
            return;
        }
        // "failed: wrong_product: …" → "wrong_product".
        let kind = reason.trim_start_matches("failed:").trim().split(':').next().unwrap_or("").trim().to_owned();
        *self.failed.entry(kind).or_insert(0) += 1;
        if let (Some(h), Some((_, b))) = (host, meta) {
            if b.is_honest() {
                self.honest_failed += 1;
            }
            self.first_failure.entry(h).or_insert(now);
        }
    }

    /// A message `role` refused: counted by role and reason, with node
    /// ids and numbers left out so that alike reasons count together.
    pub fn rejected(&mut self, role: &str, reason: &str) {
        let words: Vec<&str> = reason
            .split_whitespace()
            .map(|w| if w.chars().any(|c| c.is_ascii_digit()) { "#" } else { w })
            .take(8)
            .collect();
        *self.rejected.entry(format!("{role}: {}", words.join(" "))).or_insert(0) += 1;
    }

    pub fn gateway_event(&mut self, e: &Event) {
        match e {
            Event::Placed { failovers, .. } if *failovers > 0 => self.failovers += 1,
            Event::Ended { .. } => self.ended += 1,
            Event::EpochDistributed { result: Ok(_), .. } => self.epochs += 1,
            Event::Penalty { record } => {
                let kind = record.outcome.split(':').next().unwrap_or("").trim().to_owned();
                // Every penalty taken rests on a quorum of the committee.
                if !record.taken.is_zero() && record.signers.len() < record.quorum {
                    self.penalty_violations.push(format!(
                        "{} slashed with {} signatures, quorum {}",
                        record.container.short(),
                        record.signers.len(),
                        record.quorum
                    ));
                }
                *self.penalties.entry(kind).or_insert(0) += 1;
            }
            _ => {}
        }
    }

    /// The report, from what was counted and the end state: each node's
    /// states at the indexers (hosts only), whether it was slashed.
    pub fn finish(self, scenario: &Scenario, simulated_ms: u64, end: End<'_>) -> Report {
        let End { states, slashed, supply, sessions, earnings } = end;
        let mut by_behaviour: BTreeMap<String, BehaviourOutcome> = BTreeMap::new();
        let (mut honest, mut dishonest, mut caught) = (0u64, 0u64, 0u64);
        let (mut false_slashes, mut honest_out) = (0, 0);
        let mut catch_times = Vec::new();
        for (&i, b) in &self.behaviours {
            // Out of the market: no indexer schedules it (or none knows it).
            let out = states[i].as_ref().is_none_or(|s| !s.iter().any(|st| st.is_schedulable()));
            let e = by_behaviour.entry(b.name().to_owned()).or_default();
            e.hosts += 1;
            e.slashed += u64::from(slashed[i]);
            e.out_of_market += u64::from(out);
            if b.is_honest() {
                honest += 1;
                false_slashes += u64::from(slashed[i]);
                honest_out += u64::from(out);
            } else {
                dishonest += 1;
                if slashed[i] || out {
                    caught += 1;
                    if let Some(t) = self.first_failure.get(&i) {
                        catch_times.push(*t);
                    }
                }
            }
        }
        let caught_pct = match (caught * 10_000).checked_div(dishonest) {
            None => "n/a".to_owned(),
            Some(bp) => format!("{}.{:02}", bp / 100, bp % 100),
        };
        let running = sessions.values().filter(|r| !r.status.is_terminal()).count() as u64;
        let paid: u128 = sessions.values().map(|r| r.charged.map_or(0, |a| a.0)).sum();
        Report {
            scenario: scenario.name.clone(),
            seed: self.seed,
            simulated_ms,
            nodes: Nodes {
                gateways: 1,
                indexers: scenario.indexers.len(),
                checkers: scenario.checkers.len(),
                hosts: self.behaviours.len(),
            },
            events: self.events,
            messages: self.messages,
            dropped_messages: self.dropped,
            outages: self.outages,
            sessions: Sessions {
                asked: self.deploys_asked,
                deployed: self.deployed,
                failed: self.deploy_failures,
                stopped: self.stopped,
                stop_refused: self.stop_refused,
                ended: self.ended,
                failovers: self.failovers,
                running_at_end: running,
                settled_paid: paid.to_string(),
            },
            match_latency_ms: Percentiles::of(self.match_latency),
            deploy_latency_ms: Percentiles::of(self.deploy_latency),
            rtt_over_best_permille: Percentiles::of(self.rtt_ratio),
            earnings: earnings.into_iter().map(|(role, v)| (role, Earnings::of(v))).collect(),
            inspections: Inspections {
                passed: self.passed,
                failed: self.failed,
                evaluations: self.evaluations,
                compute_errors: self.compute_errors,
                transitions: self.transitions,
            },
            fraud: Fraud {
                honest_hosts: honest,
                dishonest_hosts: dishonest,
                caught,
                caught_pct,
                by_behaviour,
                time_to_first_failure_ms: Percentiles::of(catch_times),
                false_slashes,
                honest_out_of_market: honest_out,
                honest_failed_verdicts: self.honest_failed,
                penalties: self.penalties,
                penalty_violations: self.penalty_violations,
            },
            supply: Supply {
                checks: self.supply_checks,
                violations: self.supply_violations,
                total: supply.map(|a| a.0.to_string()),
            },
            epochs_distributed: self.epochs,
            rejected: self.rejected,
            index_violations: self.index_violations,
        }
    }
}
