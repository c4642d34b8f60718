//! WAL checkpoints of bulk writes on a background thread.
//!
//! SQLite's default (`wal_autocheckpoint`) copies the WAL back into the database inside the
//! commit that takes the WAL past 1000 frames, so that caller waits for the copy and two
//! fsyncs. For a bulk write that is most of the cost: an 80 MB column extend spent about 60%
//! of its time there. Here a commit that wrote many frames only asks for a checkpoint; a thread
//! with its own connection runs it (`PASSIVE`: it never blocks readers or the writer).
//!
//! Small commits rewrite the same few pages, and SQLite finds a page in the WAL index by probing
//! past every earlier frame of that page, so their WAL must stay short: at 8000 frames durable
//! appends ran 40% slower than at 1000. A WAL is only rewound when a write begins on a fully
//! copied WAL, which a pass running beside a stream of commits never leaves. So a small commit
//! on a WAL of [`CHECKPOINT_FRAMES`] asks the thread for a pass too, and once a pass has left at
//! most [`FINISH_INLINE_FRAMES`] uncopied (or the WAL reached twice [`CHECKPOINT_FRAMES`]),
//! copies the rest inline: the next write then rewinds. The committing thread copies a few
//! hundred frames instead of a thousand; on this machine's disk durable log-line appends spent
//! less than half as long in those commits (0.27-0.80 s against 1.21-1.55 s per 200,000,
//! alternated).
//!
//! SQLite syncs the database file only when a pass ends with the whole WAL copied, and the WAL
//! only up to where the pass began; a pass beside a stream of commits never ends so. The thread
//! therefore syncs both itself after a pass, unless another pass is due, while it still counts
//! as running: the small commit that then finishes the copy syncs only what came after, not a
//! whole bulk write's pages (that sync was the longest stall of an append after a 16 MB extend,
//! 14-22 ms). After a bulk write's pass, the frames committed meanwhile go to one more pass of
//! the thread too, rather than to the next small commit.
//!
//! The bound: when the WAL already held [`INLINE_CHECKPOINT_FRAMES`] before a commit (the
//! thread is falling behind a series of bulk writes), that commit waits for the thread's pass
//! and then checkpoints inline, so the next write rewinds the WAL. A first version only tried
//! the inline checkpoint, which failed while the thread held the checkpoint lock: 30
//! back-to-back 2 MB commits left a 57 MB WAL (a test now bounds it).
//!
//! Durability does not change: a commit is durable in the documented mode once its frames
//! are in the WAL; a checkpoint only copies pages that are already there, and is crash-safe at
//! any point. Reads are correct throughout; right after a bulk write they are slower until the
//! pass ends, since pages still in the WAL are read with `pread` instead of the memory map.

use std::os::raw::c_int;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};

use crate::fork_guard::StoreUse;
use crate::store::{Key, Synchronous};

/// WAL frames from which a commit checkpoints (SQLite's own default).
pub const CHECKPOINT_FRAMES: i32 = 1000;

/// Frames one commit must write (64 KiB at 4 KiB pages) to count as a bulk write, whose
/// checkpoint goes to the thread. Commits of a value of a few pages count (a cache of 1-100 KB
/// values ran 25-30% faster with its checkpoints off the writing thread than at 64 frames);
/// appends and small puts, 1-6 frames rewriting the same pages, stay inline.
pub const BULK_COMMIT_FRAMES: i32 = 16;

/// WAL frames that, when already present before a commit, make the committing thread wait for
/// the thread's pass and checkpoint itself: the bound on the WAL's length.
pub const INLINE_CHECKPOINT_FRAMES: i32 = 8 * CHECKPOINT_FRAMES;

/// Most frames a small commit copies inline, to finish what the thread's pass left.
pub const FINISH_INLINE_FRAMES: i32 = 256;

/// Longest a commit waits for the thread's pass before checkpointing inline anyway.
const BACKPRESSURE_WAIT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    /// A checkpoint is due.
    requested: bool,
    /// The thread is in a checkpoint pass.
    running: bool,
    /// The thread must end (or could not start).
    stop: bool,
    /// WAL frames the thread's last pass left copied (SQLite's count); reset by a rewind, unless
    /// the pass records it just after one (then more than the new WAL holds, or an early copy).
    copied: c_int,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the flags inconsistent; keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs the checkpoints of one writable WAL connection on a thread of its own.
///
/// The thread starts with the first checkpoint request, so a vault that is only read never
/// has one. Dropping the checkpointer (or [`Checkpointer::stop`]) waits for a checkpoint in
/// progress and ends the thread; do that before closing the main connection, so the last
/// connection to close is the main one (which then copies and removes the WAL).
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// Installs the commit hook on `conn` (which replaces SQLite's autocheckpoint). The thread
    /// opens `path` with its own connection (given `key` first, if any) when first needed.
    ///
    /// # Errors
    /// SQLite errors from installing the hook (the caller keeps SQLite's autocheckpoint then).
    pub(crate) fn install(
        conn: &mut Connection,
        path: &Path,
        synchronous: Synchronous,
        key: Option<Key>,
    ) -> rusqlite::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let hook_shared = Arc::clone(&shared);
        let path = path.to_path_buf();
        let mut frames_after_last_commit: c_int = 0;
        // The WAL's frames when a small commit last asked for the pass now due or running.
        let mut small_pass_from: Option<c_int> = None;
        conn.wal_hook(Some(move |wal: &mut Wal, frames: c_int| {
            // Fewer frames than last time means this commit rewound the WAL.
            let rewound = frames < frames_after_last_commit;
            let frames_before = if rewound { 0 } else { frames_after_last_commit };
            frames_after_last_commit = frames;
            if rewound {
                small_pass_from = None;
                // The last pass's count was of the WAL before the rewind.
                hook_shared.lock().copied = 0;
            }
            let decision = after_commit(frames, frames_before, small_pass_from, || {
                thread_state(&hook_shared)
            });
            small_pass_from = match decision {
                AfterCommit::RequestForSmall => Some(frames),
                AfterCommit::Nothing => small_pass_from,
                _ => None,
            };
            match decision {
                AfterCommit::Nothing => {}
                AfterCommit::WaitThenCopy => {
                    // The thread is behind the writer: wait for its pass, then copy the rest
                    // here. Holding the writer back is what bounds the WAL.
                    wait_until_idle(&hook_shared, BACKPRESSURE_WAIT);
                    let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
                }
                // Requests while a pass runs merge into one more pass.
                AfterCommit::Request | AfterCommit::RequestForSmall => {
                    request(&hook_shared, &path, synchronous, key.as_ref());
                }
                // Busy is fine: the next commit tries again.
                AfterCommit::Copy => {
                    let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
                }
            }
            Ok(())
        }))?;
        Ok(Self { shared })
    }

    /// Ends the thread after the checkpoint in progress, if any.
    pub(crate) fn stop(&self) {
        let thread = {
            let mut state = self.shared.lock();
            state.stop = true;
            state.thread.take()
        };
        self.shared.wake.notify_all();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Leaves the thread alone: in a fork child it does not exist, so it must not be joined.
    pub(crate) fn abandon(self) {
        std::mem::forget(self);
    }

    /// Waits until no checkpoint is due or in progress, at most `timeout`. Returns whether
    /// that happened (for tests and diagnostics).
    pub(crate) fn wait_until_idle(&self, timeout: Duration) -> bool {
        wait_until_idle(&self.shared, timeout)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a commit does about checkpoints.
#[derive(Debug, PartialEq, Eq)]
enum AfterCommit {
    /// Nothing: the WAL is short, or a pass of the thread will copy it.
    Nothing,
    /// Wait for the thread's pass, then checkpoint inline (the WAL's bound).
    WaitThenCopy,
    /// Ask the thread for a pass (a bulk commit).
    Request,
    /// Ask the thread for a pass (a small commit on a long WAL); small commits wait for it if
    /// the WAL grows by another [`CHECKPOINT_FRAMES`] meanwhile.
    RequestForSmall,
    /// Checkpoint inline (a small commit on a long WAL the thread has mostly copied).
    Copy,
}

/// What the commit hook knows of the thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThreadState {
    /// A pass is due or running.
    Busy,
    /// No pass is due or running; its last pass left this many frames copied.
    Idle { copied: c_int },
    /// The thread has ended or could not start: small commits copy inline, as SQLite does.
    Stopped,
}

/// The decision of the commit hook: the WAL holds `frames` after the commit, `frames_before`
/// before it. A small commit that checkpointed inline while a pass was due (the thread
/// starting, or about to start its pass) would copy a whole bulk write itself: 20-75 ms after
/// a 16 MB extend, measured. A small commit on a long WAL asks the thread for a pass, and
/// copies inline only the rest a pass left behind (at most [`FINISH_INLINE_FRAMES`]): that
/// finishes the copy, so the next write rewinds the WAL, without the committing thread
/// copying a thousand frames itself. `small_pass_from` is the WAL's length when a small commit
/// asked for the pass now due or running, if one did: once [`CHECKPOINT_FRAMES`] more were
/// committed while it runs (a loaded machine), small commits wait for it, which bounds their
/// WAL at about twice that.
fn after_commit(
    frames: c_int,
    frames_before: c_int,
    small_pass_from: Option<c_int>,
    thread: impl FnOnce() -> ThreadState,
) -> AfterCommit {
    if frames < CHECKPOINT_FRAMES {
        AfterCommit::Nothing
    } else if frames_before >= INLINE_CHECKPOINT_FRAMES {
        AfterCommit::WaitThenCopy
    } else if frames - frames_before >= BULK_COMMIT_FRAMES {
        AfterCommit::Request
    } else {
        match thread() {
            ThreadState::Busy => match small_pass_from {
                Some(from) if frames - from >= CHECKPOINT_FRAMES => AfterCommit::WaitThenCopy,
                _ => AfterCommit::Nothing,
            },
            ThreadState::Stopped => AfterCommit::Copy,
            // More copied than the WAL holds was counted before a rewind: nothing is known.
            ThreadState::Idle { copied }
                if copied <= frames && frames - copied <= FINISH_INLINE_FRAMES =>
            {
                AfterCommit::Copy
            }
            // Passes that never catch up (syncs slower than the commits) still end in a rewind,
            // once a small commit's pass has had its try: after a bulk pass the frames
            // committed meanwhile go to one more pass rather than to this commit.
            ThreadState::Idle { .. }
                if frames >= 2 * CHECKPOINT_FRAMES && small_pass_from.is_some() =>
            {
                AfterCommit::Copy
            }
            ThreadState::Idle { .. } => AfterCommit::RequestForSmall,
        }
    }
}

/// The thread's state for a small commit's decision.
fn thread_state(shared: &Shared) -> ThreadState {
    let state = shared.lock();
    if state.stop {
        ThreadState::Stopped
    } else if state.requested || state.running {
        ThreadState::Busy
    } else {
        ThreadState::Idle {
            copied: state.copied,
        }
    }
}

fn wait_until_idle(shared: &Shared, timeout: Duration) -> bool {
    let state = shared.lock();
    let (state, _) = shared
        .wake
        .wait_timeout_while(state, timeout, |s| (s.requested || s.running) && !s.stop)
        .unwrap_or_else(PoisonError::into_inner);
    !(state.requested || state.running)
}

/// Flags a checkpoint as due, starting the thread on the first request.
fn request(shared: &Arc<Shared>, path: &Path, synchronous: Synchronous, key: Option<&Key>) {
    let mut state = shared.lock();
    if state.stop {
        return;
    }
    state.requested = true;
    if state.thread.is_none() {
        let worker_shared = Arc::clone(shared);
        let path = path.to_path_buf();
        let key = key.cloned();
        let spawned = std::thread::Builder::new()
            // Linux keeps 15 bytes of a thread name.
            .name("amber-ckpt".into())
            .stack_size(256 << 10)
            .spawn(move || run(&worker_shared, &path, synchronous, key));
        // If no thread can be started, requests go unserved and the inline bound keeps the
        // WAL in check.
        state.thread = spawned.ok();
        if state.thread.is_none() {
            state.stop = true;
        }
    }
    drop(state);
    shared.wake.notify_all();
}

fn open_worker(
    path: &Path,
    synchronous: Synchronous,
    key: Option<&Key>,
) -> crate::Result<Connection> {
    // The key (if any) comes first, as on every connection to the file: even a checkpoint,
    // which copies frames without decrypting them, reads the encrypted schema page.
    let conn = crate::store::open_file(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        key,
    )?;
    // The checkpoint's own syncs follow the vault's mode; it needs almost no page cache.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA cache_size = -256;",
        synchronous.pragma_value()
    ))?;
    // The first read opens the WAL index, which a checkpoint needs.
    conn.query_row("PRAGMA schema_version", [], |_| Ok(()))?;
    Ok(conn)
}

fn run(shared: &Shared, path: &Path, synchronous: Synchronous, key: Option<Key>) {
    // Without a connection requests go unserved; the inline bound still holds the WAL.
    let opened = open_worker(path, synchronous, key.as_ref());
    drop(key);
    let Ok(conn) = opened else {
        shared.lock().stop = true;
        shared.wake.notify_all();
        return;
    };
    loop {
        {
            let mut state = shared.lock();
            while !state.requested && !state.stop {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                break;
            }
        }
        // Counted in (see `fork_guard.rs`) before the pass is marked running: a fork waits for
        // the pass, and a commit waiting for the pass never waits on a thread the fork holds
        // back. Idle, the thread is not counted.
        let Some(used) = StoreUse::try_enter() else {
            crate::fork_guard::wait_for_fork();
            continue;
        };
        {
            let mut state = shared.lock();
            if state.stop {
                break;
            }
            state.requested = false;
            state.running = true;
        }
        // Busy or I/O errors leave the WAL as it was; the next request tries again.
        let copied = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                row.get::<_, c_int>(2)
            })
            .unwrap_or(0);
        let sync_after = copied > 0 && synchronous != Synchronous::Off && !shared.lock().requested;
        // SQLite syncs the database only when a pass ends with nothing left in the WAL, which a
        // pass beside a stream of small commits never does, and syncs the WAL only up to where
        // the pass began. What it left unsynced would wait for the small commit that finishes
        // the copy inline, whose syncs would then write it all back (14-22 ms after a 16 MB
        // extend). Synced here, while still counted as running, that commit syncs only what
        // came after. While more bulk commits are due, the next pass comes first; after a pass
        // SQLite synced, these find little to write.
        let sync_failed = sync_after
            && !(sync_file(&conn, rusqlite::ffi::SQLITE_FCNTL_FILE_POINTER, synchronous)
                && sync_file(
                    &conn,
                    rusqlite::ffi::SQLITE_FCNTL_JOURNAL_POINTER,
                    synchronous,
                ));
        {
            let mut state = shared.lock();
            state.running = false;
            state.copied = copied;
            // Linux reports a failed write-back once per open file: this connection's next
            // sync could succeed without the lost pages, so the thread ends rather than go on.
            // Checkpoints are then made inline, and each writer's connection gets the error
            // from its own next sync. Pages whose write-back failed after a pass recorded them
            // as copied are not copied again within the process, with or without this thread
            // (SQLite's inline checkpoints behave the same); see docs/design.md.
            state.stop |= sync_failed;
        }
        shared.wake.notify_all();
        drop(used);
        if sync_failed {
            break;
        }
    }
    drop(conn);
}

/// Syncs a file of `conn`'s main database through its VFS: the database file itself
/// (`SQLITE_FCNTL_FILE_POINTER`) or its WAL (`SQLITE_FCNTL_JOURNAL_POINTER`), with the flags a
/// checkpoint uses. False if the sync failed; true also when the file is not open (nothing of
/// it to sync).
fn sync_file(conn: &Connection, which: c_int, synchronous: Synchronous) -> bool {
    let mut file: *mut rusqlite::ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: both file controls write one sqlite3_file pointer (null if the file is not open)
    // into `file`; the handle is valid while `conn` lives.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            which,
            std::ptr::from_mut(&mut file).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK || file.is_null() {
        return true;
    }
    let flags = match synchronous {
        Synchronous::Full | Synchronous::Extra => rusqlite::ffi::SQLITE_SYNC_FULL,
        Synchronous::Off | Synchronous::Normal => rusqlite::ffi::SQLITE_SYNC_NORMAL,
    };
    // SAFETY: `file` is an open file of `conn`, used only by this thread and between SQLite
    // calls on it (a closed WAL has no methods); xSync is an io-methods version 1 method.
    unsafe {
        let methods = (*file).pMethods;
        match methods.as_ref().and_then(|m| m.xSync) {
            Some(sync) => sync(file, flags) == rusqlite::ffi::SQLITE_OK,
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_commits_leave_a_due_pass_to_the_thread() {
        let idle = |copied| move || ThreadState::Idle { copied };
        // Short WAL: nothing, whatever the thread does.
        assert_eq!(after_commit(999, 990, None, idle(0)), AfterCommit::Nothing);
        // A bulk commit asks the thread.
        assert_eq!(after_commit(5000, 20, None, idle(0)), AfterCommit::Request);
        // A small commit on a long WAL the thread has not copied asks the thread too...
        assert_eq!(
            after_commit(1500, 1499, None, idle(0)),
            AfterCommit::RequestForSmall
        );
        // ...and copies inline only the little a pass left behind.
        let left = FINISH_INLINE_FRAMES;
        assert_eq!(
            after_commit(1500, 1499, None, idle(1500 - left)),
            AfterCommit::Copy
        );
        assert_eq!(
            after_commit(1500, 1499, None, idle(1500 - left - 1)),
            AfterCommit::RequestForSmall
        );
        // A count from before a rewind (more than the WAL holds) tells nothing.
        assert_eq!(
            after_commit(1200, 1199, None, idle(1500)),
            AfterCommit::RequestForSmall
        );
        // Passes that never catch up end in an inline copy all the same, once a small
        // commit's pass has had its try...
        let long = 2 * CHECKPOINT_FRAMES;
        assert_eq!(
            after_commit(long, long - 1, Some(long - 600), idle(long - 500)),
            AfterCommit::Copy
        );
        // ...while after a bulk write's pass the frames committed meanwhile go to one more.
        assert_eq!(
            after_commit(long, long - 1, None, idle(long - 500)),
            AfterCommit::RequestForSmall
        );
        // While a pass is due or running, small commits leave the copy to it.
        assert_eq!(
            after_commit(5001, 5000, None, || ThreadState::Busy),
            AfterCommit::Nothing
        );
        // A pass a small commit asked for bounds the WAL: small commits wait for it once
        // another thousand frames were committed while it runs...
        let busy = || ThreadState::Busy;
        let asked = Some(1000);
        assert_eq!(after_commit(1999, 1998, asked, busy), AfterCommit::Nothing);
        assert_eq!(
            after_commit(2000, 1999, asked, busy),
            AfterCommit::WaitThenCopy
        );
        // ...while behind a bulk write's pass they wait only at the WAL's bound, as before.
        assert_eq!(after_commit(7000, 6999, None, busy), AfterCommit::Nothing);
        // Without a thread, small commits copy inline as SQLite does.
        assert_eq!(
            after_commit(1500, 1499, None, || ThreadState::Stopped),
            AfterCommit::Copy
        );
        // The bound holds either way.
        let bound = INLINE_CHECKPOINT_FRAMES;
        for thread in [ThreadState::Busy, ThreadState::Idle { copied: 0 }] {
            assert_eq!(
                after_commit(bound + 1, bound, None, || thread),
                AfterCommit::WaitThenCopy
            );
        }
    }
}
