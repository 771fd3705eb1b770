//! Fixtures shared by the integration tests.
#![allow(dead_code)]

use dci_indexer::{Config, Container, ContainerRecord, Indexer, Input, Output, REPUTATION_START};
use dci_model::{
    AccountId, Amount, ContainerSpec, GeoPoint, GpuSpec, MatchRequest, NodeId, PricePerHour, ServiceName, SessionId,
    State, Timestamp,
};
use dci_proto::{ConnId, Heartbeat, Inbound, InspectionKind, Message, Net, Registration, Verdict};

pub const CHECKER: NodeId = NodeId([0xc0; 32]);
pub const GATEWAY: NodeId = NodeId([0x9a; 32]);
pub const CHECKER_ADDR: &str = "checker.test:7400";

pub fn node(n: u8) -> NodeId {
    NodeId([n; 32])
}

pub fn session(n: u8) -> SessionId {
    SessionId([n; 16])
}

pub fn config() -> Config {
    Config::new(CHECKER_ADDR, vec![CHECKER], vec![GATEWAY])
}

pub fn city(name: &str) -> GeoPoint {
    match name {
        "lisbon" => GeoPoint::new(38.72, -9.14),
        "frankfurt" => GeoPoint::new(50.11, 8.68),
        "virginia" => GeoPoint::new(38.95, -77.45),
        "tokyo" => GeoPoint::new(35.68, 139.69),
        other => panic!("no city {other}"),
    }
    .unwrap()
}

pub fn svc(s: &str) -> ServiceName {
    ServiceName::new(s).unwrap()
}

/// Price in thousandths of an ATH per hour.
pub fn milli_ath(n: u64) -> PricePerHour {
    PricePerHour(Amount(n as u128 * 10u128.pow(15)))
}

pub fn gpu(model: &str, count: u32, vram_gib: u32) -> Option<GpuSpec> {
    Some(GpuSpec { model: model.into(), count, vram_gib, simulated: false })
}

/// A large host in Frankfurt: 4 x H100 94 GiB, 64 cores, 512 GiB RAM, 4 TB, 10 Gbit/s.
pub fn big_spec() -> ContainerSpec {
    ContainerSpec {
        gpu: gpu("NVIDIA H100", 4, 94),
        cpu_cores: 64,
        ram_gib: 512,
        disk_gib: 4000,
        bandwidth_up_mbps: 10_000,
        bandwidth_down_mbps: 10_000,
        location: city("frankfurt"),
    }
}

pub fn registration(spec: ContainerSpec, services: &[&str], price: PricePerHour, slots: u32) -> Registration {
    Registration {
        addr: "container.test:7500".into(),
        spec,
        services: services.iter().map(|s| svc(s)).collect(),
        price,
        slots,
        payout: AccountId::new("provider:test").unwrap(),
    }
}

pub fn net(from: NodeId, msg: Message) -> Input {
    Input::Net(Inbound { conn: ConnId(u64::from(from.0[0])), from, msg })
}

pub fn register(from: NodeId, reg: Registration) -> Input {
    net(from, Message::Register(reg))
}

pub fn heartbeat(from: NodeId, sessions: u32) -> Input {
    net(from, Message::Heartbeat(Heartbeat { seq: 0, sessions, warm: vec![] }))
}

/// A verdict placeholder: [`Feed::feed`] fills in the inspection in flight.
pub const IN_FLIGHT: u64 = u64::MAX;

/// A verdict on whatever inspection of `container` is in flight when it is
/// fed (see [`Feed`]).
pub fn verdict(from: NodeId, container: NodeId, passed: bool) -> Input {
    verdict_for(from, container, IN_FLIGHT, InspectionKind::Registration, passed)
}

/// A verdict for inspection `request`.
pub fn verdict_for(from: NodeId, container: NodeId, request: u64, kind: InspectionKind, passed: bool) -> Input {
    let reason = if passed { "capacity proof ok" } else { "capacity proof wrong" };
    let capacity = passed.then(|| dci_proto::VerifiedCapacity {
        class: "cpu".into(),
        devices: 1,
        n: 64,
        units: 1,
        simulated: false,
    });
    let v = Verdict { request, kind, container, challenge: 1, passed, reason: reason.into(), compute_ms: 10, capacity };
    net(from, Message::Verdict(v))
}

/// `handle`, with verdict placeholders answering the inspection in flight
/// (as a checker does); without one in flight the placeholder stays, and the
/// indexer refuses it as stale.
pub trait Feed {
    fn feed(&mut self, now: Timestamp, input: Input) -> Vec<Output>;
}

impl Feed for Indexer {
    fn feed(&mut self, now: Timestamp, mut input: Input) -> Vec<Output> {
        if let Input::Net(Inbound { msg: Message::Verdict(v), .. }) = &mut input
            && v.request == IN_FLIGHT
            && let Some((id, kind)) = self.inspection(&v.container)
        {
            v.request = id;
            v.kind = kind;
        }
        self.handle(now, input)
    }
}

pub fn match_req(from: NodeId, s: SessionId, request: MatchRequest) -> Input {
    net(from, Message::Match { request_id: 7, session: s, request })
}

pub fn release(from: NodeId, s: SessionId) -> Input {
    net(from, Message::Release { session: s })
}

/// One word per output, for data-driven expectations:
/// `persist`, `forget`, `rejected`, `send:<kind>`, `reply:<kind>`.
pub fn summary(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .map(|o| match o {
            Output::Persist(_) => "persist".to_owned(),
            Output::Forget(_) => "forget".to_owned(),
            Output::Rejected { .. } => "rejected".to_owned(),
            Output::Net(Net::Send { msg, .. }) => format!("send:{}", msg.kind()),
            Output::Net(Net::Reply { msg, .. }) => format!("reply:{}", msg.kind()),
        })
        .collect()
}

/// A container built directly (for the pure matcher), Healthy and fresh at `now`.
pub fn container(id: u8, spec: ContainerSpec, services: &[&str], price: PricePerHour, now: Timestamp) -> Container {
    Container {
        record: ContainerRecord {
            id: node(id),
            registration: registration(spec, services, price, 4),
            state: State::Healthy,
            reputation: REPUTATION_START,
            transitions: Vec::new(),
            verdicts: Vec::new(),
            verified: None,
            ever_passed: false,
        },
        last_seen: now,
        last_heartbeat: Some(now),
        reported_sessions: 0,
        reserved: 0,
        warm: Vec::new(),
    }
}
