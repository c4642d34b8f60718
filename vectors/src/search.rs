//! Searching a collection: which engine answers (exact rows, the HNSW graph, or a scan of the
//! stored rows inside an explicit transaction), metadata filters, and fetching the items.

use std::collections::HashSet;

use kvault::{Error, Filter, Result, Store};
use rusqlite::Connection;

use crate::flat::{Flat, IdFilter, Rows};
use crate::schema::{IndexKind, Registry, AUTO_HNSW_MIN};
use crate::spec::{Metric, Spec};
use crate::state::State;
use crate::table::{Item, VectorTable};
use crate::topk::Hit;

/// A filter matching at most this many items (or a twentieth of the collection) is answered
/// exactly over the matches, which is both exact and faster than a graph walk that must skip
/// most nodes.
const SELECTIVE_MATCHES: usize = 2_000;

/// How to search.
#[derive(Debug, Clone, Copy)]
pub struct SearchOptions<'a> {
    /// Results per query.
    pub k: usize,
    /// Another metric than the collection's (exact search only).
    pub metric: Option<Metric>,
    /// Exact search even when the collection has a graph.
    pub exact: bool,
    /// Only items whose metadata the filter accepts.
    pub filter: Option<&'a Filter>,
    /// The graph's candidate list size for this search (None: the collection's setting).
    pub ef_search: Option<usize>,
}

impl Default for SearchOptions<'_> {
    fn default() -> Self {
        Self {
            k: 10,
            metric: None,
            exact: false,
            filter: None,
            ef_search: None,
        }
    }
}

impl VectorTable {
    /// The `k` nearest items to each query (`queries`: whole vectors in the stored form),
    /// nearest first.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for queries of the wrong size, NaN or infinite elements, a
    /// zero query under cosine, or a metric the vector type cannot use; SQLite errors.
    pub fn search(
        &self,
        store: &mut Store,
        queries: &[u8],
        options: &SearchOptions<'_>,
    ) -> Result<Vec<Vec<Hit>>> {
        let metric = options.metric.unwrap_or(self.spec.metric);
        let spec = Spec::new(self.spec.dimensions, self.spec.vector_type, metric)?;
        let m = spec
            .check_vectors(queries, metric)
            .map_err(|err| match err {
                Error::InvalidArgument(msg) => {
                    Error::InvalidArgument(msg.replace("vector", "query"))
                }
                other => other,
            })?;
        if m == 0 {
            return Ok(Vec::new());
        }
        let in_transaction = store.transaction_depth() > 0;
        let mut state = self.lock_state();
        let hits = store.read(|conn| {
            let reg = self.registry(conn)?;
            if options.k == 0 || reg.items == 0 {
                return Ok(vec![Vec::new(); m]);
            }
            let allowed = match options.filter {
                Some(filter) if !filter.is_empty() => {
                    let ids = filter.matching_ids(conn, &self.names.items)?;
                    if ids.is_empty() {
                        return Ok(vec![Vec::new(); m]);
                    }
                    Some(ids)
                }
                _ => None,
            };
            if in_transaction && !state.is_current(&reg) {
                // This transaction's own changes are not in the engines (which only ever hold
                // committed state): scan the rows as the transaction sees them.
                let flat = self.rows_flat(conn, allowed.as_deref())?;
                return Ok(flat.search(&Rows::decode(&spec, queries), options.k, metric, None));
            }
            state.catch_up(conn, &self.names, &reg)?;
            self.search_engines(conn, &mut state, &reg, queries, metric, allowed, options)
        })?;
        if !in_transaction && !store.is_read_only() && state.should_store() {
            store.write(|conn| state.store_snapshot(conn, &self.names))?;
        }
        Ok(hits)
    }

    #[allow(clippy::too_many_arguments)]
    fn search_engines(
        &self,
        conn: &Connection,
        state: &mut State,
        reg: &Registry,
        queries: &[u8],
        metric: Metric,
        allowed: Option<Vec<i64>>,
        options: &SearchOptions<'_>,
    ) -> Result<Vec<Vec<Hit>>> {
        let exact = options.exact || metric != reg.spec.metric;
        let use_graph = !exact
            && match reg.index.kind {
                IndexKind::Flat => false,
                IndexKind::Hnsw => true,
                IndexKind::Auto => reg.items >= AUTO_HNSW_MIN || state.hnsw.is_some(),
            };
        let spec = reg.spec;
        let allowed_set: Option<HashSet<i64>> =
            allowed.as_ref().map(|ids| ids.iter().copied().collect());
        let accept = |id: i64| allowed_set.as_ref().is_none_or(|set| set.contains(&id));
        let filter: Option<IdFilter<'_>> = allowed_set.as_ref().map(|_| &accept as IdFilter<'_>);
        if let Some(ids) = &allowed {
            let selective = ids.len() <= SELECTIVE_MATCHES.max((reg.items / 20) as usize);
            if selective && state.flat.is_none() {
                let flat = self.rows_flat(conn, Some(ids))?;
                return Ok(flat.search(&Rows::decode(&spec, queries), options.k, metric, None));
            }
            if selective || !use_graph {
                let flat = state.flat(conn, &self.names, reg)?;
                return Ok(flat.search(&Rows::decode(&spec, queries), options.k, metric, filter));
            }
        }
        if !use_graph {
            let flat = state.flat(conn, &self.names, reg)?;
            return Ok(flat.search(&Rows::decode(&spec, queries), options.k, metric, filter));
        }
        let found = self.search_graph(conn, state, reg, queries, options, filter)?;
        // A graph walk can come back short (after many removals a region of the graph may be
        // cut off from the entry point). Every query must still get min(k, matching) items:
        // those queries are answered exactly.
        let available = allowed.as_ref().map_or(reg.items as usize, Vec::len);
        let wanted = options.k.min(available);
        if found.iter().all(|hits| hits.len() >= wanted) {
            return Ok(found);
        }
        let width = spec.vector_bytes();
        let flat = state.flat(conn, &self.names, reg)?;
        Ok(found
            .into_iter()
            .zip(queries.chunks_exact(width))
            .map(|(hits, query)| {
                if hits.len() >= wanted {
                    hits
                } else {
                    let exact = flat.search(&Rows::decode(&spec, query), options.k, metric, filter);
                    exact.into_iter().next().unwrap_or_default()
                }
            })
            .collect())
    }

    /// The graph's answers to each query.
    fn search_graph(
        &self,
        conn: &Connection,
        state: &mut State,
        reg: &Registry,
        queries: &[u8],
        options: &SearchOptions<'_>,
        filter: Option<IdFilter<'_>>,
    ) -> Result<Vec<Vec<Hit>>> {
        let spec = reg.spec;
        let graph = state.hnsw(conn, &self.names, reg)?;
        let ef = options.ef_search.unwrap_or(reg.index.ef_search);
        let width = spec.vector_bytes();
        let query_list: Vec<&[u8]> = queries.chunks_exact(width).collect();
        let workers = crate::cores::cores().min(query_list.len() / 4).max(1);
        if workers == 1 {
            return query_list
                .iter()
                .map(|q| graph.search(q, options.k, ef, filter))
                .collect();
        }
        let per = query_list.len().div_ceil(workers);
        std::thread::scope(|scope| {
            let handles: Vec<_> = query_list
                .chunks(per)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|q| graph.search(q, options.k, ef, filter))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(query_list.len());
            for handle in handles {
                all.extend(handle.join().expect("search thread panicked")?);
            }
            Ok(all)
        })
    }

    /// The stored rows (all, or those with the given ids) as a throwaway exact engine.
    fn rows_flat(&self, conn: &Connection, ids: Option<&[i64]>) -> Result<Flat> {
        let mut flat = Flat::new(self.spec);
        match ids {
            Some(ids) => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT vector FROM {} WHERE id = ?1",
                    self.names.items
                ))?;
                for &id in ids {
                    let vector: Vec<u8> = stmt.query_row([id], |r| r.get(0))?;
                    self.check_stored(id, &vector)?;
                    flat.upsert(id, &vector);
                }
            }
            None => {
                let mut stmt =
                    conn.prepare_cached(&format!("SELECT id, vector FROM {}", self.names.items))?;
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    let id: i64 = row.get(0)?;
                    let vector = crate::schema::blob_at(row, 1)?;
                    self.check_stored(id, vector)?;
                    flat.upsert(id, vector);
                }
            }
        }
        Ok(flat)
    }

    fn check_stored(&self, id: i64, vector: &[u8]) -> Result<()> {
        if vector.len() == self.spec.vector_bytes() {
            return Ok(());
        }
        Err(Error::Corrupted(format!(
            "vector table {:?}: item {id} has a {}-byte vector, not {}",
            self.names.name,
            vector.len(),
            self.spec.vector_bytes()
        )))
    }

    /// The `k` nearest items to one query with their stored items, nearest first. Items
    /// deleted between the search and the fetch are searched for again.
    ///
    /// # Errors
    /// As [`VectorTable::search`].
    pub fn search_items(
        &self,
        store: &mut Store,
        query: &[u8],
        options: &SearchOptions<'_>,
    ) -> Result<Vec<(Hit, Item)>> {
        for _ in 0..3 {
            let hits = self.search(store, query, options)?;
            let hits = hits.into_iter().next().unwrap_or_default();
            let items = self.get_many(store, &hits.iter().map(|h| h.id).collect::<Vec<_>>())?;
            if items.iter().all(Option::is_some) {
                return Ok(hits.into_iter().zip(items.into_iter().flatten()).collect());
            }
        }
        Err(Error::Busy {
            retries: 3,
            detail: "items kept being deleted while they were searched".into(),
        })
    }

    /// The items with these ids (None for ids that do not exist), from one snapshot.
    ///
    /// # Errors
    /// SQLite errors; [`Error::Corrupted`] for a damaged row.
    pub fn get_many(&self, store: &mut Store, ids: &[i64]) -> Result<Vec<Option<Item>>> {
        store.read(|conn| ids.iter().map(|id| self.fetch(conn, "id", id)).collect())
    }

    /// Builds (or rebuilds) the HNSW graph from the rows and stores it in the file.
    ///
    /// # Errors
    /// SQLite errors; a read-only vault.
    pub fn build_index(&self, store: &mut Store) -> Result<()> {
        store.check_writable()?;
        let mut state = self.lock_state();
        state.drop_graph();
        store.read(|conn| {
            let reg = self.registry(conn)?;
            state.catch_up(conn, &self.names, &reg)?;
            state.rebuild_graph(conn, &self.names, &reg)?;
            Ok(())
        })?;
        store.write(|conn| state.store_snapshot(conn, &self.names))?;
        Ok(())
    }

    /// Stores the loaded graph if it changed since it was last stored (`only_if_due`: only
    /// once the changes reach a tenth of its size, at least 1,000); whether it was stored.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn store_index(&self, store: &mut Store, only_if_due: bool) -> Result<bool> {
        if store.is_read_only() || store.transaction_depth() > 0 {
            return Ok(false);
        }
        let mut state = self.lock_state();
        if state.hnsw.is_none() {
            return Ok(false);
        }
        store.read(|conn| {
            let reg = self.registry(conn)?;
            state.catch_up(conn, &self.names, &reg)
        })?;
        let due = if only_if_due {
            state.should_store()
        } else {
            state.unsaved > 0
        };
        if !due {
            return Ok(false);
        }
        store.write(|conn| state.store_snapshot(conn, &self.names))
    }
}
