//! The byte moves behind element operations: reading ranges, appending, inserting, replacing
//! and deleting elements in a column's streams. Each works on metadata loaded in the caller's
//! transaction and updates it in memory; the caller saves it.

use rusqlite::Connection;

use crate::elements::{Elements, ReadOut};
use crate::error::{Error, Result};
use crate::meta::{seal, ColumnMeta, INDEX_TAIL_BYTES, INDEX_WIDTH, TAIL_BYTES, VAR_TAIL_BYTES};
use crate::stream::usize_of;

/// End offsets of elements `first .. first + count`.
pub(crate) fn read_ends(
    conn: &Connection,
    meta: &ColumnMeta,
    first: u64,
    count: u64,
) -> Result<Vec<u64>> {
    let overflow = || Error::Corrupted(format!("column {:?} has an impossible length", meta.name));
    let offset = first.checked_mul(INDEX_WIDTH).ok_or_else(overflow)?;
    let bytes = count.checked_mul(INDEX_WIDTH).ok_or_else(overflow)?;
    let end = offset.checked_add(bytes).ok_or_else(overflow)?;
    meta.ensure_readable(conn, true, offset, end)?;
    let mut raw = vec![0u8; usize_of(bytes)];
    meta.index_reader(conn).read(offset, &mut raw)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
        .collect())
}

/// Index entries as stored: little-endian u64 end offsets.
fn encode_ends(ends: &[u64]) -> Vec<u8> {
    ends.iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// End offset of element `i - 1`, i.e. where element `i` starts (0 for the first).
pub(crate) fn start_of(conn: &Connection, meta: &ColumnMeta, i: u64) -> Result<u64> {
    if i == 0 {
        Ok(0)
    } else {
        Ok(read_ends(conn, meta, i - 1, 1)?[0])
    }
}

/// `(start, end)` byte offsets of variable-width element `i`, checked against the metadata.
fn element_bounds(conn: &Connection, meta: &ColumnMeta, i: u64) -> Result<(u64, u64)> {
    let start = start_of(conn, meta, i)?;
    let end = read_ends(conn, meta, i, 1)?[0];
    if start > end || end > meta.data_bytes {
        return Err(Error::Corrupted(format!(
            "column {:?} has inconsistent offsets at element {i}",
            meta.name
        )));
    }
    Ok((start, end))
}

/// Elements `start..stop` (which must be within the length).
pub(crate) fn read_range(
    conn: &Connection,
    meta: &ColumnMeta,
    start: u64,
    stop: u64,
) -> Result<ReadOut> {
    let stop = stop.max(start);
    match meta.width() {
        Some(w) => {
            let overflow =
                || Error::Corrupted(format!("column {:?} has an impossible length", meta.name));
            let offset = start.checked_mul(w).ok_or_else(overflow)?;
            let end = stop.checked_mul(w).ok_or_else(overflow)?;
            meta.ensure_readable(conn, false, offset, end)?;
            let mut out = vec![0u8; usize_of(end - offset)];
            meta.read_data(conn, offset, &mut out)?;
            Ok(ReadOut::Fixed(out))
        }
        None => {
            if stop == start {
                return Ok(ReadOut::Var {
                    ends: Vec::new(),
                    data: Vec::new(),
                });
            }
            // One index read covers the previous element's end (this range's base) too.
            let first = start.saturating_sub(1);
            let mut ends = read_ends(conn, meta, first, stop - first)?;
            let base = if start == 0 { 0 } else { ends.remove(0) };
            let last = *ends.last().expect("non-empty range");
            if ends[0] < base
                || last > meta.data_bytes
                || base > meta.data_bytes
                || ends.windows(2).any(|w| w[1] < w[0])
            {
                return Err(Error::Corrupted(format!(
                    "column {:?} has inconsistent offsets",
                    meta.name
                )));
            }
            meta.ensure_readable(conn, false, base, last)?;
            let mut data = vec![0u8; usize_of(last - base)];
            meta.read_data(conn, base, &mut data)?;
            for end in &mut ends {
                *end -= base;
            }
            Ok(ReadOut::Var { ends, data })
        }
    }
}

/// Appends to the metadata's column: into the tail when it fits, else (after sealing) into
/// the chunks. The caller saves the metadata.
pub(crate) fn append(
    conn: &Connection,
    meta: &mut ColumnMeta,
    elements: Elements<'_>,
) -> Result<()> {
    let count = elements.count(meta)?;
    match elements {
        Elements::Fixed(raw) => {
            if (meta.tail.len() + raw.len()) as u64 <= TAIL_BYTES {
                // Only the metadata row changes: one page for the whole commit.
                meta.tail = [&meta.tail[..], raw].concat().into();
            } else {
                seal(conn, meta)?;
                if raw.len() as u64 <= TAIL_BYTES {
                    // The elements start the next tail: one stream write fewer per seal.
                    meta.tail = raw.into();
                } else {
                    meta.data().append(conn, meta.data_bytes, raw)?;
                }
            }
            meta.data_bytes += raw.len() as u64;
        }
        Elements::Var(items) => {
            let mut ends = Vec::with_capacity(items.len());
            let mut data = Vec::with_capacity(items.iter().map(|i| i.len()).sum());
            let mut end = meta.data_bytes;
            for item in items {
                end += item.len() as u64;
                ends.push(end);
                data.extend_from_slice(item);
            }
            append_var(conn, meta, &encode_ends(&ends), &data)?;
        }
        Elements::Packed { data, ends } => {
            let base = meta.data_bytes;
            let index: Vec<u8> = ends
                .iter()
                .flat_map(|&e| (base + e as u64).to_le_bytes())
                .collect();
            append_var(conn, meta, &index, data)?;
        }
    }
    meta.len += count;
    Ok(())
}

/// Appends encoded index entries (absolute end offsets) and their bytes to a variable-width
/// column: into the tails when both fit, otherwise (after moving the tails) into the chunks.
/// The caller adds the element count to `len`.
fn append_var(conn: &Connection, meta: &mut ColumnMeta, index: &[u8], data: &[u8]) -> Result<()> {
    let fits = (meta.tail.len() + data.len()) as u64 <= VAR_TAIL_BYTES
        && (meta.index_tail.len() + index.len()) as u64 <= INDEX_TAIL_BYTES;
    if fits {
        meta.index_tail = [&meta.index_tail[..], index].concat().into();
        meta.tail = [&meta.tail[..], data].concat().into();
    } else {
        seal(conn, meta)?;
        if data.len() as u64 <= VAR_TAIL_BYTES && index.len() as u64 <= INDEX_TAIL_BYTES {
            // The elements start the next tails: two stream writes fewer per seal (a durable
            // append of log lines seals every 25-35 lines).
            meta.index_tail = index.into();
            meta.tail = data.into();
        } else {
            meta.index().append(conn, meta.len * INDEX_WIDTH, index)?;
            meta.data().append(conn, meta.data_bytes, data)?;
        }
    }
    meta.data_bytes += data.len() as u64;
    Ok(())
}

/// Replaces variable-width element `i`, moving later bytes if the length changes.
pub(crate) fn replace_var(
    conn: &Connection,
    meta: &mut ColumnMeta,
    i: u64,
    item: &[u8],
) -> Result<()> {
    let (start, end) = element_bounds(conn, meta, i)?;
    let new_end = start + item.len() as u64;
    if new_end != end {
        let tail = meta.data_bytes - end;
        let new_total = meta.data_bytes - end + new_end;
        let data = meta.data();
        if new_end > end {
            data.resize(conn, meta.data_bytes, new_total)?;
            data.copy_within(conn, end, new_end, tail)?;
        } else {
            data.copy_within(conn, end, new_end, tail)?;
            data.resize(conn, meta.data_bytes, new_total)?;
        }
        shift_ends(conn, meta, i + 1, new_end.wrapping_sub(end))?;
        meta.index()
            .write(conn, i * INDEX_WIDTH, &new_end.to_le_bytes())?;
        meta.data_bytes = new_total;
    }
    meta.data().write(conn, start, item)?;
    Ok(())
}

/// Adds `delta` (two's complement, so it can be negative) to end offsets `from..len`.
fn shift_ends(conn: &Connection, meta: &ColumnMeta, from: u64, delta: u64) -> Result<()> {
    if from >= meta.len || delta == 0 {
        return Ok(());
    }
    const BLOCK: u64 = 512 << 10;
    let mut at = from;
    while at < meta.len {
        let n = BLOCK.min(meta.len - at);
        let ends: Vec<u64> = read_ends(conn, meta, at, n)?
            .into_iter()
            .map(|e| e.wrapping_add(delta))
            .collect();
        meta.index()
            .write(conn, at * INDEX_WIDTH, &encode_ends(&ends))?;
        at += n;
    }
    Ok(())
}

/// Inserts before element `at` (`at <= len`), moving later bytes up. The metadata must be
/// sealed; the caller saves it.
pub(crate) fn insert(
    conn: &Connection,
    meta: &mut ColumnMeta,
    at: u64,
    elements: Elements<'_>,
) -> Result<()> {
    let count = elements.count(meta)?;
    if at == meta.len {
        return append(conn, meta, elements);
    }
    match elements {
        Elements::Fixed(raw) => {
            let w = meta.width().unwrap_or(1);
            let data = meta.data();
            let old = meta.data_bytes;
            data.resize(conn, old, old + raw.len() as u64)?;
            data.copy_within(conn, at * w, at * w + raw.len() as u64, old - at * w)?;
            data.write(conn, at * w, raw)?;
            meta.data_bytes += raw.len() as u64;
        }
        Elements::Var(_) | Elements::Packed { .. } => {
            let items = elements.items()?;
            let added: u64 = items.iter().map(|i| i.len() as u64).sum();
            let (start, _) = element_bounds(conn, meta, at)?;
            // Data: open a gap of `added` bytes at `start`.
            let data = meta.data();
            data.resize(conn, meta.data_bytes, meta.data_bytes + added)?;
            data.copy_within(conn, start, start + added, meta.data_bytes - start)?;
            let mut joined = Vec::with_capacity(usize_of(added));
            let mut new_ends = Vec::with_capacity(items.len());
            let mut end = start;
            for item in items.iter() {
                joined.extend_from_slice(item);
                end += item.len() as u64;
                new_ends.push(end);
            }
            data.write(conn, start, &joined)?;
            // Index: shift later entries up by `count`, adding `added` to each.
            let index = meta.index();
            let old_index = meta.len * INDEX_WIDTH;
            index.resize(conn, old_index, old_index + count * INDEX_WIDTH)?;
            index.copy_within(
                conn,
                at * INDEX_WIDTH,
                (at + count) * INDEX_WIDTH,
                old_index - at * INDEX_WIDTH,
            )?;
            index.write(conn, at * INDEX_WIDTH, &encode_ends(&new_ends))?;
            let shifted = ColumnMeta {
                len: meta.len + count,
                ..meta.clone()
            };
            shift_ends(conn, &shifted, at + count, added)?;
            meta.data_bytes += added;
        }
    }
    meta.len += count;
    Ok(())
}

/// Removes elements `start..stop` (within the length), moving later bytes down. The metadata
/// must be sealed; the caller saves it.
pub(crate) fn delete_range(
    conn: &Connection,
    meta: &mut ColumnMeta,
    start: u64,
    stop: u64,
) -> Result<()> {
    if start >= stop {
        return Ok(());
    }
    let count = stop - start;
    match meta.width() {
        Some(w) => {
            let data = meta.data();
            data.copy_within(conn, stop * w, start * w, meta.data_bytes - stop * w)?;
            data.resize(conn, meta.data_bytes, meta.data_bytes - count * w)?;
            meta.data_bytes -= count * w;
        }
        None => {
            let (first, _) = element_bounds(conn, meta, start)?;
            let (_, last) = element_bounds(conn, meta, stop - 1)?;
            if first > last {
                return Err(Error::Corrupted(format!(
                    "column {:?} has inconsistent offsets",
                    meta.name
                )));
            }
            let removed = last - first;
            let data = meta.data();
            data.copy_within(conn, last, first, meta.data_bytes - last)?;
            data.resize(conn, meta.data_bytes, meta.data_bytes - removed)?;
            let index = meta.index();
            let old_index = meta.len * INDEX_WIDTH;
            index.copy_within(
                conn,
                stop * INDEX_WIDTH,
                start * INDEX_WIDTH,
                old_index - stop * INDEX_WIDTH,
            )?;
            index.resize(conn, old_index, old_index - count * INDEX_WIDTH)?;
            let shrunk = ColumnMeta {
                len: meta.len - count,
                ..meta.clone()
            };
            shift_ends(conn, &shrunk, start, removed.wrapping_neg())?;
            meta.data_bytes -= removed;
        }
    }
    meta.len -= count;
    Ok(())
}
