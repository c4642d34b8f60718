//! What a store is opened with: the format markers, sync modes, options and location.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// `PRAGMA application_id` of every ambervault file: the bytes "AMBV".
pub const APPLICATION_ID: i32 = 0x414D_4256;

/// The newest on-disk format version this build reads (`PRAGMA user_version` and the meta
/// table). New files are written as [`BASE_FORMAT_VERSION`]; a file moves to a newer version
/// only when it first uses what needs it, so files that do not stay readable by older builds.
pub const FORMAT_VERSION: i64 = 3;

/// The format version of a new file.
pub const BASE_FORMAT_VERSION: i64 = 1;

/// The format version of a file holding compressed chunks (version 1 readers would refuse
/// them as damaged; with it they refuse the file as newer instead).
pub const COMPRESSION_FORMAT_VERSION: i64 = 2;

/// The format version of a file holding chunks in codes version 2 did not have (pco, stored
/// differences: see [`crate::codec`]), so that version-2 readers refuse the file as newer.
pub const NUMERIC_CODECS_FORMAT_VERSION: i64 = 3;

/// How hard SQLite syncs on commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// No syncs: fastest; an OS crash or power loss may corrupt the file.
    Off,
    /// WAL default: a commit survives a process crash; the last commits may be lost on power loss.
    Normal,
    /// Sync the WAL on every commit: commits survive power loss too.
    Full,
    /// Like `Full`, and also sync the directory after deleting a journal.
    Extra,
}

impl Synchronous {
    /// Parses `"off" | "normal" | "full" | "extra"` (any case).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for any other string.
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "normal" => Ok(Self::Normal),
            "full" => Ok(Self::Full),
            "extra" => Ok(Self::Extra),
            _ => Err(Error::InvalidArgument(format!(
                "synchronous must be one of 'off', 'normal', 'full', 'extra', not {text:?}"
            ))),
        }
    }

    pub(crate) fn pragma_value(self) -> &'static str {
        match self {
            Self::Off => "OFF",
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
            Self::Extra => "EXTRA",
        }
    }
}

/// Who checkpoints the WAL (copies it back into the database file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checkpoints {
    /// ambervault: small commits inline, bulk commits on a background thread (`checkpoint.rs`).
    #[default]
    Auto,
    /// Another program that follows the WAL, such as Litestream: ambervault never checkpoints
    /// (SQLite's autocheckpoint is off too), and a write waits longer for a lock
    /// ([`EXTERNAL_MIN_RETRIES`]), since the replicator holds the write lock while it copies
    /// new WAL frames.
    External,
}

/// The fewest busy retries of a store with [`Checkpoints::External`] (about 20 s of waiting
/// with the default backoff).
pub const EXTERNAL_MIN_RETRIES: u32 = 10;

impl Checkpoints {
    /// Parses `"auto"` or `"external"`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for any other string.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "auto" => Ok(Self::Auto),
            "external" => Ok(Self::External),
            _ => Err(Error::InvalidArgument(format!(
                "checkpoints must be 'auto' or 'external', not {text:?}"
            ))),
        }
    }
}

/// Settings for opening a [`Store`]. Defaults follow the Python API.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Retries after SQLite reports the database busy, each after an exponential backoff.
    pub retries: u32,
    /// First backoff delay in seconds; each retry doubles it (with jitter).
    pub backoff_base: f64,
    /// Use write-ahead logging (readers never block writers).
    pub enable_wal: bool,
    /// SQLite page size in bytes; only takes effect when the file is created.
    pub page_size: u32,
    /// Bytes of the file SQLite may memory-map for reads (0 disables mmap). The default maps
    /// whole files (1 TiB; pages past the map are read with a system call each).
    pub mmap_size: u64,
    /// SQLite page cache size in KiB.
    pub cache_kb: u32,
    /// Open without write access; every write is refused with [`Error::ReadOnly`].
    pub read_only: bool,
    /// Sync mode; `Normal` by default.
    pub synchronous: Synchronous,
    /// Keep a read transaction open between reads for at most this long (`None`: every read
    /// takes and releases its own snapshot). See [`Store::read_latest_with`]. Whoever enables
    /// it must also end idle leases ([`Store::end_read_lease_older_than`]): an idle lease holds
    /// back other connections' checkpoints.
    pub read_lease: Option<Duration>,
    /// Who checkpoints the WAL.
    pub checkpoints: Checkpoints,
    /// The key of an encrypted file (SQLCipher; builds with the `encryption` feature). `None`:
    /// the file is plain SQLite. With a key, every page of the file and of its WAL is encrypted,
    /// and a file the key does not open is refused with [`Error::WrongKey`]. A build without
    /// the feature refuses a key with [`Error::EncryptionUnavailable`] (it never writes
    /// plaintext instead).
    pub key: Option<Key>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            retries: 4,
            backoff_base: 0.02,
            enable_wal: true,
            page_size: 4096,
            mmap_size: 1 << 40,
            cache_kb: 20_000,
            read_only: false,
            synchronous: Synchronous::Normal,
            read_lease: None,
            checkpoints: Checkpoints::Auto,
            key: None,
        }
    }
}

impl StoreOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if !self.page_size.is_power_of_two() || !(512..=65536).contains(&self.page_size) {
            return Err(Error::InvalidArgument(format!(
                "page_size must be a power of two between 512 and 65536, not {}",
                self.page_size
            )));
        }
        if !(self.backoff_base.is_finite() && self.backoff_base >= 0.0 && self.backoff_base <= 60.0)
        {
            return Err(Error::InvalidArgument(format!(
                "backoff_base must be between 0 and 60 seconds, not {}",
                self.backoff_base
            )));
        }
        if self.retries > 1000 {
            return Err(Error::InvalidArgument(format!(
                "retries must be at most 1000, not {}",
                self.retries
            )));
        }
        Ok(())
    }
}

/// The key of an encrypted vault file: a passphrase, or a raw 256-bit key.
///
/// Its bytes never appear in `Debug` output, and are overwritten with zeros when it is dropped
/// (copies the caller made elsewhere are the caller's to clear).
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// What SQLCipher is given: the passphrase's UTF-8 bytes, or `x'<64 hex digits>'` for a raw
    /// key (SQLCipher's own notation for a key used without derivation).
    material: Vec<u8>,
    raw: bool,
}

impl Key {
    /// A passphrase. SQLCipher derives the key from it and the file's random salt with
    /// PBKDF2-HMAC-SHA512 (256,000 iterations), once per connection opened.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty passphrase (SQLCipher would store plaintext).
    pub fn passphrase(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::InvalidArgument(
                "key must not be empty (an empty key would leave the file unencrypted)".into(),
            ));
        }
        Ok(Self {
            material: text.as_bytes().to_vec(),
            raw: false,
        })
    }

    /// A raw 256-bit key, used as it is (no derivation, so opening is quick). Give it only if
    /// it comes from a good random source or a key-management system.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `bytes` is exactly 32 bytes.
    pub fn raw(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 {
            return Err(Error::InvalidArgument(format!(
                "a raw key must be 32 bytes (256 bits), not {}; give a str to use a passphrase",
                bytes.len()
            )));
        }
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        // Sized exactly, so the vector never reallocates and leaves no copy behind.
        let mut material = Vec::with_capacity(67);
        material.extend_from_slice(b"x'");
        for &byte in bytes {
            material.push(HEX[usize::from(byte >> 4)]);
            material.push(HEX[usize::from(byte & 15)]);
        }
        material.push(b'\'');
        Ok(Self {
            material,
            raw: true,
        })
    }

    /// Whether this is a raw key (not a passphrase).
    #[must_use]
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// The bytes handed to SQLCipher's `sqlite3_key_v2`.
    #[cfg_attr(not(feature = "encryption"), allow(dead_code))]
    pub(crate) fn material(&self) -> &[u8] {
        &self.material
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.raw {
            "Key(raw, redacted)"
        } else {
            "Key(passphrase, redacted)"
        })
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        for byte in &mut self.material {
            // SAFETY: a valid, aligned, exclusive reference into the vector; the volatile
            // write keeps the compiler from dropping the overwrite as dead.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
    }
}

/// Where the vault lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A private in-memory database (`":memory:"`), gone when the store closes.
    Memory,
    /// A file on disk.
    File(PathBuf),
}

impl Location {
    /// `":memory:"` means in-memory; anything else is a file path.
    #[must_use]
    pub fn from_path(path: &Path) -> Self {
        if path.as_os_str() == ":memory:" {
            Self::Memory
        } else {
            Self::File(path.to_path_buf())
        }
    }
}
