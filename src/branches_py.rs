//! `BranchesCore` and `DiffCursorCore`: the native halves of a KVault's branches (fork,
//! delete, open, diff, merge). Each call releases the GIL and runs one core operation.

use std::sync::Mutex;

use kvault::{BranchInfo, Change, DiffCursor, MergeStrategy};
use pyo3::prelude::*;

use crate::convert::key_to_py;
use crate::errors::{BindingError, InvalidArgument};
use crate::kvault_py::PyKVault;
use crate::vault_py::run;

/// `(name, id, parent, created_at_ms, fork_epoch)`.
type BranchTuple = (String, i64, Option<String>, i64, i64);
/// `(added, changed, deleted, conflicts, unresolved keys)`.
type MergeTuple = (u64, u64, u64, u64, Vec<Py<PyAny>>);

fn branch_tuple(b: BranchInfo) -> BranchTuple {
    (b.name, b.id, b.parent, b.created_at_ms, b.fork_epoch)
}

/// The branches of one KVault's table.
#[pyclass(module = "ambervault._ambervault", name = "BranchesCore", frozen)]
pub struct PyBranches {
    kv: kvault::Kv,
}

#[pymethods]
impl PyBranches {
    /// The branches of `kv`'s table.
    #[new]
    fn new(kv: &Bound<'_, PyKVault>) -> Self {
        Self {
            kv: kv.get().kv().clone(),
        }
    }

    /// The name of the branch `kv` is on.
    #[getter]
    fn current(&self) -> String {
        self.kv.table().branch_name().to_string()
    }

    /// Every branch as `(name, id, parent, created_at_ms, fork_epoch)`, main first.
    fn list(&self, py: Python<'_>) -> Result<Vec<BranchTuple>, BindingError> {
        let table = self.kv.table();
        let found = run(py, self.kv.vault(), |s| table.branches(s))?;
        Ok(found.into_iter().map(branch_tuple).collect())
    }

    /// Forks branch `name` from `source` (the current branch when None).
    #[pyo3(signature = (name, source=None))]
    fn create(
        &self,
        py: Python<'_>,
        name: String,
        source: Option<String>,
    ) -> Result<BranchTuple, BindingError> {
        let table = self.kv.table();
        let info = run(py, self.kv.vault(), |s| {
            table.create_branch(s, &name, source.as_deref())
        })?;
        Ok(branch_tuple(info))
    }

    /// Deletes branch `name`.
    fn delete(&self, py: Python<'_>, name: String) -> Result<(), BindingError> {
        let table = self.kv.table();
        run(py, self.kv.vault(), |s| table.delete_branch(s, &name))
    }

    /// The native table handle on branch `name`.
    fn open(&self, py: Python<'_>, name: String) -> Result<PyKVault, BindingError> {
        let kv = self.kv.clone();
        let branch = py.detach(move || kv.branch(&name))?;
        Ok(PyKVault::from_kv(branch))
    }

    /// A diff of branch `a` against branch `b`, read in pages.
    fn diff(&self, py: Python<'_>, a: String, b: String) -> Result<PyDiffCursor, BindingError> {
        let table = self.kv.table();
        let cursor = run(py, self.kv.vault(), |s| table.diff(s, &a, &b))?;
        Ok(PyDiffCursor {
            kv: self.kv.clone(),
            cursor: Mutex::new(cursor),
        })
    }

    /// Merges `source` into `target`; `strategy` is "last_writer_wins", "source",
    /// "fail_on_conflict" or "report". Returns `(added, changed, deleted, conflicts,
    /// unresolved keys)`.
    fn merge(
        &self,
        py: Python<'_>,
        source: String,
        target: String,
        strategy: &str,
    ) -> Result<MergeTuple, BindingError> {
        let strategy = match strategy {
            "last_writer_wins" => MergeStrategy::LastWriterWins,
            "source" => MergeStrategy::SourceWins,
            "fail_on_conflict" => MergeStrategy::FailOnConflict,
            "report" => MergeStrategy::Report,
            other => {
                return Err(BindingError::Py(InvalidArgument::new_err(format!(
                    "unknown merge strategy {other:?}"
                ))))
            }
        };
        let table = self.kv.table();
        let report = run(py, self.kv.vault(), |s| {
            table.merge(s, &source, &target, strategy)
        })?;
        let unresolved = report
            .unresolved
            .iter()
            .map(|(key, kind)| key_to_py(py, key, *kind))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((
            report.added,
            report.changed,
            report.deleted,
            report.conflicts,
            unresolved,
        ))
    }
}

/// A diff being read (see `BranchesCore.diff`).
#[pyclass(module = "ambervault._ambervault", name = "DiffCursorCore", frozen)]
pub struct PyDiffCursor {
    kv: kvault::Kv,
    cursor: Mutex<DiffCursor>,
}

fn change_name(change: Change) -> &'static str {
    match change {
        Change::Added => "added",
        Change::Removed => "removed",
        Change::Changed => "changed",
    }
}

#[pymethods]
impl PyDiffCursor {
    /// Keys still to compare.
    #[getter]
    fn remaining(&self) -> usize {
        self.cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remaining()
    }

    /// The next `(key, change)` pairs, comparing at most `max_keys` candidate keys; an empty
    /// list can still be followed by more while `remaining` is not 0.
    fn next_page(
        &self,
        py: Python<'_>,
        max_keys: usize,
    ) -> Result<Vec<(Py<PyAny>, &'static str)>, BindingError> {
        let entries = py.detach(|| {
            let mut cursor = self
                .cursor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.kv.vault().with(|s| cursor.next_page(s, max_keys))
        })?;
        entries
            .into_iter()
            .map(|e| Ok((key_to_py(py, &e.key, e.kind)?, change_name(e.change))))
            .collect()
    }

    /// Reads the rest and returns `(added, removed, changed)`.
    fn summary(&self, py: Python<'_>) -> Result<(u64, u64, u64), BindingError> {
        let summary = py.detach(|| {
            let mut cursor = self
                .cursor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.kv.vault().with(|s| cursor.summary(s))
        })?;
        Ok((summary.added, summary.removed, summary.changed))
    }
}

/// Adds the classes to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBranches>()?;
    m.add_class::<PyDiffCursor>()?;
    Ok(())
}
