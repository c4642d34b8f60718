//! Python's indexing rules, which the binding exposes unchanged: negative positions count from
//! the end, slices clamp to the length, indices do not.

use crate::error::{Error, Result};

/// Python slice bounds (`None` = open end, negatives count from the end) resolved against
/// `len` and clamped, with `stop >= start`, as `list[start:stop]` does.
pub(crate) fn resolve_slice(start: Option<i64>, stop: Option<i64>, len: u64) -> (u64, u64) {
    let resolve = |bound: i64| -> u64 {
        if bound < 0 {
            len.saturating_sub(bound.unsigned_abs())
        } else {
            u64::try_from(bound).unwrap_or(0).min(len)
        }
    };
    let begin = start.map_or(0, resolve);
    let end = stop.map_or(len, resolve);
    (begin, end.max(begin))
}

/// Resolves a Python-style index (negative counts from the end) against `len`, as
/// `list[index]` does: out of range is an error, not clamped.
pub(crate) fn resolve_index(index: i64, len: u64) -> Result<u64> {
    let resolved = if index < 0 {
        i128::from(len) + i128::from(index)
    } else {
        i128::from(index)
    };
    if resolved < 0 || resolved >= i128::from(len) {
        return Err(Error::IndexOutOfRange {
            index: index.unsigned_abs(),
            len,
        });
    }
    Ok(u64::try_from(resolved).unwrap_or(0))
}
