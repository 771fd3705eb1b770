//! The container core as the gateway and the operator see it: per-second
//! signed usage receipts, a session ending on its own with its final
//! receipt, and the operator's maintenance lock and price (R-AG4, R-AG5).

use std::time::Duration;

use dci_agent::{Agent, AgentConfig, Input, OperatorCommand, Output};
use dci_model::{AccountId, ContainerSpec, GeoPoint, PricePerHour, ServiceName, SessionId, Timestamp};
use dci_proto::{ConnId, Identity, Inbound, Message, Net, SignedReceipt};

const GATEWAY_CONN: ConnId = ConnId(7);

struct Rig {
    agent: Agent,
    gateway: Identity,
    now: Timestamp,
}

fn config(gateway: &Identity, indexer: &Identity) -> AgentConfig {
    AgentConfig {
        indexer_addr: "127.0.0.1:1".into(),
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
        indexers: vec![indexer.id()],
        checkers: vec![],
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
    rig.step(Input::Net(Inbound { conn: ConnId(9), from: indexer, msg: Message::StateChanged { transition } }));
    assert_eq!(rig.agent.status().refused, None);
}
