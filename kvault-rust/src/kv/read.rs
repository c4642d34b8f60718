//! Reading: locating values, whole and ranged reads, metadata, counts and scans.

use std::mem::MaybeUninit;

use rusqlite::{params, Connection, OptionalExtension};

use super::types::{
    usize_of, BlobRef, Encoding, EntryInfo, KeyKind, KeyRange, Located, StoredValue, ValueLocation,
    MAX_CHUNKS_PER_BLOB, MAX_CHUNK_SIZE,
};
// Through the re-export, which lib.rs does not name yet.
use super::{KvTable, ScanPage};
use crate::codec::CODEC_NONE;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::uninit::{as_unfilled, assume_filled, copy_into, zero};

impl KvTable {
    /// Returns where key's value is and its encoding, or `None` if the key is absent or expired
    /// at `now` (ms).
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupted`] for a damaged key row.
    pub fn locate(
        &self,
        conn: &Connection,
        key: &[u8],
        now: i64,
    ) -> Result<Option<(ValueLocation, Encoding)>> {
        let mut stmt = conn.prepare_cached(&self.sql.get)?;
        let row = stmt
            .query_row(params![key, now], |row| {
                let blob_id: Option<i64> = row.get(1)?;
                let encoding: i64 = row.get(4)?;
                let place = match blob_id {
                    None => (
                        Some(
                            row.get_ref(0)?
                                .as_blob_or_null()?
                                .unwrap_or_default()
                                .to_vec(),
                        ),
                        0,
                        row.get::<_, i64>(2)?,
                        0,
                    ),
                    Some(blob_id) => (
                        None,
                        blob_id,
                        row.get(2)?,
                        row.get::<_, Option<i64>>(3)?.unwrap_or(0),
                    ),
                };
                Ok((place, encoding))
            })
            .optional()?;
        let Some(((inline, blob_id, size, chunk_size), encoding)) = row else {
            return Ok(None);
        };
        let encoding = Encoding::from_i64(encoding)?;
        // The row is read from disk: check it before any arithmetic relies on it.
        let (Ok(size), Ok(chunk_size)) = (u64::try_from(size), u64::try_from(chunk_size)) else {
            return Err(Error::Corrupted(format!(
                "key row has negative size {size} or chunk size {chunk_size}"
            )));
        };
        match inline {
            Some(bytes) if bytes.len() as u64 == size => {
                Ok(Some((ValueLocation::Inline(bytes), encoding)))
            }
            Some(bytes) => Err(Error::Corrupted(format!(
                "inline value has {} bytes but its key row records {size}",
                bytes.len()
            ))),
            None if chunk_size == 0 || size.div_ceil(chunk_size) > MAX_CHUNKS_PER_BLOB => {
                Err(Error::Corrupted(format!(
                    "chunked value of {size} bytes has an impossible chunk size {chunk_size}"
                )))
            }
            None => Ok(Some((
                ValueLocation::Chunked(BlobRef {
                    blob_id,
                    size,
                    chunk_size,
                }),
                encoding,
            ))),
        }
    }

    /// Reads a whole value into memory, or `None` if the key is absent. The value's encoding is
    /// not returned (see [`KvTable::get_value`]).
    ///
    /// # Errors
    /// [`Error::Corrupted`] if a chunk is missing or has the wrong length; SQLite errors.
    pub fn get(&self, store: &mut Store, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_value(store, key)?.map(|v| v.bytes))
    }

    /// Reads a whole value and its encoding, or `None` if the key is absent.
    ///
    /// # Errors
    /// As [`KvTable::get`].
    pub fn get_value(&self, store: &mut Store, key: &[u8]) -> Result<Option<StoredValue>> {
        // Inline values need one statement; chunked ones a snapshot so the key row and the
        // chunks come from the same moment.
        let now = store.now_ms();
        let found = match store.read_latest(|conn| self.locate(conn, key, now))? {
            None => None,
            Some((ValueLocation::Inline(bytes), encoding)) => Some(StoredValue { bytes, encoding }),
            Some((ValueLocation::Chunked(_), _)) => {
                store.read(|conn| self.get_in(conn, key, now))?
            }
        };
        self.note_read(key, found.is_some(), now);
        Ok(found)
    }

    /// Reads a located chunked value whole into `out` (exactly `blob.size` bytes, which need
    /// not be initialised: a new bytes object, say) from one snapshot; returns `out`, every
    /// byte of it filled. For bindings that locate a value first and allocate for its size
    /// (one copy instead of two through a `Vec`): check the size with
    /// [`KvTable::verify_extent`] before allocating for it. The read itself checks each
    /// chunk's length.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `out` is not `blob.size` bytes; [`Error::ValueChanged`] if
    /// the value was replaced or deleted since it was located; otherwise as
    /// [`KvTable::read_blob_range`]. On an error `out` may be partly filled.
    pub fn read_value_into<'a>(
        &self,
        store: &mut Store,
        blob: &BlobRef,
        out: &'a mut [MaybeUninit<u8>],
    ) -> Result<&'a mut [u8]> {
        self.read_values_into(store, &mut [(blob, &mut *out)])?;
        // SAFETY: the read above returned Ok only once every byte of `out` was filled.
        Ok(unsafe { assume_filled(out) })
    }

    /// Locates many values from one snapshot: `None` where a key is absent or expired at the
    /// returned time (ms). Each chunked value's recorded size is checked against its last
    /// chunk ([`KvTable::verify_extent`]), so a binding may allocate for it and fill the
    /// buffers with [`KvTable::read_values_into`]: chunks are never rewritten, so what that
    /// reads later is the value located here, or [`Error::ValueChanged`]. Reads are not noted
    /// (see [`KvTable::note_read`]).
    ///
    /// # Errors
    /// As [`KvTable::locate`] and [`KvTable::verify_extent`].
    pub fn locate_many<K: AsRef<[u8]>>(
        &self,
        store: &mut Store,
        keys: &[K],
    ) -> Result<(i64, Vec<Option<Located>>)> {
        let now = store.now_ms();
        let located = store.read(|conn| {
            keys.iter()
                .map(|key| {
                    let found = self.locate(conn, key.as_ref(), now)?;
                    if let Some((ValueLocation::Chunked(blob), _)) = &found {
                        self.verify_extent(conn, blob)?;
                    }
                    Ok(found)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        Ok((now, located))
    }

    /// Reads located chunked values whole into their buffers (each exactly its value's
    /// `size` bytes, which need not be initialised) from one snapshot. On `Ok` every byte of
    /// every buffer is filled.
    ///
    /// # Errors
    /// As [`KvTable::read_value_into`]; on an error the buffers may be partly filled.
    pub fn read_values_into(
        &self,
        store: &mut Store,
        reads: &mut [(&BlobRef, &mut [MaybeUninit<u8>])],
    ) -> Result<()> {
        for (blob, out) in reads.iter() {
            if out.len() as u64 != blob.size {
                return Err(Error::InvalidArgument(format!(
                    "a {}-byte buffer for a {}-byte value",
                    out.len(),
                    blob.size
                )));
            }
        }
        store.read(|conn| {
            for (blob, out) in reads.iter_mut() {
                self.read_blob_range_uninit(conn, blob, 0, out)?;
            }
            Ok(())
        })
    }

    /// Records a read for least-recently/frequently-used eviction and the hit counters (in
    /// memory, written with the next write or by the maintenance thread; nothing when the
    /// policy does not track reads). For bindings with read paths of their own.
    pub fn note_read(&self, key: &[u8], found: bool, now: i64) {
        self.runtime.note_read(key, found, now);
    }

    /// Reads a whole value and its encoding with `conn`, which should hold a read snapshot
    /// (see [`Store::read`]) when the value may be chunked.
    ///
    /// # Errors
    /// As [`KvTable::get`].
    pub fn get_in(&self, conn: &Connection, key: &[u8], now: i64) -> Result<Option<StoredValue>> {
        match self.locate(conn, key, now)? {
            None => Ok(None),
            Some((ValueLocation::Inline(bytes), encoding)) => {
                Ok(Some(StoredValue { bytes, encoding }))
            }
            Some((ValueLocation::Chunked(blob), encoding)) => {
                self.verify_extent(conn, &blob)?;
                let mut bytes = vec![0u8; usize_of(blob.size)?];
                self.read_blob_range(conn, &blob, 0, &mut bytes)?;
                Ok(Some(StoredValue { bytes, encoding }))
            }
        }
    }

    /// Reads many values from one snapshot (`None` where absent), without their encodings
    /// (see [`KvTable::get_many_values`]).
    ///
    /// # Errors
    /// As [`KvTable::get`].
    pub fn get_many<K: AsRef<[u8]>>(
        &self,
        store: &mut Store,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let values = self.get_many_values(store, keys)?;
        Ok(values.into_iter().map(|v| v.map(|v| v.bytes)).collect())
    }

    /// Reads many values and their encodings from one snapshot (`None` where absent).
    ///
    /// # Errors
    /// As [`KvTable::get`].
    pub fn get_many_values<K: AsRef<[u8]>>(
        &self,
        store: &mut Store,
        keys: &[K],
    ) -> Result<Vec<Option<StoredValue>>> {
        let now = store.now_ms();
        let values: Vec<Option<StoredValue>> = store.read(|conn| {
            keys.iter()
                .map(|k| self.get_in(conn, k.as_ref(), now))
                .collect()
        })?;
        for (key, value) in keys.iter().zip(&values) {
            self.note_read(key.as_ref(), value.is_some(), now);
        }
        Ok(values)
    }

    /// Checks that a blob's last chunk exists with the length its recorded size implies, before
    /// anything is allocated for the size (a damaged size must not become a huge allocation).
    ///
    /// # Errors
    /// [`Error::ValueChanged`] if the chunks are gone; [`Error::Corrupted`] on a mismatch.
    pub fn verify_extent(&self, conn: &Connection, blob: &BlobRef) -> Result<()> {
        // One chunk no larger than a chunk may be: the allocation is bounded, and the read
        // checks the chunk's length before copying, so a second statement here would only cost
        // time (a third of a 100 KB get, measured).
        if blob.size == 0 || (blob.chunk_count() == 1 && blob.size <= MAX_CHUNK_SIZE as u64) {
            return Ok(());
        }
        let last = blob.chunk_count() - 1;
        let expected = blob.size - last * blob.chunk_size;
        let chunk_len = |coded: bool| -> Result<Option<i64>> {
            let sql = if coded {
                &self.sql.chunk_len_coded
            } else {
                &self.sql.chunk_len
            };
            Ok(conn
                .prepare_cached(sql)?
                .query_row([blob.chunk_rowid(last)], |r| r.get(0))
                .optional()?)
        };
        let mut found = chunk_len(self.runtime.coded())?;
        if found.is_some_and(|len| u64::try_from(len).ok() != Some(expected))
            && !self.runtime.coded()
            && self.probe_coded(conn)?
        {
            // Compressed since this process looked: its stored length is not its length.
            found = chunk_len(true)?;
        }
        match found {
            Some(len) if u64::try_from(len).ok() == Some(expected) => Ok(()),
            Some(len) => Err(Error::Corrupted(format!(
                "last chunk of blob {} has {len} bytes, its size implies {expected}",
                blob.blob_id
            ))),
            None => {
                let any: bool = conn
                    .prepare_cached(&self.sql.chunk_exists)?
                    .query_row([blob.chunk_rowid(0)], |r| r.get(0))?;
                Err(if any {
                    Error::Corrupted(format!(
                        "blob {} has fewer chunks than its size needs",
                        blob.blob_id
                    ))
                } else {
                    Error::ValueChanged
                })
            }
        }
    }

    /// Fills `out` with bytes `offset .. offset + out.len()` of a chunked blob.
    ///
    /// # Errors
    /// [`Error::ValueChanged`] if the blob's chunks are gone (the value was replaced or deleted),
    /// [`Error::Corrupted`] if a chunk has the wrong length, [`Error::InvalidArgument`] if the
    /// range runs past the end.
    pub fn read_blob_range(
        &self,
        conn: &Connection,
        blob: &BlobRef,
        offset: u64,
        out: &mut [u8],
    ) -> Result<()> {
        // SAFETY: the reader writes only bytes read from the file or decompressed.
        self.read_blob_range_uninit(conn, blob, offset, unsafe { as_unfilled(out) })?;
        Ok(())
    }

    /// [`KvTable::read_blob_range`] into memory that need not be initialised (a new bytes
    /// object, say): returns `out`, every byte of it filled.
    ///
    /// # Errors
    /// As [`KvTable::read_blob_range`]; on an error `out` may be partly filled.
    pub fn read_blob_range_uninit<'a>(
        &self,
        conn: &Connection,
        blob: &BlobRef,
        offset: u64,
        out: &'a mut [MaybeUninit<u8>],
    ) -> Result<&'a mut [u8]> {
        let end = offset + out.len() as u64;
        if end > blob.size {
            return Err(Error::InvalidArgument(format!(
                "read of bytes {offset}..{end} runs past the end of a {}-byte value",
                blob.size
            )));
        }
        let mut pos = offset;
        let mut written = 0usize;
        let mut handle: Option<rusqlite::blob::Blob<'_>> = None;
        let mut scratch = Vec::new();
        while written < out.len() {
            let seq = pos / blob.chunk_size;
            let within = pos % blob.chunk_size;
            let this_chunk_len = (blob.size - seq * blob.chunk_size).min(blob.chunk_size);
            let take = usize_of((this_chunk_len - within).min((out.len() - written) as u64))?;
            // Chunk rows of a replaced or deleted value are gone (and blob ids are never
            // reused), so a missing row means the value changed under the reader.
            let (cid, code) = self
                .chunk_content(conn, blob.chunk_rowid(seq))?
                .ok_or(Error::ValueChanged)?;
            let part = &mut out[written..written + take];
            if code != CODEC_NONE {
                // A compressed chunk is decompressed whole; straight into the caller's buffer
                // when the read covers all of it.
                if take as u64 == this_chunk_len {
                    self.read_compressed_chunk(conn, cid, code, zero(part))?;
                } else {
                    scratch.resize(usize_of(this_chunk_len)?, 0);
                    self.read_compressed_chunk(conn, cid, code, &mut scratch)?;
                    let from = usize_of(within)?;
                    copy_into(part, &scratch[from..from + take]);
                }
                written += take;
                pos += take as u64;
                continue;
            }
            let opened = match handle.as_mut() {
                Some(h) => h.reopen(cid),
                None => conn
                    .blob_open(
                        rusqlite::MAIN_DB,
                        self.sql.content_table.as_str(),
                        "data",
                        cid,
                        true,
                    )
                    .map(|h| handle = Some(h)),
            };
            if let Err(err) = opened {
                return Err(match Error::from(err) {
                    Error::Sqlite(_) => Error::Corrupted(format!(
                        "chunk {seq} of blob {} refers to missing content {cid}",
                        blob.blob_id
                    )),
                    other => other,
                });
            }
            let h = handle.as_ref().expect("blob handle opened above");
            if h.len() as u64 != this_chunk_len {
                // Another process may have started compressing since this one looked: read
                // the chunk again by its code.
                if !self.runtime.coded() && self.probe_coded(conn)? {
                    continue;
                }
                return Err(Error::Corrupted(format!(
                    "chunk {seq} of blob {} has {} bytes, expected {this_chunk_len}",
                    blob.blob_id,
                    h.len()
                )));
            }
            h.raw_read_at_exact(part, usize_of(within)?)?;
            written += take;
            pos += take as u64;
        }
        // SAFETY: the loop ends only once `written` covers `out`, each part filled by a blob
        // read, a decompression or a copy.
        Ok(unsafe { assume_filled(out) })
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn exists(&self, store: &mut Store, key: &[u8]) -> Result<bool> {
        let now = store.now_ms();
        store.read_latest(|conn| {
            Ok(conn
                .prepare_cached(&self.sql.exists)?
                .exists(params![key, now])?)
        })
    }

    /// Metadata of `key`, or `None` when absent.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn info(&self, store: &mut Store, key: &[u8]) -> Result<Option<EntryInfo>> {
        let now = store.now_ms();
        store.read_latest(|conn| {
            let mut stmt = conn.prepare_cached(&self.sql.info)?;
            let row = stmt
                .query_row(params![key, now], |r| {
                    let info = EntryInfo {
                        size: r.get::<_, i64>(0)?.try_into().unwrap_or(0),
                        version: r.get(1)?,
                        created_at_ms: r.get(2)?,
                        updated_at_ms: r.get(3)?,
                        chunked: r.get(4)?,
                        expires_at_ms: r.get(5)?,
                        encoding: Encoding::RAW,
                    };
                    Ok((info, r.get::<_, i64>(6)?))
                })
                .optional()?;
            // A damaged encoding code is an error here as in every read, not a guess.
            row.map(|(info, code)| {
                Ok(EntryInfo {
                    encoding: Encoding::from_i64(code)?,
                    ..info
                })
            })
            .transpose()
        })
    }

    /// Number of keys.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn len(&self, store: &mut Store) -> Result<u64> {
        let now = store.now_ms();
        let n: i64 = store.read_latest(|conn| {
            Ok(conn
                .prepare_cached(&self.sql.count)?
                .query_row([now], |r| r.get(0))?)
        })?;
        Ok(n.try_into().unwrap_or(0))
    }

    /// Number of live keys in `range` (its `after` and `reverse` are ignored).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn count_range(&self, store: &mut Store, range: &KeyRange) -> Result<u64> {
        let range = KeyRange {
            after: None,
            reverse: false,
            ..range.clone()
        };
        let (filter, mut args) = range.sql_filter();
        args.push(rusqlite::types::Value::Integer(store.now_ms()));
        let sql = self.sql.count_range(&filter, args.len());
        let n: i64 = store.read_latest(|conn| {
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))?)
        })?;
        Ok(n.try_into().unwrap_or(0))
    }

    /// Whether the table has no keys.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn is_empty(&self, store: &mut Store) -> Result<bool> {
        Ok(self.len(store)? == 0)
    }

    /// One page of keys in bytewise order: at most `limit` keys of `range`.
    /// Continue with `range.after` set to the last key returned.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn scan_keys(
        &self,
        store: &mut Store,
        range: &KeyRange,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, KeyKind)>> {
        let (filter, mut args) = range.sql_filter();
        args.push(rusqlite::types::Value::Integer(store.now_ms()));
        let now_param = args.len();
        args.push(rusqlite::types::Value::Integer(
            i64::try_from(limit).unwrap_or(i64::MAX),
        ));
        let sql = self
            .sql
            .scan_keys(&filter, now_param, range.reverse, args.len());
        store.read_latest(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (key, kind) = row?;
                out.push((key, KeyKind::from_i64(kind)?));
            }
            Ok(out)
        })
    }

    /// One page of items (key, kind and value) of `range`, in key order: the keys of one
    /// [`KvTable::scan_keys`] page of at most `limit` keys (a limit of 0 is taken as 1), whose
    /// values are then read from one snapshot until `max_bytes` of values are collected (the
    /// first item always counts, however large). Keys deleted between taking the keys and
    /// reading the values are skipped, so a page can be empty while `last_key` is not. Continue
    /// with `range.after` set to the page's `last_key` until it is `None`.
    ///
    /// # Errors
    /// As [`KvTable::get`].
    pub fn scan_items(
        &self,
        store: &mut Store,
        range: &KeyRange,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ScanPage> {
        self.page_of(store, range, limit, max_bytes, |conn, key, now| {
            Ok(self.get_in(conn, key, now)?.map(|value| {
                let len = value.bytes.len() as u64;
                (value, len)
            }))
        })
    }

    /// As [`KvTable::scan_items`], with each value located instead of read (and, if chunked,
    /// its size checked against its last chunk), for bindings that read the values into
    /// buffers of their own with [`KvTable::read_values_into`] (see
    /// [`KvTable::locate_many`]).
    ///
    /// # Errors
    /// As [`KvTable::locate_many`].
    pub fn locate_items(
        &self,
        store: &mut Store,
        range: &KeyRange,
        limit: usize,
        max_bytes: usize,
    ) -> Result<ScanPage<Located>> {
        self.page_of(store, range, limit, max_bytes, |conn, key, now| {
            let Some(found) = self.locate(conn, key, now)? else {
                return Ok(None);
            };
            let len = match &found.0 {
                ValueLocation::Inline(bytes) => bytes.len() as u64,
                ValueLocation::Chunked(blob) => {
                    self.verify_extent(conn, blob)?;
                    blob.size
                }
            };
            Ok(Some((found, len)))
        })
    }

    /// One page of `range` (see [`KvTable::scan_items`]), each item made by `item` (the item
    /// and its value's length, or `None` for a key gone since the keys were taken) from one
    /// snapshot.
    fn page_of<V>(
        &self,
        store: &mut Store,
        range: &KeyRange,
        limit: usize,
        max_bytes: usize,
        mut item: impl FnMut(&Connection, &[u8], i64) -> Result<Option<(V, u64)>>,
    ) -> Result<ScanPage<V>> {
        let keys = self.scan_keys(store, range, limit.max(1))?;
        let now = store.now_ms();
        store.read(|conn| {
            let mut page = ScanPage {
                items: Vec::with_capacity(keys.len()),
                last_key: None,
            };
            let mut bytes = 0u64;
            for (key, kind) in &keys {
                // The byte budget is checked before each item, so the first always fits.
                if bytes >= max_bytes as u64 && !page.items.is_empty() {
                    break;
                }
                if let Some((value, len)) = item(conn, key, now)? {
                    bytes = bytes.saturating_add(len);
                    page.items.push((key.clone(), *kind, value));
                }
                page.last_key = Some(key.clone());
            }
            Ok(page)
        })
    }
}
