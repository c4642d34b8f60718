//! A table's cache policy: its byte limit, eviction order, default TTL and deduplication
//! mode, stored in the file (table `T__cache`, one row) so every process and every later
//! session applies the same rules.
//!
//! What a policy costs is paid only by tables that use it: the triggers that keep the stored
//! byte count, the access table behind least-recently/frequently-used eviction and the
//! indexes each eviction order reads exist only while the policy needs them.

use rusqlite::{params, Connection, OptionalExtension};

use super::KvTable;
use crate::error::{Error, Result};
use crate::store::Store;

/// Which entries go first when a table is over its byte limit (diskcache's policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eviction {
    /// Never evict: the limit is reported but not enforced.
    #[default]
    None,
    /// The entry written longest ago goes first.
    LeastRecentlyStored,
    /// The entry read or written longest ago goes first (reads are recorded in batches).
    LeastRecentlyUsed,
    /// The entry read least often since it was written goes first (ties: least recent).
    LeastFrequentlyUsed,
}

impl Eviction {
    /// Every policy's name, as [`Eviction::name`] gives it.
    pub const NAMES: [&'static str; 4] = [
        "none",
        "least-recently-stored",
        "least-recently-used",
        "least-frequently-used",
    ];

    /// Parses a policy name (one of [`Eviction::NAMES`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown name.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "none" => Ok(Self::None),
            "least-recently-stored" => Ok(Self::LeastRecentlyStored),
            "least-recently-used" => Ok(Self::LeastRecentlyUsed),
            "least-frequently-used" => Ok(Self::LeastFrequentlyUsed),
            other => Err(Error::InvalidArgument(format!(
                "unknown eviction policy {other:?}; expected one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }

    /// The policy's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::LeastRecentlyStored => "least-recently-stored",
            Self::LeastRecentlyUsed => "least-recently-used",
            Self::LeastFrequentlyUsed => "least-frequently-used",
        }
    }

    /// Whether reads must be recorded for this policy.
    #[must_use]
    pub fn tracks_reads(self) -> bool {
        matches!(self, Self::LeastRecentlyUsed | Self::LeastFrequentlyUsed)
    }
}

/// Which values are stored once per distinct content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dedup {
    /// Chunked values (larger than the inline limit) share chunk contents; small values are
    /// stored in their key rows.
    #[default]
    Large,
    /// Small values too are stored once per content and referenced from their key rows.
    All,
    /// Nothing is shared: every chunk is stored on its own (for data known to be unique, or
    /// when a deleted value's bytes must not outlive it in another key's chunk).
    None,
}

impl Dedup {
    /// Parses `"large"`, `"all"` or `"none"`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "large" => Ok(Self::Large),
            "all" => Ok(Self::All),
            "none" => Ok(Self::None),
            other => Err(Error::InvalidArgument(format!(
                "unknown dedup mode {other:?}; expected \"all\", \"large\" or \"none\""
            ))),
        }
    }

    /// The mode's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Large => "large",
            Self::All => "all",
            Self::None => "none",
        }
    }
}

/// How many earlier versions of each key a table keeps (see `history.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum History {
    /// None: a write replaces the old value for good.
    #[default]
    Off,
    /// The last N earlier versions per key (N >= 1).
    Last(u32),
    /// Every earlier version.
    All,
}

impl History {
    /// The stored code: 0 off, N, or -1 for all.
    #[must_use]
    pub fn code(self) -> i64 {
        match self {
            Self::Off => 0,
            Self::Last(n) => i64::from(n),
            Self::All => -1,
        }
    }

    /// Reads a stored code.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a code below -1 or too large.
    pub fn from_code(code: i64) -> Result<Self> {
        match code {
            0 => Ok(Self::Off),
            -1 => Ok(Self::All),
            n => u32::try_from(n)
                .map(Self::Last)
                .map_err(|_| Error::Corrupted(format!("history setting {n} is out of range"))),
        }
    }

    /// Whether earlier versions are kept.
    #[must_use]
    pub fn is_on(self) -> bool {
        self != Self::Off
    }
}

/// A table's stored cache policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CachePolicy {
    /// Most stored bytes (inline values plus distinct contents, as stats report them); `None`:
    /// unbounded.
    pub max_bytes: Option<u64>,
    /// What goes first when over the limit.
    pub eviction: Eviction,
    /// Lifetime of writes that give no expiry of their own, in ms; `None`: forever.
    pub default_ttl_ms: Option<i64>,
    /// Which values are deduplicated.
    pub dedup: Dedup,
    /// Earlier versions kept per key.
    pub history: History,
}

/// Counters kept beside a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheCounters {
    /// Stored bytes as the size triggers count them (kept only while a limit is set).
    pub stored_bytes: u64,
    /// Entries evicted so far.
    pub evictions: u64,
    /// Reads that found their key (counted while reads are tracked).
    pub hits: u64,
    /// Reads that did not (counted while reads are tracked).
    pub misses: u64,
}

/// A change to a policy: `None` keeps a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyChange {
    /// A new limit (`Some(None)` removes it).
    pub max_bytes: Option<Option<u64>>,
    /// A new eviction policy.
    pub eviction: Option<Eviction>,
    /// A new default TTL in ms (`Some(None)` removes it).
    pub default_ttl_ms: Option<Option<i64>>,
    /// A new deduplication mode.
    pub dedup: Option<Dedup>,
    /// A new history setting (turning it off drops every earlier version).
    pub history: Option<History>,
}

/// The policy row's DDL (created with the table, or on first open by this version).
pub(super) fn create_policy_table(conn: &Connection, t: &str) -> Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{t}__cache\" (
            id INTEGER PRIMARY KEY CHECK (id = 0),
            max_bytes INTEGER,
            eviction TEXT NOT NULL DEFAULT 'none',
            default_ttl_ms INTEGER,
            dedup TEXT NOT NULL DEFAULT 'large',
            stored_bytes INTEGER NOT NULL DEFAULT 0,
            evictions INTEGER NOT NULL DEFAULT 0,
            hits INTEGER NOT NULL DEFAULT 0,
            misses INTEGER NOT NULL DEFAULT 0,
            history_keep INTEGER NOT NULL DEFAULT 0,
            clock_ms INTEGER NOT NULL DEFAULT 0);
         INSERT OR IGNORE INTO \"{t}__cache\" (id) VALUES (0);"
    ))?;
    Ok(())
}

/// Reads the policy row; a table without one (a read-only file written by an older version)
/// has the default policy.
pub(super) fn read_policy(conn: &Connection, t: &str) -> Result<(CachePolicy, CacheCounters)> {
    let sql = format!(
        "SELECT max_bytes, eviction, default_ttl_ms, dedup, stored_bytes, evictions, hits, \
         misses, history_keep FROM \"{t}__cache\" WHERE id = 0"
    );
    let row = match conn.prepare_cached(&sql) {
        Ok(mut stmt) => stmt
            .query_row([], |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, String>(3)?,
                    [r.get::<_, i64>(4)?, r.get(5)?, r.get(6)?, r.get(7)?],
                    r.get::<_, i64>(8)?,
                ))
            })
            .optional()?,
        Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("no such table") => None,
        Err(err) => return Err(err.into()),
    };
    let Some((max_bytes, eviction, ttl, dedup, counts, history)) = row else {
        return Ok(Default::default());
    };
    let corrupt = |what: &str| Error::Corrupted(format!("table {t}: cache policy has {what}"));
    let max_bytes = max_bytes
        .map(|m| u64::try_from(m).map_err(|_| corrupt("a negative byte limit")))
        .transpose()?;
    if ttl.is_some_and(|ttl| ttl <= 0) {
        return Err(corrupt("a default time-to-live that is not positive"));
    }
    let policy = CachePolicy {
        max_bytes,
        eviction: Eviction::parse(&eviction).map_err(|_| corrupt("an unknown eviction policy"))?,
        default_ttl_ms: ttl,
        dedup: Dedup::parse(&dedup).map_err(|_| corrupt("an unknown dedup mode"))?,
        history: History::from_code(history)?,
    };
    let count = |v: i64| u64::try_from(v).unwrap_or(0);
    let counters = CacheCounters {
        stored_bytes: count(counts[0]),
        evictions: count(counts[1]),
        hits: count(counts[2]),
        misses: count(counts[3]),
    };
    Ok((policy, counters))
}

/// Triggers that keep `stored_bytes` equal to inline bytes plus distinct content bytes.
fn size_triggers(t: &str) -> String {
    let add = |expr: &str| {
        format!("UPDATE \"{t}__cache\" SET stored_bytes = stored_bytes + ({expr}) WHERE id = 0;")
    };
    format!(
        "CREATE TRIGGER IF NOT EXISTS \"{t}__size_insert\" AFTER INSERT ON \"{t}\"
            WHEN new.inline_data IS NOT NULL BEGIN {ins} END;
         CREATE TRIGGER IF NOT EXISTS \"{t}__size_update\" AFTER UPDATE OF inline_data ON \"{t}\"
            BEGIN {upd} END;
         CREATE TRIGGER IF NOT EXISTS \"{t}__size_delete\" AFTER DELETE ON \"{t}\"
            WHEN old.inline_data IS NOT NULL BEGIN {del} END;
         CREATE TRIGGER IF NOT EXISTS \"{t}__size_content_insert\" AFTER INSERT ON \"{t}__content\"
            BEGIN {cins} END;
         CREATE TRIGGER IF NOT EXISTS \"{t}__size_content_delete\" AFTER DELETE ON \"{t}__content\"
            BEGIN {cdel} END;
         UPDATE \"{t}__cache\" SET stored_bytes =
            (SELECT total(length(inline_data)) FROM \"{t}\") +
            (SELECT total(length(data)) FROM \"{t}__content\") WHERE id = 0;",
        ins = add("length(new.inline_data)"),
        upd = add("coalesce(length(new.inline_data), 0) - coalesce(length(old.inline_data), 0)"),
        del = add("-length(old.inline_data)"),
        cins = add("length(new.data)"),
        cdel = add("-length(old.data)"),
    )
}

const SIZE_TRIGGERS: [&str; 5] = [
    "size_insert",
    "size_update",
    "size_delete",
    "size_content_insert",
    "size_content_delete",
];

/// The access table (last use and use count per key) and the triggers that record writes in
/// it; reads are recorded by [`super::access::AccessLog`] in batches.
fn access_tracking(t: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS \"{t}__access\" (
            key BLOB PRIMARY KEY NOT NULL,
            used_at INTEGER NOT NULL,
            uses INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
         INSERT OR IGNORE INTO \"{t}__access\" (key, used_at, uses)
            SELECT key, updated_at, 0 FROM \"{t}\";
         CREATE TRIGGER IF NOT EXISTS \"{t}__access_insert\" AFTER INSERT ON \"{t}\"
            BEGIN INSERT OR REPLACE INTO \"{t}__access\" (key, used_at, uses)
                  VALUES (new.key, new.updated_at, 0); END;
         CREATE TRIGGER IF NOT EXISTS \"{t}__access_update\" AFTER UPDATE OF updated_at ON \"{t}\"
            BEGIN UPDATE \"{t}__access\" SET used_at = new.updated_at, uses = 0
                  WHERE key = new.key; END;
         CREATE TRIGGER IF NOT EXISTS \"{t}__access_delete\" AFTER DELETE ON \"{t}\"
            BEGIN DELETE FROM \"{t}__access\" WHERE key = old.key; END;"
    )
}

const ACCESS_TRIGGERS: [&str; 3] = ["access_insert", "access_update", "access_delete"];

/// The index each eviction order reads, and the index that finds expired keys.
fn order_index(t: &str, eviction: Eviction) -> Option<String> {
    match eviction {
        Eviction::None => None,
        Eviction::LeastRecentlyStored => Some(format!(
            "CREATE INDEX IF NOT EXISTS \"{t}__by_stored\" ON \"{t}\" (updated_at)"
        )),
        Eviction::LeastRecentlyUsed => Some(format!(
            "CREATE INDEX IF NOT EXISTS \"{t}__by_used\" ON \"{t}__access\" (used_at)"
        )),
        Eviction::LeastFrequentlyUsed => Some(format!(
            "CREATE INDEX IF NOT EXISTS \"{t}__by_uses\" ON \"{t}__access\" (uses, used_at)"
        )),
    }
}

const ORDER_INDEXES: [&str; 3] = ["by_stored", "by_used", "by_uses"];

impl KvTable {
    /// The table's policy and counters, as stored.
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupted`] for a damaged policy row.
    pub fn cache_policy(&self, store: &mut Store) -> Result<(CachePolicy, CacheCounters)> {
        store.retry(|conn| read_policy(conn, &self.name))
    }

    /// Changes the stored policy (and the triggers and indexes it needs) in one transaction;
    /// if the table is then over a new limit, entries are evicted at once. Returns the new
    /// policy.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a limit or TTL out of range (nothing changes);
    /// [`Error::ReadOnly`]; [`Error::Busy`].
    pub fn set_cache_policy(&self, store: &mut Store, change: PolicyChange) -> Result<CachePolicy> {
        if let Some(Some(max)) = change.max_bytes {
            if i64::try_from(max).is_err() {
                return Err(Error::InvalidArgument(format!(
                    "max_bytes {max} is larger than the largest file SQLite can hold"
                )));
            }
        }
        if let Some(Some(ttl)) = change.default_ttl_ms {
            if ttl <= 0 {
                return Err(Error::InvalidArgument(format!(
                    "default_ttl must be positive, not {ttl} ms"
                )));
            }
        }
        if let Some(History::Last(0)) = change.history {
            return Err(Error::InvalidArgument(
                "history keeps at least 1 version (0 turns it off)".into(),
            ));
        }
        self.main_branch_only("the cache policy")?;
        let t = &self.name;
        let policy = store.write(|conn| {
            create_policy_table(conn, t)?;
            let (old, _) = read_policy(conn, t)?;
            let limited = change.max_bytes.unwrap_or(old.max_bytes).is_some();
            if limited && super::branches::branching_on(conn, t)? {
                return Err(Error::InvalidArgument(format!(
                    "table {t:?} has branches: a byte limit would evict values other branches \
                     still show (delete the branches first)"
                )));
            }
            if limited && change.history.unwrap_or(old.history).is_on() {
                return Err(Error::InvalidArgument(
                    "a byte limit and history cannot be combined: evicted values would be kept \
                     in the history (set history to 0, or remove the limit)"
                        .into(),
                ));
            }
            let new = CachePolicy {
                max_bytes: change.max_bytes.unwrap_or(old.max_bytes),
                eviction: change.eviction.unwrap_or(old.eviction),
                default_ttl_ms: change.default_ttl_ms.unwrap_or(old.default_ttl_ms),
                dedup: change.dedup.unwrap_or(old.dedup),
                history: change.history.unwrap_or(old.history),
            };
            conn.execute(
                &format!(
                    "UPDATE \"{t}__cache\" SET max_bytes = ?1, eviction = ?2, \
                     default_ttl_ms = ?3, dedup = ?4, history_keep = ?5 WHERE id = 0"
                ),
                params![
                    new.max_bytes.map(|m| m as i64),
                    new.eviction.name(),
                    new.default_ttl_ms,
                    new.dedup.name(),
                    new.history.code()
                ],
            )?;
            self.install_policy_schema(conn, &old, &new)?;
            Ok(new)
        })?;
        self.runtime.adopt(&policy);
        if policy.max_bytes.is_some() && store.transaction_depth() == 0 {
            self.enforce_limit(store, &[])?;
        }
        Ok(policy)
    }

    /// Creates what `new` needs and drops what only `old` needed.
    fn install_policy_schema(
        &self,
        conn: &Connection,
        old: &CachePolicy,
        new: &CachePolicy,
    ) -> Result<()> {
        let t = &self.name;
        let drop_triggers = |names: &[&str]| -> Result<()> {
            for name in names {
                conn.execute_batch(&format!("DROP TRIGGER IF EXISTS \"{t}__{name}\""))?;
            }
            Ok(())
        };
        match (old.max_bytes.is_some(), new.max_bytes.is_some()) {
            (false, true) => {
                conn.execute_batch(&size_triggers(t))?;
                conn.execute_batch(&format!(
                    "CREATE INDEX IF NOT EXISTS \"{t}__by_expiry\" ON \"{t}\" (expires_at) \
                     WHERE expires_at IS NOT NULL"
                ))?;
            }
            (true, false) => {
                drop_triggers(&SIZE_TRIGGERS)?;
                conn.execute_batch(&format!("DROP INDEX IF EXISTS \"{t}__by_expiry\""))?;
            }
            _ => {}
        }
        if new.eviction.tracks_reads() && !old.eviction.tracks_reads() {
            conn.execute_batch(&access_tracking(t))?;
        } else if !new.eviction.tracks_reads() && old.eviction.tracks_reads() {
            drop_triggers(&ACCESS_TRIGGERS)?;
            conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{t}__access\""))?;
        }
        if new.eviction != old.eviction {
            for name in ORDER_INDEXES {
                conn.execute_batch(&format!("DROP INDEX IF EXISTS \"{t}__{name}\""))?;
            }
            if let Some(ddl) = order_index(t, new.eviction) {
                conn.execute_batch(&ddl)?;
            }
        }
        if new.dedup == Dedup::All && old.dedup != Dedup::All {
            conn.execute_batch(&super::shared_values::reference_triggers(t, t))?;
            for branch in super::release::branch_key_tables(conn, t)? {
                conn.execute_batch(&super::shared_values::reference_triggers(t, &branch))?;
            }
        }
        match (old.history.is_on(), new.history.is_on()) {
            (false, true) => super::history::install(conn, t)?,
            (true, false) => super::history::uninstall(conn, t)?,
            (true, true) if new.history != old.history => {
                super::history::trim_all(conn, t, new.history)?;
            }
            _ => {}
        }
        Ok(())
    }
}
