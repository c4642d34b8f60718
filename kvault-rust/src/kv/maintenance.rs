//! Maintenance: storage figures, invariant checks and reclaiming abandoned uploads.

use std::collections::{HashMap, HashSet};

use rusqlite::Connection;

use super::types::{chunk_rowid, TableStats, MAX_CHUNKS_PER_BLOB, MAX_CHUNK_SIZE};
use super::KvTable;
use crate::codec::{decompress_into, CODEC_NONE};
use crate::error::Result;
use crate::store::Store;

impl KvTable {
    /// Counts keys, bytes, chunks and unfinished uploads, from one snapshot.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn stats(&self, store: &mut Store) -> Result<TableStats> {
        let coded = store.retry(|conn| self.probe_coded(conn))?;
        let sql = self.sql.stats(coded);
        let now = store.now_ms();
        store.read(|conn| {
            Ok(conn.query_row(&sql, [now], |r| {
                let count = |i: usize| r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0));
                // SQLite's total() is a float; the sums are whole numbers of bytes.
                let total = |i: usize| r.get::<_, f64>(i).map(|v| v as u64);
                Ok(TableStats {
                    keys: count(0)?,
                    logical_bytes: total(1)?,
                    chunks: count(2)?,
                    chunk_bytes: total(3)?,
                    pending_uploads: count(4)?,
                    inline_bytes: total(5)?,
                    unique_chunks: count(6)?,
                    content_bytes: total(7)?,
                    expired_keys: count(8)?,
                })
            })?)
        })
    }

    /// Checks the table's own invariants (beyond SQLite's integrity check): each value stored
    /// either inline with the right length or as exactly the chunks its size needs, no chunk
    /// without an owner, no abandoned upload. Returns one message per problem.
    ///
    /// # Errors
    /// SQLite errors (a problem in the data is a message, not an error).
    pub fn check(&self, store: &mut Store) -> Result<Vec<String>> {
        let t = &self.name;
        let branches = self.other_branch_tables(store)?;
        let coded = store.retry(|conn| self.probe_coded(conn))?;
        let sql = self
            .sql
            .check(self.has_history_table(store)?, &branches, coded);
        let live_pids: Vec<(i64, i64)> = store.retry(|conn| {
            let mut stmt = conn.prepare_cached(&self.sql.list_pending)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        store.read(|conn| {
            let mut problems = Vec::new();
            for bad_inline in &sql.bad_inline {
                let bad_inline: i64 = conn.query_row(bad_inline, [], |r| r.get(0))?;
                if bad_inline > 0 {
                    problems.push(format!(
                        "table {t}: {bad_inline} key rows are inconsistent (an inline value of \
                         the wrong length or stored two ways, or a field of the wrong type)"
                    ));
                }
            }
            let mut referenced = std::collections::HashSet::new();
            for chunked_keys in &sql.chunked_keys {
                let mut stmt = conn.prepare(chunked_keys)?;
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    let key: Vec<u8> = row.get(0)?;
                    let blob_id: i64 = row.get(1)?;
                    referenced.insert(blob_id);
                    let size: i64 = row.get(2)?;
                    let chunk: i64 = row.get::<_, Option<i64>>(3)?.unwrap_or(0);
                    let count: i64 = row.get(4)?;
                    // SQLite's total() is a float; the sum is a whole number of bytes.
                    let total = row.get::<_, f64>(5)? as i64;
                    let longest: i64 = row.get::<_, Option<i64>>(6)?.unwrap_or(0);
                    // Checked: a damaged size near 2^63 is a problem to report, not an overflow.
                    let expected = if chunk > 0 && size >= 0 {
                        size.checked_add(chunk - 1).map_or(-1, |s| s / chunk)
                    } else {
                        -1
                    };
                    if chunk <= 0 || count != expected || total != size || longest > chunk {
                        problems.push(format!(
                            "table {t}: key {} has {count} chunks holding {total} bytes; \
                             expected {expected} chunks of at most {chunk} bytes holding {size}",
                            String::from_utf8_lossy(&key)
                        ));
                    }
                }
            }
            if let Some(kept) = &sql.kept_blobs {
                let mut stmt = conn.prepare(kept)?;
                let blobs = stmt.query_map([], |r| r.get::<_, i64>(0))?;
                for blob in blobs {
                    referenced.insert(blob?);
                }
            }
            let pending: HashSet<i64> = live_pids.iter().map(|(b, _)| *b).collect();
            let mut stmt = conn.prepare(&sql.chunk_owners)?;
            let owners: Vec<i64> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let orphans = owners
                .iter()
                .filter(|b| !referenced.contains(b) && !pending.contains(b))
                .count();
            if orphans > 0 {
                problems.push(format!(
                    "table {t}: chunks of {orphans} blobs belong to no key or upload"
                ));
            }
            // Reference counts: every content row is referenced exactly `refs` times, and every
            // chunk refers to content that exists.
            let mut counts = HashMap::<i64, i64>::new();
            let mut stmt = conn.prepare(&sql.chunk_refs)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                counts.insert(row.get(0)?, row.get(1)?);
            }
            let mut stmt = conn.prepare(&sql.content_refs)?;
            let mut rows = stmt.query([])?;
            let mut bad_refs = 0usize;
            while let Some(row) = rows.next()? {
                let cid: i64 = row.get(0)?;
                let refs: i64 = row.get(1)?;
                if counts.remove(&cid).unwrap_or(0) != refs {
                    bad_refs += 1;
                }
            }
            if bad_refs > 0 {
                problems.push(format!(
                    "table {t}: {bad_refs} stored chunks have a wrong reference count"
                ));
            }
            if !counts.is_empty() {
                problems.push(format!(
                    "table {t}: chunks refer to {} missing stored contents",
                    counts.len()
                ));
            }
            let damaged = self.damaged_contents(conn, coded)?;
            if damaged > 0 {
                problems.push(format!(
                    "table {t}: {damaged} stored contents do not match their BLAKE3 hash \
                     (their bytes were changed on disk)"
                ));
            }
            let abandoned = live_pids
                .iter()
                .filter(|(_, pid)| !process_alive(*pid))
                .count();
            if abandoned > 0 {
                problems.push(format!(
                    "table {t}: {abandoned} abandoned uploads (optimize() or reopening reclaims \
                     them)"
                ));
            }
            Ok(problems)
        })
    }

    /// Stored contents whose bytes no longer hash to their address: BLAKE3 of the bytes (after
    /// decompression), or, for a chunk stored without deduplication, of its chunk rowid and the
    /// bytes. A compressed content that does not decompress to its recorded length counts too.
    fn damaged_contents(&self, conn: &Connection, coded: bool) -> Result<u64> {
        let t = &self.name;
        let codec = if coded {
            "c.codec, c.raw_size"
        } else {
            "0, NULL"
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT c.hash, c.data, (SELECT group_concat(k.id) FROM \"{t}__chunks\" k \
             WHERE k.cid = c.cid), {codec} FROM \"{t}__content\" c"
        ))?;
        let mut rows = stmt.query([])?;
        let mut damaged = 0;
        while let Some(row) = rows.next()? {
            let (Ok(hash), Ok(stored), Ok(code), Ok(raw_size)) = (
                row.get::<_, Vec<u8>>(0),
                row.get::<_, Vec<u8>>(1),
                row.get::<_, i64>(3),
                row.get::<_, Option<i64>>(4),
            ) else {
                damaged += 1;
                continue;
            };
            let data = if code == CODEC_NONE {
                stored
            } else {
                // The recorded length bounds the allocation: a chunk is at most MAX_CHUNK_SIZE.
                let Some(len) = raw_size
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n <= MAX_CHUNK_SIZE)
                else {
                    damaged += 1;
                    continue;
                };
                let mut raw = vec![0u8; len];
                if decompress_into(code, &stored, &mut raw).is_err() {
                    damaged += 1;
                    continue;
                }
                raw
            };
            if blake3::hash(&data).as_bytes().as_slice() == hash {
                continue;
            }
            let owners: Option<String> = row.get(2).ok().flatten();
            let salted = owners.iter().flat_map(|o| o.split(',')).any(|id| {
                id.parse::<i64>().is_ok_and(|id| {
                    let mut hasher = blake3::Hasher::new();
                    hasher.update(&id.to_le_bytes()).update(&data);
                    hasher.finalize().as_bytes().as_slice() == hash
                })
            });
            if !salted {
                damaged += 1;
            }
        }
        Ok(damaged)
    }

    /// Deletes chunks of uploads whose writer process is gone (a crash mid-stream). Uploads of
    /// live processes, this one included, are left alone. Returns the number reclaimed.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn reclaim_orphans(&self, store: &mut Store) -> Result<u64> {
        if store.is_read_only() {
            return Ok(0);
        }
        let pending: Vec<(i64, i64)> = store.retry(|conn| {
            let mut stmt = conn.prepare_cached(&self.sql.list_pending)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        let mut reclaimed = 0;
        for (blob_id, pid) in pending {
            if process_alive(pid) {
                continue;
            }
            store.write(|conn| self.drop_blob(conn, blob_id))?;
            reclaimed += 1;
        }
        Ok(reclaimed)
    }

    /// Deletes a blob's chunks and its pending row (an aborted or abandoned upload).
    pub(super) fn drop_blob(&self, conn: &Connection, blob_id: i64) -> Result<()> {
        conn.prepare_cached(&self.sql.drop_chunks)?.execute([
            chunk_rowid(blob_id, 0),
            chunk_rowid(blob_id, MAX_CHUNKS_PER_BLOB - 1),
        ])?;
        conn.prepare_cached(&self.sql.drop_pending)?
            .execute([blob_id])?;
        Ok(())
    }
}

#[cfg(unix)]
fn process_alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    if i64::from(pid) == i64::from(std::process::id()) {
        return true;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_alive(_pid: i64) -> bool {
    // Without a cheap liveness check, never reclaim: a leak is safe, a wrong reclaim is not.
    true
}
