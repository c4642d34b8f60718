//! Fork safety of the connection: a fork child must not use the SQLite connection it inherited
//! (it shares file locks and WAL state with the parent), so it reopens its own on first use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use super::*;
use crate::error::Result;

// Incremented in the child after every fork(). A store remembers the value it was opened under;
// a mismatch means this process is a fork child whose inherited SQLite connection must not be used.
pub(crate) static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

pub(crate) static FORK_HOOK: Once = Once::new();

pub(crate) extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

pub(crate) fn install_fork_hook() {
    #[cfg(unix)]
    FORK_HOOK.call_once(|| {
        // SAFETY: registering a handler that only touches an atomic is async-signal-safe.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

impl Store {
    pub(crate) fn reopen_after_fork(&mut self, generation: u64) -> Result<()> {
        if self.location == Location::Memory {
            // The child owns a private copy of an in-memory database: keep using it.
            self.fork_generation = generation;
            return Ok(());
        }
        // The inherited connection shares file locks and WAL state with the parent. Closing it
        // could checkpoint or unlink the parent's WAL, so it is deliberately leaked.
        if let Some(inherited) = self.conn.take() {
            std::mem::forget(inherited);
        }
        self.lease = None;
        // The parent's checkpoint thread does not exist here. The child's new connection keeps
        // SQLite's own autocheckpoint and reads commit tokens through `PRAGMA data_version`.
        self.wal_index = None;
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.abandon();
        }
        self.conn = Some(open_connection(&self.location, &self.options)?);
        self.file_watch = watch(&self.location);
        self.fork_generation = generation;
        Ok(())
    }
}
