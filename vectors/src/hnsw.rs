//! The approximate engine: an HNSW graph (hnswlib, through `cpp/hnsw_graph.cpp`) keyed by item
//! id, with distances from this crate's kernels, serialized to bytes for its snapshot in the
//! vault file.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::NonNull;

use half::f16;
use kvault::{Error, Result};

use crate::flat::IdFilter;
use crate::kernels::{graph_hamming, GraphDistance, GraphDistances, Kernels};
use crate::parts::uncarried;
use crate::schema::IndexConfig;
use crate::spec::{Metric, Spec, VectorType};
use crate::topk::Hit;

/// The C interface in `cpp/hnsw_graph.cpp`.
mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    /// An opaque hnswlib graph.
    #[repr(C)]
    pub struct Graph {
        _private: [u8; 0],
    }

    use crate::kernels::GraphDistance;
    pub type AcceptFn = unsafe extern "C" fn(*mut c_void, u64) -> c_int;
    pub type ReadFn = unsafe extern "C" fn(*mut c_void, *mut u8, usize) -> c_int;
    pub type WriteFn = unsafe extern "C" fn(*mut c_void, *const u8, usize) -> c_int;

    extern "C" {
        pub fn av_graph_new(
            data_size: usize,
            distance: GraphDistance,
            param: *const c_void,
            capacity: usize,
            m: usize,
            ef_construction: usize,
            err: *mut c_char,
            err_len: usize,
        ) -> *mut Graph;
        pub fn av_graph_free(graph: *mut Graph);
        pub fn av_graph_reserve(
            graph: *mut Graph,
            capacity: usize,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        pub fn av_graph_capacity(graph: *const Graph) -> usize;
        pub fn av_graph_count(graph: *const Graph) -> usize;
        pub fn av_graph_removed(graph: *const Graph) -> usize;
        pub fn av_graph_contains(graph: *const Graph, label: u64) -> c_int;
        pub fn av_graph_add(
            graph: *mut Graph,
            label: u64,
            data: *const c_void,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        pub fn av_graph_remove(
            graph: *mut Graph,
            label: u64,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        pub fn av_graph_search(
            graph: *const Graph,
            query: *const c_void,
            k: usize,
            ef: usize,
            accept: Option<AcceptFn>,
            context: *mut c_void,
            labels: *mut u64,
            distances: *mut f32,
            err: *mut c_char,
            err_len: usize,
        ) -> usize;
        pub fn av_graph_memory(graph: *const Graph) -> usize;
        pub fn av_graph_save(
            graph: *const Graph,
            write: WriteFn,
            context: *mut c_void,
            err: *mut c_char,
            err_len: usize,
        ) -> c_int;
        pub fn av_graph_is_snapshot(bytes: *const u8, len: usize) -> c_int;
        pub fn av_graph_load(
            read: ReadFn,
            context: *mut c_void,
            data_size: usize,
            distance: GraphDistance,
            param: *const c_void,
            capacity: usize,
            err: *mut c_char,
            err_len: usize,
        ) -> *mut Graph;
    }
}

/// Room for the C side's error messages.
const ERR_LEN: usize = 256;

/// Calls `f` with an error buffer; turns its failure (per `failed`) into an error naming `what`.
fn call<T>(
    what: &str,
    f: impl FnOnce(*mut c_char, usize) -> T,
    failed: impl FnOnce(&T) -> bool,
) -> Result<T> {
    let mut err = [0 as c_char; ERR_LEN];
    let out = f(err.as_mut_ptr(), ERR_LEN);
    if failed(&out) {
        // SAFETY: the C side writes a NUL-terminated message within the buffer (or nothing,
        // leaving it zeroed).
        let message = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
        return Err(Error::Io(std::io::Error::other(format!(
            "HNSW {what}: {message}"
        ))));
    }
    Ok(out)
}

/// Bytes of one vector in the graph.
///
/// f32 and f16 vectors are stored as f32 (f16 widened); under cosine they are stored
/// normalised, so the distance is `1 - dot`. i8 vectors under cosine carry their squared norm
/// after the elements.
fn data_size(spec: &Spec) -> usize {
    match (spec.vector_type, spec.metric) {
        (VectorType::F32 | VectorType::F16, _) => spec.dimensions * 4,
        (VectorType::I8, Metric::Cosine) => spec.dimensions + 4,
        (VectorType::I8, _) => spec.dimensions,
        (VectorType::Bit, _) => spec.dimensions / 8,
    }
}

/// Elements per vector the distance reads (bytes for bit vectors): its parameter.
fn elements(spec: &Spec) -> usize {
    match spec.vector_type {
        VectorType::Bit => spec.dimensions / 8,
        _ => spec.dimensions,
    }
}

/// The distance function for `spec`.
fn distance_fn(spec: &Spec) -> GraphDistance {
    let d = GraphDistances::get();
    match (spec.vector_type, spec.metric) {
        (VectorType::F32 | VectorType::F16, Metric::L2) => d.l2_f32,
        (VectorType::F32 | VectorType::F16, _) => d.one_minus_dot_f32,
        (VectorType::I8, Metric::L2) => d.l2_i8,
        (VectorType::I8, Metric::Cosine) => d.cosine_i8,
        (VectorType::I8, _) => d.one_minus_dot_i8,
        (VectorType::Bit, _) => graph_hamming,
    }
}

/// A vector in the graph's form, f32-aligned.
fn graph_form(spec: &Spec, stored: &[u8]) -> Vec<f32> {
    let kernels = Kernels::get();
    match spec.vector_type {
        VectorType::F32 | VectorType::F16 => {
            let mut v: Vec<f32> = if spec.vector_type == VectorType::F32 {
                stored
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            } else {
                stored
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect()
            };
            if spec.metric == Metric::Cosine {
                let norm = (kernels.dot_f32)(&v, &v).sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                }
            }
            v
        }
        VectorType::I8 | VectorType::Bit => {
            let mut bytes = stored.to_vec();
            if spec.vector_type == VectorType::I8 && spec.metric == Metric::Cosine {
                let elements: Vec<i8> = stored.iter().map(|&b| b as i8).collect();
                let sq = (kernels.dot_i8)(&elements, &elements) as f32;
                bytes.extend_from_slice(&sq.to_le_bytes());
            }
            // Copied into f32s only for alignment; the C side reads the bytes.
            let mut words = vec![0f32; bytes.len().div_ceil(4)];
            // SAFETY: `words` holds at least `bytes.len()` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    words.as_mut_ptr().cast::<u8>(),
                    bytes.len(),
                );
            }
            words
        }
    }
}

/// An HNSW graph over a collection's vectors.
pub struct Hnsw {
    graph: NonNull<ffi::Graph>,
    /// The distance functions' parameter (elements per vector), only read through the graph:
    /// boxed so its address stays fixed while the graph lives.
    _elements: Box<usize>,
    spec: Spec,
}

// SAFETY: hnswlib's graph may be searched from several threads at once and take adds of
// distinct labels from several threads at once (its own locks); everything that is not safe
// alongside other calls (reserve, remove, save, free) takes `&mut self` or runs in `Drop`.
unsafe impl Send for Hnsw {}
// SAFETY: see `Send`.
unsafe impl Sync for Hnsw {}

impl Drop for Hnsw {
    fn drop(&mut self) {
        // SAFETY: the graph came from `av_graph_new`/`av_graph_load` and is freed once; the
        // parameter it points to is dropped after this.
        unsafe { ffi::av_graph_free(self.graph.as_ptr()) }
    }
}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("size", &self.len())
            .field("removed", &self.removed())
            .finish_non_exhaustive()
    }
}

fn label(id: i64) -> Result<u64> {
    u64::try_from(id).map_err(|_| Error::InvalidArgument(format!("item id {id} is negative")))
}

#[allow(clippy::len_without_is_empty)]
impl Hnsw {
    /// An empty graph with room for `capacity` vectors.
    ///
    /// # Errors
    /// When hnswlib cannot allocate the graph.
    pub fn new(spec: Spec, config: &IndexConfig, capacity: usize) -> Result<Self> {
        let elements = Box::new(elements(&spec));
        let param: *const usize = &*elements;
        let raw = call(
            "create",
            |err, err_len| {
                // SAFETY: `param` outlives the graph (both owned by the returned value).
                unsafe {
                    ffi::av_graph_new(
                        data_size(&spec),
                        distance_fn(&spec),
                        param.cast(),
                        capacity.max(64),
                        config.connectivity.max(2),
                        config.ef_construction.max(1),
                        err,
                        err_len,
                    )
                }
            },
            |p| p.is_null(),
        )?;
        Ok(Self {
            graph: NonNull::new(raw).expect("checked above"),
            _elements: elements,
            spec,
        })
    }

    /// A graph from its serialized bytes, or `None` when they were written by the engine used
    /// before hnswlib (USearch): such a graph is rebuilt from the rows.
    ///
    /// # Errors
    /// [`Error::Corrupted`] when the bytes are a damaged snapshot or one of another spec.
    pub fn from_bytes(spec: Spec, bytes: &[u8]) -> Result<Option<Self>> {
        if !Self::is_snapshot(bytes) {
            if written_by_usearch(bytes) {
                return Ok(None);
            }
            return Err(Error::Corrupted(
                "HNSW snapshot: neither this engine's nor USearch's".into(),
            ));
        }
        let mut rest = bytes;
        let graph = Self::read_from(spec, &mut rest)?;
        if !rest.is_empty() {
            return Err(Error::Corrupted(
                "HNSW snapshot: trailing bytes after the graph".into(),
            ));
        }
        Ok(Some(graph))
    }

    /// Whether `start` (at least the first 8 bytes) begins a snapshot of this engine.
    #[must_use]
    pub fn is_snapshot(start: &[u8]) -> bool {
        // SAFETY: reads at most `start.len()` bytes.
        unsafe { ffi::av_graph_is_snapshot(start.as_ptr(), start.len()) != 0 }
    }

    /// A graph read from `source`, which must hold one of this engine's snapshots; reads
    /// exactly the snapshot's bytes (the caller checks what follows).
    ///
    /// # Errors
    /// [`Error::Corrupted`] when the snapshot is damaged or of another spec; the source's own
    /// errors as they are.
    pub fn read_from(spec: Spec, source: &mut dyn std::io::Read) -> Result<Self> {
        let elements = Box::new(elements(&spec));
        let param: *const usize = &*elements;
        let mut stream = Stream {
            io: StreamIo::Read(source),
            error: None,
        };
        let mut err = [0 as c_char; ERR_LEN];
        // SAFETY: `stream` outlives the call; `param` outlives the graph.
        let raw = unsafe {
            ffi::av_graph_load(
                read_trampoline,
                std::ptr::from_mut(&mut stream).cast(),
                data_size(&spec),
                distance_fn(&spec),
                param.cast(),
                64,
                err.as_mut_ptr(),
                ERR_LEN,
            )
        };
        if let Some(error) = stream.error {
            return Err(error);
        }
        let Some(graph) = NonNull::new(raw) else {
            // SAFETY: NUL-terminated by the C side.
            let message = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
            return Err(Error::Corrupted(format!("HNSW snapshot: {message}")));
        };
        Ok(Self {
            graph,
            _elements: elements,
            spec,
        })
    }

    /// The graph as bytes (the tests' form; the vault streams it with [`Hnsw::write_to`]).
    ///
    /// # Errors
    /// When hnswlib fails to serialize.
    #[cfg(test)]
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut buffer = Vec::new();
        self.write_to(&mut buffer)?;
        Ok(buffer)
    }

    /// Writes the graph's snapshot to `sink`, piece by piece.
    ///
    /// # Errors
    /// The sink's errors, or hnswlib's.
    pub fn write_to(&self, sink: &mut dyn std::io::Write) -> Result<()> {
        let mut stream = Stream {
            io: StreamIo::Write(sink),
            error: None,
        };
        let context: *mut c_void = std::ptr::from_mut(&mut stream).cast();
        let outcome = call(
            "save",
            |err, err_len| {
                // SAFETY: `stream` outlives the call; `&self` keeps writers out meanwhile.
                unsafe {
                    ffi::av_graph_save(self.graph.as_ptr(), write_trampoline, context, err, err_len)
                }
            },
            |rc| *rc != 0,
        );
        match stream.error {
            Some(error) => Err(error),
            None => outcome.map(|_| ()),
        }
    }

    /// Number of live vectors in the graph.
    #[must_use]
    pub fn len(&self) -> usize {
        // SAFETY: the graph is valid.
        unsafe {
            ffi::av_graph_count(self.graph.as_ptr()) - ffi::av_graph_removed(self.graph.as_ptr())
        }
    }

    /// Whether `id` is a live vector in the graph.
    #[must_use]
    pub fn contains(&self, id: i64) -> bool {
        // SAFETY: the graph is valid.
        u64::try_from(id)
            .is_ok_and(|key| unsafe { ffi::av_graph_contains(self.graph.as_ptr(), key) } != 0)
    }

    /// Bytes of memory the graph uses.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        // SAFETY: the graph is valid.
        unsafe { ffi::av_graph_memory(self.graph.as_ptr()) }
    }

    /// Removed vectors still in the graph as tombstones (searches step over them).
    #[must_use]
    pub fn removed(&self) -> usize {
        // SAFETY: the graph is valid.
        unsafe { ffi::av_graph_removed(self.graph.as_ptr()) }
    }

    /// Makes room for `additional` more vectors.
    fn grow_for(&mut self, additional: usize) -> Result<()> {
        // SAFETY: the graph is valid; `&mut self` keeps every other call out.
        let (count, capacity) = unsafe {
            (
                ffi::av_graph_count(self.graph.as_ptr()),
                ffi::av_graph_capacity(self.graph.as_ptr()),
            )
        };
        let needed = count + additional;
        if needed > capacity {
            let capacity = needed.max(capacity * 2);
            call(
                "reserve",
                |err, err_len| {
                    // SAFETY: as above.
                    unsafe { ffi::av_graph_reserve(self.graph.as_ptr(), capacity, err, err_len) }
                },
                |rc| *rc != 0,
            )?;
        }
        Ok(())
    }

    /// Adds (or replaces) the vector of `id`, given in its stored form.
    ///
    /// # Errors
    /// When hnswlib cannot add it.
    pub fn upsert(&mut self, id: i64, stored: &[u8]) -> Result<()> {
        self.grow_for(1)?;
        self.add_unchecked(id, stored)
    }

    /// Adds many new vectors (ids not yet in the graph) in parallel.
    ///
    /// # Errors
    /// When hnswlib cannot add one.
    pub fn add_many(&mut self, items: &[(i64, &[u8])]) -> Result<()> {
        self.grow_for(items.len())?;
        let workers = crate::cores::cores().min(items.len().div_ceil(256)).max(1);
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

    /// Adds or replaces `id` (room for it must have been made).
    fn add_unchecked(&self, id: i64, stored: &[u8]) -> Result<()> {
        let key = label(id)?;
        let data = graph_form(&self.spec, stored);
        call(
            "add",
            |err, err_len| {
                // SAFETY: `data` holds the graph's element size; hnswlib locks per label and
                // per node, so adds of distinct ids may run at once (see `add_many`).
                unsafe {
                    ffi::av_graph_add(self.graph.as_ptr(), key, data.as_ptr().cast(), err, err_len)
                }
            },
            |rc| *rc != 0,
        )?;
        Ok(())
    }

    /// Removes `id` if present (it stays in the graph as a tombstone).
    ///
    /// # Errors
    /// When hnswlib fails to remove it.
    pub fn remove(&mut self, id: i64) -> Result<()> {
        if self.contains(id) {
            call(
                "remove",
                |err, err_len| {
                    // SAFETY: the graph is valid and `id` is live in it.
                    unsafe { ffi::av_graph_remove(self.graph.as_ptr(), id as u64, err, err_len) }
                },
                |rc| *rc != 0,
            )?;
        }
        Ok(())
    }

    /// The (approximately) `k` nearest to `query` (stored form), among ids `filter` accepts.
    ///
    /// # Errors
    /// When hnswlib fails.
    pub fn search(
        &self,
        query: &[u8],
        k: usize,
        ef_search: usize,
        filter: Option<IdFilter<'_>>,
    ) -> Result<Vec<Hit>> {
        if k == 0 || self.len() == 0 {
            return Ok(Vec::new());
        }
        let query = graph_form(&self.spec, query);
        let mut labels = vec![0u64; k];
        let mut distances = vec![0f32; k];
        let mut accept = filter;
        let (callback, context): (Option<ffi::AcceptFn>, *mut c_void) = match accept.as_mut() {
            Some(f) => (Some(accept_trampoline), std::ptr::from_mut(f).cast()),
            None => (None, std::ptr::null_mut()),
        };
        let found = call(
            "search",
            |err, err_len| {
                // SAFETY: `query` is in the graph's form; `labels` and `distances` hold `k`
                // entries; `context` points to `accept`, alive for the call.
                unsafe {
                    ffi::av_graph_search(
                        self.graph.as_ptr(),
                        query.as_ptr().cast(),
                        k,
                        ef_search.max(k),
                        callback,
                        context,
                        labels.as_mut_ptr(),
                        distances.as_mut_ptr(),
                        err,
                        err_len,
                    )
                }
            },
            |n| *n == usize::MAX,
        )?;
        Ok(labels[..found]
            .iter()
            .zip(&distances[..found])
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

/// Whether `bytes` are a USearch index as earlier versions stored it: a u32 row count and a
/// u32 row width, the rows, then USearch's header, which starts with `usearch`.
fn written_by_usearch(bytes: &[u8]) -> bool {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    };
    let (Some(rows), Some(width)) = (word(0), word(4)) else {
        return false;
    };
    let head = 8 + u64::from(rows) * u64::from(width);
    usize::try_from(head)
        .ok()
        .and_then(|at| bytes.get(at..at.checked_add(7)?))
        .is_some_and(|magic| magic == b"usearch")
}

/// The Rust side of a snapshot stream, and the first error it met (reported as it is rather
/// than as the C side's "ends early").
struct Stream<'a> {
    io: StreamIo<'a>,
    error: Option<Error>,
}

enum StreamIo<'a> {
    Read(&'a mut dyn std::io::Read),
    Write(&'a mut dyn std::io::Write),
}

/// Pulls exactly `n` bytes for hnswlib's loader.
///
/// # Safety
/// `context` points to a `Stream` in read mode; `into` to `n` writable bytes.
unsafe extern "C" fn read_trampoline(context: *mut c_void, into: *mut u8, n: usize) -> c_int {
    let stream = &mut *context.cast::<Stream<'_>>();
    let into = std::slice::from_raw_parts_mut(into, n);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &mut stream.io {
        StreamIo::Read(source) => source.read_exact(into),
        StreamIo::Write(_) => Err(std::io::Error::other("not a read stream")),
    }));
    match outcome {
        Ok(Ok(())) => 0,
        // A short stream is the C side's to report: it knows what was being read.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => -1,
        Ok(Err(e)) => {
            stream.error = Some(uncarried(e));
            -1
        }
        Err(_) => {
            stream.error = Some(Error::Io(std::io::Error::other(
                "HNSW snapshot reader panicked",
            )));
            -1
        }
    }
}

/// Pushes `n` bytes hnswlib's saver wrote.
///
/// # Safety
/// `context` points to a `Stream` in write mode; `from` to `n` readable bytes.
unsafe extern "C" fn write_trampoline(context: *mut c_void, from: *const u8, n: usize) -> c_int {
    let stream = &mut *context.cast::<Stream<'_>>();
    let from = std::slice::from_raw_parts(from, n);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &mut stream.io {
        StreamIo::Write(sink) => sink.write_all(from),
        StreamIo::Read(_) => Err(std::io::Error::other("not a write stream")),
    }));
    match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            stream.error = Some(uncarried(e));
            -1
        }
        Err(_) => {
            stream.error = Some(Error::Io(std::io::Error::other(
                "HNSW snapshot writer panicked",
            )));
            -1
        }
    }
}

/// Calls the Rust filter `context` points to for hnswlib.
///
/// # Safety
/// `context` points to an `IdFilter` alive for the search.
unsafe extern "C" fn accept_trampoline(context: *mut c_void, key: u64) -> c_int {
    let accept = &*context.cast::<IdFilter<'_>>();
    // A panic must not unwind into C++: treated as "not accepted" after being caught.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        i64::try_from(key).is_ok_and(accept)
    }))
    .map_or(0, c_int::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    fn vectors(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed;
        (0..n)
            .map(|_| (0..d).map(|_| lcg(&mut s)).collect())
            .collect()
    }

    /// The stored (little-endian) form of `v` for `vector_type`.
    fn stored(v: &[f32], vector_type: VectorType) -> Vec<u8> {
        match vector_type {
            VectorType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            VectorType::F16 => v
                .iter()
                .flat_map(|x| f16::from_f32(*x).to_le_bytes())
                .collect(),
            VectorType::I8 => v.iter().map(|x| (x * 200.0) as i8 as u8).collect(),
            VectorType::Bit => v
                .chunks(8)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(0u8, |b, (i, x)| b | (u8::from(*x > 0.0) << i))
                })
                .collect(),
        }
    }

    /// The exact distance, computed plainly in f64 from the stored form.
    fn exact(spec: &Spec, a: &[u8], b: &[u8]) -> f64 {
        let values = |s: &[u8]| -> Vec<f64> {
            match spec.vector_type {
                VectorType::F32 => s
                    .chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect(),
                VectorType::F16 => s
                    .chunks_exact(2)
                    .map(|c| f64::from(f16::from_le_bytes([c[0], c[1]]).to_f32()))
                    .collect(),
                VectorType::I8 => s.iter().map(|&x| f64::from(x as i8)).collect(),
                VectorType::Bit => unreachable!(),
            }
        };
        if spec.vector_type == VectorType::Bit {
            return a
                .iter()
                .zip(b)
                .map(|(x, y)| f64::from((x ^ y).count_ones()))
                .sum();
        }
        let (x, y) = (values(a), values(b));
        let dot: f64 = x.iter().zip(&y).map(|(p, q)| p * q).sum();
        match spec.metric {
            Metric::L2 => x
                .iter()
                .zip(&y)
                .map(|(p, q)| (p - q).powi(2))
                .sum::<f64>()
                .sqrt(),
            Metric::Dot => 1.0 - dot,
            Metric::Cosine => {
                let norm = |v: &[f64]| v.iter().map(|p| p * p).sum::<f64>().sqrt();
                1.0 - dot / (norm(&x) * norm(&y))
            }
            Metric::Hamming => unreachable!(),
        }
    }

    fn config() -> IndexConfig {
        IndexConfig {
            connectivity: 16,
            ef_construction: 100,
            ef_search: 64,
            ..IndexConfig::default()
        }
    }

    fn build(spec: Spec, data: &[Vec<u8>]) -> Hnsw {
        let mut graph = Hnsw::new(spec, &config(), 10).expect("graph");
        let items: Vec<(i64, &[u8])> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64 + 1, v.as_slice()))
            .collect();
        graph.add_many(&items).expect("added");
        graph
    }

    #[test]
    fn every_type_and_metric_finds_the_exact_neighbours_with_their_exact_distances() {
        let cases = [
            (VectorType::F32, Metric::L2),
            (VectorType::F32, Metric::Cosine),
            (VectorType::F32, Metric::Dot),
            (VectorType::F16, Metric::L2),
            (VectorType::F16, Metric::Cosine),
            (VectorType::I8, Metric::L2),
            (VectorType::I8, Metric::Cosine),
            (VectorType::I8, Metric::Dot),
            (VectorType::Bit, Metric::Hamming),
        ];
        for (vector_type, metric) in cases {
            let spec = Spec::new(32, vector_type, metric).expect("spec");
            let data: Vec<Vec<u8>> = vectors(2_000, 32, 7)
                .iter()
                .map(|v| stored(v, vector_type))
                .collect();
            let graph = build(spec, &data);
            assert_eq!(graph.len(), 2_000);
            let mut hits = 0;
            for q in vectors(20, 32, 99) {
                let q = stored(&q, vector_type);
                let found = graph.search(&q, 10, 200, None).expect("search");
                assert_eq!(found.len(), 10, "{vector_type:?} {metric:?}");
                for hit in &found {
                    let truth = exact(&spec, &q, &data[hit.id as usize - 1]);
                    assert!(
                        (f64::from(hit.distance) - truth).abs() < 1e-3 * truth.abs().max(1.0),
                        "{vector_type:?} {metric:?}: {} against {truth}",
                        hit.distance
                    );
                }
                let mut all: Vec<(f64, i64)> = data
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (exact(&spec, &q, v), i as i64 + 1))
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0));
                let tenth = all[9].0;
                // Ties at the tenth distance (common for i8 and bits) make any of them right.
                hits += found
                    .iter()
                    .filter(|h| exact(&spec, &q, &data[h.id as usize - 1]) <= tenth + 1e-6)
                    .count();
            }
            assert!(hits >= 190, "{vector_type:?} {metric:?}: recall {hits}/200");
        }
    }

    #[test]
    fn removed_and_replaced_vectors_and_filters_are_respected() {
        let spec = Spec::new(16, VectorType::F32, Metric::L2).expect("spec");
        let data: Vec<Vec<u8>> = vectors(500, 16, 3)
            .iter()
            .map(|v| stored(v, VectorType::F32))
            .collect();
        let mut graph = build(spec, &data);
        let q = data[41].clone();
        assert_eq!(graph.search(&q, 1, 64, None).expect("search")[0].id, 42);
        graph.remove(42).expect("removed");
        assert!(!graph.contains(42));
        assert_eq!((graph.len(), graph.removed()), (499, 1));
        assert!(graph
            .search(&q, 10, 64, None)
            .expect("search")
            .iter()
            .all(|h| h.id != 42));
        // Re-adding a removed id brings it back with its new vector.
        graph.upsert(42, &data[0]).expect("replaced");
        assert!(graph.contains(42));
        let near_first: Vec<i64> = graph
            .search(&data[0], 2, 64, None)
            .expect("search")
            .iter()
            .map(|h| h.id)
            .collect();
        assert!(
            near_first.contains(&42) && near_first.contains(&1),
            "{near_first:?}"
        );
        let even = |id: i64| id % 2 == 0;
        let found = graph.search(&q, 10, 64, Some(&even)).expect("search");
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|h| h.id % 2 == 0));
    }

    #[test]
    fn a_snapshot_round_trips_and_damaged_ones_are_refused() {
        let spec = Spec::new(16, VectorType::F32, Metric::Cosine).expect("spec");
        let data: Vec<Vec<u8>> = vectors(3_000, 16, 5)
            .iter()
            .map(|v| stored(v, VectorType::F32))
            .collect();
        let mut graph = build(spec, &data);
        graph.remove(7).expect("removed");
        let bytes = graph.to_bytes().expect("saved");
        let loaded = Hnsw::from_bytes(spec, &bytes)
            .expect("loaded")
            .expect("our format");
        assert_eq!((loaded.len(), loaded.removed()), (2_999, 1));
        assert!(!loaded.contains(7) && loaded.contains(8));
        for q in data.iter().take(50) {
            let a = graph.search(q, 5, 64, None).expect("search");
            let b = loaded.search(q, 5, 64, None).expect("search");
            assert_eq!(a, b);
        }
        assert_eq!(loaded.to_bytes().expect("saved"), bytes);
        // USearch's layout (earlier versions) is not read (the graph is rebuilt); other bytes
        // are refused.
        let usearch = [
            &2u32.to_le_bytes()[..],
            &3u32.to_le_bytes(),
            &[9; 6],
            b"usearch",
            &[0; 57],
        ]
        .concat();
        assert!(Hnsw::from_bytes(spec, &usearch).expect("read").is_none());
        assert!(matches!(
            Hnsw::from_bytes(spec, &usearch[1..]),
            Err(Error::Corrupted(_))
        ));
        assert!(matches!(
            Hnsw::from_bytes(spec, &[0; 100]),
            Err(Error::Corrupted(_))
        ));
        // Another spec's element size is refused.
        let other = Spec::new(8, VectorType::F32, Metric::Cosine).expect("spec");
        assert!(matches!(
            Hnsw::from_bytes(other, &bytes),
            Err(Error::Corrupted(_))
        ));
        // Cut short, grown, or with a link pointing past the graph: refused, never read.
        for damaged in [
            bytes[..bytes.len() - 1].to_vec(),
            [bytes.as_slice(), &[0]].concat(),
            bytes[..60].to_vec(),
        ] {
            assert!(matches!(
                Hnsw::from_bytes(spec, &damaged),
                Err(Error::Corrupted(_))
            ));
        }
        let mut far_link = bytes.clone();
        // The first element's level-0 list starts right after the header (8 + 6 x 8 bytes):
        // a u32 count, then the neighbour ids.
        far_link[56..60].copy_from_slice(&1u32.to_le_bytes());
        far_link[60..64].copy_from_slice(&5_000u32.to_le_bytes());
        assert!(matches!(
            Hnsw::from_bytes(spec, &far_link),
            Err(Error::Corrupted(_))
        ));
        // Every single-byte change is either refused or loads a graph that searches safely.
        for at in (0..bytes.len()).step_by(bytes.len() / 500) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0xA5;
            if let Ok(Some(g)) = Hnsw::from_bytes(spec, &flipped) {
                g.search(&data[0], 5, 32, None).expect("search");
            }
        }
    }
}
