//! Every message exchanged between nodes. One closed enum: a role handles
//! exactly these inputs.

use dci_model::{
    AccountId, ContainerSpec, Eliminations, MatchRequest, NodeId, PricePerHour, ServiceName, SessionId, State,
    Timestamp, Transition,
};
use serde::{Deserialize, Serialize};

use crate::committee::{ChainDomain, CommitteeAnnouncement, Evidence, SortitionProof};
use crate::receipt::SignedReceipt;

/// A node-to-node message. The sender is authenticated by the envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    // --- container -> indexer
    /// A container announces itself (and again after any change).
    Register(Registration),
    /// A container is alive; sent every heartbeat interval.
    Heartbeat(Heartbeat),

    // --- indexer -> container
    /// The container's lifecycle state changed.
    StateChanged {
        /// The container whose state changed. A container takes only the
        /// reports about itself: another registration may name its address.
        container: NodeId,
        /// The recorded transition.
        transition: Transition,
    },

    // --- indexer -> checker
    /// Please inspect this container.
    InspectionRequest(InspectionRequest),

    // --- checker -> container
    /// Proof-of-capacity challenge: compute and commit. The container
    /// refuses one that names another container
    /// ([`ChallengeParams::container`]) with [`Message::ChallengeRefused`].
    Challenge(ChallengeParams),
    /// After the commitment: the Freivalds vectors' seed and the rows to
    /// open (chosen only now, so the container could not know them).
    Reveal(Reveal),
    /// The checker no longer wants an answer to this challenge (it judged
    /// the inspection already, or it was replaced): the container forgets
    /// it and frees its place. Every challenge ends with a `Reveal` or
    /// this; an unknown challenge is ignored.
    ChallengeCancelled {
        /// The challenge ([`ChallengeParams::id`]).
        challenge: u64,
    },

    /// In-service evaluation (R-CK3, R-CK4): start a short session of
    /// `service` for the checker's simulated user. Unbilled, outside the
    /// container's slots. The container refuses one that names another
    /// container with [`Message::EvaluationFailed`].
    EvaluationRequest {
        /// The checker's evaluation id.
        id: u64,
        /// The service to evaluate.
        service: ServiceName,
        /// The container the checker means to evaluate (the registrant of
        /// the address it sent this to).
        container: NodeId,
        /// How long the whole evaluation may take, ms from when the checker
        /// sent this (the session's start plus the simulated user's run):
        /// the checker sends `EvaluationDone` by then, and the container
        /// stops the session by itself soon after if that never arrives.
        deadline_ms: u64,
    },
    /// The evaluation is over: stop its session. Every evaluation ends
    /// with this, whatever its verdict; an unknown one is ignored.
    EvaluationDone {
        /// The evaluation id.
        id: u64,
    },

    // --- container -> checker
    /// The evaluation session runs and is reachable here.
    EvaluationReady {
        /// The evaluation id.
        id: u64,
        /// URL of the service endpoint.
        endpoint: String,
    },
    /// The evaluation session could not start, or the container refused the
    /// request (it names another container, or too many run).
    EvaluationFailed {
        /// The evaluation id.
        id: u64,
        /// Why.
        reason: String,
    },
    /// The container will not compute this challenge: it names another
    /// container (the address the checker used is not the registrant's),
    /// its size is out of range, or the checker already has as many
    /// challenges in flight here as a container takes. Sent at once, so the
    /// checker need not wait for a deadline.
    ChallengeRefused {
        /// The challenge ([`ChallengeParams::id`]).
        challenge: u64,
        /// Why, in words.
        reason: String,
    },
    /// Commitment to a challenge result.
    Commitment {
        /// Challenge id.
        challenge: u64,
        /// Merkle root over the result rows.
        root: [u8; 32],
    },
    /// The answer to a reveal: the products with the Freivalds vectors and
    /// the requested rows opened against the commitment, with the
    /// container's signature over the whole transcript
    /// ([`crate::sign_transcript`]), which makes a failure evidence.
    Answer {
        /// The answer.
        response: Response,
        /// The container's transcript signature.
        signature: Vec<u8>,
    },

    // --- checker -> indexer
    /// A signed inspection result.
    Verdict(Verdict),

    // --- epoch coordinator -> checkers
    /// A new epoch began: publish your sortition proof for it.
    EpochOpen {
        /// The epoch.
        epoch: u64,
        /// Its seed.
        seed: [u8; 32],
    },
    /// A failed capacity challenge is proposed for a penalty: re-verify the
    /// evidence and, if the failure reproduces, vote with a signature.
    PenaltyProposal {
        /// The epoch whose committee decides.
        epoch: u64,
        /// The penalty asked (the ledger caps it by the slash fraction).
        amount: dci_model::Amount,
        /// The signed transcript.
        evidence: Evidence,
        /// When the ledger is a chain: the ledger contract to sign the
        /// report for as well (its signature recovers to the member's chain
        /// signer, which the contract checks).
        chain: Option<ChainDomain>,
    },

    // --- checkers -> epoch coordinator
    /// A checker's sortition proof.
    EpochProof {
        /// The epoch.
        epoch: u64,
        /// The proof.
        proof: SortitionProof,
    },
    /// A container failed a challenge in a way anyone can re-verify.
    Evidence(Evidence),
    /// A committee member's vote for a penalty: its signature over the
    /// ledger's slash report for this evidence.
    PenaltyVote {
        /// Which evidence.
        evidence_hash: [u8; 32],
        /// The member's signature.
        signature: Vec<u8>,
        /// Its chain signature of the same report (65 bytes, r ‖ s ‖ v),
        /// when the proposal named a chain ledger.
        chain_signature: Option<Vec<u8>>,
    },

    // --- epoch coordinator -> indexers
    /// The epoch's committee, as anyone can recompute it.
    Committee(CommitteeAnnouncement),

    // --- gateway -> indexer
    /// Find and reserve a slot for a session. The reservation expires
    /// unless [`Message::Renew`]ed or released first; matching a session
    /// that already holds one answers the same offer and renews it.
    Match {
        /// Correlates the reply.
        request_id: u64,
        /// The session that will use the slot.
        session: SessionId,
        /// What the consumer asked for.
        request: MatchRequest,
    },
    /// A session ended: free its slot.
    Release {
        /// The session.
        session: SessionId,
    },
    /// List the containers the indexer knows, one page at a time: those
    /// whose id is above `after` (all, when `None`), by id.
    ListContainers {
        /// Correlates the reply.
        request_id: u64,
        /// The last id of the page before (`Containers::next`).
        after: Option<NodeId>,
    },

    // --- indexer -> gateway
    /// A slot was reserved.
    Matched {
        /// Correlates the request.
        request_id: u64,
        /// The chosen container.
        offer: Offer,
    },
    /// Nothing matched, and why (R-IX4).
    NoMatch {
        /// Correlates the request.
        request_id: u64,
        /// Counts per eliminating criterion.
        eliminations: Eliminations,
    },
    /// One page of the indexer's view of its containers, by id: at most
    /// [`MAX_CONTAINERS_PAGE`] rows and [`CONTAINERS_PAGE_BYTES`] of them,
    /// so a page always fits in a frame ([`crate::MAX_MESSAGE_BYTES`]).
    Containers {
        /// Correlates the request.
        request_id: u64,
        /// One line per container.
        containers: Vec<ContainerView>,
        /// `Some(last id)` when more follow: ask again with `after` = this.
        next: Option<NodeId>,
    },

    // --- gateway -> container
    /// Start a reserved session.
    StartSession {
        /// The session.
        session: SessionId,
        /// Service to run.
        service: ServiceName,
        /// Who pays.
        consumer: AccountId,
        /// Agreed price.
        price: PricePerHour,
    },
    /// Stop a session and return its usage receipt.
    StopSession {
        /// The session.
        session: SessionId,
    },

    // --- container -> gateway
    /// The session runs and is reachable here.
    SessionStarted {
        /// The session.
        session: SessionId,
        /// URL of the service endpoint.
        endpoint: String,
    },
    /// The session could not start.
    SessionFailed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: String,
    },
    /// The session stopped; here is what it used.
    SessionStopped {
        /// Usage signed by the container.
        receipt: SignedReceipt,
    },
    /// Metering (R-AG4): the usage of a running session so far, signed by
    /// the container once a second. Receipts are cumulative from the
    /// session's start, so the latest supersedes the earlier ones and a lost
    /// one costs nothing; if the container then dies, the gateway settles
    /// the latest it acknowledged, so the provider is paid for the time it
    /// delivered and the consumer for nothing more.
    Usage {
        /// Usage so far, signed by the container.
        receipt: SignedReceipt,
    },
    /// The session ended without the gateway asking: its service exited,
    /// or the operator moves it away (maintenance). The gateway settles the
    /// final receipt and re-matches the session on another container.
    SessionEnded {
        /// Final usage, signed by the container.
        receipt: SignedReceipt,
        /// Why it ended.
        reason: String,
    },

    // --- container (its operator) -> indexer
    /// The operator locks the container for maintenance (`on`: it becomes
    /// unschedulable and its sessions move elsewhere or drain) or unlocks it
    /// (`off`: it must pass a fresh inspection before it is scheduled again).
    Maintenance {
        /// Lock or unlock.
        on: bool,
    },

    // --- gateway -> indexer, and back
    /// List offers passing a filter (R-IX5); nothing is reserved.
    Offers {
        /// Correlates the reply.
        request_id: u64,
        /// Filter in the offers language, e.g. `gpu=H100 vram>=80`.
        filter: String,
        /// Sort key: price, rtt, vram, reputation or free.
        sort: String,
        /// Most rows to return.
        limit: u32,
    },
    /// The offers, or why the filter was refused.
    OfferList {
        /// Correlates the request.
        request_id: u64,
        /// Rows in order, or the error message.
        result: Result<Vec<OfferView>, String>,
    },

    // --- gateway -> indexer
    /// These sessions still hold their slots: extend each one's reservation
    /// to expire `reservation_ttl` from now. A reservation that is neither
    /// renewed nor released expires, and its slot is free again, so a
    /// gateway that crashed, or never saw a `Matched`, holds nothing for
    /// long. Sessions the indexer does not know (released, expired) are
    /// ignored; no reply. At most [`MAX_RENEW`] sessions per message: a
    /// longer list is refused as a whole.
    Renew {
        /// The sessions to keep.
        sessions: Vec<SessionId>,
    },

    // --- indexer -> stake oracle (the gateway that holds the ledger), and back
    /// How much container-role stake does `node`'s account
    /// (`AccountId::for_node(node)`) have bonded? Asked before a new
    /// registration enters the registry; the answer is taken only from the
    /// node asked, for a request in flight.
    StakeQuery {
        /// Correlates the answer.
        request_id: u64,
        /// The registrant.
        node: NodeId,
    },
    /// The answer to a [`Message::StakeQuery`].
    StakeOf {
        /// The query's id.
        request_id: u64,
        /// The registrant asked about.
        node: NodeId,
        /// Container-role stake bonded by `AccountId::for_node(node)` now
        /// (unbonding stake not included).
        bonded: dci_model::Amount,
        /// The smallest container stake governance requires.
        minimum: dci_model::Amount,
    },

    // --- indexer -> container
    /// The container's registration was refused and nothing of it was kept
    /// (e.g. it has not bonded the minimum container stake): what was
    /// expected and what was found. It may register again once it has.
    Refused {
        /// Why, for the operator.
        reason: String,
    },
    /// A heartbeat came from a container this indexer does not know (it
    /// lost its registry, or pruned the container): register again. Sent
    /// on the heartbeat's own connection only.
    Unregistered,

    // --- epoch coordinator -> checkers, and back (chain ledgers)
    /// Sign the committee of `announcement.epoch` for the chain ledger
    /// `chain`: recompute it from the announcement's proofs and, only if it
    /// recomputes, sign the list of its members' chain signers (as the
    /// checker itself knows them) so the ledger accepts it on chain (it needs
    /// two thirds of the committee before it).
    CommitteeSign {
        /// The epoch's announcement.
        announcement: CommitteeAnnouncement,
        /// The ledger to sign for.
        chain: ChainDomain,
    },
    /// A checker's chain signature of an epoch's committee (65 bytes,
    /// r ‖ s ‖ v, over `dci_chain::committee_digest_at`).
    CommitteeSigned {
        /// The epoch.
        epoch: u64,
        /// The signature.
        signature: Vec<u8>,
    },
}

/// Most services a [`Registration`] may list, and most entries a
/// [`Heartbeat::warm`] may report; the indexer refuses longer lists.
pub const MAX_SERVICES: usize = 64;

/// Most rows of one [`Message::Containers`] page.
pub const MAX_CONTAINERS_PAGE: usize = 1000;

/// Most bytes the rows of one [`Message::Containers`] page take on the
/// wire (1 MiB, a quarter of [`crate::MAX_MESSAGE_BYTES`]); a page ends
/// before the row that would pass it (a page holds at least one row).
pub const CONTAINERS_PAGE_BYTES: usize = 1 << 20;

/// Cuts one [`Message::Containers`] page from `rows`: the views with an id
/// above the request's `after`, in id order (the caller may stop after
/// [`MAX_CONTAINERS_PAGE`] + 1 of them). Returns the page and its `next`.
pub fn containers_page(rows: impl IntoIterator<Item = ContainerView>) -> (Vec<ContainerView>, Option<NodeId>) {
    let mut page: Vec<ContainerView> = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let size = postcard::to_allocvec(&row).map_or(usize::MAX, |b| b.len());
        let full = page.len() >= MAX_CONTAINERS_PAGE || bytes + size > CONTAINERS_PAGE_BYTES;
        if full && !page.is_empty() {
            let next = page.last().map(|v| v.id);
            return (page, next);
        }
        bytes += size;
        page.push(row);
    }
    (page, None)
}

/// Most sessions one [`Message::Renew`] may name (160 kB on the wire, well
/// within [`crate::MAX_MESSAGE_BYTES`]); a gateway with more sends several.
pub const MAX_RENEW: usize = 10_000;

impl Message {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Register(_) => "register",
            Message::Heartbeat(_) => "heartbeat",
            Message::StateChanged { .. } => "state_changed",
            Message::InspectionRequest(_) => "inspection_request",
            Message::Challenge(_) => "challenge",
            Message::Reveal(_) => "reveal",
            Message::ChallengeCancelled { .. } => "challenge_cancelled",
            Message::ChallengeRefused { .. } => "challenge_refused",
            Message::Commitment { .. } => "commitment",
            Message::EvaluationRequest { .. } => "evaluation_request",
            Message::EvaluationDone { .. } => "evaluation_done",
            Message::EvaluationReady { .. } => "evaluation_ready",
            Message::EvaluationFailed { .. } => "evaluation_failed",
            Message::Answer { .. } => "answer",
            Message::EpochOpen { .. } => "epoch_open",
            Message::PenaltyProposal { .. } => "penalty_proposal",
            Message::EpochProof { .. } => "epoch_proof",
            Message::Evidence(_) => "evidence",
            Message::PenaltyVote { .. } => "penalty_vote",
            Message::Committee(_) => "committee",
            Message::Verdict(_) => "verdict",
            Message::Match { .. } => "match",
            Message::Release { .. } => "release",
            Message::ListContainers { .. } => "list_containers",
            Message::Matched { .. } => "matched",
            Message::NoMatch { .. } => "no_match",
            Message::Containers { .. } => "containers",
            Message::StartSession { .. } => "start_session",
            Message::StopSession { .. } => "stop_session",
            Message::SessionStarted { .. } => "session_started",
            Message::SessionFailed { .. } => "session_failed",
            Message::SessionStopped { .. } => "session_stopped",
            Message::Usage { .. } => "usage",
            Message::SessionEnded { .. } => "session_ended",
            Message::Maintenance { .. } => "maintenance",
            Message::Offers { .. } => "offers",
            Message::OfferList { .. } => "offer_list",
            Message::Renew { .. } => "renew",
            Message::StakeQuery { .. } => "stake_query",
            Message::StakeOf { .. } => "stake_of",
            Message::Refused { .. } => "refused",
            Message::Unregistered => "unregistered",
            Message::CommitteeSign { .. } => "committee_sign",
            Message::CommitteeSigned { .. } => "committee_signed",
        }
    }
}

/// What a container declares when it registers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Address where the container receives node messages (`host:port`).
    pub addr: String,
    /// Declared resources (verified by checkers).
    pub spec: ContainerSpec,
    /// Pre-installed, warm services (R-AG3); at most [`MAX_SERVICES`].
    pub services: Vec<ServiceName>,
    /// Price per hour of one slot.
    pub price: PricePerHour,
    /// Concurrent sessions it can serve.
    pub slots: u32,
    /// Account that receives earnings.
    pub payout: AccountId,
}

/// Liveness and load, sent every heartbeat interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Increments with every heartbeat.
    pub seq: u64,
    /// Sessions running now.
    pub sessions: u32,
    /// Pre-installed services with an instance started and waiting for the
    /// next session (R-AG3); empty if the host does not pre-start them.
    /// At most [`MAX_SERVICES`], each one the container registered.
    #[serde(default)]
    pub warm: Vec<ServiceName>,
}

/// Why a container is inspected (SPEC §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InspectionKind {
    /// R-CK1: a (re-)registration is validated before the container may be
    /// scheduled. Passing makes it `Ready`; failing, `ReinspectionRequired`.
    Registration,
    /// R-CK2: a random inspection of a schedulable container. Passing raises
    /// its reputation; failing makes it `ReinspectionRequired`.
    Standby,
    /// R-CK3: an evaluation of a container while it serves (the checker acts
    /// as a user of the running service). Failing moves it to
    /// `QualityControl`.
    InService,
}

impl InspectionKind {
    /// The name used in logs, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            InspectionKind::Registration => "registration",
            InspectionKind::Standby => "standby",
            InspectionKind::InService => "in-service",
        }
    }
}

/// A request to inspect a container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InspectionRequest {
    /// Chosen by the indexer; the verdict must carry it back, so a late
    /// verdict of an earlier inspection is never taken for this one.
    pub id: u64,
    /// Why the container is inspected.
    pub kind: InspectionKind,
    /// The container.
    pub container: NodeId,
    /// Where to reach it.
    pub addr: String,
    /// What it claims.
    pub spec: ContainerSpec,
    /// Why (registration, standby, re-inspection).
    pub reason: String,
    /// For an in-service evaluation: the service the checker's simulated
    /// user exercises.
    pub service: Option<ServiceName>,
}

/// Parameters of a proof-of-capacity challenge (R-CK5). The container signs
/// them with its answer ([`crate::sign_transcript`]), so a transcript also
/// says which container the challenge was for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeParams {
    /// Challenge id, unique per checker and drawn at random, so only the
    /// node the challenge reached can name it.
    pub id: u64,
    /// Fresh random seed the matrices are derived from.
    pub seed: [u8; 32],
    /// Matrix dimension (n x n).
    pub n: u32,
    /// The container the checker means to inspect: the registrant of the
    /// address it sent the challenge to. Any other node there refuses it
    /// ([`Message::ChallengeRefused`]).
    pub container: NodeId,
    /// How long the checker waits for the commitment, ms from when it sent
    /// the challenge. The checker reveals right after a commitment in time,
    /// so a container that holds no reveal by then (plus a grace for the
    /// network) may forget the challenge.
    pub deadline_ms: u64,
}

/// What the checker reveals once it holds the container's commitment:
/// the Freivalds vectors' seed and the rows to open (R-CK5; the meaning is
/// defined in `dci-capacity`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reveal {
    /// The challenge this answers ([`ChallengeParams::id`]).
    pub challenge: u64,
    /// Fresh seed of the Freivalds vectors (ChaCha20 stream 0 of this key).
    pub seed: [u8; 32],
    /// Number of vectors `k`.
    pub rounds: u32,
    /// Rows to open, distinct, ascending.
    pub rows: Vec<u32>,
    /// Columns of each opened row the checker recomputes (all when `>= n`);
    /// which ones derive from `seed` (`dci_capacity::RevealExt::checked_columns`).
    pub columns: u32,
}

/// The container's answer to a [`Reveal`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The challenge this answers.
    pub challenge: u64,
    /// `y_j = Ĉ · r_j` for each round `j`, `n` values each.
    pub products: Vec<Vec<f32>>,
    /// The requested rows with their Merkle paths, in the reveal's order.
    pub rows: Vec<RowOpening>,
}

/// One result row opened against a Merkle commitment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowOpening {
    /// Row index.
    pub index: u32,
    /// The row's values.
    pub values: Vec<f32>,
    /// Sibling hashes from leaf to root.
    pub proof: Vec<[u8; 32]>,
}

/// A checker's verdict on a container (signed by the envelope).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The [`InspectionRequest::id`] this answers.
    pub request: u64,
    /// The kind of inspection.
    pub kind: InspectionKind,
    /// The inspected container.
    pub container: NodeId,
    /// The challenge it answered.
    pub challenge: u64,
    /// Passed or failed.
    pub passed: bool,
    /// Why, in words.
    pub reason: String,
    /// Time from challenge to commitment, ms.
    pub compute_ms: u64,
    /// For a passed proof of capacity: what it verified (the container's
    /// reward weight comes from this, never from its claim).
    pub capacity: Option<VerifiedCapacity>,
}

/// What a passed proof of capacity verified, as the checker vouches for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedCapacity {
    /// The timing class proven (`dci_capacity::TimingClass::name`: `cpu`,
    /// `h100`, …): the product met that class's deadline.
    pub class: String,
    /// Devices proven (one challenge each, concurrently).
    pub devices: u32,
    /// The challenge's dimension.
    pub n: u32,
    /// Capacity units vouched for (`dci_capacity::verified_units`).
    pub units: u64,
    /// The host's GPU profile is simulated: it was proven as a CPU, and
    /// earns only on a network whose genesis declares it a dev network.
    pub simulated: bool,
}

/// A reserved slot on a container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// The container.
    pub container: NodeId,
    /// Where to reach it.
    pub addr: String,
    /// Its resources.
    pub spec: ContainerSpec,
    /// Its price.
    pub price: PricePerHour,
    /// Estimated round trip from the consumer, if a location was given.
    pub estimated_rtt_ms: Option<u32>,
    /// Account that receives the provider's share.
    pub payout: AccountId,
}

/// The indexer's view of one container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerView {
    /// The container.
    pub id: NodeId,
    /// Where to reach it.
    pub addr: String,
    /// Lifecycle state.
    pub state: State,
    /// Its resources.
    pub spec: ContainerSpec,
    /// Pre-installed services.
    pub services: Vec<ServiceName>,
    /// Those with an instance started and waiting, as of the last heartbeat.
    #[serde(default)]
    pub warm: Vec<ServiceName>,
    /// Price per slot-hour.
    pub price: PricePerHour,
    /// Total slots.
    pub slots: u32,
    /// Reserved slots.
    pub reserved: u32,
    /// Checker reputation, 0..=1000.
    pub reputation: u32,
    /// Milliseconds since the last heartbeat (None: never).
    pub last_heartbeat_ago_ms: Option<u64>,
    /// Most recent transitions, newest last.
    pub transitions: Vec<Transition>,
    /// Most recent checker verdicts, newest last.
    #[serde(default)]
    pub verdicts: Vec<VerdictRecord>,
    /// What its latest passed proof of capacity verified (its reward
    /// weight); `None` until one passed, and again after a spec change.
    #[serde(default)]
    pub verified: Option<VerifiedCapacity>,
    /// Account that receives its earnings.
    pub payout: AccountId,
}

/// A verdict as the indexer recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRecord {
    /// When the indexer accepted it.
    pub at: Timestamp,
    /// The checker that signed it.
    pub checker: NodeId,
    /// The kind of inspection.
    pub kind: InspectionKind,
    /// Passed or failed.
    pub passed: bool,
    /// The checker's reason.
    pub reason: String,
    /// Time from challenge to commitment, ms.
    pub compute_ms: u64,
    /// What a passed proof of capacity verified.
    #[serde(default)]
    pub capacity: Option<VerifiedCapacity>,
}

/// One offer: a container that passes a filter, as a consumer sees it.
/// The indexer's listing (`dci_indexer::Indexer::offers`) returns these rows
/// and the indexer's node sends them to the gateway as they are.
///
/// It has no container address: that is the container's node-to-node
/// endpoint, which only the gateway needs, and it gets it in the
/// [`Offer`] of a `Matched`; a listing for people has no use for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OfferView {
    /// The container.
    pub id: NodeId,
    /// Lifecycle state.
    pub state: State,
    /// Its resources.
    pub spec: ContainerSpec,
    /// Warm services.
    pub services: Vec<ServiceName>,
    /// Price per slot-hour.
    pub price: PricePerHour,
    /// Total slots.
    pub slots: u32,
    /// Slots free now.
    pub free_slots: u32,
    /// Checker reputation, 0..=1000.
    pub reputation: u32,
    /// Estimated round trip from the filter's `near`, if given.
    pub estimated_rtt_ms: Option<u32>,
    /// Milliseconds since the last heartbeat (None: none since registration
    /// or the indexer's restart).
    pub last_heartbeat_ago_ms: Option<u64>,
}
