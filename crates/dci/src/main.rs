//! `dci`: the one binary of DCI (R-UX1). It parses the command line, loads
//! configuration, starts the chosen roles or calls the gateway's API, and maps
//! errors to exit codes (0 ok, 1 failure, 2 bad usage). Everything else lives
//! in the library crates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use dci_gateway::api::{BalanceInfo, ContainerInfo, DeployRequest, SessionInfo, StakeRequest, TransferRequest};
use dci_gateway::client::Client;
use dci_ledger::Settlement as _;
use dci_model::{GeoPoint, Policy, PricePerHour, ServiceName};
use dci_node::devnet::{CLIENT_FILE, ClientFile, Devnet, DevnetConfig};
use dci_node::settlement::{Backend, EvmConfig, SettlementConfig};

/// `dci sim`'s options.
#[derive(Args, Debug)]
struct SimArgs {
    /// A shipped scenario's name (`small`) or the path of a scenario TOML file.
    #[arg(long, default_value = "small")]
    scenario: String,
    /// The seed of every random draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated hours (default: the scenario's).
    #[arg(long)]
    hours: Option<f64>,
    /// Print the report as JSON (byte-identical for the same seed, scenario
    /// and hours; the wall time goes to standard error).
    #[arg(long)]
    json: bool,
}

/// `dci sim`: loads the scenario, runs it, prints the report; the wall
/// time and events/s (not part of the deterministic report) go to stderr.
fn sim(a: SimArgs) -> anyhow::Result<()> {
    let path = std::path::Path::new(&a.scenario);
    let scenario = if path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        dci_sim::Scenario::from_toml(&text)?
    } else {
        dci_sim::Scenario::named(&a.scenario)?
    };
    let hours = a.hours.unwrap_or(scenario.hours);
    anyhow::ensure!(hours > 0.0 && hours.is_finite(), "--hours: expected a positive number, found {hours}");
    let started = Instant::now();
    let report = dci_sim::run(scenario, a.seed, hours)?;
    let wall = started.elapsed().as_secs_f64();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let s = &report.sessions;
        let f = &report.fraud;
        println!("scenario {} seed {}: {:.2} simulated hours", report.scenario, report.seed, hours);
        println!(
            "nodes: {} hosts, {} indexers, {} checkers, {} gateway",
            report.nodes.hosts, report.nodes.indexers, report.nodes.checkers, report.nodes.gateways
        );
        println!(
            "sessions: {} asked, {} deployed, {} failed, {} failovers",
            s.asked,
            s.deployed,
            s.failed.values().sum::<u64>(),
            s.failovers
        );
        let ms = |p: Option<u64>| p.map_or("-".to_owned(), |v| format!("{v} ms"));
        println!("match latency: p50 {} p99 {}", ms(report.match_latency_ms.p50), ms(report.match_latency_ms.p99));
        println!(
            "fraud: {}/{} dishonest hosts caught ({}%), {} honest hosts slashed, {} honest out of market",
            f.caught, f.dishonest_hosts, f.caught_pct, f.false_slashes, f.honest_out_of_market
        );
        println!(
            "supply: {} checks, {} violations; {} epochs distributed",
            report.supply.checks,
            report.supply.violations.len(),
            report.epochs_distributed
        );
    }
    eprintln!("{} events in {wall:.2} s wall: {:.0} events/s", report.events, report.events as f64 / wall.max(1e-9));
    anyhow::ensure!(report.supply.violations.is_empty(), "the supply invariant failed: {:?}", report.supply.violations);
    Ok(())
}

/// DCI: a decentralized GPU cloud.
#[derive(Parser, Debug)]
#[command(name = "dci", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a complete network on this machine (ledger, indexer, checker, gateway, containers).
    Devnet(DevnetArgs),
    /// Deploy a service on the best matching container: `dci deploy render`,
    /// or `dci deploy model all-minilm-l6-v2` for a catalogue model (placed on a
    /// container with the memory it needs, served with an OpenAI-compatible
    /// API through the gateway).
    Deploy(DeployArgs),
    /// List your sessions.
    Sessions(ClientArgs),
    /// Stop a session and settle its bill.
    Stop {
        /// Session id (from `dci deploy` or `dci sessions`).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List offers that pass a filter, e.g. 'gpu=H100 vram>=80 rtt<30 near=38.7,-9.1 price<=2.5'.
    Offers {
        /// Filter in the offers language (empty: every container); see the README.
        #[arg(default_value = "")]
        filter: String,
        /// price, rtt, vram, reputation or free.
        #[arg(long, default_value = "price")]
        sort: String,
        /// Most rows.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the network's containers with their state and recent transitions.
    Containers(ClientArgs),
    /// Show the epoch's checker committee, recomputed here from its published
    /// proofs, and the penalties it voted.
    Committee(ClientArgs),
    /// Show your balance and escrow.
    Balance(ClientArgs),
    /// Send ATH from your account to another account.
    Transfer {
        /// Destination account, e.g. consumer:bob or node:<id>.
        to: String,
        /// Amount in ATH, e.g. 12.5.
        #[arg(allow_hyphen_values = true)]
        amount: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Bond stake for a role (containers and checkers stake).
    Stake(StakeArgs),
    /// Start unbonding stake; withdraw it with `dci withdraw` after the unbonding period.
    Unstake(StakeArgs),
    /// Withdraw unbonded stake that is due and claim pending epoch rewards.
    Withdraw(ClientArgs),
    /// Show how your reward for an epoch (default: the latest) was computed.
    Rewards {
        /// Epoch number.
        #[arg(long)]
        epoch: Option<u64>,
        /// Whose reward (rewards are public), e.g. node:<container id>; default: yours.
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ledger administration on this machine.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Container host commands (for GPU providers).
    #[command(subcommand)]
    Container(ContainerCommand),
    /// A gateway as its own process: the public API, sessions, the ledger,
    /// the epoch committee's coordinator.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// An indexer as its own process: registrations, heartbeats, matching.
    #[command(subcommand)]
    Indexer(IndexerCommand),
    /// A checker as its own process: proofs of capacity, in-service
    /// evaluations, the committee's votes.
    #[command(subcommand)]
    Checker(CheckerCommand),
    /// The evm settlement backend's contracts.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Measure a part of DCI on this machine (build with --release for real figures).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Simulate a whole network in virtual time, deterministically: the real
    /// role cores, a modelled network, every random draw from one seed.
    Sim(SimArgs),
    /// Run a service in the foreground (containers start these): a built-in
    /// one (`render`) or a model of the catalogue (`all-minilm-l6-v2`, served
    /// with an OpenAI-compatible API; its files are fetched into the model
    /// store, `$DCI_MODEL_STORE` or `~/.cache/dci/models`, if missing).
    Service {
        /// Service name, e.g. `render` or `all-minilm-l6-v2`.
        name: String,
        /// Exit when standard input closes (a container's runtime passes a
        /// pipe, so the service ends with the agent that started it).
        #[arg(long)]
        exit_with_stdin: bool,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

#[derive(Args, Debug)]
struct StakeArgs {
    /// Amount in ATH.
    #[arg(allow_hyphen_values = true)]
    amount: String,
    /// container or checker.
    #[arg(long, default_value = "container")]
    role: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Matching and heartbeat ingestion at scale, index against a naive scan (R-PF1, R-PF2).
    Indexer {
        /// Registered containers in the synthetic population.
        #[arg(long, default_value_t = 1_000_000)]
        containers: usize,
        /// Timed matches.
        #[arg(long, default_value_t = 100_000)]
        matches: usize,
        /// Seed of the population, requests and heartbeats.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON (the output is JSON either way).
        #[arg(long)]
        json: bool,
    },
    /// Durable transfers per second with batched commits, and a full
    /// invariant check over 1,000,000 accounts (R-PF5).
    Ledger {
        /// Transfers to apply.
        #[arg(long, default_value_t = 200_000)]
        transfers: u64,
        /// Transfers per committed batch.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// Accounts in the ledger for the invariant check.
        #[arg(long, default_value_t = 1_000_000)]
        check_accounts: u64,
        /// Print JSON (the default output is JSON too; the flag is accepted for symmetry).
        #[arg(long)]
        json: bool,
    },
    /// Gas per usage receipt of netted on-chain settlement for batches of
    /// 1, 100 and 10,000 receipts, and of one plain ERC-20 transfer, on a
    /// fresh anvil (R-PF6).
    Settlement {
        /// Print JSON (the output is JSON either way).
        #[arg(long)]
        json: bool,
    },
    /// The services containers sell (R-SV1, R-SV2): embeddings/s and request
    /// latency of all-MiniLM-L6-v2 over HTTP, frames/s and input-to-frame
    /// latency of the render stream as a scripted user sees it.
    Services(ServicesBenchArgs),
    /// Authenticated node messages per second on loopback through the Noise
    /// transport, against the plain TCP path it replaced, in the same run;
    /// and connection set-up time on each (issue 16).
    Transport {
        /// Messages per path.
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Print JSON (the output is JSON either way).
        #[arg(long)]
        json: bool,
    },
    /// Proof-of-capacity verification cost and soundness, and the epoch
    /// committee's sortition time and fairness (R-PF3, R-PF4).
    Checker {
        /// A small run (seconds): smaller challenges, candidates and epochs.
        #[arg(long)]
        quick: bool,
        /// Print JSON (the output is JSON either way).
        #[arg(long)]
        json: bool,
    },
}

/// Benchmark shapes: the default run and the `--quick` smoke run.
#[derive(Args, Debug)]
struct ServicesBenchArgs {
    /// A small run (seconds): fewer embedding requests and render inputs.
    #[arg(long)]
    quick: bool,
    /// Print JSON (the output is JSON either way).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum ContainerCommand {
    /// Show the hardware this host would offer: CPU, memory, disks, network
    /// interfaces and NVIDIA GPUs (through NVML), or why no GPU was found.
    Probe {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run this host as a container of a network, until Ctrl-C.
    ///
    /// Reads `<data-dir>/container.toml` (`network`, `listen`, `reach`
    /// ("direct", or "relay" behind NAT), `services` kept warm, `price`,
    /// `slots`, `runtime`, `location`, bandwidths, `payout`, development-only `simulated_gpu` and `behaviour`;
    /// `--print-example` prints a commented one) and the network file it
    /// names (`dci devnet` writes `network.toml` in its data directory).
    Run {
        #[command(flatten)]
        host: HostArgs,
        /// Print an example container.toml explaining every key, and exit.
        #[arg(long)]
        print_example: bool,
    },
    /// Lock the running host for maintenance (`on`: unschedulable; its
    /// sessions move to other containers, or with --drain finish first) or
    /// unlock it (`off`: a fresh inspection, then schedulable again).
    Maintenance {
        /// on or off.
        state: OnOff,
        /// Let running sessions finish instead of moving them.
        #[arg(long)]
        drain: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Set the price of one slot-hour for new sessions, in ATH (e.g. 2.5).
    Price {
        /// ATH per hour.
        ath_per_hour: String,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Bond container stake from this host's own account (`node:<id>`),
    /// signed with its node key: a host must have bonded the network's
    /// minimum before the indexer admits it. Fund the account first, e.g.
    /// `dci transfer node:<id> 100` from your consumer account.
    Stake {
        /// ATH to bond, e.g. 100.
        amount: String,
        /// The gateway's API (default: the `api` of the network file the
        /// host's container.toml names).
        #[arg(long)]
        api: Option<String>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Show the running host: state, sessions, latest transitions (verdicts,
    /// locks) and what its receipts earned.
    Status {
        #[command(flatten)]
        host: HostArgs,
    },
}

/// Where a role's node runs from.
#[derive(Args, Debug)]
struct NodeArgs {
    /// The node's data directory (node.toml, its key, its state); default
    /// ~/.local/share/dci/<role>.
    #[arg(long, env = "DCI_NODE_DIR")]
    data_dir: Option<PathBuf>,
}

impl NodeArgs {
    fn dir(&self, role: &str) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| default_data_dir().with_file_name(role))
    }
}

#[derive(Subcommand, Debug)]
enum GatewayCommand {
    /// Run this gateway until SIGINT/SIGTERM (running sessions are settled
    /// first).
    ///
    /// Reads <data-dir>/node.toml: `listen` (host:port, a fixed
    /// port), `network` (the network file), `key` (default node.key),
    /// `id` (optional check), `api_listen` (default 127.0.0.1:8700),
    /// `epoch_secs` (default 900), `committee_size` (default 3),
    /// `dev_network` (default false), `consumer` (optional, development),
    /// `[relay]` (optional: `listen`, `public_host`, `ports`, for hosts
    /// behind NAT), `[tls]` (optional: `cert`, `key`, PEM files: the API
    /// serves https), `[api_limits]` (`per_address`, `per_key`,
    /// `failed_auth` buckets, `max_clients`), `view_refresh_ms` (default
    /// 500: how often public reads refresh), `[chain]` (optional, evm
    /// backend: `rpc_url`, `registry`, `poll_secs`); its ledger is
    /// <data-dir>/settlement.toml and ledger.db. `--print-example` prints a
    /// commented node.toml.
    Run {
        #[command(flatten)]
        node: NodeArgs,
        /// Print an example node.toml explaining every key, and exit.
        #[arg(long)]
        print_example: bool,
    },
    /// Print this gateway's id and its entry for the network file (its key
    /// is created if missing).
    Id {
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Subcommand, Debug)]
enum IndexerCommand {
    /// Run this indexer until SIGINT/SIGTERM.
    ///
    /// Reads <data-dir>/node.toml:
    /// `listen` (host:port, a fixed port), `network` (the network file),
    /// `key` (default node.key), `id` (optional check),
    /// `inspect_every_secs` (default 3600), `[chain]` (optional, evm
    /// backend: `rpc_url`, `registry`, `poll_secs`: members from the
    /// chain's registry); its registry is <data-dir>/indexer.db.
    /// `--print-example` prints a commented node.toml.
    Run {
        #[command(flatten)]
        node: NodeArgs,
        /// Print an example node.toml explaining every key, and exit.
        #[arg(long)]
        print_example: bool,
    },
    /// Print this indexer's id and its entry for the network file (its key
    /// is created if missing).
    Id {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Bond indexer stake from this indexer's own account (`node:<id>`),
    /// signed with its node key: the Sybil cost of its place in the chain's
    /// endpoint registry (never slashed). Fund the account first, e.g. `dci
    /// transfer node:<id> 100`.
    Stake {
        #[command(flatten)]
        stake: RoleStakeArgs,
    },
    /// Publish this indexer's endpoint in the chain's registry (evm backend):
    /// a record signed with its node key for the chain and registry its
    /// node.toml's `[chain]` names, relayed by the gateway, which pays the
    /// gas. Nodes with `[chain]` pick it up within their poll interval.
    /// Needs the role's minimum stake bonded first (`dci indexer stake 100`). Run it again
    /// after moving; `--withdraw` takes the record off the registry.
    Register {
        #[command(flatten)]
        reg: RegisterArgs,
    },
}

#[derive(Subcommand, Debug)]
enum CheckerCommand {
    /// Run this checker until SIGINT/SIGTERM.
    ///
    /// Reads <data-dir>/node.toml:
    /// `listen` (host:port, a fixed port), `network` (the network file),
    /// `key` (default node.key), `id` (optional check), `challenge_n`
    /// (default 256), `min_deadline_secs` (default 10), `evaluation`
    /// (devnet or production, default devnet), `[chain]` (optional, evm
    /// backend: `rpc_url`, `registry`, `poll_secs`). `--print-example`
    /// prints a commented node.toml.
    Run {
        #[command(flatten)]
        node: NodeArgs,
        /// Print an example node.toml explaining every key, and exit.
        #[arg(long)]
        print_example: bool,
    },
    /// Print this checker's id and its entry for the network file, with its
    /// VRF key and chain signer (its key is created if missing).
    Id {
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Bond checker stake from this checker's own account (`node:<id>`),
    /// signed with its node key: the gateway seats staked checkers on the
    /// committee from the next epoch. Fund the account first, e.g. `dci
    /// transfer node:<id> 1000`.
    Stake {
        #[command(flatten)]
        stake: RoleStakeArgs,
    },
    /// Publish this checker's endpoint in the chain's registry (evm backend):
    /// a record signed with its node key for the chain and registry its
    /// node.toml's `[chain]` names, relayed by the gateway, which pays the
    /// gas. Nodes with `[chain]` pick it up within their poll interval.
    /// Needs the role's minimum stake bonded first (`dci checker stake 1000`). Run it again
    /// after moving; `--withdraw` takes the record off the registry.
    Register {
        #[command(flatten)]
        reg: RegisterArgs,
    },
}

/// What `dci indexer|checker stake` takes.
#[derive(clap::Args, Debug)]
struct RoleStakeArgs {
    /// ATH to bond (e.g. 100 for an indexer, 1000 for a checker).
    amount: String,
    /// The gateway's API (default: the first gateway's `api` in the
    /// network file the node.toml names).
    #[arg(long)]
    api: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// What `dci indexer|checker register` takes.
#[derive(clap::Args, Debug)]
struct RegisterArgs {
    /// The address other machines reach this node at (default: its
    /// `listen`, unless that is every interface).
    #[arg(long)]
    addr: Option<String>,
    /// The gateway's API (default: the first gateway's `api` in the
    /// network file the node.toml names).
    #[arg(long)]
    api: Option<String>,
    /// Take this node's record off the registry instead.
    #[arg(long)]
    withdraw: bool,
    #[command(flatten)]
    node: NodeArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Args, Debug)]
struct HostArgs {
    /// The host's data directory (container.toml, container.key, control.sock).
    #[arg(long, env = "DCI_CONTAINER_DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl HostArgs {
    fn dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| default_data_dir().with_file_name("container"))
    }
}

#[derive(Subcommand, Debug)]
enum ChainCommand {
    /// Deploy the ATH token and the DCI ledger contract to an EVM chain and
    /// write their addresses to the node config (`<data-dir>/settlement.toml`,
    /// backend = "evm"); `dci devnet` then settles on that chain.
    Deploy {
        /// The chain's JSON-RPC endpoint, e.g. http://127.0.0.1:8545 (anvil).
        #[arg(long)]
        rpc_url: String,
        /// The deployer's private key (hex); it becomes the ledger's settler.
        /// Default: anvil's first dev key (public: never use it on a real chain).
        #[arg(long, env = "DCI_SETTLER_KEY", hide_env_values = true)]
        settler_key: Option<String>,
        /// The gateway's data directory, whose settlement.toml receives the
        /// addresses (a devnet's data directory: its gateway/).
        #[arg(long, env = "DCI_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The genesis committee (epoch 0's, trusted on deploy: it signs the
        /// next committee): the staked checkers' chain signer addresses,
        /// comma-separated. Default: the checkers of the network file the
        /// gateway's node.toml names.
        #[arg(long, value_delimiter = ',')]
        committee: Vec<dci_chain::Address>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deploy the endpoint registry over the gateway's existing chain ledger
    /// (one deployed before the registry existed), with its settler key,
    /// and record it in `<data-dir>/settlement.toml`; its ledger and money
    /// stay as they are.
    DeployRegistry {
        /// The gateway's data directory (a devnet's: its gateway/).
        #[arg(long, env = "DCI_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Print the on-chain address standing for a DCI account (custodial:
    /// nobody holds its key), to read it with any Ethereum tool.
    Address {
        /// The account, e.g. consumer:devnet or node:<id>.
        account: String,
    },
}

#[derive(Subcommand, Debug)]
enum LedgerCommand {
    /// Recompute the supply from every account and escrow and check it equals the total (R-LG5).
    Check {
        /// The gateway's data directory holding ledger.db (a devnet's data
        /// directory: its gateway/).
        #[arg(long, env = "DCI_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct DevnetArgs {
    /// Number of containers (at least as many as the data directory already has).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    containers: u16,
    /// Port of the HTTP API on 127.0.0.1.
    #[arg(long, default_value_t = 8700)]
    api_port: u16,
    /// Serve the API over https with this certificate chain (PEM; needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where the devnet keeps its state.
    #[arg(long, env = "DCI_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Proof-of-capacity matrix dimension used by the checker.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(16..=4096))]
    challenge_n: u32,
    /// Length of a reward epoch in seconds (a production network uses 900).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    epoch_secs: u64,
    /// Make the last container cheat at its capacity challenges, to watch the
    /// checker catch it: wrong-product, replay, change-rows-after-commit or dark.
    #[arg(long, value_parser = parse_behaviour)]
    dishonest: Option<dci_capacity::Behaviour>,
    /// Number of checkers (checker i stakes 1,000 × (i + 1) ATH).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    checkers: u16,
    /// Seats of the epoch committee drawn from the checkers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    committee_size: u16,
    /// Mean seconds between random inspections of one container: standby
    /// inspections when idle, in-service evaluations while it serves.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    inspect_every_secs: u64,
    /// Where sessions run: `process` (child processes) or `docker` (containers
    /// on a private Docker engine with CPU, memory and pids limits; needs root
    /// and the engine `cargo xtask deps` installs).
    #[arg(long, default_value = "process")]
    runtime: dci_node::runtime::RuntimeKind,
    /// Ledger backend: embedded (SQLite) or evm (the contracts on an anvil
    /// started on a free port, or on the chain `dci chain deploy` wrote to
    /// settlement.toml). Default: the data directory's settlement.toml, or embedded.
    #[arg(long)]
    settlement: Option<Backend>,
}

/// The chain signers of the checkers of the network file the gateway of
/// `dir` joins: the default genesis committee of `dci chain deploy`.
fn checker_signers(dir: &std::path::Path) -> anyhow::Result<Vec<dci_chain::Address>> {
    use dci_node::config::NodeFile;
    let network = dci_node::config::GatewayConfig::load(dir)
        .and_then(|c| c.network(dir))
        .context("no genesis committee: expected --committee <address,...> (the staked checkers' chain signers) or a gateway data directory whose network file lists its checkers")?;
    anyhow::ensure!(
        !network.checkers.is_empty(),
        "no genesis committee: expected --committee <address,...> or checkers in the network file, found none"
    );
    Ok(network.checkers.iter().map(|c| dci_chain::Address::from(c.chain_signer)).collect())
}

/// Opens a gateway's books as they were created: a dev network's genesis,
/// else the default one.
fn open_books(path: &std::path::Path) -> anyhow::Result<dci_ledger::EmbeddedLedger> {
    match dci_ledger::EmbeddedLedger::open(path, &dci_ledger::Genesis::devnet()) {
        Err(dci_ledger::LedgerError::GenesisMismatch { .. }) => {
            Ok(dci_ledger::EmbeddedLedger::open(path, &dci_ledger::Genesis::default())?)
        }
        other => Ok(other?),
    }
}

fn parse_behaviour(s: &str) -> Result<dci_capacity::Behaviour, String> {
    let cheats = dci_capacity::Behaviour::ALL.into_iter().filter(|b| !b.is_honest());
    let names: Vec<&str> = cheats.clone().map(|b| b.name()).collect();
    cheats
        .into_iter()
        .find(|b| b.name() == s)
        .ok_or_else(|| format!("expected one of {}, found {s:?}", names.join(", ")))
}

#[derive(Args, Debug, Clone)]
struct ClientArgs {
    /// Gateway API URL (default: the local devnet's).
    #[arg(long, env = "DCI_API", global = true)]
    api: Option<String>,
    /// API key (default: the local devnet consumer's).
    #[arg(long, env = "DCI_API_KEY", global = true, hide_env_values = true)]
    api_key: Option<String>,
    /// Devnet data directory to read the API URL and key from.
    #[arg(long, env = "DCI_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args, Debug)]
struct DeployArgs {
    /// Service to run, e.g. `render`; or `model`, followed by the model's name.
    service: ServiceName,
    /// After `model`: a model of the catalogue, e.g. `all-minilm-l6-v2`.
    model: Option<String>,
    /// GPU model (substring, case-insensitive), e.g. 4090 or H100.
    #[arg(long)]
    gpu: Option<String>,
    /// Minimum number of GPUs.
    #[arg(long)]
    gpu_count: Option<u32>,
    /// Minimum VRAM per GPU, GiB.
    #[arg(long)]
    vram: Option<u32>,
    /// Minimum CPU cores.
    #[arg(long)]
    cpu: Option<u32>,
    /// Minimum RAM, GiB.
    #[arg(long)]
    ram: Option<u32>,
    /// Your location as LAT,LON.
    #[arg(long, allow_hyphen_values = true)]
    near: Option<GeoPoint>,
    /// Largest acceptable round trip in ms (needs --near).
    #[arg(long, requires = "near")]
    max_latency: Option<u32>,
    /// Highest acceptable price, ATH per hour.
    #[arg(long)]
    max_price: Option<PricePerHour>,
    /// cheapest, best-ux or balanced.
    #[arg(long, default_value = "balanced")]
    policy: Policy,
    /// Hours of use to hold in escrow.
    #[arg(long, default_value_t = 1)]
    hours: u32,
    #[command(flatten)]
    client: ClientArgs,
}

fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("dci").join("devnet");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local").join("share").join("dci").join("devnet")
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let file = self.data_dir.clone().unwrap_or_else(default_data_dir).join(CLIENT_FILE);
        let saved: Option<ClientFile> = std::fs::read_to_string(&file).ok().and_then(|t| serde_json::from_str(&t).ok());
        let api = self.api.clone().or_else(|| saved.as_ref().map(|c| c.api.clone())).ok_or_else(|| {
            anyhow::anyhow!(
                "no gateway given: pass --api URL (or DCI_API), or start `dci devnet` which writes {}",
                file.display()
            )
        })?;
        let key = self.api_key.clone().or_else(|| saved.map(|c| c.api_key));
        Ok(Client::new(api, key))
    }
}

/// Asks glibc to back the heap with transparent huge pages, by starting the
/// process again with the `glibc.malloc.hugetlb=1` tunable (glibc reads
/// tunables only at start). The indexer's records for a million containers
/// are hundreds of megabytes read at random, and with 4 KiB pages nearly
/// every read also misses the TLB: huge pages raise `dci bench indexer`'s
/// matches/s by about 40 % on the 2-core development machine (see
/// ARCHITECTURE.md). Without glibc, with THP disabled in the kernel, or if
/// the new start fails, the process simply goes on as it is.
fn prefer_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        const TUNABLE: &str = "glibc.malloc.hugetlb=1";
        let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if current.contains("glibc.malloc.hugetlb") {
            return; // already chosen (by us, or by the operator)
        }
        let Ok(exe) = std::env::current_exe() else { return };
        let tunables = if current.is_empty() { TUNABLE.to_owned() } else { format!("{current}:{TUNABLE}") };
        // `exec` returns only if it failed.
        let _ =
            std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("GLIBC_TUNABLES", tunables).exec();
    }
}

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DCI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// `dci --api URL balance` as well as `dci balance --api URL`: the client
/// options (`--api`, `--api-key`, `--json`) belong to each client command,
/// so those given before the command are moved to the end of the line.
fn client_options_last(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut moved = Vec::new();
    while args.len() > 1 {
        let arg = args[1].to_string_lossy().into_owned();
        let with_value = arg == "--api" || arg == "--api-key";
        if !(with_value || arg == "--json" || arg.starts_with("--api=") || arg.starts_with("--api-key=")) {
            break;
        }
        moved.push(args.remove(1));
        if with_value && args.len() > 1 {
            moved.push(args.remove(1));
        }
    }
    args.extend(moved);
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(client_options_last(std::env::args_os().collect()));
    if matches!(cli.command, Command::Devnet(_) | Command::Bench(_)) {
        prefer_huge_pages();
    }
    // Benchmarks run on the main thread, without a runtime: its heap is the
    // one glibc grows most simply, and nothing else runs beside them.
    if let Command::Sim(a) = cli.command {
        return match sim(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Bench(b) = cli.command {
        return match bench(b) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `dci bench checker`: the figures the issue names first, then the details.
#[derive(serde::Serialize)]
struct CheckerBench {
    verify_cost_ratio: f64,
    soundness_bits: f64,
    sortition_ms_1m: f64,
    max_rate_deviation: f64,
    history_spread_ratio: f64,
    capacity: dci_capacity::bench::CapacityBench,
    committee: dci_committee::bench::CommitteeBench,
}

/// `dci bench services`: the figures the issue names first, then each part's report.
#[derive(serde::Serialize)]
struct ServicesBench {
    /// What the two workloads mimic.
    workload: String,
    embeddings_per_s: f64,
    embed_p50_ms: f64,
    embed_p99_ms: f64,
    render_fps: f64,
    render_input_to_frame_p50_ms: f64,
    render_input_to_frame_p99_ms: f64,
    model: dci_models::ModelBench,
    render: RenderBench,
}

/// The render half of `dci bench services`: the simulated user's report
/// without its per-input list.
#[derive(serde::Serialize)]
struct RenderBench {
    workload: String,
    url: String,
    width: u16,
    height: u16,
    inputs: usize,
    frames: u64,
    seconds: f64,
    fps: f64,
    frame_interval: Option<dci_services::render::Summary>,
    input_to_frame: Option<dci_services::render::Summary>,
    server_frame_time: Option<dci_services::render::Summary>,
    inputs_answered: usize,
    inputs_changed_view: usize,
    stalled: Option<String>,
}

/// Measures the model server (in-process, over loopback HTTP, weights from
/// the model store) and the render stream (in-process, over a loopback
/// WebSocket, driven by the scripted simulated user).
fn bench_services(quick: bool) -> anyhow::Result<ServicesBench> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let entry = dci_models::Catalogue::builtin().get("all-minilm-l6-v2")?.clone();
        let dir = dci_models::Store::open_default()?.ensure(&entry)?;
        let encoder = std::sync::Arc::new(dci_models::Encoder::load(&dir, &entry, dci_models::DeviceChoice::Cpu)?);
        let config = if quick {
            dci_models::BenchConfig { requests: 20, ..dci_models::BenchConfig::default() }
        } else {
            dci_models::BenchConfig::default()
        };
        let model = dci_models::bench_local(encoder, dci_models::ServeOptions::default(), &config).await?;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let name = ServiceName::new("render")?;
        let server = tokio::spawn(async move { dci_services::serve(&name, listener).await });
        let inputs = if quick { 10 } else { 100 };
        let url = format!("ws://{addr}/stream");
        let user =
            dci_services::render::simulate_user(&url, &dci_services::render::UserScript::standard(inputs)).await?;
        server.abort();
        let render = RenderBench {
            workload: format!(
                "one viewer of the render stream at its defaults ({}x{}, up to 30 fps), {inputs} inputs \
                 (drags, keys, zooms), each sent after the frame answering the previous one",
                user.width, user.height
            ),
            url: user.url,
            width: user.width,
            height: user.height,
            inputs,
            frames: user.frames,
            seconds: user.seconds,
            fps: user.fps,
            frame_interval: user.frame_interval,
            input_to_frame: user.input_to_frame,
            server_frame_time: user.server_frame_time,
            inputs_answered: user.inputs_answered,
            inputs_changed_view: user.inputs_changed_view,
            stalled: user.stalled,
        };
        let nan = f64::NAN;
        Ok(ServicesBench {
            workload: format!("embeddings: {}; render: {}", model.workload, render.workload),
            embeddings_per_s: model.embeddings_per_s,
            embed_p50_ms: model.p50_ms,
            embed_p99_ms: model.p99_ms,
            render_fps: render.fps,
            render_input_to_frame_p50_ms: render.input_to_frame.map_or(nan, |s| s.p50_ms),
            render_input_to_frame_p99_ms: render.input_to_frame.map_or(nan, |s| s.p99_ms),
            model,
            render,
        })
    })
}

/// `dci bench …`: prints the report as JSON.
fn bench(command: BenchCommand) -> anyhow::Result<()> {
    init_logs("warn");
    let json = match command {
        BenchCommand::Indexer { containers, matches, seed, json: _ } => {
            anyhow::ensure!(containers >= 1, "--containers: expected at least 1");
            let config =
                dci_indexer::bench::BenchConfig { matches, seed, ..dci_indexer::bench::BenchConfig::new(containers) };
            serde_json::to_string_pretty(&dci_indexer::bench::run(&config))?
        }
        BenchCommand::Ledger { transfers, batch, check_accounts, json: _ } => {
            let config = dci_ledger::bench::BenchConfig {
                transfers,
                batch,
                check_accounts,
                ..dci_ledger::bench::BenchConfig::default()
            };
            serde_json::to_string_pretty(&dci_ledger::bench::run(&config)?)?
        }
        BenchCommand::Settlement { json: _ } => {
            let report = dci_chain::bench::run(&dci_chain::bench::BenchOptions::default())?;
            serde_json::to_string_pretty(&report)?
        }
        BenchCommand::Services(a) => serde_json::to_string_pretty(&bench_services(a.quick)?)?,
        BenchCommand::Transport { messages, json: _ } => {
            let config = dci_node::bench::BenchConfig { messages, ..Default::default() };
            serde_json::to_string_pretty(&dci_node::bench::run(&config)?)?
        }
        BenchCommand::Checker { quick, json: _ } => {
            use dci_capacity::bench::BenchConfig as CapacityConfig;
            use dci_committee::bench::BenchConfig as CommitteeConfig;
            let (capacity, committee) = if quick {
                let mut committee =
                    CommitteeConfig { candidates: 20_000, committee: 100, runs: 1, ..Default::default() };
                committee.fairness.epochs = 2_000;
                (CapacityConfig::quick(), committee)
            } else {
                (CapacityConfig::standard(), CommitteeConfig::default())
            };
            let capacity = dci_capacity::bench::run(&capacity)?;
            let committee = dci_committee::bench::run(&committee)?;
            serde_json::to_string_pretty(&CheckerBench {
                verify_cost_ratio: capacity.verify_cost_ratio,
                soundness_bits: capacity.soundness_bits,
                sortition_ms_1m: committee.sortition_ms_1m,
                max_rate_deviation: committee.max_rate_deviation,
                history_spread_ratio: committee.history_spread_ratio,
                capacity,
                committee,
            })?
        }
    };
    println!("{json}");
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Devnet(a) => {
            init_logs("info");
            devnet(a).await
        }
        Command::Service { name, listen, exit_with_stdin } => {
            init_logs("warn");
            if exit_with_stdin {
                std::thread::spawn(|| {
                    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
                    std::process::exit(0);
                });
            }
            let catalogue = dci_models::Catalogue::builtin();
            if catalogue.get(&name).is_ok() {
                let store = dci_models::Store::open_default()?;
                return Ok(
                    dci_models::run(&store, &catalogue, &name, listen, dci_models::ServeOptions::default()).await?
                );
            }
            let name = ServiceName::new(name)?;
            Ok(dci_services::run(&name, listen).await?)
        }
        Command::Deploy(a) => {
            init_logs("warn");
            let service = match (a.service.as_str(), &a.model) {
                ("model", Some(name)) => {
                    let catalogue = dci_models::Catalogue::builtin();
                    let entry = catalogue.get(name).map_err(|e| {
                        let names: Vec<&str> = catalogue.models().iter().map(|m| m.name.as_str()).collect();
                        anyhow::anyhow!("{e} (the catalogue has: {})", names.join(", "))
                    })?;
                    entry.name.to_string()
                }
                ("model", None) => {
                    anyhow::bail!("expected a model name after `model`, e.g. `dci deploy model all-minilm-l6-v2`")
                }
                (_, Some(extra)) => {
                    anyhow::bail!("unexpected {extra:?} after the service name (only `model` takes a name)")
                }
                (s, None) => s.to_owned(),
            };
            let req = DeployRequest {
                service,
                gpu: a.gpu,
                gpu_count: a.gpu_count,
                vram_gib: a.vram,
                cpu_cores: a.cpu,
                ram_gib: a.ram,
                disk_gib: None,
                near: a.near.map(|p| format!("{},{}", p.lat(), p.lon())),
                max_latency_ms: a.max_latency,
                max_price: a.max_price.map(|p| p.0.to_string()),
                policy: Some(a.policy.to_string()),
                hours: Some(a.hours),
            };
            let t0 = Instant::now();
            let client = a.client.client()?;
            let s = client.deploy(&req).await?;
            if a.client.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("session    {}", s.id);
                println!("container  {}", s.container);
                println!("endpoint   {}", s.endpoint);
                if let Some(path) = &s.openai_path {
                    println!("openai     {}{path}  (base_url for OpenAI clients, with your API key)", client.base());
                }
                if let Some(path) = &s.view_path {
                    println!("view       {}{path}  (open in a browser)", client.base());
                }
                println!("price      {} ATH/h (escrow {} ATH)", s.price_ath_per_hour, s.escrow_ath);
                if let Some(p) = &s.token_price_ath_per_1k {
                    println!("tokens     {p} ATH per 1,000, paid from the escrow");
                }
                if let Some(rtt) = s.estimated_rtt_ms {
                    println!("est. rtt   {rtt} ms");
                }
                println!("ready in   {} ms", t0.elapsed().as_millis());
            }
            Ok(())
        }
        Command::Sessions(c) => {
            init_logs("warn");
            let list = c.client()?.sessions().await?;
            if c.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_sessions(&list);
            }
            Ok(())
        }
        Command::Stop { id, client } => {
            init_logs("warn");
            let s = client.client()?.stop(&id).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "session {} {:?}: billed {} s, charged {} ATH, refunded {} ATH",
                    s.id,
                    s.status,
                    s.billed_seconds.unwrap_or(0),
                    s.charged_ath.as_deref().unwrap_or("0"),
                    s.refunded_ath.as_deref().unwrap_or("0")
                );
                if let Some(t) = &s.token_charged_ath {
                    println!("tokens: {} in {} requests, charged {t} ATH", s.tokens, s.requests);
                }
                if let Some(why) = &s.ended_because {
                    println!("ended because {why}");
                }
            }
            Ok(())
        }
        Command::Offers { filter, sort, limit, client } => {
            init_logs("warn");
            let rows = client.client()?.offers(&filter, &sort, limit).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no offers pass the filter");
            } else {
                println!(
                    "{:<8}  {:<26}  {:>9}  {:>7}  {:>5}  {:>4}  SERVICES",
                    "ID", "GPU", "ATH/H", "RTT MS", "FREE", "REP"
                );
                for o in rows {
                    let gpu = match &o.gpu_model {
                        Some(m) => format!(
                            "{m} x{} {}G{}",
                            o.gpu_count,
                            o.vram_gib,
                            if o.gpu_simulated { " (sim)" } else { "" }
                        ),
                        None => "cpu only".into(),
                    };
                    let rtt = o.estimated_rtt_ms.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<8}  {:<26}  {:>9}  {:>7}  {:>5}  {:>4}  {}",
                        &o.id[..8],
                        gpu,
                        o.price_ath_per_hour,
                        rtt,
                        format!("{}/{}", o.free_slots, o.slots),
                        o.reputation,
                        o.services.join(",")
                    );
                }
            }
            Ok(())
        }
        Command::Containers(c) => {
            init_logs("warn");
            let list = c.client()?.containers().await?;
            if c.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_containers(&list);
            }
            Ok(())
        }
        Command::Committee(c) => {
            init_logs("warn");
            let info = c.client()?.committee().await?;
            if c.json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_committee(&info)?;
            }
            Ok(())
        }
        Command::Transfer { to, amount, client } => {
            init_logs("warn");
            let b = client.client()?.transfer(&TransferRequest { to, amount_ath: amount }).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                println!("sent; balance now {} ATH", b.balance_ath);
            }
            Ok(())
        }
        Command::Stake(a) => stake(a, false).await,
        Command::Unstake(a) => stake(a, true).await,
        Command::Withdraw(c) => {
            init_logs("warn");
            let b = c.client()?.withdraw().await?;
            print_balance(&b, c.json)
        }
        Command::Rewards { epoch, account, client } => {
            init_logs("warn");
            let r = client.client()?.rewards(epoch, account.as_deref()).await?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{}", r.explanation);
            }
            Ok(())
        }
        Command::Container(ContainerCommand::Run { print_example: true, .. }) => {
            print!("{}", dci_node::host::EXAMPLE);
            Ok(())
        }
        Command::Container(ContainerCommand::Run { host, print_example: false }) => container_run(host).await,
        Command::Gateway(GatewayCommand::Run { print_example: true, .. }) => {
            print!("{}", <dci_node::config::GatewayConfig as dci_node::config::NodeFile>::EXAMPLE);
            Ok(())
        }
        Command::Indexer(IndexerCommand::Run { print_example: true, .. }) => {
            print!("{}", <dci_node::config::IndexerConfig as dci_node::config::NodeFile>::EXAMPLE);
            Ok(())
        }
        Command::Checker(CheckerCommand::Run { print_example: true, .. }) => {
            print!("{}", <dci_node::config::CheckerConfig as dci_node::config::NodeFile>::EXAMPLE);
            Ok(())
        }
        Command::Gateway(GatewayCommand::Run { node, print_example: false }) => gateway_run(node.dir("gateway")).await,
        Command::Indexer(IndexerCommand::Run { node, print_example: false }) => {
            role_run("indexer", node.dir("indexer")).await
        }
        Command::Checker(CheckerCommand::Run { node, print_example: false }) => {
            role_run("checker", node.dir("checker")).await
        }
        Command::Gateway(GatewayCommand::Id { node }) => node_id("gateway", node.dir("gateway")),
        Command::Indexer(IndexerCommand::Id { node }) => node_id("indexer", node.dir("indexer")),
        Command::Checker(CheckerCommand::Id { node }) => node_id("checker", node.dir("checker")),
        Command::Checker(CheckerCommand::Stake { stake: a }) => {
            let dir = a.node.dir("checker");
            let config = <dci_node::config::CheckerConfig as dci_node::config::NodeFile>::load(&dir)?;
            role_stake(&config, &dir, dci_proto::StakeAs::Checker, &a.amount, a.api, a.json).await
        }
        Command::Indexer(IndexerCommand::Stake { stake: a }) => {
            let dir = a.node.dir("indexer");
            let config = <dci_node::config::IndexerConfig as dci_node::config::NodeFile>::load(&dir)?;
            role_stake(&config, &dir, dci_proto::StakeAs::Indexer, &a.amount, a.api, a.json).await
        }
        Command::Checker(CheckerCommand::Register { reg }) => {
            let dir = reg.node.dir("checker");
            let config = <dci_node::config::CheckerConfig as dci_node::config::NodeFile>::load(&dir)?;
            role_register(&config, &dir, dci_proto::EndpointRole::Checker, reg).await
        }
        Command::Indexer(IndexerCommand::Register { reg }) => {
            let dir = reg.node.dir("indexer");
            let config = <dci_node::config::IndexerConfig as dci_node::config::NodeFile>::load(&dir)?;
            role_register(&config, &dir, dci_proto::EndpointRole::Indexer, reg).await
        }
        Command::Container(ContainerCommand::Maintenance { state, drain, host }) => {
            init_logs("warn");
            let req = dci_node::host::ControlRequest::Maintenance { on: state == OnOff::On, drain };
            print_host(&dci_node::host::request(&host.dir(), &req).await?, host.json)
        }
        Command::Container(ContainerCommand::Price { ath_per_hour, host }) => {
            init_logs("warn");
            // Checked here too, so a typo never reaches the host.
            ath_per_hour.parse::<PricePerHour>().map_err(|e| anyhow::anyhow!("price: {e}"))?;
            let req = dci_node::host::ControlRequest::Price { ath_per_hour };
            print_host(&dci_node::host::request(&host.dir(), &req).await?, host.json)
        }
        Command::Container(ContainerCommand::Stake { amount, api, host }) => {
            init_logs("warn");
            let amount = dci_ledger::parse_amount(&amount).map_err(|e| anyhow::anyhow!("amount: {e}"))?;
            let dir = host.dir();
            let api = match api {
                Some(a) => a,
                None => dci_node::host::network_of(&dir)?
                    .api()
                    .ok_or_else(|| anyhow::anyhow!("no gateway given: pass --api URL (the network file names none)"))?,
            };
            let req = dci_node::host::stake_request(&dir, amount)?;
            let account = format!("node:{}", req.node);
            let b = dci_gateway::client::Client::new(api, None).node_stake(&req).await.map_err(|e| {
                anyhow::anyhow!("{e}\n(the stake is bonded from the host's own account {account}: fund it first, e.g. `dci transfer {account} {amount}`)")
            })?;
            if host.json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                println!(
                    "bonded {} ATH for {}: staked {} ATH, balance {} ATH",
                    amount, b.account, b.staked_ath, b.balance_ath
                );
            }
            Ok(())
        }
        Command::Container(ContainerCommand::Status { host }) => {
            init_logs("warn");
            let req = dci_node::host::ControlRequest::Status;
            print_host(&dci_node::host::request(&host.dir(), &req).await?, host.json)
        }
        Command::Container(ContainerCommand::Probe { json }) => {
            init_logs("warn");
            let probe = dci_probe::Probe::collect(&dci_probe::NvmlProbe::new());
            if json {
                println!("{}", serde_json::to_string_pretty(&probe)?);
            } else {
                print!("{probe}");
            }
            Ok(())
        }
        Command::Chain(ChainCommand::Deploy { rpc_url, settler_key, data_dir, committee, json }) => {
            init_logs("warn");
            let dir = dci_node::devnet::gateway_dir_of(&data_dir.unwrap_or_else(default_data_dir));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let key = settler_key.unwrap_or_else(|| dci_chain::DEV_KEYS[0].to_owned());
            let committee = if committee.is_empty() { checker_signers(&dir)? } else { committee };
            let (url, k) = (rpc_url.clone(), key.clone());
            let dep = tokio::task::spawn_blocking(move || {
                let (genesis, params) = (dci_ledger::Genesis::default(), dci_ledger::Params::default());
                dci_chain::deploy(&url, &k, &genesis, &params, &committee)
            })
            .await??;
            let config = SettlementConfig {
                backend: Backend::Evm,
                evm: Some(EvmConfig { rpc_url, anvil: false, settler_key: key, deployment: Some(dep.clone()) }),
                // The flush cadence of an existing config is kept.
                ..SettlementConfig::load(&dir).unwrap_or_default()
            };
            config.save(&dir)?;
            let path = SettlementConfig::path(&dir);
            if json {
                println!("{}", serde_json::to_string_pretty(&dep)?);
            } else {
                println!("deployed on chain {}", dep.chain_id);
                println!("  token    {}", dep.token);
                println!("  ledger   {}", dep.ledger);
                println!("  settler  {}", dep.settler);
                if let Some(registry) = dep.registry {
                    println!("  registry {registry}");
                }
                println!("written to {} (backend = \"evm\")", path.display());
                if let Some(registry) = dep.registry {
                    println!(
                        "nodes follow the registry with this table in their node.toml (or container.toml):\n\n[chain]\nrpc_url = \"{}\"\nregistry = \"{registry:?}\"",
                        config.evm.as_ref().map(|e| e.rpc_url.as_str()).unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        Command::Chain(ChainCommand::DeployRegistry { data_dir }) => {
            init_logs("warn");
            let dir = dci_node::devnet::gateway_dir_of(&data_dir.unwrap_or_else(default_data_dir));
            let mut config = SettlementConfig::load(&dir)?;
            let path = SettlementConfig::path(&dir);
            let evm = config.evm.as_mut().filter(|e| e.deployment.is_some()).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: expected an [evm] section with a deployment (`dci chain deploy`), found none",
                    path.display()
                )
            })?;
            let dep = evm.deployment.as_mut().expect("checked");
            if let Some(r) = dep.registry {
                anyhow::bail!("{}: the deployment already has its endpoint registry {r}", path.display());
            }
            let (url, key, ledger) = (evm.rpc_url.clone(), evm.settler_key.clone(), dep.ledger);
            let registry = tokio::task::spawn_blocking(move || {
                dci_chain::deploy_registry(&url, &key, ledger, &dci_chain::RegistryMinimums::default())
            })
            .await??;
            dep.registry = Some(registry);
            let rpc_url = evm.rpc_url.clone();
            config.save(&dir)?;
            println!("deployed the endpoint registry {registry} over ledger {ledger}, written to {}", path.display());
            println!(
                "nodes follow it with this table in their node.toml (or container.toml):\n\n[chain]\nrpc_url = \"{rpc_url}\"\nregistry = \"{registry:?}\""
            );
            Ok(())
        }
        Command::Chain(ChainCommand::Address { account }) => {
            let account = dci_model::AccountId::new(&account)?;
            println!("{}", dci_chain::account_address(&account));
            Ok(())
        }
        Command::Ledger(LedgerCommand::Check { data_dir, json }) => {
            init_logs("warn");
            let dir = dci_node::devnet::gateway_dir_of(&data_dir.unwrap_or_else(default_data_dir));
            let path = dir.join(dci_node::settlement::LEDGER_FILE);
            anyhow::ensure!(
                path.exists(),
                "no ledger at {}: start `dci devnet` or pass --data-dir (a gateway's data directory)",
                path.display()
            );
            let settings = SettlementConfig::load(&dir)?;
            let t0 = Instant::now();
            let report = match (settings.backend, settings.evm) {
                (Backend::Evm, Some(EvmConfig { rpc_url, settler_key, deployment: Some(dep), .. })) => {
                    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                        let l = dci_chain::EvmLedger::connect(&rpc_url, &settler_key, &dep).with_context(|| {
                            format!("connecting to the dci ledger at {rpc_url} (is the devnet running?)")
                        })?;
                        Ok(l.check_invariant()?)
                    })
                    .await??
                }
                (Backend::Evm, _) => {
                    anyhow::bail!("{}: backend evm but no deployment yet", SettlementConfig::path(&dir).display())
                }
                (Backend::Embedded, _) => open_books(&path)?.check_invariant()?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("supply invariant holds ({} ms)", t0.elapsed().as_millis());
                println!("  total supply   {} ATH", report.expected);
                println!("  balances       {} ATH in {} accounts", report.balances, report.accounts);
                println!("  open escrows   {} ATH in {} sessions", report.escrowed, report.open_escrows);
                println!("  staked         {} ATH", report.staked);
                println!("  unbonding      {} ATH", report.unbonding);
                println!("  rewards        {} ATH (credited, not claimed)", report.rewards);
            }
            Ok(())
        }
        Command::Bench(b) => tokio::task::spawn_blocking(move || bench(b)).await?,
        Command::Sim(a) => tokio::task::spawn_blocking(move || sim(a)).await?,
        Command::Balance(c) => {
            init_logs("warn");
            let b = c.client()?.balance().await?;
            print_balance(&b, c.json)
        }
    }
}

async fn stake(a: StakeArgs, unstake: bool) -> anyhow::Result<()> {
    init_logs("warn");
    let req = StakeRequest { role: a.role, amount_ath: a.amount };
    let b = a.client.client()?.stake(&req, unstake).await?;
    print_balance(&b, a.client.json)
}

fn print_balance(b: &BalanceInfo, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(b)?);
        return Ok(());
    }
    println!("account    {}", b.account);
    println!("balance    {} ATH", b.balance_ath);
    println!("escrowed   {} ATH", b.escrowed_ath);
    println!("staked     {} ATH", b.staked_ath);
    println!("unbonding  {} ATH", b.unbonding_ath);
    for u in &b.unbonding {
        println!("           {} ATH ({}) withdrawable at {} ms", u.amount_ath, u.role, u.release_at_ms);
    }
    println!("rewards    {} ATH (pending; `dci withdraw` claims them)", b.rewards_ath);
    Ok(())
}

/// `path` made absolute (a devnet's node configs live in its data directory).
fn absolute(path: PathBuf) -> anyhow::Result<PathBuf> {
    std::path::absolute(&path).with_context(|| format!("resolving {}", path.display()))
}

async fn devnet(a: DevnetArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let data_dir = a.data_dir.unwrap_or_else(default_data_dir);
    let config = DevnetConfig {
        data_dir: data_dir.clone(),
        containers: a.containers as usize,
        api_listen: SocketAddr::from(([127, 0, 0, 1], a.api_port)),
        service_program: std::env::current_exe().context("locating the dci binary")?,
        challenge_n: a.challenge_n,
        epoch: Duration::from_secs(a.epoch_secs),
        dishonest: a.dishonest,
        checkers: a.checkers as usize,
        committee_size: a.committee_size as usize,
        inspect_every: Duration::from_secs(a.inspect_every_secs),
        runtime: a.runtime,
        tls: match (a.tls_cert, a.tls_key) {
            (Some(cert), Some(key)) => {
                Some(dci_gateway::server::TlsFiles { cert: absolute(cert)?, key: absolute(key)? })
            }
            _ => None,
        },
        settlement: a.settlement,
    };
    let net = Devnet::start(config).await?;
    println!("DCI devnet");
    println!("  API        {}  (OpenAPI: {}/openapi.json, metrics: {}/metrics)", net.api_url, net.api_url, net.api_url);
    println!("  data dir   {}", data_dir.display());
    println!("  gateway    node {}  id {}", net.gateway.addr(), net.gateway.id());
    match &net.chain {
        None => println!(
            "  ledger     embedded ({})",
            data_dir.join(dci_node::devnet::GATEWAY_DIR).join(dci_node::settlement::LEDGER_FILE).display()
        ),
        Some(c) => {
            println!(
                "  ledger     evm on {}{}  token {}  ledger {}",
                c.rpc_url,
                if c.own_anvil { " (anvil)" } else { "" },
                c.deployment.token,
                c.deployment.ledger
            );
            if let Some(registry) = c.deployment.registry {
                println!("  registry   {registry}  (every node follows it: [chain] in its config)");
            }
        }
    }
    println!("  consumer   {}  (API key in {})", net.client.account, data_dir.join(CLIENT_FILE).display());
    println!(
        "  network    {}  (other hosts join with `dci container run`)",
        data_dir.join(dci_node::network::NETWORK_FILE).display()
    );
    println!(
        "  roles      each in its own directory there, with its node config: gateway/, indexer/, checker-N/, container-N/"
    );
    println!("  containers");
    for c in &net.containers {
        println!("    {c}");
    }
    let (ready, total) = net.wait_ready(Duration::from_secs(60)).await;
    println!(
        "ready: {ready}/{total} containers inspected and schedulable in {} ms; Ctrl-C stops",
        t0.elapsed().as_millis()
    );
    if ready < total {
        println!("       {} failed inspection (see: dci containers)", total - ready);
    }
    println!("try:   dci deploy render && dci sessions");
    wait_for_signal().await;
    println!("stopping: settling running sessions...");
    net.shutdown().await;
    println!("stopped");
    Ok(())
}

/// `dci container run`.
async fn container_run(args: HostArgs) -> anyhow::Result<()> {
    init_logs("info");
    let dir = args.dir();
    let program = std::env::current_exe().context("locating the dci binary")?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let host = dci_node::host::run(&dir, &program, shutdown.clone()).await?;
    let gpu = match &host.spec.gpu {
        Some(g) => {
            format!("{} x{} {} GiB{}", g.model, g.count, g.vram_gib, if g.simulated { " (simulated)" } else { "" })
        }
        None => "no GPU (CPU capacity only; see: dci container probe)".to_owned(),
    };
    println!("DCI container {}", host.role.id);
    println!("  listening  {}", host.role.addr);
    println!("  offers     {gpu}, {} cores, {} GiB RAM", host.spec.cpu_cores, host.spec.ram_gib);
    println!("  control    {}", dir.join(dci_node::host::CONTROL_SOCKET).display());
    println!("Ctrl-C stops");
    wait_for_signal().await;
    shutdown.cancel();
    let _ = host.role.task.await;
    Ok(())
}

/// `dci indexer run`, `dci checker run`: one role until SIGINT/SIGTERM.
async fn role_run(role: &str, dir: PathBuf) -> anyhow::Result<()> {
    init_logs("info");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let handle = match role {
        "indexer" => dci_node::node::start_indexer(&dir, shutdown.clone()).await?,
        _ => dci_node::node::start_checker(&dir, shutdown.clone()).await?,
    };
    println!("DCI {role} {}", handle.id);
    println!("  listening  {}", handle.addr);
    println!("  data dir   {}", dir.display());
    println!("Ctrl-C stops");
    wait_for_signal().await;
    shutdown.cancel();
    let _ = handle.task.await;
    println!("stopped");
    Ok(())
}

/// `dci gateway run`: until SIGINT/SIGTERM; running sessions are settled first.
async fn gateway_run(dir: PathBuf) -> anyhow::Result<()> {
    init_logs("info");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let gw = dci_node::node::start_gateway(&dir, shutdown.clone(), None).await?;
    println!("DCI gateway {}", gw.role.id);
    println!("  listening  {}", gw.role.addr);
    println!("  API        {}  (OpenAPI: {}/openapi.json)", gw.api_url, gw.api_url);
    println!("  data dir   {}", dir.display());
    if let Some(c) = &gw.client {
        println!("  consumer   {}  (API key in {})", c.account, dir.join(CLIENT_FILE).display());
    }
    println!("Ctrl-C stops");
    wait_for_signal().await;
    println!("stopping: settling running sessions...");
    gw.settle().await;
    shutdown.cancel();
    gw.join().await;
    println!("stopped");
    Ok(())
}

/// `dci <role> id`: the node's entry for the network file.
/// The gateway API a node's command talks to: `--api`, else the first
/// gateway of its network file.
fn node_api<C: dci_node::config::NodeFile>(
    config: &C,
    dir: &std::path::Path,
    api: Option<String>,
) -> anyhow::Result<String> {
    match api {
        Some(a) => Ok(a),
        None => config
            .network(dir)?
            .api()
            .ok_or_else(|| anyhow::anyhow!("no gateway given: pass --api URL (the network file names none)")),
    }
}

/// `dci checker|indexer stake`: bonds from the node's own account, signed
/// with its node key.
async fn role_stake<C: dci_node::config::NodeFile>(
    config: &C,
    dir: &std::path::Path,
    role: dci_proto::StakeAs,
    amount: &str,
    api: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    init_logs("warn");
    let amount = dci_ledger::parse_amount(amount).map_err(|e| anyhow::anyhow!("amount: {e}"))?;
    let identity = config.identity(dir)?;
    let api = node_api(config, dir, api)?;
    let req = dci_node::host::node_stake_request(&identity, role, amount);
    let account = format!("node:{}", req.node);
    let b = Client::new(api, None).node_stake(&req).await.map_err(|e| {
        anyhow::anyhow!("{e}\n(the stake is bonded from the {}'s own account {account}: fund it first, e.g. `dci transfer {account} {amount}`)", C::ROLE)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&b)?);
    } else {
        println!("bonded {amount} ATH for {}: staked {} ATH, balance {} ATH", b.account, b.staked_ath, b.balance_ath);
    }
    Ok(())
}

/// `dci checker|indexer register`: signs the node's endpoint record for the
/// registry of its `[chain]` and has the gateway publish it.
async fn role_register<C: dci_node::config::NodeFile>(
    config: &C,
    dir: &std::path::Path,
    role: dci_proto::EndpointRole,
    reg: RegisterArgs,
) -> anyhow::Result<()> {
    init_logs("warn");
    let base = config.base();
    let chain = base.chain.cloned().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: expected a [chain] table (rpc_url, registry) naming the endpoint registry to register in; \
             `dci {} run --print-example` shows one",
            dir.join(dci_node::config::NODE_FILE).display(),
            C::ROLE
        )
    })?;
    let addr = if reg.withdraw { String::new() } else { dci_node::node::register_addr(base.listen, reg.addr)? };
    let identity = config.identity(dir)?;
    let api = node_api(config, dir, reg.api)?;
    let req = dci_node::node::register_request(&identity, role, addr, &chain).await?;
    let info = Client::new(api, None).node_register(&req).await.map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(the chain lists a {} only with its minimum stake bonded: `dci {} stake <ATH>`)",
            C::ROLE,
            C::ROLE
        )
    })?;
    if reg.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else if info.addr.is_empty() {
        println!(
            "withdrew {} {} from registry {} (chain {}, seq {})",
            C::ROLE,
            info.node,
            info.registry,
            info.chain_id,
            info.seq
        );
    } else {
        println!(
            "registered {} {} at {} in registry {} (chain {}, seq {}, transaction {})",
            C::ROLE,
            info.node,
            info.addr,
            info.registry,
            info.chain_id,
            info.seq,
            info.transaction
        );
    }
    Ok(())
}

fn node_id(role: &str, dir: PathBuf) -> anyhow::Result<()> {
    init_logs("warn");
    print!("{}", dci_node::node::entry(role, &dir)?);
    Ok(())
}

fn print_host(s: &dci_node::host::StatusView, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    let state = s.state.clone().unwrap_or_else(|| "unregistered".into());
    let lock = match (s.maintenance, s.sessions.is_empty()) {
        (false, _) => String::new(),
        (true, true) => "  (maintenance lock)".into(),
        (true, false) => format!("  (maintenance lock, draining {} sessions)", s.sessions.len()),
    };
    println!("container  {}", s.id);
    println!("state      {state}{lock}");
    if s.indexers.len() > 1 {
        for i in &s.indexers {
            let seen = match (&i.state, &i.refused) {
                (Some(state), _) => state.clone(),
                (None, Some(why)) => format!("refused: {why}"),
                (None, None) => "not admitted yet".into(),
            };
            println!("  indexer {} at {}: {seen}", &i.id[..8.min(i.id.len())], i.addr);
        }
    }
    println!("price      {} ATH per slot-hour, {} slots", s.price_ath_per_hour, s.slots);
    println!("services   {}  (warm now: {})", s.services.join(", "), s.warm.join(", "));
    println!(
        "earned     {} ATH for {} s over {} sessions (before fees)",
        s.earned_ath, s.earned_seconds, s.earned_sessions
    );
    println!("sessions   {}", s.sessions.len());
    for x in &s.sessions {
        println!("  {}  {}  {}", x.id, x.service, x.endpoint.as_deref().unwrap_or("starting"));
    }
    println!("latest transitions");
    for t in &s.transitions {
        println!("  {} -> {}  by {}: {}", t.from, t.to, t.actor, t.reason);
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn print_sessions(list: &[SessionInfo]) {
    if list.is_empty() {
        println!("no sessions");
        return;
    }
    println!(
        "{:<32}  {:<16}  {:<11}  {:>8}  {:>12}  {:>8}  ENDPOINT",
        "SESSION", "SERVICE", "STATUS", "SECONDS", "CHARGED ATH", "TOKENS"
    );
    for s in list {
        println!(
            "{:<32}  {:<16}  {:<11}  {:>8}  {:>12}  {:>8}  {}",
            s.id,
            s.service,
            format!("{:?}", s.status).to_lowercase(),
            s.billed_seconds.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            s.charged_ath.clone().unwrap_or_else(|| "-".into()),
            if s.token_price_ath_per_1k.is_some() { s.tokens.to_string() } else { "-".into() },
            s.endpoint
        );
        for g in &s.segments {
            println!(
                "  moved from {} after {} s ({} ATH): {}",
                &g.container[..16.min(g.container.len())],
                g.billed_seconds,
                g.charged_ath,
                g.ended_because
            );
        }
    }
}

/// Prints the committee after recomputing it from the announcement: the
/// members shown are the ones this machine derived from the proofs.
fn print_committee(info: &dci_gateway::api::CommitteeInfo) -> anyhow::Result<()> {
    let bytes = hex::decode(&info.announcement).context("the announcement is not hex")?;
    let announcement: dci_proto::CommitteeAnnouncement =
        postcard::from_bytes(&bytes).context("the announcement does not decode")?;
    let recomputed = dci_committee::recompute(&announcement).context("recomputing the committee from its proofs")?;
    let ours: Vec<String> = recomputed.members.iter().map(|m| m.id.to_string()).collect();
    let verdict = if ours == info.members {
        "recomputed here from the VRF proofs: same members"
    } else {
        "MISMATCH: the gateway's members differ from the proofs"
    };
    println!(
        "epoch {}  seed {}…  {} of {} seats, penalties need {} signatures",
        info.epoch,
        &info.seed[..16],
        info.members.len(),
        info.size,
        info.quorum
    );
    println!("{verdict}");
    println!("{:<8}  {:>12}  {:>8}  {:>6}  MEMBER", "CHECKER", "STAKE ATH", "BEFORE", "WEIGHT");
    for c in &info.candidates {
        let weight = c.weight.map(|w| w.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<8}  {:>12}  {:>8}  {:>6}  {}",
            &c.id[..8],
            c.stake,
            c.selected_before,
            weight,
            if c.member { "yes" } else { "" }
        );
    }
    if info.penalties.is_empty() {
        println!("no penalties");
    }
    for p in &info.penalties {
        println!(
            "penalty on {} (epoch {}, reported by {}): {} — {}/{} signatures, asked {} ATH, took {} ATH",
            &p.container[..8],
            p.epoch,
            &p.reporter[..8],
            p.outcome,
            p.signers.len(),
            p.quorum,
            p.asked,
            p.taken
        );
    }
    anyhow::ensure!(ours == info.members, "the committee does not recompute from its proofs");
    Ok(())
}

fn print_containers(list: &[ContainerInfo]) {
    if list.is_empty() {
        println!("no containers");
        return;
    }
    println!(
        "{:<8}  {:<22}  {:<26}  {:>9}  {:>5}  {:>4}  LAST TRANSITION",
        "ID", "STATE", "GPU", "ATH/H", "SLOTS", "REP"
    );
    for c in list {
        let gpu = match &c.gpu_model {
            Some(m) => format!("{m} x{} {}G{}", c.gpu_count, c.vram_gib, if c.gpu_simulated { " (sim)" } else { "" }),
            None => "cpu only".into(),
        };
        let last = c
            .transitions
            .last()
            .map(|t| format!("{} -> {} by {}: {}", t.from, t.to, t.actor, t.reason))
            .unwrap_or_default();
        println!(
            "{:<8}  {:<22}  {:<26}  {:>9}  {:>5}  {:>4}  {}",
            &c.id[..8],
            c.state,
            gpu,
            c.price_ath_per_hour,
            format!("{}/{}", c.slots - c.reserved.min(c.slots), c.slots),
            c.reputation,
            last
        );
        for v in c.verdicts.iter().rev().take(3) {
            let outcome = if v.passed { "passed" } else { "FAILED" };
            println!(
                "{:<10}{} {} inspection {outcome} in {} ms: {}",
                "",
                &v.checker[..8],
                v.kind,
                v.compute_ms,
                v.reason
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client_options_last;

    #[test]
    fn client_options_before_the_command_go_after_it() {
        let check = |line: &str, expect: &str| {
            let args = line.split(' ').map(std::ffi::OsString::from).collect();
            let out: Vec<String> = client_options_last(args).iter().map(|a| a.to_string_lossy().into_owned()).collect();
            assert_eq!(out.join(" "), expect, "{line}");
        };
        check("dci --api https://g:1 balance", "dci balance --api https://g:1");
        check("dci --api=https://g:1 --json --api-key k stop s", "dci stop s --api=https://g:1 --json --api-key k");
        check("dci balance --api x", "dci balance --api x");
        check("dci devnet --api-port 1", "dci devnet --api-port 1");
        check("dci --api", "dci --api");
    }
}
