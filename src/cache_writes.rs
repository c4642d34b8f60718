//! `Writes`: what a key-value write-back cache holds, the latest write per key in the order
//! the keys were (last) written.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use kvault::{Encoding, KeyKind};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;

/// One cached write.
pub(crate) struct Entry {
    pub(crate) raw: Box<[u8]>,
    pub(crate) kind: KeyKind,
    /// The key as the user gave it (handed back by `entry`).
    pub(crate) key: Py<PyAny>,
    pub(crate) value: PyBackedBytes,
    pub(crate) expires_at_ms: Option<i64>,
    pub(crate) encoding: u8,
}

impl Entry {
    pub(crate) fn size(&self) -> usize {
        self.raw.len() + self.value.len()
    }
}

/// The latest write per key, in the order the keys were (last) written.
#[derive(Default)]
pub(crate) struct Writes {
    /// Insertion order; `None` where a key was rewritten or discarded since.
    slots: Vec<Option<Entry>>,
    /// `(hash of the raw key, its slot)`: the hash is kept so that growing the table never
    /// reads (or hashes) a key again.
    index: HashTable<(u64, usize)>,
    hasher: DefaultHashBuilder,
    pub(crate) nbytes: usize,
}

impl Writes {
    fn hash(&self, raw: &[u8]) -> u64 {
        self.hasher.hash_one(raw)
    }

    fn find(&self, raw: &[u8]) -> Option<usize> {
        let hash = self.hash(raw);
        let slots = &self.slots;
        self.index
            .find(hash, |&(h, at)| {
                h == hash && slots[at].as_ref().is_some_and(|e| &*e.raw == raw)
            })
            .map(|&(_, at)| at)
    }

    pub(crate) fn remove(&mut self, raw: &[u8]) -> Option<Entry> {
        let hash = self.hash(raw);
        let slots = &self.slots;
        let found = self.index.find_entry(hash, |&(h, at)| {
            h == hash && slots[at].as_ref().is_some_and(|e| &*e.raw == raw)
        });
        let at = found.ok()?.remove().0 .1;
        let entry = self.slots[at].take()?;
        self.nbytes -= entry.size();
        if self.index.is_empty() {
            self.slots.clear();
        } else if self.slots.len() > 64 && self.index.len() * 2 < self.slots.len() {
            self.compact();
        }
        Some(entry)
    }

    /// Drops the holes left by rewritten and discarded keys.
    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        self.index.clear();
        for at in 0..self.slots.len() {
            let hash = self.hash(&self.slots[at].as_ref().expect("kept").raw);
            self.index.insert_unique(hash, (hash, at), |&(h, _)| h);
        }
    }

    /// Adds a write of a key not held.
    pub(crate) fn insert(&mut self, entry: Entry) {
        self.nbytes += entry.size();
        let hash = self.hash(&entry.raw);
        let at = self.slots.len();
        self.index.insert_unique(hash, (hash, at), |&(h, _)| h);
        self.slots.push(Some(entry));
    }

    pub(crate) fn get(&self, raw: &[u8]) -> Option<&Entry> {
        self.find(raw).and_then(|at| self.slots[at].as_ref())
    }

    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().flatten()
    }
    /// Puts `older` writes (a batch handed to the background writer and not written) back in
    /// front of these: a key written since keeps its newer write, and the older one is
    /// dropped (with the interpreter lock held: entries hold Python references).
    pub(crate) fn absorb_older(&mut self, older: Writes) {
        let newer = std::mem::take(self);
        for entry in older.slots.into_iter().flatten() {
            if newer.find(&entry.raw).is_none() {
                self.insert(entry);
            }
        }
        for entry in newer.slots.into_iter().flatten() {
            self.insert(entry);
        }
    }

    /// The batch as `put_many` items.
    pub(crate) fn items(&self) -> Vec<kvault::PutItem<'_>> {
        self.entries()
            .map(|e| {
                kvault::PutItem::new(&e.raw, e.kind, &e.value)
                    .expiring(e.expires_at_ms)
                    .encoded(Encoding(e.encoding))
            })
            .collect()
    }
}
