//! Columns as a table kind of a vault: what the vault's file-level `check` covers.

use kvault::{Store, TableKind};

use crate::column::Column;
use crate::error::Error;

/// The columns of a vault file as one [`TableKind`]: attach it to a [`kvault::Vault`] so
/// `Vault::check` verifies every column's invariants.
#[derive(Debug, Clone, Copy, Default)]
pub struct ColumnsKind;

impl TableKind for ColumnsKind {
    fn key(&self) -> String {
        "columns".into()
    }

    fn check_order(&self) -> u32 {
        // After key-value tables, as the check has always listed them.
        1
    }

    fn check(&self, store: &mut Store) -> kvault::Result<Vec<String>> {
        Column::check(store).map_err(|err| match err {
            Error::Vault(err) => err,
            other => kvault::Error::Corrupted(other.to_string()),
        })
    }
}
