//! Every statement the table kind runs on its own tables, in one place. Table names are
//! validated before they are spliced in (see `schema`); the DDL lives in `schema`.

/// SQL text for one table, built once per [`super::KvTable::open`].
/// Every read filters out expired rows: `?N` "now" is the store's clock in ms.
#[derive(Debug)]
pub(super) struct Sql {
    /// The table's name: its chunk, content, pending and policy tables are named after it.
    table: String,
    /// The key rows' table: the table itself for the main branch, `T__b<id>` for a branch.
    rows: String,
    pub(super) get: String,
    pub(super) insert_new: String,
    pub(super) insert_inline: String,
    pub(super) insert_inline_group: String,
    pub(super) update_existing: String,
    pub(super) delete: String,
    pub(super) exists: String,
    pub(super) count: String,
    pub(super) info: String,
    pub(super) version: String,
    pub(super) touch: String,
    pub(super) prune: String,
    pub(super) insert_content: String,
    /// A content row not stored before, with its one reference counted, under the id
    /// [`Sql::next_content_id`] gave (see `store_prepared`).
    pub(super) insert_new_content: String,
    /// The id the next content row gets: the one SQLite would choose (one past the largest).
    pub(super) next_content_id: String,
    pub(super) find_content: String,
    pub(super) insert_chunk: String,
    pub(super) chunk_content: String,
    /// The `_coded` statements: for a content table with the codec columns (`compression`).
    pub(super) insert_content_coded: String,
    pub(super) find_content_coded: String,
    /// A chunk's content id and the code its bytes are stored under.
    pub(super) chunk_content_coded: String,
    /// A content's stored bytes, by content id.
    pub(super) content_data: String,
    /// Length of one chunk's content, by chunk rowid (the last chunk, in `verify_extent`).
    pub(super) chunk_len: String,
    pub(super) chunk_len_coded: String,
    /// Whether a chunk row exists, by rowid.
    pub(super) chunk_exists: String,
    pub(super) new_pending: String,
    pub(super) drop_pending: String,
    pub(super) drop_chunks: String,
    pub(super) list_pending: String,
    /// Name of the content table, for incremental BLOB reads of chunk bytes.
    pub(super) content_table: String,
    pub(super) clear: String,
    /// The policy as far as a plain write cares: 0 (plain), 1 (plain, chunks not
    /// deduplicated), 2 (limit, read tracking, small-value dedup or history: the full write
    /// path).
    pub(super) write_mode: String,
}

/// The length before compression of a content row (columns prefixed by `alias`): its
/// `raw_size` when compressed, else the length of its bytes.
fn raw_length(alias: &str, coded: bool) -> String {
    if coded {
        format!("coalesce({alias}raw_size, length({alias}data))")
    } else {
        format!("length({alias}data)")
    }
}

/// How many inline values one multi-row insert of a batch writes. A statement's fixed costs
/// (reset, cursor open, halt) then fall on many rows; past a few dozen rows the per-row cost no
/// longer drops (figures in docs/performance.md).
pub(super) const INSERT_GROUP_ROWS: usize = 32;

/// Savepoint around one grouped insert, so a group that hits an existing key can be undone
/// and redone row by row inside the caller's transaction.
pub(super) const SAVEPOINT_GROUP: &str = "SAVEPOINT ambervault_group";
/// Undoes the grouped insert (the savepoint stays open).
pub(super) const ROLLBACK_GROUP: &str = "ROLLBACK TO ambervault_group";
/// Closes the savepoint, keeping its work.
pub(super) const RELEASE_GROUP: &str = "RELEASE ambervault_group";
/// Undoes and closes the savepoint after an error.
pub(super) const ABANDON_GROUP: &str = "ROLLBACK TO ambervault_group; RELEASE ambervault_group";

/// Parameters per row of [`insert_inline_group`]: key, kind, encoding, size, value.
pub(super) const GROUP_ROW_PARAMS: usize = 5;

/// `INSERT OR IGNORE` of [`INSERT_GROUP_ROWS`] inline values without expiry: `?1` is the time,
/// then key, kind, encoding, size and value for each row.
fn insert_inline_group(r: &str) -> String {
    let rows: Vec<String> = (0..INSERT_GROUP_ROWS)
        .map(|i| {
            let p = 2 + GROUP_ROW_PARAMS * i;
            format!(
                "(?{p}, ?{}, ?{}, ?{}, ?{}, 1, ?1, ?1)",
                p + 1,
                p + 2,
                p + 3,
                p + 4
            )
        })
        .collect();
    format!(
        "INSERT OR IGNORE INTO \"{r}\" (key, key_kind, encoding, size, inline_data, version, \
         created_at, updated_at) VALUES {}",
        rows.join(", ")
    )
}

/// SQL condition: the row has not expired at parameter `?{n}`.
fn live(n: u32) -> String {
    format!("(expires_at IS NULL OR expires_at > ?{n})")
}

/// `n` as a parameter number (a statement never has anywhere near `u32::MAX` parameters).
fn param(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The statements of [`super::KvTable::check`], built per call (it runs rarely).
pub(super) struct CheckSql {
    /// Per key table (this branch's, then the other branches'): count of key rows whose
    /// inline value contradicts their blob id or size.
    pub(super) bad_inline: Vec<String>,
    /// Per key table, per chunked key: key, blob id, size, chunk size, its chunk count, the
    /// bytes its chunks hold and its longest chunk.
    pub(super) chunked_keys: Vec<String>,
    /// Blob ids that own chunk rows.
    pub(super) chunk_owners: String,
    /// References to each content row, counted from the chunk rows.
    pub(super) chunk_refs: String,
    /// Each content row's recorded reference count.
    pub(super) content_refs: String,
    /// Blob ids owned by every holder (key tables of all branches, kept versions), when
    /// there is more than one.
    pub(super) kept_blobs: Option<String>,
}

impl Sql {
    pub(super) fn new(t: &str, r: &str) -> Self {
        let c = format!("{t}__chunks");
        let p = format!("{t}__pending");
        Self {
            table: t.to_string(),
            rows: r.to_string(),
            get: format!(
                "SELECT coalesce(inline_data, \
                 (SELECT data FROM \"{t}__content\" WHERE cid = content_hash)), \
                 blob_id, size, chunk_size, encoding FROM \"{r}\" WHERE key = ?1 AND {}",
                live(2)
            ),
            // An upsert is two statements: most writes of a batch are new keys, and a plain
            // INSERT OR IGNORE needs no statement journal (an ON CONFLICT DO UPDATE, which can
            // fire the chunk-release trigger, does). When the key exists, the UPDATE runs.
            insert_new: format!(
                "INSERT OR IGNORE INTO \"{r}\" (key, key_kind, encoding, size, inline_data, \
                 blob_id, chunk_size, version, created_at, updated_at, expires_at, content_hash) \
                 VALUES (?1, ?2, ?9, ?3, ?4, ?5, ?6, 1, ?7, ?7, ?8, ?10)"
            ),
            insert_inline: format!(
                "INSERT OR IGNORE INTO \"{r}\" (key, key_kind, encoding, size, inline_data, \
                 version, created_at, updated_at) VALUES (?1, ?2, ?6, ?3, ?4, 1, ?5, ?5)"
            ),
            insert_inline_group: insert_inline_group(r),
            // An expired row is replaced as if it were absent: its version and creation time
            // restart. `content_hash` holds the content id of a deduplicated small value
            // (see `shared_values.rs`), NULL otherwise.
            update_existing: format!(
                "UPDATE \"{r}\" SET key_kind = ?2, encoding = ?9, size = ?3, inline_data = ?4, \
                 blob_id = ?5, chunk_size = ?6, \
                 version = CASE WHEN expires_at IS NOT NULL AND expires_at <= ?7 \
                           THEN 1 ELSE version + 1 END, \
                 created_at = CASE WHEN expires_at IS NOT NULL AND expires_at <= ?7 \
                              THEN ?7 ELSE created_at END, \
                 updated_at = ?7, expires_at = ?8, content_hash = ?10 \
                 WHERE key = ?1"
            ),
            delete: format!("DELETE FROM \"{r}\" WHERE key = ?1 RETURNING {}", live(2)),
            exists: format!("SELECT 1 FROM \"{r}\" WHERE key = ?1 AND {}", live(2)),
            count: format!("SELECT count(*) FROM \"{r}\" WHERE {}", live(1)),
            info: format!(
                "SELECT size, version, created_at, updated_at, blob_id IS NOT NULL, expires_at, \
                 encoding FROM \"{r}\" WHERE key = ?1 AND {}",
                live(2)
            ),
            version: format!("SELECT version FROM \"{r}\" WHERE key = ?1 AND {}", live(2)),
            touch: format!(
                "UPDATE \"{r}\" SET expires_at = ?3 WHERE key = ?1 AND {}",
                live(2)
            ),
            prune: format!("DELETE FROM \"{r}\" WHERE expires_at IS NOT NULL AND expires_at <= ?1"),
            insert_content: format!(
                "INSERT INTO \"{t}__content\" (hash, refs, data) VALUES (?1, 0, ?2) \
                 ON CONFLICT(hash) DO NOTHING"
            ),
            insert_new_content: format!(
                "INSERT INTO \"{t}__content\" (cid, hash, refs, data) \
                 VALUES ((SELECT coalesce(max(cid), 0) + 1 FROM \"{t}__content\"), ?1, 1, ?2)"
            ),
            next_content_id: format!("SELECT coalesce(max(cid), 0) + 1 FROM \"{t}__content\""),
            find_content: format!("SELECT cid, length(data) FROM \"{t}__content\" WHERE hash = ?1"),
            insert_chunk: format!("INSERT INTO \"{c}\" (id, cid) VALUES (?1, ?2)"),
            chunk_content: format!("SELECT cid FROM \"{c}\" WHERE id = ?1"),
            insert_content_coded: format!(
                "INSERT INTO \"{t}__content\" (cid, hash, refs, data, codec, raw_size) \
                 VALUES ((SELECT coalesce(max(cid), 0) + 1 FROM \"{t}__content\"), \
                 ?1, 1, ?2, ?3, ?4)"
            ),
            find_content_coded: format!(
                "SELECT cid, {} FROM \"{t}__content\" WHERE hash = ?1",
                raw_length("", true)
            ),
            chunk_content_coded: format!(
                "SELECT k.cid, coalesce(c.codec, 0) FROM \"{c}\" k \
                 LEFT JOIN \"{t}__content\" c ON c.cid = k.cid WHERE k.id = ?1"
            ),
            content_data: format!("SELECT data FROM \"{t}__content\" WHERE cid = ?1"),
            chunk_len: format!(
                "SELECT length(c.data) FROM \"{c}\" k JOIN \"{t}__content\" c ON c.cid = k.cid \
                 WHERE k.id = ?1"
            ),
            chunk_len_coded: format!(
                "SELECT {} FROM \"{c}\" k JOIN \"{t}__content\" c ON c.cid = k.cid \
                 WHERE k.id = ?1",
                raw_length("c.", true)
            ),
            chunk_exists: format!("SELECT EXISTS(SELECT 1 FROM \"{c}\" WHERE id = ?1)"),
            new_pending: format!("INSERT INTO \"{p}\" (pid, started_at) VALUES (?1, ?2)"),
            drop_pending: format!("DELETE FROM \"{p}\" WHERE blob_id = ?1"),
            drop_chunks: format!("DELETE FROM \"{c}\" WHERE id BETWEEN ?1 AND ?2"),
            list_pending: format!("SELECT blob_id, pid FROM \"{p}\""),
            content_table: format!("{t}__content"),
            clear: format!("DELETE FROM \"{r}\""),
            write_mode: format!(
                "SELECT CASE WHEN max_bytes IS NOT NULL OR dedup = 'all' OR history_keep != 0 \
                 OR eviction IN ('least-recently-used', 'least-frequently-used') THEN 2 \
                 WHEN dedup = 'none' THEN 1 ELSE 0 END FROM \"{t}__cache\" WHERE id = 0"
            ),
        }
    }

    /// Count of live keys matching `filter` (a [`super::KeyRange`] filter); "now" is parameter
    /// `?{now_param}`.
    pub(super) fn count_range(&self, filter: &str, now_param: usize) -> String {
        format!(
            "SELECT count(*) FROM \"{}\" WHERE {filter} AND {}",
            self.rows,
            live(param(now_param))
        )
    }

    /// Keys and key kinds of live keys matching `filter`, in key order, at most `?{limit_param}`;
    /// "now" is parameter `?{now_param}`.
    pub(super) fn scan_keys(
        &self,
        filter: &str,
        now_param: usize,
        reverse: bool,
        limit_param: usize,
    ) -> String {
        format!(
            "SELECT key, key_kind FROM \"{}\" WHERE {filter} AND {} ORDER BY key {} LIMIT ?{}",
            self.rows,
            live(param(now_param)),
            if reverse { "DESC" } else { "ASC" },
            limit_param
        )
    }

    /// One row of [`super::TableStats`] figures; "now" is `?1`.
    pub(super) fn stats(&self, coded: bool) -> String {
        let t = &self.table;
        let r = &self.rows;
        format!(
            "SELECT (SELECT count(*) FROM \"{r}\" WHERE {live}), \
             (SELECT total(size) FROM \"{r}\" WHERE {live}), \
             (SELECT count(*) FROM \"{t}__chunks\"), \
             (SELECT total({raw}) FROM \"{t}__chunks\" k \
             JOIN \"{t}__content\" c ON c.cid = k.cid), \
             (SELECT count(*) FROM \"{t}__pending\"), \
             (SELECT total(length(inline_data)) FROM \"{r}\"), \
             (SELECT count(*) FROM \"{t}__content\"), \
             (SELECT total(length(data)) FROM \"{t}__content\"), \
             (SELECT count(*) FROM \"{r}\" WHERE NOT {live})",
            live = live(1),
            raw = raw_length("c.", coded)
        )
    }

    /// The statements of [`super::KvTable::check`]. `history`: the table keeps versions in
    /// `T__history`, whose rows own blobs and reference contents too; `branches`: the key
    /// tables of the table's other branches, which share its chunks and contents.
    pub(super) fn check(&self, history: bool, branches: &[String], coded: bool) -> CheckSql {
        let t = &self.table;
        let raw = raw_length("n.", coded);
        let c = format!("{t}__chunks");
        // All chunk rowids of the row's blob (see `chunk_rowid`).
        let of_blob = "BETWEEN (blob_id << 32) AND (blob_id << 32) + 4294967295";
        let mut key_tables = vec![self.rows.clone()];
        key_tables.extend(branches.iter().cloned());
        let mut holders = key_tables.clone();
        if history {
            holders.push(format!("{t}__history"));
        }
        let union = |what: &str| {
            holders
                .iter()
                .map(|h| format!("SELECT {what} FROM \"{h}\" WHERE {what} IS NOT NULL"))
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        };
        // Columns holding a value of another SQLite type than the format's (a REAL expiry
        // would hide a key as expired).
        let mistyped = "(typeof(key) != 'blob' OR typeof(key_kind) != 'integer' \
             OR typeof(encoding) != 'integer' OR typeof(size) != 'integer' \
             OR typeof(version) != 'integer' OR typeof(created_at) != 'integer' \
             OR typeof(updated_at) != 'integer' \
             OR typeof(expires_at) NOT IN ('integer', 'null') \
             OR typeof(blob_id) NOT IN ('integer', 'null') \
             OR typeof(chunk_size) NOT IN ('integer', 'null') \
             OR typeof(inline_data) NOT IN ('blob', 'null') \
             OR typeof(content_hash) NOT IN ('integer', 'null'))";
        CheckSql {
            bad_inline: key_tables
                .iter()
                .map(|r| {
                    format!(
                        "SELECT count(*) FROM \"{r}\" WHERE {mistyped} \
                         OR (blob_id IS NULL AND content_hash IS NULL \
                         AND (inline_data IS NULL OR length(inline_data) != size)) \
                         OR (blob_id IS NOT NULL AND (inline_data IS NOT NULL \
                             OR content_hash IS NOT NULL)) \
                         OR (content_hash IS NOT NULL AND (inline_data IS NOT NULL OR coalesce( \
                             (SELECT length(data) FROM \"{t}__content\" WHERE cid = content_hash), -1) \
                             != size))"
                    )
                })
                .collect(),
            chunked_keys: key_tables
                .iter()
                .map(|r| {
                    format!(
                        "SELECT key, blob_id, size, chunk_size, \
                         (SELECT count(*) FROM \"{c}\" WHERE id {of_blob}), \
                         (SELECT total({raw}) FROM \"{c}\" k \
                         JOIN \"{t}__content\" n ON n.cid = k.cid WHERE k.id {of_blob}), \
                         (SELECT max({raw}) FROM \"{c}\" k \
                         JOIN \"{t}__content\" n ON n.cid = k.cid WHERE k.id {of_blob}) \
                         FROM \"{r}\" WHERE blob_id IS NOT NULL"
                    )
                })
                .collect(),
            chunk_owners: format!("SELECT DISTINCT id >> 32 FROM \"{c}\""),
            chunk_refs: format!(
                "SELECT cid, count(*) FROM (SELECT cid FROM \"{c}\" UNION ALL {}) GROUP BY cid",
                union("content_hash")
            ),
            kept_blobs: (holders.len() > 1).then(|| union("blob_id")),
            content_refs: format!("SELECT cid, refs FROM \"{t}__content\""),
        }
    }
}
