//! The container core as the gateway, the operator and the checkers see it:
//! per-second signed usage receipts, a session ending on its own with its
//! final receipt, the operator's maintenance lock and price (R-AG4, R-AG5);
//! and challenges and evaluations that never pile up: those naming another
//! container are refused, abandoned ones expire or are cancelled, and each
//! checker has places of its own (issue 14). Virtual time, no sockets.

use std::time::Duration;

use dci_agent::{
    Agent, AgentConfig, DEADLINE_GRACE, Input, MAX_CHALLENGES_PER_CHECKER, MAX_EVALUATIONS_PER_CHECKER,
    OperatorCommand, Output,
};
use dci_model::{
    AccountId, Actor, ContainerSpec, GeoPoint, NodeId, PricePerHour, ServiceName, SessionId, State, Timestamp,
    Transition,
};
use dci_proto::{ChallengeParams, ConnId, Identity, Inbound, Message, Net, Peer, SignedReceipt};

const GATEWAY_CONN: ConnId = ConnId(7);
const CHECKER_CONN: ConnId = ConnId(8);

struct Rig {
    agent: Agent,
    gateway: Identity,
    now: Timestamp,
}

/// The two checkers the container trusts.
fn checker(i: u8) -> NodeId {
    Identity::from_secret([10 + i; 32]).id()
}

/// The container's own id.
fn me() -> NodeId {
    Identity::from_secret([3; 32]).id()
}

fn indexer() -> NodeId {
    Identity::from_secret([2; 32]).id()
}

fn config(gateway: &Identity, indexer: &Identity) -> AgentConfig {
    AgentConfig {
        listen_addr: "127.0.0.1:2".into(),
        spec: ContainerSpec {
            gpu: None,
            cpu_cores: 4,
            ram_gib: 8,
            disk_gib: 10,
            bandwidth_up_mbps: 100,
            bandwidth_down_mbps: 100,
            location: GeoPoint::new(0.0, 0.0).unwrap(),
        },
        services: vec![ServiceName::new("render").unwrap()],
        price: "3.6".parse().unwrap(),
        slots: 2,
        payout: AccountId::new("provider:test").unwrap(),
        indexers: vec![Peer { id: indexer.id(), addr: "127.0.0.1:1".into() }],
        checkers: vec![checker(0), checker(1)],
        gateways: vec![gateway.id()],
        heartbeat_interval: Duration::from_secs(1),
        behaviour: dci_capacity::Behaviour::Honest,
    }
}

impl Rig {
    fn new() -> Rig {
        let (gateway, indexer) = (Identity::from_secret([1; 32]), Identity::from_secret([2; 32]));
        let agent = Agent::new(config(&gateway, &indexer), Identity::from_secret([3; 32]));
        let mut rig = Rig { agent, gateway, now: Timestamp(1_000_000) };
        rig.step(Input::Boot);
        rig
    }

    fn step(&mut self, input: Input) -> Vec<Output> {
        self.agent.handle(self.now, input)
    }

    fn advance(&mut self, ms: u64) -> Vec<Output> {
        self.now = Timestamp(self.now.0 + ms);
        self.step(Input::Tick)
    }

    fn gateway_says(&mut self, msg: Message) -> Vec<Output> {
        let inbound = Inbound { conn: GATEWAY_CONN, from: self.gateway.id(), msg };
        self.step(Input::Net(inbound))
    }

    /// Starts session `s` and returns once its service runs.
    fn start(&mut self, s: SessionId) {
        let out = self.gateway_says(Message::StartSession {
            session: s,
            service: ServiceName::new("render").unwrap(),
            consumer: AccountId::new("consumer:c").unwrap(),
            price: "3.6".parse().unwrap(),
        });
        assert!(out.iter().any(|o| matches!(o, Output::StartService { session, .. } if *session == s)));
        self.step(Input::ServiceStarted { session: s, endpoint: "http://127.0.0.1:9".into() });
    }

    fn says(&mut self, from: NodeId, msg: Message) -> Vec<Output> {
        self.step(Input::Net(Inbound { conn: CHECKER_CONN, from, msg }))
    }

    /// `checker` sends challenge `id` naming `container`, with a 2 s deadline.
    fn challenge(&mut self, checker: NodeId, id: u64, container: NodeId) -> Vec<Output> {
        self.says(checker, Message::Challenge(params(id, container)))
    }

    /// `checker` asks for evaluation `id` of `container`, to take at most `deadline_ms`.
    fn evaluation(&mut self, checker: NodeId, id: u64, container: NodeId, deadline_ms: u64) -> Vec<Output> {
        let service = ServiceName::new("render").unwrap();
        self.says(checker, Message::EvaluationRequest { id, service, container, deadline_ms })
    }
}

const DEADLINE_MS: u64 = 2_000;

fn params(id: u64, container: NodeId) -> ChallengeParams {
    ChallengeParams { id, seed: [id as u8; 32], n: 8, container, deadline_ms: DEADLINE_MS }
}

/// Did the core start computing challenge `id`?
fn computes(out: &[Output], id: u64) -> bool {
    out.iter().any(|o| matches!(o, Output::Compute { params, .. } if params.id == id))
}

/// The refusal of challenge `id` replied to the checker, if any.
fn refusal(out: &[Output], id: u64) -> Option<String> {
    out.iter().find_map(|o| match o {
        Output::Net(Net::Reply { conn: CHECKER_CONN, msg: Message::ChallengeRefused { challenge, reason } })
            if *challenge == id =>
        {
            Some(reason.clone())
        }
        _ => None,
    })
}

/// Runs the computation of challenge `id` (of `checker`) as the driver
/// would and returns the core's outputs.
fn computed(rig: &mut Rig, checker: NodeId, id: u64) -> Vec<Output> {
    let p = params(id, me());
    let attempt = dci_capacity::Behaviour::Honest.commit(&p, None).unwrap();
    rig.step(Input::Computed { checker, params: p, attempt })
}

/// The core did nothing.
#[track_caller]
fn nothing(out: Vec<Output>) {
    assert!(out.is_empty(), "expected no output, found {out:?}");
}

fn session_started(out: &[Output]) -> SessionId {
    match out {
        [Output::StartService { session, .. }] => *session,
        other => panic!("expected the evaluation's service to start, found {other:?}"),
    }
}

/// Messages the core replies to the gateway's connection with.
fn to_gateway(out: &[Output]) -> Vec<&Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Net(Net::Reply { conn, msg }) if *conn == GATEWAY_CONN => Some(msg),
            _ => None,
        })
        .collect()
}

fn usage(out: &[Output]) -> Vec<&SignedReceipt> {
    to_gateway(out)
        .into_iter()
        .filter_map(|m| match m {
            Message::Usage { receipt } => Some(receipt),
            _ => None,
        })
        .collect()
}

#[test]
fn running_sessions_are_metered_every_second_with_cumulative_signed_receipts() {
    let mut rig = Rig::new();
    let s = SessionId([9; 16]);
    rig.start(s);
    let mut seen = Vec::new();
    for _ in 0..20 {
        // 250 ms ticks, as the driver gives them.
        for r in usage(&rig.advance(250)) {
            r.verify_container().expect("signed by the container, arithmetic right");
            assert_eq!(r.receipt.session, s);
            seen.push(r.receipt.seconds);
        }
    }
    // Five seconds of ticks: one receipt a second, each covering more.
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    let price: PricePerHour = "3.6".parse().unwrap();
    let out = rig.advance(1000);
    let last = usage(&out)[0];
    assert_eq!(last.receipt.amount, price.cost_for_secs(last.receipt.seconds).unwrap());

    // Once a stop is asked for, metering ends: the final receipt says the rest.
    rig.gateway_says(Message::StopSession { session: s });
    assert!(usage(&rig.advance(2000)).is_empty());
}

#[test]
fn a_service_that_exits_ends_its_session_with_the_final_receipt() {
    let mut rig = Rig::new();
    let s = SessionId([4; 16]);
    rig.start(s);
    rig.advance(3000);
    let out = rig.step(Input::ServiceStopped { session: s });
    let ended: Vec<_> = to_gateway(&out)
        .into_iter()
        .filter_map(|m| match m {
            Message::SessionEnded { receipt, reason } => Some((receipt, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].0.receipt.seconds, 3);
    assert!(ended[0].1.contains("exited"));
    assert!(rig.agent.sessions().is_empty());
    assert_eq!(rig.agent.status().earned.seconds, 3);
}

#[test]
fn maintenance_moves_sessions_away_refuses_new_ones_and_unlocks() {
    let mut rig = Rig::new();
    let (a, b) = (SessionId([5; 16]), SessionId([6; 16]));
    rig.start(a);
    rig.advance(2000);
    let out = rig.step(Input::Operator(OperatorCommand::MaintenanceOn { drain: false }));
    assert!(out.iter().any(|o| matches!(o, Output::Net(Net::Send { msg: Message::Maintenance { on: true }, .. }))));
    assert!(out.iter().any(|o| matches!(o, Output::StopService { session } if *session == a)));
    assert!(
        to_gateway(&out)
            .iter()
            .any(|m| matches!(m, Message::SessionEnded { reason, .. } if reason.contains("maintenance")))
    );
    assert!(rig.agent.status().maintenance);
    // The service stopping afterwards owes nothing more.
    let out = rig.step(Input::ServiceStopped { session: a });
    assert!(to_gateway(&out).is_empty());
    // A locked container refuses new sessions, with the reason.
    let out = rig.gateway_says(Message::StartSession {
        session: b,
        service: ServiceName::new("render").unwrap(),
        consumer: AccountId::new("consumer:c").unwrap(),
        price: "3.6".parse().unwrap(),
    });
    assert!(
        to_gateway(&out)
            .iter()
            .any(|m| matches!(m, Message::SessionFailed { reason, .. } if reason.contains("maintenance")))
    );
    let out = rig.step(Input::Operator(OperatorCommand::MaintenanceOff));
    assert!(out.iter().any(|o| matches!(o, Output::Net(Net::Send { msg: Message::Maintenance { on: false }, .. }))));
    assert!(!rig.agent.status().maintenance);
}

#[test]
fn draining_keeps_sessions_running_until_their_consumers_stop_them() {
    let mut rig = Rig::new();
    let s = SessionId([8; 16]);
    rig.start(s);
    let out = rig.step(Input::Operator(OperatorCommand::MaintenanceOn { drain: true }));
    assert!(!out.iter().any(|o| matches!(o, Output::StopService { .. })));
    assert_eq!(rig.agent.sessions().len(), 1);
    assert_eq!(usage(&rig.advance(1000)).len(), 1, "a draining session is still metered");
}

#[test]
fn a_new_price_is_offered_by_registering_again() {
    let mut rig = Rig::new();
    let price: PricePerHour = "9.5".parse().unwrap();
    let out = rig.step(Input::Operator(OperatorCommand::SetPrice(price)));
    assert!(
        out.iter().any(|o| matches!(o, Output::Net(Net::Send { msg: Message::Register(r), .. }) if r.price == price))
    );
    assert_eq!(rig.agent.status().price, price);
}

// --- challenges and evaluations never pile up (issue 14)

/// Two registrations naming this container's address make a checker
/// challenge it for two other containers: it refuses both at once, without
/// computing, and takes its own next challenge at once.
#[test]
fn challenges_for_other_containers_leave_it_free_for_its_own() {
    let mut rig = Rig::new();
    let (k1, k2) = (Identity::from_secret([0x41; 32]).id(), Identity::from_secret([0x42; 32]).id());
    for (id, other) in [(1, k1), (2, k2)] {
        let out = rig.challenge(checker(0), id, other);
        assert!(!computes(&out, id), "{out:?}");
        let why = refusal(&out, id).unwrap_or_else(|| panic!("expected a refusal, found {out:?}"));
        assert!(why.starts_with("wrong_node") && why.contains(&other.to_string()), "{why}");
    }
    let out = rig.challenge(checker(0), 3, me());
    assert!(computes(&out, 3) && refusal(&out, 3).is_none(), "{out:?}");
    // Its own commitment follows as soon as the computation does.
    let out = computed(&mut rig, checker(0), 3);
    assert!(
        matches!(
            out.as_slice(),
            [Output::Net(Net::Reply { conn: CHECKER_CONN, msg: Message::Commitment { challenge: 3, .. } })]
        ),
        "{out:?}"
    );
}

/// A challenge whose reveal never came is forgotten once its deadline and
/// the grace have passed: its place is free again, and a late reveal finds nothing.
#[test]
fn a_challenge_past_its_deadline_is_forgotten() {
    let mut rig = Rig::new();
    for id in 1..=MAX_CHALLENGES_PER_CHECKER as u64 {
        assert!(computes(&rig.challenge(checker(0), id, me()), id));
        computed(&mut rig, checker(0), id);
    }
    let out = rig.challenge(checker(0), 9, me());
    assert!(refusal(&out, 9).is_some_and(|r| r.contains("already working on 2")), "{out:?}");
    // The deadline and the grace themselves are still in time.
    rig.advance(DEADLINE_MS + DEADLINE_GRACE.as_millis() as u64);
    assert!(refusal(&rig.challenge(checker(0), 10, me()), 10).is_some());
    rig.advance(1);
    assert!(computes(&rig.challenge(checker(0), 11, me()), 11), "the expired challenges no longer count");
    let reveal = dci_proto::Reveal { challenge: 1, seed: [0; 32], rounds: 1, rows: vec![0], columns: 8 };
    let out = rig.says(checker(0), Message::Reveal(reveal));
    assert!(matches!(out.as_slice(), [Output::Rejected { reason, .. }] if reason.contains("unknown")), "{out:?}");
}

/// A cancelled challenge frees its place at once, whether it was still
/// computing (no commitment follows) or waiting for its reveal; a cancel
/// of another checker's challenge, or of an unknown one, changes nothing.
#[test]
fn a_cancelled_challenge_frees_its_place() {
    let mut rig = Rig::new();
    assert!(computes(&rig.challenge(checker(0), 1, me()), 1));
    assert!(computes(&rig.challenge(checker(0), 2, me()), 2));
    computed(&mut rig, checker(0), 2);
    // Another checker cannot cancel them.
    nothing(rig.says(checker(1), Message::ChallengeCancelled { challenge: 1 }));
    assert!(refusal(&rig.challenge(checker(0), 3, me()), 3).is_some());
    nothing(rig.says(checker(0), Message::ChallengeCancelled { challenge: 1 }));
    // No commitment to a cancelled challenge.
    nothing(computed(&mut rig, checker(0), 1));
    assert!(computes(&rig.challenge(checker(0), 4, me()), 4));
    nothing(rig.says(checker(0), Message::ChallengeCancelled { challenge: 2 }));
    assert!(computes(&rig.challenge(checker(0), 5, me()), 5));
    // An unknown one: nothing to forget.
    nothing(rig.says(checker(0), Message::ChallengeCancelled { challenge: 77 }));
}

/// Places are per checker: one checker's challenges never keep another's
/// out; an untrusted node's challenge is refused without a place or a reply.
#[test]
fn each_checker_has_its_own_places_and_strangers_none() {
    let mut rig = Rig::new();
    for id in 1..=MAX_CHALLENGES_PER_CHECKER as u64 {
        assert!(computes(&rig.challenge(checker(0), id, me()), id));
    }
    assert!(refusal(&rig.challenge(checker(0), 3, me()), 3).is_some());
    assert!(computes(&rig.challenge(checker(1), 3, me()), 3), "the other checker's challenge is taken");
    let stranger = Identity::from_secret([0x66; 32]).id();
    let out = rig.challenge(stranger, 4, me());
    assert!(
        matches!(out.as_slice(), [Output::Rejected { reason, .. }] if reason.contains("not a trusted checker")),
        "{out:?}"
    );
}

/// An evaluation whose `EvaluationDone` never comes is stopped after its
/// run time (and the grace), and its place freed; one whose service starts
/// only after it expired is stopped as it starts.
#[test]
fn an_evaluation_never_finished_is_stopped_after_its_run_time() {
    let mut rig = Rig::new();
    let session = session_started(&rig.evaluation(checker(0), 1, me(), 3_000));
    let out = rig.step(Input::ServiceStarted { session, endpoint: "http://127.0.0.1:9".into() });
    assert!(matches!(out.as_slice(), [Output::Net(Net::Reply { msg: Message::EvaluationReady { id: 1, .. }, .. })]));
    let never_started = session_started(&rig.evaluation(checker(0), 2, me(), 3_000));
    let out = rig.evaluation(checker(0), 3, me(), 3_000);
    assert!(
        matches!(out.as_slice(), [Output::Net(Net::Reply { msg: Message::EvaluationFailed { id: 3, reason }, .. })] if reason.contains(&format!("{MAX_EVALUATIONS_PER_CHECKER} evaluations"))),
        "{out:?}"
    );

    let grace = DEADLINE_GRACE.as_millis() as u64;
    let out = rig.advance(3_000 + grace);
    assert!(!out.iter().any(|o| matches!(o, Output::StopService { .. })), "still in time: {out:?}");
    let out = rig.advance(1);
    let stopped: Vec<_> = out.iter().filter(|o| matches!(o, Output::StopService { .. })).collect();
    assert!(matches!(stopped.as_slice(), [Output::StopService { session: s }] if *s == session), "{out:?}");
    let out = rig.step(Input::ServiceStarted { session: never_started, endpoint: "http://127.0.0.1:9".into() });
    assert!(matches!(out.as_slice(), [Output::StopService { session: s }] if *s == never_started), "{out:?}");
    nothing(rig.step(Input::ServiceStopped { session }));
    // Both places are free again.
    session_started(&rig.evaluation(checker(0), 4, me(), 3_000));
    session_started(&rig.evaluation(checker(0), 5, me(), 3_000));
}

/// An evaluation request naming another container is refused at once and
/// starts nothing; the checker's `EvaluationDone` or cancel stops one that runs.
#[test]
fn evaluations_for_other_containers_are_refused_and_done_ones_stopped() {
    let mut rig = Rig::new();
    let other = Identity::from_secret([0x41; 32]).id();
    let out = rig.evaluation(checker(0), 1, other, 3_000);
    assert!(
        matches!(out.as_slice(), [Output::Net(Net::Reply { msg: Message::EvaluationFailed { id: 1, reason }, .. })] if reason.starts_with("wrong_node")),
        "{out:?}"
    );
    for end in [Message::EvaluationDone { id: 2 }, Message::ChallengeCancelled { challenge: 2 }] {
        let session = session_started(&rig.evaluation(checker(1), 2, me(), 60_000));
        rig.step(Input::ServiceStarted { session, endpoint: "http://127.0.0.1:9".into() });
        let out = rig.says(checker(1), end.clone());
        assert!(matches!(out.as_slice(), [Output::StopService { session: s }] if *s == session), "{end:?}: {out:?}");
        rig.step(Input::ServiceStopped { session });
        // A second end is nothing to do.
        nothing(rig.says(checker(1), end));
    }
}

/// A state report about another container (whose registration names this
/// address) changes nothing here and asks for no re-registration.
#[test]
fn state_reports_about_another_container_are_ignored() {
    let mut rig = Rig::new();
    let other = Identity::from_secret([0x41; 32]).id();
    let transition = Transition {
        from: State::AwaitingInspection,
        to: State::ReinspectionRequired,
        actor: Actor::Checker,
        reason: "failed: wrong_node".into(),
        at: rig.now,
    };
    let out = rig.says(indexer(), Message::StateChanged { container: other, transition: transition.clone() });
    assert!(matches!(out.as_slice(), [Output::Rejected { .. }]), "{out:?}");
    assert_eq!(rig.agent.state(), None);
    let out = rig.says(indexer(), Message::StateChanged { container: me(), transition });
    assert!(out.iter().any(|o| matches!(o, Output::Net(Net::Send { msg: Message::Register(_), .. }))), "{out:?}");
    assert_eq!(rig.agent.state(), Some(State::ReinspectionRequired));
}

/// Issue 14: the indexer refused the registration (no container stake).
/// The operator sees why in the status until the indexer reports a state;
/// a refusal from a node that is not a trusted indexer is not taken.
#[test]
fn a_refused_registration_is_logged_and_shown_in_the_status() {
    let mut rig = Rig::new();
    let indexer = Identity::from_secret([2; 32]).id();
    let reason = "registration refused: expected a container stake of at least 100 ATH bonded by node:x, found 0 ATH";
    let refused = |from| Input::Net(Inbound { conn: ConnId(9), from, msg: Message::Refused { reason: reason.into() } });

    let out = rig.step(refused(rig.gateway.id()));
    assert!(matches!(out.as_slice(), [Output::Rejected { .. }]), "{out:?}");
    assert_eq!(rig.agent.status().refused, None);

    let out = rig.step(refused(indexer));
    assert!(matches!(out.as_slice(), [Output::Refused(r)] if r == reason), "{out:?}");
    assert_eq!(rig.agent.status().refused.as_deref(), Some(reason));

    // Admitted later (after bonding and registering again): cleared.
    let transition = dci_model::State::Configuring
        .transition(dci_model::State::AwaitingInspection, dci_model::Actor::Container, "registered", rig.now)
        .unwrap();
    rig.step(Input::Net(Inbound {
        conn: ConnId(9),
        from: indexer,
        msg: Message::StateChanged { container: me(), transition },
    }));
    assert_eq!(rig.agent.status().refused, None);
}

/// An agent the indexer has not admitted (refused: no bond yet) registers
/// again by itself, waiting longer each time, so a host is admitted once
/// its operator bonds, without a restart; once admitted it stops.
#[test]
fn a_host_not_admitted_registers_again_later_and_less_often() {
    let mut rig = Rig::new();
    let registers = |out: &[Output]| {
        out.iter().filter(|o| matches!(o, Output::Net(Net::Send { msg: Message::Register(_), .. }))).count()
    };
    let mut at = Vec::new();
    for s in 1..=80u64 {
        if registers(&rig.advance(1_000)) > 0 {
            at.push(s);
        }
    }
    assert_eq!(at, vec![10, 30, 70], "10 s, then 20 s, then 40 s later");
    let transition = dci_model::State::Configuring
        .transition(dci_model::State::AwaitingInspection, dci_model::Actor::Container, "registered", rig.now)
        .unwrap();
    let indexer = Identity::from_secret([2; 32]).id();
    rig.step(Input::Net(Inbound {
        conn: ConnId(9),
        from: indexer,
        msg: Message::StateChanged { container: me(), transition },
    }));
    for _ in 0..400 {
        assert_eq!(registers(&rig.advance(1_000)), 0, "admitted: no more registrations on the timer");
    }
}

/// The network file changed: the indexer moved, so the container registers
/// at its new address (and heartbeats there); a checker dropped from the
/// network may no longer challenge it, a gateway added may start sessions.
#[test]
fn new_peers_are_followed_and_trusted_from_then_on() {
    let mut rig = Rig::new();
    let newcomer = Identity::from_secret([44; 32]);
    let peers = |addr: &str| dci_agent::Peers {
        indexers: vec![Peer { id: indexer(), addr: addr.into() }],
        checkers: vec![checker(1)],
        gateways: vec![rig_gateway(), newcomer.id()],
    };
    nothing(rig.step(Input::Peers(peers("127.0.0.1:1"))));
    let out = rig.step(Input::Peers(peers("10.0.0.9:7100")));
    assert!(
        matches!(out.as_slice(), [Output::Net(Net::Send { addr, msg: Message::Register(_) })] if addr == "10.0.0.9:7100"),
        "{out:?}"
    );
    let out = rig.advance(1_000);
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Net(Net::Send { addr, msg: Message::Heartbeat(_) }) if addr == "10.0.0.9:7100")
        ),
        "{out:?}"
    );
    let out = rig.challenge(checker(0), 1, me());
    assert!(matches!(out.as_slice(), [Output::Rejected { .. }]), "{out:?}");
    assert!(computes(&rig.challenge(checker(1), 2, me()), 2));
    let out = rig.step(Input::Net(Inbound {
        conn: GATEWAY_CONN,
        from: newcomer.id(),
        msg: Message::StartSession {
            session: SessionId([9; 16]),
            service: ServiceName::new("render").unwrap(),
            consumer: AccountId::new("consumer:c").unwrap(),
            price: "3.6".parse().unwrap(),
        },
    }));
    assert!(out.iter().any(|o| matches!(o, Output::StartService { .. })), "{out:?}");
}

fn rig_gateway() -> NodeId {
    Identity::from_secret([1; 32]).id()
}

/// Messages of `kind` sent, by address.
fn sent_to<'a>(out: &'a [Output], kind: &str) -> Vec<&'a str> {
    out.iter()
        .filter_map(|o| match o {
            Output::Net(Net::Send { addr, msg }) if msg.kind() == kind => Some(addr.as_str()),
            _ => None,
        })
        .collect()
}

/// A state report of `from` → `to` about this container, from `indexer`.
fn report(rig: &mut Rig, indexer: NodeId, from: State, to: State) -> Vec<Output> {
    let transition = [Actor::Container, Actor::Checker, Actor::Indexer]
        .into_iter()
        .find_map(|actor| from.transition(to, actor, "test", rig.now).ok())
        .expect("a legal transition");
    rig.says(indexer, Message::StateChanged { container: me(), transition })
}

/// A rig whose network lists two indexers: the rig's own at 127.0.0.1:1
/// and a second one at 10.0.0.2:7100.
fn two_indexers() -> (Rig, NodeId) {
    let mut rig = Rig::new();
    let second = Identity::from_secret([45; 32]).id();
    let out = rig.step(Input::Peers(dci_agent::Peers {
        indexers: vec![
            Peer { id: indexer(), addr: "127.0.0.1:1".into() },
            Peer { id: second, addr: "10.0.0.2:7100".into() },
        ],
        checkers: vec![checker(0), checker(1)],
        gateways: vec![rig_gateway()],
    }));
    assert_eq!(sent_to(&out, "register"), vec!["10.0.0.2:7100"], "only the new indexer needs the registration");
    (rig, second)
}

/// Issue 15: a container registers and heartbeats with every indexer of
/// its network (each can serve a request), and keeps each one's view of it
/// apart: admitted at one, it keeps registering with the other on the
/// timer until that one reports a state too.
#[test]
fn every_indexer_gets_the_heartbeats_and_each_ones_state_is_kept_apart() {
    let (mut rig, second) = two_indexers();
    let out = rig.advance(1_000);
    assert_eq!(sent_to(&out, "heartbeat"), vec!["127.0.0.1:1", "10.0.0.2:7100"]);
    report(&mut rig, indexer(), State::Configuring, State::AwaitingInspection);
    let status = rig.agent.status();
    assert_eq!(
        status.indexers.iter().map(|i| i.state).collect::<Vec<_>>(),
        vec![Some(State::AwaitingInspection), None]
    );
    let mut registered = Vec::new();
    for _ in 0..40 {
        registered.extend(sent_to(&rig.advance(1_000), "register").into_iter().map(str::to_owned));
    }
    assert!(!registered.is_empty() && registered.iter().all(|a| a == "10.0.0.2:7100"), "{registered:?}");
    report(&mut rig, second, State::Configuring, State::AwaitingInspection);
    for _ in 0..400 {
        assert!(sent_to(&rig.advance(1_000), "register").is_empty(), "admitted by both: no more registrations");
    }
    // The operator's maintenance lock reaches both.
    let out = rig.step(Input::Operator(dci_agent::OperatorCommand::MaintenanceOn { drain: true }));
    assert_eq!(sent_to(&out, "maintenance"), vec!["127.0.0.1:1", "10.0.0.2:7100"]);
}

/// Issue 15: one indexer asking for a fresh inspection (its view only) gets
/// the registration again; the other is not bothered.
#[test]
fn reinspection_asked_by_one_indexer_registers_there_only() {
    let (mut rig, second) = two_indexers();
    report(&mut rig, indexer(), State::Configuring, State::AwaitingInspection);
    report(&mut rig, second, State::Configuring, State::AwaitingInspection);
    report(&mut rig, second, State::AwaitingInspection, State::Ready);
    let out = report(&mut rig, second, State::Ready, State::ReinspectionRequired);
    assert_eq!(sent_to(&out, "register"), vec!["10.0.0.2:7100"]);
    assert_eq!(rig.agent.status().indexers[0].state, Some(State::AwaitingInspection));
}

/// Issue 15: an indexer that admitted the container and then no longer
/// knows it (restarted without its registry: it answers the heartbeat with
/// `Unregistered`) gets the registration again at once, so it rebuilds its
/// view within one heartbeat; one that never admitted it gets it on the
/// timer as before. The notice changes nothing else: not the operator's
/// refusal reason, not the other indexer's view.
#[test]
fn an_indexer_that_lost_the_container_gets_its_registration_again_at_once() {
    let (mut rig, second) = two_indexers();
    let out = rig.says(second, Message::Unregistered);
    assert!(sent_to(&out, "register").is_empty(), "never admitted there: the timer registers again");
    report(&mut rig, indexer(), State::Configuring, State::AwaitingInspection);
    report(&mut rig, second, State::Configuring, State::AwaitingInspection);
    let out = rig.says(second, Message::Unregistered);
    assert_eq!(sent_to(&out, "register"), vec!["10.0.0.2:7100"]);
    let status = rig.agent.status();
    assert_eq!(
        status.indexers.iter().map(|i| i.state).collect::<Vec<_>>(),
        vec![Some(State::AwaitingInspection), None]
    );
    assert_eq!(status.refused, None);
    // A second notice before it reports a state again: no storm.
    assert!(sent_to(&rig.says(second, Message::Unregistered), "register").is_empty());
    // Nobody else may say it.
    let out = rig.says(checker(0), Message::Unregistered);
    assert!(matches!(out.as_slice(), [Output::Rejected { .. }]), "{out:?}");
    assert_eq!(rig.agent.status().indexers[0].state, Some(State::AwaitingInspection));
}

/// Issue 15: an indexer dropped from the network file is no longer sent
/// anything, and its state reports are refused.
#[test]
fn an_indexer_dropped_from_the_network_is_forgotten() {
    let (mut rig, second) = two_indexers();
    rig.step(Input::Peers(dci_agent::Peers {
        indexers: vec![Peer { id: indexer(), addr: "127.0.0.1:1".into() }],
        checkers: vec![checker(0), checker(1)],
        gateways: vec![rig_gateway()],
    }));
    assert_eq!(sent_to(&rig.advance(1_000), "heartbeat"), vec!["127.0.0.1:1"]);
    let out = report(&mut rig, second, State::Configuring, State::AwaitingInspection);
    assert!(matches!(out.as_slice(), [Output::Rejected { .. }]), "{out:?}");
    assert_eq!(rig.agent.state(), None);
}
