//! The checker core driven by hand, the test playing indexer and container
//! through the whole protocol: request, challenge, commitment (judged against
//! the claimed class's deadline), reveal, answer (verified by Freivalds'
//! check and row openings), verdict. An honest container passes; every
//! dishonest behaviour, tampered answer, slow or silent container fails with
//! the right reason; wrong senders and out-of-order messages are rejected and
//! change nothing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use dci_capacity::{
    Attempt, Behaviour, DEFAULT_COLUMNS, DEFAULT_ROUNDS, DEFAULT_ROWS, MAX_N, MAX_ROUNDS, MAX_ROWS, Params, RevealExt,
    Solution, TimingClass, TimingNoise,
};
use dci_checker::{Checker, Config, ConfigError, Coordinator, EvaluationFloor, Input, Output, ServiceReport};
use dci_committee::{CommitteeKey, EpochCoordinator, EpochSeed, Registered};
use dci_ledger::{SlashReport, StakeRole};
use dci_model::{AccountId, Amount, ContainerSpec, GeoPoint, GpuSpec, NodeId, ServiceName, Timestamp};
use dci_proto::{
    ChainDomain, ChallengeParams, ConnId, Evidence, Heartbeat, Identity, Inbound, InspectionKind, InspectionRequest,
    MAX_MESSAGE_BYTES, Message, Net, Peer, Response, Reveal, RowOpening, Verdict, VerifiedCapacity, seal,
    sign_transcript,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const INDEXER: NodeId = NodeId([1; 32]);
const STRANGER: NodeId = NodeId([3; 32]);
const SECOND_INDEXER: NodeId = NodeId([5; 32]);
const INDEXER_ADDR: &str = "127.0.0.1:7000";
const SECOND_INDEXER_ADDR: &str = "127.0.0.2:7000";
const T0: Timestamp = Timestamp(1_700_000_000_000);
/// The devnet config capped at this size: every row is opened, all columns checked.
const N: u32 = 32;
const REQUEST_ID: u64 = 77;
const GIB: u64 = 1 << 30;

// --- the test's indexer and containers

/// Node keys the test's containers sign with, by the first byte of their seed.
static KEYS: LazyLock<Vec<Identity>> = LazyLock::new(|| (0..=255u8).map(|i| Identity::from_secret([i; 32])).collect());

fn container() -> NodeId {
    KEYS[2].id()
}

fn other_container() -> NodeId {
    KEYS[4].id()
}

fn key_of(node: NodeId) -> Option<&'static Identity> {
    KEYS.iter().find(|k| k.id() == node)
}

/// A challenge, and its commitment and reveal once they happened.
type Seen = (ChallengeParams, Option<([u8; 32], Reveal)>);

thread_local! {
    /// Every challenge seen in this test (by id), with the commitment and reveal once they happen:
    /// what a container signs when it answers.
    static SEEN: RefCell<HashMap<u64, Seen>> = RefCell::new(HashMap::new());
}

fn config() -> Config {
    let indexers = vec![
        Peer { id: INDEXER, addr: INDEXER_ADDR.into() },
        Peer { id: SECOND_INDEXER, addr: SECOND_INDEXER_ADDR.into() },
    ];
    Config { challenge_n: N, ..Config::devnet(indexers) }
}

fn checker(seed: u8) -> Checker {
    Checker::new(config(), [seed; 32], checker_key()).unwrap()
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

fn gpu(model: &str, count: u32, vram_gib: u32) -> Option<GpuSpec> {
    Some(GpuSpec { model: model.into(), count, vram_gib, simulated: false })
}

fn spec(gpu: Option<GpuSpec>, ram_gib: u32) -> ContainerSpec {
    ContainerSpec {
        gpu,
        cpu_cores: 2,
        ram_gib,
        disk_gib: 10,
        bandwidth_up_mbps: 100,
        bandwidth_down_mbps: 100,
        location: GeoPoint::new(48.85, 2.35).unwrap(),
    }
}

/// A CPU host claiming 4 GiB of RAM (sized to `N` by the config's cap).
fn cpu_host() -> ContainerSpec {
    spec(None, 4)
}

fn h100() -> ContainerSpec {
    spec(gpu("NVIDIA H100", 1, 80), 256)
}

fn request_for(container: NodeId, id: u64, kind: InspectionKind, spec: ContainerSpec) -> Message {
    Message::InspectionRequest(InspectionRequest {
        id,
        kind,
        container,
        addr: addr_of(container),
        spec,
        reason: kind.as_str().into(),
        service: None,
    })
}

fn request(container: NodeId) -> Message {
    request_for(container, REQUEST_ID, InspectionKind::Registration, cpu_host())
}

/// The single challenge in `out`, sent to `container`, after at most the
/// cancel of the inspection it replaces.
fn challenge(out: &[Output], container: NodeId) -> ChallengeParams {
    let out = match out {
        [first, rest @ ..] if released(std::slice::from_ref(first)).len() == 1 => rest,
        _ => out,
    };
    match out {
        [Output::Net(Net::Send { addr, msg: Message::Challenge(p) })] if *addr == addr_of(container) => {
            SEEN.with(|s| s.borrow_mut().insert(p.id, (p.clone(), None)));
            p.clone()
        }
        other => panic!("expected one challenge to {}, found {other:?}", addr_of(container)),
    }
}

/// The indexer asks for an inspection; the checker must send one challenge.
fn start(c: &mut Checker, now: Timestamp, container: NodeId) -> ChallengeParams {
    challenge(&c.handle(now, from(INDEXER, request(container))), container)
}

/// The single reveal in `out`, replied on `node`'s connection for `challenge`.
fn reveal(out: &[Output], node: NodeId, challenge: u64) -> Reveal {
    match out {
        [Output::Net(Net::Reply { conn, msg: Message::Reveal(r) })]
            if *conn == conn_of(node) && r.challenge == challenge =>
        {
            r.clone()
        }
        other => panic!("expected a reveal of challenge {challenge} on the commitment's connection, found {other:?}"),
    }
}

/// The container commits; the checker must reveal vectors and rows.
fn commit(c: &mut Checker, now: Timestamp, node: NodeId, challenge: u64, root: [u8; 32]) -> Reveal {
    let r = reveal(&c.handle(now, from(node, Message::Commitment { challenge, root })), node, challenge);
    note_commitment(root, &r);
    r
}

/// Remembers what the container committed and was revealed, for its signature.
fn note_commitment(root: [u8; 32], r: &Reveal) {
    SEEN.with(|s| s.borrow_mut().get_mut(&r.challenge).map(|e| e.1 = Some((root, r.clone()))));
}

/// `node` answers, signing the transcript as the container would (an empty
/// signature when the test never showed it the challenge).
fn answer(c: &mut Checker, now: Timestamp, node: NodeId, response: Response) -> Vec<Output> {
    let signature = signed(node, &response);
    c.handle(now, from(node, Message::Answer { response, signature }))
}

fn signed(node: NodeId, response: &Response) -> Vec<u8> {
    let seen = SEEN.with(|s| s.borrow().get(&response.challenge).cloned());
    match (key_of(node), seen) {
        (Some(key), Some((params, Some((root, reveal))))) => sign_transcript(key, &params, &root, &reveal, response),
        _ => Vec::new(),
    }
}

fn checker_key() -> Identity {
    KEYS[200].clone()
}

/// The single verdict in `out`: sent to the indexer and reported, identical,
/// then at most what frees the container of the inspection ([`released`]).
fn verdict(out: &[Output]) -> Verdict {
    match out {
        [Output::Net(Net::Send { addr, msg: Message::Verdict(sent) }), Output::Verdict(reported), rest @ ..]
            if addr == INDEXER_ADDR && sent == reported && rest.len() <= 1 && released(rest).len() == rest.len() =>
        {
            sent.clone()
        }
        other => panic!("expected a verdict to the indexer, found {other:?}"),
    }
}

/// Every verdict sent in `out`, with where it went.
fn verdicts(out: &[Output]) -> Vec<(String, Verdict)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Net(Net::Send { addr, msg: Message::Verdict(v) }) => Some((addr.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

/// The messages in `out` that free a container of an inspection (a cancel
/// of its challenge, the end of its evaluation), with where they go.
fn released(out: &[Output]) -> Vec<(String, Message)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Net(Net::Send {
                addr,
                msg: m @ (Message::ChallengeCancelled { .. } | Message::EvaluationDone { .. }),
            }) => Some((addr.clone(), m.clone())),
            _ => None,
        })
        .collect()
}

/// A cancel of `challenge`, sent to `container`'s address.
fn cancel(container: NodeId, challenge: u64) -> (String, Message) {
    (addr_of(container), Message::ChallengeCancelled { challenge })
}

fn rejected(out: &[Output], sender: NodeId, words: &str) {
    match out {
        [Output::Rejected { from, reason }] if *from == sender && reason.contains(words) => {}
        other => panic!("expected a rejection from {sender:?} saying {words:?}, found {other:?}"),
    }
}

/// Milliseconds the checker waits for a commitment: the class's deadline,
/// at least the configured floor.
fn commit_window(config: &Config, class: TimingClass, n: u32) -> u64 {
    dci_capacity::deadline_ms(class, n).max(config.min_deadline.as_millis() as u64)
}

/// Milliseconds the checker waits for the answer after its reveal.
fn answer_window(config: &Config, n: u32, rounds: u32) -> u64 {
    dci_capacity::response_deadline_ms(n, rounds).max(config.min_deadline.as_millis() as u64)
}

const COMMIT_AT: u64 = 1234;
const ANSWER_AT: u64 = 1500;

/// One inspection of a CPU host played end to end by a container behaving
/// as `behaviour`: it commits at `COMMIT_AT` and answers at `ANSWER_AT`, or
/// never (then ticks run past the answer deadline).
fn play(c: &mut Checker, container: NodeId, behaviour: Behaviour, earlier: Option<&Solution>) -> (Verdict, Attempt) {
    let p = start(c, T0, container);
    let attempt = behaviour.commit(&p, earlier).unwrap();
    let r = commit(c, ms(COMMIT_AT), container, p.id, attempt.root());
    let out = match attempt.respond(&r).unwrap() {
        Some(response) => answer(c, ms(ANSWER_AT), container, response),
        None => {
            let deadline = COMMIT_AT + answer_window(c.config(), p.n, r.rounds);
            assert_eq!(c.handle(ms(deadline), Input::Tick), vec![], "the answer deadline itself is still in time");
            c.handle(ms(deadline + 1), Input::Tick)
        }
    };
    let v = verdict(&out);
    assert_eq!((v.container, v.challenge, v.compute_ms), (container, p.id, COMMIT_AT), "{v:?}");
    (v, attempt)
}

// --- honest containers

#[test]
fn an_honest_container_passes() {
    let mut c = checker(1);
    let p = start(&mut c, T0, container());
    assert_eq!((p.n, c.in_flight()), (N, 1));
    let attempt = Behaviour::Honest.commit(&p, None).unwrap();
    let r = commit(&mut c, ms(COMMIT_AT), container(), p.id, attempt.root());
    assert_eq!((r.rounds, r.rows.len() as u32, r.columns), (DEFAULT_ROUNDS, DEFAULT_ROWS.min(N), DEFAULT_COLUMNS));
    assert!(r.rows.windows(2).all(|w| w[0] < w[1]) && r.rows.iter().all(|&row| row < N), "{:?}", r.rows);
    assert_eq!(c.in_flight(), 1, "still in flight until the answer");
    let response = attempt.respond(&r).unwrap().unwrap();
    let v = verdict(&answer(&mut c, ms(ANSWER_AT), container(), response));
    assert_eq!(
        v,
        Verdict {
            request: REQUEST_ID,
            kind: InspectionKind::Registration,
            container: container(),
            challenge: p.id,
            passed: true,
            reason: v.reason.clone(),
            compute_ms: COMMIT_AT,
            // A CPU host's proof is worth the CPU units, whatever it claims.
            capacity: Some(VerifiedCapacity {
                class: "cpu".into(),
                devices: 1,
                n: N,
                units: dci_capacity::CPU_UNITS,
                simulated: false
            }),
        }
    );
    assert!(v.reason.starts_with("passed"), "{}", v.reason);
    assert_eq!(c.in_flight(), 0);
    rejected(
        &c.handle(ms(ANSWER_AT + 1), from(container(), Message::Commitment { challenge: p.id, root: attempt.root() })),
        container(),
        "no challenge",
    );
}

/// Honest containers of every size up to the cap, claiming anything, pass
/// whatever the checker's randomness; the verdict echoes the request.
#[test]
fn honest_rounds_pass_at_every_size() {
    for n in [1, 2, 3, 7, 16, 31, 33, 40, 41, 64, 100, 256] {
        let mut c = Checker::new(Config { challenge_n: n, ..config() }, [n as u8; 32], checker_key()).unwrap();
        for round in 0..2u8 {
            let (v, _) = play(&mut c, container(), Behaviour::Honest, None);
            assert!(v.passed, "n={n} round {round}: {v:?}");
            assert!(v.reason.contains(&format!("{n}x{n}")), "n={n}: {}", v.reason);
        }
    }
}

// --- dishonest containers

/// Every dishonest behaviour of `dci_capacity`, played through the checker,
/// ends in a failed verdict naming the violation; the honest one passes.
#[test]
fn every_behaviour_ends_in_the_verdict_it_deserves() {
    let cases: [(Behaviour, &str); 5] = [
        (Behaviour::Honest, "passed"),
        (Behaviour::WrongProduct, "failed: row_mismatch:"),
        (Behaviour::Replay, "failed: row_mismatch:"),
        (Behaviour::ChangeRowsAfterCommit, "failed: bad_path:"),
        (Behaviour::Dark, "failed: dark: no answer to the reveal before the deadline"),
    ];
    for n in [2, 17, N, 64] {
        for (behaviour, expected) in cases {
            let mut c = Checker::new(Config { challenge_n: n, ..config() }, [7; 32], checker_key()).unwrap();
            // An earlier honest round gives the replay a real old solution of the same size.
            let (first, earlier) = play(&mut c, container(), Behaviour::Honest, None);
            assert!(first.passed, "{first:?}");
            let (v, _) = play(&mut c, container(), behaviour, Some(earlier.solution()));
            assert_eq!(v.passed, behaviour.is_honest(), "n={n} {}: {v:?}", behaviour.name());
            assert!(
                v.reason.starts_with(expected),
                "n={n} {}: expected {expected:?}, found {:?}",
                behaviour.name(),
                v.reason
            );
            assert_eq!(c.in_flight(), 0);
        }
    }
}

/// A replay without an old solution (the neighbouring seed's product) fails too.
#[test]
fn a_replay_of_another_seed_fails() {
    let mut c = checker(8);
    let (v, _) = play(&mut c, container(), Behaviour::Replay, None);
    assert!(!v.passed && v.reason.starts_with("failed: row_mismatch:"), "{v:?}");
}

/// What an honest answer turned into by a tampering container.
type Tamper = fn(&mut Response, &Reveal, u32);

/// Answers tampered after an honest commitment fail with the violation's kind.
#[test]
fn tampered_answers_fail_with_the_violation_kind() {
    const SIZE: u32 = 64;
    fn unopened(r: &Reveal, n: u32) -> u32 {
        (0..n).find(|i| !r.rows.contains(i)).unwrap()
    }
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "a round missing",
            |a, _, _| {
                a.products.pop();
            },
            "product_count",
        ),
        ("a round too many", |a, _, _| a.products.push(a.products[0].clone()), "product_count"),
        (
            "a short product",
            |a, _, _| {
                a.products[0].pop();
            },
            "product_length",
        ),
        ("a NaN in a product", |a, _, _| a.products[1][3] = f32::NAN, "product_not_finite"),
        ("a row not asked for", |a, r, n| a.rows[0].index = unopened(r, n), "unexpected_row"),
        ("a row opened twice", |a, _, _| a.rows[1] = a.rows[0].clone(), "duplicate_row"),
        (
            "a row missing",
            |a, _, _| {
                a.rows.pop();
            },
            "missing_row",
        ),
        ("no rows", |a, _, _| a.rows.clear(), "missing_row"),
        (
            "a short row",
            |a, _, _| {
                a.rows[0].values.pop();
            },
            "row_length",
        ),
        ("an infinite value", |a, _, _| a.rows[2].values[5] = f32::INFINITY, "row_not_finite"),
        ("a value changed after committing", |a, _, _| a.rows[0].values[0] += 1.0, "bad_path"),
        ("a forged merkle path", |a, _, _| a.rows[0].proof[0][0] ^= 1, "bad_path"),
        ("a product off at an opened row", |a, r, _| a.products[0][r.rows[0] as usize] += 1.0, "inconsistent"),
        ("a product off elsewhere", |a, r, n| a.products[2][unopened(r, n) as usize] += 1000.0, "product_mismatch"),
    ];
    for (name, tamper, kind) in cases {
        let mut c = Checker::new(Config { challenge_n: SIZE, ..config() }, [9; 32], checker_key()).unwrap();
        let p = start(&mut c, T0, container());
        let attempt = Behaviour::Honest.commit(&p, None).unwrap();
        let r = commit(&mut c, ms(COMMIT_AT), container(), p.id, attempt.root());
        let mut response = attempt.respond(&r).unwrap().unwrap();
        tamper(&mut response, &r, SIZE);
        let v = verdict(&answer(&mut c, ms(ANSWER_AT), container(), response));
        assert!(!v.passed, "{name}: {v:?}");
        assert!(v.reason.starts_with(&format!("failed: {kind}: ")), "{name}: expected {kind}, found {:?}", v.reason);
        assert_eq!(c.in_flight(), 0, "{name}");
    }
}

// --- timing

/// An H100 claim at n=64 without a floor: a commitment later than the
/// class's deadline fails as slow; one in time is answered with a reveal and
/// passes.
#[test]
fn a_commitment_slower_than_the_claimed_class_fails() {
    const SIZE: u32 = 64;
    let config = Config { challenge_n: SIZE, min_deadline: Duration::ZERO, ..config() };
    let deadline = dci_capacity::deadline_ms(TimingClass::H100, SIZE);
    for (took, slow) in [(0, false), (1, false), (deadline, false), (deadline + 1, true), (10 * deadline, true)] {
        let mut c = Checker::new(config.clone(), [10; 32], checker_key()).unwrap();
        let p = challenge(
            &c.handle(T0, from(INDEXER, request_for(container(), 5, InspectionKind::Standby, h100()))),
            container(),
        );
        assert_eq!(p.n, SIZE);
        let attempt = Behaviour::Honest.commit(&p, None).unwrap();
        let out = c.handle(ms(took), from(container(), Message::Commitment { challenge: p.id, root: attempt.root() }));
        let v = if slow {
            verdict(&out)
        } else {
            let r = reveal(&out, container(), p.id);
            note_commitment(attempt.root(), &r);
            let response = attempt.respond(&r).unwrap().unwrap();
            verdict(&answer(&mut c, ms(took + 1), container(), response))
        };
        assert_eq!(
            (v.passed, v.compute_ms, v.request, v.kind, v.challenge),
            (!slow, took, 5, InspectionKind::Standby, p.id),
            "took {took} ms of {deadline}: {v:?}"
        );
        if slow {
            assert!(
                v.reason.starts_with("failed: slow:") && v.reason.contains("H100"),
                "took {took} ms of {deadline}: {}",
                v.reason
            );
        }
        assert_eq!(c.in_flight(), 0);
    }
}

/// At full size the classes' deadlines differ: each claimed model is judged
/// against its own class (unknown models and GPU-less hosts as CPUs), and
/// the simulated commit time of an honest device of the claimed class is in
/// time while a CPU host claiming a GPU is slow. Nothing is solved here: the
/// timing is judged before the answer.
#[test]
fn commitments_are_judged_against_the_claimed_class() {
    let config = Config { challenge_n: MAX_N, min_deadline: Duration::ZERO, ..config() };
    let cases = [
        (gpu("NVIDIA H100 80GB HBM3", 1, 80), TimingClass::H100),
        (gpu("NVIDIA GeForce RTX 4090", 1, 24), TimingClass::ConsumerAda),
        (gpu("NVIDIA GeForce RTX 3060", 1, 12), TimingClass::ConsumerAmpere),
        (gpu("NVIDIA A100-SXM4-40GB", 8, 40), TimingClass::A100),
        (gpu("NVIDIA L4", 1, 24), TimingClass::A10L4),
        (gpu("NVIDIA L40S", 1, 48), TimingClass::L40s),
        (gpu("NVIDIA H200", 1, 141), TimingClass::H200),
        (gpu("AMD Instinct MI300X", 1, 192), TimingClass::Mi300x),
        (gpu("3dfx Voodoo5 5500", 1, 64), TimingClass::Cpu),
        (None, TimingClass::Cpu),
    ];
    let mut noise_rng = ChaCha20Rng::seed_from_u64(11);
    for (gpu, class) in cases {
        let deadline = dci_capacity::deadline_ms(class, MAX_N);
        let honest = Behaviour::Honest.commit_ms(class, MAX_N, &TimingNoise::REALISTIC, &mut noise_rng);
        let cpu_claiming = Behaviour::SlowerClass { real: TimingClass::Cpu };
        let slower = cpu_claiming.commit_ms(class, MAX_N, &TimingNoise::REALISTIC, &mut noise_rng);
        let mut times = vec![(deadline, false), (deadline + 1, true), (honest, false)];
        if class != TimingClass::Cpu {
            times.push((slower, true));
        }
        for (took, slow) in times {
            let what = format!("{gpu:?} ({class:?}) committing after {took} ms of {deadline}");
            let mut c = Checker::new(config.clone(), [12; 32], checker_key()).unwrap();
            let request = request_for(container(), 6, InspectionKind::Registration, spec(gpu.clone(), 64));
            let p = challenge(&c.handle(T0, from(INDEXER, request)), container());
            assert_eq!(p.n, MAX_N, "{what}");
            let out = c.handle(ms(took), from(container(), Message::Commitment { challenge: p.id, root: [0xab; 32] }));
            if slow {
                let v = verdict(&out);
                assert!(!v.passed && v.reason.starts_with("failed: slow:"), "{what}: {v:?}");
                assert!(v.reason.contains(&format!("{class:?}")), "{what}: {}", v.reason);
            } else {
                let r = reveal(&out, container(), p.id);
                assert_eq!(r.validate(MAX_N), Ok(()), "{what}");
                assert_eq!(c.in_flight(), 1, "{what}");
            }
        }
    }
}

/// The challenge is sized to the claimed memory (the GPUs' if any, else the
/// RAM) and capped by the config.
#[test]
fn challenges_are_sized_to_the_claim_and_capped() {
    let cases = [
        (h100(), MAX_N, 16_384),
        (h100(), 64, 64),
        (spec(gpu("NVIDIA GeForce RTX 3060", 2, 1), 64), MAX_N, 9_216),
        (spec(gpu("NVIDIA GeForce RTX 3060", 0, 4), 64), MAX_N, 13_312),
        (spec(None, 4), MAX_N, 13_312),
        (spec(None, 1), MAX_N, 6_144),
        (spec(None, 1), 2_000, 2_000),
        (spec(None, 0), MAX_N, dci_capacity::MIN_N),
    ];
    for (spec, cap, n) in cases {
        let class = spec.gpu.as_ref().and_then(|g| dci_capacity::class_of_model(&g.model)).unwrap_or(TimingClass::Cpu);
        let memory = spec
            .gpu
            .as_ref()
            .map_or(u64::from(spec.ram_gib) * GIB, |g| u64::from(g.vram_gib) * u64::from(g.count.max(1)) * GIB);
        assert_eq!(dci_capacity::size_for(memory, class).min(cap), n, "oracle for {spec:?}");
        let mut c = Checker::new(Config { challenge_n: cap, ..config() }, [13; 32], checker_key()).unwrap();
        let request = request_for(container(), 1, InspectionKind::Registration, spec.clone());
        let p = challenge(&c.handle(T0, from(INDEXER, request)), container());
        assert_eq!(p.n, n, "{spec:?} capped at {cap}");
    }
}

#[test]
fn a_commitment_after_the_deadline_fails() {
    let window = commit_window(&config(), TimingClass::Cpu, N);
    assert_eq!(window, 10_000, "the devnet floor");
    // Found by a tick.
    let mut c = checker(4);
    let p = start(&mut c, T0, container());
    assert_eq!(c.handle(ms(window), Input::Tick), vec![], "the deadline itself is still in time");
    let v = verdict(&c.handle(ms(window + 1), Input::Tick));
    assert_eq!(
        (v.passed, v.reason.as_str(), v.compute_ms, v.request),
        (false, "failed: dark: no commitment before the deadline", window + 1, REQUEST_ID)
    );
    let late = Behaviour::Honest.commit(&p, None).unwrap();
    rejected(
        &c.handle(ms(window + 2), from(container(), Message::Commitment { challenge: p.id, root: late.root() })),
        container(),
        "no challenge",
    );

    // Arriving late before any tick noticed: too slow for the claim.
    let mut c = checker(4);
    let p = start(&mut c, T0, container());
    let out = c.handle(ms(window + 5), from(container(), Message::Commitment { challenge: p.id, root: late.root() }));
    let v = verdict(&out);
    assert_eq!((v.passed, v.compute_ms), (false, window + 5));
    assert!(v.reason.starts_with("failed: slow: committed after"), "{}", v.reason);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn an_answer_after_the_deadline_fails() {
    for by_tick in [true, false] {
        let mut c = checker(5);
        let p = start(&mut c, T0, container());
        let attempt = Behaviour::Honest.commit(&p, None).unwrap();
        let r = commit(&mut c, ms(700), container(), p.id, attempt.root());
        let window = answer_window(c.config(), N, r.rounds);
        assert_eq!(c.handle(ms(700 + window), Input::Tick), vec![]);
        let late = ms(700 + window + 1);
        let response = attempt.respond(&r).unwrap().unwrap();
        let out =
            if by_tick { c.handle(late, Input::Tick) } else { answer(&mut c, late, container(), response.clone()) };
        let v = verdict(&out);
        let reason = if by_tick {
            "failed: dark: no answer to the reveal before the deadline"
        } else {
            "failed: dark: answered after the deadline"
        };
        assert_eq!((v.passed, v.reason.as_str(), v.compute_ms), (false, reason, 700), "by_tick={by_tick}");
        assert_eq!(c.in_flight(), 0);
        rejected(&answer(&mut c, late, container(), response), container(), "no challenge");
    }
}

// --- verdicts

/// Every verdict, whatever the outcome, carries the indexer's request id
/// and inspection kind.
#[test]
fn verdicts_echo_the_request_id_and_kind() {
    let kinds = [InspectionKind::Registration, InspectionKind::Standby, InspectionKind::InService];
    let outcomes =
        ["passed", "failed: row_mismatch", "failed: slow", "failed: dark: no commitment", "failed: dark: no answer"];
    for (i, kind) in kinds.into_iter().enumerate() {
        for (j, outcome) in outcomes.into_iter().enumerate() {
            let id = 1_000 * i as u64 + j as u64 + u64::MAX / 2;
            let mut c = checker(14);
            let p =
                challenge(&c.handle(T0, from(INDEXER, request_for(container(), id, kind, cpu_host()))), container());
            let behaviour = if outcome == "failed: row_mismatch" { Behaviour::WrongProduct } else { Behaviour::Honest };
            let attempt = behaviour.commit(&p, None).unwrap();
            let window = commit_window(c.config(), TimingClass::Cpu, N);
            let out = match outcome {
                "failed: slow" => c.handle(
                    ms(window + 1),
                    from(container(), Message::Commitment { challenge: p.id, root: attempt.root() }),
                ),
                "failed: dark: no commitment" => c.handle(ms(window + 1), Input::Tick),
                _ => {
                    let r = commit(&mut c, ms(10), container(), p.id, attempt.root());
                    if outcome == "failed: dark: no answer" {
                        c.handle(ms(10 + answer_window(c.config(), N, r.rounds) + 1), Input::Tick)
                    } else {
                        answer(&mut c, ms(20), container(), attempt.respond(&r).unwrap().unwrap())
                    }
                }
            };
            let v = verdict(&out);
            assert_eq!((v.request, v.kind, v.container, v.challenge), (id, kind, container(), p.id), "{outcome}");
            assert!(v.reason.starts_with(outcome), "{kind:?}: expected {outcome:?}, found {:?}", v.reason);
        }
    }
}

// --- rejections

#[test]
fn only_trusted_indexers_start_inspections() {
    let mut c = checker(7);
    rejected(&c.handle(T0, from(STRANGER, request(container()))), STRANGER, "trusted indexer");
    rejected(&c.handle(T0, from(container(), request(container()))), container(), "trusted indexer");
    assert_eq!(c.in_flight(), 0);
    assert_eq!(c.handle(ms(100_000), Input::Tick), vec![]);
    // Any configured indexer may ask; its verdict goes to its address.
    let p = challenge(&c.handle(T0, from(SECOND_INDEXER, request(container()))), container());
    let out = c.handle(ms(100_000), Input::Tick);
    let v = verdicts(&out);
    assert_eq!(v.len(), 1, "{out:?}");
    assert_eq!((v[0].0.as_str(), v[0].1.challenge, v[0].1.passed), (SECOND_INDEXER_ADDR, p.id, false));
}

/// Once the registrant has committed from its address, messages of any
/// other key about its challenge are rejected and change nothing.
#[test]
fn after_the_commitment_messages_from_anyone_else_are_rejected_and_change_nothing() {
    let mut c = checker(3);
    let p = start(&mut c, T0, container());
    let honest = Behaviour::Honest.commit(&p, None).unwrap();
    let forged = Behaviour::Honest.commit(&ChallengeParams { seed: [9; 32], ..p.clone() }, None).unwrap();

    let r = commit(&mut c, ms(20), container(), p.id, honest.root());
    let out = c.handle(ms(25), from(STRANGER, Message::Commitment { challenge: p.id, root: forged.root() }));
    rejected(&out, STRANGER, "answered by container");
    let refusal = Message::ChallengeRefused { challenge: p.id, reason: "busy".into() };
    rejected(&c.handle(ms(26), from(STRANGER, refusal)), STRANGER, "answered by container");

    let out = answer(&mut c, ms(30), STRANGER, forged.respond(&r).unwrap().unwrap());
    rejected(&out, STRANGER, "answered by container");
    assert_eq!(c.in_flight(), 1);
    let v = verdict(&answer(&mut c, ms(40), container(), honest.respond(&r).unwrap().unwrap()));
    assert!(v.passed, "{v:?}");
}

#[test]
fn out_of_order_and_unexpected_messages_are_rejected_and_change_nothing() {
    let mut c = checker(6);
    let p = start(&mut c, T0, container());
    let attempt = Behaviour::Honest.commit(&p, None).unwrap();
    // An answer to a reveal the checker has not made yet.
    let guessed = Reveal::draw(&mut ChaCha20Rng::seed_from_u64(1), &p, Params::DEFAULT);
    let early = attempt.respond(&guessed).unwrap().unwrap();
    rejected(&answer(&mut c, ms(5), container(), early), container(), "before its answer");
    rejected(
        &c.handle(ms(6), from(container(), Message::Commitment { challenge: p.id.wrapping_add(1), root: [0; 32] })),
        container(),
        "no challenge",
    );

    let r = commit(&mut c, ms(10), container(), p.id, attempt.root());
    let other = Behaviour::WrongProduct.commit(&p, None).unwrap();
    let out = c.handle(ms(11), from(container(), Message::Commitment { challenge: p.id, root: other.root() }));
    rejected(&out, container(), "found a second");
    let mut elsewhere = attempt.respond(&r).unwrap().unwrap();
    elsewhere.challenge = p.id.wrapping_add(1);
    rejected(&answer(&mut c, ms(12), container(), elsewhere), container(), "no challenge");

    let unexpected = [
        (Message::Heartbeat(Heartbeat { seq: 1, sessions: 0, warm: vec![] }), "found heartbeat"),
        (Message::Challenge(p.clone()), "found challenge"),
        (Message::Reveal(r.clone()), "found reveal"),
        (
            Message::Verdict(Verdict {
                request: 1,
                kind: InspectionKind::Standby,
                container: container(),
                challenge: p.id,
                passed: true,
                reason: "passed".into(),
                compute_ms: 1,
                capacity: None,
            }),
            "found verdict",
        ),
    ];
    for (msg, words) in unexpected {
        for sender in [container(), INDEXER, STRANGER] {
            rejected(&c.handle(ms(13), from(sender, msg.clone())), sender, words);
        }
    }
    assert_eq!(c.in_flight(), 1);
    // The first commitment still stands.
    let v = verdict(&answer(&mut c, ms(20), container(), attempt.respond(&r).unwrap().unwrap()));
    assert!(v.passed, "{v:?}");
}

// --- one inspection per container

#[test]
fn a_new_request_replaces_the_inspection_in_flight() {
    let mut c = checker(8);
    let old = start(&mut c, T0, container());
    // A new request replaces the running inspection: the old challenge is
    // forgotten (no verdict, the container told to forget it too), the new
    // one answered with the new request id.
    // (Another claim: the running inspection does not answer it.)
    let out = c.handle(ms(1), from(INDEXER, request_for(container(), 78, InspectionKind::Standby, spec(None, 8))));
    assert_eq!(released(&out), vec![cancel(container(), old.id)], "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::Verdict(_))), "{out:?}");
    let p = challenge(&out, container());
    assert_ne!((p.id, p.seed), (old.id, old.seed));
    assert_eq!(c.in_flight(), 1);
    rejected(
        &c.handle(ms(1), from(container(), Message::Commitment { challenge: old.id, root: [0; 32] })),
        container(),
        "no challenge",
    );
    let q = start(&mut c, ms(2), other_container());
    assert_ne!((p.id, p.seed), (q.id, q.seed));
    assert_eq!(c.in_flight(), 2);
    // Both time out independently, each with its own request's id and
    // kind, and each container is told to forget its challenge.
    let out = c.handle(ms(60_000), Input::Tick);
    let verdicts: Vec<(NodeId, u64, InspectionKind, bool)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Verdict(v) => Some((v.container, v.request, v.kind, v.passed)),
            _ => None,
        })
        .collect();
    assert_eq!(out.len(), 6, "{out:?}");
    assert_eq!(verdicts.len(), 2, "{out:?}");
    let mut cancels = released(&out);
    cancels.sort_by_key(|(addr, _)| addr.clone());
    let mut expected = vec![cancel(container(), p.id), cancel(other_container(), q.id)];
    expected.sort_by_key(|(addr, _)| addr.clone());
    assert_eq!(cancels, expected);
    assert!(verdicts.contains(&(container(), 78, InspectionKind::Standby, false)), "{verdicts:?}");
    assert!(verdicts.contains(&(other_container(), REQUEST_ID, InspectionKind::Registration, false)), "{verdicts:?}");
    assert_eq!(c.in_flight(), 0);
    // Then the container can be inspected again.
    assert!(play(&mut c, container(), Behaviour::Honest, None).0.passed);
}

// --- several indexers (issue 15)

/// Two indexers asking about one container at once (both got its
/// registration) cost the container one challenge: the second request joins
/// the running inspection, and each indexer gets the verdict under its own
/// request id and kind, at its own address.
#[test]
fn two_indexers_asking_about_one_container_share_one_challenge() {
    let mut c = checker(21);
    let p = start(&mut c, T0, container());
    let out = c.handle(ms(5), from(SECOND_INDEXER, request_for(container(), 90, InspectionKind::Standby, cpu_host())));
    assert_eq!(out, vec![], "joined: no second challenge, nothing cancelled");
    assert_eq!(c.in_flight(), 1);
    let attempt = Behaviour::Honest.commit(&p, None).unwrap();
    let r = commit(&mut c, ms(COMMIT_AT), container(), p.id, attempt.root());
    let out = answer(&mut c, ms(ANSWER_AT), container(), attempt.respond(&r).unwrap().unwrap());
    let sent = verdicts(&out);
    let seen: Vec<(&str, u64, InspectionKind, bool)> =
        sent.iter().map(|(a, v)| (a.as_str(), v.request, v.kind, v.passed)).collect();
    assert_eq!(
        seen,
        vec![
            (INDEXER_ADDR, REQUEST_ID, InspectionKind::Registration, true),
            (SECOND_INDEXER_ADDR, 90, InspectionKind::Standby, true)
        ]
    );
    assert!(sent.iter().all(|(_, v)| v.challenge == p.id && v.capacity == sent[0].1.capacity));
    assert_eq!(c.in_flight(), 0);
}

/// Another indexer asking something else (an in-service evaluation) while a
/// challenge runs does not cancel it: it waits its turn and starts when the
/// challenge ends; the first indexer still gets its verdict.
#[test]
fn another_indexers_different_question_waits_its_turn() {
    let mut c = checker(22);
    let p = start(&mut c, T0, container());
    let evaluation = Message::InspectionRequest(InspectionRequest {
        service: Some(ServiceName::new("render").unwrap()),
        ..match request_for(container(), 91, InspectionKind::InService, cpu_host()) {
            Message::InspectionRequest(r) => r,
            _ => unreachable!(),
        }
    });
    assert_eq!(c.handle(ms(5), from(SECOND_INDEXER, evaluation.clone())), vec![], "queued");
    // The same indexer asking again replaces its queued request: still one.
    assert_eq!(c.handle(ms(6), from(SECOND_INDEXER, evaluation)), vec![], "queued once");
    assert_eq!(c.in_flight(), 1);
    let out = c.handle(ms(60_000), Input::Tick);
    let sent = verdicts(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!((sent[0].0.as_str(), sent[0].1.challenge, sent[0].1.passed), (INDEXER_ADDR, p.id, false));
    let started: Vec<_> = out
        .iter()
        .filter(|o| matches!(o, Output::Net(Net::Send { msg: Message::EvaluationRequest { .. }, .. })))
        .collect();
    assert_eq!(started.len(), 1, "the waiting evaluation starts: {out:?}");
    assert_eq!(released(&out), vec![cancel(container(), p.id)]);
    assert_eq!(c.in_flight(), 1);
}

/// An indexer dropped from the network file while its inspection runs gets
/// no verdict (the others still do), and may not ask again.
#[test]
fn an_indexer_dropped_from_the_network_gets_no_verdict() {
    let mut c = checker(23);
    start(&mut c, T0, container());
    c.handle(ms(1), from(SECOND_INDEXER, request_for(container(), 92, InspectionKind::Standby, cpu_host())));
    c.handle(
        ms(2),
        Input::Peers(dci_checker::Peers {
            indexers: vec![Peer { id: INDEXER, addr: INDEXER_ADDR.into() }],
            coordinator: None,
            chain_signers: Default::default(),
        }),
    );
    let sent = verdicts(&c.handle(ms(60_000), Input::Tick));
    assert_eq!(sent.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), vec![INDEXER_ADDR]);
    rejected(
        &c.handle(ms(60_001), from(SECOND_INDEXER, request(other_container()))),
        SECOND_INDEXER,
        "trusted indexer",
    );
}

/// Requests waiting for another indexer's inspection are bounded: past
/// [`MAX_QUEUED`] one is refused, and nothing else changes.
#[test]
fn waiting_requests_are_bounded() {
    let mut c = checker(24);
    let containers: Vec<NodeId> = (0..=dci_checker::MAX_QUEUED as u32).map(|i| NodeId(seed_id(i))).collect();
    for (i, node) in containers.iter().enumerate() {
        let out = c.handle(T0, from(INDEXER, request_for(*node, i as u64, InspectionKind::Registration, cpu_host())));
        assert_eq!(out.len(), 1, "one challenge each");
        let other = request_for(*node, i as u64, InspectionKind::Standby, spec(None, 8));
        let out = c.handle(T0, from(SECOND_INDEXER, other));
        if i < dci_checker::MAX_QUEUED {
            assert_eq!(out, vec![], "request {i} waits");
        } else {
            rejected(&out, SECOND_INDEXER, "at most");
        }
    }
    assert_eq!(c.in_flight(), containers.len());
}

/// A node id for the `i`th of many containers.
fn seed_id(i: u32) -> [u8; 32] {
    let mut b = [7u8; 32];
    b[..4].copy_from_slice(&i.to_be_bytes());
    b
}

/// Replacing an inspection that already revealed: its answer is refused
/// and only the new inspection ends in a verdict.
#[test]
fn a_replaced_inspection_awaiting_its_answer_gets_no_verdict() {
    let mut c = checker(15);
    let old = start(&mut c, T0, container());
    let old_attempt = Behaviour::Honest.commit(&old, None).unwrap();
    let old_reveal = commit(&mut c, ms(10), container(), old.id, old_attempt.root());
    let out = c.handle(ms(20), from(INDEXER, request_for(container(), 79, InspectionKind::InService, cpu_host())));
    assert_eq!(released(&out), vec![cancel(container(), old.id)], "the replaced challenge is cancelled");
    let p = challenge(&out, container());
    let stale = old_attempt.respond(&old_reveal).unwrap().unwrap();
    rejected(&answer(&mut c, ms(30), container(), stale), container(), "no challenge");
    let attempt = Behaviour::Honest.commit(&p, None).unwrap();
    let r = commit(&mut c, ms(40), container(), p.id, attempt.root());
    let v = verdict(&answer(&mut c, ms(50), container(), attempt.respond(&r).unwrap().unwrap()));
    assert_eq!(
        (v.request, v.kind, v.challenge, v.passed, v.compute_ms),
        (79, InspectionKind::InService, p.id, true, 20)
    );
    assert_eq!(c.handle(ms(1_000_000), Input::Tick), vec![], "nothing left to time out");
}

#[test]
fn the_same_seed_gives_the_same_challenges() {
    let script = |seed: u8| {
        let mut c = checker(seed);
        let mut log = Vec::new();
        for container in [container(), other_container()] {
            let p = start(&mut c, T0, container);
            let attempt = Behaviour::Honest.commit(&p, None).unwrap();
            let r = commit(&mut c, ms(10), container, p.id, attempt.root());
            let v = verdict(&answer(&mut c, ms(20), container, attempt.respond(&r).unwrap().unwrap()));
            log.push((p, r, v));
        }
        log
    };
    assert_eq!(script(9), script(9));
    let (a, b) = (script(9), script(10));
    assert_ne!(a[0].0.seed, b[0].0.seed);
    assert_ne!(a[0].1.seed, b[0].1.seed, "reveals come from the checker's seed too");
    assert_ne!(a[0].0.seed, a[1].0.seed, "every challenge has a fresh seed");
    assert_ne!(a[0].1.seed, a[1].1.seed, "every reveal has a fresh seed");
    assert!(a.iter().chain(&b).all(|(_, _, v)| v.passed));
}

// --- every inspection frees the container; wrong nodes (issue 14)

/// A challenge names the container meant and how long the checker waits
/// for the commitment; ids are drawn at random, so only the node a
/// challenge reached can name it.
#[test]
fn challenges_name_their_container_and_commitment_deadline() {
    let mut c = checker(20);
    let p = start(&mut c, T0, container());
    assert_eq!((p.container, p.deadline_ms), (container(), commit_window(c.config(), TimingClass::Cpu, N)));
    let q = start(&mut c, T0, other_container());
    assert_eq!(q.container, other_container());
    assert!(p.id.abs_diff(q.id) > 1_000_000, "ids are drawn, not counted: {} then {}", p.id, q.id);

    let config = Config { challenge_n: 64, min_deadline: Duration::ZERO, ..config() };
    let mut c = Checker::new(config, [21; 32], checker_key()).unwrap();
    let request = request_for(container(), 5, InspectionKind::Standby, h100());
    let p = challenge(&c.handle(T0, from(INDEXER, request)), container());
    assert_eq!(p.deadline_ms, dci_capacity::deadline_ms(TimingClass::H100, 64));
}

/// A commitment slower than the claimed class fails, and the container is
/// told to forget the challenge instead of being left waiting for a reveal.
#[test]
fn a_slow_commitment_gets_a_cancel() {
    const SIZE: u32 = 64;
    let config = Config { challenge_n: SIZE, min_deadline: Duration::ZERO, ..config() };
    let mut c = Checker::new(config, [22; 32], checker_key()).unwrap();
    let p = challenge(
        &c.handle(T0, from(INDEXER, request_for(container(), 5, InspectionKind::Standby, h100()))),
        container(),
    );
    let attempt = Behaviour::Honest.commit(&p, None).unwrap();
    let late = dci_capacity::deadline_ms(TimingClass::H100, SIZE) + 1;
    let out = c.handle(ms(late), from(container(), Message::Commitment { challenge: p.id, root: attempt.root() }));
    let v = verdict(&out);
    assert!(!v.passed && v.reason.starts_with("failed: slow:"), "{v:?}");
    assert_eq!(released(&out), vec![cancel(container(), p.id)], "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::Net(Net::Reply { msg: Message::Reveal(_), .. }))), "{out:?}");
    assert_eq!(c.in_flight(), 0);
}

/// A silent container's challenge, found dark by a tick, is cancelled too
/// (before or after the reveal: a reveal may have been lost).
#[test]
fn a_dark_inspection_gets_a_cancel() {
    let mut c = checker(23);
    let p = start(&mut c, T0, container());
    let window = commit_window(c.config(), TimingClass::Cpu, N);
    let out = c.handle(ms(window + 1), Input::Tick);
    assert!(verdict(&out).reason.starts_with("failed: dark: no commitment"));
    assert_eq!(released(&out), vec![cancel(container(), p.id)]);

    let p = start(&mut c, ms(window + 2), container());
    let attempt = Behaviour::Honest.commit(&p, None).unwrap();
    let r = commit(&mut c, ms(window + 3), container(), p.id, attempt.root());
    let out = c.handle(ms(window + 3 + answer_window(c.config(), N, r.rounds) + 1), Input::Tick);
    assert!(verdict(&out).reason.starts_with("failed: dark: no answer"));
    assert_eq!(released(&out), vec![cancel(container(), p.id)]);
}

/// The answer a registration's address gives with a key that is not the
/// registrant's (its commitment, or its refusal, since the challenge names
/// the registrant) ends that inspection at once: failed, with the reason,
/// the registrant's failure alone. The node that answered is told to forget
/// the challenge, is named in no verdict and in no evidence.
#[test]
fn a_wrong_node_answer_fails_the_inspection_at_once() {
    let wrong = other_container();
    let expected =
        format!("failed: wrong_node: the address answers with key {wrong}, not the registrant's {}", container());
    type FirstAnswer = fn(&ChallengeParams) -> Message;
    let cases: [(&str, FirstAnswer); 2] = [
        ("a commitment", |p| Message::Commitment {
            challenge: p.id,
            root: Behaviour::Honest.commit(p, None).unwrap().root(),
        }),
        ("a refusal", |p| Message::ChallengeRefused {
            challenge: p.id,
            reason: format!(
                "wrong_node: this is container {}, the challenge is for container {}",
                other_container(),
                container()
            ),
        }),
    ];
    for (what, msg) in cases {
        let mut c = on_committee(24, KEYS[201].clone());
        let p = start(&mut c, T0, container());
        // Long before the deadline.
        let out = c.handle(ms(40), from(wrong, msg(&p)));
        let v = verdict(&out);
        assert_eq!(
            (v.container, v.request, v.challenge, v.passed, v.reason.as_str(), v.compute_ms),
            (container(), REQUEST_ID, p.id, false, expected.as_str(), 40),
            "{what}"
        );
        assert_eq!(released(&out), vec![cancel(container(), p.id)], "{what}: the registered address is told");
        assert_eq!(evidence_in(&out), None, "{what}");
        assert_eq!(c.in_flight(), 0, "{what}");
        assert_eq!(c.handle(ms(1_000_000), Input::Tick), vec![], "{what}: nothing left to time out");
    }

    // The same for an evaluation: its request names the registrant, and
    // another key answering it (starting the session or refusing) fails it.
    for ready in [true, false] {
        let mut c = checker(25);
        let out = c.handle(T0, from(INDEXER, evaluation_request(8)));
        let [Output::Net(Net::Send { msg: Message::EvaluationRequest { id, .. }, .. })] = out.as_slice() else {
            panic!("{out:?}")
        };
        let id = *id;
        let msg = if ready {
            Message::EvaluationReady { id, endpoint: "http://127.0.0.1:9/".into() }
        } else {
            Message::EvaluationFailed { id, reason: "wrong_node".into() }
        };
        let out = c.handle(ms(50), from(wrong, msg));
        let v = verdict(&out);
        assert_eq!(
            (v.container, v.passed, v.reason.as_str()),
            (container(), false, expected.as_str()),
            "ready={ready}"
        );
        assert_eq!(released(&out), vec![(addr_of(container()), Message::EvaluationDone { id })]);
        assert!(!out.iter().any(|o| matches!(o, Output::Evaluate { .. })), "no simulated user runs: {out:?}");
    }
}

/// A registrant that refuses its own challenge fails at once, not at the deadline.
#[test]
fn a_refusal_by_the_registrant_fails_at_once() {
    let mut c = checker(26);
    let p = start(&mut c, T0, container());
    let refusal = Message::ChallengeRefused { challenge: p.id, reason: "already working on 2 challenges".into() };
    let out = c.handle(ms(30), from(container(), refusal));
    let v = verdict(&out);
    assert_eq!(
        (v.passed, v.reason.as_str(), v.compute_ms),
        (false, "failed: refused: already working on 2 challenges", 30)
    );
    assert_eq!(c.in_flight(), 0);
    // A refusal after the commitment is out of order.
    let p = start(&mut c, ms(40), container());
    let attempt = Behaviour::Honest.commit(&p, None).unwrap();
    commit(&mut c, ms(50), container(), p.id, attempt.root());
    let refusal = Message::ChallengeRefused { challenge: p.id, reason: "late".into() };
    rejected(&c.handle(ms(60), from(container(), refusal)), container(), "challenge_refused");
    assert_eq!(c.in_flight(), 1);
}

// --- configuration

#[test]
fn bad_configurations_are_refused() {
    let base = config();
    let with = |params: Params| Config { params, ..base.clone() };
    let d = Params::DEFAULT;
    let cases: Vec<(Config, ConfigError)> = vec![
        (Config { indexers: vec![], ..base.clone() }, ConfigError::NoIndexers),
        (
            Config { indexers: vec![Peer { id: INDEXER, addr: " ".into() }], ..base.clone() },
            ConfigError::IndexerAddr(INDEXER),
        ),
        (Config { challenge_n: 0, ..base.clone() }, ConfigError::ChallengeN { max: MAX_N, found: 0 }),
        (Config { challenge_n: MAX_N + 1, ..base.clone() }, ConfigError::ChallengeN { max: MAX_N, found: MAX_N + 1 }),
        (with(Params { rounds: 0, ..d }), ConfigError::Rounds { max: MAX_ROUNDS, found: 0 }),
        (with(Params { rounds: MAX_ROUNDS + 1, ..d }), ConfigError::Rounds { max: MAX_ROUNDS, found: MAX_ROUNDS + 1 }),
        (with(Params { rows: 0, ..d }), ConfigError::Rows { max: MAX_ROWS, rows: 0, columns: d.columns }),
        (
            with(Params { rows: MAX_ROWS + 1, ..d }),
            ConfigError::Rows { max: MAX_ROWS, rows: MAX_ROWS + 1, columns: d.columns },
        ),
        (with(Params { columns: 0, ..d }), ConfigError::Rows { max: MAX_ROWS, rows: d.rows, columns: 0 }),
    ];
    for (config, error) in cases {
        let message = error.to_string();
        assert!(message.contains("expected") && message.contains("found"), "{message}");
        assert_eq!(config.validate(), Err(error.clone()));
        assert_eq!(Checker::new(config, [0; 32], checker_key()).err(), Some(error));
    }
    let too_large = [
        Config { challenge_n: MAX_N, params: Params { rows: MAX_ROWS, ..d }, ..base.clone() },
        Config { challenge_n: MAX_N, params: Params { rounds: MAX_ROUNDS, ..d }, ..base.clone() },
    ];
    for config in too_large {
        assert!(
            matches!(config.validate(), Err(ConfigError::AnswerTooLarge { max: MAX_MESSAGE_BYTES, .. })),
            "{config:?}"
        );
    }
    // The extremes that do fit: every row of a small matrix, the default
    // parameters at the largest size, and the devnet.
    let fine = [
        Config {
            challenge_n: 256,
            params: Params { rows: MAX_ROWS, rounds: MAX_ROUNDS, columns: u32::MAX },
            ..base.clone()
        },
        Config { challenge_n: MAX_N, ..base.clone() },
        Config::devnet(vec![Peer { id: INDEXER, addr: INDEXER_ADDR.into() }]),
    ];
    for config in fine {
        assert_eq!(config.validate(), Ok(()), "{config:?}");
    }
}

/// The largest answer a configuration that validates can call for, sealed
/// by the driver, fits in one message; a row or a round more is refused as
/// too large.
#[test]
fn accepted_configurations_give_answers_that_fit_in_a_message() {
    let id = Identity::from_secret([5; 32]);
    let accepts = |n: u32, rounds: u32, rows: u32| {
        Config { challenge_n: n, params: Params { rounds, rows, columns: 1 }, ..config() }.validate()
    };
    for n in [256u32, 4096, MAX_N] {
        let most_rounds = (1..=MAX_ROUNDS).take_while(|&k| accepts(n, k, DEFAULT_ROWS).is_ok()).last().unwrap();
        assert!(most_rounds >= DEFAULT_ROUNDS, "n={n}: only {most_rounds} rounds accepted");
        if most_rounds < MAX_ROUNDS {
            let refused = accepts(n, most_rounds + 1, DEFAULT_ROWS);
            assert!(matches!(refused, Err(ConfigError::AnswerTooLarge { .. })), "n={n}: {refused:?}");
        }
        for rounds in [1, DEFAULT_ROUNDS, most_rounds] {
            let most_rows = (1..=MAX_ROWS).take_while(|&s| accepts(n, rounds, s).is_ok()).last().unwrap();
            assert!(most_rows >= DEFAULT_ROWS.min(n), "n={n} rounds={rounds}: only {most_rows} rows accepted");
            if most_rows < MAX_ROWS {
                let refused = accepts(n, rounds, most_rows + 1);
                assert!(
                    matches!(refused, Err(ConfigError::AnswerTooLarge { .. })),
                    "n={n} rounds={rounds}: {refused:?}"
                );
            }
            // The largest answer such a configuration can call for: rows
            // are capped at n, every value and index at its widest.
            let rows = most_rows.min(n);
            let response = Response {
                challenge: u64::MAX,
                products: vec![vec![f32::MAX; n as usize]; rounds as usize],
                rows: (0..rows)
                    .map(|i| RowOpening {
                        index: n - 1 - i,
                        values: vec![f32::MAX; n as usize],
                        proof: vec![[0xff; 32]; dci_capacity::depth(n as usize)],
                    })
                    .collect(),
            };
            let channel = dci_proto::Channel {
                network: dci_proto::NetworkId::of("largest"),
                local: id.id(),
                peer: NodeId([0xff; 32]),
                binding: [0xff; 32],
            };
            let sealed =
                seal(&id, &channel, Timestamp(u64::MAX), &Message::Answer { response, signature: vec![0xff; 64] });
            assert!(sealed.len() <= MAX_MESSAGE_BYTES, "n={n} rounds={rounds} rows={rows}: {} bytes", sealed.len());
        }
    }
}

// --- in-service evaluation (R-CK3, R-CK4)

fn render() -> ServiceName {
    ServiceName::new("render").unwrap()
}

fn evaluation_request(id: u64) -> Message {
    match request_for(container(), id, InspectionKind::InService, cpu_host()) {
        Message::InspectionRequest(r) => Message::InspectionRequest(InspectionRequest { service: Some(render()), ..r }),
        _ => unreachable!(),
    }
}

fn good_report() -> ServiceReport {
    ServiceReport { fps: 29.5, input_to_frame_p99_ms: Some(48.0), inputs: 20, answered: 20, changed: 20, stalled: None }
}

/// Starts an evaluation and brings it to the point where the simulated user runs; returns its id.
fn evaluating(c: &mut Checker) -> u64 {
    let out = c.handle(T0, from(INDEXER, evaluation_request(31)));
    let id = match out.as_slice() {
        [
            Output::Net(Net::Send {
                addr,
                msg: Message::EvaluationRequest { id, service, container: named, deadline_ms },
            }),
        ] if *addr == addr_of(container()) && *service == render() => {
            // It names the container meant and how long the whole evaluation may take.
            let floor = EvaluationFloor::DEVNET;
            assert_eq!((*named, *deadline_ms), (container(), floor.session_start_ms + floor.run_ms));
            *id
        }
        other => panic!("expected an evaluation request to the container, found {other:?}"),
    };
    let out =
        c.handle(ms(100), from(container(), Message::EvaluationReady { id, endpoint: "http://127.0.0.1:9/".into() }));
    assert_eq!(out, vec![Output::Evaluate { id, service: render(), endpoint: "http://127.0.0.1:9/".into() }]);
    id
}

#[test]
fn an_in_service_evaluation_is_judged_on_what_the_simulated_user_saw() {
    type Spoil = fn(&mut ServiceReport);
    let cases: Vec<(&str, Spoil, &str)> = vec![
        ("a good stream", |_| {}, "passed: in-service evaluation"),
        ("a stalled stream", |r| r.stalled = Some("no frame for 5 s".into()), "failed: stalled"),
        ("too few frames", |r| r.fps = 1.0, "failed: slow_stream"),
        ("an input never answered", |r| r.answered = 19, "failed: unresponsive"),
        (
            "no inputs at all",
            |r| {
                r.inputs = 0;
                r.answered = 0;
                r.changed = 0
            },
            "failed: unresponsive",
        ),
        ("laggy answers", |r| r.input_to_frame_p99_ms = Some(5_000.0), "failed: laggy"),
        ("a frozen picture", |r| r.changed = 3, "failed: frozen"),
    ];
    for (name, spoil, expected) in cases {
        let mut c = checker(40);
        let id = evaluating(&mut c);
        let mut report = good_report();
        spoil(&mut report);
        let out = c.handle(ms(5_000), Input::Evaluated { id, result: Ok(report) });
        let v = verdict(&out[..2]);
        assert_eq!(
            (v.kind, v.request, v.container, v.passed),
            (InspectionKind::InService, 31, container(), expected.starts_with("passed")),
            "{name}: {v:?}"
        );
        assert!(v.reason.starts_with(expected), "{name}: {}", v.reason);
        assert!(v.reason.contains("frames/s"), "{name}: the reason shows what was measured: {}", v.reason);
        assert_eq!(
            out[2],
            Output::Net(Net::Send { addr: addr_of(container()), msg: Message::EvaluationDone { id } }),
            "{name}"
        );
        assert_eq!(c.in_flight(), 0);
    }
}

#[test]
fn evaluations_that_cannot_run_fail_and_unknown_ids_change_nothing() {
    // The container could not start the session.
    let mut c = checker(41);
    let out = c.handle(T0, from(INDEXER, evaluation_request(5)));
    let Output::Net(Net::Send { msg: Message::EvaluationRequest { id, .. }, .. }) = &out[0] else { panic!("{out:?}") };
    let id = *id;
    rejected(
        &c.handle(ms(1), from(container(), Message::EvaluationReady { id: id ^ 1, endpoint: "x".into() })),
        container(),
        "no challenge",
    );
    assert_eq!(c.in_flight(), 1);
    let out =
        c.handle(ms(2), from(container(), Message::EvaluationFailed { id, reason: "render not installed".into() }));
    let v = verdict(&out);
    assert!(!v.passed && v.reason.starts_with("failed: no_session: render not installed"), "{v:?}");
    assert_eq!(released(&out), vec![(addr_of(container()), Message::EvaluationDone { id })]);

    // The session never starts, or the simulated user never reports.
    let floor = EvaluationFloor::DEVNET;
    let mut c = checker(42);
    c.handle(T0, from(INDEXER, evaluation_request(6)));
    assert_eq!(c.handle(ms(floor.session_start_ms), Input::Tick), vec![]);
    let v = verdict(&c.handle(ms(floor.session_start_ms + 1), Input::Tick));
    assert!(!v.passed && v.reason.contains("did not start"), "{v:?}");
    let mut c = checker(43);
    let id = evaluating(&mut c);
    let out = c.handle(ms(100 + floor.run_ms + 1), Input::Tick);
    let v = verdict(&out);
    assert!(!v.passed && v.reason.contains("did not finish"), "{v:?}");
    assert_eq!(released(&out), vec![(addr_of(container()), Message::EvaluationDone { id })], "its session is stopped");
    // A late report of a finished evaluation changes nothing.
    assert_eq!(c.handle(ms(200_000), Input::Evaluated { id, result: Ok(good_report()) }), vec![]);

    // The user could not connect at all.
    let mut c = checker(44);
    let id = evaluating(&mut c);
    let out = c.handle(ms(300), Input::Evaluated { id, result: Err("connection refused".into()) });
    let v = verdict(&out[..2]);
    assert!(!v.passed && v.reason.starts_with("failed: unusable") && v.reason.contains("connection refused"), "{v:?}");

    // Without a service named, an in-service request is a capacity challenge.
    let mut c = checker(45);
    let p = challenge(
        &c.handle(T0, from(INDEXER, request_for(container(), 7, InspectionKind::InService, cpu_host()))),
        container(),
    );
    assert_eq!(p.n, N);
}

// --- committee duties (R-CK6, R-CK7)

const COORDINATOR: NodeId = NodeId([6; 32]);
const COORDINATOR_ADDR: &str = "127.0.0.1:7100";

fn on_committee(seed: u8, key: Identity) -> Checker {
    let coordinator = Some(Coordinator { id: COORDINATOR, addr: COORDINATOR_ADDR.into() });
    Checker::new(Config { coordinator, ..config() }, [seed; 32], key).unwrap()
}

/// Plays one inspection of `behaviour`; returns the outputs of the answer.
fn inspect(c: &mut Checker, behaviour: Behaviour) -> Vec<Output> {
    let p = start(c, T0, container());
    let attempt = behaviour.commit(&p, None).unwrap();
    let r = commit(c, ms(COMMIT_AT), container(), p.id, attempt.root());
    answer(c, ms(ANSWER_AT), container(), attempt.respond(&r).unwrap().unwrap())
}

fn evidence_in(out: &[Output]) -> Option<Evidence> {
    out.iter().find_map(|o| match o {
        Output::Net(Net::Send { addr, msg: Message::Evidence(e) }) if addr == COORDINATOR_ADDR => Some(e.clone()),
        _ => None,
    })
}

fn proposal(epoch: u64, evidence: Evidence) -> Input {
    from(COORDINATOR, Message::PenaltyProposal { epoch, amount: Amount::ath(50), evidence, chain: None })
}

#[test]
fn a_checker_proves_its_sortition_ticket_for_the_coordinator_only() {
    let key = KEYS[201].clone();
    let mut c = on_committee(1, key.clone());
    assert_eq!(c.vrf_public(), CommitteeKey::from_identity(&key).public());
    let seed = EpochSeed::genesis("checker-test");
    let out = c.handle(T0, from(COORDINATOR, Message::EpochOpen { epoch: 4, seed: seed.0 }));
    let proof = match out.as_slice() {
        [Output::Net(Net::Reply { conn, msg: Message::EpochProof { epoch: 4, proof } })]
            if *conn == conn_of(COORDINATOR) =>
        {
            proof.clone()
        }
        other => panic!("expected an epoch proof reply, found {other:?}"),
    };
    let mut coordinator = EpochCoordinator::new("checker-test", 1).unwrap();
    let me = Registered { id: key.id(), addr: "x:1".into(), vrf_public: c.vrf_public(), stake: Amount::ath(10) };
    assert_eq!(coordinator.open(4, &[me]).unwrap(), seed);
    assert_eq!(coordinator.proof(key.id(), 4, &proof), Ok(0), "the proof verifies");
    assert_eq!(coordinator.close().unwrap().1.ids(), vec![key.id()]);
    rejected(&c.handle(T0, from(STRANGER, Message::EpochOpen { epoch: 4, seed: seed.0 })), STRANGER, "coordinator");
    let mut lone = checker(1);
    rejected(
        &lone.handle(T0, from(COORDINATOR, Message::EpochOpen { epoch: 4, seed: seed.0 })),
        COORDINATOR,
        "coordinator",
    );
}

/// A wrong product signed by the container goes to the coordinator as
/// evidence; another checker re-verifies it and votes with a signature the
/// ledger accepts; honest or tampered transcripts get no vote.
#[test]
fn signed_failures_become_evidence_that_other_members_vote_on() {
    let mut reporter = on_committee(2, KEYS[201].clone());
    let out = inspect(&mut reporter, Behaviour::WrongProduct);
    assert!(!verdict(&out[..2]).passed);
    let evidence = evidence_in(&out).expect("a signed wrong answer is reported as evidence");
    assert!(evidence.signed_by_container());

    let voter_key = KEYS[202].clone();
    let mut voter = on_committee(3, voter_key.clone());
    let out = voter.handle(T0, proposal(9, evidence.clone()));
    let signature = match out.as_slice() {
        [Output::Net(Net::Reply { msg: Message::PenaltyVote { evidence_hash, signature, chain_signature }, .. })] => {
            assert_eq!(*evidence_hash, evidence.hash());
            assert_eq!(*chain_signature, None, "no chain named, no chain signature");
            signature.clone()
        }
        other => panic!("expected a penalty vote, found {other:?}"),
    };
    let mut report = SlashReport {
        offender: AccountId::for_node(&container()),
        role: StakeRole::Container,
        epoch: 9,
        evidence_hash: evidence.hash(),
        amount: Amount::ath(50),
        signatures: vec![(voter_key.id(), signature)],
    };
    assert!(report.verifies(&voter_key.id(), &report.signatures[0].1));
    assert_eq!(report.verify_quorum(&[voter_key.id()]), Ok(1));
    report.epoch = 10;
    assert!(report.verify_quorum(&[voter_key.id()]).is_err(), "a vote is for one epoch's report");

    // Tampered evidence: the container's signature no longer covers it.
    let mut forged = evidence.clone();
    forged.response.products[0][0] += 1.0;
    rejected(&voter.handle(T0, proposal(9, forged)), COORDINATOR, "not signed by the container");
    let mut forged = evidence.clone();
    forged.params.seed[0] ^= 1;
    rejected(&voter.handle(T0, proposal(9, forged)), COORDINATOR, "not signed by the container");
    // Only the coordinator proposes.
    rejected(
        &voter.handle(
            T0,
            from(STRANGER, Message::PenaltyProposal { epoch: 9, amount: Amount::ath(1), evidence, chain: None }),
        ),
        STRANGER,
        "coordinator",
    );
}

/// A stand-in for the node's chain signer (the real one is
/// `dci_chain::slash_signature_at`, tested in dci-chain): it depends on the
/// member, the ledger and the report, as a signature does.
fn tag_signer(by: &Identity, domain: &ChainDomain, report: &SlashReport) -> Vec<u8> {
    let mut b = by.id().0.to_vec();
    b.extend_from_slice(&domain.chain_id.to_be_bytes());
    b.extend_from_slice(&domain.ledger);
    b.extend_from_slice(&report.signing_bytes());
    b
}

/// When the proposal names a chain ledger, a member with a chain signer
/// signs the report it built itself for that ledger too; one without a
/// signer still votes with ed25519 only.
#[test]
fn a_vote_carries_a_chain_signature_of_the_members_own_report() {
    let mut reporter = on_committee(2, KEYS[201].clone());
    let evidence = evidence_in(&inspect(&mut reporter, Behaviour::WrongProduct)).unwrap();
    let domain = ChainDomain { chain_id: 31337, ledger: [7; 20] };
    let voter_key = KEYS[202].clone();
    let report =
        SlashReport::new(AccountId::for_node(&container()), StakeRole::Container, 9, evidence.hash(), Amount::ath(50));
    let cases: [(bool, Option<ChainDomain>, Option<Vec<u8>>); 4] = [
        (true, Some(domain), Some(tag_signer(&voter_key, &domain, &report))),
        (true, None, None),
        (false, Some(domain), None),
        (false, None, None),
    ];
    for (with_signer, chain, want) in cases {
        let mut voter = on_committee(3, voter_key.clone());
        if with_signer {
            voter = voter.with_chain_signer(tag_signer);
        }
        let msg = Message::PenaltyProposal { epoch: 9, amount: Amount::ath(50), evidence: evidence.clone(), chain };
        match voter.handle(T0, from(COORDINATOR, msg)).as_slice() {
            [Output::Net(Net::Reply { msg: Message::PenaltyVote { signature, chain_signature, .. }, .. })] => {
                assert!(report.verifies(&voter_key.id(), signature));
                assert_eq!(*chain_signature, want, "signer {with_signer}, chain {chain:?}");
            }
            other => panic!("expected a penalty vote, found {other:?}"),
        }
    }
}

#[test]
fn honest_or_unsigned_answers_are_never_evidence() {
    let mut c = on_committee(4, KEYS[201].clone());
    let out = inspect(&mut c, Behaviour::Honest);
    assert!(verdict(&out).passed && evidence_in(&out).is_none());

    // An honest transcript, signed, proposed anyway: no vote.
    let p = start(&mut c, T0, container());
    let attempt = Behaviour::Honest.commit(&p, None).unwrap();
    let r = commit(&mut c, ms(COMMIT_AT), container(), p.id, attempt.root());
    let response = attempt.respond(&r).unwrap().unwrap();
    let signature = signed(container(), &response);
    let honest = Evidence { container: container(), params: p, root: attempt.root(), reveal: r, response, signature };
    assert!(honest.signed_by_container());
    let mut voter = on_committee(5, KEYS[202].clone());
    rejected(&voter.handle(T0, proposal(1, honest)), COORDINATOR, "the answer verifies");

    // A wrong answer without the container's signature fails, but is no evidence.
    let p = start(&mut c, T0, container());
    let attempt = Behaviour::WrongProduct.commit(&p, None).unwrap();
    let r = commit(&mut c, ms(COMMIT_AT), container(), p.id, attempt.root());
    let response = attempt.respond(&r).unwrap().unwrap();
    let out = c.handle(ms(ANSWER_AT), from(container(), Message::Answer { response, signature: vec![7; 64] }));
    let v = verdict(&out);
    assert!(!v.passed && v.reason.starts_with("failed: bad_signature"), "{v:?}");
}

/// A transcript the container signed over a challenge or reveal that is
/// itself invalid (the checker's own setup failed) is never worth a vote,
/// nor one whose challenge names another container.
#[test]
fn a_failure_of_the_checkers_own_setup_is_never_evidence_nor_a_vote() {
    let key = &KEYS[2];
    let signed = |params: ChallengeParams, reveal: Reveal| {
        let response = Response { challenge: params.id, products: vec![vec![0.0; params.n as usize]; 2], rows: vec![] };
        let signature = sign_transcript(key, &params, &[7; 32], &reveal, &response);
        Evidence { container: key.id(), params, root: [7; 32], reveal, response, signature }
    };
    let params = ChallengeParams { id: 5, seed: [3; 32], n: 16, container: key.id(), deadline_ms: 10_000 };
    let reveal = Reveal { challenge: 5, seed: [1; 32], rounds: 2, rows: vec![3, 9], columns: 16 };
    let cases = [
        (
            "a row out of range",
            signed(params.clone(), Reveal { rows: vec![3, 99], ..reveal.clone() }),
            "the checker's own",
        ),
        ("a row twice", signed(params.clone(), Reveal { rows: vec![9, 9], ..reveal.clone() }), "the checker's own"),
        ("no rounds", signed(params.clone(), Reveal { rounds: 0, ..reveal.clone() }), "the checker's own"),
        (
            "a zero-sized challenge",
            signed(ChallengeParams { n: 0, ..params.clone() }, reveal.clone()),
            "the checker's own",
        ),
        (
            "a challenge for another container",
            signed(ChallengeParams { container: other_container(), ..params.clone() }, reveal.clone()),
            "names another container",
        ),
    ];
    for (what, evidence, why) in cases {
        assert!(evidence.signed_by_container(), "{what}");
        let v = dci_capacity::verify(&evidence.params, &evidence.root, &evidence.reveal, &evidence.response);
        assert!(v.is_err(), "{what}: the transcript fails");
        let mut voter = on_committee(6, KEYS[202].clone());
        rejected(&voter.handle(T0, proposal(3, evidence)), COORDINATOR, why);
    }
    // The same transcript with a valid reveal is the container's failure: a vote.
    let mut voter = on_committee(6, KEYS[202].clone());
    let out = voter.handle(T0, proposal(3, signed(params, reveal)));
    assert!(matches!(out.as_slice(), [Output::Net(Net::Reply { msg: Message::PenaltyVote { .. }, .. })]), "{out:?}");
}

// --- properties

fn any_kind() -> impl Strategy<Value = InspectionKind> {
    prop_oneof![Just(InspectionKind::Registration), Just(InspectionKind::Standby), Just(InspectionKind::InService)]
}

fn any_claim() -> impl Strategy<Value = ContainerSpec> {
    prop_oneof![
        (0u32..512).prop_map(|ram| spec(None, ram)),
        (0u32..9, 1u32..200).prop_map(|(count, vram)| spec(gpu("NVIDIA H100 80GB HBM3", count, vram), 16)),
        (1u32..9, 1u32..48).prop_map(|(count, vram)| spec(gpu("NVIDIA GeForce RTX 4090", count, vram), 16)),
        "[a-zA-Z0-9 ]{0,24}".prop_map(|model| spec(gpu(&model, 1, 24), 16)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Whatever the checker's seed, the size, the claim and the request: an
    /// honest container that commits and answers in time passes, and the
    /// verdict answers that request.
    #[test]
    fn honest_containers_always_pass(
        rng_seed: [u8; 32],
        n in 1u32..=48,
        claim in any_claim(),
        kind in any_kind(),
        id: u64,
    ) {
        let mut c = Checker::new(Config { challenge_n: n, ..config() }, rng_seed, checker_key()).unwrap();
        let p = challenge(&c.handle(T0, from(INDEXER, request_for(container(), id, kind, claim))), container());
        prop_assert_eq!(p.n, n);
        let attempt = Behaviour::Honest.commit(&p, None).unwrap();
        let r = commit(&mut c, ms(COMMIT_AT), container(), p.id, attempt.root());
        let v = verdict(&answer(&mut c, ms(ANSWER_AT), container(), attempt.respond(&r).unwrap().unwrap()));
        prop_assert!(v.passed, "{:?}", v);
        prop_assert_eq!((v.request, v.kind, v.challenge), (id, kind, p.id));
    }

    /// Whatever the checker's seed and the size, a dishonest container never
    /// passes, and the verdict names its violation.
    #[test]
    fn dishonest_containers_never_pass(
        rng_seed: [u8; 32],
        n in 2u32..=48,
        which in 0usize..4,
    ) {
        let (behaviour, kind) = [
            (Behaviour::WrongProduct, "row_mismatch"),
            (Behaviour::Replay, "row_mismatch"),
            (Behaviour::ChangeRowsAfterCommit, "bad_path"),
            (Behaviour::Dark, "dark"),
        ][which];
        let mut c = Checker::new(Config { challenge_n: n, ..config() }, rng_seed, checker_key()).unwrap();
        let (v, _) = play(&mut c, container(), behaviour, None);
        prop_assert!(!v.passed, "{:?}", v);
        prop_assert!(v.reason.starts_with(&format!("failed: {kind}: ")), "{}: {}", behaviour.name(), v.reason);
    }
}

// --- what a passed proof vouches for (the container's reward weight)

/// An honest inspection of a container claiming `spec`; its verdict.
fn proven(spec: ContainerSpec) -> Verdict {
    let mut c = checker(7);
    let node = container();
    let p = challenge(
        &c.handle(T0, from(INDEXER, request_for(node, REQUEST_ID, InspectionKind::Registration, spec))),
        node,
    );
    let attempt = Behaviour::Honest.commit(&p, None).unwrap();
    let r = commit(&mut c, ms(COMMIT_AT), node, p.id, attempt.root());
    verdict(&answer(&mut c, ms(ANSWER_AT), node, attempt.respond(&r).unwrap().unwrap()))
}

#[test]
fn a_proof_vouches_for_what_it_verified_never_the_claim() {
    // A simulated GPU is the host's CPU: whatever it claims, it is proven as one.
    let liar = spec(Some(GpuSpec { model: "H100".into(), count: 64, vram_gib: 1024, simulated: true }), 24);
    let v = proven(liar);
    let cap = v.capacity.expect("a passed proof vouches for something");
    assert_eq!((cap.class.as_str(), cap.devices, cap.units, cap.simulated), ("cpu", 1, dci_capacity::CPU_UNITS, true));
    // A real GPU claim is credited one device (one challenge), and no more
    // memory per device than its class has (an H100 has at most 94 GiB).
    let v = proven(spec(gpu("NVIDIA H100", 64, 1024), 256));
    let cap = v.capacity.unwrap();
    assert_eq!((cap.class.as_str(), cap.devices, cap.units, cap.simulated), ("h100", 1, 94, false));
    let v = proven(h100());
    assert_eq!(v.capacity.unwrap().units, 80);
    // A failed proof vouches for nothing.
    let mut c = checker(8);
    let (v, _) = play(&mut c, container(), Behaviour::WrongProduct, None);
    assert!(!v.passed);
    assert_eq!(v.capacity, None);
}

/// A stand-in for the EVM's committee signature: the signer's address
/// followed by the members it signed (a real one is ECDSA over their digest).
fn committee_signature(identity: &Identity, _: &ChainDomain, epoch: u64, members: &[[u8; 20]]) -> Vec<u8> {
    let mut sig = identity.id().0[..20].to_vec();
    sig.extend(epoch.to_be_bytes());
    sig.extend(members.iter().flatten());
    sig
}

/// A checker signs an epoch's committee for a chain only as it recomputes
/// it, listing the members' chain signers as its own network file knows
/// them, once per epoch, and only for the coordinator.
#[test]
fn a_checker_signs_a_committee_only_as_it_recomputes_it() {
    let key = KEYS[201].clone();
    let known = |n: u8| [n; 20];
    let chain_signers = [(key.id(), known(1))].into_iter().collect();
    let coordinator = Some(Coordinator { id: COORDINATOR, addr: COORDINATOR_ADDR.into() });
    let mut c = Checker::new(Config { coordinator, chain_signers, ..config() }, [3; 32], key.clone())
        .unwrap()
        .with_committee_signer(committee_signature);
    // Its committee of epoch 4, as a coordinator announces it.
    let seed = EpochSeed::genesis("checker-test");
    let proof = match c.handle(T0, from(COORDINATOR, Message::EpochOpen { epoch: 4, seed: seed.0 })).as_slice() {
        [Output::Net(Net::Reply { msg: Message::EpochProof { proof, .. }, .. })] => proof.clone(),
        other => panic!("{other:?}"),
    };
    let mut coordinator = EpochCoordinator::new("checker-test", 1).unwrap();
    let me = Registered { id: key.id(), addr: "x:1".into(), vrf_public: c.vrf_public(), stake: Amount::ath(10) };
    coordinator.open(4, &[me]).unwrap();
    coordinator.proof(key.id(), 4, &proof).unwrap();
    let (announcement, _) = coordinator.close().unwrap();
    let chain = ChainDomain { chain_id: 31337, ledger: [9; 20] };
    let ask = |a: &dci_proto::CommitteeAnnouncement| Message::CommitteeSign { announcement: a.clone(), chain };

    rejected(&c.handle(T0, from(STRANGER, ask(&announcement))), STRANGER, "coordinator");
    // A tampered announcement (another VRF key for the member) does not
    // recompute: no signature.
    let mut forged = announcement.clone();
    forged.candidates[0].vrf_public = CommitteeKey::from_identity(&KEYS[202]).public();
    rejected(&c.handle(T0, from(COORDINATOR, ask(&forged))), COORDINATOR, "committee of epoch 4");
    let out = c.handle(T0, from(COORDINATOR, ask(&announcement)));
    match out.as_slice() {
        [Output::Net(Net::Reply { msg: Message::CommitteeSigned { epoch: 4, signature }, .. })] => {
            assert_eq!(signature, &committee_signature(&key, &chain, 4, &[known(1)]), "its own signer list");
        }
        other => panic!("expected a committee signature, found {other:?}"),
    }
    // Never twice for an epoch (nor an older one).
    rejected(&c.handle(T0, from(COORDINATOR, ask(&announcement))), COORDINATOR, "already signed");
}
