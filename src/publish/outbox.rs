//! The durable outbox behind the Kafka sink: one redb table of undelivered events keyed by an increasing
//! sequence number, so reading it in key order gives the order the pipeline emitted them in (and so each
//! stream's order) across restarts. An event is in it from `append` (committed to disk before it returns)
//! until `remove` after its delivery report.
//!
//! A second table keeps each episode that has appeared and not yet disappeared (its latest event), written in
//! the same commit as the event: a process killed mid-episode leaves them there, and the next start closes
//! them (`durable::close_orphans`), so no consumer is left with an episode that never ends.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};

use super::PublishError;

/// seq -> (persisted at, unix ms; Kafka key; JSON payload).
const EVENTS: TableDefinition<u64, (u64, &str, &[u8])> = TableDefinition::new("events");

/// episode_id -> the episode's latest event (JSON payload), while it is open.
const OPEN: TableDefinition<&str, &[u8]> = TableDefinition::new("open_episodes");

/// What an appended event does to its episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Episode<'a> {
    /// `product.appeared` / `product.updated` of this episode id: it is (still) open.
    Open(&'a str),
    /// `product.disappeared`: it is over.
    End(&'a str),
}

/// One pending event, as read back for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub seq: u64,
    pub persisted_ms: u64,
    pub key: String,
    pub payload: Vec<u8>,
}

/// What the outbox holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub events: u64,
    /// Key + payload + 8 bytes per event: what `publish.outbox.max_bytes` bounds.
    pub bytes: u64,
    /// When the oldest pending event was persisted (unix ms); 0 when empty.
    pub oldest_ms: u64,
    next_seq: u64,
}

pub struct Outbox {
    db: Database,
    name: String,
    /// Also serialises appends, so sequence order is commit order.
    totals: Mutex<Totals>,
}

/// The bytes an event takes against `max_bytes`.
pub fn entry_size(key: &str, payload: &[u8]) -> u64 {
    (key.len() + payload.len() + 8) as u64
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Outbox {
    /// Opens (or creates) the outbox file; `None`: an outbox in memory. A file another process holds
    /// open is refused, naming the key.
    pub fn open(path: Option<&Path>) -> Result<Outbox, PublishError> {
        let name = path.map_or_else(|| "(memory)".to_string(), |p| p.display().to_string());
        let opened = match path {
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|source| PublishError::Io { path: dir.display().to_string(), source })?;
                }
                Database::create(p)
            }
            None => Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()),
        };
        let db = opened.map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => PublishError::Config {
                key: "publish.outbox.path".into(),
                problem: format!("{name} is open in another process: give each livesku its own outbox"),
            },
            e => PublishError::Outbox { path: name.clone(), source: e.into() },
        })?;
        let outbox = Outbox { db, name, totals: Mutex::new(Totals::default()) };
        let totals = outbox.scan().map_err(|e| outbox.err(e))?;
        *outbox.totals.lock() = totals;
        Ok(outbox)
    }

    /// Where it lives, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn totals(&self) -> Totals {
        *self.totals.lock()
    }

    fn err(&self, e: impl Into<redb::Error>) -> PublishError {
        PublishError::Outbox { path: self.name.clone(), source: e.into() }
    }

    /// Creates the table if needed and counts what a previous run left.
    fn scan(&self) -> Result<Totals, redb::Error> {
        let w = self.db.begin_write()?;
        w.open_table(EVENTS)?;
        w.open_table(OPEN)?;
        w.commit()?;
        let r = self.db.begin_read()?;
        let t = r.open_table(EVENTS)?;
        let mut totals = Totals::default();
        for row in t.iter()? {
            let (seq, v) = row?;
            let (at, key, payload) = v.value();
            if totals.events == 0 {
                totals.oldest_ms = at;
            }
            totals.events += 1;
            totals.bytes += entry_size(key, payload);
            totals.next_seq = seq.value() + 1;
        }
        Ok(totals)
    }

    /// Persists one event and what it does to its episode (durably: the commit is on disk when this
    /// returns); returns its sequence number.
    pub fn append(&self, key: &str, payload: &[u8], episode: Episode) -> Result<u64, PublishError> {
        let mut totals = self.totals.lock();
        let seq = totals.next_seq;
        let at = now_ms();
        let write = || -> Result<(), redb::Error> {
            let w = self.db.begin_write()?;
            w.open_table(EVENTS)?.insert(seq, (at, key, payload))?;
            match episode {
                Episode::Open(id) => w.open_table(OPEN)?.insert(id, payload).map(drop)?,
                Episode::End(id) => w.open_table(OPEN)?.remove(id).map(drop)?,
            }
            w.commit()?;
            Ok(())
        };
        write().map_err(|e| self.err(e))?;
        if totals.events == 0 {
            totals.oldest_ms = at;
        }
        totals.events += 1;
        totals.bytes += entry_size(key, payload);
        totals.next_seq = seq + 1;
        Ok(seq)
    }

    /// Episodes left open (by a run that did not end them): (episode id, its latest event).
    pub fn open_episodes(&self) -> Result<Vec<(String, Vec<u8>)>, PublishError> {
        let read = || -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
            let r = self.db.begin_read()?;
            let t = r.open_table(OPEN)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (id, payload) = row?;
                out.push((id.value().to_string(), payload.value().to_vec()));
            }
            Ok(out)
        };
        read().map_err(|e| self.err(e))
    }

    /// Drops an open episode without an event (one whose latest event cannot be read back).
    pub fn forget_open(&self, episode_id: &str) -> Result<(), PublishError> {
        let forget = || -> Result<(), redb::Error> {
            let w = self.db.begin_write()?;
            w.open_table(OPEN)?.remove(episode_id)?;
            w.commit()?;
            Ok(())
        };
        forget().map_err(|e| self.err(e))
    }

    /// Up to `limit` pending events from sequence number `from` on, oldest first.
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Vec<Pending>, PublishError> {
        let read = || -> Result<Vec<Pending>, redb::Error> {
            let r = self.db.begin_read()?;
            let t = r.open_table(EVENTS)?;
            let mut out = Vec::new();
            for row in t.range(from..)?.take(limit) {
                let (seq, v) = row?;
                let (persisted_ms, key, payload) = v.value();
                out.push(Pending { seq: seq.value(), persisted_ms, key: key.to_string(), payload: payload.to_vec() });
            }
            Ok(out)
        };
        read().map_err(|e| self.err(e))
    }

    /// Removes delivered events (in one commit); returns how many were there.
    pub fn remove(&self, seqs: &[u64]) -> Result<u64, PublishError> {
        let mut totals = self.totals.lock();
        let remove = || -> Result<(u64, u64, u64), redb::Error> {
            let w = self.db.begin_write()?;
            let (mut n, mut bytes) = (0, 0);
            let oldest = {
                let mut t = w.open_table(EVENTS)?;
                for seq in seqs {
                    if let Some(v) = t.remove(seq)? {
                        let (_, key, payload) = v.value();
                        n += 1;
                        bytes += entry_size(key, payload);
                    }
                }
                t.first()?.map_or(0, |(_, v)| v.value().0)
            };
            w.commit()?;
            Ok((n, bytes, oldest))
        };
        let (n, bytes, oldest) = remove().map_err(|e| self.err(e))?;
        totals.events -= n;
        totals.bytes -= bytes;
        totals.oldest_ms = oldest;
        Ok(n)
    }
}
