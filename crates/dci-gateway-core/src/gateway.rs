//! The gateway core: its state, the dispatch of inputs, and the requests it
//! has in flight (answers are taken only from the node asked).

use std::collections::{BTreeMap, HashMap, HashSet};

use dci_committee::SortitionError;
use dci_ledger::{LedgerError, StakeRole};
use dci_model::{Amount, Eliminations, NodeId, SessionId, Timestamp};
use dci_proto::{Evidence, Identity, Inbound, Message, Net, Offer};
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::GatewayError;
use crate::config::{Config, Peer};
use crate::duties::Duties;
use crate::epoch::EpochClock;
use crate::io::{CallId, Command, Event, Input, LedgerCall, LedgerReply, Output, Reply, Ticket};
use crate::placement::Live;
use crate::record::SessionRecord;

/// What a request to the indexer is for.
#[derive(Clone, Debug)]
pub(crate) enum Asking {
    /// A placement's match (`placement` is the reservation's key).
    Match { session: SessionId, placement: SessionId },
    /// A consumer's offers query.
    Offers { call: CallId },
    /// A consumer's containers query.
    Containers { call: CallId },
    /// The epoch clock's sample of the network (its `sample`-th of the
    /// epoch), page after page.
    Sample { epoch: u64, sample: u32 },
}

/// A request in flight: who must answer, by when, and what for.
#[derive(Clone, Debug)]
pub(crate) struct Asked {
    pub to: NodeId,
    pub deadline: Timestamp,
    pub what: Asking,
}

/// What a ledger call in flight is for.
#[derive(Clone, Debug)]
pub(crate) enum Waiting {
    /// A session's lock or close batch (its phase names the ticket).
    Session(SessionId),
    /// The checkers' stakes, to open `epoch`'s sortition.
    EpochStakes { epoch: u64, nodes: Vec<NodeId> },
    /// A container's stake, to propose a penalty for `evidence`.
    EvidenceStake { reporter: NodeId, evidence: Box<Evidence> },
    /// A slash that reached its quorum.
    Slash { evidence_hash: [u8; 32] },
    /// An epoch's committee going on chain.
    Publish { epoch: u64 },
    /// An indexer asked what a registrant bonded.
    StakeQuery { request_id: u64, node: NodeId, indexer: NodeId },
    /// The containers' bonds at the end of `epoch`, before its rewards.
    EpochBonds { epoch: u64, finished: Box<EpochClock>, nodes: Vec<NodeId> },
    /// The epoch's queued settlement going on chain.
    Flush,
    /// An epoch's rewards.
    Distribute { epoch: u64 },
}

/// The gateway role's core. See the crate docs.
pub struct Gateway {
    pub(crate) config: Config,
    pub(crate) identity: Identity,
    pub(crate) rng: ChaCha20Rng,
    next_request: u64,
    next_ticket: Ticket,
    /// Sessions not yet ended, by session id.
    pub(crate) sessions: BTreeMap<SessionId, Live>,
    /// Placement id → session id, for the live sessions' current placements.
    pub(crate) placements: HashMap<SessionId, SessionId>,
    pub(crate) asked: HashMap<u64, Asked>,
    pub(crate) ledger: HashMap<Ticket, Waiting>,
    pub(crate) epoch: Option<EpochClock>,
    pub(crate) duties: Option<Duties>,
    pub(crate) last_renew: Option<Timestamp>,
    /// Indexers that did not answer in time, left out until then.
    pub(crate) down: HashMap<NodeId, Timestamp>,
    /// A graceful stop of every session: the call, and the sessions it waits for.
    pub(crate) stop_all: Option<(CallId, HashSet<SessionId>)>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("id", &self.identity.id().short())
            .field("sessions", &self.sessions.len())
            .field("asked", &self.asked.len())
            .finish()
    }
}

impl Gateway {
    /// A gateway that signs acknowledgements as `identity`, with all its
    /// randomness (session and request ids) drawn from `seed`. Call
    /// [`Gateway::restore`] once before the first input.
    pub fn new(config: Config, identity: Identity, seed: [u8; 32]) -> Result<Gateway, SortitionError> {
        let duties = config.committee.as_ref().map(Duties::new).transpose()?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        let next_request = rng.random::<u32>() as u64;
        let epoch = config.epoch.map(|period| EpochClock::new(period, config.samples_per_epoch));
        Ok(Gateway {
            config,
            identity,
            rng,
            next_request,
            next_ticket: 1,
            sessions: BTreeMap::new(),
            placements: HashMap::new(),
            asked: HashMap::new(),
            ledger: HashMap::new(),
            epoch,
            duties,
            last_renew: None,
            down: HashMap::new(),
            stop_all: None,
        })
    }

    /// This gateway's node id (it acknowledges receipts with it).
    pub fn id(&self) -> NodeId {
        self.identity.id()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A live session's record (tests, diagnostics).
    pub fn session(&self, id: &SessionId) -> Option<&SessionRecord> {
        self.sessions.get(id).map(|l| &l.record)
    }

    /// Sessions not yet ended.
    pub fn live_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Requests to other nodes and ledger calls in flight (tests: a core at
    /// rest has none).
    pub fn in_flight(&self) -> (usize, usize) {
        (self.asked.len(), self.ledger.len())
    }

    /// Handles one input at `now`.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Api { call, cmd } => self.command(now, call, cmd, &mut out),
            Input::Net(inbound) => self.message(now, inbound, &mut out),
            Input::Ledger { ticket, reply } => self.ledger_reply(now, ticket, reply, &mut out),
            Input::Tick => self.tick(now, &mut out),
            Input::Unreachable { addr } => self.unreachable(now, &addr, &mut out),
            Input::Peers { indexers, checkers } => {
                // An indexer no longer listed is no longer trusted, nor
                // remembered as down.
                self.down.retain(|id, _| indexers.iter().any(|p| p.id == *id));
                self.config.indexers = indexers;
                if let Some(d) = self.duties.as_mut() {
                    d.set_checkers(checkers);
                }
            }
        }
        out
    }

    fn command(&mut self, now: Timestamp, call: CallId, cmd: Command, out: &mut Vec<Output>) {
        match cmd {
            Command::Deploy { account, request, hours } => self.deploy(now, call, account, request, hours, out),
            Command::Stop { account, session } => self.stop(now, call, &account, session, out),
            Command::RelayTarget { account, session } => {
                let result = self.relay_target(&account, session).map(Reply::Target);
                out.push(Output::Reply { call, result });
            }
            Command::ViewTarget { session } => {
                let result = self.view_target(session).map(Reply::Target);
                out.push(Output::Reply { call, result });
            }
            Command::Relayed { account, session, relayed } => {
                let result = self.relayed(now, &account, session, relayed, out).map(|_| Reply::Done);
                out.push(Output::Reply { call, result });
            }
            Command::Offers { filter, sort, limit } => {
                let key = call.to_be_bytes();
                let msg = |request_id| Message::Offers { request_id, filter, sort, limit };
                if self.ask_indexer(now, &key, &[], Asking::Offers { call }, msg, out).is_none() {
                    out.push(Output::Reply { call, result: Err(no_indexer()) });
                }
            }
            Command::Containers { after } => {
                let key = call.to_be_bytes();
                let msg = |request_id| Message::ListContainers { request_id, after };
                if self.ask_indexer(now, &key, &[], Asking::Containers { call }, msg, out).is_none() {
                    out.push(Output::Reply { call, result: Err(no_indexer()) });
                }
            }
            Command::Committee => {
                let result = match &self.duties {
                    None => Err(GatewayError::NotFound("this gateway coordinates no committee".into())),
                    Some(d) => d
                        .view()
                        .map(Reply::Committee)
                        .ok_or_else(|| GatewayError::NotFound("no committee has been selected yet".into())),
                };
                out.push(Output::Reply { call, result });
            }
            Command::StopAll => self.stop_everything(now, call, out),
        }
    }

    fn message(&mut self, now: Timestamp, Inbound { from, msg, .. }: Inbound, out: &mut Vec<Output>) {
        let kind = msg.kind();
        match msg {
            Message::Matched { request_id, offer } => self.answer(now, from, request_id, Answer::Matched(offer), out),
            Message::NoMatch { request_id, eliminations } => {
                self.answer(now, from, request_id, Answer::NoMatch(eliminations), out)
            }
            Message::OfferList { request_id, result } => {
                self.answer(now, from, request_id, Answer::Offers(result), out)
            }
            Message::Containers { request_id, containers, next } => {
                self.answer(now, from, request_id, Answer::Containers(containers, next), out)
            }
            Message::SessionStarted { session, endpoint } => self.started(now, from, session, Ok(endpoint), out),
            Message::SessionFailed { session, reason } => self.started(now, from, session, Err(reason), out),
            Message::Usage { receipt } => self.usage(now, from, receipt, out),
            Message::SessionStopped { receipt } => self.final_receipt(now, from, receipt, None, out),
            Message::SessionEnded { receipt, reason } => self.final_receipt(now, from, receipt, Some(reason), out),
            Message::EpochProof { epoch, proof } => {
                let result = match self.duties.as_mut() {
                    Some(d) => d.proof(from, epoch, &proof).map_err(|e| e.to_string()),
                    None => Err("this gateway coordinates no committee".into()),
                };
                if let Err(reason) = result {
                    reject(out, from, kind, reason);
                }
            }
            Message::Evidence(evidence) => self.handle_evidence(from, evidence, out),
            Message::StakeQuery { request_id, node } => self.stake_query(from, request_id, node, out),
            Message::CommitteeSigned { epoch, signature } => {
                let result = match self.duties.as_mut() {
                    Some(d) => d.committee_signed(from, epoch, signature),
                    None => Err("this gateway coordinates no committee".into()),
                };
                match result {
                    Ok(true) => self.publish_committee(now, true, out),
                    Ok(false) => {}
                    Err(reason) => reject(out, from, kind, reason),
                }
            }
            Message::PenaltyVote { evidence_hash, signature, chain_signature } => {
                let result = match self.duties.as_mut() {
                    Some(d) => d.vote(from, evidence_hash, signature, chain_signature),
                    None => Err("this gateway coordinates no committee".into()),
                };
                match result {
                    Ok(Some((report, committee))) => {
                        let ready = self.duties.as_mut().and_then(|d| d.ready_to_slash(report, committee));
                        if let Some((report, committee)) = ready {
                            self.slash(report, committee, out);
                        }
                    }
                    Ok(None) => {}
                    Err(reason) => reject(out, from, kind, reason),
                }
            }
            other => reject(out, from, other.kind(), "the gateway expects no such message".into()),
        }
    }

    /// An answer to a request: only from the node asked, only for a
    /// request in flight, only of the kind asked for.
    fn answer(&mut self, now: Timestamp, from: NodeId, request_id: u64, answer: Answer, out: &mut Vec<Output>) {
        let kind = answer.kind();
        let Some(asked) = self.asked.get(&request_id) else {
            return reject(out, from, kind, format!("an answer to request {request_id}, which is not in flight"));
        };
        if asked.to != from {
            return reject(
                out,
                from,
                kind,
                format!("expected the answer from {}, the node asked, found {}", asked.to.short(), from.short()),
            );
        }
        let fits = matches!(
            (&asked.what, &answer),
            (Asking::Match { .. }, Answer::Matched(_) | Answer::NoMatch(_))
                | (Asking::Offers { .. }, Answer::Offers(_))
                | (Asking::Containers { .. } | Asking::Sample { .. }, Answer::Containers(..))
        );
        if !fits {
            return reject(out, from, kind, format!("expected the answer to a {} request", asked.what.name()));
        }
        let asked = self.asked.remove(&request_id).expect("present");
        self.down.remove(&from);
        match (asked.what, answer) {
            (Asking::Match { session, placement }, Answer::Matched(offer)) => {
                if let Some(e) = self.epoch.as_mut() {
                    e.served(from);
                }
                self.matched(now, session, placement, request_id, Ok(offer), out);
            }
            (Asking::Match { session, placement }, Answer::NoMatch(el)) => {
                self.matched(now, session, placement, request_id, Err(el), out)
            }
            (Asking::Offers { call }, Answer::Offers(result)) => {
                let result = result.map(Reply::Offers).map_err(GatewayError::BadRequest);
                out.push(Output::Reply { call, result });
            }
            (Asking::Containers { call }, Answer::Containers(views, next)) => {
                out.push(Output::Reply { call, result: Ok(Reply::Containers { views, next }) });
            }
            (Asking::Sample { epoch, sample }, Answer::Containers(views, next)) => {
                self.sampled(now, epoch, sample, views, next, out)
            }
            _ => unreachable!("checked above"),
        }
    }

    /// Sends a request to the indexer that serves it (see [`Gateway::serving`])
    /// and registers it; `key` names the request for the choice. Returns
    /// its id and the indexer, or `None` when no indexer is configured.
    pub(crate) fn ask_indexer(
        &mut self,
        now: Timestamp,
        key: &[u8],
        exclude: &[NodeId],
        what: Asking,
        msg: impl FnOnce(u64) -> Message,
        out: &mut Vec<Output>,
    ) -> Option<(u64, NodeId)> {
        let peer = self.serving(now, key, exclude)?.clone();
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        let deadline = now.plus(self.config.timing.indexer_timeout);
        self.asked.insert(id, Asked { to: peer.id, deadline, what });
        out.push(Output::Net(Net::Send { addr: peer.addr, msg: msg(id) }));
        Some((id, peer.id))
    }

    /// The indexer that serves a request named `key`: rendezvous hashing
    /// over the epoch's seed among the indexers not known to be down and not
    /// in `exclude` (all of them if every one is down), so anyone who knows
    /// the seed and the set can check the choice (R-IX3).
    pub(crate) fn serving(&self, now: Timestamp, key: &[u8], exclude: &[NodeId]) -> Option<&Peer> {
        let seed = self.duties.as_ref().and_then(|d| d.current()).map_or([0; 32], |(_, c)| c.seed.0);
        let candidates: Vec<NodeId> =
            self.config.indexers.iter().map(|p| p.id).filter(|id| !exclude.contains(id)).collect();
        let up: Vec<NodeId> =
            candidates.iter().copied().filter(|id| self.down.get(id).is_none_or(|until| now >= *until)).collect();
        let set = if up.is_empty() { &candidates } else { &up };
        let chosen = dci_indexer::serving_indexer(key, &seed, set)?;
        self.config.indexers.iter().find(|p| p.id == chosen)
    }

    /// Whether an indexer not in `exclude` is live (not left out as down).
    pub(crate) fn any_up(&self, now: Timestamp, exclude: &[NodeId]) -> bool {
        self.config
            .indexers
            .iter()
            .any(|p| !exclude.contains(&p.id) && self.down.get(&p.id).is_none_or(|until| now >= *until))
    }

    /// Sends `msg` to the indexer `id` (every indexer when `None`).
    pub(crate) fn send_to_indexer(&self, id: Option<NodeId>, msg: Message, out: &mut Vec<Output>) {
        for p in self.config.indexers.iter().filter(|p| id.is_none_or(|id| p.id == id)) {
            out.push(Output::Net(Net::Send { addr: p.addr.clone(), msg: msg.clone() }));
        }
    }

    /// Asks the ledger; its answer comes back as [`Input::Ledger`].
    pub(crate) fn call_ledger(&mut self, call: LedgerCall, why: Waiting, out: &mut Vec<Output>) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.ledger.insert(ticket, why);
        out.push(Output::Ledger { ticket, call });
        ticket
    }

    /// A fresh session id.
    pub(crate) fn session_id(&mut self) -> SessionId {
        loop {
            let id = SessionId(self.rng.random());
            if !self.sessions.contains_key(&id) && !self.placements.contains_key(&id) {
                return id;
            }
        }
    }

    fn ledger_reply(&mut self, now: Timestamp, ticket: Ticket, reply: LedgerReply, out: &mut Vec<Output>) {
        let Some(why) = self.ledger.remove(&ticket) else { return };
        match (why, reply) {
            (Waiting::Session(session), LedgerReply::Applied(result)) => {
                self.session_ledger(now, session, ticket, result, out)
            }
            (Waiting::EpochStakes { epoch, nodes }, LedgerReply::Stakes(stakes)) => {
                self.open_committee(epoch, &nodes, &stakes, out)
            }
            (Waiting::EvidenceStake { reporter, evidence }, LedgerReply::Stakes(stakes)) => {
                let stake = stakes.first().copied().unwrap_or(Amount::ZERO);
                if let Some(d) = self.duties.as_mut() {
                    for (addr, msg) in d.propose(now, reporter, *evidence, stake) {
                        out.push(Output::Net(Net::Send { addr, msg }));
                    }
                }
            }
            (Waiting::Slash { evidence_hash }, LedgerReply::Applied(result)) => {
                let result = result.map_err(|e| e.to_string()).and_then(|o| match o.first() {
                    Some(dci_ledger::OpOutcome::Slashed(s)) => {
                        Ok(Amount(s.from_rewards.0 + s.from_stake.0 + s.from_unbonding.0))
                    }
                    other => Err(format!("the ledger answered {other:?}")),
                });
                if let Some(record) = self.duties.as_mut().and_then(|d| d.applied(evidence_hash, result)) {
                    out.push(Output::Event(Event::Penalty { record }));
                }
            }
            (Waiting::Publish { epoch }, LedgerReply::Applied(result)) => {
                let done = match &result {
                    Ok(_) => true,
                    Err(e) => matches!(e.clone().unbatch(), LedgerError::CommitteeEpochNotNewer { .. }),
                };
                if done {
                    out.push(Output::Event(Event::CommitteePublished { epoch, result: Ok(()) }));
                    let ready = self.duties.as_mut().map(|d| d.published(epoch)).unwrap_or_default();
                    for (report, committee) in ready {
                        self.slash(report, committee, out);
                    }
                } else {
                    let why = result.err().map(|e| e.to_string()).unwrap_or_default();
                    out.push(Output::Event(Event::CommitteePublished { epoch, result: Err(why) }));
                }
            }
            (Waiting::Flush, LedgerReply::Flushed(result)) => {
                if !matches!(result, Ok(0)) {
                    out.push(Output::Event(Event::Flushed { result: result.map_err(|e| e.to_string()) }));
                }
            }
            (Waiting::Distribute { epoch }, LedgerReply::Applied(result)) => self.distributed(epoch, result, out),
            (Waiting::StakeQuery { request_id, node, indexer }, LedgerReply::Stakes(stakes)) => {
                let bonded = stakes.first().copied().unwrap_or(Amount::ZERO);
                let minimum = self.config.min_container_stake;
                self.send_to_indexer(Some(indexer), Message::StakeOf { request_id, node, bonded, minimum }, out);
            }
            (Waiting::EpochBonds { epoch, finished, nodes }, LedgerReply::Stakes(bonds)) => {
                self.bonds_read(epoch, *finished, &nodes, &bonds, out)
            }
            (why, reply) => out.push(Output::Event(Event::LedgerFailed {
                what: format!("{why:?}"),
                error: format!("an answer of the wrong kind: {reply:?}"),
            })),
        }
    }

    /// Applies a slash that reached its quorum.
    fn slash(&mut self, report: dci_ledger::SlashReport, committee: Vec<NodeId>, out: &mut Vec<Output>) {
        let evidence_hash = report.evidence_hash;
        let op = dci_ledger::LedgerOp::Slash { report, committee };
        self.call_ledger(LedgerCall::Apply(vec![op]), Waiting::Slash { evidence_hash }, out);
    }

    /// Sends the committee being signed to the ledger, once every checker
    /// signed (`all`) or [`COMMITTEE_SIGNING`] after they were asked.
    pub(crate) fn publish_committee(&mut self, now: Timestamp, all: bool, out: &mut Vec<Output>) {
        let op = self.duties.as_mut().and_then(|d| d.publication(now, all, COMMITTEE_SIGNING));
        if let Some(op) = op {
            let epoch = match &op {
                dci_ledger::LedgerOp::SetCommittee { epoch, .. } => *epoch,
                _ => 0,
            };
            self.call_ledger(LedgerCall::Apply(vec![op]), Waiting::Publish { epoch }, out);
        }
    }

    /// The indexer asks what a registrant bonded (this gateway holds the
    /// ledger: it is the indexer's stake oracle). Only the indexer may ask,
    /// and at most [`MAX_STAKE_QUERIES`] wait for the ledger at once.
    fn stake_query(&mut self, from: NodeId, request_id: u64, node: NodeId, out: &mut Vec<Output>) {
        if !self.config.indexers.iter().any(|p| p.id == from) {
            let reason = format!("expected a stake query from an indexer of this network, found {}", from.short());
            return reject(out, from, "stake_query", reason);
        }
        let waiting = self.ledger.values().filter(|w| matches!(w, Waiting::StakeQuery { .. })).count();
        if waiting >= MAX_STAKE_QUERIES {
            let reason = format!("expected at most {MAX_STAKE_QUERIES} stake queries waiting, found more");
            return reject(out, from, "stake_query", reason);
        }
        let call = LedgerCall::Stakes { role: StakeRole::Container, nodes: vec![node] };
        self.call_ledger(call, Waiting::StakeQuery { request_id, node, indexer: from }, out);
    }

    pub(crate) fn handle_evidence(&mut self, from: NodeId, evidence: Evidence, out: &mut Vec<Output>) {
        let Some(d) = self.duties.as_mut() else {
            return reject(out, from, "evidence", "this gateway coordinates no committee".into());
        };
        match d.evidence(from, &evidence) {
            Ok(Some(container)) => {
                let call = LedgerCall::Stakes { role: StakeRole::Container, nodes: vec![container] };
                self.call_ledger(call, Waiting::EvidenceStake { reporter: from, evidence: Box::new(evidence) }, out);
            }
            Ok(None) => {}
            Err(reason) => reject(out, from, "evidence", reason),
        }
    }

    fn tick(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let mut expired: Vec<u64> = self.asked.iter().filter(|(_, a)| a.deadline <= now).map(|(id, _)| *id).collect();
        // In a fixed order, not the map's: the same inputs give the same outputs.
        expired.sort_unstable();
        let why = format!("no answer from the indexer within {} s", self.config.timing.indexer_timeout.as_secs_f64());
        for id in expired {
            self.unanswered(now, id, why.clone(), out);
        }
        self.tick_sessions(now, out);
        self.renew(now, out);
        self.tick_epoch(now, out);
        self.publish_committee(now, false, out);
    }
}

impl Gateway {
    /// Request `id` will not be answered (timed out, or its indexer cannot
    /// be reached): the indexer is left out for a while, so the next
    /// request goes to another, and the request is retried elsewhere (a
    /// match) or failed (a listing).
    fn unanswered(&mut self, now: Timestamp, id: u64, why: String, out: &mut Vec<Output>) {
        let Some(asked) = self.asked.remove(&id) else { return };
        self.down.insert(asked.to, now.plus(self.config.timing.indexer_down));
        match asked.what {
            Asking::Match { session, placement } => {
                // The indexer may have reserved a slot we never heard of.
                self.send_to_indexer(Some(asked.to), Message::Release { session: placement }, out);
                self.match_timed_out(now, session, id, asked.to, why, out);
            }
            Asking::Offers { call } | Asking::Containers { call } => {
                out.push(Output::Reply { call, result: Err(GatewayError::Unavailable(why)) })
            }
            Asking::Sample { .. } => {}
        }
    }

    /// The driver could not connect to `addr`: requests in flight to an
    /// indexer there will not be answered, so they go elsewhere now rather
    /// than after [`crate::Timing::indexer_timeout`].
    fn unreachable(&mut self, now: Timestamp, addr: &str, out: &mut Vec<Output>) {
        let Some(indexer) = self.config.indexers.iter().find(|p| p.addr == addr).map(|p| p.id) else { return };
        let mut lost: Vec<u64> = self.asked.iter().filter(|(_, a)| a.to == indexer).map(|(id, _)| *id).collect();
        lost.sort_unstable();
        for id in lost {
            self.unanswered(now, id, format!("the indexer at {addr} cannot be reached"), out);
        }
    }
}

/// An indexer's answer, once its request id is known.
pub(crate) enum Answer {
    Matched(Offer),
    NoMatch(Eliminations),
    Offers(Result<Vec<dci_proto::OfferView>, String>),
    Containers(Vec<dci_proto::ContainerView>, Option<NodeId>),
}

impl Answer {
    fn kind(&self) -> &'static str {
        match self {
            Answer::Matched(_) => "matched",
            Answer::NoMatch(_) => "no_match",
            Answer::Offers(_) => "offer_list",
            Answer::Containers(..) => "containers",
        }
    }
}

impl Asking {
    fn name(&self) -> &'static str {
        match self {
            Asking::Match { .. } => "match",
            Asking::Offers { .. } => "offers",
            Asking::Containers { .. } | Asking::Sample { .. } => "list-containers",
        }
    }
}

/// How long the checkers have to sign a committee before it is sent to
/// the chain with the signatures that came.
pub const COMMITTEE_SIGNING: std::time::Duration = std::time::Duration::from_secs(10);

fn no_indexer() -> GatewayError {
    GatewayError::Unavailable("this gateway knows no indexer".into())
}

/// Most stake queries waiting for the ledger at once.
pub const MAX_STAKE_QUERIES: usize = 1_000;

/// Refuses a node message: nothing changed.
pub(crate) fn reject(out: &mut Vec<Output>, from: NodeId, kind: &'static str, reason: String) {
    out.push(Output::Rejected { from, kind, reason });
}

/// Whether a failed batch failed because its first op had already been
/// applied (a settle or refund that a crash interrupted before its result
/// was recorded): the batch is atomic, so all of it was.
pub(crate) fn already_applied(e: &LedgerError) -> bool {
    let first = match e {
        LedgerError::Batch { index: 0, source, .. } => source.as_ref(),
        LedgerError::Batch { .. } => return false,
        other => other,
    };
    matches!(first, LedgerError::AlreadySettled(_) | LedgerError::AlreadyRefunded(_))
}
