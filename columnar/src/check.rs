//! The consistency check of every column: metadata, chunk rows and end offsets.

use std::collections::HashSet;

use kvault::Store;
use rusqlite::{params, Connection};

use crate::error::Result;
use crate::meta::{self, ColumnMeta, INDEX_WIDTH};
use crate::ops::{read_ends, start_of};
use crate::packed::PACKED_TABLE;
use crate::schema::tables_exist;
use crate::stream::{usize_of, Stream, CHUNKS_TABLE};
use kvault::codec::decompress_into;

/// End offsets checked per read of the index.
const ENDS_PER_READ: u64 = 256 << 10;

/// Every problem found in the columns of `store`, one message each (see
/// [`Column::check`](crate::Column::check)).
pub(crate) fn check(store: &mut Store) -> Result<Vec<String>> {
    store.read_with(|conn| {
        let mut problems = Vec::new();
        if !tables_exist(conn)? {
            return Ok(problems);
        }
        // Metadata that fails validation is a problem to report, not an error to raise.
        let mut columns = Vec::new();
        let mut known = HashSet::new();
        for row in meta::rows(conn)? {
            known.insert(row.id);
            match row.into_meta() {
                Ok(meta) => columns.push(meta),
                Err(err) => problems.push(err.to_string()),
            }
        }
        for meta in &columns {
            match meta.width() {
                Some(w) => {
                    if meta.data_bytes != meta.len * w {
                        problems.push(format!(
                            "column {:?}: {} data bytes for {} elements of {w} bytes",
                            meta.name, meta.data_bytes, meta.len
                        ));
                    }
                    problems.extend(stream_problems(
                        conn,
                        meta,
                        meta.data(),
                        meta.sealed(),
                        "data",
                    )?);
                }
                None => {
                    let mut own = stream_problems(conn, meta, meta.data(), meta.sealed(), "data")?;
                    own.extend(stream_problems(
                        conn,
                        meta,
                        meta.index(),
                        meta.index_sealed(),
                        "index",
                    )?);
                    // Offsets are only readable when the index stream itself is sound.
                    let streams_sound = own.is_empty();
                    problems.extend(own);
                    if meta.len > 0 && streams_sound {
                        problems.extend(offset_problems(conn, meta)?);
                    }
                }
            }
        }
        let packed = if crate::schema::table_exists(conn, PACKED_TABLE)? {
            format!(" UNION SELECT DISTINCT id >> 33 FROM {PACKED_TABLE}")
        } else {
            String::new()
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT DISTINCT id >> 33 FROM {CHUNKS_TABLE}{packed}"
        ))?;
        let owners: Vec<i64> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let orphans = owners.iter().filter(|id| !known.contains(id)).count();
        if orphans > 0 {
            problems.push(format!("chunks of {orphans} deleted columns remain"));
        }
        Ok(problems)
    })
}

/// Problems of a variable-width column's end offsets (its streams already found sound): not
/// non-decreasing, not ending at the data size, or not agreeing with where the tail starts.
fn offset_problems(conn: &Connection, meta: &ColumnMeta) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut previous = 0u64;
    let mut at = 0u64;
    while at < meta.len {
        let n = ENDS_PER_READ.min(meta.len - at);
        for end in read_ends(conn, meta, at, n)? {
            if end < previous {
                problems.push(format!(
                    "column {:?}: end offsets decrease near element {at}",
                    meta.name
                ));
                break;
            }
            previous = end;
        }
        at += n;
    }
    if previous != meta.data_bytes {
        problems.push(format!(
            "column {:?}: last end offset {previous} != data size {}",
            meta.name, meta.data_bytes
        ));
    }
    // The tail holds the bytes of exactly the index tail's elements.
    let tailed = meta.index_tail.len() as u64 / INDEX_WIDTH;
    if tailed > 0 {
        let first_tailed = start_of(conn, meta, meta.len - tailed)?;
        if first_tailed != meta.sealed() {
            problems.push(format!(
                "column {:?}: its last {tailed} elements start at byte \
                 {first_tailed}, but its tail starts at byte {}",
                meta.name,
                meta.sealed()
            ));
        }
    }
    Ok(problems)
}

/// Problems of one stream: wrong chunk count, or a chunk of the wrong length or position.
fn stream_problems(
    conn: &Connection,
    meta: &ColumnMeta,
    stream: Stream,
    used: u64,
    what: &str,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let packed_exists = crate::schema::table_exists(conn, PACKED_TABLE)?;
    // Plain rows with their length; packed rows (code >= 0) with their stored bytes.
    let packed_rows = if packed_exists {
        format!(
            " UNION ALL SELECT id & 4294967295, NULL, codec, data FROM {PACKED_TABLE} \
             WHERE id BETWEEN ?1 AND ?2"
        )
    } else {
        String::new()
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT id & 4294967295, length(data), -1, NULL FROM {CHUNKS_TABLE} \
         WHERE id BETWEEN ?1 AND ?2{packed_rows} ORDER BY 1"
    ))?;
    type ChunkRow = (i64, Option<i64>, i64, Option<Vec<u8>>);
    let rows: Vec<ChunkRow> = stmt
        .query_map(
            params![stream.id << 32, (stream.id << 32) | 0xFFFF_FFFF],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let need = meta.plan.chunks_for(used);
    if rows.len() as u64 != need {
        problems.push(format!(
            "column {:?}: {what} stream has {} chunks, {need} expected for {used} bytes",
            meta.name,
            rows.len()
        ));
    }
    for (k, (chunk, len, code, stored)) in rows.iter().enumerate() {
        let cap = meta.plan.capacity(k as u64);
        let len = match (len, stored) {
            (Some(len), _) => u64::try_from(*len).unwrap_or(0),
            // A packed chunk must decompress to exactly its capacity.
            (None, Some(stored)) => {
                let mut raw = vec![0u8; usize_of(cap)];
                match decompress_into(*code, stored, &mut raw) {
                    Ok(()) => cap,
                    Err(_) => {
                        problems.push(format!(
                            "column {:?}: packed {what} chunk {chunk} does not decompress to \
                             {cap} bytes",
                            meta.name
                        ));
                        break;
                    }
                }
            }
            (None, None) => 0,
        };
        if *chunk != k as i64 || len != cap {
            problems.push(format!(
                "column {:?}: {what} chunk {chunk} is {len} bytes at position {k}, expected {cap}",
                meta.name
            ));
            break;
        }
    }
    Ok(problems)
}
