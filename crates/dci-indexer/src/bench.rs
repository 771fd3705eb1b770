//! `dci bench indexer`: matching and heartbeat ingestion at scale (R-PF1, R-PF2).
//!
//! The workload mimics a world-wide GPU cloud:
//!
//! - **Population** ([`population`]): GPUs from consumer cards (RTX 3060 …
//!   4090) through A10, L4, L40S, A100 40/80 GB to H100, H200 and MI300X, plus
//!   CPU-only hosts, with realistic shares and GPU counts (consumer cards
//!   mostly 1, data-centre cards 1–8); hosts clustered around 44 data-centre
//!   cities on every continent (most within ~30 km of the city, a third spread
//!   over ~250 km: homes and small farms); prices per GPU-hour by class, times
//!   the count, a regional factor and ±30 % provider spread, in steps of
//!   0.001 ATH; services by class (`render`, `llm`, `embeddings`, `training`,
//!   `transcode`, `inference`, one to three each); 1–8 slots; states mostly
//!   `healthy` (88 %), some `ready`, a few awaiting or failing inspection,
//!   locked or in quality control; reputations in steps of 50 around 650;
//!   1 % silent (heartbeat stale), some reporting a running session.
//! - **Requests** ([`requests`]): consumers near cities, asking for a service
//!   and mostly a GPU model or class (`H100`, `A100`, `4090`, `RTX`, …),
//!   sometimes a GPU count, VRAM, CPU or RAM, usually a location, often a
//!   latency bound (10–150 ms) and a budget; the three policies in equal
//!   shares.
//!
//! The run:
//!
//! 1. **Build**: the population is loaded with [`Indexer::restore`] (what a
//!    restarted indexer does), timed as `build_s`.
//! 2. **Heartbeat ingestion**: a producer thread sends heartbeats (batches of
//!    256 over a bounded channel, as the node's transport feeds its role
//!    task; drained batches are handed back for reuse) and this thread applies each with [`Indexer::handle`];
//!    `heartbeats_per_s` is heartbeats over this thread's wall time.
//! 3. **Matching**: the producer keeps sending heartbeats and this thread,
//!    the single owner of the indexer as in the node, applies
//!    `heartbeats_per_match` of them before each `Match` (about the ratio of a
//!    million containers heartbeating every second to 20,000 matches per
//!    second). Each `Match` goes through [`Indexer::handle`] and reserves a
//!    slot; sessions are released again after `session_window` further
//!    matches; a timer tick follows every `tick_every` matches (timed on its
//!    own: it also tightens the index). Only the `Match` calls are timed: `matches_per_s`, `p50_us`,
//!    `p99_us` are over the matches that found a container (the index's work;
//!    a request nothing can satisfy costs a linear pass to explain why, and
//!    is reported separately as `no_matches` and `no_match_mean_us`).
//! 4. **Oracle**: for `naive_matches` of those matches, spread evenly, the
//!    naive full scan ([`Indexer::evaluate_scan`]) runs first on the same
//!    state; `naive_matches_per_s` is its rate and `same_answers` says whether
//!    every sampled reply equalled the scan's answer.

use crate::{Config, ContainerRecord, IndexStats, Indexer, Input, Output, REPUTATION_MAX};
use dci_model::{
    AccountId, Amount, ContainerSpec, GeoPoint, GpuSpec, MatchRequest, NodeId, Policy, PricePerHour, ServiceName,
    SessionId, State, Timestamp,
};
use dci_proto::{ConnId, Heartbeat, Inbound, Message, Net, Registration};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchConfig {
    /// Registered containers.
    pub containers: usize,
    /// Seed of the population, the requests and the heartbeat stream.
    pub seed: u64,
    /// Timed matches through the index.
    pub matches: usize,
    /// Of those, how many are also answered by the naive scan and compared.
    pub naive_matches: usize,
    /// Heartbeats in the ingestion phase.
    pub heartbeats: usize,
    /// Heartbeats applied before each match in the matching phase.
    pub heartbeats_per_match: usize,
    /// A session is released this many matches after it was reserved.
    pub session_window: usize,
    /// A timer tick (the node sends one about every second) after this many
    /// matches.
    pub tick_every: usize,
}

impl BenchConfig {
    /// The defaults for `containers` containers: 100,000 matches (50 of them
    /// compared with the scan), 3 heartbeats per container (at least a
    /// million), 50 heartbeats per match, sessions held for 20,000 matches.
    pub fn new(containers: usize) -> Self {
        BenchConfig {
            containers,
            seed: 1,
            matches: 100_000,
            naive_matches: 50,
            heartbeats: (3 * containers).max(1_000_000),
            heartbeats_per_match: 50,
            session_window: 20_000,
            tick_every: 20_000,
        }
    }
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig::new(1_000_000)
    }
}

/// The results. The first eight fields are the ones the issue names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BenchReport {
    /// Registered containers.
    pub containers: u64,
    /// Matches per second through the index on one core (successful matches).
    pub matches_per_s: f64,
    /// Median match latency, µs.
    pub p50_us: f64,
    /// 99th percentile match latency, µs.
    pub p99_us: f64,
    /// Matches per second of the naive full scan, same state.
    pub naive_matches_per_s: f64,
    /// `matches_per_s / naive_matches_per_s`.
    pub speedup_vs_naive: f64,
    /// Heartbeats applied per second, arriving from another thread.
    pub heartbeats_per_s: f64,
    /// True when every sampled match equalled the scan's answer.
    pub same_answers: bool,
    /// Seconds to load the population into a fresh indexer.
    pub build_s: f64,
    /// Timed matches (successful and not).
    pub matches: u64,
    /// Matches that found nothing.
    pub no_matches: u64,
    /// Mean latency of a match that found nothing, µs (a linear pass explains it).
    pub no_match_mean_us: f64,
    /// Matches per second over all timed matches, including those that found nothing.
    pub all_matches_per_s: f64,
    /// 99.9th percentile match latency, µs.
    pub p999_us: f64,
    /// Slowest successful match, µs.
    pub max_us: f64,
    /// Per policy: successful matches, p50 and p99 in µs.
    pub by_policy: Vec<PolicyFigures>,
    /// Matches compared with the scan.
    pub compared: u64,
    /// Of those, how many differed (0 when `same_answers`).
    pub mismatches: u64,
    /// Heartbeats in the ingestion phase.
    pub heartbeats: u64,
    /// Heartbeats applied during the matching phase.
    pub heartbeats_during_matches: u64,
    /// Heartbeats per second applied during the matching phase (time in heartbeats only).
    pub heartbeats_per_s_while_matching: f64,
    /// Containers looked at per match, on average (sampled).
    pub mean_examined: f64,
    /// Index nodes looked at per match, on average (sampled).
    pub mean_nodes: f64,
    /// Ticks during the matching phase (they also tighten index summaries).
    pub ticks: u64,
    /// Longest tick, ms.
    pub tick_max_ms: f64,
    /// Index sizes after the run.
    pub index: IndexStats,
    /// Wall time of the whole run, seconds.
    pub total_s: f64,
    /// Peak resident memory of the process, MiB (Linux: `VmHWM`).
    pub peak_rss_mib: Option<f64>,
    /// Of the resident memory at the end, how much is in transparent huge
    /// pages, MiB (Linux: `AnonHugePages`).
    pub huge_pages_mib: Option<f64>,
}

/// Latency figures of one policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyFigures {
    /// The policy.
    pub policy: Policy,
    /// Successful matches.
    pub matches: u64,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Containers looked at per match, on average (sampled).
    pub mean_examined: f64,
    /// Index nodes looked at per match, on average (sampled).
    pub mean_nodes: f64,
}

fn policy_index(p: Policy) -> usize {
    match p {
        Policy::Cheapest => 0,
        Policy::BestUx => 1,
        Policy::Balanced => 2,
    }
}

/// The benchmark's start time (2023-11-14).
pub const T0: u64 = 1_700_000_000_000;
/// The gateway the benchmark matches as.
pub const GATEWAY: NodeId = NodeId([0x9a; 32]);

/// The indexer configuration of the benchmark (defaults, one gateway).
pub fn config() -> Config {
    Config::new("checker.bench:7400", vec![NodeId([0xc0; 32])], vec![GATEWAY])
}

/// Runs the benchmark.
pub fn run(cfg: &BenchConfig) -> BenchReport {
    let started = Instant::now();
    let mut rng = Rng::new(cfg.seed);
    let pop = population(cfg.containers, &mut rng);
    let hb_plan: Arc<Vec<(NodeId, u32)>> = Arc::new(pop.iter().map(|m| (m.record.id, m.reported)).collect());

    // 1. Build.
    let mut ix = Indexer::new(config());
    let t = Instant::now();
    let (stale, fresh): (Vec<_>, Vec<_>) = pop.into_iter().partition(|m| m.stale);
    ix.restore(stale.into_iter().map(|m| m.record).collect(), Timestamp(T0 - 10_000));
    ix.restore(fresh.into_iter().map(|m| m.record).collect(), Timestamp(T0));
    let build_s = t.elapsed().as_secs_f64();

    // 2. Heartbeat ingestion, then 3. matching, with one producer thread.
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel::<Vec<Inbound>>(64);
    let (back, returned) = mpsc::channel::<Vec<Inbound>>();
    let producer = {
        let (plan, stop, seed) = (hb_plan.clone(), stop.clone(), cfg.seed);
        std::thread::spawn(move || produce(&plan, seed, &tx, &returned, &stop))
    };
    let mut feed = Feed { rx, back, batch: Vec::new(), applied: 0 };
    let now = Timestamp(T0 + 1000);
    let t = Instant::now();
    for _ in 0..cfg.heartbeats {
        feed.apply_one(&mut ix, now);
    }
    let hb_s = t.elapsed().as_secs_f64();

    let requests = requests(cfg.matches, &mut rng);
    let every = cfg.matches.checked_div(cfg.naive_matches).map_or(usize::MAX, |e| e.max(1));
    let mut lat_ok: Vec<(Policy, u64)> = Vec::with_capacity(cfg.matches);
    let (mut no_matches, mut no_match_ns, mut all_ns) = (0u64, 0u64, 0u64);
    let (mut compared, mut mismatches, mut naive_ns) = (0u64, 0u64, 0u64);
    let (mut examined, mut nodes, mut sampled) = (0u64, 0u64, 0u64);
    let mut mixed_hb_ns = 0u64;
    // Per policy: containers examined, nodes, sampled searches.
    let mut per_policy_work = [(0u64, 0u64, 0u64); 3];
    let (mut ticks, mut tick_max_ns) = (0u64, 0u64);
    let hb_before = feed.applied;
    let mut live: std::collections::VecDeque<SessionId> = std::collections::VecDeque::new();
    for (i, request) in requests.into_iter().enumerate() {
        let now = Timestamp(T0 + 1000 + (i as u64 * 1000) / cfg.matches.max(1) as u64);
        let t = Instant::now();
        for _ in 0..cfg.heartbeats_per_match {
            feed.apply_one(&mut ix, now);
        }
        mixed_hb_ns += t.elapsed().as_nanos() as u64;
        let session = session_id(i as u64);
        let oracle = (i % every == every / 2).then(|| {
            let t = Instant::now();
            let answer = ix.evaluate_scan(now, &request, session);
            naive_ns += t.elapsed().as_nanos() as u64;
            answer
        });
        if i % 100 == 0 || oracle.is_some() {
            let (_, stats) = ix.evaluate_with_stats(now, &request, session);
            examined += u64::from(stats.examined);
            nodes += u64::from(stats.nodes);
            sampled += 1;
            let k = policy_index(request.policy);
            per_policy_work[k].0 += u64::from(stats.examined);
            per_policy_work[k].1 += u64::from(stats.nodes);
            per_policy_work[k].2 += 1;
        }
        let policy = request.policy;
        let input = Input::Net(Inbound {
            conn: ConnId(i as u64),
            from: GATEWAY,
            msg: Message::Match { request_id: i as u64, session, request },
        });
        let t = Instant::now();
        let out = ix.handle(now, input);
        let ns = t.elapsed().as_nanos() as u64;
        all_ns += ns;
        let answer = match out.as_slice() {
            [Output::Net(Net::Reply { msg: Message::Matched { offer, .. }, .. })] => {
                lat_ok.push((policy, ns));
                live.push_back(session);
                Ok(crate::Choice { container: offer.container, estimated_rtt_ms: offer.estimated_rtt_ms })
            }
            [Output::Net(Net::Reply { msg: Message::NoMatch { eliminations, .. }, .. })] => {
                no_matches += 1;
                no_match_ns += ns;
                Err(eliminations.clone())
            }
            _ => Err(Default::default()),
        };
        if let Some(want) = oracle {
            compared += 1;
            if want != answer {
                mismatches += 1;
            }
        }
        if cfg.tick_every > 0 && (i + 1) % cfg.tick_every == 0 {
            let t = Instant::now();
            ix.handle(now, Input::Tick);
            tick_max_ns = tick_max_ns.max(t.elapsed().as_nanos() as u64);
            ticks += 1;
        }
        while live.len() > cfg.session_window {
            if let Some(s) = live.pop_front() {
                let release =
                    Input::Net(Inbound { conn: ConnId(0), from: GATEWAY, msg: Message::Release { session: s } });
                ix.handle(now, release);
            }
        }
    }
    let hb_mixed = feed.applied - hb_before;
    stop.store(true, Ordering::Relaxed);
    drop(feed);
    let _ = producer.join();

    let ok_ns: u64 = lat_ok.iter().map(|(_, ns)| ns).sum();
    let mut all_lat: Vec<u64> = lat_ok.iter().map(|(_, ns)| *ns).collect();
    all_lat.sort_unstable();
    let by_policy = [Policy::Cheapest, Policy::BestUx, Policy::Balanced]
        .into_iter()
        .map(|policy| {
            let mut l: Vec<u64> = lat_ok.iter().filter(|(p, _)| *p == policy).map(|(_, ns)| *ns).collect();
            l.sort_unstable();
            let (examined, nodes, n) = per_policy_work[policy_index(policy)];
            let mean = |x: u64| if n > 0 { x as f64 / n as f64 } else { 0.0 };
            PolicyFigures {
                policy,
                matches: l.len() as u64,
                p50_us: pct(&l, 50.0),
                p99_us: pct(&l, 99.0),
                mean_examined: mean(examined),
                mean_nodes: mean(nodes),
            }
        })
        .collect();
    let matches_per_s = per_s(all_lat.len() as u64, ok_ns);
    let naive_matches_per_s = per_s(compared, naive_ns);
    BenchReport {
        containers: ix.len() as u64,
        matches_per_s,
        p50_us: pct(&all_lat, 50.0),
        p99_us: pct(&all_lat, 99.0),
        naive_matches_per_s,
        speedup_vs_naive: if naive_matches_per_s > 0.0 { matches_per_s / naive_matches_per_s } else { 0.0 },
        heartbeats_per_s: if hb_s > 0.0 { cfg.heartbeats as f64 / hb_s } else { 0.0 },
        same_answers: mismatches == 0,
        build_s,
        matches: cfg.matches as u64,
        no_matches,
        no_match_mean_us: if no_matches > 0 { no_match_ns as f64 / no_matches as f64 / 1000.0 } else { 0.0 },
        all_matches_per_s: per_s(cfg.matches as u64, all_ns),
        p999_us: pct(&all_lat, 99.9),
        max_us: all_lat.last().map_or(0.0, |&ns| ns as f64 / 1000.0),
        by_policy,
        compared,
        mismatches,
        heartbeats: cfg.heartbeats as u64,
        heartbeats_during_matches: hb_mixed,
        heartbeats_per_s_while_matching: per_s(hb_mixed, mixed_hb_ns),
        mean_examined: if sampled > 0 { examined as f64 / sampled as f64 } else { 0.0 },
        mean_nodes: if sampled > 0 { nodes as f64 / sampled as f64 } else { 0.0 },
        ticks,
        tick_max_ms: tick_max_ns as f64 / 1e6,
        index: ix.index_stats(),
        total_s: started.elapsed().as_secs_f64(),
        peak_rss_mib: proc_kib("/proc/self/status", "VmHWM:").map(|k| k as f64 / 1024.0),
        huge_pages_mib: proc_kib("/proc/self/smaps_rollup", "AnonHugePages:").map(|k| k as f64 / 1024.0),
    }
}

/// A `Name:   123 kB` line of a `/proc` file, in KiB (`None` off Linux).
fn proc_kib(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

fn per_s(n: u64, ns: u64) -> f64 {
    if ns == 0 { 0.0 } else { n as f64 * 1e9 / ns as f64 }
}

/// The `p`th percentile of sorted nanoseconds, in µs.
fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn session_id(i: u64) -> SessionId {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&i.to_le_bytes());
    s[8..].copy_from_slice(&0xbe9c_u64.to_le_bytes());
    SessionId(s)
}

/// Heartbeats per batch on the channel.
const BATCH: usize = 256;

/// The consumer end of the heartbeat stream. Drained batches go back to the
/// producer to be filled again (no allocation per batch).
struct Feed {
    rx: mpsc::Receiver<Vec<Inbound>>,
    back: mpsc::Sender<Vec<Inbound>>,
    batch: Vec<Inbound>,
    applied: u64,
}

impl Feed {
    fn apply_one(&mut self, ix: &mut Indexer, now: Timestamp) {
        if self.batch.is_empty() {
            let Ok(batch) = self.rx.recv() else { return };
            let done = std::mem::replace(&mut self.batch, batch);
            let _ = self.back.send(done);
        }
        // From the end: the order within a batch does not matter.
        if let Some(m) = self.batch.pop() {
            ix.handle(now, Input::Net(m));
            self.applied += 1;
        }
    }
}

/// Heartbeats from every container in turn (a shuffled round), as fast as
/// the channel takes them; one in 200 reports a changed session count.
fn produce(
    plan: &[(NodeId, u32)],
    seed: u64,
    tx: &mpsc::SyncSender<Vec<Inbound>>,
    back: &mpsc::Receiver<Vec<Inbound>>,
    stop: &AtomicBool,
) {
    if plan.is_empty() {
        return;
    }
    let mut rng = Rng::new(seed ^ 0x4ea7_b347);
    let n = plan.len() as u64;
    // A stride coprime with n visits every container once per round.
    let mut stride = (rng.next_u64() % n).max(1);
    while gcd(stride, n) != 1 {
        stride += 1;
    }
    let mut pos = rng.next_u64() % n;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = back.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH));
        for _ in 0..BATCH {
            pos = (pos + stride) % n;
            let (id, reported) = plan[pos as usize];
            let sessions = if rng.next_u64().is_multiple_of(200) { reported ^ 1 } else { reported };
            seq += 1;
            batch.push(Inbound {
                conn: ConnId(pos),
                from: id,
                msg: Message::Heartbeat(Heartbeat { seq, sessions, warm: vec![] }),
            });
        }
        if tx.send(batch).is_err() {
            return;
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

// --- the synthetic world ------------------------------------------------

pub use crate::rng::Rng;

/// A data-centre city: name, latitude, longitude, weight (share of hosts)
/// and regional price factor in percent.
pub const CITIES: [(&str, f64, f64, u32, u32); 44] = [
    ("ashburn", 39.04, -77.49, 60, 100),
    ("dallas", 32.78, -96.80, 30, 95),
    ("chicago", 41.88, -87.63, 25, 100),
    ("san-jose", 37.34, -121.89, 40, 110),
    ("los-angeles", 34.05, -118.24, 25, 105),
    ("seattle", 47.61, -122.33, 20, 100),
    ("atlanta", 33.75, -84.39, 15, 95),
    ("new-york", 40.71, -74.01, 25, 110),
    ("toronto", 43.65, -79.38, 12, 100),
    ("montreal", 45.50, -73.57, 12, 90),
    ("mexico-city", 19.43, -99.13, 8, 95),
    ("sao-paulo", -23.55, -46.63, 15, 110),
    ("santiago", -33.45, -70.67, 6, 110),
    ("bogota", 4.71, -74.07, 5, 105),
    ("london", 51.51, -0.13, 35, 110),
    ("frankfurt", 50.11, 8.68, 35, 105),
    ("amsterdam", 52.37, 4.90, 25, 105),
    ("paris", 48.86, 2.35, 20, 105),
    ("dublin", 53.35, -6.26, 12, 100),
    ("stockholm", 59.33, 18.07, 10, 90),
    ("helsinki", 60.17, 24.94, 8, 85),
    ("warsaw", 52.23, 21.01, 8, 85),
    ("madrid", 40.42, -3.70, 8, 95),
    ("milan", 45.46, 9.19, 8, 100),
    ("zurich", 47.38, 8.54, 6, 120),
    ("lisbon", 38.72, -9.14, 5, 90),
    ("istanbul", 41.01, 28.98, 6, 95),
    ("dubai", 25.20, 55.27, 10, 115),
    ("mumbai", 19.08, 72.88, 15, 90),
    ("chennai", 13.08, 80.27, 8, 85),
    ("singapore", 1.35, 103.82, 25, 115),
    ("jakarta", -6.21, 106.85, 8, 95),
    ("hong-kong", 22.32, 114.17, 15, 115),
    ("tokyo", 35.68, 139.69, 30, 115),
    ("osaka", 34.69, 135.50, 10, 110),
    ("seoul", 37.57, 126.98, 20, 105),
    ("taipei", 25.03, 121.57, 15, 100),
    ("shenzhen", 22.54, 114.06, 20, 90),
    ("sydney", -33.87, 151.21, 15, 115),
    ("melbourne", -37.81, 144.96, 8, 110),
    ("johannesburg", -26.20, 28.05, 6, 105),
    ("lagos", 6.52, 3.38, 4, 110),
    ("cairo", 30.04, 31.24, 4, 100),
    ("nairobi", -1.29, 36.82, 3, 105),
];

/// A GPU model: name, share of hosts, VRAM GiB, price per GPU-hour in
/// thousandths of an ATH, whether it is a data-centre card.
pub const GPUS: [(&str, u32, u32, u64, bool); 12] = [
    ("NVIDIA GeForce RTX 3060", 8, 12, 80, false),
    ("NVIDIA GeForce RTX 3090", 8, 24, 200, false),
    ("NVIDIA GeForce RTX 4080", 6, 16, 250, false),
    ("NVIDIA GeForce RTX 4090", 14, 24, 400, false),
    ("NVIDIA A10", 6, 24, 450, true),
    ("NVIDIA L4", 6, 24, 400, true),
    ("NVIDIA L40S", 6, 48, 900, true),
    ("NVIDIA A100-SXM4-40GB", 5, 40, 1100, true),
    ("NVIDIA A100-SXM4-80GB", 7, 80, 1500, true),
    ("NVIDIA H100 80GB HBM3", 11, 80, 2400, true),
    ("NVIDIA H200", 4, 141, 3200, true),
    ("AMD Instinct MI300X", 3, 192, 2800, true),
];

/// Share of CPU-only hosts, against the GPU shares above.
const CPU_ONLY_SHARE: u32 = 10;

/// The services of the synthetic world.
pub const SERVICES: [&str; 6] = ["render", "llm", "embeddings", "training", "transcode", "inference"];

/// One synthetic container: its record plus what the benchmark needs to
/// drive it.
#[derive(Clone, Debug)]
pub struct Member {
    /// The record, as a restarted indexer would load it.
    pub record: ContainerRecord,
    /// Sessions it reports running in its heartbeats.
    pub reported: u32,
    /// Silent: its last sign of life is older than the freshness window.
    pub stale: bool,
}

fn around(rng: &mut Rng, lat: f64, lon: f64, sigma_km: f64) -> GeoPoint {
    let dlat = rng.normal() * sigma_km / 111.0;
    let dlon = rng.normal() * sigma_km / (111.0 * lat.to_radians().cos().max(0.2));
    let lat = (lat + dlat).clamp(-89.9, 89.9);
    let mut lon = lon + dlon;
    if lon > 180.0 {
        lon -= 360.0;
    }
    if lon < -180.0 {
        lon += 360.0;
    }
    GeoPoint::new(lat, lon.clamp(-180.0, 180.0)).expect("clamped coordinates are valid")
}

/// A host location: near a data-centre city (70 % within ~30 km, the rest
/// spread over ~250 km). Returns the city too.
fn host_location(rng: &mut Rng) -> (GeoPoint, usize) {
    let weights: Vec<u32> = CITIES.iter().map(|c| c.3).collect();
    let i = rng.weighted(&weights);
    let (_, lat, lon, _, _) = CITIES[i];
    let sigma = if rng.chance(0.7) { 30.0 } else { 250.0 };
    (around(rng, lat, lon, sigma), i)
}

fn services_for(rng: &mut Rng, gpu: Option<usize>) -> Vec<ServiceName> {
    // Which services suit which class of host.
    let fits: &[&str] = match gpu.map(|g| GPUS[g]) {
        None => &["embeddings", "transcode", "inference"],
        // Consumer cards and small data-centre cards.
        Some((_, _, vram, _, _)) if vram < 40 => &["render", "inference", "embeddings", "transcode", "llm"],
        // L40S: rendering and models.
        Some((_, _, 48, _, _)) => &["render", "llm", "inference", "embeddings", "training"],
        // A100, H100, H200, MI300X.
        Some(_) => &["llm", "training", "inference", "embeddings"],
    };
    let n = 1 + rng.below(3).min(fits.len() - 1);
    let mut picked: Vec<&str> = Vec::new();
    while picked.len() < n {
        let s = fits[rng.below(fits.len())];
        if !picked.contains(&s) {
            picked.push(s);
        }
    }
    picked.into_iter().map(|s| ServiceName::new(s).expect("valid service names")).collect()
}

/// `n` synthetic containers (see the module docs).
pub fn population(n: usize, rng: &mut Rng) -> Vec<Member> {
    let mut weights: Vec<u32> = GPUS.iter().map(|g| g.1).collect();
    weights.push(CPU_ONLY_SHARE);
    let states = [
        (State::Healthy, 88),
        (State::Ready, 5),
        (State::ReinspectionRequired, 3),
        (State::AwaitingInspection, 2),
        (State::MaintenanceLock, 1),
        (State::QualityControl, 1),
    ];
    let state_weights: Vec<u32> = states.iter().map(|s| s.1).collect();
    (0..n)
        .map(|i| {
            let mut id = [0u8; 32];
            for chunk in id.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            let kind = rng.weighted(&weights);
            let gpu = (kind < GPUS.len()).then_some(kind);
            let (location, city) = host_location(rng);
            let (spec, milli, slots) = match gpu {
                Some(g) => {
                    let (model, _, vram, per_gpu, dc) = GPUS[g];
                    let count = if dc {
                        [1, 2, 4, 8][rng.weighted(&[30, 15, 25, 30])]
                    } else {
                        [1, 2, 4][rng.weighted(&[80, 15, 5])]
                    };
                    let cpu = count * if dc { 16 } else { 8 } * [1, 2][rng.below(2)];
                    let ram = count * if dc { 128 } else { 32 } * [1, 2][rng.below(2)];
                    let spec = ContainerSpec {
                        gpu: Some(GpuSpec { model: model.into(), count, vram_gib: vram, simulated: false }),
                        cpu_cores: cpu,
                        ram_gib: ram,
                        disk_gib: [500, 1000, 2000, 4000][rng.below(4)] * if dc { 2 } else { 1 },
                        bandwidth_up_mbps: if dc {
                            [1000, 10_000, 25_000][rng.below(3)]
                        } else {
                            [50, 100, 500, 1000][rng.below(4)]
                        },
                        bandwidth_down_mbps: if dc {
                            [1000, 10_000, 25_000][rng.below(3)]
                        } else {
                            [300, 500, 1000][rng.below(3)]
                        },
                        location,
                    };
                    let slots = if dc { 1 + rng.below(count as usize) as u32 } else { 1 + rng.below(2) as u32 };
                    (spec, per_gpu * u64::from(count), slots)
                }
                None => {
                    let cpu = [8, 16, 32, 64][rng.below(4)];
                    let spec = ContainerSpec {
                        gpu: None,
                        cpu_cores: cpu,
                        ram_gib: cpu * 4,
                        disk_gib: [250, 500, 1000][rng.below(3)],
                        bandwidth_up_mbps: [100, 1000][rng.below(2)],
                        bandwidth_down_mbps: [300, 1000][rng.below(2)],
                        location,
                    };
                    (spec, 5 * u64::from(cpu), 1 + rng.below(8) as u32)
                }
            };
            // Price: class × count × region × provider spread, in 0.001 ATH.
            let spread = 0.7 + 0.6 * rng.unit();
            let milli = ((milli as f64) * f64::from(CITIES[city].4) / 100.0 * spread).round().max(1.0) as u128;
            let price = PricePerHour(Amount(milli * 10u128.pow(15)));
            let state = states[rng.weighted(&state_weights)].0;
            let steps = rng.normal() * 3.0 + 3.0;
            let reputation = (500.0 + 50.0 * steps.round()).clamp(0.0, f64::from(REPUTATION_MAX)) as u32;
            let reported = if slots > 1 && rng.chance(0.3) { 1 } else { 0 };
            let record = ContainerRecord {
                id: NodeId(id),
                registration: Registration {
                    addr: format!("10.{}.{}.{}:7500", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                    spec,
                    services: services_for(rng, gpu),
                    price,
                    slots,
                    payout: AccountId::new(format!("provider:{}", i % 50_000)).expect("valid account"),
                },
                state,
                reputation,
                transitions: Vec::new(),
                verdicts: Vec::new(),
                verified: None,
                ever_passed: false,
            };
            Member { record, reported, stale: rng.chance(0.01) }
        })
        .collect()
}

/// `n` synthetic requests (see the module docs).
pub fn requests(n: usize, rng: &mut Rng) -> Vec<MatchRequest> {
    let city_weights: Vec<u32> = CITIES.iter().map(|c| c.3 + 5).collect();
    let svc = |s: &str| ServiceName::new(s).expect("valid service names");
    (0..n)
        .map(|_| {
            let service = SERVICES[rng.weighted(&[20, 30, 15, 10, 10, 15])];
            let mut r = MatchRequest::for_service(svc(service));
            // GPU wishes by service: (model substring or none, min VRAM, count choices).
            let (models, vram): (&[&str], u32) = match service {
                "render" => (&["4090", "3090", "RTX", "L40S", "A10", "4080", ""], 0),
                "llm" => (&["H100", "A100", "H200", "MI300X", "L40S", "4090", "A100-SXM4-80GB", ""], 24),
                "training" => (&["H100", "A100", "H200", "MI300X", ""], 40),
                "embeddings" => (&["L4", "A10", "3060", "", "", ""], 0),
                "transcode" => (&["L4", "", "", "RTX"], 0),
                _ => (&["4090", "L4", "A10", "H100", "L40S", "", ""], 0),
            };
            let m = models[rng.below(models.len())];
            if !m.is_empty() {
                r.gpu_model = Some(m.to_owned());
            }
            if rng.chance(0.3) {
                r.min_vram_gib = vram;
            }
            if service == "training" && rng.chance(0.5) {
                r.gpu_count = [2, 4, 8][rng.below(3)];
            } else if m.is_empty() && service != "embeddings" && service != "transcode" {
                r.gpu_count = 1;
            }
            if rng.chance(0.1) {
                r.min_cpu_cores = 8;
            }
            if rng.chance(0.1) {
                r.min_ram_gib = 32;
            }
            if rng.chance(0.9) {
                let i = rng.weighted(&city_weights);
                let (_, lat, lon, _, _) = CITIES[i];
                r.near = Some(around(rng, lat, lon, 300.0));
                if rng.chance(0.6) {
                    r.max_latency_ms = Some([10, 20, 30, 50, 80, 150][rng.below(6)]);
                }
            }
            if rng.chance(0.5) {
                // A budget around the going rate of what is asked for.
                let base = GPUS.iter().filter(|g| m.is_empty() || g.0.contains(m)).map(|g| g.3).max().unwrap_or(400);
                let count = u64::from(r.gpu_count.max(1));
                let milli = (base * count) as f64 * (1.0 + rng.unit() * 1.5);
                r.max_price = Some(PricePerHour(Amount(milli as u128 * 10u128.pow(15))));
            }
            r.policy = [Policy::Cheapest, Policy::BestUx, Policy::Balanced][rng.below(3)];
            r
        })
        .collect()
}

/// Runs `n` checks of the index against the scan on a synthetic world of
/// `containers` containers with reservations, returning the number of
/// disagreements (0 expected). For tests and `--check` style runs.
pub fn agreement(containers: usize, n: usize, seed: u64) -> (usize, Vec<String>) {
    let mut rng = Rng::new(seed);
    let pop = population(containers, &mut rng);
    let mut ix = Indexer::new(config());
    let (stale, fresh): (Vec<_>, Vec<_>) = pop.into_iter().partition(|m| m.stale);
    let reported: Vec<(NodeId, u32)> = fresh.iter().map(|m| (m.record.id, m.reported)).collect();
    ix.restore(stale.into_iter().map(|m| m.record).collect(), Timestamp(T0 - 10_000));
    ix.restore(fresh.into_iter().map(|m| m.record).collect(), Timestamp(T0));
    let now = Timestamp(T0 + 1000);
    for (id, sessions) in reported {
        let hb = Message::Heartbeat(Heartbeat { seq: 1, sessions, warm: vec![] });
        ix.handle(now, Input::Net(Inbound { conn: ConnId(0), from: id, msg: hb }));
    }
    let mut failures = Vec::new();
    for (i, r) in requests(n, &mut rng).into_iter().enumerate() {
        let session = session_id(i as u64);
        let want = ix.evaluate_scan(now, &r, session);
        let got = ix.evaluate(now, &r, session);
        if want != got {
            failures.push(format!("request {i} {r:?}: scan {want:?}, index {got:?}"));
        }
        // Reserve half of them, so that capacity moves.
        if i % 2 == 0 {
            let m = Message::Match { request_id: i as u64, session, request: r };
            ix.handle(now, Input::Net(Inbound { conn: ConnId(0), from: GATEWAY, msg: m }));
        }
    }
    (failures.len(), failures)
}
