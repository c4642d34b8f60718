//! Limits and the plain data types of a key-value table: what callers pass in and get back.

use crate::error::{Error, Result};

/// Largest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 1 << 20;
/// Largest accepted chunk size (well below SQLite's 1 GB value limit).
pub const MAX_CHUNK_SIZE: usize = 256 << 20;
/// Default chunk size: 1 MiB.
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;
/// Values up to this size (and up to the chunk size, and up to what fits a page: see
/// [`inline_max_for_page`]) are stored inline in the key row; larger ones go to the
/// deduplicated chunk store. A content reference would cost about as much as a value this
/// small.
pub const INLINE_MAX: usize = 4096;

/// Bytes of a key row besides its value: the record header, a typical key and the integer
/// columns.
const ROW_OVERHEAD: usize = 100;

/// The largest value stored inline in a file of `page_size`-byte pages: a key row whose
/// payload exceeds what SQLite keeps on an index page ((U - 12) * 64 / 255 - 23 bytes for
/// usable size U) spills the rest to an overflow page of its own, so a 1.2 KB value took 4.7
/// KB of file (`docs/performance.md`). Such values go to the chunk store, which packs them.
#[must_use]
pub fn inline_max_for_page(page_size: usize) -> usize {
    let local = (page_size.saturating_sub(12) * 64 / 255).saturating_sub(23);
    INLINE_MAX.min(local.saturating_sub(ROW_OVERHEAD))
}
/// Blob ids must fit in the upper 31 bits of a chunk rowid.
pub(super) const MAX_BLOB_ID: i64 = (1 << 31) - 1;
/// Chunks per blob are addressed by the lower 32 bits of a chunk rowid.
pub(super) const MAX_CHUNKS_PER_BLOB: u64 = 1 << 32;

/// How a key was given, so it can be returned as the same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Raw bytes.
    Bytes = 0,
    /// A UTF-8 string (stored as its bytes).
    Str = 1,
    /// A tuple (stored in its order-preserving encoding, see [`super::encode_tuple`]).
    Tuple = 2,
}

impl KeyKind {
    /// Reads a stored kind code.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for an unknown code.
    pub fn from_i64(value: i64) -> Result<Self> {
        match value {
            0 => Ok(Self::Bytes),
            1 => Ok(Self::Str),
            2 => Ok(Self::Tuple),
            other => Err(Error::Corrupted(format!("unknown key kind {other}"))),
        }
    }
}

/// How the layer above reads a value's bytes: a small code kept beside the value (the key
/// row's `encoding` column), never inside it, so raw bytes are never misread as a packed
/// object. The core stores and returns it without interpreting it; [`Encoding::RAW`] (0) is raw
/// bytes, the default of every write. The codes the Python package assigns are listed in
/// `docs/format.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Encoding(pub u8);

impl Encoding {
    /// Raw bytes, returned as they were given.
    pub const RAW: Self = Self(0);

    /// The code as stored in the key row.
    #[must_use]
    pub fn code(self) -> i64 {
        i64::from(self.0)
    }

    /// Reads a stored code; a value outside `0..=255` means a damaged row.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a code outside `0..=255`.
    pub fn from_i64(value: i64) -> Result<Self> {
        u8::try_from(value)
            .map(Self)
            .map_err(|_| Error::Corrupted(format!("unknown value encoding {value}")))
    }
}

/// A value's bytes with the encoding stored beside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    /// The bytes as stored.
    pub bytes: Vec<u8>,
    /// How the layer that wrote them reads them.
    pub encoding: Encoding,
}

/// Where a value's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueLocation {
    /// The whole value, read from the key row.
    Inline(Vec<u8>),
    /// A chunked blob.
    Chunked(BlobRef),
}

/// A located value: where its bytes are, and how they are encoded.
pub type Located = (ValueLocation, Encoding);

/// A chunked blob: enough to read any byte range of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRef {
    /// The blob's id (upper bits of its chunk rowids).
    pub blob_id: i64,
    /// Total length in bytes.
    pub size: u64,
    /// Length of every chunk but the last.
    pub chunk_size: u64,
}

impl BlobRef {
    /// Rowid of chunk `seq` of this blob.
    #[must_use]
    pub fn chunk_rowid(&self, seq: u64) -> i64 {
        chunk_rowid(self.blob_id, seq)
    }

    /// Number of chunks.
    #[must_use]
    pub fn chunk_count(&self) -> u64 {
        self.size.div_ceil(self.chunk_size.max(1))
    }
}

/// Rowid of chunk `seq` of blob `blob_id`.
pub(super) fn chunk_rowid(blob_id: i64, seq: u64) -> i64 {
    // blob_id < 2^31 and seq < 2^32, so this never overflows i64.
    (blob_id << 32) | i64::try_from(seq).unwrap_or(0)
}

/// Metadata of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Value length in bytes.
    pub size: u64,
    /// Per-key write counter, starting at 1.
    pub version: i64,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
    /// Last write time, ms since the epoch.
    pub updated_at_ms: i64,
    /// Whether the value is stored as chunks.
    pub chunked: bool,
    /// When the key expires, ms since the epoch (`None`: never).
    pub expires_at_ms: Option<i64>,
    /// The value's encoding.
    pub encoding: Encoding,
}

/// Storage figures of one table (see [`KvTable::stats`](super::KvTable::stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableStats {
    /// Number of keys.
    pub keys: u64,
    /// Sum of value lengths.
    pub logical_bytes: u64,
    /// Number of chunk references (of finished and unfinished values).
    pub chunks: u64,
    /// Bytes the chunk references stand for (before deduplication).
    pub chunk_bytes: u64,
    /// Bytes of values stored inline in key rows.
    pub inline_bytes: u64,
    /// Distinct chunk contents stored (each once, however many chunks refer to it).
    pub unique_chunks: u64,
    /// Bytes of the distinct chunk contents: what chunked values really occupy.
    pub content_bytes: u64,
    /// Expired keys not yet pruned.
    pub expired_keys: u64,
    /// Uploads started and not yet finished or reclaimed.
    pub pending_uploads: u64,
}

/// Which keys a scan visits, in bytewise order: the intersection of every bound given.
#[derive(Debug, Clone, Default)]
pub struct KeyRange {
    /// Only keys starting with these bytes.
    pub prefix: Option<Vec<u8>>,
    /// Only keys `>=` this one.
    pub start: Option<Vec<u8>>,
    /// Only keys `<` this one.
    pub end: Option<Vec<u8>>,
    /// Continuation of a paged scan: only keys strictly after this one (strictly before it
    /// when `reverse`).
    pub after: Option<Vec<u8>>,
    /// Visit keys in descending order.
    pub reverse: bool,
}

impl KeyRange {
    /// A WHERE clause (numbered parameters, starting at `?1`) selecting this range, written as
    /// plain index bounds so SQLite seeks to the first key and stops at the last.
    pub(super) fn sql_filter(&self) -> (String, Vec<rusqlite::types::Value>) {
        use rusqlite::types::Value;
        let (prefix_lo, prefix_hi) = prefix_bounds(self.prefix.as_deref());
        // Tightest lower bound (value, inclusive) and upper bound (value, exclusive).
        let mut lower: (Vec<u8>, bool) = (prefix_lo, true);
        let mut raise = |candidate: &[u8], inclusive: bool| {
            if candidate > lower.0.as_slice() || (candidate == lower.0.as_slice() && !inclusive) {
                lower = (candidate.to_vec(), inclusive);
            }
        };
        if let Some(start) = &self.start {
            raise(start, true);
        }
        if let (Some(after), false) = (&self.after, self.reverse) {
            raise(after, false);
        }
        let mut upper: Option<Vec<u8>> = prefix_hi;
        let mut cut = |candidate: &[u8]| {
            if upper.as_ref().is_none_or(|u| candidate < u.as_slice()) {
                upper = Some(candidate.to_vec());
            }
        };
        if let Some(end) = &self.end {
            cut(end);
        }
        if let (Some(after), true) = (&self.after, self.reverse) {
            cut(after);
        }
        let mut args = vec![Value::Blob(lower.0)];
        let mut clauses = vec![format!("key {} ?1", if lower.1 { ">=" } else { ">" })];
        if let Some(upper) = upper {
            args.push(Value::Blob(upper));
            clauses.push(format!("key < ?{}", args.len()));
        }
        (clauses.join(" AND "), args)
    }
}

/// One item of [`KvTable::put_many`](super::KvTable::put_many).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutItem<'a> {
    /// The key's bytes.
    pub key: &'a [u8],
    /// How the key was given.
    pub kind: KeyKind,
    /// The value's bytes.
    pub value: &'a [u8],
    /// When the value expires (ms since the epoch); `None` never.
    pub expires_at_ms: Option<i64>,
    /// The value's encoding.
    pub encoding: Encoding,
}

impl<'a> PutItem<'a> {
    /// A raw value that never expires.
    #[must_use]
    pub fn new(key: &'a [u8], kind: KeyKind, value: &'a [u8]) -> Self {
        Self {
            key,
            kind,
            value,
            expires_at_ms: None,
            encoding: Encoding::RAW,
        }
    }

    /// The same item expiring at `expires_at_ms` (or never with `None`).
    #[must_use]
    pub fn expiring(self, expires_at_ms: Option<i64>) -> Self {
        Self {
            expires_at_ms,
            ..self
        }
    }

    /// The same item with another encoding.
    #[must_use]
    pub fn encoded(self, encoding: Encoding) -> Self {
        Self { encoding, ..self }
    }
}

/// Expiry, precondition and encoding of a write.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutOptions {
    /// When the value expires (ms since the epoch); `None` never.
    pub expires_at_ms: Option<i64>,
    /// What must hold before the write.
    pub condition: Condition,
    /// The value's encoding (raw bytes by default).
    pub encoding: Encoding,
}

/// What a write stores beside the value's bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowMeta {
    pub(super) kind: KeyKind,
    pub(super) encoding: Encoding,
    /// The store's clock at the write: the write time, and what decides whether an old value
    /// has expired.
    pub(super) now: i64,
    pub(super) expires_at_ms: Option<i64>,
}

/// A precondition for a write (compare-and-swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Write unconditionally.
    #[default]
    Always,
    /// Write only if the key is absent (or expired).
    IfAbsent,
    /// Write only if the key's current version is this one.
    IfVersion(i64),
}

/// One page of [`KvTable::scan_items`](super::KvTable::scan_items) (values read), or of
/// [`KvTable::locate_items`](super::KvTable::locate_items) (values located).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage<V = StoredValue> {
    /// Key, key kind and value of each live item, in scan order.
    pub items: Vec<(Vec<u8>, KeyKind, V)>,
    /// The last key examined (returned or found deleted), where the next page continues
    /// (as [`KeyRange::after`]); `None` when the range held no more keys.
    pub last_key: Option<Vec<u8>>,
}

/// `[lo, hi)` bounds of all keys starting with `prefix` (hi is `None` when unbounded).
fn prefix_bounds(prefix: Option<&[u8]>) -> (Vec<u8>, Option<Vec<u8>>) {
    let Some(prefix) = prefix else {
        return (Vec::new(), None);
    };
    // The smallest key greater than every key with this prefix: drop trailing 0xFF bytes and
    // increment the last remaining byte. A prefix of only 0xFF bytes has no upper bound.
    let mut hi = prefix.to_vec();
    while let Some(&last) = hi.last() {
        if last == 0xFF {
            hi.pop();
        } else {
            *hi.last_mut().expect("non-empty") += 1;
            return (prefix.to_vec(), Some(hi));
        }
    }
    (prefix.to_vec(), None)
}

/// `n` as a length in memory, refused where it does not fit (a 32-bit build).
pub(super) fn usize_of(n: u64) -> Result<usize> {
    usize::try_from(n)
        .map_err(|_| Error::InvalidArgument(format!("{n} bytes do not fit in memory here")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds_handle_ff_bytes() {
        assert_eq!(prefix_bounds(None), (vec![], None));
        assert_eq!(
            prefix_bounds(Some(b"ab")),
            (b"ab".to_vec(), Some(b"ac".to_vec()))
        );
        assert_eq!(
            prefix_bounds(Some(&[0x61, 0xFF, 0xFF])),
            (vec![0x61, 0xFF, 0xFF], Some(vec![0x62]))
        );
        assert_eq!(prefix_bounds(Some(&[0xFF])), (vec![0xFF], None));
        assert_eq!(prefix_bounds(Some(b"")), (vec![], None));
    }

    #[test]
    fn chunk_rowids_are_contiguous_per_blob() {
        let blob = BlobRef {
            blob_id: 3,
            size: 10,
            chunk_size: 4,
        };
        assert_eq!(blob.chunk_count(), 3);
        assert_eq!(blob.chunk_rowid(1) - blob.chunk_rowid(0), 1);
        assert!(chunk_rowid(2, MAX_CHUNKS_PER_BLOB - 1) < chunk_rowid(3, 0));
    }
}

#[cfg(test)]
mod inline_tests {
    use super::*;

    #[test]
    fn inline_values_fit_the_page_they_are_stored_on() {
        // SQLite keeps at most (U - 12) * 64 / 255 - 23 payload bytes of an index row on the
        // page: 1002 for 4 KiB pages.
        assert_eq!(inline_max_for_page(4096), 1002 - ROW_OVERHEAD);
        assert_eq!(inline_max_for_page(8192), 2030 - ROW_OVERHEAD);
        assert_eq!(inline_max_for_page(65536), INLINE_MAX);
        assert_eq!(inline_max_for_page(512), 2);
    }
}
