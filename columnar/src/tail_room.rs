//! What a store last saw of each column's free tail space, so that an append that cannot fit
//! the tails goes straight to the full path.
//!
//! A durable append first tries one `UPDATE` that adds the element to the tails; when the
//! tails are full that statement changes nothing, and the append then runs the full path
//! (which moves the tails into the chunks). The failed statement still took the write lock and
//! ran its checks: a quarter of the cost of a seal of log lines. The room noted here is only a
//! hint, never trusted for correctness: writers on other connections change the tails too,
//! and a transaction rolled back leaves the hint behind. A hint that says an element fits when
//! it does not costs the failed statement, as without hints; one that says it does not fit when
//! it would costs a seal a little early, after which the full path notes the true room.

use std::collections::HashMap;

use kvault::Store;

use crate::meta::{ColumnMeta, INDEX_TAIL_BYTES, TAIL_BYTES, VAR_TAIL_BYTES};

/// Free bytes in a column's data tail and index tail, as of this store's last write to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Room {
    /// Bytes the data tail can still take.
    pub data: u64,
    /// Bytes the index tail can still take (0 for fixed-width columns, which have none).
    pub index: u64,
}

/// The store's notes, by column id.
#[derive(Debug, Default)]
struct TailRooms(HashMap<i64, Room>);

/// Whether `data` bytes with `index` bytes of index entries would not fit the tails of column
/// `id`, as far as this store knows.
pub(crate) fn known_full(store: &mut Store, id: i64, data: u64, index: u64) -> bool {
    store
        .extension::<TailRooms>()
        .0
        .get(&id)
        .is_some_and(|room| data > room.data || index > room.index)
}

/// Notes the room column `id` has after a write that left it so.
pub(crate) fn note(store: &mut Store, id: i64, room: Room) {
    store.extension::<TailRooms>().0.insert(id, room);
}

/// Notes that `data` and `index` bytes joined the tails of column `id`.
pub(crate) fn take(store: &mut Store, id: i64, data: u64, index: u64) {
    if let Some(room) = store.extension::<TailRooms>().0.get_mut(&id) {
        room.data = room.data.saturating_sub(data);
        room.index = room.index.saturating_sub(index);
    }
}

impl Room {
    /// The room `meta`'s tails have left.
    pub(crate) fn left_in(meta: &ColumnMeta) -> Self {
        let (data_limit, index_limit) = if meta.width().is_some() {
            (TAIL_BYTES, 0)
        } else {
            (VAR_TAIL_BYTES, INDEX_TAIL_BYTES)
        };
        Self {
            data: data_limit.saturating_sub(meta.tail.len() as u64),
            index: index_limit.saturating_sub(meta.index_tail.len() as u64),
        }
    }
}
