//! The invariants of text tables, verified by the vault's `check()`: registry rows that
//! parse, item counts that agree with the rows, exact-text keys that match the texts, and an
//! FTS5 index that holds exactly the stored texts (FTS5's own `integrity-check`, which needs
//! a writable file).

use kvault::{Error, Result, Store, TableKind};
use rusqlite::Connection;

use crate::schema::{self, ident, text_table_names, Names};
use crate::table::{text_hash, TextTable};

/// Text tables as one [`TableKind`]: attach it to a [`kvault::Vault`] so `Vault::check`
/// covers every text table in the file, and `Vault::optimize` merges their indexes.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextKind;

impl TableKind for TextKind {
    fn key(&self) -> String {
        "text".into()
    }

    fn check_order(&self) -> u32 {
        3
    }

    fn check(&self, store: &mut Store) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        for name in text_table_names(store)? {
            let found = store.read(|conn| match check_rows(conn, &name) {
                Ok(found) => Ok(found),
                Err(Error::Corrupted(msg)) => Ok(vec![msg]),
                Err(other) => Err(other),
            })?;
            let rows_ok = found.is_empty();
            problems.extend(found);
            if rows_ok && !store.is_read_only() {
                if let Some(problem) = check_index(store, &name)? {
                    problems.push(problem);
                }
            }
        }
        Ok(problems)
    }

    fn reclaim(&self, store: &mut Store) -> Result<u64> {
        if store.is_read_only() {
            return Ok(0);
        }
        for name in text_table_names(store)? {
            if let Some(table) = TextTable::find(store, &name)? {
                table.optimize(store)?;
            }
        }
        Ok(0)
    }
}

fn check_rows(conn: &Connection, name: &str) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let names = Names::new(name).map_err(|e| Error::Corrupted(e.to_string()))?;
    let Some(reg) = schema::load(conn, name)? else {
        return Ok(problems);
    };
    let table = |what: String| format!("text table {name:?}: {what}");
    let columns: Vec<String> = reg.columns.iter().map(|c| ident(c)).collect();
    let mut stmt = conn.prepare(&format!(
        "SELECT __hash, {} FROM {}",
        columns.join(", "),
        ident(&names.items)
    ))?;
    let mut rows = stmt.query([])?;
    let (mut count, mut bad_hash, mut bad_text) = (0u64, 0u64, 0u64);
    while let Some(row) = rows.next()? {
        count += 1;
        let mut texts = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            match row.get_ref(1 + i)?.as_str() {
                Ok(text) => texts.push(text),
                Err(_) => {
                    bad_text += 1;
                    break;
                }
            }
        }
        if texts.len() == columns.len() && row.get::<_, i64>(0)? != text_hash(&texts) {
            bad_hash += 1;
        }
    }
    if count != reg.items {
        problems.push(table(format!(
            "the registry counts {} documents, the table holds {count}",
            reg.items
        )));
    }
    if bad_text > 0 {
        problems.push(table(format!(
            "{bad_text} documents have texts that are not UTF-8 text"
        )));
    }
    if bad_hash > 0 {
        problems.push(table(format!(
            "{bad_hash} documents have an exact-text key that does not match their texts"
        )));
    }
    let indexed: i64 = conn.query_row(
        &format!(
            "SELECT count(*) FROM {}",
            ident(&format!("{}_docsize", names.fts))
        ),
        [],
        |r| r.get(0),
    )?;
    if indexed as u64 != count {
        problems.push(table(format!(
            "the full-text index holds {indexed} documents, the table {count}"
        )));
    }
    Ok(problems)
}

/// FTS5's `integrity-check` against the stored texts (a write statement, though it writes
/// nothing).
fn check_index(store: &mut Store, name: &str) -> Result<Option<String>> {
    let names = Names::new(name)?;
    let fts = ident(&names.fts);
    let outcome = store.write(|conn| {
        Ok(conn.execute(
            &format!("INSERT INTO {fts} ({fts}, rank) VALUES ('integrity-check', 1)"),
            [],
        ))
    })?;
    Ok(outcome.err().map(|err| {
        format!(
            "text table {name:?}: the full-text index does not match the texts ({err}); rebuild it"
        )
    }))
}
