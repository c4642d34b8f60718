//! SQL functions every vault connection has, for single-statement writes of the layers above.
//!
//! A durable column append is one `UPDATE` of the column's row, as cheap as SQLite's own
//! one-row insert only if the statement does no more than the insert would. Two parts of it
//! cost more than the rest together (measured in one transaction, so without the commit):
//! - `RETURNING` (the new length) makes SQLite collect the returned rows in a temporary table
//!   first: 2 µs of a 6 µs statement. [`note`] takes its place: the `SET` expression
//!   `length = amber_note(length + 1)` notes the new length on the calling thread, read back
//!   with [`take_noted`] once the statement has run;
//! - the end offset written as 8 little-endian bytes through `unhex(printf(...))`: 1 µs.
//!   `amber_le64(n)` gives those bytes directly.
//!
//! Both are `SQLITE_DIRECTONLY`: a file's own schema (a trigger or view written into a hostile
//! file) cannot call them.

use std::cell::Cell;

use rusqlite::functions::FunctionFlags;
use rusqlite::Connection;

thread_local! {
    /// The value the last `amber_note` on this thread noted, until taken.
    static NOTED: Cell<Option<i64>> = const { Cell::new(None) };
}

/// Takes the value the last `amber_note(x)` evaluated on this thread noted (and forgets it).
/// Call it once before the statement too, so a value noted earlier is not mistaken for one of
/// this statement.
pub fn take_noted() -> Option<i64> {
    NOTED.with(Cell::take)
}

/// `amber_note(x)`: notes the integer `x` for [`take_noted`] and returns it.
fn note(x: i64) -> i64 {
    NOTED.with(|noted| noted.set(Some(x)));
    x
}

/// Adds the functions to `conn`.
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    let direct = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    conn.create_scalar_function("amber_note", 1, direct, |ctx| Ok(note(ctx.get(0)?)))?;
    conn.create_scalar_function(
        "amber_le64",
        1,
        direct | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(ctx.get::<i64>(0)?.to_le_bytes().to_vec()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_and_le64_work_in_direct_sql_only() {
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER, b BLOB); INSERT INTO t VALUES (41, NULL)")
            .unwrap();
        assert_eq!(take_noted(), None);
        let changed = conn
            .execute(
                "UPDATE t SET n = amber_note(n + 1), b = amber_le64(n + 1)",
                [],
            )
            .unwrap();
        assert_eq!((changed, take_noted(), take_noted()), (1, Some(42), None));
        let b: Vec<u8> = conn.query_row("SELECT b FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(b, 42i64.to_le_bytes());
        let minus: Vec<u8> = conn
            .query_row("SELECT amber_le64(-2)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(minus, (-2i64).to_le_bytes());
        // A schema object cannot call them.
        conn.execute_batch(
            "CREATE TABLE log (x); CREATE TRIGGER tr AFTER INSERT ON log \
             BEGIN SELECT amber_note(new.x); END;",
        )
        .unwrap();
        let err = conn.execute("INSERT INTO log VALUES (7)", []).unwrap_err();
        assert!(
            err.to_string().contains("unsafe use of amber_note"),
            "{err}"
        );
        assert_eq!(take_noted(), None);
    }
}
