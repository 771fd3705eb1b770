//! Small SQLite stores for node state that must survive a restart: the
//! indexer's registry of containers and the gateway's sessions. Each is one
//! table of JSON records keyed by id; every write is its own transaction.
//! (Money is not here: it lives in the ledger.)

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A stored record that does not decode: its id, and why.
pub type Unreadable = (String, String);

/// A durable map from id to a JSON record, with a secondary `owner` column
/// for listing.
pub struct RecordStore {
    conn: Mutex<Connection>,
    table: &'static str,
}

impl RecordStore {
    /// Opens (creating if needed) the store at `path` with one table.
    pub fn open(path: &Path, table: &'static str) -> anyhow::Result<Self> {
        let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::init(conn, table)
    }

    /// An in-memory store (tests).
    pub fn in_memory(table: &'static str) -> anyhow::Result<Self> {
        Self::init(Connection::open_in_memory()?, table)
    }

    fn init(conn: Connection, table: &'static str) -> anyhow::Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, owner TEXT NOT NULL, updated INTEGER NOT NULL, record TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS {table}_owner ON {table}(owner, updated);"
        ))?;
        Ok(RecordStore { conn: Mutex::new(conn), table })
    }

    /// Inserts or replaces a record.
    pub fn put<T: Serialize>(&self, id: &str, owner: &str, updated: u64, record: &T) -> anyhow::Result<()> {
        let json = serde_json::to_string(record)?;
        self.conn.lock().expect("store lock").execute(
            &format!("INSERT OR REPLACE INTO {} (id, owner, updated, record) VALUES (?1, ?2, ?3, ?4)", self.table),
            params![id, owner, updated as i64, json],
        )?;
        Ok(())
    }

    /// Deletes a record (nothing if there is none).
    pub fn delete(&self, id: &str) -> anyhow::Result<()> {
        self.conn
            .lock()
            .expect("store lock")
            .execute(&format!("DELETE FROM {} WHERE id = ?1", self.table), params![id])?;
        Ok(())
    }

    /// One record.
    pub fn get<T: DeserializeOwned>(&self, id: &str) -> anyhow::Result<Option<T>> {
        let conn = self.conn.lock().expect("store lock");
        let json: Option<String> = conn
            .query_row(&format!("SELECT record FROM {} WHERE id = ?1", self.table), params![id], |r| r.get(0))
            .optional()?;
        json.map(|j| serde_json::from_str(&j).context("decoding stored record")).transpose()
    }

    /// Every record, or those of one owner, newest first.
    pub fn list<T: DeserializeOwned>(&self, owner: Option<&str>) -> anyhow::Result<Vec<T>> {
        self.rows(owner)?
            .iter()
            .map(|(id, j)| serde_json::from_str(j).with_context(|| format!("decoding stored record {id}")))
            .collect()
    }

    /// Like [`RecordStore::list`], but a record that does not decode (written
    /// by another version) is skipped and reported, not fatal: a node never
    /// refuses to start over one unreadable record, and loses none (it
    /// stays in the table).
    pub fn list_readable<T: DeserializeOwned>(&self, owner: Option<&str>) -> anyhow::Result<(Vec<T>, Vec<Unreadable>)> {
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for (id, j) in self.rows(owner)? {
            match serde_json::from_str(&j) {
                Ok(r) => good.push(r),
                Err(e) => bad.push((id, e.to_string())),
            }
        }
        Ok((good, bad))
    }

    fn rows(&self, owner: Option<&str>) -> anyhow::Result<Vec<(String, String)>> {
        let conn = self.conn.lock().expect("store lock");
        let sql = match owner {
            Some(_) => format!("SELECT id, record FROM {} WHERE owner = ?1 ORDER BY updated DESC", self.table),
            None => format!("SELECT id, record FROM {} ORDER BY updated DESC", self.table),
        };
        let mut stmt = conn.prepare(&sql)?;
        let rows = match owner {
            Some(o) => stmt.query_map(params![o], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?,
            None => stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?,
        };
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = RecordStore::open(&path, "things").unwrap();
            s.put("a", "alice", 1, &vec![1, 2]).unwrap();
            s.put("b", "bob", 2, &vec![3]).unwrap();
            s.put("a", "alice", 3, &vec![4]).unwrap();
        }
        let s = RecordStore::open(&path, "things").unwrap();
        assert_eq!(s.get::<Vec<i32>>("a").unwrap(), Some(vec![4]));
        assert_eq!(s.list::<Vec<i32>>(Some("alice")).unwrap(), vec![vec![4]]);
        assert_eq!(s.list::<Vec<i32>>(None).unwrap().len(), 2);
        assert_eq!(s.get::<Vec<i32>>("zz").unwrap(), None);
        s.delete("b").unwrap();
        s.delete("b").unwrap();
        assert_eq!(s.get::<Vec<i32>>("b").unwrap(), None);
        // A record of another shape is reported, not fatal.
        s.put("c", "alice", 4, &"not a list").unwrap();
        assert!(s.list::<Vec<i32>>(None).is_err());
        let (good, bad) = s.list_readable::<Vec<i32>>(None).unwrap();
        assert_eq!(good, vec![vec![4]]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "c");
    }
}
