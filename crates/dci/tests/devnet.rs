//! End to end, as a user would: start `dci devnet` as a real process, deploy
//! the built-in render service with the `dci` CLI, call its endpoint, stop the
//! session, and check the consumer's and the provider's balances and the
//! supply invariant in the ledger. Then kill the devnet (SIGTERM and SIGKILL)
//! and restart it: containers, balances and finished sessions survive.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dci_gateway::api::SessionInfo;
use dci_ledger::{EmbeddedLedger, Genesis};
use dci_model::{AccountId, Amount, NodeId};

mod common;

use common::{DCI, Devnet, cli, cli_json, free_port};

fn ledger(dir: &Path) -> EmbeddedLedger {
    EmbeddedLedger::open(dir.join("gateway").join("ledger.db"), &Genesis::devnet()).unwrap()
}

#[test]
fn deploy_call_stop_settle_and_survive_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let net = Devnet::start(dir, port, 3);

    // Deploy with the CLI, as the README's tour does.
    let (ok, out, err) = cli(dir, &["deploy", "render", "--near", "38.7,-9.1", "--policy", "best-ux"]);
    assert!(ok, "deploy failed: {err}");
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{name} missing in {out}"))
    };
    let (session, container, endpoint) = (field("session"), field("container"), field("endpoint"));

    // The endpoint answers with real rendered frames; use it for a couple of
    // seconds (orbiting the camera) so that there is time to bill.
    let started = std::time::Instant::now();
    let mut frames = Vec::new();
    for yaw in (0..).step_by(15) {
        let png = reqwest::blocking::get(format!("{endpoint}/frame?yaw={yaw}&width=160&height=120")).unwrap();
        assert_eq!(png.status(), 200);
        let bytes = png.bytes().unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        frames.push(bytes);
        if started.elapsed() >= Duration::from_millis(2100) {
            break;
        }
    }
    assert!(frames.windows(2).all(|w| w[0] != w[1]), "moving the camera must change the frame");

    // Bad input: a clear message and a non-zero exit, and nothing changes.
    let before: dci_gateway::api::BalanceInfo = cli_json(dir, &["balance"]);
    let (ok, _, err) = cli(dir, &["deploy", "render", "--near", "100,0"]);
    assert!(!ok && err.contains("latitude"), "{err}");
    let (ok, _, err) = cli(dir, &["deploy", "render", "--gpu", "B200"]);
    assert!(!ok && err.contains("no_match") && err.contains("gpu model"), "{err}");
    let (ok, _, err) = cli(dir, &["stop", "not-a-session"]);
    assert!(!ok && err.contains("32 hex digits"), "{err}");
    let after: dci_gateway::api::BalanceInfo = cli_json(dir, &["balance"]);
    assert_eq!(before, after);

    // Stop: the bill is settled.
    let stopped: SessionInfo = cli_json(dir, &["stop", &session]);
    assert_eq!(stopped.status, dci_gateway::api::SessionStatus::Stopped);
    let charged: Amount = stopped.charged_ath.as_deref().unwrap().parse().unwrap();
    let escrow: Amount = stopped.escrow_ath.parse().unwrap();
    let refunded: Amount = stopped.refunded_ath.as_deref().unwrap().parse().unwrap();
    assert_eq!(charged.checked_add(refunded).unwrap(), escrow);
    let price: dci_model::PricePerHour = stopped.price_ath_per_hour.parse().unwrap();
    assert_eq!(charged, price.cost_for_secs(stopped.billed_seconds.unwrap()).unwrap());
    let balance: dci_gateway::api::BalanceInfo = cli_json(dir, &["balance"]);
    let funds = dci_node::devnet::CONSUMER_FUNDS;
    assert_eq!(balance.balance_ath.parse::<Amount>().unwrap(), funds.checked_sub(charged).unwrap());
    assert_eq!(balance.escrowed_ath, "0");

    // Leave one session running across a crash.
    let (ok, _, err) = cli(dir, &["deploy", "render"]);
    assert!(ok, "{err}");
    let containers_before: Vec<dci_gateway::api::ContainerInfo> = cli_json(dir, &["containers"]);
    net.signal("-KILL");

    // Restart after SIGKILL: same containers, same finished session; the
    // session that was running ends as interrupted (its container restarted).
    let net = Devnet::start(dir, port, 3);
    let containers_after: Vec<dci_gateway::api::ContainerInfo> = cli_json(dir, &["containers"]);
    let ids = |v: &[dci_gateway::api::ContainerInfo]| {
        let mut ids: Vec<String> = v.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&containers_before), ids(&containers_after));
    let sessions: Vec<SessionInfo> = cli_json(dir, &["sessions"]);
    assert_eq!(sessions.len(), 2);
    let first = sessions.iter().find(|s| s.id == session).expect("finished session kept");
    assert_eq!(first.charged_ath.as_deref(), stopped.charged_ath.as_deref());
    // It pays for the usage receipts persisted before the crash (usually
    // none this soon: they are persisted every few seconds), nothing more.
    let interrupted = sessions
        .iter()
        .find(|s| s.status == dci_gateway::api::SessionStatus::Interrupted)
        .expect("the running session is interrupted");
    let lost: Amount = interrupted.charged_ath.as_deref().unwrap().parse().unwrap();
    let balance: dci_gateway::api::BalanceInfo = cli_json(dir, &["balance"]);
    let spent = charged.checked_add(lost).unwrap();
    assert_eq!(balance.balance_ath.parse::<Amount>().unwrap(), funds.checked_sub(spent).unwrap());

    // A clean stop (SIGTERM), then the ledger itself: the provider was paid
    // its share and the supply is conserved.
    net.signal("-TERM");
    let l = ledger(dir);
    let provider = AccountId::for_node(&container.parse::<NodeId>().unwrap());
    let settled = l.settlement(session.parse().unwrap()).unwrap().expect("settlement recorded");
    assert_eq!(settled.settled.charged, charged);
    assert_eq!(l.balance(&provider).unwrap(), settled.settled.provider);
    assert!(stopped.billed_seconds.unwrap() >= 2, "{stopped:?}");
    assert!(charged.0 > 0 && settled.settled.provider.0 > 0 && settled.settled.provider < charged);
    l.check_invariant().expect("supply conserved");

    // And the API at the same port is gone: the CLI says so clearly.
    let (ok, _, err) = cli(dir, &["balance"]);
    assert!(!ok && err.contains("cannot reach the gateway"), "{err}");
}

#[test]
fn openapi_metrics_transfers_staking_and_rewards() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let net = Devnet::start_expecting(tmp.path(), port, 3, &["--epoch-secs", "1"], "3/3");
    let doc: serde_json::Value = reqwest::blocking::get(format!("{}/openapi.json", net.api)).unwrap().json().unwrap();
    assert!(doc["paths"]["/v1/sessions"]["post"].is_object(), "{doc}");
    assert!(doc["components"]["schemas"]["DeployRequest"].is_object());
    let metrics = reqwest::blocking::get(format!("{}/metrics", net.api)).unwrap().text().unwrap();
    assert!(metrics.contains("dci_messages_received_total"), "{metrics}");
    // Unauthenticated and malformed API calls get JSON errors with stable codes.
    let c = reqwest::blocking::Client::new();
    let r = c.get(format!("{}/v1/balance", net.api)).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["code"], "unauthorized");
    let key =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(tmp.path().join("client.json")).unwrap())
            .unwrap()["api_key"]
            .as_str()
            .unwrap()
            .to_owned();
    let r = c
        .post(format!("{}/v1/sessions", net.api))
        .bearer_auth(&key)
        .body("{\"service\": 5}")
        .header("content-type", "application/json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["code"], "bad_request");
    let r = c
        .post(format!("{}/v1/sessions", net.api))
        .bearer_auth(&key)
        .json(&serde_json::json!({"service": "render", "hours": 0}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<serde_json::Value>().unwrap()["message"].as_str().unwrap().contains("hours"));

    // Offers (R-IX5): the filter language, sorting, and errors that point at the bad token.
    let dir = tmp.path();
    let rows: Vec<dci_gateway::api::OfferInfo> = cli_json(dir, &["offers", "gpu=a100 vram>=80 service=render"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].gpu_model.as_deref(), Some("A100"));
    let rows: Vec<dci_gateway::api::OfferInfo> = cli_json(dir, &["offers", "", "--sort", "price"]);
    let prices: Vec<Amount> = rows.iter().map(|r| r.price_ath_per_hour.parse().unwrap()).collect();
    assert_eq!(rows.len(), 3);
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
    let rows: Vec<dci_gateway::api::OfferInfo> = cli_json(dir, &["offers", "near=38.7,-9.1 rtt<5"]);
    assert!(rows.iter().all(|r| r.estimated_rtt_ms.unwrap() < 5) && !rows.is_empty(), "{rows:?}");
    let (ok, _, err) = cli(dir, &["offers", "gpu=H100 vrm>=80"]);
    assert!(!ok && err.contains("vrm"), "{err}");

    // Transfers: exact decimal amounts; bad ones are refused and move nothing.
    let b: dci_gateway::api::BalanceInfo = cli_json(dir, &["transfer", "consumer:bob", "12.5"]);
    assert_eq!(b.balance_ath, "9987.5");
    for (to, amount, expect) in [
        ("consumer:bob", "-1", "amount_ath"),
        ("consumer:bob", "1e3", "amount_ath"),
        ("consumer:bob", "0", "positive"),
        ("Bob!", "1", "to:"),
        ("consumer:bob", "20000", "insufficient"),
    ] {
        let (ok, _, err) = cli(dir, &["transfer", to, amount]);
        assert!(!ok && err.contains(expect), "transfer {to} {amount}: {err}");
    }
    let b: dci_gateway::api::BalanceInfo = cli_json(dir, &["balance"]);
    assert_eq!(b.balance_ath, "9987.5");

    // Staking: bonded, then unbonding with a release time; too much is refused.
    let b: dci_gateway::api::BalanceInfo = cli_json(dir, &["stake", "100", "--role", "checker"]);
    assert_eq!((b.balance_ath.as_str(), b.staked_ath.as_str()), ("9887.5", "100"));
    let b: dci_gateway::api::BalanceInfo = cli_json(dir, &["unstake", "40", "--role", "checker"]);
    assert_eq!((b.staked_ath.as_str(), b.unbonding_ath.as_str()), ("60", "40"));
    assert_eq!(b.unbonding.len(), 1);
    let (ok, _, err) = cli(dir, &["unstake", "1000", "--role", "checker"]);
    assert!(!ok && err.contains("stake"), "{err}");
    let (ok, _, err) = cli(dir, &["stake", "1", "--role", "miner"]);
    assert!(!ok && err.contains("container or checker"), "{err}");

    // Epoch rewards (1 s epochs here): every container earns by capacity x
    // uptime, and anyone can see how a reward was computed.
    let containers: Vec<dci_gateway::api::ContainerInfo> = cli_json(dir, &["containers"]);
    let account = format!("node:{}", containers[0].id);
    let mut explained = None;
    for _ in 0..100 {
        let (ok, out, _) = cli(dir, &["rewards", "--account", &account, "--json"]);
        if ok {
            explained = Some(serde_json::from_str::<dci_gateway::api::RewardsInfo>(&out).unwrap());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = explained.expect("an epoch was distributed within 10 s");
    let total: Amount = r.details["total"].as_str().unwrap().parse::<u128>().map(Amount).unwrap();
    assert!(total.0 > 0, "{}", r.explanation);
    assert!(r.explanation.contains(&account), "{}", r.explanation);
    net.signal("-TERM");

    // The supply invariant, checked by the operator command.
    let report: serde_json::Value = cli_json(dir, &["ledger", "check"]);
    let part = |k: &str| report[k].as_str().unwrap().parse::<u128>().unwrap();
    let sum: u128 = ["balances", "escrowed", "staked", "unbonding", "rewards"].iter().map(|k| part(k)).sum();
    assert_eq!(sum, part("expected"), "{report}");
    assert!(part("rewards") > 0 && part("staked") > 0, "{report}");
}

/// Each way of cheating at the proof of capacity is caught in a running
/// devnet: the cheat fails its registration inspection, says why, and is
/// never schedulable, while the honest containers are.
#[test]
fn dishonest_containers_are_caught() {
    let cases = [
        ("wrong-product", "row_mismatch"),
        ("replay", "row_mismatch"),
        ("change-rows-after-commit", "bad_path"),
        ("dark", "dark"),
    ];
    for (cheat, why) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let net = Devnet::start_expecting(dir, free_port(), 3, &["--dishonest", cheat], "2/3");
        let containers: Vec<dci_gateway::api::ContainerInfo> = cli_json(dir, &["containers"]);
        // Failed: reinspection required, or quality control after a repeat.
        let (bad, good): (Vec<_>, Vec<_>) =
            containers.iter().partition(|c| c.state == "reinspection-required" || c.state == "quality-control");
        assert_eq!((bad.len(), good.len()), (1, 2), "{cheat}: {containers:#?}");
        assert!(good.iter().all(|c| c.state == "healthy" || c.state == "ready"), "{cheat}: {good:#?}");
        assert!(good.iter().all(|c| c.verdicts.iter().all(|v| v.passed)), "{cheat}: {good:#?}");
        let v = bad[0].verdicts.last().expect("a verdict");
        assert!(!v.passed && v.kind == "registration" && v.reason.contains(why), "{cheat}: {v:?}");
        assert!(bad[0].reputation < good[0].reputation, "{cheat}: reputation did not drop");
        // The table shows the failed verdict too.
        let (ok, text, err) = cli(dir, &["containers"]);
        assert!(ok && text.contains("FAILED"), "{err}{text}");
        // A signed wrong answer is evidence: the epoch committee re-verifies it
        // and the ledger slashes with >= 2/3 of its signatures. A silent
        // container leaves no evidence and is not slashed.
        let committee = penalties_settled(dir, cheat != "dark");
        let bad_penalties: Vec<_> = committee.penalties.iter().filter(|p| p.container == bad[0].id).collect();
        assert!(committee.penalties.iter().all(|p| p.container == bad[0].id), "{cheat}: {committee:#?}");
        if cheat == "dark" {
            assert!(bad_penalties.is_empty(), "{cheat}: {committee:#?}");
        } else {
            let p = bad_penalties.iter().find(|p| p.outcome != "pending").unwrap();
            assert_eq!(p.outcome, "slashed", "{cheat}: {p:#?}");
            assert!(p.signers.len() as u32 >= p.quorum && p.quorum >= 2, "{cheat}: {p:#?}");
            // At most 10% of the bonded stake (1000 ATH) per report.
            let taken: f64 = p.taken.parse().unwrap();
            assert!(taken > 0.0 && taken <= 100.0, "{cheat}: {p:#?}");
            assert!(p.signers.iter().all(|s| committee.members.contains(s)), "{cheat}: {p:#?}");
        }
        let (ok, text, err) = cli(dir, &["committee"]);
        assert!(ok && text.contains("recomputed here from the VRF proofs: same members"), "{err}{text}");
        drop(net);
    }
}

/// A container serving a session is evaluated in service (R-CK3, R-CK4):
/// a committee member's scripted simulated user opens its own stream of the
/// render service on it, moves the camera, and the verdict reports frames/s
/// and input-to-frame latency.
#[test]
fn serving_containers_get_in_service_evaluations_by_a_simulated_user() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _net = Devnet::start_expecting(dir, free_port(), 3, &["--inspect-every-secs", "4"], "3/3");
    let (ok, out, err) = cli(dir, &["deploy", "render", "--hours", "1"]);
    assert!(ok, "deploy failed: {err}");
    let container = out
        .lines()
        .find_map(|l| l.strip_prefix("container"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no container in {out}"));
    let t0 = std::time::Instant::now();
    let verdict = loop {
        let list: Vec<dci_gateway::api::ContainerInfo> = cli_json(dir, &["containers"]);
        let c = list.iter().find(|c| c.id.starts_with(&container) || container.starts_with(&c.id[..8])).unwrap();
        if let Some(v) = c.verdicts.iter().find(|v| v.kind == "in-service") {
            break v.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(90), "no in-service evaluation within 90 s: {list:#?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(verdict.passed, "{verdict:?}");
    assert!(verdict.reason.contains("frames/s") && verdict.reason.contains("input-to-frame p99"), "{verdict:?}");
}

/// Polls `dci committee` until a committee exists and, if `expect_penalty`,
/// until a penalty is decided (a minute at most).
fn penalties_settled(dir: &Path, expect_penalty: bool) -> dci_gateway::api::CommitteeInfo {
    let t0 = std::time::Instant::now();
    loop {
        let (ok, out, err) = cli(dir, &["committee", "--json"]);
        if ok {
            let info: dci_gateway::api::CommitteeInfo = serde_json::from_str(&out).unwrap();
            if !expect_penalty || info.penalties.iter().any(|p| p.outcome != "pending") {
                return info;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no committee decision within 60 s: {err}{out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The devnet runs an epoch committee drawn from its staked checkers: the
/// CLI recomputes it from the published VRF proofs.
#[test]
fn the_epoch_committee_is_drawn_from_staked_checkers_and_recomputes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _net = Devnet::start_expecting(dir, free_port(), 3, &["--checkers", "5", "--committee-size", "3"], "3/3");
    let info = penalties_settled(dir, false);
    assert_eq!((info.members.len(), info.size, info.quorum, info.candidates.len()), (3, 3, 2, 5), "{info:#?}");
    let stakes: Vec<&str> = info.candidates.iter().map(|c| c.stake.as_str()).collect();
    for s in ["1000", "2000", "3000", "4000", "5000"] {
        assert!(stakes.contains(&s), "{stakes:?}");
    }
    assert!(info.penalties.is_empty(), "{info:#?}");
    let (ok, text, err) = cli(dir, &["committee"]);
    assert!(ok && text.contains("same members"), "{err}{text}");
}

/// `dci bench checker --quick` runs and reports the figures the issue names.
#[test]
fn bench_checker_reports_its_figures() {
    let out = Command::new(DCI).args(["bench", "checker", "--quick", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in
        ["verify_cost_ratio", "soundness_bits", "sortition_ms_1m", "max_rate_deviation", "history_spread_ratio"]
    {
        assert!(v[field].as_f64().is_some_and(|x| x.is_finite() && x >= 0.0), "{field}: {}", v[field]);
    }
    assert_eq!(v["committee"]["committee_selected"], v["committee"]["committee_size"], "{v}");
}

/// `dci container probe` on this GPU-less machine says that no GPU was found
/// and why, next to the hardware it did find.
#[test]
fn container_probe_explains_a_missing_gpu() {
    let out = Command::new(DCI).args(["container", "probe"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("cpu ")), "{text}");
    let gpu = text.lines().find(|l| l.starts_with("gpu ")).unwrap_or_else(|| panic!("no gpu line: {text}"));
    // Whatever this host has, the line says what was found or exactly why not.
    assert!(gpu.contains("none: no NVIDIA driver found") || gpu.contains("NVIDIA"), "{gpu}");
    let out = Command::new(DCI).args(["container", "probe", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["host"]["hostname"].is_string(), "{v}");
}

/// `dci devnet --runtime docker` runs sessions as containers on a real
/// Docker engine (started by the devnet on first use): the service answers,
/// the engine shows the session's CPU, memory and pids limits, and stopping
/// the session removes its container (a warm one, started before the
/// session and found by the port its log announced).
#[test]
fn a_session_runs_in_the_docker_runtime_with_its_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let _net = Devnet::start_expecting(dir, free_port(), 3, &["--runtime", "docker"], "3/3");
    let (ok, out, err) = cli(dir, &["deploy", "render"]);
    assert!(ok, "deploy failed: {err}");
    let field = |name: &str| out.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_owned()).unwrap();
    let (session, endpoint) = (field("session"), field("endpoint"));
    let png = reqwest::blocking::get(format!("{endpoint}/frame?width=64&height=48")).unwrap();
    assert_eq!(png.status(), 200);

    let dir_docker =
        std::env::var_os("DCI_DOCKER_DIR").map_or_else(dci_docker::LocalDaemon::default_dir, std::path::PathBuf::from);
    let host = format!("unix://{}", dir_docker.join("docker.sock").display());
    let docker = |args: &[&str]| {
        let out = Command::new("docker").arg("-H").arg(&host).args(args).output().expect("the docker CLI");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // The session took a warm instance (started before it, under the
    // instance's own id): the one whose log announced the endpoint's port.
    let port = endpoint.rsplit(':').next().unwrap().trim_end_matches('/').to_owned();
    let logs = |id: &str| {
        let out = Command::new("docker").arg("-H").arg(&host).args(["logs", id]).output().expect("the docker CLI");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let all = docker(&["ps", "-q", "--filter", "label=dci.session"]);
    let id = all
        .lines()
        .find(|id| logs(id).lines().any(|l| l.contains("listening on") && l.trim_end().ends_with(&format!(":{port}"))))
        .unwrap_or_else(|| panic!("no container for session {session} listening on port {port}"))
        .to_owned();
    let limits = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
        &id,
    ]);
    assert_eq!(limits, format!("1000000000 {} 512", 1024u64 << 20), "limits of {id}");

    let (ok, _, err) = cli(dir, &["stop", &session]);
    assert!(ok, "stop failed: {err}");
    let filter = format!("id={id}");
    assert_eq!(docker(&["ps", "-aq", "--filter", &filter]), "", "the session's container was not removed");
}

/// An outsider with a fresh key sends 3,000 forged `Matched` messages to the
/// gateway's node port over the real transport, as the attack in issue 13
/// did: in every epoch it earns nothing, and the indexer that really served
/// the consumer keeps the whole indexer share.
#[test]
fn forged_matches_earn_an_outsider_nothing() {
    use dci_proto::{Identity, Message, Offer};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let net = Devnet::start_expecting(dir, free_port(), 2, &["--epoch-secs", "10"], "2/2");
    let gateway = net
        .banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("gateway")?.split_whitespace().skip_while(|w| *w != "node").nth(1))
        .unwrap_or_else(|| panic!("the banner names the gateway's node address: {:?}", net.banner))
        .to_owned();
    // The real indexer serves one match in this epoch.
    let s: SessionInfo = cli_json(dir, &["deploy", "render"]);
    let _: SessionInfo = cli_json(dir, &["stop", &s.id]);
    let first_epoch = latest_epoch(dir).map_or(0, |e| e + 1);

    let outsider = Identity::from_secret([0x5a; 32]);
    let offer = Offer {
        container: outsider.id(),
        addr: "127.0.0.1:9".into(),
        spec: dci_model::ContainerSpec {
            gpu: None,
            cpu_cores: 1,
            ram_gib: 1,
            disk_gib: 1,
            bandwidth_up_mbps: 1,
            bandwidth_down_mbps: 1,
            location: dci_model::GeoPoint::new(0.0, 0.0).unwrap(),
        },
        price: "1".parse().unwrap(),
        estimated_rtt_ms: None,
        payout: AccountId::for_node(&outsider.id()),
    };
    let network = dci_proto::NetworkId::of(&dci_node::network::Network::load(&dir.join("network.toml")).unwrap().name);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (tx, _inbox) = tokio::sync::mpsc::channel(16);
        let t = dci_node::transport::Transport::bind(outsider.clone(), network, "127.0.0.1:0", tx).await.unwrap();
        for request_id in 0..3_000u64 {
            t.send(&gateway, &Message::Matched { request_id, offer: offer.clone() }).await.unwrap();
            // Let the connection's writer drain its queue (it holds 1,024 frames).
            if request_id % 256 == 255 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    // Two whole epochs after the forgery.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while latest_epoch(dir).is_none_or(|e| e < first_epoch + 1) {
        assert!(std::time::Instant::now() < deadline, "no epoch distributed within 60 s");
        std::thread::sleep(Duration::from_millis(500));
    }
    let indexer = dci_node::network::Network::load(&dir.join("network.toml")).unwrap().indexers[0].id;
    let mut indexer_paid = false;
    for epoch in 0..=latest_epoch(dir).unwrap() {
        let e = epoch.to_string();
        let mallory = rewards(dir, &e, &AccountId::for_node(&outsider.id()));
        assert_eq!(mallory["total"], "0", "epoch {epoch}: the outsider earned {mallory}");
        let ix = rewards(dir, &e, &AccountId::for_node(&indexer));
        let role = &ix["summary"]["roles"][2];
        assert_eq!(role["role"], "indexer");
        assert!(role["participants"].as_u64().unwrap() <= 1, "epoch {epoch}: {role}");
        if role["participants"] == 1 {
            // The whole indexer share, to the indexer that served.
            // Amounts in base units, as decimal text.
            let units = |v: &serde_json::Value| v.as_str().unwrap().parse::<u128>().unwrap();
            assert_eq!(units(&ix["total"]), units(&role["paid"]) + units(&role["fees_paid"]), "epoch {epoch}");
            assert_eq!(role["paid"], role["budget"], "epoch {epoch}: the indexer got its whole share");
            indexer_paid = true;
        }
        println!("epoch {epoch}: outsider {} ATH, indexer {} ATH", mallory["total"], ix["total"]);
    }
    assert!(indexer_paid, "the indexer served a match and was paid for it");
    net.signal("-TERM");
}

/// The latest distributed epoch.
fn latest_epoch(dir: &Path) -> Option<u64> {
    let (ok, out, _) = cli(dir, &["rewards", "--json"]);
    ok.then(|| serde_json::from_str::<serde_json::Value>(&out).ok()?["epoch"].as_u64()).flatten()
}

/// `account`'s reward explanation for `epoch` (JSON).
fn rewards(dir: &Path, epoch: &str, account: &AccountId) -> serde_json::Value {
    let info: serde_json::Value = cli_json(dir, &["rewards", "--epoch", epoch, "--account", account.as_str()]);
    info["details"].clone()
}
