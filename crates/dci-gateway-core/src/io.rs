//! The gateway core's closed sets of inputs and outputs.

use dci_ledger::{LedgerError, LedgerOp, OpOutcome, StakeRole};
use dci_model::{AccountId, Amount, MatchRequest, NodeId, SessionId};
use dci_proto::{ContainerView, Inbound, Net, OfferView};

use crate::GatewayError;
use crate::duties::CommitteeView;
use crate::record::SessionRecord;

/// Names one consumer call from the API; its [`Output::Reply`] carries it back.
pub type CallId = u64;

/// Names one ledger call; its [`Input::Ledger`] carries it back.
pub type Ticket = u64;

/// What one relayed request moved, as the gateway's HTTP layer counted it,
/// and the tokens the service's answer claimed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relayed {
    /// Bytes of the request body forwarded to the service.
    pub request_bytes: u64,
    /// Bytes of the answer forwarded to the consumer.
    pub response_bytes: u64,
    /// Tokens the answer's `usage` claimed.
    pub tokens: u64,
}

/// A consumer's command (already authenticated: `account` is the caller's).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Match, escrow `hours` of use, and start `request.service`.
    Deploy {
        /// Who pays.
        account: AccountId,
        /// What to match.
        request: MatchRequest,
        /// Hours of use to hold in escrow.
        hours: u32,
    },
    /// Stop one of the account's running sessions and settle it.
    Stop {
        /// The caller.
        account: AccountId,
        /// The session.
        session: SessionId,
    },
    /// Where to relay an OpenAI-style request of one of the account's
    /// running model sessions: [`Reply::Target`].
    RelayTarget {
        /// The caller.
        account: AccountId,
        /// The session.
        session: SessionId,
    },
    /// Where a running render session streams from (the session id is the
    /// capability): [`Reply::Target`].
    ViewTarget {
        /// The session.
        session: SessionId,
    },
    /// One request was relayed for one of the account's sessions: meter it.
    Relayed {
        /// The caller.
        account: AccountId,
        /// The session.
        session: SessionId,
        /// What moved.
        relayed: Relayed,
    },
    /// The indexer's offers passing a filter (nothing reserved).
    Offers {
        /// Filter in the offers language.
        filter: String,
        /// Sort key.
        sort: String,
        /// Most rows.
        limit: u32,
    },
    /// One page of the indexer's view of its containers: those with an id
    /// above `after`, by id.
    Containers {
        /// The last id of the page before (`None`: from the first).
        after: Option<NodeId>,
    },
    /// The committee in force and its penalties.
    Committee,
    /// Stop and settle every session (graceful shutdown); replies when done.
    StopAll,
}

/// The answer to a [`Command`].
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The session as recorded (deploy, stop).
    Session(SessionRecord),
    /// `http://<registered host>:<port>` of a session's service.
    Target(String),
    /// Done.
    Done,
    /// Offers.
    Offers(Vec<OfferView>),
    /// One page of containers, and the `after` of the next (`None`: the last page).
    Containers {
        /// The page, by id.
        views: Vec<ContainerView>,
        /// Where the next page starts.
        next: Option<NodeId>,
    },
    /// The committee.
    Committee(CommitteeView),
}

/// What the core asks of the ledger. The driver makes the calls one at a
/// time, in the order asked, and answers each with [`Input::Ledger`].
#[derive(Clone, Debug, PartialEq)]
pub enum LedgerCall {
    /// Apply a batch, all or nothing: [`LedgerReply::Applied`].
    Apply(Vec<LedgerOp>),
    /// The stake each node's account holds in `role`: [`LedgerReply::Stakes`].
    Stakes {
        /// The role.
        role: StakeRole,
        /// The nodes.
        nodes: Vec<NodeId>,
    },
    /// Send queued settlement to the chain (nothing on the embedded ledger):
    /// [`LedgerReply::Flushed`].
    Flush,
}

/// The ledger's answer to a [`LedgerCall`].
#[derive(Clone, Debug, PartialEq)]
pub enum LedgerReply {
    /// One outcome per op, or why nothing was applied.
    Applied(Result<Vec<OpOutcome>, LedgerError>),
    /// One stake per node asked (zero when unknown or unreadable).
    Stakes(Vec<Amount>),
    /// Ops sent, or why they stay queued.
    Flushed(Result<usize, LedgerError>),
}

/// One input to [`crate::Gateway::handle`].
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A consumer's command; answered by an [`Output::Reply`] with `call`.
    Api {
        /// Names the call.
        call: CallId,
        /// The command.
        cmd: Command,
    },
    /// An authenticated node message.
    Net(Inbound),
    /// The answer to an [`Output::Ledger`].
    Ledger {
        /// The call's ticket.
        ticket: Ticket,
        /// The answer.
        reply: LedgerReply,
    },
    /// Time passed (the driver ticks a few times a second).
    Tick,
    /// The driver could not connect to `addr` to deliver a message (refused,
    /// timed out): nothing sent there is answered.
    Unreachable {
        /// The address, as the message named it.
        addr: String,
    },
    /// The network changed (its file was edited): the indexers to ask and
    /// the checkers to seat from now on. Requests in flight are answered
    /// by the node they went to; the seats count from the next epoch's
    /// stakes on (an epoch being opened reads the new seats' stakes).
    Peers {
        /// The indexers (none is refused by the driver: see
        /// [`crate::Config::indexers`]).
        indexers: Vec<crate::Peer>,
        /// The checkers that may sit on the committee.
        checkers: Vec<crate::CheckerSeat>,
    },
}

/// Something worth a line in the log (and a metric).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A session serves (first placement or after a failover).
    Placed {
        /// The session.
        session: SessionId,
        /// Its container.
        container: NodeId,
        /// Which placement (0: the first).
        failovers: u32,
    },
    /// A placement ended and the session is moving.
    Moving {
        /// The session.
        session: SessionId,
        /// The container it leaves.
        container: NodeId,
        /// Why.
        reason: String,
    },
    /// A session ended and was settled.
    Ended {
        /// The session as recorded.
        record: Box<SessionRecord>,
    },
    /// A session's escrow is used up: it is being stopped.
    Exhausted {
        /// The session.
        session: SessionId,
    },
    /// An epoch's rewards were released (or why not).
    EpochDistributed {
        /// The epoch.
        epoch: u64,
        /// What was paid, or why nothing was.
        result: Result<Amount, String>,
    },
    /// Settlement queued for the chain was sent (or stays queued).
    Flushed {
        /// Ops sent, or why not.
        result: Result<usize, String>,
    },
    /// The committee of an epoch was selected and announced.
    CommitteeSelected {
        /// The epoch.
        epoch: u64,
        /// Members.
        members: usize,
    },
    /// An epoch's committee was put on chain (or why not: its slashes wait).
    CommitteePublished {
        /// The epoch.
        epoch: u64,
        /// Done, or the ledger's refusal.
        result: Result<(), String>,
    },
    /// No committee could be opened or selected this epoch.
    NoCommittee {
        /// Why.
        why: String,
    },
    /// A penalty was decided.
    Penalty {
        /// What happened.
        record: crate::duties::PenaltyRecord,
    },
    /// A ledger call failed where nobody waits for it.
    LedgerFailed {
        /// What was attempted.
        what: String,
        /// The ledger's error.
        error: String,
    },
}

/// One output of [`crate::Gateway::handle`]. The driver carries them out in
/// order: a record is persisted before any later ledger call is made.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send a node message.
    Net(Net),
    /// Make a ledger call; answer with [`Input::Ledger`] and the same ticket.
    Ledger {
        /// Names the call.
        ticket: Ticket,
        /// The call.
        call: LedgerCall,
    },
    /// Store the session's record (replacing any earlier one).
    Persist(SessionRecord),
    /// Delete the session's record (a deploy that never escrowed anything).
    Forget(SessionId),
    /// Answer a consumer's call.
    Reply {
        /// The call.
        call: CallId,
        /// The answer.
        result: Result<Reply, GatewayError>,
    },
    /// A node message was refused; nothing changed.
    Rejected {
        /// The authenticated sender.
        from: NodeId,
        /// The message's kind.
        kind: &'static str,
        /// Why, in words: what was expected and what was found.
        reason: String,
    },
    /// Worth a log line.
    Event(Event),
}
