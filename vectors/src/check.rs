//! The invariants of vector collections, verified by the vault's `check()`: registry rows that
//! parse, item counts and change sequences that agree with the rows, well-formed vectors, and
//! a stored HNSW graph that, caught up, holds exactly the items.

use kvault::{Error, Result, Store, TableKind};
use rusqlite::Connection;

use crate::schema::{self, vector_table_names, Names};
use crate::state::{load_snapshot, Snapshot, State};

/// Vector collections as one [`TableKind`]: attach it to a [`kvault::Vault`] so `Vault::check`
/// covers every collection in the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct VectorsKind;

impl TableKind for VectorsKind {
    fn key(&self) -> String {
        "vectors".into()
    }

    fn check_order(&self) -> u32 {
        2
    }

    fn check(&self, store: &mut Store) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for name in vector_table_names(store)? {
            let found = store.read(|conn| match check_table(conn, &name) {
                Ok(found) => Ok(found),
                Err(Error::Corrupted(msg)) => Ok(vec![msg]),
                Err(other) => Err(other),
            })?;
            problems.extend(found);
        }
        Ok(problems)
    }
}

fn check_table(conn: &Connection, name: &str) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let names = Names::new(name).map_err(|e| Error::Corrupted(e.to_string()))?;
    let Some(reg) = schema::load(conn, name)? else {
        return Ok(problems);
    };
    let table = |what: String| format!("vector table {name:?}: {what}");
    let (rows, max_seq, bad_width): (i64, Option<i64>, i64) = conn.query_row(
        &format!(
            "SELECT count(*), max(seq), coalesce(sum(length(vector) != ?1), 0) FROM {}",
            names.items
        ),
        [reg.spec.vector_bytes() as i64],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if rows as u64 != reg.items {
        problems.push(table(format!(
            "the registry counts {} items, the table holds {rows}",
            reg.items
        )));
    }
    if bad_width > 0 {
        problems.push(table(format!(
            "{bad_width} vectors are not {} bytes long",
            reg.spec.vector_bytes()
        )));
    }
    let deleted_seq: Option<i64> = conn.query_row(
        &format!("SELECT max(seq) FROM {}", names.deletes),
        [],
        |r| r.get(0),
    )?;
    if max_seq.max(deleted_seq).is_some_and(|s| s > reg.seq) {
        problems.push(table(format!(
            "changes carry sequence numbers beyond the registry's {}",
            reg.seq
        )));
    }
    // Every vector well formed (finite; nonzero under cosine).
    let mut stmt = conn.prepare(&format!("SELECT id, vector FROM {}", names.items))?;
    let mut all = stmt.query([])?;
    let mut bad_vectors = 0u64;
    while let Some(row) = all.next()? {
        let vector = crate::schema::blob_at(row, 1)?;
        if vector.len() == reg.spec.vector_bytes()
            && reg.spec.check_vectors(vector, reg.spec.metric).is_err()
        {
            bad_vectors += 1;
        }
    }
    if bad_vectors > 0 {
        problems.push(table(format!(
            "{bad_vectors} vectors have NaN or infinite elements (or are zero under cosine)"
        )));
    }
    if problems.is_empty() {
        if let Some(index_seq) = reg.index_seq {
            problems.extend(
                check_graph(conn, &names, &reg, index_seq)
                    .into_iter()
                    .map(table),
            );
        }
    }
    Ok(problems)
}

/// The stored graph, caught up to the rows, must hold exactly the items.
fn check_graph(
    conn: &Connection,
    names: &Names,
    reg: &schema::Registry,
    index_seq: i64,
) -> Vec<String> {
    if index_seq > reg.seq {
        return vec![format!(
            "the stored graph is at sequence {index_seq}, beyond the registry's {}",
            reg.seq
        )];
    }
    match load_snapshot(conn, names, reg) {
        Err(err) => vec![err.to_string()],
        Ok(Snapshot::Missing) => {
            vec!["the registry names a stored graph, but it has no parts".into()]
        }
        // Not read: the next search builds the graph from the rows and stores it again.
        Ok(Snapshot::Foreign) => Vec::new(),
        Ok(Snapshot::Graph(_)) => {
            let mut state = State::default();
            let outcome = state
                .catch_up(conn, names, reg)
                .and_then(|()| state.hnsw(conn, names, reg).map(|g| g.len()))
                .and_then(|len| {
                    let graph = state.hnsw.as_ref().expect("loaded");
                    let mut stmt = conn.prepare(&format!("SELECT id FROM {}", names.items))?;
                    let ids = stmt
                        .query_map([], |r| r.get::<_, i64>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    let missing = ids.iter().filter(|&&id| !graph.contains(id)).count();
                    Ok((len, ids.len(), missing))
                });
            match outcome {
                Err(err) => vec![format!("the stored graph cannot be caught up: {err}")],
                Ok((len, items, missing)) if len != items || missing > 0 => vec![format!(
                    "the stored graph, caught up, holds {len} vectors for {items} items \
                     ({missing} items missing from it)"
                )],
                Ok(_) => Vec::new(),
            }
        }
    }
}
