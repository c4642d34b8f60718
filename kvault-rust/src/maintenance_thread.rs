//! The vault's maintenance thread: periodic work of attached table kinds (writing batched
//! read records, scheduled pruning, keeping a table under its byte limit), off the callers'
//! threads and without an interpreter lock.
//!
//! Started on demand by [`crate::Vault::ensure_maintenance`], one per open vault and process
//! (a fork child starts its own), it holds only a weak reference between runs so it never
//! keeps a vault open, and exits once the vault is dropped. Like every holder of the store it
//! counts itself in with the fork guard (through [`crate::Vault::store`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use crate::store::fork::FORK_GENERATION;
use crate::vault::{Shared, Vault};

/// Shortest and longest sleep between runs.
const MIN_TICK: Duration = Duration::from_millis(50);
const MAX_TICK: Duration = Duration::from_secs(1);

/// Starts the vault's maintenance thread unless this process already runs one for it.
pub(crate) fn ensure(shared: &Arc<Shared>) {
    let generation = FORK_GENERATION.load(Ordering::SeqCst);
    let mut started = shared
        .maintenance
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if *started == Some(generation) {
        return;
    }
    let weak = Arc::downgrade(shared);
    let spawned = std::thread::Builder::new()
        .name("amber-maint".into())
        .spawn(move || run(&weak));
    // Without a thread, batched reads are still written with the next write and limits are
    // still enforced by writes: the thread only makes both timely.
    if spawned.is_ok() {
        *started = Some(generation);
    }
}

fn run(weak: &Weak<Shared>) {
    let generation = FORK_GENERATION.load(Ordering::SeqCst);
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let vault = Vault::from_shared(shared);
        let tick = vault
            .maintenance_interval()
            .unwrap_or(MAX_TICK)
            .clamp(MIN_TICK, MAX_TICK);
        drop(vault);
        std::thread::sleep(tick);
        // A thread never runs in a fork child (only the forking thread is copied), but the
        // generation check keeps a stale one from acting there if that ever changes.
        if FORK_GENERATION.load(Ordering::SeqCst) != generation {
            return;
        }
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let vault = Vault::from_shared(shared);
        if vault.is_closed() {
            return;
        }
        vault.run_maintenance();
    }
}
