//! The offers filter language (R-IX5).
//!
//! A filter is a list of terms separated by spaces; every term must hold.
//!
//! ```text
//! filter := term*
//! term   := key op value          (no spaces inside a term, unless quoted)
//! op     := "=" | "<" | "<=" | ">" | ">="
//! value  := text without spaces | "text in double quotes"
//! ```
//!
//! Example: `gpu=H100 vram>=80 rtt<30 price<=2.5 service=render near=38.7,-9.1`.
//!
//! | key | value | operators | meaning |
//! |---|---|---|---|
//! | `gpu` | text, e.g. `H100`, `"RTX 4090"` | `=` | GPU model contains it (ASCII case-insensitive); CPU-only hosts never match |
//! | `count` (`gpus`) | integer | all | number of GPUs (0 for CPU-only) |
//! | `vram` | integer GiB (`80`, `80GiB`, `80g`) | all | memory per GPU (0 for CPU-only) |
//! | `cpu` | integer | all | CPU cores |
//! | `ram` | integer GiB | all | RAM |
//! | `disk` | integer GiB | all | disk |
//! | `up`, `down` | integer Mbit/s (`1000`, `1000mbps`) | all | bandwidth |
//! | `rtt` | integer ms (`30`, `30ms`) | all | estimated round trip from `near` (requires `near=`) |
//! | `price` | decimal ATH per hour (`2.5`, `2.5ath`, `2.5ath/h`) | all | price of one slot; exact, no rounding |
//! | `rep` (`reputation`) | integer 0..=1000 | all | checker reputation |
//! | `service` | a service name, e.g. `render` | `=` | pre-installed service |
//! | `state` | `available` (default), `any`, or a state (`healthy`, `ready`, `reinspection-required`, …) | `=` | which containers to list |
//! | `near` | `LAT,LON` in degrees | `=` | the consumer's location, for `rtt` and sorting by RTT |
//!
//! `available` means what a match could get right now: `ready` or `healthy`,
//! heartbeat fresh, at least one free slot. Strict comparisons are turned
//! into inclusive bounds on the integer (or base-unit) value: `rtt<30` is
//! `rtt<=29`, `price<2.5` is at most 2.5 ATH minus one base unit. A numeric
//! key may appear twice to give a range (`vram>=24 vram<=48`); other keys
//! only once.
//!
//! Errors name the term (1-based) and its column, and say what was expected:
//! `at 2: unknown key "vrm"; expected one of gpu, count, vram, …`.

use crate::index::contains_ignore_ascii_case;
use dci_model::{Amount, GeoPoint, MatchRequest, Policy, PricePerHour, ServiceName, State};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The keys, in the order shown in error messages.
pub const KEYS: &str = "gpu, count, vram, cpu, ram, disk, up, down, rtt, price, rep, service, state, near";

/// Inclusive lower and upper bounds (`None`: unbounded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds<T> {
    /// Smallest accepted value.
    pub min: Option<T>,
    /// Largest accepted value.
    pub max: Option<T>,
}

impl<T: Ord + Copy> Bounds<T> {
    /// Does `v` lie within the bounds?
    pub fn contains(&self, v: T) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }

    /// True when nothing is bounded.
    pub fn is_any(&self) -> bool {
        self.min.is_none() && self.max.is_none()
    }

    fn at_least(&mut self, v: T) {
        self.min = Some(self.min.map_or(v, |m| m.max(v)));
    }

    fn at_most(&mut self, v: T) {
        self.max = Some(self.max.map_or(v, |m| m.min(v)));
    }
}

/// Which containers a filter lists, by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateFilter {
    /// Matchable now: `ready`/`healthy`, heartbeat fresh, a free slot.
    #[default]
    Available,
    /// Every container.
    Any,
    /// Containers in this state.
    Is(State),
}

/// A parsed filter: a typed query over containers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Required pre-installed service.
    pub service: Option<ServiceName>,
    /// GPU model substring.
    pub gpu: Option<String>,
    /// Number of GPUs.
    pub gpu_count: Bounds<u32>,
    /// VRAM per GPU, GiB.
    pub vram_gib: Bounds<u32>,
    /// CPU cores.
    pub cpu_cores: Bounds<u32>,
    /// RAM, GiB.
    pub ram_gib: Bounds<u32>,
    /// Disk, GiB.
    pub disk_gib: Bounds<u32>,
    /// Upload bandwidth, Mbit/s.
    pub up_mbps: Bounds<u32>,
    /// Download bandwidth, Mbit/s.
    pub down_mbps: Bounds<u32>,
    /// Estimated RTT from `near`, ms.
    pub rtt_ms: Bounds<u32>,
    /// Price per slot-hour.
    pub price: Bounds<PricePerHour>,
    /// Checker reputation.
    pub reputation: Bounds<u32>,
    /// Which states.
    pub state: StateFilter,
    /// The consumer's location.
    pub near: Option<GeoPoint>,
}

/// A filter that does not parse: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at {term}: {kind}")]
pub struct FilterError {
    /// The term, counted from 1.
    pub term: usize,
    /// Its first character, counted from 1 (for pointing at it).
    pub column: usize,
    /// The term as written.
    pub text: String,
    /// What is wrong.
    pub kind: FilterErrorKind,
}

/// What is wrong with a term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterErrorKind {
    /// Not `key op value`.
    #[error("expected a term like vram>=80 (key, operator, value), found {0:?}")]
    Malformed(String),
    /// An unknown key.
    #[error("unknown key {0:?}; expected one of {KEYS}")]
    UnknownKey(String),
    /// An operator the key does not take.
    #[error("{key} takes {allowed}, found {op:?}")]
    Operator {
        /// The key.
        key: &'static str,
        /// The operator given.
        op: String,
        /// The operators it takes.
        allowed: &'static str,
    },
    /// A value of the wrong form.
    #[error("{key}: expected {expected}, found {found:?}")]
    Value {
        /// The key.
        key: &'static str,
        /// What the value should look like.
        expected: &'static str,
        /// The value given.
        found: String,
    },
    /// A key that may appear once appears twice.
    #[error("{0} is given twice")]
    Duplicate(&'static str),
    /// `rtt` without `near`.
    #[error("rtt needs the consumer's location: add near=LAT,LON")]
    RttNeedsNear,
    /// A `"` without its closing `"`.
    #[error("expected a closing \", found the end of the filter")]
    Quote,
    /// The filter cannot become a match request (see [`Filter::to_request`]).
    #[error("{0}")]
    NotARequest(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// A term split into its parts, with its position.
struct Term<'a> {
    index: usize,
    column: usize,
    text: &'a str,
}

impl Term<'_> {
    fn error(&self, kind: FilterErrorKind) -> FilterError {
        FilterError { term: self.index, column: self.column, text: self.text.to_owned(), kind }
    }
}

/// Splits on whitespace outside double quotes; columns count characters from 1.
fn terms(s: &str) -> Result<Vec<Term<'_>>, FilterError> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().enumerate().peekable();
    while let Some(&(col, (start, c))) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut quoted = false;
        let mut end = s.len();
        while let Some(&(_, (i, c))) = chars.peek() {
            if c.is_whitespace() && !quoted {
                end = i;
                break;
            }
            if c == '"' {
                quoted = !quoted;
            }
            chars.next();
        }
        let term = Term { index: out.len() + 1, column: col + 1, text: &s[start..end] };
        if quoted {
            return Err(term.error(FilterErrorKind::Quote));
        }
        out.push(term);
    }
    Ok(out)
}

impl Filter {
    /// Parses a filter (see the module docs).
    pub fn parse(s: &str) -> Result<Filter, FilterError> {
        let mut f = Filter::default();
        let mut seen: Vec<&'static str> = Vec::new();
        let mut rtt_term = None;
        for term in terms(s)? {
            let t = term.text;
            let key_len = t.bytes().take_while(|b| b.is_ascii_alphabetic() || *b == b'_').count();
            let (key, rest) = t.split_at(key_len);
            let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
                (Op::Le, v)
            } else if let Some(v) = rest.strip_prefix(">=") {
                (Op::Ge, v)
            } else if let Some(v) = rest.strip_prefix('<') {
                (Op::Lt, v)
            } else if let Some(v) = rest.strip_prefix('>') {
                (Op::Gt, v)
            } else if let Some(v) = rest.strip_prefix('=') {
                (Op::Eq, v)
            } else {
                return Err(term.error(FilterErrorKind::Malformed(t.to_owned())));
            };
            if key.is_empty() {
                return Err(term.error(FilterErrorKind::Malformed(t.to_owned())));
            }
            let value = unquote(value);
            let key = canonical(key).ok_or_else(|| term.error(FilterErrorKind::UnknownKey(key.to_owned())))?;
            let value_err =
                |expected: &'static str| term.error(FilterErrorKind::Value { key, expected, found: value.to_owned() });
            let only_eq = matches!(key, "gpu" | "service" | "state" | "near");
            if only_eq && op != Op::Eq {
                return Err(term.error(FilterErrorKind::Operator { key, op: op.text().into(), allowed: "only =" }));
            }
            if only_eq {
                if seen.contains(&key) {
                    return Err(term.error(FilterErrorKind::Duplicate(key)));
                }
                seen.push(key);
            }
            match key {
                "gpu" => {
                    if value.is_empty() {
                        return Err(value_err("a GPU model like H100"));
                    }
                    f.gpu = Some(value.to_owned());
                }
                "service" => {
                    f.service = Some(ServiceName::new(value).map_err(|_| value_err("a service name like render"))?);
                }
                "state" => f.state = parse_state(value).ok_or_else(|| value_err(STATES))?,
                "near" => f.near = Some(value.parse().map_err(|_| value_err("LAT,LON in degrees"))?),
                "price" => {
                    let v = parse_price(value).ok_or_else(|| value_err("a price in ATH per hour like 2.5"))?;
                    let below = || v.checked_sub(Amount(1)).map_err(|_| value_err("a price above 0 after <"));
                    let above = || v.checked_add(Amount(1)).map_err(|_| value_err("a smaller price after >"));
                    let b = &mut f.price;
                    match op {
                        Op::Eq => {
                            b.at_least(PricePerHour(v));
                            b.at_most(PricePerHour(v));
                        }
                        Op::Le => b.at_most(PricePerHour(v)),
                        Op::Ge => b.at_least(PricePerHour(v)),
                        Op::Lt => b.at_most(PricePerHour(below()?)),
                        Op::Gt => b.at_least(PricePerHour(above()?)),
                    }
                }
                _ => {
                    let (units, expected): (&[&str], _) = match key {
                        "vram" | "ram" | "disk" => (&["gib", "gb", "g"], "a whole number of GiB like 80"),
                        "up" | "down" => (&["mbps"], "a whole number of Mbit/s like 1000"),
                        "rtt" => (&["ms"], "a whole number of milliseconds like 30"),
                        _ => (&[], "a whole number"),
                    };
                    let v = parse_int(value, units).ok_or_else(|| value_err(expected))?;
                    if key == "rtt" {
                        rtt_term = Some(term.error(FilterErrorKind::RttNeedsNear));
                    }
                    let b = match key {
                        "count" => &mut f.gpu_count,
                        "vram" => &mut f.vram_gib,
                        "cpu" => &mut f.cpu_cores,
                        "ram" => &mut f.ram_gib,
                        "disk" => &mut f.disk_gib,
                        "up" => &mut f.up_mbps,
                        "down" => &mut f.down_mbps,
                        "rtt" => &mut f.rtt_ms,
                        _ => &mut f.reputation,
                    };
                    match op {
                        Op::Eq => {
                            b.at_least(v);
                            b.at_most(v);
                        }
                        Op::Le => b.at_most(v),
                        Op::Ge => b.at_least(v),
                        Op::Lt => b.at_most(v.checked_sub(1).ok_or_else(|| value_err("a number above 0 after <"))?),
                        Op::Gt => b.at_least(v.checked_add(1).ok_or_else(|| value_err("a smaller number after >"))?),
                    }
                }
            }
        }
        if let Some(err) = rtt_term
            && f.near.is_none()
        {
            return Err(err);
        }
        Ok(f)
    }

    /// The match request this filter describes, for `policy`.
    ///
    /// A request has a service and only lower bounds on resources, upper
    /// bounds on RTT and price, and is about available containers; anything
    /// else is refused with an error that says which term cannot be used.
    pub fn to_request(&self, policy: Policy) -> Result<MatchRequest, FilterError> {
        let refuse = |why: &str| FilterError {
            term: 0,
            column: 0,
            text: String::new(),
            kind: FilterErrorKind::NotARequest(why.to_owned()),
        };
        let service = self.service.clone().ok_or_else(|| refuse("a match request needs service=NAME"))?;
        let mins = [
            ("count", &self.gpu_count),
            ("vram", &self.vram_gib),
            ("cpu", &self.cpu_cores),
            ("ram", &self.ram_gib),
            ("disk", &self.disk_gib),
            ("up", &self.up_mbps),
            ("down", &self.down_mbps),
        ];
        for (key, b) in mins {
            if b.max.is_some() {
                return Err(refuse(&format!("a match request takes only lower bounds on {key} (>=, >)")));
            }
        }
        if self.rtt_ms.min.is_some() || self.price.min.is_some() {
            return Err(refuse("a match request takes only upper bounds on rtt and price (<=, <)"));
        }
        if !self.reputation.is_any() {
            return Err(refuse("a match request cannot bound the reputation; the policy weighs it"));
        }
        if self.state != StateFilter::Available {
            return Err(refuse("a match request is always about available containers"));
        }
        let mut r = MatchRequest::for_service(service);
        r.gpu_model = self.gpu.clone();
        r.gpu_count = self.gpu_count.min.unwrap_or(0);
        r.min_vram_gib = self.vram_gib.min.unwrap_or(0);
        r.min_cpu_cores = self.cpu_cores.min.unwrap_or(0);
        r.min_ram_gib = self.ram_gib.min.unwrap_or(0);
        r.min_disk_gib = self.disk_gib.min.unwrap_or(0);
        r.min_bandwidth_up_mbps = self.up_mbps.min.unwrap_or(0);
        r.min_bandwidth_down_mbps = self.down_mbps.min.unwrap_or(0);
        r.near = self.near;
        r.max_latency_ms = self.rtt_ms.max;
        r.max_price = self.price.max;
        r.policy = policy;
        Ok(r)
    }

    /// Whether a container's static data passes the filter's resource, price,
    /// reputation and service terms (state and RTT are checked by the caller).
    pub(crate) fn resources_ok(&self, c: &crate::Container) -> bool {
        let reg = &c.record.registration;
        let s = &reg.spec;
        let (count, vram) = s.gpu.as_ref().map_or((0, 0), |g| (g.count, g.vram_gib));
        let gpu_ok = match (&self.gpu, &s.gpu) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(w), Some(g)) => contains_ignore_ascii_case(&g.model, w),
        };
        gpu_ok
            && self.service.as_ref().is_none_or(|svc| reg.services.contains(svc))
            && self.gpu_count.contains(count)
            && self.vram_gib.contains(vram)
            && self.cpu_cores.contains(s.cpu_cores)
            && self.ram_gib.contains(s.ram_gib)
            && self.disk_gib.contains(s.disk_gib)
            && self.up_mbps.contains(s.bandwidth_up_mbps)
            && self.down_mbps.contains(s.bandwidth_down_mbps)
            && self.price.contains(reg.price)
            && self.reputation.contains(c.record.reputation)
    }
}

impl FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::parse(s)
    }
}

impl fmt::Display for StateFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateFilter::Available => f.write_str("available"),
            StateFilter::Any => f.write_str("any"),
            StateFilter::Is(s) => s.fmt(f),
        }
    }
}

const STATES: &str = "available, any, configuring, awaiting-inspection, ready, reinspection-required, healthy, maintenance-lock or quality-control";

fn canonical(key: &str) -> Option<&'static str> {
    Some(match key.to_ascii_lowercase().as_str() {
        "gpu" => "gpu",
        "count" | "gpus" => "count",
        "vram" => "vram",
        "cpu" => "cpu",
        "ram" => "ram",
        "disk" => "disk",
        "up" => "up",
        "down" => "down",
        "rtt" => "rtt",
        "price" => "price",
        "rep" | "reputation" => "rep",
        "service" => "service",
        "state" => "state",
        "near" => "near",
        _ => return None,
    })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)
}

fn parse_state(v: &str) -> Option<StateFilter> {
    match v {
        "available" => Some(StateFilter::Available),
        "any" => Some(StateFilter::Any),
        _ => State::ALL.into_iter().find(|s| s.to_string() == v).map(StateFilter::Is),
    }
}

/// An integer with an optional (case-insensitive) unit suffix.
fn parse_int(v: &str, units: &[&str]) -> Option<u32> {
    let lower = v.to_ascii_lowercase();
    let digits = units.iter().find_map(|u| lower.strip_suffix(u)).unwrap_or(&lower);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_price(v: &str) -> Option<Amount> {
    let lower = v.to_ascii_lowercase();
    let t = lower.strip_suffix("/h").unwrap_or(&lower);
    let t = t.strip_suffix("ath").unwrap_or(t);
    t.parse().ok()
}
