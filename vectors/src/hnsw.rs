//! The approximate engine: an HNSW graph (Unum's USearch) keyed by item id, serialized to bytes
//! for its snapshot in the vault file.

use kvault::{Error, Result};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::flat::IdFilter;
use crate::schema::IndexConfig;
use crate::spec::{Metric, Spec, VectorType};
use crate::topk::Hit;

/// An HNSW graph over a collection's vectors.
pub struct Hnsw {
    index: Index,
    spec: Spec,
    /// Removals since the graph was built: removed nodes stay in the graph as tombstones, so
    /// after many the graph is rebuilt.
    removed: usize,
}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("size", &self.index.size())
            .field("removed", &self.removed)
            .finish_non_exhaustive()
    }
}

fn failed(what: &str, err: &impl std::fmt::Display) -> Error {
    Error::Io(std::io::Error::other(format!("HNSW {what}: {err}")))
}

fn options(spec: &Spec, config: &IndexConfig) -> IndexOptions {
    IndexOptions {
        dimensions: spec.dimensions,
        metric: match spec.metric {
            Metric::Cosine => MetricKind::Cos,
            Metric::L2 => MetricKind::L2sq,
            Metric::Dot => MetricKind::IP,
            Metric::Hamming => MetricKind::Hamming,
        },
        quantization: match spec.vector_type {
            VectorType::F32 => ScalarKind::F32,
            VectorType::F16 => ScalarKind::F16,
            VectorType::I8 => ScalarKind::I8,
            VectorType::Bit => ScalarKind::B1,
        },
        connectivity: config.connectivity,
        expansion_add: config.ef_construction,
        expansion_search: config.ef_search,
        multi: false,
    }
}

/// Search threads the graph is prepared for.
fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 8)
}

#[allow(clippy::len_without_is_empty)]
impl Hnsw {
    /// An empty graph with room for `capacity` vectors.
    ///
    /// # Errors
    /// When USearch cannot allocate the graph.
    pub fn new(spec: Spec, config: &IndexConfig, capacity: usize) -> Result<Self> {
        let index = Index::new(&options(&spec, config)).map_err(|e| failed("create", &e))?;
        index
            .reserve_capacity_and_threads(capacity.max(64), threads())
            .map_err(|e| failed("reserve", &e))?;
        Ok(Self {
            index,
            spec,
            removed: 0,
        })
    }

    /// A graph from its serialized bytes; checks that it matches `spec`.
    ///
    /// # Errors
    /// [`Error::Corrupted`] when the bytes are not a graph of this spec.
    pub fn from_bytes(spec: Spec, config: &IndexConfig, bytes: &[u8]) -> Result<Self> {
        let graph = Self::new(spec, config, 0)?;
        graph
            .index
            .load_from_buffer(bytes)
            .map_err(|e| Error::Corrupted(format!("HNSW snapshot: {e}")))?;
        if graph.index.dimensions() != spec.dimensions {
            return Err(Error::Corrupted(format!(
                "HNSW snapshot has {} dimensions, the collection {}",
                graph.index.dimensions(),
                spec.dimensions
            )));
        }
        graph
            .index
            .reserve_capacity_and_threads(graph.index.size().max(64), threads())
            .map_err(|e| failed("reserve", &e))?;
        graph.index.change_expansion_search(config.ef_search.max(1));
        Ok(graph)
    }

    /// The graph as bytes.
    ///
    /// # Errors
    /// When USearch fails to serialize.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut buffer = vec![0u8; self.index.serialized_length()];
        self.index
            .save_to_buffer(&mut buffer)
            .map_err(|e| failed("save", &e))?;
        Ok(buffer)
    }

    /// Number of vectors in the graph.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// Whether `id` is in the graph.
    #[must_use]
    pub fn contains(&self, id: i64) -> bool {
        u64::try_from(id).is_ok_and(|key| self.index.contains(key))
    }

    /// Bytes of memory the graph uses.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_usage()
    }

    /// Removals since the graph was built.
    #[must_use]
    pub fn removed(&self) -> usize {
        self.removed
    }

    /// Makes room for `additional` more vectors.
    fn grow_for(&self, additional: usize) -> Result<()> {
        let needed = self.index.size() + additional;
        if needed > self.index.capacity() {
            let capacity = needed.max(self.index.capacity() * 2);
            self.index
                .reserve_capacity_and_threads(capacity, threads())
                .map_err(|e| failed("reserve", &e))?;
        }
        Ok(())
    }

    /// Adds (or replaces) the vector of `id`, given in its stored form.
    ///
    /// # Errors
    /// When USearch cannot add it.
    pub fn upsert(&mut self, id: i64, stored: &[u8]) -> Result<()> {
        if self.contains(id) {
            self.remove(id)?;
        }
        self.grow_for(1)?;
        self.add_unchecked(id, stored)
    }

    /// Adds many new vectors (ids not yet in the graph) in parallel.
    ///
    /// # Errors
    /// When USearch cannot add one.
    pub fn add_many(&mut self, items: &[(i64, &[u8])]) -> Result<()> {
        self.grow_for(items.len())?;
        let workers = threads().min(items.len().div_ceil(256)).max(1);
        if workers == 1 {
            for (id, stored) in items {
                self.add_unchecked(*id, stored)?;
            }
            return Ok(());
        }
        let this = &*self;
        let per = items.len().div_ceil(workers);
        std::thread::scope(|scope| {
            let handles: Vec<_> = items
                .chunks(per)
                .map(|part| {
                    scope.spawn(move || -> Result<()> {
                        for (id, stored) in part {
                            this.add_unchecked(*id, stored)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for handle in handles {
                handle.join().expect("HNSW build thread panicked")?;
            }
            Ok(())
        })
    }

    fn add_unchecked(&self, id: i64, stored: &[u8]) -> Result<()> {
        let key = u64::try_from(id)
            .map_err(|_| Error::InvalidArgument(format!("item id {id} is negative")))?;
        let added = match self.spec.vector_type {
            VectorType::F32 => self.index.add(key, &f32s(stored)),
            VectorType::F16 => self.index.add(key, &f16s(stored)),
            VectorType::I8 => self.index.add(key, &i8s(stored)),
            VectorType::Bit => self.index.add(key, usearch::b1x8::from_u8s(stored)),
        };
        added.map_err(|e| failed("add", &e))
    }

    /// Removes `id` if present.
    ///
    /// # Errors
    /// When USearch fails to remove it.
    pub fn remove(&mut self, id: i64) -> Result<()> {
        if self.contains(id) {
            self.index
                .remove(id as u64)
                .map_err(|e| failed("remove", &e))?;
            self.removed += 1;
        }
        Ok(())
    }

    /// The (approximately) `k` nearest to `query` (stored form), among ids `filter` accepts.
    ///
    /// # Errors
    /// When USearch fails.
    pub fn search(
        &self,
        query: &[u8],
        k: usize,
        ef_search: usize,
        filter: Option<IdFilter<'_>>,
    ) -> Result<Vec<Hit>> {
        if k == 0 || self.index.size() == 0 {
            return Ok(Vec::new());
        }
        // The candidate list must be at least k long to return k results.
        self.index.change_expansion_search(ef_search.max(k));
        // Without a filter, the plain search: the filtered one calls back into Rust for every
        // node it visits.
        let found = match filter {
            None => match self.spec.vector_type {
                VectorType::F32 => self.index.search(&f32s(query), k),
                VectorType::F16 => self.index.search(&f16s(query), k),
                VectorType::I8 => self.index.search(&i8s(query), k),
                VectorType::Bit => self.index.search(usearch::b1x8::from_u8s(query), k),
            },
            Some(accept) => {
                let accept = |key: u64| accept(key as i64);
                match self.spec.vector_type {
                    VectorType::F32 => self.index.filtered_search(&f32s(query), k, accept),
                    VectorType::F16 => self.index.filtered_search(&f16s(query), k, accept),
                    VectorType::I8 => self.index.filtered_search(&i8s(query), k, accept),
                    VectorType::Bit => {
                        self.index
                            .filtered_search(usearch::b1x8::from_u8s(query), k, accept)
                    }
                }
            }
        }
        .map_err(|e| failed("search", &e))?;
        Ok(found
            .keys
            .iter()
            .zip(&found.distances)
            // A removed node's slot carries USearch's free key (u64::MAX); a walk can return
            // it. Such hits are dropped (a short result is then answered exactly).
            .filter(|(&key, _)| i64::try_from(key).is_ok_and(|id| id > 0))
            .map(|(&key, &distance)| Hit {
                id: key as i64,
                distance: if self.spec.metric == Metric::L2 {
                    distance.max(0.0).sqrt()
                } else {
                    distance
                },
            })
            .collect())
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f16s(bytes: &[u8]) -> Vec<usearch::f16> {
    let bits: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    usearch::f16::from_i16s(&bits).to_vec()
}

fn i8s(bytes: &[u8]) -> Vec<i8> {
    bytes.iter().map(|&b| i8::from_le_bytes([b])).collect()
}
