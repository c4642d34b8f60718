//! The in-memory engines of one collection handle (exact rows and the HNSW graph) and how they
//! follow the file: every search first replays the changes committed since the engines last
//! looked (by this or any other process), found through the change sequence, so they never
//! answer with a deleted or uncommitted item and never need a full rebuild after a crash.

use std::io::{BufRead, BufReader, Read};

use rusqlite::Connection;

use kvault::{Error, Result};

use crate::flat::Flat;
use crate::hnsw::Hnsw;
use crate::parts::{uncarried, PartsReader, PartsWriter};
use crate::schema::{Names, Registry, INDEX_PARTS, TABLES};

/// Rows read per batch while loading or replaying.
const BATCH: usize = 10_000;

/// The engines of a collection and the change sequence they reflect.
#[derive(Debug, Default)]
pub struct State {
    /// Registry identity the engines belong to (0: none loaded).
    uid: i64,
    /// Every change up to this sequence is applied to the loaded engines.
    watermark: i64,
    /// All vectors, for exact search (loaded on first need).
    pub(crate) flat: Option<Flat>,
    /// The HNSW graph (loaded or built on first need).
    pub(crate) hnsw: Option<Hnsw>,
    /// Changes applied to the graph since it was last stored.
    pub(crate) unsaved: usize,
    /// The file's snapshot is another engine's (USearch's): replaced even though it claims
    /// the current sequence.
    replaces_foreign: bool,
}

/// One committed change, as the engines apply it.
enum Change {
    Removed(i64),
    Current(i64, Vec<u8>),
}

/// Calls `apply` with every change after `after` (up to the reading snapshot): deletions
/// first, then the current vector of every item changed since.
fn replay(
    conn: &Connection,
    names: &Names,
    after: i64,
    mut apply: impl FnMut(Vec<Change>) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id FROM {} WHERE seq > ?1 ORDER BY seq",
        names.deletes
    ))?;
    let removed = stmt
        .query_map([after], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(Change::Removed))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if !removed.is_empty() {
        apply(removed)?;
    }
    if after == i64::MIN {
        // Everything: one pass over the table in id order, a batch at a time.
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, vector FROM {} WHERE id > ?1 ORDER BY id LIMIT {BATCH}",
            names.items
        ))?;
        let mut last = i64::MIN;
        loop {
            let batch = stmt
                .query_map([last], |r| Ok(Change::Current(r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let Some(Change::Current(id, _)) = batch.last() else {
                return Ok(());
            };
            last = *id;
            let full = batch.len() == BATCH;
            apply(batch)?;
            if !full {
                return Ok(());
            }
        }
    }
    // The items changed since, found through the sequence index, then read by id.
    let changed = conn
        .prepare_cached(&format!(
            "SELECT id FROM {items} INDEXED BY {items}_seq WHERE seq > ?1",
            items = names.items
        ))?
        .query_map([after], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    let mut read =
        conn.prepare_cached(&format!("SELECT vector FROM {} WHERE id = ?1", names.items))?;
    for ids in changed.chunks(BATCH) {
        let batch = ids
            .iter()
            .map(|&id| Ok(Change::Current(id, read.query_row([id], |r| r.get(0))?)))
            .collect::<Result<Vec<_>>>()?;
        apply(batch)?;
    }
    Ok(())
}

fn apply_to_flat(flat: &mut Flat, changes: &[Change]) {
    for change in changes {
        match change {
            Change::Removed(id) => {
                flat.remove(*id);
            }
            Change::Current(id, vector) => flat.upsert(*id, vector),
        }
    }
}

fn apply_to_hnsw(hnsw: &mut Hnsw, changes: &[Change]) -> Result<usize> {
    let mut fresh = Vec::new();
    for change in changes {
        match change {
            Change::Removed(id) => hnsw.remove(*id)?,
            Change::Current(id, vector) if hnsw.contains(*id) => hnsw.upsert(*id, vector)?,
            Change::Current(id, vector) => fresh.push((*id, vector.as_slice())),
        }
    }
    hnsw.add_many(&fresh)?;
    Ok(changes.len())
}

impl State {
    /// Brings the loaded engines to the registry's sequence (read inside the same snapshot),
    /// dropping them when they can no longer be caught up: the collection was recreated, or
    /// the deletions they missed were pruned from the log.
    pub(crate) fn catch_up(
        &mut self,
        conn: &Connection,
        names: &Names,
        reg: &Registry,
    ) -> Result<()> {
        if self.uid != reg.uid || self.watermark < reg.pruned_seq || self.watermark > reg.seq {
            *self = State {
                uid: reg.uid,
                watermark: reg.seq,
                ..State::default()
            };
            return Ok(());
        }
        if self.watermark == reg.seq {
            return Ok(());
        }
        if self.flat.is_none() && self.hnsw.is_none() {
            self.watermark = reg.seq;
            return Ok(());
        }
        let (flat, hnsw) = (&mut self.flat, &mut self.hnsw);
        let mut applied = 0;
        replay(conn, names, self.watermark, |changes| {
            if let Some(hnsw) = hnsw.as_mut() {
                applied += apply_to_hnsw(hnsw, &changes)?;
            }
            if let Some(flat) = flat.as_mut() {
                apply_to_flat(flat, &changes);
            }
            Ok(())
        })?;
        self.unsaved += applied;
        self.watermark = reg.seq;
        Ok(())
    }

    /// The exact engine, loaded from the rows if needed (after [`State::catch_up`]).
    pub(crate) fn flat(
        &mut self,
        conn: &Connection,
        names: &Names,
        reg: &Registry,
    ) -> Result<&Flat> {
        if self.flat.is_none() {
            let mut flat = Flat::new(reg.spec);
            replay(conn, names, i64::MIN, |changes| {
                apply_to_flat(&mut flat, &changes);
                Ok(())
            })?;
            self.flat = Some(flat);
        }
        Ok(self.flat.as_ref().expect("loaded above"))
    }

    /// The graph, loaded from its snapshot and caught up, or built from the rows (after
    /// [`State::catch_up`]). Returns whether it was built or replayed enough to be worth
    /// storing.
    pub(crate) fn hnsw(
        &mut self,
        conn: &Connection,
        names: &Names,
        reg: &Registry,
    ) -> Result<&Hnsw> {
        if self.hnsw.is_none() {
            let snapshot = match reg.index_seq {
                Some(seq) if seq >= reg.pruned_seq && seq <= reg.seq => {
                    match load_snapshot(conn, names, reg)? {
                        Snapshot::Graph(graph) => Some((graph, seq)),
                        Snapshot::Foreign => {
                            self.replaces_foreign = true;
                            None
                        }
                        Snapshot::Missing => None,
                    }
                }
                _ => None,
            };
            let (mut graph, after, fresh) = match snapshot {
                Some((graph, seq)) => (graph, seq, false),
                None => (Hnsw::new(reg.spec, &reg.index, 1024)?, i64::MIN, true),
            };
            let mut applied = 0;
            replay(conn, names, after, |changes| {
                applied += apply_to_hnsw(&mut graph, &changes)?;
                Ok(())
            })?;
            self.hnsw = Some(graph);
            // A graph built from scratch is stored at once; a snapshot plus a replay when the
            // replay was long.
            self.unsaved = if fresh { usize::MAX } else { applied };
        }
        // Removed nodes stay in the graph as tombstones that searches step over, and many of
        // them cut regions off; rebuild once they reach a quarter of the live ones (checked
        // after a load too: the replay may have removed many).
        if self
            .hnsw
            .as_ref()
            .is_some_and(|g| g.removed() > (g.len() / 4).max(64))
        {
            self.rebuild_graph(conn, names, reg)?;
        }
        Ok(self.hnsw.as_ref().expect("loaded above"))
    }

    /// Builds the graph from the rows, ignoring any stored snapshot (after
    /// [`State::catch_up`]).
    pub(crate) fn rebuild_graph(
        &mut self,
        conn: &Connection,
        names: &Names,
        reg: &Registry,
    ) -> Result<()> {
        let mut graph = Hnsw::new(
            reg.spec,
            &reg.index,
            usize::try_from(reg.items).unwrap_or(0),
        )?;
        replay(conn, names, i64::MIN, |changes| {
            apply_to_hnsw(&mut graph, &changes)?;
            Ok(())
        })?;
        self.hnsw = Some(graph);
        self.unsaved = usize::MAX;
        Ok(())
    }

    /// Drops the graph (the next search loads or builds it again).
    pub(crate) fn drop_graph(&mut self) {
        self.hnsw = None;
        self.unsaved = 0;
    }

    /// Whether the engines reflect exactly this registry state (same collection, same
    /// sequence), so they can answer inside an explicit transaction.
    pub(crate) fn is_current(&self, reg: &Registry) -> bool {
        self.uid == reg.uid && self.watermark == reg.seq
    }

    /// Whether the graph has changed enough since it was stored to store it again.
    pub(crate) fn should_store(&self) -> bool {
        self.hnsw
            .as_ref()
            .is_some_and(|h| self.unsaved > 0 && self.unsaved >= (h.len() / 10).max(1000))
    }

    /// Stores the graph as the collection's snapshot (inside a write transaction), unless the
    /// file already holds a newer one; pruning the deletion log when it grew long.
    pub(crate) fn store_snapshot(&mut self, conn: &Connection, names: &Names) -> Result<bool> {
        let Some(hnsw) = self.hnsw.as_ref() else {
            return Ok(false);
        };
        let (current_uid, stored): (i64, Option<i64>) = conn.query_row(
            &format!("SELECT rowid, index_seq FROM {TABLES} WHERE name = ?1"),
            [&names.name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let newer_stored = stored.is_some_and(|s| s >= self.watermark) && !self.replaces_foreign;
        if current_uid != self.uid || newer_stored {
            self.unsaved = 0;
            return Ok(false);
        }
        conn.execute(
            &format!("DELETE FROM {INDEX_PARTS} WHERE name = ?1"),
            [&names.name],
        )?;
        let mut parts = PartsWriter::new(conn, &names.name)?;
        hnsw.write_to(&mut parts)?;
        parts.finish()?;
        conn.execute(
            &format!("UPDATE {TABLES} SET index_seq = ?2 WHERE name = ?1"),
            rusqlite::params![&names.name, self.watermark],
        )?;
        prune_deletions(conn, names, self.watermark)?;
        self.unsaved = 0;
        self.replaces_foreign = false;
        Ok(true)
    }

    /// Forgets the engines (they are rebuilt or reloaded on next use).
    pub(crate) fn forget(&mut self) {
        *self = State::default();
    }

    /// Bytes of memory the loaded engines use.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.flat.as_ref().map_or(0, Flat::memory_bytes)
            + self.hnsw.as_ref().map_or(0, Hnsw::memory_bytes)
    }
}

/// Prunes deletions up to `upto` once the log is long (other processes whose engines are
/// older then reload them instead of replaying).
pub(crate) fn prune_deletions(conn: &Connection, names: &Names, upto: i64) -> Result<()> {
    let (logged, items): (i64, i64) = conn.query_row(
        &format!(
            "SELECT (SELECT count(*) FROM {}), items FROM {TABLES} WHERE name = ?1",
            names.deletes
        ),
        [&names.name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if logged > (items / 10).max(10_000) {
        conn.execute(
            &format!("DELETE FROM {} WHERE seq <= ?1", names.deletes),
            [upto],
        )?;
        conn.execute(
            &format!("UPDATE {TABLES} SET pruned_seq = max(pruned_seq, ?2) WHERE name = ?1"),
            rusqlite::params![&names.name, upto],
        )?;
    }
    Ok(())
}

/// What the file holds as a collection's graph snapshot.
pub(crate) enum Snapshot {
    /// No parts.
    Missing,
    /// Another engine's snapshot (USearch's, written by earlier versions): rebuilt from the
    /// rows when needed, then stored in the current layout.
    Foreign,
    /// The graph as stored.
    Graph(Hnsw),
}

/// Reads the stored graph, streamed from its parts into the graph's memory.
pub(crate) fn load_snapshot(conn: &Connection, names: &Names, reg: &Registry) -> Result<Snapshot> {
    let Some(parts) = PartsReader::open(conn, &names.name)? else {
        return Ok(Snapshot::Missing);
    };
    let mut stream = BufReader::with_capacity(1 << 20, parts);
    if !Hnsw::is_snapshot(stream.fill_buf().map_err(uncarried)?) {
        // Another engine's (or damaged) bytes: read whole to tell which.
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).map_err(uncarried)?;
        return Ok(Hnsw::from_bytes(reg.spec, &bytes)?.map_or(Snapshot::Foreign, Snapshot::Graph));
    }
    let graph = Hnsw::read_from(reg.spec, &mut stream)?;
    if !stream.fill_buf().map_err(uncarried)?.is_empty() {
        return Err(Error::Corrupted(format!(
            "vector table {:?}: trailing bytes after the HNSW snapshot",
            names.name
        )));
    }
    Ok(Snapshot::Graph(graph))
}
