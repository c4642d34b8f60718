//! The key-value blob table: small values inline in the key row, large values as ordered chunk
//! rows, switched in atomically.
//!
//! Tables of a table named `T` (see `docs/format.md`):
//! - `T` (WITHOUT ROWID, keyed by the key bytes): one row per key with its metadata and either
//!   the inline value or the id of its chunked blob.
//! - `T__chunks`: chunk rows. A chunk's rowid is `blob_id << 32 | seq`, so a chunk is found by
//!   arithmetic alone and all chunks of one blob form one contiguous rowid range. A chunk row
//!   holds no bytes, only the id of its content in `T__content`.
//! - `T__content`: chunk contents, each stored once under its BLAKE3 hash with a count of the
//!   chunk rows referring to it (deduplication). Triggers on `T__chunks` keep the count and
//!   delete a content row when its last reference goes.
//! - `T__pending`: blob ids handed out to writers that have not finished. The AUTOINCREMENT
//!   sequence guarantees a blob id is never reused, so an open reader can never see another
//!   value's bytes under its id.
//!
//! Triggers on `T` delete a blob's chunks when its key row is deleted or switched to another
//! blob, in the same transaction, so no chunk is ever referenced but missing.
//!
//! - Branches (see `branches`): `T__branches`, `T__branch_epoch`, `T__merges`, `T__touched` and
//!   one key table `T__b<id>` per branch, sharing `T__chunks` and `T__content`.
//! - `T__cache`: the table's cache policy (byte limit, eviction order, default TTL, dedup
//!   mode) and counters; `T__access` (least-recently/frequently-used eviction only): last use
//!   and use count per key.
//!
//! Modules: `types` (limits and plain data types), `schema` (names, validation, DDL), `sql`
//! (every statement's text), `read`, `write`, `maintenance` (stats, checks, reclaiming
//! abandoned uploads), `stream` (chunked writers and readers), `policy` (the stored cache
//! policy and what it installs), `eviction` (limits, pruning by age and idleness),
//! `shared_values` (deduplicated small values) and `runtime` (per-table state in memory).

mod branch_diff;
mod branch_merge;
mod branches;
mod compression;
mod eviction;
mod history;
mod maintenance;
mod policy;
mod read;
mod release;
pub(crate) mod runtime;
mod schema;
mod shared_values;
mod sql;
mod stream;
mod tuple_key;
mod types;
mod write;

pub use branch_diff::{Change, DiffCursor, DiffEntry, DiffSummary};
pub use branch_merge::{MergeReport, MergeStrategy};
pub use branches::{validate_branch_name, BranchInfo, MAIN_BRANCH};
pub use history::{HistoryEntry, VersionEnd};
pub use policy::{CacheCounters, CachePolicy, Dedup, Eviction, History, PolicyChange};
pub use runtime::{ACCESS_FLUSH_INTERVAL, MAX_RECORDED_KEYS};
pub use schema::{kv_table_names, validate_chunk_size, validate_key, validate_table_name};
pub use stream::{BlobReader, BlobWriter, Staged, StagedOwned};
pub use tuple_key::{decode_tuple, encode_tuple, TupleItem, MAX_INT_BYTES, MAX_TUPLE_DEPTH};
pub use types::{
    inline_max_for_page, BlobRef, Condition, Encoding, EntryInfo, KeyKind, KeyRange, Located,
    PutItem, PutOptions, ScanPage, StoredValue, TableStats, ValueLocation, DEFAULT_CHUNK_SIZE,
    INLINE_MAX, MAX_CHUNK_SIZE, MAX_KEY_LEN,
};

use sql::Sql;

/// One key-value table in a [`Store`](crate::Store). Cheap to clone; holds no connection of its
/// own.
#[derive(Debug, Clone)]
pub struct KvTable {
    name: String,
    /// The key rows' table: `name` on the main branch, `name__b<id>` on a branch.
    rows: String,
    /// The branch's id (0: the main branch).
    branch: i64,
    /// The branch's name.
    branch_name: String,
    /// Largest inline value for the file's page size.
    inline_max: usize,
    chunk_size: usize,
    /// Statement text, shared by clones so it is built once per `open`.
    sql: std::sync::Arc<Sql>,
    /// In-memory state shared by every handle on this table in the same open vault.
    runtime: std::sync::Arc<runtime::TableRuntime>,
}

impl KvTable {
    /// The table's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name of the branch this handle reads and writes ([`MAIN_BRANCH`] unless it was
    /// opened with [`KvTable::open_branch`]).
    #[must_use]
    pub fn branch_name(&self) -> &str {
        &self.branch_name
    }

    /// Whether this handle is on a branch other than the main one.
    #[must_use]
    pub fn is_branch(&self) -> bool {
        self.branch != 0
    }

    /// Largest value stored inline in its key row: the smallest of [`INLINE_MAX`], the chunk
    /// size and what fits the file's pages ([`types::inline_max_for_page`]).
    #[must_use]
    pub fn inline_limit(&self) -> usize {
        self.inline_max.min(self.chunk_size)
    }

    /// Chunk size used for new chunked values.
    #[must_use]
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }
}
