//! The checker's state machine: one proof-of-capacity inspection per
//! container in flight, from `InspectionRequest` to `Verdict`, whichever
//! indexers asked for it.

use std::collections::BTreeMap;

use dci_capacity::{RevealExt, Timing, TimingClass};
use dci_committee::CommitteeKey;
use dci_ledger::{SlashReport, StakeRole};
use dci_model::{AccountId, Amount, ContainerSpec, ServiceName};
use dci_model::{NodeId, Timestamp};
use dci_proto::{
    ChainDomain, ChallengeParams, ConnId, Evidence, Identity, Inbound, InspectionKind, InspectionRequest, Message, Net,
    Peer, Response, Reveal, SortitionProof, Verdict, VerifiedCapacity,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::config::{Config, ConfigError};

/// Everything the checker core reacts to.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// An authenticated message from another node.
    Net(Inbound),
    /// Time passed: fail inspections past their deadline. Drive it at least
    /// every second or so; deadlines are only as precise as the ticks.
    Tick,
    /// The simulated user of an in-service evaluation finished (answer to
    /// [`Output::Evaluate`]): what it measured, or why it could not run.
    Evaluated {
        /// The evaluation id.
        id: u64,
        /// The measurements, or the failure.
        result: Result<ServiceReport, String>,
    },
    /// The network changed (its file was edited): whom to trust and where
    /// to send from now on. Inspections in flight go on.
    Peers(Peers),
}

/// Whom a checker trusts and where it sends, as its network file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peers {
    /// Indexers trusted to send inspection requests; verdicts go to each
    /// one's address.
    pub indexers: Vec<Peer>,
    /// The epoch coordinator.
    pub coordinator: Option<crate::Coordinator>,
    /// Every checker's chain signer.
    pub chain_signers: std::collections::BTreeMap<dci_model::NodeId, [u8; 20]>,
}

/// What a scripted simulated user measured on a service (R-CK4).
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceReport {
    /// Frames per second received.
    pub fps: f64,
    /// 99th percentile of input-to-frame latency, ms (None: no input answered).
    pub input_to_frame_p99_ms: Option<f64>,
    /// Inputs sent.
    pub inputs: u32,
    /// Inputs whose effect arrived.
    pub answered: u32,
    /// Inputs that changed the picture.
    pub changed: u32,
    /// Why the stream stalled, if it did.
    pub stalled: Option<String>,
}

/// Everything the checker core asks its driver to do or to record.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send a message.
    Net(Net),
    /// A message was not accepted; nothing changed. For logs and metrics.
    Rejected {
        /// Its authenticated sender.
        from: NodeId,
        /// Why, in words.
        reason: String,
    },
    /// An inspection ended. The same verdict also goes to the indexer in a
    /// `Net` output; this copy is for logs and metrics.
    Verdict(Verdict),
    /// Run the scripted simulated user against `endpoint` (a running
    /// session of `service`) and answer with [`Input::Evaluated`].
    Evaluate {
        /// The evaluation id.
        id: u64,
        /// The service.
        service: ServiceName,
        /// Its endpoint URL.
        endpoint: String,
    },
}

/// Why a message was rejected (becomes `Output::Rejected::reason`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum Rejection {
    #[error("expected an inspection request from a trusted indexer, found one from {0}")]
    UntrustedIndexer(NodeId),
    #[error("expected at most {max} inspection requests waiting for another indexer's inspection, found more")]
    QueueFull { max: usize },
    #[error("expected a challenge in flight, found no challenge {0}")]
    UnknownChallenge(u64),
    #[error("expected challenge {challenge} answered by container {expected}, found a message from {found}")]
    WrongSender { challenge: u64, expected: NodeId, found: NodeId },
    #[error("expected one commitment for challenge {0}, found a second")]
    DuplicateCommitment(u64),
    #[error("expected a commitment for challenge {0} before its answer, found the answer first")]
    AnswerBeforeCommitment(u64),
    #[error(
        "expected an inspection_request, commitment, challenge_refused, answer, evaluation_ready, evaluation_failed, epoch_open, committee_sign or penalty_proposal, found {0}"
    )]
    UnexpectedMessage(&'static str),
    #[error("expected {0} from the epoch coordinator, found one from {1}")]
    NotCoordinator(&'static str, NodeId),
    #[error("refusing to vote for a penalty on {container}: {why}")]
    NoPenalty { container: NodeId, why: String },
    #[error("refusing to sign the committee of epoch {epoch}: {why}")]
    NoCommitteeSignature { epoch: u64, why: String },
}

#[derive(Clone, Debug)]
enum Phase {
    /// Challenge sent; waiting for the Merkle root. `class` is the timing
    /// class of what the container claims.
    AwaitingCommitment { params: ChallengeParams, class: TimingClass, deadline: Timestamp },
    /// Root received, vectors and rows revealed; waiting for the answer.
    AwaitingAnswer { params: ChallengeParams, root: [u8; 32], reveal: Reveal, compute_ms: u64, deadline: Timestamp },
    /// Evaluation session asked for; waiting for its endpoint.
    AwaitingService { service: ServiceName, deadline: Timestamp },
    /// The simulated user runs against the session.
    Evaluating { deadline: Timestamp },
}

/// An indexer waiting for an inspection's verdict: its request id and
/// kind, echoed in the verdict it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waiter {
    indexer: NodeId,
    request: u64,
    kind: InspectionKind,
}

#[derive(Clone, Debug)]
struct Inspection {
    /// The indexers waiting for its verdict, the one that asked first first.
    waiters: Vec<Waiter>,
    /// What is being done: a capacity challenge, or an in-service evaluation.
    kind: InspectionKind,
    /// The service an evaluation uses.
    service: Option<ServiceName>,
    container: NodeId,
    /// Where the container receives node messages.
    addr: String,
    /// What it claims (a passed proof vouches for part of it).
    spec: ContainerSpec,
    sent: Timestamp,
    phase: Phase,
}

/// Signs a slash report for a ledger on a chain: `(member's identity,
/// ledger, report) -> signature`. Pure and deterministic; the node provides
/// it (`dci_chain::slash_signature_at`), since the EVM's digest and keys
/// belong to `dci-chain`.
pub type ChainSigner = fn(&Identity, &ChainDomain, &SlashReport) -> Vec<u8>;

/// Signs "the committee of `epoch` is `members`" (their chain signer
/// addresses) for a ledger on a chain: `(identity, ledger, epoch, members)
/// -> signature`. The node provides it (`dci_chain::committee_signature_at`).
pub type CommitteeSigner = fn(&Identity, &ChainDomain, u64, &[[u8; 20]]) -> Vec<u8>;

/// The checker role's sans-IO core (SPEC §4, R-CK1 registration validation).
///
/// One inspection per container is in flight at a time, so a container
/// never juggles several challenges of one checker, however many indexers
/// ask. A request for a container already being inspected:
/// - from the only indexer waiting for it, replaces it: the replaced
///   inspection ends without a verdict and without evidence (the indexer
///   replaced it too and would refuse that verdict as stale);
/// - else, asking the same question (same address and claim, a challenge
///   for a challenge, an evaluation of the same service for an evaluation),
///   joins it: each waiting indexer gets the verdict under its own request
///   id and kind;
/// - else waits its turn (at most [`MAX_QUEUED`] requests wait), and starts
///   when the running inspection ends.
///
/// A request replaces the same indexer's earlier one, running or waiting.
/// Every other inspection ends in exactly one verdict to each waiting
/// indexer still in the network: passed, failed, or timed out.
///
/// Every inspection also frees the container: it ends with the container's
/// answer to a `Reveal`, or else the checker sends `ChallengeCancelled`
/// (a challenge) or `EvaluationDone` (an evaluation) to the registered
/// address, whatever ended it (a slow commitment, dark, a refusal, a wrong
/// node, a replacement, a judged evaluation).
///
/// A challenge and an evaluation request name the registrant and carry a
/// random id. The first answer to one (a commitment, a `ChallengeRefused`,
/// an evaluation session's start or failure) signed by another key means
/// the registered address answers with a key that is not the registrant's:
/// the inspection fails at once, `failed: wrong_node: ...`, the registrant's
/// failure alone (the node that answered is named in no verdict and no
/// evidence). The core signs only its penalty votes: the driver seals every
/// outgoing message, the verdict included, with the checker's identity.
#[derive(Debug)]
pub struct Checker {
    config: Config,
    identity: Identity,
    chain_signer: Option<ChainSigner>,
    committee_signer: Option<CommitteeSigner>,
    /// The latest epoch whose committee it signed: it never signs two
    /// committees for one epoch, nor an older one.
    signed_committee: Option<u64>,
    vrf: CommitteeKey,
    rng: ChaCha20Rng,
    inspections: BTreeMap<u64, Inspection>,
    by_container: BTreeMap<NodeId, u64>,
    /// Requests waiting for another indexer's inspection of their container
    /// to end, in arrival order; one per (container, indexer).
    queued: BTreeMap<NodeId, Vec<(NodeId, InspectionRequest)>>,
}

/// At most this many inspection requests wait for another indexer's
/// inspection of the same container (one per indexer and container, so
/// this is only reached with many indexers and containers at once).
pub const MAX_QUEUED: usize = 4096;

impl Checker {
    /// A checker with no inspection in flight. All its randomness (challenge
    /// seeds and ids, rows to open) comes from `rng_seed`: the driver passes
    /// fresh OS randomness, tests and the simulator a fixed seed. `identity`
    /// is the checker's node key: its VRF key derives from it, and it signs
    /// penalty votes (never logged).
    pub fn new(config: Config, rng_seed: [u8; 32], identity: Identity) -> Result<Self, ConfigError> {
        config.validate()?;
        let rng = ChaCha20Rng::from_seed(rng_seed);
        let vrf = CommitteeKey::from_identity(&identity);
        Ok(Checker {
            config,
            identity,
            chain_signer: None,
            committee_signer: None,
            signed_committee: None,
            vrf,
            rng,
            inspections: BTreeMap::new(),
            by_container: BTreeMap::new(),
            queued: BTreeMap::new(),
        })
    }

    /// Lets it add a chain signature to its penalty votes when a proposal
    /// names a chain ledger (the node passes `dci_chain`'s signer, so this
    /// crate knows nothing of the EVM). Without one, its votes carry only
    /// the ed25519 signature, which a chain ledger does not count.
    pub fn with_chain_signer(mut self, signer: ChainSigner) -> Self {
        self.chain_signer = Some(signer);
        self
    }

    /// Lets it sign epoch committees for a chain ledger (see
    /// [`CommitteeSigner`]). Without one it signs none.
    pub fn with_committee_signer(mut self, signer: CommitteeSigner) -> Self {
        self.committee_signer = Some(signer);
        self
    }

    /// The VRF public key to register as a committee candidate.
    pub fn vrf_public(&self) -> [u8; 32] {
        self.vrf.public()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Inspections started and not yet ended.
    pub fn in_flight(&self) -> usize {
        self.inspections.len()
    }

    /// Handles one input at time `now`.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Vec<Output> {
        match input {
            Input::Tick => self.tick(now),
            Input::Evaluated { id, result } => self.on_evaluated(now, id, result),
            Input::Peers(p) => {
                self.config.indexers = p.indexers;
                self.config.coordinator = p.coordinator;
                self.config.chain_signers = p.chain_signers;
                Vec::new()
            }
            Input::Net(Inbound { conn, from, msg }) => {
                let result = match msg {
                    Message::InspectionRequest(request) => self.on_request(now, from, request),
                    Message::Commitment { challenge, root } => self.on_commitment(now, conn, from, challenge, root),
                    Message::ChallengeRefused { challenge, reason } => self.on_refused(now, from, challenge, reason),
                    Message::Answer { response, signature } => self.on_answer(now, from, response, signature),
                    Message::EpochOpen { epoch, seed } => self.on_epoch_open(conn, from, epoch, seed),
                    Message::EvaluationReady { id, endpoint } => self.on_evaluation_ready(now, from, id, endpoint),
                    Message::EvaluationFailed { id, reason } => self.on_evaluation_failed(now, from, id, reason),
                    Message::CommitteeSign { announcement, chain } => {
                        self.on_committee_sign(conn, from, &announcement, chain)
                    }
                    Message::PenaltyProposal { epoch, amount, evidence, chain } => {
                        self.on_penalty_proposal(conn, from, epoch, amount, &evidence, chain)
                    }
                    other => Err(Rejection::UnexpectedMessage(other.kind())),
                };
                result.unwrap_or_else(|rejection| vec![Output::Rejected { from, reason: rejection.to_string() }])
            }
        }
    }

    fn on_request(
        &mut self,
        now: Timestamp,
        from: NodeId,
        request: InspectionRequest,
    ) -> Result<Vec<Output>, Rejection> {
        if !self.config.indexers.iter().any(|p| p.id == from) {
            return Err(Rejection::UntrustedIndexer(from));
        }
        // This request replaces the indexer's earlier one, waiting or running.
        if let Some(waiting) = self.queued.get_mut(&request.container) {
            waiting.retain(|(indexer, _)| *indexer != from);
            if waiting.is_empty() {
                self.queued.remove(&request.container);
            }
        }
        let mut out = Vec::new();
        if let Some(&running) = self.by_container.get(&request.container) {
            let inspection = self.inspections.get_mut(&running).expect("by_container names an inspection");
            inspection.waiters.retain(|w| w.indexer != from);
            if !inspection.waiters.is_empty() {
                if inspection.answers(&request) {
                    inspection.waiters.push(Waiter { indexer: from, request: request.id, kind: request.kind });
                    return Ok(out);
                }
                if self.queued.values().map(Vec::len).sum::<usize>() >= MAX_QUEUED {
                    return Err(Rejection::QueueFull { max: MAX_QUEUED });
                }
                self.queued.entry(request.container).or_default().push((from, request));
                return Ok(out);
            }
            // The replaced inspection ends without a verdict (its indexer
            // replaced it too) and costs the container nothing; it is told
            // to forget it.
            self.by_container.remove(&request.container);
            let old = self.inspections.remove(&running).expect("present");
            out.push(release(running, &old));
        }
        out.extend(self.start(now, from, request));
        Ok(out)
    }

    /// Starts inspecting `request.container` for `from`.
    fn start(&mut self, now: Timestamp, from: NodeId, request: InspectionRequest) -> Vec<Output> {
        let mut out = Vec::new();
        let id = self.fresh_id();
        if request.kind == InspectionKind::InService
            && let Some(service) = request.service.clone()
        {
            let start = self.deadline(self.config.evaluation.session_start_ms);
            let run = self.deadline(self.config.evaluation.run_ms);
            let phase = Phase::AwaitingService { service: service.clone(), deadline: now.plus(start) };
            self.begin(id, from, &request, now, phase);
            let deadline_ms = millis(start).saturating_add(millis(run));
            let msg = Message::EvaluationRequest { id, service, container: request.container, deadline_ms };
            out.push(Output::Net(Net::Send { addr: request.addr, msg }));
            return out;
        }
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let (class, memory) = claimed(&request.spec);
        let n = dci_capacity::size_for(memory, class).min(self.config.challenge_n);
        let window = self.deadline(dci_capacity::deadline_ms(class, n));
        let params = ChallengeParams { id, seed, n, container: request.container, deadline_ms: millis(window) };
        let deadline = now.plus(window);
        self.begin(id, from, &request, now, Phase::AwaitingCommitment { params: params.clone(), class, deadline });
        out.push(Output::Net(Net::Send { addr: request.addr, msg: Message::Challenge(params) }));
        out
    }

    /// After an inspection of `container` ended: the first request waiting
    /// for it starts, and the others join it or wait again.
    fn next_queued(&mut self, now: Timestamp, container: NodeId) -> Vec<Output> {
        let Some(waiting) = self.queued.remove(&container) else { return Vec::new() };
        let mut out = Vec::new();
        for (indexer, request) in waiting {
            // Trusted when it was queued; an indexer dropped since is not served.
            out.extend(self.on_request(now, indexer, request).unwrap_or_default());
        }
        out
    }

    /// Who sent the first answer to inspection `id` (a commitment, a
    /// refusal, an evaluation session's start or failure). The id is random
    /// and went only to the registered address, so whoever names it got it
    /// there: if that is not the registrant, the address does not answer
    /// with the registrant's key, and the inspection fails at once (the
    /// registrant's failure; the node that answered is not judged, and is
    /// told to forget the challenge). `Ok(None)`: the registrant answered.
    fn first_answer(&mut self, now: Timestamp, from: NodeId, id: u64) -> Result<Option<Vec<Output>>, Rejection> {
        let inspection = self.inspections.get(&id).ok_or(Rejection::UnknownChallenge(id))?;
        if inspection.container == from {
            return Ok(None);
        }
        if !matches!(inspection.phase, Phase::AwaitingCommitment { .. } | Phase::AwaitingService { .. }) {
            // The registrant already answered from this address: a late
            // message of another key changes nothing.
            return Err(Rejection::WrongSender { challenge: id, expected: inspection.container, found: from });
        }
        let reason = format!(
            "failed: wrong_node: the address answers with key {from}, not the registrant's {}",
            inspection.container
        );
        Ok(Some(self.finish(now, id, false, reason)))
    }

    /// The container will not compute the challenge. From another key: the
    /// registrant's address is not its own. From the registrant: it fails
    /// now rather than at the deadline.
    fn on_refused(
        &mut self,
        now: Timestamp,
        from: NodeId,
        challenge: u64,
        reason: String,
    ) -> Result<Vec<Output>, Rejection> {
        if let Some(out) = self.first_answer(now, from, challenge)? {
            return Ok(out);
        }
        match &self.inspections[&challenge].phase {
            Phase::AwaitingCommitment { .. } => {
                Ok(self.finish(now, challenge, false, format!("failed: refused: {reason}")))
            }
            _ => Err(Rejection::UnexpectedMessage("challenge_refused")),
        }
    }

    fn on_evaluation_failed(
        &mut self,
        now: Timestamp,
        from: NodeId,
        id: u64,
        reason: String,
    ) -> Result<Vec<Output>, Rejection> {
        if let Some(out) = self.first_answer(now, from, id)? {
            return Ok(out);
        }
        match &self.inspections[&id].phase {
            Phase::AwaitingService { .. } | Phase::Evaluating { .. } => {
                Ok(self.finish(now, id, false, format!("failed: no_session: {reason}")))
            }
            _ => Err(Rejection::UnexpectedMessage("evaluation_failed")),
        }
    }

    fn begin(&mut self, id: u64, from: NodeId, request: &InspectionRequest, now: Timestamp, phase: Phase) {
        let inspection = Inspection {
            waiters: vec![Waiter { indexer: from, request: request.id, kind: request.kind }],
            kind: request.kind,
            service: request.service.clone(),
            container: request.container,
            addr: request.addr.clone(),
            spec: request.spec.clone(),
            sent: now,
            phase,
        };
        self.inspections.insert(id, inspection);
        self.by_container.insert(request.container, id);
    }

    fn on_evaluation_ready(
        &mut self,
        now: Timestamp,
        from: NodeId,
        id: u64,
        endpoint: String,
    ) -> Result<Vec<Output>, Rejection> {
        if let Some(out) = self.first_answer(now, from, id)? {
            return Ok(out);
        }
        let inspection = &self.inspections[&id];
        let Phase::AwaitingService { service, .. } = &inspection.phase else {
            return Err(Rejection::UnexpectedMessage("evaluation_ready"));
        };
        let service = service.clone();
        let deadline = now.plus(self.deadline(self.config.evaluation.run_ms));
        if let Some(i) = self.inspections.get_mut(&id) {
            i.phase = Phase::Evaluating { deadline };
        }
        Ok(vec![Output::Evaluate { id, service, endpoint }])
    }

    /// Judges what the simulated user saw against the configured floor.
    fn on_evaluated(&mut self, now: Timestamp, id: u64, result: Result<ServiceReport, String>) -> Vec<Output> {
        let Some(inspection) = self.inspections.get(&id) else { return Vec::new() };
        if !matches!(inspection.phase, Phase::Evaluating { .. }) {
            return Vec::new();
        }
        let (passed, reason) = match result {
            Err(e) => (false, format!("failed: unusable: the simulated user could not use the service: {e}")),
            Ok(r) => self.config.evaluation.judge(&r),
        };
        self.finish(now, id, passed, reason)
    }

    fn on_commitment(
        &mut self,
        now: Timestamp,
        conn: ConnId,
        from: NodeId,
        challenge: u64,
        root: [u8; 32],
    ) -> Result<Vec<Output>, Rejection> {
        if let Some(out) = self.first_answer(now, from, challenge)? {
            return Ok(out);
        }
        let inspection = &self.inspections[&challenge];
        let (params, class) = match &inspection.phase {
            Phase::AwaitingCommitment { params, class, .. } => (params.clone(), *class),
            Phase::AwaitingAnswer { .. } => return Err(Rejection::DuplicateCommitment(challenge)),
            _ => return Err(Rejection::UnexpectedMessage("commitment")),
        };
        let compute_ms = millis(now.since(inspection.sent));
        let n = params.n;
        // Judged against the class it claims (with the configured floor).
        let allowed = self.deadline(dci_capacity::deadline_ms(class, n));
        if let Timing::Slow { expected_ms, .. } = dci_capacity::judge(class, n, compute_ms)
            && compute_ms > millis(allowed)
        {
            let reason = format!(
                "failed: slow: committed after {compute_ms} ms, a {class:?} needs about {expected_ms} ms for n={n} (allowed {} ms)",
                millis(allowed)
            );
            return Ok(self.finish(now, challenge, false, reason));
        }
        let reveal = Reveal::draw(&mut self.rng, &params, self.config.params);
        let deadline = now.plus(self.deadline(dci_capacity::response_deadline_ms(n, reveal.rounds)));
        if let Some(inspection) = self.inspections.get_mut(&challenge) {
            inspection.phase = Phase::AwaitingAnswer { params, root, reveal: reveal.clone(), compute_ms, deadline };
        }
        Ok(vec![Output::Net(Net::Reply { conn, msg: Message::Reveal(reveal) })])
    }

    fn on_answer(
        &mut self,
        now: Timestamp,
        from: NodeId,
        response: Response,
        signature: Vec<u8>,
    ) -> Result<Vec<Output>, Rejection> {
        let challenge = response.challenge;
        let inspection = self.expect_from(from, challenge)?;
        let Phase::AwaitingAnswer { params, root, reveal, deadline, .. } = &inspection.phase else {
            return Err(Rejection::AnswerBeforeCommitment(challenge));
        };
        if now > *deadline {
            let reason = "failed: dark: answered after the deadline".into();
            return Ok(self.finish_answered(now, challenge, false, reason));
        }
        let n = params.n;
        let evidence = Evidence {
            container: from,
            params: params.clone(),
            root: *root,
            reveal: reveal.clone(),
            response,
            signature,
        };
        if !evidence.signed_by_container() {
            let reason = "failed: bad_signature: the answer is not signed by the container over its transcript";
            return Ok(self.finish_answered(now, challenge, false, reason.into()));
        }
        let rounds = evidence.reveal.rounds;
        let opened = evidence.reveal.rows.len();
        let (passed, reason, evident) =
            match dci_capacity::verify(&evidence.params, &evidence.root, &evidence.reveal, &evidence.response) {
                Ok(()) => (
                    true,
                    format!(
                        "passed: {rounds} Freivalds rounds and {opened} opened rows of a {n}x{n} fp32 product verified"
                    ),
                    false,
                ),
                Err(e) => (false, format!("failed: {}: {e}", e.kind()), e.is_container_fault()),
            };
        let mut out = self.finish_answered(now, challenge, passed, reason);
        // A wrong answer signed by the container is evidence: the committee
        // re-verifies it and may penalize (R-CK6). Timeouts are not: nobody
        // else can check that a message did not arrive. Nor is a failure of
        // the checker's own challenge or reveal (`Violation::Setup`).
        if evident && let Some(c) = &self.config.coordinator {
            out.push(Output::Net(Net::Send { addr: c.addr.clone(), msg: Message::Evidence(evidence) }));
        }
        Ok(out)
    }

    fn coordinator(&self, what: &'static str, from: NodeId) -> Result<(), Rejection> {
        match &self.config.coordinator {
            Some(c) if c.id == from => Ok(()),
            _ => Err(Rejection::NotCoordinator(what, from)),
        }
    }

    /// A new epoch: answer with this checker's VRF proof. Every checker
    /// answers; the coordinator selects (see `dci_committee`).
    fn on_epoch_open(
        &mut self,
        conn: ConnId,
        from: NodeId,
        epoch: u64,
        seed: [u8; 32],
    ) -> Result<Vec<Output>, Rejection> {
        self.coordinator("epoch_open", from)?;
        let p = dci_committee::prove(&self.vrf, &dci_committee::EpochSeed(seed), epoch);
        let proof = SortitionProof { node: p.node, output: p.output, proof: p.proof.to_vec() };
        Ok(vec![Output::Net(Net::Reply { conn, msg: Message::EpochProof { epoch, proof } })])
    }

    /// Signs an epoch's committee for a chain ledger, only as recomputed here
    /// from the announcement's proofs, listing the members' chain signers as
    /// this checker knows them, and never twice for an epoch.
    fn on_committee_sign(
        &mut self,
        conn: ConnId,
        from: NodeId,
        announcement: &dci_proto::CommitteeAnnouncement,
        chain: ChainDomain,
    ) -> Result<Vec<Output>, Rejection> {
        self.coordinator("committee_sign", from)?;
        let refuse = |why: String| Rejection::NoCommitteeSignature { epoch: announcement.epoch, why };
        let Some(sign) = self.committee_signer else {
            return Err(refuse("it signs no committee (no chain signer)".into()));
        };
        if self.signed_committee.is_some_and(|e| e >= announcement.epoch) {
            return Err(refuse(format!("it already signed epoch {}", self.signed_committee.unwrap_or(0))));
        }
        let committee = dci_committee::recompute(announcement).map_err(|e| refuse(e.to_string()))?;
        let mut members = Vec::with_capacity(committee.members.len());
        for m in &committee.members {
            let signer = self.config.chain_signers.get(&m.id).ok_or_else(|| {
                refuse(format!("member {} has no chain signer in this checker's network file", m.id.short()))
            })?;
            members.push(*signer);
        }
        self.signed_committee = Some(announcement.epoch);
        let signature = sign(&self.identity, &chain, announcement.epoch, &members);
        Ok(vec![Output::Net(Net::Reply {
            conn,
            msg: Message::CommitteeSigned { epoch: announcement.epoch, signature },
        })])
    }

    /// Votes for a penalty only when the container signed the transcript and
    /// the failure reproduces here.
    fn on_penalty_proposal(
        &mut self,
        conn: ConnId,
        from: NodeId,
        epoch: u64,
        amount: Amount,
        evidence: &Evidence,
        chain: Option<ChainDomain>,
    ) -> Result<Vec<Output>, Rejection> {
        self.coordinator("penalty_proposal", from)?;
        let refuse = |why: String| Rejection::NoPenalty { container: evidence.container, why };
        if !evidence.signed_by_container() {
            return Err(refuse("the transcript is not signed by the container".into()));
        }
        if evidence.params.container != evidence.container {
            return Err(refuse("the challenge names another container".into()));
        }
        if evidence.reveal.challenge != evidence.params.id || evidence.response.challenge != evidence.params.id {
            return Err(refuse("the reveal or answer belongs to another challenge".into()));
        }
        match dci_capacity::verify(&evidence.params, &evidence.root, &evidence.reveal, &evidence.response) {
            Ok(()) => return Err(refuse("the answer verifies: nothing to punish".into())),
            // An invalid challenge or reveal is the checker's failure, never
            // the container's, whoever signed what.
            Err(v) if !v.is_container_fault() => {
                return Err(refuse(format!("the failure is the checker's own, not the container's: {v}")));
            }
            Err(_) => {}
        }
        let report = SlashReport {
            offender: AccountId::for_node(&evidence.container),
            role: StakeRole::Container,
            epoch,
            evidence_hash: evidence.hash(),
            amount,
            signatures: Vec::new(),
        };
        let (_, signature) = report.signature(&self.identity);
        // The report is the one this checker built from the evidence it
        // re-verified: the chain domain only says which ledger it counts on.
        let chain_signature = chain.zip(self.chain_signer).map(|(domain, sign)| sign(&self.identity, &domain, &report));
        let vote = Message::PenaltyVote { evidence_hash: report.evidence_hash, signature, chain_signature };
        Ok(vec![Output::Net(Net::Reply { conn, msg: vote })])
    }

    fn tick(&mut self, now: Timestamp) -> Vec<Output> {
        let expired: Vec<(u64, &'static str)> = self
            .inspections
            .iter()
            .filter_map(|(&id, inspection)| match inspection.phase {
                Phase::AwaitingCommitment { deadline, .. } if now > deadline => {
                    Some((id, "failed: dark: no commitment before the deadline"))
                }
                Phase::AwaitingAnswer { deadline, .. } if now > deadline => {
                    Some((id, "failed: dark: no answer to the reveal before the deadline"))
                }
                Phase::AwaitingService { deadline, .. } if now > deadline => {
                    Some((id, "failed: dark: the evaluation session did not start before the deadline"))
                }
                Phase::Evaluating { deadline } if now > deadline => {
                    Some((id, "failed: dark: the simulated user did not finish before the deadline"))
                }
                _ => None,
            })
            .collect();
        expired.into_iter().flat_map(|(id, reason)| self.finish(now, id, false, reason.into())).collect()
    }

    /// The inspection for `challenge`, if `from` is the container it was sent to.
    fn expect_from(&self, from: NodeId, challenge: u64) -> Result<&Inspection, Rejection> {
        let inspection = self.inspections.get(&challenge).ok_or(Rejection::UnknownChallenge(challenge))?;
        if inspection.container != from {
            return Err(Rejection::WrongSender { challenge, expected: inspection.container, found: from });
        }
        Ok(inspection)
    }

    /// Ends an inspection before the container's answer to a reveal: the
    /// verdict, then what frees the container of it ([`release`]).
    fn finish(&mut self, now: Timestamp, challenge: u64, passed: bool, reason: String) -> Vec<Output> {
        let release = self.inspections.get(&challenge).map(|i| release(challenge, i));
        let mut out = self.finish_answered(now, challenge, passed, reason);
        out.extend(release);
        out
    }

    /// Ends an inspection with a verdict, sent to the indexer and reported.
    /// Only for an answer to a reveal: the container forgot the challenge
    /// when it answered.
    fn finish_answered(&mut self, now: Timestamp, challenge: u64, passed: bool, reason: String) -> Vec<Output> {
        let Some(inspection) = self.inspections.remove(&challenge) else {
            return Vec::new();
        };
        self.by_container.remove(&inspection.container);
        let compute_ms = match inspection.phase {
            Phase::AwaitingAnswer { compute_ms, .. } => compute_ms,
            // No commitment, or an evaluation: how long the checker waited.
            _ => millis(now.since(inspection.sent)),
        };
        let capacity = match &inspection.phase {
            Phase::AwaitingAnswer { params, .. } if passed => Some(verified(&inspection.spec, params.n)),
            _ => None,
        };
        let first = inspection.waiters.first().copied();
        let verdict = Verdict {
            request: first.map_or(0, |w| w.request),
            kind: first.map_or(inspection.kind, |w| w.kind),
            container: inspection.container,
            challenge,
            passed,
            reason,
            compute_ms,
            capacity,
        };
        let mut out = Vec::new();
        for w in &inspection.waiters {
            // An indexer dropped from the network meanwhile gets nothing.
            let Some(peer) = self.config.indexers.iter().find(|p| p.id == w.indexer) else { continue };
            let mine = Verdict { request: w.request, kind: w.kind, ..verdict.clone() };
            out.push(Output::Net(Net::Send { addr: peer.addr.clone(), msg: Message::Verdict(mine) }));
        }
        out.push(Output::Verdict(verdict));
        out.extend(self.next_queued(now, inspection.container));
        out
    }

    /// A class's deadline, at least the configured floor.
    fn deadline(&self, ms: u64) -> std::time::Duration {
        std::time::Duration::from_millis(ms).max(self.config.min_deadline)
    }

    /// A random id: only the node a challenge reached can name it, so an
    /// answer naming it comes from whoever listens at the address it went
    /// to (see `first_answer`).
    fn fresh_id(&mut self) -> u64 {
        loop {
            let id = self.rng.next_u64();
            if !self.inspections.contains_key(&id) {
                return id;
            }
        }
    }
}

impl Inspection {
    /// Whether its verdict answers `request` too: the same container at the
    /// same address with the same claim, and the same work (a capacity
    /// challenge for a registration or standby inspection, an evaluation of
    /// the same service for an in-service one).
    fn answers(&self, request: &InspectionRequest) -> bool {
        let challenge = |k| k != InspectionKind::InService;
        let same_work = if challenge(self.kind) {
            challenge(request.kind)
        } else {
            request.kind == InspectionKind::InService && request.service == self.service
        };
        same_work && self.container == request.container && self.addr == request.addr && self.spec == request.spec
    }
}

/// What frees a container of an inspection the checker ends without
/// waiting for its answer: `ChallengeCancelled` for a challenge,
/// `EvaluationDone` for an evaluation (whose session it stops).
fn release(id: u64, inspection: &Inspection) -> Output {
    let msg = match inspection.phase {
        Phase::AwaitingService { .. } | Phase::Evaluating { .. } => Message::EvaluationDone { id },
        Phase::AwaitingCommitment { .. } | Phase::AwaitingAnswer { .. } => {
            Message::ChallengeCancelled { challenge: id }
        }
    };
    Output::Net(Net::Send { addr: inspection.addr.clone(), msg })
}

/// The timing class and the memory a container claims: its GPUs' (all of
/// their VRAM) or, without GPUs, its RAM. An unknown GPU model is timed as
/// a CPU host, the most lenient class: the math still has to be right.
fn claimed(spec: &ContainerSpec) -> (TimingClass, u64) {
    const GIB: u64 = 1 << 30;
    match &spec.gpu {
        // A simulated GPU is the host's CPU: it is challenged and judged as one.
        Some(g) if g.simulated => (TimingClass::Cpu, u64::from(spec.ram_gib) * GIB),
        Some(g) => (
            dci_capacity::class_of_model(&g.model).unwrap_or(TimingClass::Cpu),
            u64::from(g.vram_gib) * u64::from(g.count.max(1)) * GIB,
        ),
        None => (TimingClass::Cpu, u64::from(spec.ram_gib) * GIB),
    }
}

/// What a passed proof at dimension `n` vouches for: the class it met the
/// deadline of (the claimed one, or the CPU for a simulated GPU), on one
/// device (one challenge), worth [`dci_capacity::verified_units`] — never
/// the claimed count or memory beyond what the class can have.
fn verified(spec: &ContainerSpec, n: u32) -> VerifiedCapacity {
    let (class, _) = claimed(spec);
    let vram = spec.gpu.as_ref().map_or(0, |g| g.vram_gib);
    VerifiedCapacity {
        class: class.name().to_owned(),
        devices: 1,
        n,
        units: dci_capacity::verified_units(class, 1, vram),
        simulated: spec.gpu.as_ref().is_some_and(|g| g.simulated),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
