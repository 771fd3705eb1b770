//! The embedded backend: one SQLite file, one writer (R-LG6 `embedded`).
//!
//! Durability: the file is in WAL mode with `synchronous=FULL`, so a call that
//! returned `Ok` survives a crash or power loss, not just a process exit
//! (`NORMAL` could lose the last commits on power loss; money is worth the
//! extra fsync). Throughput comes from batching ([`EmbeddedLedger::transfer_batch`]),
//! not from weaker durability.
//!
//! Every operation runs in one `BEGIN IMMEDIATE` transaction; an error drops
//! the transaction, so nothing changes. In debug builds the supply invariant
//! is recomputed inside the transaction before it commits, and a violation
//! aborts the operation with [`LedgerError::Invariant`].
//!
//! Amounts are stored as decimal text of base units (SQLite integers are i64,
//! too small for 42e9 × 10^18) and summed in Rust with checked arithmetic.

use dci_model::{AccountId, Amount, NodeId, SessionId, money::TOTAL_SUPPLY};
use dci_proto::SignedReceipt;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::time::Duration;

use crate::accounts;
use crate::{
    AccountView, EscrowState, EscrowView, FeeSplit, Genesis, LedgerError, Settled, Settlement, SettlementRecord,
    SupplyReport, Transfer,
};

const SCHEMA_VERSION: &str = "1";

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
    receipt   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS settlements_by_consumer ON settlements (consumer, seq);
CREATE INDEX IF NOT EXISTS settlements_by_payout ON settlements (payout, seq);
CREATE TABLE IF NOT EXISTS api_keys (
    hash    BLOB PRIMARY KEY,
    account TEXT NOT NULL
) WITHOUT ROWID;
";

/// Prefix of every API key.
const API_KEY_PREFIX: &str = "dci_";

/// The single-node ledger on SQLite. See the module docs for durability.
pub struct EmbeddedLedger {
    conn: Connection,
    fees: FeeSplit,
    location: String,
}

impl std::fmt::Debug for EmbeddedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLedger").field("location", &self.location).field("fees", &self.fees).finish()
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

fn text(a: Amount) -> String {
    a.0.to_string()
}

fn state_text(s: EscrowState) -> &'static str {
    match s {
        EscrowState::Open => "open",
        EscrowState::Settled => "settled",
        EscrowState::Refunded => "refunded",
    }
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

fn set_balance(c: &Connection, account: &AccountId, value: Amount) -> Result<(), LedgerError> {
    c.prepare_cached(
        "INSERT INTO accounts (id, balance) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET balance = excluded.balance",
    )
    .st()?
    .execute(params![account.as_str(), text(value)])
    .st()?;
    Ok(())
}

fn credit(c: &Connection, account: &AccountId, value: Amount) -> Result<(), LedgerError> {
    if value.is_zero() {
        return Ok(());
    }
    let have = get_balance(c, account)?.unwrap_or(Amount::ZERO);
    set_balance(c, account, have.checked_add(value)?)
}

fn debit(c: &Connection, account: &AccountId, value: Amount) -> Result<(), LedgerError> {
    let have = get_balance(c, account)?.ok_or_else(|| LedgerError::UnknownAccount(account.clone()))?;
    let left = have.checked_sub(value).map_err(|_| LedgerError::InsufficientFunds {
        account: account.clone(),
        have,
        need: value,
    })?;
    set_balance(c, account, left)
}

fn transfer_in(c: &Connection, from: &AccountId, to: &AccountId, value: Amount) -> Result<(), LedgerError> {
    if value.is_zero() {
        return Err(LedgerError::ZeroAmount);
    }
    if from == to {
        return Err(LedgerError::SameAccount(from.clone()));
    }
    debit(c, from, value)?;
    credit(c, to, value)
}

fn get_escrow(c: &Connection, session: SessionId) -> Result<Option<EscrowView>, LedgerError> {
    let row: Option<(String, String, String)> = c
        .prepare_cached("SELECT consumer, amount, state FROM escrows WHERE session = ?1")
        .st()?
        .query_row([&session.0[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .st()?;
    let Some((consumer, amt, state)) = row else { return Ok(None) };
    let state = match state.as_str() {
        "open" => EscrowState::Open,
        "settled" => EscrowState::Settled,
        "refunded" => EscrowState::Refunded,
        other => return Err(corrupt("an escrow state", format!("{other:?}"))),
    };
    Ok(Some(EscrowView { session, consumer: account_id(consumer)?, amount: amount(&amt)?, state }))
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

fn close_escrow(c: &Connection, session: SessionId, state: EscrowState) -> Result<(), LedgerError> {
    c.prepare_cached("UPDATE escrows SET state = ?2 WHERE session = ?1 AND state = 'open'")
        .st()?
        .execute(params![&session.0[..], state_text(state)])
        .st()?;
    Ok(())
}

fn supply(c: &Connection) -> Result<SupplyReport, LedgerError> {
    let mut report = SupplyReport {
        expected: TOTAL_SUPPLY,
        balances: Amount::ZERO,
        escrowed: Amount::ZERO,
        accounts: 0,
        open_escrows: 0,
    };
    let mut stmt = c.prepare_cached("SELECT balance FROM accounts").st()?;
    let mut rows = stmt.query([]).st()?;
    while let Some(r) = rows.next().st()? {
        let s: String = r.get(0).st()?;
        report.balances = report.balances.checked_add(amount(&s)?)?;
        report.accounts += 1;
    }
    let mut stmt = c.prepare_cached("SELECT amount FROM escrows WHERE state = 'open'").st()?;
    let mut rows = stmt.query([]).st()?;
    while let Some(r) = rows.next().st()? {
        let s: String = r.get(0).st()?;
        report.escrowed = report.escrowed.checked_add(amount(&s)?)?;
        report.open_escrows += 1;
    }
    Ok(report)
}

fn settlement_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawSettlement> {
    Ok(RawSettlement {
        seq: r.get(0)?,
        session: r.get(1)?,
        consumer: r.get(2)?,
        payout: r.get(3)?,
        container: r.get(4)?,
        acker: r.get(5)?,
        amounts: [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?],
        receipt: r.get(13)?,
    })
}

const SETTLEMENT_COLUMNS: &str = "seq, session, consumer, payout, container, acker, charged, provider, checkers, \
                                  indexers, treasury, refunded, shortfall, receipt";

struct RawSettlement {
    seq: i64,
    session: Vec<u8>,
    consumer: String,
    payout: String,
    container: Vec<u8>,
    acker: Vec<u8>,
    amounts: [String; 7],
    receipt: String,
}

impl RawSettlement {
    fn decode(self) -> Result<SettlementRecord, LedgerError> {
        let [charged, provider, checkers, indexers, treasury, refunded, shortfall] = &self.amounts;
        let receipt: SignedReceipt =
            serde_json::from_str(&self.receipt).map_err(|e| corrupt("a receipt in JSON", e))?;
        Ok(SettlementRecord {
            seq: u64::try_from(self.seq).map_err(|_| corrupt("a positive sequence number", self.seq))?,
            settled: Settled {
                session: session_id(self.session)?,
                charged: amount(charged)?,
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
        conn.busy_timeout(Duration::from_secs(5)).st()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).st()?;
        tx.execute_batch(SCHEMA).st()?;
        let meta = |key: &str| -> Result<Option<String>, LedgerError> {
            tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().st()
        };
        match meta("schema")? {
            None => {
                tx.execute("INSERT INTO meta (key, value) VALUES ('schema', ?1)", [SCHEMA_VERSION]).st()?;
            }
            Some(v) if v == SCHEMA_VERSION => {}
            Some(v) => {
                return Err(LedgerError::Storage(format!(
                    "expected ledger schema version {SCHEMA_VERSION}, found {v}"
                )));
            }
        }
        match meta("genesis")? {
            Some(stored) => {
                let stored: Genesis = serde_json::from_str(&stored).map_err(|e| corrupt("a genesis record", e))?;
                if &stored != genesis {
                    return Err(LedgerError::GenesisMismatch {
                        stored: stored.to_string(),
                        given: genesis.to_string(),
                    });
                }
                tracing::debug!(location, "opened ledger");
            }
            None => {
                let existing: i64 = tx.query_row("SELECT count(*) FROM accounts", [], |r| r.get(0)).st()?;
                if existing != 0 {
                    return Err(corrupt("no accounts in a ledger without a genesis record", existing));
                }
                for (account, value) in genesis.amounts()? {
                    credit(&tx, &account, value)?;
                }
                let json = serde_json::to_string(genesis).map_err(|e| LedgerError::InvalidGenesis(e.to_string()))?;
                tx.execute("INSERT INTO meta (key, value) VALUES ('genesis', ?1)", [json]).st()?;
                tracing::info!(location, %genesis, "applied genesis");
            }
        }
        supply(&tx)?.check()?;
        tx.commit().st()?;
        Ok(EmbeddedLedger { conn, fees: FeeSplit::default(), location })
    }

    /// Uses `fees` to split every later settlement (default
    /// [`FeeSplit::default`]). Past settlements keep their recorded shares.
    pub fn with_fee_split(mut self, fees: FeeSplit) -> EmbeddedLedger {
        self.fees = fees;
        self
    }

    /// The fee split in force.
    pub fn fee_split(&self) -> FeeSplit {
        self.fees
    }

    /// The genesis this ledger was created with.
    pub fn genesis(&self) -> Result<Genesis, LedgerError> {
        let s: String = self.conn.query_row("SELECT value FROM meta WHERE key = 'genesis'", [], |r| r.get(0)).st()?;
        serde_json::from_str(&s).map_err(|e| corrupt("a genesis record", e))
    }

    /// Runs `f` in one immediate transaction; commits only if `f` succeeds
    /// (and, in debug builds, if the supply invariant still holds).
    fn write<T>(&mut self, f: impl FnOnce(&Connection, &FeeSplit) -> Result<T, LedgerError>) -> Result<T, LedgerError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).st()?;
        let out = f(&tx, &self.fees)?;
        if cfg!(debug_assertions) {
            supply(&tx)?.check()?;
        }
        tx.commit().st()?;
        Ok(out)
    }

    /// The spendable balance of `account`; zero for an account never seen.
    pub fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        Ok(get_balance(&self.conn, account)?.unwrap_or(Amount::ZERO))
    }

    /// Balance and open escrows of an existing account.
    pub fn account(&self, account: &AccountId) -> Result<AccountView, LedgerError> {
        let balance = get_balance(&self.conn, account)?.ok_or_else(|| LedgerError::UnknownAccount(account.clone()))?;
        let mut escrowed = Amount::ZERO;
        let mut stmt =
            self.conn.prepare_cached("SELECT amount FROM escrows WHERE consumer = ?1 AND state = 'open'").st()?;
        let mut rows = stmt.query([account.as_str()]).st()?;
        while let Some(r) = rows.next().st()? {
            let s: String = r.get(0).st()?;
            escrowed = escrowed.checked_add(amount(&s)?)?;
        }
        Ok(AccountView { balance, escrowed })
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

    /// The escrow of `session`, in whatever state.
    pub fn escrow(&self, session: SessionId) -> Result<Option<EscrowView>, LedgerError> {
        get_escrow(&self.conn, session)
    }

    /// Moves `amount` from `from` to `to`, creating `to` if needed. Funding a
    /// consumer from a genesis allocation (`genesis:liquidity` on devnet) is
    /// just a transfer.
    pub fn transfer(&mut self, from: &AccountId, to: &AccountId, amount: Amount) -> Result<(), LedgerError> {
        self.write(|c, _| transfer_in(c, from, to, amount))
    }

    /// Applies every transfer in order in one transaction: all or none. The
    /// error names the first transfer that failed.
    pub fn transfer_batch(&mut self, batch: &[Transfer]) -> Result<(), LedgerError> {
        self.write(|c, _| {
            for (index, t) in batch.iter().enumerate() {
                transfer_in(c, &t.from, &t.to, t.amount)
                    .map_err(|e| LedgerError::Batch { index, source: Box::new(e) })?;
            }
            Ok(())
        })
    }

    /// Moves `amount` from `consumer`'s balance into the escrow of `session`.
    pub fn lock_escrow(&mut self, session: SessionId, consumer: &AccountId, amount: Amount) -> Result<(), LedgerError> {
        self.write(|c, _| {
            if amount.is_zero() {
                return Err(LedgerError::ZeroAmount);
            }
            if get_escrow(c, session)?.is_some() {
                return Err(LedgerError::EscrowExists(session));
            }
            debit(c, consumer, amount)?;
            c.prepare_cached("INSERT INTO escrows (session, consumer, amount, state) VALUES (?1, ?2, ?3, 'open')")
                .st()?
                .execute(params![&session.0[..], consumer.as_str(), text(amount)])
                .st()?;
            Ok(())
        })
    }

    /// Pays the receipt's session from its escrow.
    ///
    /// Checks, in order: the receipt verifies with an acknowledgement by
    /// `acker`; the session has an escrow; it is open (else
    /// [`LedgerError::AlreadySettled`] / [`LedgerError::AlreadyRefunded`]); the
    /// receipt bills the consumer who locked it. Then charges
    /// `min(receipt.amount, escrow)` — a receipt above the escrow is paid up to
    /// the escrow and the difference is recorded as `shortfall`, because the
    /// consumer only ever committed the escrow — splits the charge by the fee
    /// split into `payout` (provider, with the rounding remainder),
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
        receipt.verify(acker)?;
        let json = serde_json::to_string(receipt).map_err(|e| LedgerError::Storage(e.to_string()))?;
        self.write(|c, fees| {
            let r = &receipt.receipt;
            let escrow = open_escrow(c, r.session)?;
            if escrow.consumer != r.consumer {
                return Err(LedgerError::ConsumerMismatch {
                    session: r.session,
                    escrow: escrow.consumer,
                    receipt: r.consumer.clone(),
                });
            }
            let charged = r.amount.min(escrow.amount);
            let shortfall = r.amount.checked_sub(charged)?;
            let refunded = escrow.amount.checked_sub(charged)?;
            let split = fees.split(charged)?;
            credit(c, payout, split.provider)?;
            credit(c, &accounts::checker_fees(), split.checkers)?;
            credit(c, &accounts::indexer_fees(), split.indexers)?;
            credit(c, &accounts::treasury(), split.treasury)?;
            credit(c, &escrow.consumer, refunded)?;
            close_escrow(c, r.session, EscrowState::Settled)?;
            let settled = Settled {
                session: r.session,
                charged,
                provider: split.provider,
                checkers: split.checkers,
                indexers: split.indexers,
                treasury: split.treasury,
                refunded,
                shortfall,
            };
            c.prepare_cached(
                "INSERT INTO settlements (session, consumer, payout, container, acker, charged, provider, checkers, \
                 indexers, treasury, refunded, shortfall, receipt) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )
            .st()?
            .execute(params![
                &r.session.0[..],
                r.consumer.as_str(),
                payout.as_str(),
                &r.container.0[..],
                &acker.0[..],
                text(charged),
                text(split.provider),
                text(split.checkers),
                text(split.indexers),
                text(split.treasury),
                text(refunded),
                text(shortfall),
                json,
            ])
            .st()?;
            if !shortfall.is_zero() {
                tracing::warn!(session = %r.session, %shortfall, "receipt exceeds escrow; charged the escrow");
            }
            Ok(settled)
        })
    }

    /// Returns the whole open escrow of `session` to its consumer (a session
    /// that failed to start or ended without a receipt). Returns the amount.
    pub fn refund(&mut self, session: SessionId) -> Result<Amount, LedgerError> {
        self.write(|c, _| {
            let escrow = open_escrow(c, session)?;
            credit(c, &escrow.consumer, escrow.amount)?;
            close_escrow(c, session, EscrowState::Refunded)?;
            Ok(escrow.amount)
        })
    }

    /// The settlement of `session`, if it was settled.
    pub fn settlement(&self, session: SessionId) -> Result<Option<SettlementRecord>, LedgerError> {
        let sql = format!("SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE session = ?1");
        let raw = self.conn.prepare_cached(&sql).st()?.query_row([&session.0[..]], settlement_row).optional().st()?;
        raw.map(RawSettlement::decode).transpose()
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

    /// Creates an API key for `account` from 32 caller-supplied random bytes
    /// (R-SEC2) and returns it (`dci_` + 64 hex digits). Only its blake3 hash
    /// is stored; the key itself is never stored or logged. The account is
    /// created with a zero balance if it does not exist.
    pub fn create_api_key(&mut self, account: &AccountId, rng_bytes: [u8; 32]) -> Result<String, LedgerError> {
        let key = format!("{API_KEY_PREFIX}{}", hex::encode(rng_bytes));
        let hash = blake3::hash(key.as_bytes());
        self.write(|c, _| {
            c.execute("INSERT OR IGNORE INTO accounts (id, balance) VALUES (?1, '0')", [account.as_str()]).st()?;
            let added = c
                .execute(
                    "INSERT OR IGNORE INTO api_keys (hash, account) VALUES (?1, ?2)",
                    params![&hash.as_bytes()[..], account.as_str()],
                )
                .st()?;
            if added == 0 {
                return Err(LedgerError::DuplicateApiKey);
            }
            Ok(())
        })?;
        Ok(key)
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

    /// Recomputes the supply from every account and open escrow (R-LG5).
    pub fn check_invariant(&self) -> Result<SupplyReport, LedgerError> {
        let report = supply(&self.conn)?;
        report.check()?;
        Ok(report)
    }
}

impl Settlement for EmbeddedLedger {
    fn balance(&self, account: &AccountId) -> Result<Amount, LedgerError> {
        EmbeddedLedger::balance(self, account)
    }

    fn account(&self, account: &AccountId) -> Result<AccountView, LedgerError> {
        EmbeddedLedger::account(self, account)
    }

    fn transfer(&mut self, from: &AccountId, to: &AccountId, amount: Amount) -> Result<(), LedgerError> {
        EmbeddedLedger::transfer(self, from, to, amount)
    }

    fn lock_escrow(&mut self, session: SessionId, consumer: &AccountId, amount: Amount) -> Result<(), LedgerError> {
        EmbeddedLedger::lock_escrow(self, session, consumer, amount)
    }

    fn settle(&mut self, receipt: &SignedReceipt, acker: &NodeId, payout: &AccountId) -> Result<Settled, LedgerError> {
        EmbeddedLedger::settle(self, receipt, acker, payout)
    }

    fn refund(&mut self, session: SessionId) -> Result<Amount, LedgerError> {
        EmbeddedLedger::refund(self, session)
    }

    fn check_invariant(&self) -> Result<SupplyReport, LedgerError> {
        EmbeddedLedger::check_invariant(self)
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
}
