//! The epoch clock of the gateway that holds the ledger (R-LG3, R-CK7).
//!
//! At each epoch's start it opens the committee sortition (the checkers'
//! stakes are read from the ledger, then every staked checker is asked for
//! its VRF proof); after the first sampling interval the committee is
//! selected and announced to the indexer. During the epoch the clock samples
//! the indexer's view of the containers (`ListContainers`, answered only by
//! the indexer asked) and counts the matches each indexer served to this
//! gateway. At the end it asks the ledger to send queued settlement to the
//! chain, then to release the epoch's rewards, shared by
//!
//! - containers: verified capacity × uptime. The capacity is what the
//!   container's latest passed proof verified (`ContainerView::verified`,
//!   vouched for by the checker: `dci_capacity::verified_units`), never
//!   what it claims; a container with none earns nothing, and a simulated
//!   GPU earns only on a dev network (`Config::dev_network`), and only
//!   while its account has the minimum container stake bonded (read at the
//!   epoch's end). Uptime is the share of samples in which it was
//!   schedulable with a fresh heartbeat;
//! - checkers: the inspections whose verdicts the indexer accepted in the epoch;
//! - indexers: the matches they served, counted only for requests this
//!   gateway sent to them and that they answered.
//!
//! The arithmetic and the explanation of every account's share belong to the
//! ledger (`dci_ledger::rewards`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dci_ledger::{CheckerWork, ContainerWork, EpochInput, IndexerWork, LedgerError, LedgerOp, OpOutcome, StakeRole};
use dci_model::{AccountId, Amount, NodeId, State, Timestamp};
use dci_proto::{ContainerView, Message, Net};

use crate::gateway::{Asking, Gateway, Waiting};
use crate::io::{Event, LedgerCall, Output};

/// A heartbeat is fresh for this long (three intervals, as the indexer judges).
const FRESH_MS: u64 = 3_000;

#[derive(Clone, Debug, Default)]
struct Tally {
    account: Option<AccountId>,
    capacity: u64,
    up: u64,
    samples: u64,
}

/// The epoch being measured.
#[derive(Clone, Debug)]
pub(crate) struct EpochClock {
    period: Duration,
    samples: u32,
    /// The epoch being measured (`None` until [`Gateway::restore`]).
    epoch: Option<u64>,
    started: Timestamp,
    asked: u32,
    answered: u32,
    tally: BTreeMap<NodeId, Tally>,
    /// (checker, container, when) of every verdict accepted in the epoch.
    inspections: BTreeSet<(NodeId, NodeId, u64)>,
    served: BTreeMap<NodeId, u64>,
}

impl EpochClock {
    pub(crate) fn new(period: Duration, samples: u32) -> EpochClock {
        EpochClock {
            period,
            samples: samples.max(1),
            epoch: None,
            started: Timestamp(0),
            asked: 0,
            answered: 0,
            tally: BTreeMap::new(),
            inspections: BTreeSet::new(),
            served: BTreeMap::new(),
        }
    }

    /// A match `indexer` served to this gateway.
    pub(crate) fn served(&mut self, indexer: NodeId) {
        *self.served.entry(indexer).or_default() += 1;
    }

    fn begin(&mut self, epoch: u64, now: Timestamp) {
        *self = EpochClock { epoch: Some(epoch), started: now, ..EpochClock::new(self.period, self.samples) };
    }

    fn input(&self) -> EpochInput {
        let containers = self
            .tally
            .values()
            .filter(|t| t.samples > 0 && t.up > 0 && t.capacity > 0)
            .filter_map(|t| {
                Some(ContainerWork {
                    account: t.account.clone()?,
                    capacity_units: t.capacity,
                    uptime_ppm: (t.up * 1_000_000 / t.samples) as u32,
                })
            })
            .collect();
        let mut per_checker: BTreeMap<NodeId, u64> = BTreeMap::new();
        for (checker, _, _) in &self.inspections {
            *per_checker.entry(*checker).or_default() += 1;
        }
        let checkers = per_checker
            .into_iter()
            .map(|(id, n)| CheckerWork { account: AccountId::for_node(&id), correct_inspections: n })
            .collect();
        let indexers = self
            .served
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(id, n)| IndexerWork { account: AccountId::for_node(id), served_matches: *n })
            .collect();
        EpochInput { containers, checkers, indexers }
    }
}

impl Gateway {
    /// Starts measuring `epoch` at `now` and opens its committee sortition.
    pub(crate) fn begin_epoch(&mut self, now: Timestamp, epoch: u64, out: &mut Vec<Output>) {
        let Some(clock) = self.epoch.as_mut() else { return };
        clock.begin(epoch, now);
        self.ask_checker_stakes(epoch, out);
    }

    /// Reads the seated checkers' stakes, to open `epoch`'s sortition.
    fn ask_checker_stakes(&mut self, epoch: u64, out: &mut Vec<Output>) {
        if let Some(d) = &self.duties {
            let nodes = d.seats();
            self.call_ledger(
                LedgerCall::Stakes { role: StakeRole::Checker, nodes: nodes.clone() },
                Waiting::EpochStakes { epoch, nodes },
                out,
            );
        }
    }

    /// Opens `epoch` with the stakes of `nodes`; if the seats changed
    /// meanwhile (the network file), their stakes are read again first.
    pub(crate) fn open_committee(&mut self, epoch: u64, nodes: &[NodeId], stakes: &[Amount], out: &mut Vec<Output>) {
        let Some(d) = self.duties.as_mut() else { return };
        if d.seats() != nodes {
            self.ask_checker_stakes(epoch, out);
            return;
        }
        match d.open(epoch, stakes) {
            Ok(sends) => out.extend(sends.into_iter().map(|(addr, msg)| Output::Net(Net::Send { addr, msg }))),
            Err(e) => out.push(Output::Event(Event::NoCommittee { why: format!("epoch {epoch} not opened: {e}") })),
        }
    }

    fn close_committee(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let Some(d) = self.duties.as_mut() else { return };
        match d.close() {
            Ok((announcement, waiting)) => {
                let epoch = announcement.epoch;
                let members = d.current().map_or(0, |(_, c)| c.members.len());
                let sign = d.ask_signatures(now, &announcement);
                out.extend(sign.into_iter().map(|(addr, msg)| Output::Net(Net::Send { addr, msg })));
                self.send_to_indexer(None, Message::Committee(announcement), out);
                out.push(Output::Event(Event::CommitteeSelected { epoch, members }));
                for (reporter, evidence) in waiting {
                    self.handle_evidence(reporter, evidence, out);
                }
            }
            Err(e) => out.push(Output::Event(Event::NoCommittee { why: e.to_string() })),
        }
    }

    /// Samples, committee selection and the epoch's end.
    pub(crate) fn tick_epoch(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let timeout = self.config.timing.indexer_timeout;
        let Some(clock) = self.epoch.as_mut() else { return };
        let Some(epoch) = clock.epoch else { return };
        let step = clock.period / clock.samples;
        let due = clock.started.plus(step * (clock.asked + 1));
        if clock.asked < clock.samples && now >= due {
            clock.asked += 1;
            let first = clock.asked == 1;
            let sample = clock.asked;
            self.ask_sample_page(now, epoch, sample, None, out);
            if first {
                self.close_committee(now, out);
            }
            return;
        }
        let end = clock.started.plus(clock.period);
        let all_in = clock.answered >= clock.samples || now >= end.plus(timeout);
        if clock.asked >= clock.samples && now >= end && all_in {
            // Only containers with their bond in place earn: read the bonds first.
            let finished = Box::new(clock.clone());
            let nodes: Vec<NodeId> = finished.tally.keys().copied().collect();
            self.call_ledger(LedgerCall::Flush, Waiting::Flush, out);
            let call = LedgerCall::Stakes { role: StakeRole::Container, nodes: nodes.clone() };
            self.call_ledger(call, Waiting::EpochBonds { epoch, finished, nodes }, out);
            self.begin_epoch(now, epoch + 1, out);
        }
    }

    /// Asks one page of `epoch`'s `sample`-th sample (every page of a
    /// sample goes to the indexer its key names).
    fn ask_sample_page(
        &mut self,
        now: Timestamp,
        epoch: u64,
        sample: u32,
        after: Option<NodeId>,
        out: &mut Vec<Output>,
    ) {
        let key = [epoch.to_be_bytes(), u64::from(sample).to_be_bytes()].concat();
        let msg = |request_id| Message::ListContainers { request_id, after };
        self.ask_indexer(now, &key, &[], Asking::Sample { epoch, sample }, msg, out);
    }

    /// One page of the indexer's view of the containers, sampled for
    /// `epoch`; the sample counts once its last page is in.
    pub(crate) fn sampled(
        &mut self,
        now: Timestamp,
        epoch: u64,
        sample: u32,
        views: Vec<ContainerView>,
        next: Option<NodeId>,
        out: &mut Vec<Output>,
    ) {
        let dev = self.config.dev_network;
        if self.epoch.as_ref().is_none_or(|c| c.epoch != Some(epoch)) {
            return;
        }
        if next.is_some() {
            self.ask_sample_page(now, epoch, sample, next, out);
        }
        let Some(clock) = self.epoch.as_mut().filter(|c| c.epoch == Some(epoch)) else { return };
        if next.is_none() {
            clock.answered += 1;
        }
        let (from, to) = (clock.started.0, clock.started.plus(clock.period).0);
        for v in views {
            for r in v.verdicts.iter().filter(|r| r.at.0 >= from && r.at.0 < to) {
                clock.inspections.insert((r.checker, v.id, r.at.0));
            }
            let t = clock.tally.entry(v.id).or_default();
            t.account = Some(v.payout.clone());
            t.capacity = match &v.verified {
                Some(c) if dev || !c.simulated => c.units,
                _ => 0,
            };
            t.samples += 1;
            let alive = v.last_heartbeat_ago_ms.is_some_and(|ms| ms <= FRESH_MS);
            if matches!(v.state, State::Ready | State::Healthy) && alive {
                t.up += 1;
            }
        }
    }

    /// The containers' bonds at an epoch's end: those below the minimum
    /// stake earn nothing; then the epoch's rewards are asked for.
    pub(crate) fn bonds_read(
        &mut self,
        epoch: u64,
        mut finished: EpochClock,
        nodes: &[NodeId],
        bonds: &[Amount],
        out: &mut Vec<Output>,
    ) {
        let minimum = self.config.min_container_stake;
        for (node, bond) in nodes.iter().zip(bonds) {
            if *bond < minimum {
                finished.tally.remove(node);
            }
        }
        let op = LedgerOp::DistributeEpoch { epoch, input: finished.input() };
        self.call_ledger(LedgerCall::Apply(vec![op]), Waiting::Distribute { epoch }, out);
    }

    /// The ledger's answer to an epoch's distribution.
    pub(crate) fn distributed(
        &mut self,
        epoch: u64,
        result: Result<Vec<OpOutcome>, LedgerError>,
        out: &mut Vec<Output>,
    ) {
        let result = match result {
            Ok(outcomes) => match outcomes.into_iter().next() {
                Some(OpOutcome::Epoch(summary)) => Ok(summary.paid),
                other => Err(format!("the ledger answered {other:?}")),
            },
            Err(e) => {
                // Another process distributed it: measure the next one.
                if let LedgerError::EpochAlreadyDistributed(done) = e.clone().unbatch()
                    && let Some(clock) = self.epoch.as_mut()
                    && clock.epoch.is_some_and(|e| e <= done)
                {
                    clock.epoch = Some(done + 1);
                }
                Err(e.to_string())
            }
        };
        out.push(Output::Event(Event::EpochDistributed { epoch, result }));
    }
}
