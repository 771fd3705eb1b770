//! The checker core driven by hand, the test playing indexer and container:
//! an honest container passes; wrong results, wrong roots, wrong senders,
//! late or out-of-order answers never do.

use std::time::Duration;

use dci_capacity::{Solution, solve};
use dci_checker::{Checker, Config, ConfigError, Input, Output};
use dci_model::{ContainerSpec, GeoPoint, NodeId, Timestamp};
use dci_proto::{
    ChallengeParams, ConnId, Heartbeat, Identity, Inbound, InspectionKind, InspectionRequest, MAX_MESSAGE_BYTES,
    Message, Net, RowOpening, Verdict, seal,
};
use proptest::prelude::*;

const INDEXER: NodeId = NodeId([1; 32]);
const CONTAINER: NodeId = NodeId([2; 32]);
const STRANGER: NodeId = NodeId([3; 32]);
const OTHER_CONTAINER: NodeId = NodeId([4; 32]);
const INDEXER_ADDR: &str = "127.0.0.1:7000";
const T0: Timestamp = Timestamp(1_700_000_000_000);
const N: u32 = 32;
const ROWS: u32 = 4;

fn config() -> Config {
    Config { challenge_n: N, rows_to_open: ROWS, ..Config::devnet(INDEXER_ADDR, vec![INDEXER]) }
}

fn checker(seed: u8) -> Checker {
    Checker::new(config(), [seed; 32]).unwrap()
}

fn ms(t: u64) -> Timestamp {
    Timestamp(T0.0 + t)
}

fn conn_of(from: NodeId) -> ConnId {
    ConnId(u64::from(from.0[0]))
}

fn from(node: NodeId, msg: Message) -> Input {
    Input::Net(Inbound { conn: conn_of(node), from: node, msg })
}

fn addr_of(container: NodeId) -> String {
    format!("10.0.0.{}:9000", container.0[0])
}

fn request(container: NodeId) -> Message {
    request_with(container, 77)
}

/// An inspection request with the indexer's id `id`.
fn request_with(container: NodeId, id: u64) -> Message {
    Message::InspectionRequest(InspectionRequest {
        id,
        kind: InspectionKind::Registration,
        container,
        addr: addr_of(container),
        spec: ContainerSpec {
            gpu: None,
            cpu_cores: 2,
            ram_gib: 4,
            disk_gib: 10,
            bandwidth_up_mbps: 100,
            bandwidth_down_mbps: 100,
            location: GeoPoint::new(48.85, 2.35).unwrap(),
        },
        reason: "registration".into(),
    })
}

/// The indexer asks for an inspection; the checker must send one challenge.
fn start(c: &mut Checker, now: Timestamp, container: NodeId) -> ChallengeParams {
    let out = c.handle(now, from(INDEXER, request(container)));
    match out.as_slice() {
        [Output::Net(Net::Send { addr, msg: Message::Challenge(p) })] if *addr == addr_of(container) => p.clone(),
        other => panic!("expected one challenge to {}, found {other:?}", addr_of(container)),
    }
}

/// The container commits; the checker must reply with the rows to open.
fn commit(c: &mut Checker, now: Timestamp, node: NodeId, challenge: u64, root: [u8; 32]) -> Vec<u32> {
    let out = c.handle(now, from(node, Message::Commitment { challenge, root }));
    match out.as_slice() {
        [Output::Net(Net::Reply { conn, msg: Message::OpenRows { challenge: ch, rows } })]
            if *conn == conn_of(node) && *ch == challenge =>
        {
            rows.clone()
        }
        other => panic!("expected open_rows on the commitment's connection, found {other:?}"),
    }
}

/// The single verdict in `out`: sent to the indexer and reported, identical.
fn verdict(out: &[Output]) -> Verdict {
    match out {
        [Output::Net(Net::Send { addr, msg: Message::Verdict(sent) }), Output::Verdict(reported)]
            if addr == INDEXER_ADDR && sent == reported =>
        {
            sent.clone()
        }
        other => panic!("expected a verdict to the indexer, found {other:?}"),
    }
}

fn rejected(out: &[Output], sender: NodeId, words: &str) {
    match out {
        [Output::Rejected { from, reason }] if *from == sender && reason.contains(words) => {}
        other => panic!("expected a rejection from {sender:?} saying {words:?}, found {other:?}"),
    }
}

fn open(c: &mut Checker, now: Timestamp, node: NodeId, challenge: u64, rows: Vec<RowOpening>) -> Vec<Output> {
    c.handle(now, from(node, Message::Openings { challenge, rows }))
}

/// One full round with an honest container, from request to verdict.
fn honest_round(c: &mut Checker, container: NodeId) -> Verdict {
    let p = start(c, T0, container);
    let solution = solve(&p).unwrap();
    let rows = commit(c, ms(1234), container, p.id, solution.root());
    verdict(&open(c, ms(1500), container, p.id, solution.open(&rows).unwrap()))
}

#[test]
fn an_honest_container_passes() {
    let mut c = checker(1);
    let p = start(&mut c, T0, CONTAINER);
    assert_eq!((p.n, c.in_flight()), (N, 1));
    let solution = solve(&p).unwrap();
    let rows = commit(&mut c, ms(1234), CONTAINER, p.id, solution.root());
    assert_eq!(rows.len() as u32, ROWS);
    assert!(rows.windows(2).all(|w| w[0] < w[1]) && rows.iter().all(|&r| r < N), "{rows:?}");
    let v = verdict(&open(&mut c, ms(1500), CONTAINER, p.id, solution.open(&rows).unwrap()));
    assert_eq!((v.container, v.challenge, v.passed, v.compute_ms), (CONTAINER, p.id, true, 1234), "{v:?}");
    assert!(v.reason.starts_with("passed"), "{}", v.reason);
    assert_eq!(c.in_flight(), 0);
}

/// How a dishonest container opens rows, given its solution and the rows asked.
type Answer = Box<dyn Fn(&Solution, &[u32]) -> Vec<RowOpening>>;

/// What a dishonest container commits to for a challenge, and how it opens.
type Cheat = fn(&ChallengeParams) -> (Solution, Answer);

fn honest_openings() -> Answer {
    Box::new(|s, rows| s.open(rows).unwrap())
}

#[test]
fn dishonest_containers_never_pass() {
    let cases: Vec<(&str, Cheat, &str)> = vec![
        (
            "commits to zeros",
            |p| (Solution::from_result(p.n as usize, vec![0.0; (p.n * p.n) as usize]).unwrap(), honest_openings()),
            "failed: row",
        ),
        (
            "commits to a wrong value in every row",
            |p| {
                let mut c = solve(p).unwrap().c;
                let n = p.n as usize;
                for row in 0..n {
                    c[row * n + row] += 0.25;
                }
                (Solution::from_result(n, c).unwrap(), honest_openings())
            },
            "failed: row",
        ),
        (
            "changes values after committing",
            |p| {
                let s = solve(p).unwrap();
                (
                    s,
                    Box::new(|s: &Solution, rows: &[u32]| {
                        let mut o = s.open(rows).unwrap();
                        o[0].values[0] += 1.0;
                        o
                    }),
                )
            },
            "merkle path",
        ),
        (
            "replays a solution of another seed",
            |p| (solve(&ChallengeParams { seed: [0xee; 32], ..p.clone() }).unwrap(), honest_openings()),
            "failed: row",
        ),
        (
            "opens against a root it did not commit",
            |p| {
                let honest = solve(p).unwrap();
                let other = solve(&ChallengeParams { seed: [0xdd; 32], ..p.clone() }).unwrap();
                (other, Box::new(move |_: &Solution, rows: &[u32]| honest.open(rows).unwrap()))
            },
            "merkle path",
        ),
        (
            "solves a smaller problem",
            |p| {
                (
                    solve(&ChallengeParams { n: p.n / 2, ..p.clone() }).unwrap(),
                    Box::new(|s: &Solution, rows: &[u32]| {
                        s.open(&rows.iter().map(|r| r % s.n as u32).collect::<Vec<_>>()).unwrap()
                    }),
                )
            },
            "values in row",
        ),
        (
            "opens other rows",
            |p| {
                (
                    solve(p).unwrap(),
                    Box::new(|s: &Solution, rows: &[u32]| {
                        let other: Vec<u32> = (0..s.n as u32).filter(|r| !rows.contains(r)).take(rows.len()).collect();
                        s.open(&other).unwrap()
                    }),
                )
            },
            "only the requested rows",
        ),
        (
            "omits a row",
            |p| (solve(p).unwrap(), Box::new(|s: &Solution, rows: &[u32]| s.open(&rows[1..]).unwrap())),
            "expected an opening of row",
        ),
        (
            "opens a row twice",
            |p| {
                (
                    solve(p).unwrap(),
                    Box::new(|s: &Solution, rows: &[u32]| {
                        let mut twice = rows.to_vec();
                        twice[0] = twice[1];
                        s.open(&twice).unwrap()
                    }),
                )
            },
            "opened twice",
        ),
        (
            "opens nothing",
            |p| (solve(p).unwrap(), Box::new(|_: &Solution, _: &[u32]| Vec::new())),
            "expected an opening of row",
        ),
    ];
    for (name, cheat, reason) in cases {
        let mut c = checker(2);
        let p = start(&mut c, T0, CONTAINER);
        let (committed, openings) = cheat(&p);
        let rows = commit(&mut c, ms(100), CONTAINER, p.id, committed.root());
        let v = verdict(&open(&mut c, ms(200), CONTAINER, p.id, openings(&committed, &rows)));
        assert!(!v.passed, "{name}: {v:?}");
        assert!(v.reason.contains(reason), "{name}: expected {reason:?} in {:?}", v.reason);
        assert_eq!(c.in_flight(), 0, "{name}");
    }
}

#[test]
fn answers_from_anyone_but_the_challenged_container_are_rejected_and_change_nothing() {
    let mut c = checker(3);
    let p = start(&mut c, T0, CONTAINER);
    let s = solve(&p).unwrap();
    let forged = solve(&ChallengeParams { seed: [9; 32], ..p.clone() }).unwrap();

    let out = c.handle(ms(10), from(STRANGER, Message::Commitment { challenge: p.id, root: forged.root() }));
    rejected(&out, STRANGER, "answered by container");
    let rows = commit(&mut c, ms(20), CONTAINER, p.id, s.root());

    let out = open(&mut c, ms(30), STRANGER, p.id, forged.open(&rows).unwrap());
    rejected(&out, STRANGER, "answered by container");
    assert_eq!(c.in_flight(), 1);
    let v = verdict(&open(&mut c, ms(40), CONTAINER, p.id, s.open(&rows).unwrap()));
    assert!(v.passed, "{v:?}");
}

#[test]
fn a_commitment_after_the_deadline_fails() {
    let timeout = config().commit_timeout.as_millis() as u64;
    // Found by a tick.
    let mut c = checker(4);
    let p = start(&mut c, T0, CONTAINER);
    assert_eq!(c.handle(ms(timeout), Input::Tick), vec![], "the deadline itself is still in time");
    let v = verdict(&c.handle(ms(timeout + 1), Input::Tick));
    assert_eq!((v.passed, v.reason.as_str(), v.compute_ms), (false, "timed out waiting for commitment", timeout + 1));
    let late = solve(&p).unwrap();
    rejected(
        &c.handle(ms(timeout + 2), from(CONTAINER, Message::Commitment { challenge: p.id, root: late.root() })),
        CONTAINER,
        "no challenge",
    );

    // Arriving late before any tick noticed.
    let mut c = checker(4);
    let p = start(&mut c, T0, CONTAINER);
    let out = c.handle(ms(timeout + 5), from(CONTAINER, Message::Commitment { challenge: p.id, root: late.root() }));
    let v = verdict(&out);
    assert_eq!((v.passed, v.reason.as_str()), (false, "timed out waiting for commitment"));
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn openings_after_the_deadline_fail() {
    let timeout = config().open_timeout.as_millis() as u64;
    for by_tick in [true, false] {
        let mut c = checker(5);
        let p = start(&mut c, T0, CONTAINER);
        let s = solve(&p).unwrap();
        let rows = commit(&mut c, ms(700), CONTAINER, p.id, s.root());
        assert_eq!(c.handle(ms(700 + timeout), Input::Tick), vec![]);
        let late = ms(700 + timeout + 1);
        let out = if by_tick {
            c.handle(late, Input::Tick)
        } else {
            open(&mut c, late, CONTAINER, p.id, s.open(&rows).unwrap())
        };
        let v = verdict(&out);
        assert_eq!(
            (v.passed, v.reason.as_str(), v.compute_ms),
            (false, "timed out waiting for openings", 700),
            "by_tick={by_tick}"
        );
    }
}

#[test]
fn out_of_order_answers_are_rejected_and_change_nothing() {
    let mut c = checker(6);
    let p = start(&mut c, T0, CONTAINER);
    let s = solve(&p).unwrap();
    let early = s.open(&[0, 1, 2, 3]).unwrap();
    rejected(&open(&mut c, ms(5), CONTAINER, p.id, early), CONTAINER, "before its openings");
    let rows = commit(&mut c, ms(10), CONTAINER, p.id, s.root());
    let other = solve(&ChallengeParams { seed: [8; 32], ..p.clone() }).unwrap();
    let out = c.handle(ms(11), from(CONTAINER, Message::Commitment { challenge: p.id, root: other.root() }));
    rejected(&out, CONTAINER, "found a second");
    rejected(&open(&mut c, ms(12), CONTAINER, p.id + 1, s.open(&rows).unwrap()), CONTAINER, "no challenge");
    let out = c.handle(ms(13), from(CONTAINER, Message::Heartbeat(Heartbeat { seq: 1, sessions: 0 })));
    rejected(&out, CONTAINER, "found heartbeat");
    // The first commitment still stands.
    let v = verdict(&open(&mut c, ms(20), CONTAINER, p.id, s.open(&rows).unwrap()));
    assert!(v.passed, "{v:?}");
}

#[test]
fn only_trusted_indexers_start_inspections() {
    let mut c = checker(7);
    rejected(&c.handle(T0, from(STRANGER, request(CONTAINER))), STRANGER, "trusted indexer");
    rejected(&c.handle(T0, from(CONTAINER, request(CONTAINER))), CONTAINER, "trusted indexer");
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.handle(ms(100_000), Input::Tick), vec![]);
}

#[test]
fn one_inspection_per_container_is_in_flight() {
    let mut c = checker(8);
    let old = start(&mut c, T0, CONTAINER);
    // A new request replaces the running inspection: the old challenge is
    // forgotten (no verdict), the new one answered with the new request id.
    let out = c.handle(ms(1), from(INDEXER, request_with(CONTAINER, 78)));
    let [Output::Net(Net::Send { msg: Message::Challenge(p), .. })] = out.as_slice() else { panic!("{out:?}") };
    let p = p.clone();
    assert_ne!(p.id, old.id);
    rejected(
        &c.handle(ms(1), from(CONTAINER, Message::Commitment { challenge: old.id, root: [0; 32] })),
        CONTAINER,
        "no challenge",
    );
    let q = start(&mut c, ms(2), OTHER_CONTAINER);
    assert_ne!((p.id, p.seed), (q.id, q.seed));
    assert_eq!(c.in_flight(), 2);
    // A container cannot answer another container's challenge.
    let s = solve(&q).unwrap();
    rejected(
        &c.handle(ms(3), from(CONTAINER, Message::Commitment { challenge: q.id, root: s.root() })),
        CONTAINER,
        "answered by container",
    );
    // Both time out independently; then the container can be inspected again.
    let out = c.handle(ms(60_000), Input::Tick);
    assert_eq!(out.len(), 4, "{out:?}");
    assert!(
        out.iter().any(|o| matches!(o, Output::Verdict(v) if v.container == CONTAINER && v.request == 78 && !v.passed)),
        "{out:?}"
    );
    assert_eq!(c.in_flight(), 0);
    assert!(honest_round(&mut c, CONTAINER).passed);
}

#[test]
fn the_same_seed_gives_the_same_challenges() {
    let script = |seed: u8| {
        let mut c = checker(seed);
        let mut log = Vec::new();
        for container in [CONTAINER, OTHER_CONTAINER] {
            let p = start(&mut c, T0, container);
            let s = solve(&p).unwrap();
            let rows = commit(&mut c, ms(10), container, p.id, s.root());
            let v = verdict(&open(&mut c, ms(20), container, p.id, s.open(&rows).unwrap()));
            log.push((p, rows, v));
        }
        log
    };
    assert_eq!(script(9), script(9));
    let (a, b) = (script(9), script(10));
    assert_ne!(a[0].0.seed, b[0].0.seed);
    assert_ne!(a[0].0.seed, a[1].0.seed, "every challenge has a fresh seed");
    assert!(a.iter().chain(&b).all(|(_, _, v)| v.passed));
}

#[test]
fn bad_configurations_are_refused() {
    let base = config();
    let cases: Vec<(Config, ConfigError)> = vec![
        (Config { indexers: vec![], ..base.clone() }, ConfigError::NoIndexers),
        (Config { indexer_addr: String::new(), ..base.clone() }, ConfigError::IndexerAddr),
        (Config { challenge_n: 0, ..base.clone() }, ConfigError::ChallengeN { max: dci_capacity::MAX_N, found: 0 }),
        (Config { rows_to_open: 0, ..base.clone() }, ConfigError::RowsToOpen { n: N, found: 0 }),
        (Config { rows_to_open: N + 1, ..base.clone() }, ConfigError::RowsToOpen { n: N, found: N + 1 }),
        (Config { open_timeout: Duration::ZERO, ..base.clone() }, ConfigError::Timeout { field: "open_timeout" }),
    ];
    for (config, error) in cases {
        assert_eq!(Checker::new(config, [0; 32]).err(), Some(error));
    }
    let huge = Config { challenge_n: 16_384, rows_to_open: 64, ..base };
    assert!(matches!(huge.validate(), Err(ConfigError::OpeningsTooLarge { .. })));
    assert_eq!(Config::devnet(INDEXER_ADDR, vec![INDEXER]).validate(), Ok(()));
}

/// Every configuration that validates gives openings that fit in one sealed
/// message; one row more is refused as too large.
#[test]
fn accepted_configurations_give_openings_that_fit_in_a_message() {
    let id = Identity::from_secret([5; 32]);
    for n in [256u32, 4096, 16_384] {
        let accepts = |rows: u32| Config { challenge_n: n, rows_to_open: rows, ..config() }.validate().is_ok();
        let most = (1..=n).take_while(|&r| accepts(r)).last().unwrap();
        assert!(most >= 8, "n={n}: only {most} rows accepted");
        // The largest openings such a configuration can ask for.
        let rows = (0..most)
            .map(|i| RowOpening {
                index: n - 1 - i,
                values: vec![f32::MAX; n as usize],
                proof: vec![[0xff; 32]; dci_capacity::depth(n as usize)],
            })
            .collect();
        let msg = Message::Openings { challenge: u64::MAX, rows };
        let sealed = seal(&id, u64::MAX, Timestamp(u64::MAX), &msg);
        assert!(sealed.len() <= MAX_MESSAGE_BYTES, "n={n} rows={most}: {} bytes", sealed.len());
        if most < n {
            assert!(
                matches!(
                    Config { challenge_n: n, rows_to_open: most + 1, ..config() }.validate(),
                    Err(ConfigError::OpeningsTooLarge { .. })
                ),
                "n={n}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the checker's seed: honest passes, and a container that
    /// committed to anything else than the product never does.
    #[test]
    fn only_the_true_product_passes(
        rng_seed: [u8; 32],
        noise in prop::collection::vec(-2.0f32..2.0, (N * N) as usize),
        at in 0..(N * N) as usize,
    ) {
        let mut c = Checker::new(config(), rng_seed).unwrap();
        prop_assert!(honest_round(&mut c, CONTAINER).passed);

        let p = start(&mut c, T0, CONTAINER);
        let honest = solve(&p).unwrap();
        // A cheat that got every row but one element right would pass only
        // when that row is not opened; the test makes it wrong everywhere but
        // `at`, so some opened row is always wrong.
        let mut guess = noise;
        guess[at] = honest.c[at];
        let cheat = Solution::from_result(N as usize, guess).unwrap();
        let rows = commit(&mut c, ms(10), CONTAINER, p.id, cheat.root());
        let v = verdict(&open(&mut c, ms(20), CONTAINER, p.id, cheat.open(&rows).unwrap()));
        prop_assert!(!v.passed, "{:?}", v);
    }
}
