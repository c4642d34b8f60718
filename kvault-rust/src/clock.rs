//! The vault's one source of "now": every timestamp written (`created_at`, `updated_at`) and
//! every expiry decision reads it, so an injected clock is honoured on every path.

use std::time::{SystemTime, UNIX_EPOCH};

/// Where a store reads the current time: the system clock, or a fixed instant set by the
/// application (`KVault(clock=...)` pushes its callable's value here before each operation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    fixed_ms: Option<i64>,
}

impl Clock {
    /// The system clock.
    #[must_use]
    pub const fn system() -> Self {
        Self { fixed_ms: None }
    }

    /// A clock that always reads `ms` (milliseconds since the Unix epoch).
    #[must_use]
    pub const fn fixed(ms: i64) -> Self {
        Self { fixed_ms: Some(ms) }
    }

    /// Milliseconds since the Unix epoch, as this clock reads them.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.fixed_ms.unwrap_or_else(system_time_ms)
    }
}

/// The system clock in milliseconds since the Unix epoch (the unit of every timestamp in the
/// format). Private to the crate: everything else asks a store's [`Clock`].
pub(crate) fn system_time_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
