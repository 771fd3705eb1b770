//! The embedded backend: one SQLite file, one writer (R-LG6 `embedded`).
//!
//! Durability: the file is in WAL mode with `synchronous=FULL`, so a call that
//! returned `Ok` survives a crash or power loss, not just a process exit
//! (`NORMAL` could lose the last commits on power loss; money is worth the
//! extra fsync). Throughput comes from batching ([`EmbeddedLedger::apply`],
//! [`EmbeddedLedger::transfer_batch`]: one transaction and one fsync per
//! batch), not from weaker durability.
//!
//! Every call runs in one `BEGIN IMMEDIATE` transaction; an error drops the
//! transaction, so nothing changes. In debug builds the supply invariant is
//! recomputed inside the transaction before it commits, and a violation
//! aborts the operation with [`LedgerError::Invariant`]. The invariant is
//! also checked on every open, so a ledger that recovered from a crash is
//! verified before use.
//!
//! Amounts are stored as decimal text of base units (SQLite integers are i64,
//! too small for 42e9 × 10^18) and summed in Rust with checked arithmetic.
//! Times are integer milliseconds.

mod tx;

use dci_model::{AccountId, Amount, NodeId, SessionId, Timestamp, money::TOTAL_SUPPLY};
use dci_proto::SignedReceipt;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::time::Duration;

use crate::ops::UndeliveredRefund;
use crate::rewards::{EpochInput, EpochSummary, RewardEntry, RewardExplanation, RewardLine};
use crate::slash::{SlashReport, Slashed};
use crate::staking::{StakeEntry, StakeRole, UnbondingEntry};
use crate::{
    AccountView, EpochEmission, EscrowState, EscrowView, FeeSplit, Genesis, LedgerError, LedgerOp, LedgerSnapshot,
    OpOutcome, Params, ParamsChange, Settled, Settlement, SettlementRecord, SupplyReport, Transfer, accounts,
};
use tx::Tx;

const SCHEMA_VERSION: &str = "5";

/// Version 1 had accounts, escrows, settlements and API keys; version 2 adds
/// the tables after `api_keys`; version 3 adds `settlements.extra_charged`
/// and `slashed_evidence` (the at-most-once key of a slash: its evidence);
/// version 4 adds `committees` (`LedgerOp::SetCommittee`, recorded);
/// version 5 lets `stakes` and `unbonding` hold the role `indexer`.
/// Opening an older file upgrades it in place ([`upgrade`]): new tables
/// start empty, the parameters at their defaults, the settlements of
/// before charged no extra, and every evidence already slashed is recorded
/// as such (the `slashes` rows are kept as they are).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts (
    id      TEXT PRIMARY KEY,
    balance TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS escrows (
    session  BLOB PRIMARY KEY CHECK (length(session) = 16),
    consumer TEXT NOT NULL,
    amount   TEXT NOT NULL,
    state    TEXT NOT NULL CHECK (state IN ('open', 'settled', 'refunded'))
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS escrows_open ON escrows (consumer) WHERE state = 'open';
CREATE TABLE IF NOT EXISTS settlements (
    seq       INTEGER PRIMARY KEY,
    session   BLOB NOT NULL UNIQUE,
    consumer  TEXT NOT NULL,
    payout    TEXT NOT NULL,
    container BLOB NOT NULL,
    acker     BLOB NOT NULL,
    charged   TEXT NOT NULL,
    provider  TEXT NOT NULL,
    checkers  TEXT NOT NULL,
    indexers  TEXT NOT NULL,
    treasury  TEXT NOT NULL,
    refunded  TEXT NOT NULL,
    shortfall TEXT NOT NULL,
    receipt   TEXT NOT NULL,
    extra_charged TEXT NOT NULL DEFAULT '0'
);
CREATE INDEX IF NOT EXISTS settlements_by_consumer ON settlements (consumer, seq);
CREATE INDEX IF NOT EXISTS settlements_by_payout ON settlements (payout, seq);
CREATE TABLE IF NOT EXISTS api_keys (
    hash    BLOB PRIMARY KEY,
    account TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stakes (
    account TEXT NOT NULL,
    role    TEXT NOT NULL CHECK (role IN ('container', 'checker', 'indexer')),
    amount  TEXT NOT NULL,
    PRIMARY KEY (account, role)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unbonding (
    id         INTEGER PRIMARY KEY,
    account    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('container', 'checker', 'indexer')),
    amount     TEXT NOT NULL,
    release_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS unbonding_by_account ON unbonding (account, release_at);
CREATE TABLE IF NOT EXISTS pending_rewards (
    account TEXT PRIMARY KEY,
    amount  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS params (
    seq    INTEGER PRIMARY KEY,
    set_at INTEGER NOT NULL,
    params TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS epochs (
    epoch   INTEGER PRIMARY KEY,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS epoch_rewards (
    epoch   INTEGER NOT NULL,
    account TEXT NOT NULL,
    role    TEXT NOT NULL,
    line    TEXT NOT NULL,
    PRIMARY KEY (epoch, account, role)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS epoch_rewards_by_account ON epoch_rewards (account, epoch);
CREATE TABLE IF NOT EXISTS slashes (
    seq      INTEGER PRIMARY KEY,
    offender TEXT NOT NULL,
    role     TEXT NOT NULL,
    epoch    INTEGER NOT NULL,
    evidence BLOB NOT NULL,
    record   TEXT NOT NULL,
    UNIQUE (offender, role, epoch, evidence)
);
CREATE TABLE IF NOT EXISTS slashed_evidence (
    evidence BLOB PRIMARY KEY CHECK (length(evidence) = 32),
    seq      INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS undelivered (
    session BLOB PRIMARY KEY,
    record  TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS committees (
    epoch      INTEGER PRIMARY KEY,
    members    TEXT NOT NULL,
    signatures TEXT NOT NULL
);
";

/// Prefix of every API key.
const API_KEY_PREFIX: &str = "dci_";

/// The single-node ledger on SQLite. See the module docs for durability.
pub struct EmbeddedLedger {
    conn: Connection,
    params: Params,
    /// The mining pool's genesis allocation: the `P` of the emission schedule.
    mining_genesis: Amount,
    location: String,
}

impl std::fmt::Debug for EmbeddedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLedger").field("location", &self.location).field("params", &self.params).finish()
    }
}

/// Maps SQLite errors to [`LedgerError::Storage`] without exposing SQLite
/// types in the public error.
trait OrStorage<T> {
    fn st(self) -> Result<T, LedgerError>;
}

impl<T> OrStorage<T> for Result<T, rusqlite::Error> {
    fn st(self) -> Result<T, LedgerError> {
        self.map_err(|e| LedgerError::Storage(e.to_string()))
    }
}

fn corrupt(what: &str, found: impl std::fmt::Display) -> LedgerError {
    LedgerError::Storage(format!("corrupt ledger: expected {what}, found {found}"))
}

fn amount(text: &str) -> Result<Amount, LedgerError> {
    text.parse::<u128>().map(Amount).map_err(|_| corrupt("an amount in base units", format!("{text:?}")))
}

fn account_id(text: String) -> Result<AccountId, LedgerError> {
    AccountId::new(text).map_err(|e| corrupt("an account id", e))
}

fn node_id(bytes: Vec<u8>) -> Result<NodeId, LedgerError> {
    <[u8; 32]>::try_from(bytes.as_slice()).map(NodeId).map_err(|_| corrupt("a 32-byte node id", bytes.len()))
}

fn session_id(bytes: Vec<u8>) -> Result<SessionId, LedgerError> {
    <[u8; 16]>::try_from(bytes.as_slice()).map(SessionId).map_err(|_| corrupt("a 16-byte session id", bytes.len()))
}

fn role_of(s: &str) -> Result<StakeRole, LedgerError> {
    s.parse().map_err(|_| corrupt("a stake role", format!("{s:?}")))
}

fn text(a: Amount) -> String {
    a.0.to_string()
}

/// A time as stored (i64 milliseconds).
fn ms(t: Timestamp) -> Result<i64, LedgerError> {
    i64::try_from(t.0)
        .map_err(|_| LedgerError::InvalidInput(format!("expected a time up to {} ms, found {}", i64::MAX, t.0)))
}

fn stored_time(v: i64) -> Result<Timestamp, LedgerError> {
    u64::try_from(v).map(Timestamp).map_err(|_| corrupt("a non-negative time", v))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, LedgerError> {
    serde_json::to_string(v).map_err(|e| LedgerError::Storage(format!("cannot encode a record: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, LedgerError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

fn get_balance(c: &Connection, account: &AccountId) -> Result<Option<Amount>, LedgerError> {
    let s: Option<String> = c
        .prepare_cached("SELECT balance FROM accounts WHERE id = ?1")
        .st()?
        .query_row([account.as_str()], |r| r.get(0))
        .optional()
        .st()?;
    s.as_deref().map(amount).transpose()
}

fn stake_of(c: &Connection, account: &AccountId, role: StakeRole) -> Result<Amount, LedgerError> {
    let s: Option<String> = c
        .prepare_cached("SELECT amount FROM stakes WHERE account = ?1 AND role = ?2")
        .st()?
        .query_row(params![account.as_str(), role.as_str()], |r| r.get(0))
        .optional()
        .st()?;
    Ok(s.as_deref().map(amount).transpose()?.unwrap_or(Amount::ZERO))
}

fn pending_of(c: &Connection, account: &AccountId) -> Result<Amount, LedgerError> {
    let s: Option<String> = c
        .prepare_cached("SELECT amount FROM pending_rewards WHERE account = ?1")
        .st()?
        .query_row([account.as_str()], |r| r.get(0))
        .optional()
        .st()?;
    Ok(s.as_deref().map(amount).transpose()?.unwrap_or(Amount::ZERO))
}

fn get_escrow(c: &Connection, session: SessionId) -> Result<Option<EscrowView>, LedgerError> {
    let row: Option<(String, String, String)> = c
        .prepare_cached("SELECT consumer, amount, state FROM escrows WHERE session = ?1")
        .st()?
        .query_row([&session.0[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .st()?;
    let Some((consumer, amt, state)) = row else { return Ok(None) };
    Ok(Some(EscrowView {
        session,
        consumer: account_id(consumer)?,
        amount: amount(&amt)?,
        state: escrow_state(&state)?,
    }))
}

fn escrow_state(s: &str) -> Result<EscrowState, LedgerError> {
    match s {
        "open" => Ok(EscrowState::Open),
        "settled" => Ok(EscrowState::Settled),
        "refunded" => Ok(EscrowState::Refunded),
        other => Err(corrupt("an escrow state", format!("{other:?}"))),
    }
}

/// The escrow of `session` if it is open; the matching error otherwise.
fn open_escrow(c: &Connection, session: SessionId) -> Result<EscrowView, LedgerError> {
    let e = get_escrow(c, session)?.ok_or(LedgerError::NoEscrow(session))?;
    match e.state {
        EscrowState::Open => Ok(e),
        EscrowState::Settled => Err(LedgerError::AlreadySettled(session)),
        EscrowState::Refunded => Err(LedgerError::AlreadyRefunded(session)),
    }
}

/// Sums the text amounts of the first column of `sql`; returns (sum, rows).
fn sum_column(c: &Connection, sql: &str) -> Result<(Amount, u64), LedgerError> {
    let mut stmt = c.prepare_cached(sql).st()?;
    let mut rows = stmt.query([]).st()?;
    let mut sum = 0u128;
    let mut n = 0u64;
    while let Some(r) = rows.next().st()? {
        let v = r.get_ref(0).st()?;
        let s = v.as_str().map_err(|_| corrupt("an amount as text", format!("{:?}", v.data_type())))?;
        let a = s.parse::<u128>().map_err(|_| corrupt("an amount in base units", format!("{s:?}")))?;
        sum = sum.checked_add(a).ok_or(LedgerError::Amount(dci_model::AmountError::Overflow))?;
        n += 1;
    }
    Ok((Amount(sum), n))
}

fn supply(c: &Connection) -> Result<SupplyReport, LedgerError> {
    let (balances, accounts) = sum_column(c, "SELECT balance FROM accounts")?;
    let (escrowed, open_escrows) = sum_column(c, "SELECT amount FROM escrows WHERE state = 'open'")?;
    let (staked, _) = sum_column(c, "SELECT amount FROM stakes")?;
    let (unbonding, _) = sum_column(c, "SELECT amount FROM unbonding")?;
    let (rewards, _) = sum_column(c, "SELECT amount FROM pending_rewards")?;
    Ok(SupplyReport { expected: TOTAL_SUPPLY, balances, escrowed, staked, unbonding, rewards, accounts, open_escrows })
}

fn settlement_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawSettlement> {
    Ok(RawSettlement {
        seq: r.get(0)?,
        session: r.get(1)?,
        consumer: r.get(2)?,
        payout: r.get(3)?,
        container: r.get(4)?,
        acker: r.get(5)?,
        amounts: [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?, r.get(14)?],
        receipt: r.get(13)?,
    })
}

const SETTLEMENT_COLUMNS: &str = "seq, session, consumer, payout, container, acker, charged, provider, checkers, \
                                  indexers, treasury, refunded, shortfall, receipt, extra_charged";

fn read_settlement(c: &Connection, session: SessionId) -> Result<Option<SettlementRecord>, LedgerError> {
    let sql = format!("SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE session = ?1");
    let raw = c.prepare_cached(&sql).st()?.query_row([&session.0[..]], settlement_row).optional().st()?;
    raw.map(RawSettlement::decode).transpose()
}

struct RawSettlement {
    seq: i64,
    session: Vec<u8>,
    consumer: String,
    payout: String,
    container: Vec<u8>,
    acker: Vec<u8>,
    amounts: [String; 8],
    receipt: String,
}

impl RawSettlement {
    fn decode(self) -> Result<SettlementRecord, LedgerError> {
        let [charged, provider, checkers, indexers, treasury, refunded, shortfall, extra_charged] = &self.amounts;
        let receipt: SignedReceipt = from_json("a receipt in JSON", &self.receipt)?;
        Ok(SettlementRecord {
            seq: u64::try_from(self.seq).map_err(|_| corrupt("a positive sequence number", self.seq))?,
            settled: Settled {
                session: session_id(self.session)?,
                charged: amount(charged)?,
                extra_charged: amount(extra_charged)?,
                provider: amount(provider)?,
                checkers: amount(checkers)?,
                indexers: amount(indexers)?,
                treasury: amount(treasury)?,
                refunded: amount(refunded)?,
                shortfall: amount(shortfall)?,
            },
            consumer: account_id(self.consumer)?,
            payout: account_id(self.payout)?,
            container: node_id(self.container)?,
            acker: node_id(self.acker)?,
            receipt,
        })
    }
}

/// Brings a version 1 or 2 file to the current schema, after [`SCHEMA`]
/// created the tables it lacked: adds `settlements.extra_charged` (zero: no
/// extra was charged before), and records the evidence of every slash
/// applied so far in `slashed_evidence` (the earliest slash of each, when
/// version 2 keyed slashes by epoch too and one evidence was slashed in
/// several epochs; those rows stay in `slashes`), and rebuilds `stakes` and
/// `unbonding` of a file before version 5 so they take the indexer role.
fn upgrade(c: &Connection) -> Result<(), LedgerError> {
    let has_extra: bool = c
        .query_row("SELECT count(*) FROM pragma_table_info('settlements') WHERE name = 'extra_charged'", [], |r| {
            r.get::<_, i64>(0)
        })
        .st()?
        > 0;
    if !has_extra {
        c.execute_batch("ALTER TABLE settlements ADD COLUMN extra_charged TEXT NOT NULL DEFAULT '0'").st()?;
    }
    c.execute_batch(
        "INSERT OR IGNORE INTO slashed_evidence (evidence, seq) SELECT evidence, min(seq) FROM slashes GROUP BY evidence",
    )
    .st()?;
    // SQLite cannot change a CHECK: a table made before the indexer role is
    // rebuilt under the current one, its rows copied as they are (the
    // second SCHEMA run makes the index the old table took with it).
    for table in ["stakes", "unbonding"] {
        let sql: String = c
            .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| r.get(0))
            .st()?;
        if !sql.contains("'indexer'") {
            c.execute_batch(&format!(
                "ALTER TABLE {table} RENAME TO {table}_v4; {SCHEMA} INSERT INTO {table} SELECT * FROM {table}_v4; \
                 DROP TABLE {table}_v4; {SCHEMA}"
            ))
            .st()?;
        }
    }
    Ok(())
}

fn count(c: &Connection, table: &str) -> Result<u64, LedgerError> {
    let n: i64 = c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).st()?;
    u64::try_from(n).map_err(|_| corrupt("a row count", n))
}

impl EmbeddedLedger {
    /// Opens the ledger file at `path`, creating it and applying `genesis` if
    /// it is new. An existing ledger keeps its state; it is refused if it was
    /// created with a different genesis. The supply invariant is checked on
    /// every open (R-LG5: also after a crash).
    pub fn open(path: impl AsRef<Path>, genesis: &Genesis) -> Result<EmbeddedLedger, LedgerError> {
        let path = path.as_ref();
        let location = path.display().to_string();
        let conn = Connection::open(path)
            .map_err(|e| LedgerError::Storage(format!("cannot open ledger file {location}: {e}")))?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).st()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(LedgerError::Storage(format!(
                "expected the ledger file {location} to switch to WAL journaling, found journal mode {mode}"
            )));
        }
        Self::init(conn, genesis, location)
    }

    /// A ledger that lives in memory only (tests, simulation).
    pub fn open_in_memory(genesis: &Genesis) -> Result<EmbeddedLedger, LedgerError> {
        let conn = Connection::open_in_memory().st()?;
        Self::init(conn, genesis, ":memory:".to_owned())
    }

    fn init(mut conn: Connection, genesis: &Genesis, location: String) -> Result<EmbeddedLedger, LedgerError> {
        conn.pragma_update(None, "synchronous", "FULL").st()?;
        // Up to 32 MiB of page cache: a million accounts stay in memory.
        conn.pragma_update(None, "cache_size", -32_768).st()?;
        conn.busy_timeout(Duration::from_secs(5)).st()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).st()?;
        tx.execute_batch(SCHEMA).st()?;
        let meta = |key: &str| -> Result<Option<String>, LedgerError> {
            tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().st()
        };
        match meta("schema")?.as_deref() {
            None => {
                tx.execute("INSERT INTO meta (key, value) VALUES ('schema', ?1)", [SCHEMA_VERSION]).st()?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(v @ ("1" | "2" | "3" | "4")) => {
                upgrade(&tx)?;
                tx.execute("UPDATE meta SET value = ?1 WHERE key = 'schema'", [SCHEMA_VERSION]).st()?;
                tracing::info!(location, "upgraded ledger schema from version {v} to {SCHEMA_VERSION}");
            }
            Some(v) => {
                return Err(LedgerError::Storage(format!(
                    "expected ledger schema version 1 to {SCHEMA_VERSION}, found {v}"
                )));
            }
        }
        match meta("genesis")? {
            Some(stored_json) => {
                let stored: Genesis = from_json("a genesis record", &stored_json)?;
                // A record written before networks had a kind: the kind is
                // the one given now (the allocations must still agree).
                let kindless = !stored_json.contains("\"network\"");
                if kindless && stored.clone().with_network(genesis.network()) == *genesis {
                    tx.execute("UPDATE meta SET value = ?1 WHERE key = 'genesis'", [json(genesis)?]).st()?;
                } else if &stored != genesis {
                    return Err(LedgerError::GenesisMismatch {
                        stored: stored.to_string(),
                        given: genesis.to_string(),
                    });
                }
                tracing::debug!(location, "opened ledger");
            }
            None => {
                if count(&tx, "accounts")? != 0 {
                    return Err(corrupt("no accounts in a ledger without a genesis record", "some"));
                }
                let mut t = Tx::new(&tx, Params::default(), Amount::ZERO);
                for (account, value) in genesis.amounts()? {
                    t.credit(&account, value)?;
                }
                t.flush()?;
                drop(t);
                tx.execute("INSERT INTO meta (key, value) VALUES ('genesis', ?1)", [json(genesis)?]).st()?;
                tracing::info!(location, %genesis, "applied genesis");
            }
        }
        let latest: Option<String> =
            tx.query_row("SELECT params FROM params ORDER BY seq DESC LIMIT 1", [], |r| r.get(0)).optional().st()?;
        let params = match latest {
            Some(s) => {
                let p: Params = from_json("governance parameters", &s)?;
                p.validate().map_err(|e| corrupt("valid governance parameters", e))?;
                p
            }
            None => {
                let p = Params::default();
                tx.execute("INSERT INTO params (set_at, params) VALUES (0, ?1)", [json(&p)?]).st()?;
                p
            }
        };
        supply(&tx)?.check()?;
        tx.commit().st()?;
        let mining_genesis = genesis
            .amounts()?
            .into_iter()
            .find(|(a, _)| a.as_str() == accounts::MINING_POOL)
            .map_or(Amount::ZERO, |(_, v)| v);
        Ok(EmbeddedLedger { conn, params, mining_genesis, location })
    }

    /// The genesis this ledger was created with.
    pub fn genesis(&self) -> Result<Genesis, LedgerError> {
        let s: String = self.conn.query_row("SELECT value FROM meta WHERE key = 'genesis'", [], |r| r.get(0)).st()?;
        from_json("a genesis record", &s)
    }

    /// Where the ledger lives (a path, or `:memory:`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Runs `f` in one immediate transaction; commits only if `f` succeeds
    /// (and, in debug builds, if the supply invariant still holds).
    fn run<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, LedgerError>) -> Result<T, LedgerError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).st()?;
        let mut t = Tx::new(&tx, self.params, self.mining_genesis);
        let out = f(&mut t)?;
        t.flush()?;
        let params = t.params;
        drop(t);
        if cfg!(debug_assertions) {
            supply(&tx)?.check()?;
        }
        tx.commit().st()?;
        self.params = params;
        Ok(out)
    }

    // ----- mutations -----

    /// Applies `ops` in order in one transaction: all or none. The error is
    /// [`LedgerError::Batch`] naming the first op that failed.
    pub fn apply(&mut self, ops: &[LedgerOp]) -> Result<Vec<OpOutcome>, LedgerError> {
        self.run(|t| {
            ops.iter()
                .enumerate()
                .map(|(index, op)| {
                    t.apply(op).map_err(|e| LedgerError::Batch { op: op.name(), index, source: Box::new(e) })
                })
                .collect()
        })
    }

    /// Moves `amount` from `from` to `to`, creating `to` if needed. Funding a
    /// consumer from a genesis allocation (`genesis:liquidity` on devnet) is
    /// just a transfer.
    pub fn transfer(&mut self, from: &AccountId, to: &AccountId, amount: Amount) -> Result<(), LedgerError> {
        self.run(|t| t.transfer(from, to, amount))
    }

    /// Applies every transfer in order in one transaction: all or none. The
    /// error names the first transfer that failed. Each touched balance is
    /// read and written once per batch, whatever the number of transfers.
    pub fn transfer_batch(&mut self, batch: &[Transfer]) -> Result<(), LedgerError> {
        self.run(|t| t.transfers(batch))
    }

    /// Moves `amount` from `consumer`'s balance into the escrow of `session`.
    pub fn lock_escrow(&mut self, session: SessionId, consumer: &AccountId, amount: Amount) -> Result<(), LedgerError> {
        self.run(|t| t.lock_escrow(session, consumer, amount))
    }

    /// Pays the receipt's session from its escrow.
    ///
    /// Checks, in order: the receipt verifies with an acknowledgement by
    /// `acker`; the session has an escrow; it is open (else
    /// [`LedgerError::AlreadySettled`] / [`LedgerError::AlreadyRefunded`]); the
    /// receipt bills the consumer who locked it. Then charges
    /// `min(receipt.amount, escrow)` ([`crate::rules::settle`], no extra;
    /// apply a [`LedgerOp::Settle`] to add one) — a receipt above the escrow is paid up to
    /// the escrow and the difference is recorded as `shortfall`, because the
    /// consumer only ever committed the escrow — splits the charge by the fee
    /// split in force into `payout` (provider, with the rounding remainder),
    /// `pool:checker-fees`, `pool:indexer-fees` and `treasury:protocol`,
    /// refunds the rest of the escrow to the consumer, and records the
    /// settlement with the receipt.
    ///
    /// `payout` is chosen by the caller (normally the container's node
    /// account, [`AccountId::for_node`]).
    pub fn settle(
        &mut self,
        receipt: &SignedReceipt,
        acker: &NodeId,
        payout: &AccountId,
    ) -> Result<Settled, LedgerError> {
        self.run(|t| t.settle(receipt, acker, payout, Amount::ZERO))
    }

    /// Returns the whole open escrow of `session` to its consumer (a session
    /// that failed to start or ended without a receipt). Returns the amount.
    pub fn refund(&mut self, session: SessionId) -> Result<Amount, LedgerError> {
        self.run(|t| t.refund(session))
    }

    /// Refunds the consumer of a settled session for `seconds` it paid but a
    /// failed container did not deliver (as established by the checkers).
    ///
    /// The refund is `floor((charged − extra_charged) × seconds / billed
    /// seconds)` — the share of what the consumer actually paid for the
    /// receipt's time (an extra charge paid for something else, e.g. model
    /// tokens the gateway relayed) — and is paid back by the session's
    /// payout account: from its balance, then its pending rewards, then its
    /// container stake. The fee shares already paid to the pools and the
    /// treasury are not clawed back: the provider bears them for time it did
    /// not deliver. Refused if the seconds are 0 or more than were billed, if
    /// the session's undelivered time was refunded before (once per session),
    /// or if the payout cannot cover it ([`LedgerError::InsufficientFunds`]).
    pub fn refund_undelivered(&mut self, session: SessionId, seconds: u64) -> Result<UndeliveredRefund, LedgerError> {
        self.run(|t| t.refund_undelivered(session, seconds))
    }

    /// Bonds `amount` of `account`'s balance as stake for `role`.
    pub fn stake(&mut self, account: &AccountId, role: StakeRole, amount: Amount) -> Result<(), LedgerError> {
        self.run(|t| t.stake(account, role, amount))
    }

    /// Moves `amount` of `account`'s `role` stake into unbonding, released
    /// `unbonding_secs` after `now`. Unbonding stake stays slashable.
    pub fn unstake(
        &mut self,
        account: &AccountId,
        role: StakeRole,
        amount: Amount,
        now: Timestamp,
    ) -> Result<UnbondingEntry, LedgerError> {
        self.run(|t| t.unstake(account, role, amount, now))
    }

    /// Returns to `account`'s balance every unbonding entry released at or
    /// before `now` (all roles); [`LedgerError::NothingToWithdraw`] if none.
    pub fn withdraw_unbonded(&mut self, account: &AccountId, now: Timestamp) -> Result<Amount, LedgerError> {
        self.run(|t| t.withdraw_unbonded(account, now))
    }

    /// Moves all of `account`'s pending rewards to its balance.
    pub fn claim_rewards(&mut self, account: &AccountId) -> Result<Amount, LedgerError> {
        self.run(|t| t.claim_rewards(account))
    }

    /// Pays `epoch`'s rewards from `pool:mining` and the fee pools by the rule
    /// of [`crate::rewards`], crediting pending rewards, and records every
    /// number. Refused for an epoch distributed before.
    pub fn distribute_epoch(&mut self, epoch: u64, input: &EpochInput) -> Result<EpochSummary, LedgerError> {
        self.run(|t| t.distribute_epoch(epoch, input))
    }

    /// Applies a committee-signed penalty by the rule of [`crate::slash`].
    pub fn slash(&mut self, report: &SlashReport, committee: &[NodeId]) -> Result<Slashed, LedgerError> {
        self.run(|t| t.slash(report, committee))
    }

    /// Records the committee of `epoch` ([`LedgerOp::SetCommittee`]): for an
    /// epoch after the latest recorded, with valid members
    /// ([`crate::rules::committee`]); the signatures are kept as given (a
    /// single-node ledger has no chain to count them for).
    pub fn set_committee(
        &mut self,
        epoch: u64,
        members: &[[u8; 20]],
        signatures: &[Vec<u8>],
    ) -> Result<(), LedgerError> {
        self.run(|t| t.set_committee(epoch, members, signatures))
    }

    /// Validates and records new governance parameters, in force from `now`.
    pub fn set_params(&mut self, params: &Params, now: Timestamp) -> Result<(), LedgerError> {
        self.run(|t| t.set_params(params, now))
    }

    /// Creates `n` accounts named `{prefix}{i:09}` (i from 0), each funded
    /// with `each` from `from`, in one transaction (bench set-up).
    pub(crate) fn bulk_accounts(
        &mut self,
        from: &AccountId,
        prefix: &str,
        n: u64,
        each: Amount,
    ) -> Result<(), LedgerError> {
        self.run(|t| t.bulk_accounts(from, prefix, n, each))
    }

    /// Creates an API key for `account` from 32 caller-supplied random bytes
    /// (R-SEC2) and returns it (`dci_` + 64 hex digits). Only its blake3 hash
    /// is stored; the key itself is never stored or logged. The account is
    /// created with a zero balance if it does not exist.
    pub fn create_api_key(&mut self, account: &AccountId, rng_bytes: [u8; 32]) -> Result<String, LedgerError> {
        let key = format!("{API_KEY_PREFIX}{}", hex::encode(rng_bytes));
        let hash = blake3::hash(key.as_bytes());
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).st()?;
        tx.execute("INSERT OR IGNORE INTO accounts (id, balance) VALUES (?1, '0')", [account.as_str()]).st()?;
        let added = tx
            .execute(
                "INSERT OR IGNORE INTO api_keys (hash, account) VALUES (?1, ?2)",
                params![&hash.as_bytes()[..], account.as_str()],
            )
            .st()?;
        if added == 0 {
            return Err(LedgerError::DuplicateApiKey);
        }
        tx.commit().st()?;
        Ok(key)
    }

    // ----- views -----

    /// The governance parameters in force.
    pub fn params(&self) -> Params {
        self.params
    }

    /// The fee split in force.
    pub fn fee_split(&self) -> FeeSplit {
        self.params.fees
    }

    /// Every recorded parameter set, oldest first.
    pub fn params_history(&self) -> Result<Vec<ParamsChange>, LedgerError> {
        let mut stmt = self.conn.prepare_cached("SELECT seq, set_at, params FROM params ORDER BY seq").st()?;
        let mut rows = stmt.query([]).st()?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().st()? {
            let (seq, set_at, p): (i64, i64, String) = (r.get(0).st()?, r.get(1).st()?, r.get(2).st()?);
            out.push(ParamsChange {
                seq: u64::try_from(seq).map_err(|_| corrupt("a positive sequence", seq))?,
                set_at: stored_time(set_at)?,
                params: from_json("governance parameters", &p)?,
            });
        }
        Ok(out)
    }

    /// What the schedule emits for `epoch` with the parameters in force.
    pub fn emission(&self, epoch: u64) -> Result<EpochEmission, LedgerError> {
        self.params.emission(self.mining_genesis, epoch)
    }

    /// The spendable balance of `account`; zero for an account never seen.
    pub fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        Ok(get_balance(&self.conn, account)?.unwrap_or(Amount::ZERO))
    }

    /// Everything an existing account holds.
    pub fn account(&self, account: &AccountId) -> Result<AccountView, LedgerError> {
        let balance = get_balance(&self.conn, account)?.ok_or_else(|| LedgerError::UnknownAccount(account.clone()))?;
        let sum = |sql: &str| -> Result<Amount, LedgerError> {
            let mut stmt = self.conn.prepare_cached(sql).st()?;
            let mut rows = stmt.query([account.as_str()]).st()?;
            let mut total = Amount::ZERO;
            while let Some(r) = rows.next().st()? {
                let s: String = r.get(0).st()?;
                total = total.checked_add(amount(&s)?)?;
            }
            Ok(total)
        };
        Ok(AccountView {
            balance,
            escrowed: sum("SELECT amount FROM escrows WHERE consumer = ?1 AND state = 'open'")?,
            staked: sum("SELECT amount FROM stakes WHERE account = ?1")?,
            unbonding: sum("SELECT amount FROM unbonding WHERE account = ?1")?,
            rewards: pending_of(&self.conn, account)?,
        })
    }

    /// Every account and its balance, ordered by account id.
    pub fn accounts(&self) -> Result<Vec<(AccountId, Amount)>, LedgerError> {
        let mut stmt = self.conn.prepare_cached("SELECT id, balance FROM accounts ORDER BY id").st()?;
        let mut rows = stmt.query([]).st()?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().st()? {
            let (id, bal): (String, String) = (r.get(0).st()?, r.get(1).st()?);
            out.push((account_id(id)?, amount(&bal)?));
        }
        Ok(out)
    }

    /// Stake bonded by `account` for `role`.
    pub fn staked(&self, account: &AccountId, role: StakeRole) -> Result<Amount, LedgerError> {
        stake_of(&self.conn, account, role)
    }

    fn stake_rows(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<StakeEntry>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(sql).st()?;
        let mut rows = stmt.query(args).st()?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().st()? {
            let (a, role, amt): (String, String, String) = (r.get(0).st()?, r.get(1).st()?, r.get(2).st()?);
            out.push(StakeEntry { account: account_id(a)?, role: role_of(&role)?, amount: amount(&amt)? });
        }
        Ok(out)
    }

    /// `account`'s bonded stakes, one per role it stakes for.
    pub fn stakes(&self, account: &AccountId) -> Result<Vec<StakeEntry>, LedgerError> {
        self.stake_rows("SELECT account, role, amount FROM stakes WHERE account = ?1 ORDER BY role", [account.as_str()])
    }

    /// Everyone bonded for `role` and how much, by account id (the input of
    /// stake-weighted committee selection).
    pub fn stakers(&self, role: StakeRole) -> Result<Vec<StakeEntry>, LedgerError> {
        self.stake_rows("SELECT account, role, amount FROM stakes WHERE role = ?1 ORDER BY account", [role.as_str()])
    }

    fn unbonding_rows(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<UnbondingEntry>, LedgerError> {
        let mut stmt = self.conn.prepare_cached(sql).st()?;
        let mut rows = stmt.query(args).st()?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().st()? {
            let (a, role, amt, at): (String, String, String, i64) =
                (r.get(0).st()?, r.get(1).st()?, r.get(2).st()?, r.get(3).st()?);
            out.push(UnbondingEntry {
                account: account_id(a)?,
                role: role_of(&role)?,
                amount: amount(&amt)?,
                release_at: stored_time(at)?,
            });
        }
        Ok(out)
    }

    /// `account`'s unbonding entries, earliest release first.
    pub fn unbonding(&self, account: &AccountId) -> Result<Vec<UnbondingEntry>, LedgerError> {
        self.unbonding_rows(
            "SELECT account, role, amount, release_at FROM unbonding WHERE account = ?1 ORDER BY release_at, id",
            [account.as_str()],
        )
    }

    /// `account`'s rewards credited by epochs and not claimed yet.
    pub fn pending_rewards(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        pending_of(&self.conn, account)
    }

    /// The escrow of `session`, in whatever state.
    pub fn escrow(&self, session: SessionId) -> Result<Option<EscrowView>, LedgerError> {
        get_escrow(&self.conn, session)
    }

    /// The settlement of `session`, if it was settled.
    pub fn settlement(&self, session: SessionId) -> Result<Option<SettlementRecord>, LedgerError> {
        read_settlement(&self.conn, session)
    }

    /// The latest `limit` settlements in which `account` paid (consumer) or
    /// was paid (payout), newest first.
    pub fn settlements(&self, account: &AccountId, limit: usize) -> Result<Vec<SettlementRecord>, LedgerError> {
        let sql = format!(
            "SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE consumer = ?1 OR payout = ?1 ORDER BY seq DESC LIMIT ?2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(&sql).st()?;
        let rows = stmt.query_map(params![account.as_str(), limit], settlement_row).st()?;
        rows.map(|r| r.st().and_then(RawSettlement::decode)).collect()
    }

    /// The refund of `session`'s undelivered time, if there was one.
    pub fn undelivered_refund(&self, session: SessionId) -> Result<Option<UndeliveredRefund>, LedgerError> {
        let s: Option<String> = self
            .conn
            .prepare_cached("SELECT record FROM undelivered WHERE session = ?1")
            .st()?
            .query_row([&session.0[..]], |r| r.get(0))
            .optional()
            .st()?;
        s.map(|s| from_json("an undelivered refund record", &s)).transpose()
    }

    /// The record of a distributed epoch.
    pub fn epoch(&self, epoch: u64) -> Result<Option<EpochSummary>, LedgerError> {
        let Ok(key) = i64::try_from(epoch) else { return Ok(None) };
        let s: Option<String> = self
            .conn
            .prepare_cached("SELECT summary FROM epochs WHERE epoch = ?1")
            .st()?
            .query_row([key], |r| r.get(0))
            .optional()
            .st()?;
        s.map(|s| from_json("an epoch summary", &s)).transpose()
    }

    /// The committee recorded for `epoch` (members' chain signers), if any.
    pub fn committee(&self, epoch: u64) -> Result<Option<Vec<[u8; 20]>>, LedgerError> {
        let Ok(key) = i64::try_from(epoch) else { return Ok(None) };
        let s: Option<String> = self
            .conn
            .prepare_cached("SELECT members FROM committees WHERE epoch = ?1")
            .st()?
            .query_row([key], |r| r.get(0))
            .optional()
            .st()?;
        let Some(s) = s else { return Ok(None) };
        let list: Vec<String> = from_json("a committee's members", &s)?;
        list.iter()
            .map(|a| {
                let mut out = [0u8; 20];
                hex::decode_to_slice(a.trim_start_matches("0x"), &mut out)
                    .map_err(|_| corrupt("a member's 20-byte address", a))?;
                Ok(out)
            })
            .collect::<Result<Vec<_>, LedgerError>>()
            .map(Some)
    }

    /// The latest distributed epoch, if any.
    pub fn last_epoch(&self) -> Result<Option<u64>, LedgerError> {
        let e: Option<i64> = self.conn.query_row("SELECT max(epoch) FROM epochs", [], |r| r.get(0)).st()?;
        e.map(|e| u64::try_from(e).map_err(|_| corrupt("a non-negative epoch", e))).transpose()
    }

    /// How `account`'s reward for `epoch` was computed: the epoch's emission
    /// and role totals, and the account's weight and amounts per role (no
    /// lines if it was not in the epoch's input).
    pub fn reward_breakdown(&self, epoch: u64, account: &AccountId) -> Result<RewardExplanation, LedgerError> {
        let summary = self.epoch(epoch)?.ok_or(LedgerError::EpochNotDistributed(epoch))?;
        let key = i64::try_from(epoch).map_err(|_| LedgerError::EpochNotDistributed(epoch))?;
        let mut stmt =
            self.conn.prepare_cached("SELECT line FROM epoch_rewards WHERE epoch = ?1 AND account = ?2").st()?;
        let mut rows = stmt.query(params![key, account.as_str()]).st()?;
        let mut lines: Vec<RewardLine> = Vec::new();
        while let Some(r) = rows.next().st()? {
            let s: String = r.get(0).st()?;
            lines.push(from_json("a reward line", &s)?);
        }
        lines.sort_by_key(|l| l.role);
        let total = lines.iter().try_fold(Amount::ZERO, |s, l| s.checked_add(l.mining)?.checked_add(l.fees))?;
        Ok(RewardExplanation { account: account.clone(), summary, lines, total })
    }

    /// `account`'s latest `limit` reward lines, newest epoch first.
    pub fn reward_history(&self, account: &AccountId, limit: usize) -> Result<Vec<RewardEntry>, LedgerError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT epoch, line FROM epoch_rewards WHERE account = ?1 ORDER BY epoch DESC, role LIMIT ?2",
            )
            .st()?;
        let mut rows = stmt.query(params![account.as_str(), limit]).st()?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().st()? {
            let (epoch, s): (i64, String) = (r.get(0).st()?, r.get(1).st()?);
            out.push(RewardEntry {
                epoch: u64::try_from(epoch).map_err(|_| corrupt("a non-negative epoch", epoch))?,
                line: from_json("a reward line", &s)?,
            });
        }
        Ok(out)
    }

    /// Slashes applied to `offender`, oldest first.
    pub fn slashes(&self, offender: &AccountId) -> Result<Vec<Slashed>, LedgerError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT seq, record FROM slashes WHERE offender = ?1 ORDER BY seq").st()?;
        let mut rows = stmt.query([offender.as_str()]).st()?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().st()? {
            let (seq, s): (i64, String) = (r.get(0).st()?, r.get(1).st()?);
            let mut rec: Slashed = from_json("a slash record", &s)?;
            rec.seq = u64::try_from(seq).map_err(|_| corrupt("a positive sequence", seq))?;
            out.push(rec);
        }
        Ok(out)
    }

    /// The account an API key is bound to; `None` for a key that is malformed
    /// or unknown.
    pub fn account_for_api_key(&self, key: &str) -> Result<Option<AccountId>, LedgerError> {
        let well_formed = key
            .strip_prefix(API_KEY_PREFIX)
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        if !well_formed {
            return Ok(None);
        }
        let hash = blake3::hash(key.as_bytes());
        let account: Option<String> = self
            .conn
            .prepare_cached("SELECT account FROM api_keys WHERE hash = ?1")
            .st()?
            .query_row([&hash.as_bytes()[..]], |r| r.get(0))
            .optional()
            .st()?;
        account.map(account_id).transpose()
    }

    /// Recomputes the supply from every balance, open escrow, stake,
    /// unbonding entry and pending reward (R-LG5): one sequential read of
    /// each table.
    pub fn check_invariant(&self) -> Result<SupplyReport, LedgerError> {
        let report = supply(&self.conn)?;
        report.check()?;
        Ok(report)
    }

    /// Everything that holds value or records a payment (see
    /// [`LedgerSnapshot`]).
    pub fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        let mut s = LedgerSnapshot { accounts: self.accounts()?, ..LedgerSnapshot::default() };
        s.stakes = self.stake_rows("SELECT account, role, amount FROM stakes ORDER BY account, role", [])?;
        s.unbonding = self.unbonding_rows(
            "SELECT account, role, amount, release_at FROM unbonding ORDER BY account, release_at, role, amount",
            [],
        )?;
        let mut stmt = self.conn.prepare_cached("SELECT account, amount FROM pending_rewards ORDER BY account").st()?;
        let mut rows = stmt.query([]).st()?;
        while let Some(r) = rows.next().st()? {
            let (a, amt): (String, String) = (r.get(0).st()?, r.get(1).st()?);
            s.rewards.push((account_id(a)?, amount(&amt)?));
        }
        let mut stmt =
            self.conn.prepare_cached("SELECT session, consumer, amount, state FROM escrows ORDER BY session").st()?;
        let mut rows = stmt.query([]).st()?;
        while let Some(r) = rows.next().st()? {
            let (sid, c, amt, st): (Vec<u8>, String, String, String) =
                (r.get(0).st()?, r.get(1).st()?, r.get(2).st()?, r.get(3).st()?);
            s.escrows.push(EscrowView {
                session: session_id(sid)?,
                consumer: account_id(c)?,
                amount: amount(&amt)?,
                state: escrow_state(&st)?,
            });
        }
        let mut stmt = self.conn.prepare_cached("SELECT epoch FROM epochs ORDER BY epoch").st()?;
        let mut rows = stmt.query([]).st()?;
        while let Some(r) = rows.next().st()? {
            let e: i64 = r.get(0).st()?;
            s.epochs.push(u64::try_from(e).map_err(|_| corrupt("a non-negative epoch", e))?);
        }
        s.settlements = count(&self.conn, "settlements")?;
        s.undelivered_refunds = count(&self.conn, "undelivered")?;
        s.slashes = count(&self.conn, "slashes")?;
        s.params_changes = count(&self.conn, "params")?;
        Ok(s)
    }
}

impl Settlement for EmbeddedLedger {
    fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        EmbeddedLedger::balance(self, account)
    }

    fn account(&self, account: &AccountId) -> Result<AccountView, LedgerError> {
        EmbeddedLedger::account(self, account)
    }

    fn staked(&self, account: &AccountId, role: StakeRole) -> Result<Amount, LedgerError> {
        EmbeddedLedger::staked(self, account, role)
    }

    fn unbonding(&self, account: &AccountId) -> Result<Vec<UnbondingEntry>, LedgerError> {
        EmbeddedLedger::unbonding(self, account)
    }

    fn params(&self) -> Result<Params, LedgerError> {
        Ok(EmbeddedLedger::params(self))
    }

    fn reward_breakdown(&self, epoch: u64, account: &AccountId) -> Result<RewardExplanation, LedgerError> {
        EmbeddedLedger::reward_breakdown(self, epoch, account)
    }

    fn check_invariant(&self) -> Result<SupplyReport, LedgerError> {
        EmbeddedLedger::check_invariant(self)
    }

    fn apply(&mut self, ops: &[LedgerOp]) -> Result<Vec<OpOutcome>, LedgerError> {
        EmbeddedLedger::apply(self, ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_in_memory_applies_genesis() {
        let l = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
        let report = l.check_invariant().unwrap();
        assert_eq!(report.balances, TOTAL_SUPPLY);
        assert_eq!(report.accounts, 5);
        assert_eq!(l.balance(&accounts::liquidity()).unwrap(), Amount::ath(42_000_000_000 / 25));
        assert_eq!(l.genesis().unwrap(), Genesis::default());
        assert_eq!(l.params(), Params::default());
        assert_eq!(l.params_history().unwrap().len(), 1);
    }

    #[test]
    fn corrupt_amounts_are_storage_errors_not_panics() {
        let l = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
        l.conn.execute("UPDATE accounts SET balance = 'x' WHERE id = 'pool:mining'", []).unwrap();
        let e = l.check_invariant().unwrap_err();
        assert!(matches!(e, LedgerError::Storage(ref m) if m.contains("corrupt")), "{e}");
    }

    #[test]
    fn a_broken_invariant_is_reported() {
        let mut l = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
        l.conn.execute("UPDATE accounts SET balance = '1' WHERE id = 'pool:mining'", []).unwrap();
        assert!(matches!(l.check_invariant(), Err(LedgerError::Invariant { .. })));
        // In debug builds a mutation on a broken ledger is refused too.
        let r = l.transfer(&accounts::liquidity(), &AccountId::new("consumer:a").unwrap(), Amount(1));
        if cfg!(debug_assertions) {
            assert!(matches!(r, Err(LedgerError::Invariant { .. })), "{r:?}");
            assert_eq!(l.balance(&AccountId::new("consumer:a").unwrap()).unwrap(), Amount::ZERO);
        }
    }

    #[test]
    fn stakes_and_rewards_count_in_the_invariant() {
        let mut l = EmbeddedLedger::open_in_memory(&Genesis::default()).unwrap();
        let a = AccountId::new("node:a").unwrap();
        l.transfer(&accounts::liquidity(), &a, Amount::ath(10)).unwrap();
        l.stake(&a, StakeRole::Container, Amount::ath(4)).unwrap();
        l.unstake(&a, StakeRole::Container, Amount::ath(1), Timestamp(0)).unwrap();
        let r = l.check_invariant().unwrap();
        assert_eq!((r.staked, r.unbonding), (Amount::ath(3), Amount::ath(1)));
        // Stake that vanishes from its table breaks the invariant.
        l.conn.execute("DELETE FROM stakes", []).unwrap();
        assert!(matches!(l.check_invariant(), Err(LedgerError::Invariant { .. })));
    }

    /// A version 4 file (stakes limited to containers and checkers) keeps
    /// its stakes and unbonding entries and takes indexer stake after the
    /// upgrade.
    #[test]
    fn a_version_4_file_takes_indexer_stake_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.db");
        let a = AccountId::new("node:a").unwrap();
        let mut l = EmbeddedLedger::open(&path, &Genesis::default()).unwrap();
        l.transfer(&accounts::liquidity(), &a, Amount::ath(10)).unwrap();
        l.stake(&a, StakeRole::Checker, Amount::ath(4)).unwrap();
        l.unstake(&a, StakeRole::Checker, Amount::ath(1), Timestamp(0)).unwrap();
        let old = |t: &str| {
            let sql: String = l
                .conn
                .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", [t], |r| r.get(0))
                .unwrap();
            sql.replace("'container', 'checker', 'indexer'", "'container', 'checker'")
        };
        let (stakes, unbonding) = (old("stakes"), old("unbonding"));
        l.conn
            .execute_batch(&format!(
                "UPDATE meta SET value = '4' WHERE key = 'schema';
                 ALTER TABLE stakes RENAME TO s; {stakes}; INSERT INTO stakes SELECT * FROM s; DROP TABLE s;
                 ALTER TABLE unbonding RENAME TO u; {unbonding}; INSERT INTO unbonding SELECT * FROM u; DROP TABLE u;"
            ))
            .unwrap();
        assert!(l.stake(&a, StakeRole::Indexer, Amount::ath(1)).is_err(), "the old CHECK refuses the role");
        drop(l);
        let mut l = EmbeddedLedger::open(&path, &Genesis::default()).unwrap();
        assert_eq!(l.staked(&a, StakeRole::Checker).unwrap(), Amount::ath(3));
        assert_eq!(l.unbonding(&a).unwrap().len(), 1);
        l.stake(&a, StakeRole::Indexer, Amount::ath(2)).unwrap();
        assert_eq!(l.staked(&a, StakeRole::Indexer).unwrap(), Amount::ath(2));
        let index: i64 = l
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'unbonding_by_account'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1, "the index is back");
        l.check_invariant().unwrap();
    }

    #[test]
    fn a_version_1_file_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let l = EmbeddedLedger::open(&path, &Genesis::default()).unwrap();
        l.conn
            .execute_batch(
                "UPDATE meta SET value = '1' WHERE key = 'schema'; DROP TABLE params; DROP TABLE stakes; \
                 DROP TABLE unbonding; DROP TABLE pending_rewards;",
            )
            .unwrap();
        drop(l);
        let l = EmbeddedLedger::open(&path, &Genesis::default()).unwrap();
        assert_eq!(l.params(), Params::default());
        let v: String = l.conn.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        l.check_invariant().unwrap();
    }
}
