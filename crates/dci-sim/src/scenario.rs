//! A scenario is data: who is in the network, where, how they behave, and
//! how consumers use it. Read from TOML (`deny_unknown_fields` everywhere:
//! a misspelt key is an error, not a default); the named scenarios shipped
//! with the project are in `crates/dci-sim/scenarios/`.

use dci_capacity::{Behaviour, TimingClass};
use dci_model::{GeoPoint, PricePerHour, ServiceName};
use serde::Deserialize;

/// The scenarios shipped with the project, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("small", include_str!("../scenarios/small.toml")),
    ("indexer-outage", include_str!("../scenarios/indexer-outage.toml")),
];

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The TOML does not parse or has an unknown key.
    #[error("scenario: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range.
    #[error("scenario: {field}: expected {expected}, found {found}")]
    Invalid {
        /// The field.
        field: String,
        /// What is allowed.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// No shipped scenario has this name.
    #[error("scenario: expected one of {known}, found {found:?}")]
    Unknown {
        /// The names shipped.
        known: String,
        /// What was asked.
        found: String,
    },
}

fn invalid(field: impl Into<String>, expected: &'static str, found: impl ToString) -> ScenarioError {
    ScenarioError::Invalid { field: field.into(), expected, found: found.to_string() }
}

/// A whole scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name (in the report and every epoch seed).
    pub name: String,
    /// Simulated hours when the caller does not say.
    pub hours: f64,
    /// Length of a reward epoch, minutes.
    pub epoch_minutes: u64,
    /// Seats of each epoch's committee.
    pub committee_size: usize,
    /// The checkers' largest challenge dimension: challenges are computed
    /// for real at this size (see the crate docs for what that changes).
    pub challenge_n: u32,
    /// Mean interval between an indexer's random standby inspections of one
    /// idle container, minutes.
    pub standby_every_minutes: u64,
    /// Container stake each host bonds, ATH.
    pub container_stake_ath: u64,
    /// Checker stake each checker bonds, ATH.
    pub checker_stake_ath: u64,
    /// The network model.
    pub network: NetworkModel,
    /// The gateway (one; it holds the ledger and coordinates the committee).
    pub gateway: Place,
    /// The indexers.
    pub indexers: Vec<Place>,
    /// The checkers.
    pub checkers: Vec<Place>,
    /// Groups of identical container hosts.
    pub hosts: Vec<HostGroup>,
    /// The consumers.
    pub users: Users,
    /// Nodes that go dark or crash for a while.
    #[serde(default)]
    pub outages: Vec<Outage>,
}

/// A node (or some hosts of a group) out for a while.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// An indexer's, a checker's or a host group's name.
    pub node: String,
    /// For a host group: how many of its hosts (the first ones).
    #[serde(default = "one")]
    pub count: u32,
    /// `dark`: the node runs on but nothing reaches it or leaves it (its
    /// network is cut); `crash`: the process is gone (connections to it are
    /// refused) and at the end restarts: a host afresh, an indexer from
    /// the records it persisted, a checker with a new seed.
    pub kind: OutageKind,
    /// When it starts, simulated minutes from the start.
    pub from_minutes: f64,
    /// How long it lasts, minutes.
    pub minutes: f64,
}

/// How a node is out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutageKind {
    /// Cut off from the network, still running.
    Dark,
    /// Gone, then restarted.
    Crash,
    /// A host's operator locks it for maintenance (running sessions move
    /// elsewhere) and unlocks it at the end.
    Maintenance,
}

/// How messages travel.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkModel {
    /// Multiplies the round trip the indexer estimates from great-circle
    /// distance (`GeoPoint::estimated_rtt_ms`); a message takes half of it.
    pub fibre_factor: f64,
    /// Each message waits a further uniform 0..=jitter_ms.
    pub jitter_ms: u64,
    /// Fixed cost of one hop (serialisation, the receiver's queue), ms.
    pub hop_ms: u64,
}

/// A node's place.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Place {
    /// A name for the report.
    pub name: String,
    /// Latitude, longitude.
    pub at: (f64, f64),
}

/// `count` hosts alike.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostGroup {
    /// A name for the report.
    pub name: String,
    /// How many.
    pub count: u32,
    /// Latitude, longitude (every host of the group there).
    pub at: (f64, f64),
    /// GPU model as the driver reports it; absent: a CPU host.
    #[serde(default)]
    pub gpu: Option<String>,
    /// GPUs per host.
    #[serde(default = "one")]
    pub gpu_count: u32,
    /// Memory per GPU, GiB.
    #[serde(default)]
    pub vram_gib: u32,
    /// CPU cores.
    pub cpu_cores: u32,
    /// RAM, GiB.
    pub ram_gib: u32,
    /// Price per slot-hour, ATH (decimal text).
    pub price_ath: String,
    /// Concurrent sessions.
    pub slots: u32,
    /// Pre-installed services.
    pub services: Vec<String>,
    /// How it plays capacity challenges: `honest` or one of the checker's
    /// known cheats (`wrong-product`, `replay`, `change-rows-after-commit`,
    /// `dark`, `slower-class`).
    #[serde(default = "honest")]
    pub behaviour: String,
    /// The class of hardware it really has, for `slower-class` (default CPU).
    #[serde(default)]
    pub real_class: Option<String>,
    /// When the group's hosts join the network, simulated minutes from the
    /// start (default: at the start).
    #[serde(default)]
    pub join_minutes: f64,
}

fn one() -> u32 {
    1
}

fn honest() -> String {
    "honest".into()
}

/// The consumers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    /// Funded accounts (each deploy is made by one drawn at random).
    pub accounts: u32,
    /// What each account starts with, ATH.
    pub funds_ath: u64,
    /// Deploys per simulated hour, the whole network (Poisson arrivals).
    pub deploys_per_hour: f64,
    /// Mean session length, minutes (exponential), before the user stops it.
    pub session_minutes: f64,
    /// Hours of budget each deploy escrows.
    pub budget_hours: u32,
    /// Services asked for, drawn uniformly.
    pub services: Vec<String>,
    /// Where users are, drawn uniformly (each request is `near` it).
    pub at: Vec<(f64, f64)>,
    /// How long a host takes to start a service, ms (uniform in the range).
    pub start_ms: (u64, u64),
    /// Match policies users ask for, drawn uniformly (`cheapest`,
    /// `best-ux`, `balanced`); none: the consumer's default.
    #[serde(default)]
    pub policies: Vec<dci_model::Policy>,
}

impl Scenario {
    /// Parses and checks a scenario.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// A shipped scenario by name, or a TOML file's contents.
    pub fn named(name: &str) -> Result<Scenario, ScenarioError> {
        match BUILTIN.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => Scenario::from_toml(text),
            None => Err(ScenarioError::Unknown {
                known: BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
                found: name.into(),
            }),
        }
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        if !(self.hours > 0.0 && self.hours.is_finite()) {
            return Err(invalid("hours", "a positive number", self.hours));
        }
        if self.epoch_minutes == 0 {
            return Err(invalid("epoch_minutes", "at least 1", 0));
        }
        if self.standby_every_minutes == 0 {
            return Err(invalid("standby_every_minutes", "at least 1", 0));
        }
        dci_capacity::check_dimension(self.challenge_n)
            .map_err(|_| invalid("challenge_n", "1..=16384", self.challenge_n))?;
        if self.indexers.is_empty() {
            return Err(invalid("indexers", "at least one", 0));
        }
        if self.checkers.is_empty() || self.committee_size == 0 || self.committee_size > self.checkers.len() {
            return Err(invalid("committee_size", "1..=the number of checkers", self.committee_size));
        }
        if !(self.network.fibre_factor >= 1.0 && self.network.fibre_factor.is_finite()) {
            return Err(invalid("network.fibre_factor", "at least 1", self.network.fibre_factor));
        }
        for p in std::iter::once(&self.gateway).chain(&self.indexers).chain(&self.checkers) {
            point(&format!("{}.at", p.name), p.at)?;
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let f = |name: &str| format!("hosts[{i}].{name}");
            point(&f("at"), h.at)?;
            h.price()?;
            h.behaviour()?;
            if !(h.join_minutes >= 0.0 && h.join_minutes.is_finite()) {
                return Err(invalid(f("join_minutes"), "a number >= 0", h.join_minutes));
            }
            if h.slots == 0 {
                return Err(invalid(f("slots"), "at least 1", 0));
            }
            for s in &h.services {
                service(&f("services"), s)?;
            }
        }
        let u = &self.users;
        if u.accounts == 0 {
            return Err(invalid("users.accounts", "at least 1", 0));
        }
        if !(u.deploys_per_hour >= 0.0 && u.deploys_per_hour.is_finite()) {
            return Err(invalid("users.deploys_per_hour", "a number >= 0", u.deploys_per_hour));
        }
        if !(u.session_minutes > 0.0 && u.session_minutes.is_finite()) {
            return Err(invalid("users.session_minutes", "a positive number", u.session_minutes));
        }
        if u.budget_hours == 0 {
            return Err(invalid("users.budget_hours", "at least 1", 0));
        }
        if u.services.is_empty() {
            return Err(invalid("users.services", "at least one service", "none"));
        }
        for s in &u.services {
            service("users.services", s)?;
        }
        for p in &u.at {
            point("users.at", *p)?;
        }
        for (i, o) in self.outages.iter().enumerate() {
            let f = |name: &str| format!("outages[{i}].{name}");
            let known = self.indexers.iter().chain(&self.checkers).any(|p| p.name == o.node)
                || self.hosts.iter().any(|h| h.name == o.node && o.count <= h.count);
            if !known {
                return Err(invalid(
                    f("node"),
                    "an indexer, a checker, or a host group with at least `count` hosts",
                    &o.node,
                ));
            }
            if o.kind == OutageKind::Maintenance && !self.hosts.iter().any(|h| h.name == o.node) {
                return Err(invalid(f("node"), "a host group (only hosts have maintenance)", &o.node));
            }
            if !(o.from_minutes >= 0.0 && o.from_minutes.is_finite()) {
                return Err(invalid(f("from_minutes"), "a number >= 0", o.from_minutes));
            }
            if !(o.minutes > 0.0 && o.minutes.is_finite()) {
                return Err(invalid(f("minutes"), "a positive number", o.minutes));
            }
        }
        if u.start_ms.0 > u.start_ms.1 {
            return Err(invalid("users.start_ms", "a range (low, high) with low <= high", format!("{:?}", u.start_ms)));
        }
        Ok(())
    }
}

fn point(field: &str, (lat, lon): (f64, f64)) -> Result<GeoPoint, ScenarioError> {
    GeoPoint::new(lat, lon).map_err(|e| invalid(field, "a latitude, longitude pair", e))
}

fn service(field: &str, s: &str) -> Result<ServiceName, ScenarioError> {
    ServiceName::new(s).map_err(|e| invalid(field, "a service name", e))
}

impl HostGroup {
    /// The price per slot-hour.
    pub fn price(&self) -> Result<PricePerHour, ScenarioError> {
        self.price_ath.parse().map_err(|e| invalid(format!("{}.price_ath", self.name), "an ATH amount", e))
    }

    /// The behaviour, by the name the capacity crate gives it.
    pub fn behaviour(&self) -> Result<Behaviour, ScenarioError> {
        let real = match &self.real_class {
            None => TimingClass::Cpu,
            Some(c) => class(c).ok_or_else(|| invalid(format!("{}.real_class", self.name), "a timing class", c))?,
        };
        Behaviour::ALL
            .iter()
            .map(|b| match b {
                Behaviour::SlowerClass { .. } => Behaviour::SlowerClass { real },
                other => *other,
            })
            .find(|b| b.name() == self.behaviour)
            .ok_or_else(|| invalid(format!("{}.behaviour", self.name), "honest or a known cheat", &self.behaviour))
    }

    /// Where the group is.
    pub fn location(&self) -> GeoPoint {
        GeoPoint::new(self.at.0, self.at.1).expect("validated")
    }

    /// Its services.
    pub fn service_names(&self) -> Vec<ServiceName> {
        self.services.iter().map(|s| ServiceName::new(s.as_str()).expect("validated")).collect()
    }
}

/// A timing class by its `Debug` name, case-insensitively (`cpu`, `h100`…).
fn class(name: &str) -> Option<TimingClass> {
    use TimingClass::*;
    [Cpu, ConsumerAmpere, ConsumerAda, A10L4, L40s, A100, H100, H200, Mi300x]
        .into_iter()
        .find(|c| format!("{c:?}").eq_ignore_ascii_case(name))
}

impl Place {
    /// Where it is.
    pub fn location(&self) -> GeoPoint {
        GeoPoint::new(self.at.0, self.at.1).expect("validated")
    }
}
