//! Drivers for the indexer, checker and container cores: each owns a
//! [`Transport`], feeds its core inbound messages and timer ticks with the
//! current time, and carries out the core's outputs. Nothing here decides
//! anything a core could decide.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dci_agent::runtime::Runtime;
use dci_proto::{Identity, Inbound, Message, Net, NetworkId, OfferView};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::store::RecordStore;
use crate::transport::Transport;

/// A running role.
pub struct RoleHandle {
    /// Where it listens for node messages.
    pub addr: String,
    /// Its identity.
    pub id: dci_model::NodeId,
    /// Its task; ends after shutdown.
    pub task: JoinHandle<()>,
}

const TICK: Duration = Duration::from_millis(250);

/// A bound node endpoint whose role has not started yet: lets two roles learn
/// each other's addresses before either runs.
pub struct Bound {
    pub(crate) transport: Arc<Transport>,
    pub(crate) inbox: mpsc::Receiver<Inbound>,
}

impl Bound {
    /// Binds `listen` for a node with `identity` in `network`.
    pub async fn bind(identity: Identity, network: NetworkId, listen: &str) -> anyhow::Result<Bound> {
        let (tx, inbox) = mpsc::channel::<Inbound>(1024);
        let transport =
            Transport::bind(identity, network, listen, tx).await.with_context(|| format!("binding {listen}"))?;
        Ok(Bound { transport, inbox })
    }

    /// The listening address.
    pub fn addr(&self) -> String {
        self.transport.local_addr().to_string()
    }

    /// The node id.
    pub fn id(&self) -> dci_model::NodeId {
        self.transport.id()
    }

    /// The transport (to observe it: rejected frames, address).
    pub fn transport(&self) -> Arc<Transport> {
        self.transport.clone()
    }
}

/// Starts an indexer on `bound`, restoring its registry from `store`;
/// `inputs` carries what the node hands its core besides messages and
/// ticks (the network's peers when the network file changes).
pub fn spawn_indexer(
    bound: Bound,
    config: dci_indexer::Config,
    store: Arc<RecordStore>,
    mut inputs: mpsc::Receiver<dci_indexer::Input>,
    shutdown: CancellationToken,
) -> anyhow::Result<RoleHandle> {
    use dci_indexer::{Indexer, Input, Output};
    let (addr, id) = (bound.addr(), bound.id());
    let Bound { transport, mut inbox } = bound;
    let records: Vec<dci_indexer::ContainerRecord> = store.list(None)?;
    let mut core = Indexer::new(config);
    let restored = core.restore(records, clock::now());
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        let mut pending = restored;
        loop {
            for out in pending.drain(..) {
                match out {
                    Output::Net(net) => transport.dispatch(net).await,
                    Output::Persist(record) => {
                        let key = record.id.to_string();
                        if let Err(e) = store.put(&key, "indexer", clock::now().0, &record) {
                            tracing::error!(error = %e, "cannot persist container record");
                        }
                    }
                    Output::Forget(id) => {
                        tracing::info!(container = %id.short(), "pruned a container that never passed an inspection");
                        if let Err(e) = store.delete(&id.to_string()) {
                            tracing::error!(error = %e, "cannot delete a pruned container's record");
                        }
                    }
                    Output::Rejected { from, reason } => {
                        metrics::counter!("dci_indexer_rejected_total").increment(1);
                        tracing::warn!(from = %from.short(), %reason, "indexer rejected a message");
                    }
                }
            }
            let input = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(inbound) = inbox.recv() => Input::Net(inbound),
                Some(input) = inputs.recv() => input,
                _ = tick.tick() => Input::Tick,
            };
            pending = match input {
                // Offers are a read-only query of the core (R-IX5).
                Input::Net(Inbound { conn, from, msg: Message::Offers { request_id, filter, sort, limit } }) => {
                    if core.config().gateways.contains(&from) {
                        let result = offers(&core, &filter, &sort, limit);
                        vec![Output::Net(Net::Reply { conn, msg: Message::OfferList { request_id, result } })]
                    } else {
                        vec![Output::Rejected {
                            from,
                            reason: dci_indexer::Rejection::Unexpected("offers from a non-gateway"),
                        }]
                    }
                }
                input => core.handle(clock::now(), input),
            };
        }
    });
    Ok(RoleHandle { addr, id, task })
}

/// Evaluates an offers query against the indexer core.
fn offers(core: &dci_indexer::Indexer, filter: &str, sort: &str, limit: u32) -> Result<Vec<OfferView>, String> {
    let filter = dci_indexer::filter::Filter::parse(filter).map_err(|e| format!("filter {e}"))?;
    let sort: dci_indexer::SortKey = sort.parse().map_err(|e| format!("sort: {e}"))?;
    Ok(core.offers(clock::now(), &filter, sort, limit.clamp(1, 1000) as usize))
}

/// A checker's chain signature of a slash report it votes for, when the
/// coordinator's ledger is on a chain: the EVM's digest and key derivation
/// are `dci-chain`'s, handed to the checker core as a plain function.
fn chain_signer(identity: &Identity, domain: &dci_proto::ChainDomain, report: &dci_ledger::SlashReport) -> Vec<u8> {
    dci_chain::slash_signature_at(domain.chain_id, dci_chain::Address::from(domain.ledger), report, identity)
}

/// A checker's chain signature of an epoch's committee (the EVM's digest
/// and key, handed to the checker core as a plain function).
fn committee_signer(identity: &Identity, domain: &dci_proto::ChainDomain, epoch: u64, members: &[[u8; 20]]) -> Vec<u8> {
    let members: Vec<dci_chain::Address> = members.iter().map(|m| dci_chain::Address::from(*m)).collect();
    dci_chain::committee_signature_at(
        domain.chain_id,
        dci_chain::Address::from(domain.ledger),
        epoch,
        &members,
        identity,
    )
}

/// Starts a checker on `bound`; `inputs` as for [`spawn_indexer`].
pub fn spawn_checker(
    bound: Bound,
    config: dci_checker::Config,
    identity: Identity,
    mut inputs: mpsc::Receiver<dci_checker::Input>,
    shutdown: CancellationToken,
) -> anyhow::Result<RoleHandle> {
    use dci_checker::{Checker, Input, Output};
    let (addr, id) = (bound.addr(), bound.id());
    let Bound { transport, mut inbox } = bound;
    let mut core = Checker::new(config, rand::random(), identity)
        .context("checker configuration")?
        .with_chain_signer(chain_signer)
        .with_committee_signer(committee_signer);
    let (evaluated_tx, mut evaluated) = mpsc::channel::<Input>(16);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        loop {
            let input = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(inbound) = inbox.recv() => Input::Net(inbound),
                Some(done) = evaluated.recv() => done,
                Some(input) = inputs.recv() => input,
                _ = tick.tick() => Input::Tick,
            };
            for out in core.handle(clock::now(), input) {
                match out {
                    Output::Net(net) => transport.dispatch(net).await,
                    Output::Evaluate { id, service, endpoint } => {
                        let tx = evaluated_tx.clone();
                        tokio::spawn(async move {
                            let result = simulated_user(&service, &endpoint).await;
                            let _ = tx.send(Input::Evaluated { id, result }).await;
                        });
                    }
                    Output::Verdict(v) => {
                        let result = if v.passed { "passed" } else { "failed" };
                        metrics::counter!("dci_checker_verdicts_total", "result" => result).increment(1);
                        tracing::info!(container = %v.container.short(), passed = v.passed, reason = %v.reason, compute_ms = v.compute_ms, "verdict");
                    }
                    Output::Rejected { from, reason } => {
                        metrics::counter!("dci_checker_rejected_total").increment(1);
                        tracing::warn!(from = %from.short(), %reason, "checker rejected a message");
                    }
                }
            }
        }
    });
    Ok(RoleHandle { addr, id, task })
}

/// The checker's scripted simulated user (R-CK4): plays a short scripted
/// session against a running service and reports what a person would have
/// seen. Only the built-in `render` service has a script.
async fn simulated_user(
    service: &dci_model::ServiceName,
    endpoint: &str,
) -> Result<dci_checker::ServiceReport, String> {
    use dci_services::render::{UserScript, simulate_user};
    if service.as_str() != "render" {
        return Err(format!("no simulated user for service {service}"));
    }
    let host = endpoint
        .trim_end_matches('/')
        .strip_prefix("http://")
        .ok_or_else(|| format!("expected an http:// endpoint, found {endpoint:?}"))?;
    // A small picture: the evaluation measures responsiveness, not resolution.
    let url = format!("ws://{host}/stream?width=160&height=90&fps=15");
    let r = simulate_user(&url, &UserScript::standard(8)).await.map_err(|e| e.to_string())?;
    Ok(dci_checker::ServiceReport {
        fps: r.fps,
        input_to_frame_p99_ms: r.input_to_frame.map(|s| s.p99_ms),
        inputs: r.inputs.len() as u32,
        answered: r.inputs_answered as u32,
        changed: r.inputs_changed_view as u32,
        stalled: r.stalled,
    })
}

/// The operator's handle on a running container agent (R-AG5): commands
/// go into the core as inputs; the status is the core's own view.
#[derive(Clone)]
pub struct AgentControl {
    commands: mpsc::Sender<dci_agent::Input>,
    status: Arc<std::sync::Mutex<dci_agent::AgentStatus>>,
}

impl AgentControl {
    /// Hands `cmd` to the agent.
    pub async fn command(&self, cmd: dci_agent::OperatorCommand) -> anyhow::Result<()> {
        self.commands.send(dci_agent::Input::Operator(cmd)).await.map_err(|_| anyhow::anyhow!("the agent has stopped"))
    }

    /// Tells the agent which services have an instance waiting (it reports
    /// them in its heartbeats).
    pub async fn warm(&self, services: Vec<dci_model::ServiceName>) -> anyhow::Result<()> {
        self.commands.send(dci_agent::Input::Warm(services)).await.map_err(|_| anyhow::anyhow!("the agent has stopped"))
    }

    /// Hands the agent the network's peers (the network file changed).
    pub async fn peers(&self, peers: dci_agent::Peers) -> anyhow::Result<()> {
        self.commands.send(dci_agent::Input::Peers(peers)).await.map_err(|_| anyhow::anyhow!("the agent has stopped"))
    }

    /// The agent's status as of its last step.
    pub fn status(&self) -> dci_agent::AgentStatus {
        self.status.lock().expect("status lock").clone()
    }
}

/// Starts a container agent listening on `listen`, running sessions with `runtime`.
pub async fn spawn_agent<R: Runtime>(
    identity: Identity,
    network: NetworkId,
    listen: &str,
    config: dci_agent::AgentConfig,
    runtime: Arc<R>,
    shutdown: CancellationToken,
) -> anyhow::Result<RoleHandle> {
    Ok(spawn_agent_controlled(identity, network, listen, config, runtime, shutdown).await?.0)
}

/// [`spawn_agent`], also returning the operator's [`AgentControl`].
pub async fn spawn_agent_controlled<R: Runtime>(
    identity: Identity,
    network: NetworkId,
    listen: &str,
    mut config: dci_agent::AgentConfig,
    runtime: Arc<R>,
    shutdown: CancellationToken,
) -> anyhow::Result<(RoleHandle, AgentControl)> {
    use dci_agent::{Agent, Input, Output};
    let (events_tx, mut events) = mpsc::channel::<Input>(64);
    let Bound { transport, mut inbox } = Bound::bind(identity.clone(), network, listen).await?;
    let (addr, id) = (transport.local_addr().to_string(), identity.id());
    // The address it registers: its own, unless it is reached elsewhere (a relay).
    if config.listen_addr.is_empty() {
        config.listen_addr = addr.clone();
    }
    let mut core = Agent::new(config, identity);
    let status = Arc::new(std::sync::Mutex::new(core.status()));
    let control = AgentControl { commands: events_tx.clone(), status: status.clone() };
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        let mut input = Input::Boot;
        loop {
            let outputs = core.handle(clock::now(), input);
            *status.lock().expect("status lock") = core.status();
            for out in outputs {
                match out {
                    Output::Net(net) => transport.dispatch(net).await,
                    Output::Compute { checker, params, behaviour, earlier } => {
                        let events = events_tx.clone();
                        tokio::task::spawn_blocking(move || match behaviour.commit(&params, earlier.as_ref()) {
                            Ok(attempt) => {
                                let _ = events.blocking_send(Input::Computed { checker, params, attempt });
                            }
                            Err(e) => tracing::warn!(error = %e, "challenge computation failed"),
                        });
                    }
                    Output::StartService { session, service } => {
                        let (events, runtime) = (events_tx.clone(), runtime.clone());
                        tokio::spawn(async move {
                            let input = match runtime.start(session, &service).await {
                                Ok(endpoint) => Input::ServiceStarted { session, endpoint },
                                Err(e) => Input::ServiceFailed { session, reason: e.to_string() },
                            };
                            let _ = events.send(input).await;
                        });
                    }
                    Output::StopService { session } => {
                        let (events, runtime) = (events_tx.clone(), runtime.clone());
                        tokio::spawn(async move {
                            if let Err(e) = runtime.stop(session).await {
                                tracing::warn!(error = %e, "stopping a session");
                            }
                            let _ = events.send(Input::ServiceStopped { session }).await;
                        });
                    }
                    Output::StateChanged(t) => {
                        tracing::info!(from = %t.from, to = %t.to, actor = ?t.actor, reason = %t.reason, "container state changed");
                    }
                    Output::Refused(reason) => {
                        tracing::error!(%reason, "the indexer refused this container's registration");
                    }
                    Output::Rejected { from, reason } => {
                        metrics::counter!("dci_agent_rejected_total").increment(1);
                        tracing::warn!(from = %from.short(), %reason, "container rejected a message");
                    }
                }
            }
            input = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(inbound) = inbox.recv() => Input::Net(inbound),
                Some(event) = events.recv() => event,
                _ = tick.tick() => {
                    // A service that exited on its own (crashed, killed)
                    // ends its session; the gateway moves it elsewhere.
                    for session in runtime.exited() {
                        let _ = events_tx.try_send(Input::ServiceStopped { session });
                    }
                    Input::Tick
                }
            };
        }
        // Dropping the runtime's children kills them (kill_on_drop).
        drop(runtime);
    });
    Ok((RoleHandle { addr, id, task }, control))
}
