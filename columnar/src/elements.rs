//! Elements going into a column ([`Elements`], already encoded) and coming out ([`ReadOut`]).

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::meta::ColumnMeta;

/// Elements to write, already encoded.
#[derive(Debug, Clone, Copy)]
pub enum Elements<'a> {
    /// Fixed-width elements back to back (length a multiple of the width).
    Fixed(&'a [u8]),
    /// Variable-width elements.
    Var(&'a [&'a [u8]]),
    /// Variable-width elements packed back to back: element `k` is `data[ends[k-1]..ends[k]]`
    /// (with `ends[-1] = 0`); `ends` never decrease and the last is `data.len()`. Appends write
    /// `data` as it is, without gathering the items.
    Packed {
        /// The elements' bytes back to back.
        data: &'a [u8],
        /// End offset of each element within `data`.
        ends: &'a [usize],
    },
}

impl<'a> Elements<'a> {
    /// Variable-width elements one by one (packed ones checked and split; no bytes copied),
    /// for the operations that replace or insert items individually.
    pub(crate) fn items(&self) -> Result<Cow<'_, [&'a [u8]]>> {
        match *self {
            Elements::Var(items) => Ok(Cow::Borrowed(items)),
            Elements::Packed { data, ends } => {
                check_packed(data, ends)?;
                let mut start = 0;
                Ok(Cow::Owned(
                    ends.iter()
                        .map(|&end| {
                            let item = &data[start..end];
                            start = end;
                            item
                        })
                        .collect(),
                ))
            }
            Elements::Fixed(_) => Err(Error::InvalidArgument(
                "fixed-width elements have no variable-width items".into(),
            )),
        }
    }

    /// How many elements these are, checked against the column's layout.
    pub(crate) fn count(&self, meta: &ColumnMeta) -> Result<u64> {
        match (self, meta.width()) {
            (Elements::Packed { data, ends }, None) => {
                check_packed(data, ends)?;
                Ok(ends.len() as u64)
            }
            (Elements::Fixed(raw), Some(w)) => {
                if !(raw.len() as u64).is_multiple_of(w) {
                    return Err(Error::InvalidArgument(format!(
                        "{} bytes is not a whole number of {w}-byte {} elements",
                        raw.len(),
                        meta.dtype.name()
                    )));
                }
                Ok(raw.len() as u64 / w)
            }
            (Elements::Var(items), None) => Ok(items.len() as u64),
            _ => Err(Error::InvalidArgument(format!(
                "element layout does not match column {:?} of dtype {}",
                meta.name,
                meta.dtype.name()
            ))),
        }
    }
}

/// Packed elements must split into items: `ends` non-decreasing, the last at the data's end.
fn check_packed(data: &[u8], ends: &[usize]) -> Result<()> {
    if ends.windows(2).any(|w| w[1] < w[0]) || ends.last().copied().unwrap_or(0) != data.len() {
        return Err(Error::InvalidArgument(
            "packed elements need non-decreasing ends, the last equal to the data length".into(),
        ));
    }
    Ok(())
}

/// Elements read from a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOut {
    /// Fixed-width elements back to back.
    Fixed(Vec<u8>),
    /// Variable-width elements: `data[ends[k-1]..ends[k]]` is element k (`ends[-1]` = 0).
    Var {
        /// End offset of each element within `data`.
        ends: Vec<u64>,
        /// The elements' bytes back to back.
        data: Vec<u8>,
    },
}
