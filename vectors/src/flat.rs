//! Exact search: every vector of a collection in memory in its search form (f16 widened to f32),
//! scanned with the distance kernels in parallel, or, for batches of f32 queries, with a
//! cache-blocked matrix product.

use std::collections::HashMap;

use crate::kernels::{hamming, Kernels};
use crate::spec::{Metric, Spec, VectorType};
use crate::topk::{Hit, TopK};

/// Vectors in search form, `dimensions` elements (bytes for bit vectors) per row.
#[derive(Debug, Clone)]
pub enum Rows {
    /// f32 and f16 vectors.
    F32(Vec<f32>),
    /// i8 vectors.
    I8(Vec<i8>),
    /// Packed bit vectors.
    Bits(Vec<u8>),
}

impl Rows {
    /// An empty set for vectors of `spec`.
    #[must_use]
    pub fn empty(spec: &Spec) -> Self {
        match spec.vector_type {
            VectorType::F32 | VectorType::F16 => Self::F32(Vec::new()),
            VectorType::I8 => Self::I8(Vec::new()),
            VectorType::Bit => Self::Bits(Vec::new()),
        }
    }

    /// Decodes stored little-endian vectors of `spec` (already checked) into search form.
    #[must_use]
    pub fn decode(spec: &Spec, bytes: &[u8]) -> Self {
        let mut rows = Self::empty(spec);
        rows.push_stored(spec, bytes);
        rows
    }

    /// Appends stored vectors (any number of whole vectors).
    pub fn push_stored(&mut self, spec: &Spec, bytes: &[u8]) {
        match (self, spec.vector_type) {
            (Self::F32(out), VectorType::F32) => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            (Self::F32(out), VectorType::F16) => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
            (Self::I8(out), VectorType::I8) => {
                out.extend(bytes.iter().map(|&b| i8::from_le_bytes([b])));
            }
            (Self::Bits(out), VectorType::Bit) => out.extend_from_slice(bytes),
            _ => unreachable!("rows are built for their own spec"),
        }
    }

    fn width(&self, spec: &Spec) -> usize {
        match self {
            Self::F32(_) | Self::I8(_) => spec.dimensions,
            Self::Bits(_) => spec.dimensions / 8,
        }
    }

    fn len_elements(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::Bits(v) => v.len(),
        }
    }

    fn copy_within(&mut self, from: usize, to: usize, width: usize) {
        match self {
            Self::F32(v) => v.copy_within(from * width..(from + 1) * width, to * width),
            Self::I8(v) => v.copy_within(from * width..(from + 1) * width, to * width),
            Self::Bits(v) => v.copy_within(from * width..(from + 1) * width, to * width),
        }
    }

    fn truncate_rows(&mut self, rows: usize, width: usize) {
        match self {
            Self::F32(v) => v.truncate(rows * width),
            Self::I8(v) => v.truncate(rows * width),
            Self::Bits(v) => v.truncate(rows * width),
        }
    }

    fn overwrite(&mut self, row: usize, width: usize, with: &Rows) {
        match (self, with) {
            (Self::F32(v), Self::F32(w)) => v[row * width..(row + 1) * width].copy_from_slice(w),
            (Self::I8(v), Self::I8(w)) => v[row * width..(row + 1) * width].copy_from_slice(w),
            (Self::Bits(v), Self::Bits(w)) => v[row * width..(row + 1) * width].copy_from_slice(w),
            _ => unreachable!("rows of one spec"),
        }
    }

    /// `|x|²` of row `row` (0 for bit vectors, which need none).
    fn sq_norm(&self, row: usize, width: usize, kernels: &Kernels) -> f32 {
        match self {
            Self::F32(v) => {
                let x = &v[row * width..(row + 1) * width];
                (kernels.dot_f32)(x, x)
            }
            Self::I8(v) => {
                let x = &v[row * width..(row + 1) * width];
                (kernels.dot_i8)(x, x) as f32
            }
            Self::Bits(_) => 0.0,
        }
    }
}

/// A predicate on item ids (the metadata filter), shared by the search threads.
pub type IdFilter<'a> = &'a (dyn Fn(i64) -> bool + Sync);

/// All vectors of a collection in memory, by id.
#[derive(Debug, Clone)]
pub struct Flat {
    spec: Spec,
    ids: Vec<i64>,
    rows: Rows,
    sq_norms: Vec<f32>,
    position: HashMap<i64, usize>,
}

/// Below this many element-distance operations a search runs on the calling thread only.
const PARALLEL_MIN_WORK: usize = 1 << 20;
/// Data rows per block of the batched (matrix product) search.
const BLOCK_ROWS: usize = 256;

impl Flat {
    /// An empty set for vectors of `spec`.
    #[must_use]
    pub fn new(spec: Spec) -> Self {
        Self {
            spec,
            ids: Vec::new(),
            rows: Rows::empty(&spec),
            sq_norms: Vec::new(),
            position: HashMap::new(),
        }
    }

    /// Bytes of memory the vectors take.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        let element = match self.rows {
            Rows::F32(_) => 4,
            Rows::I8(_) | Rows::Bits(_) => 1,
        };
        self.rows.len_elements() * element + self.ids.len() * (8 + 4 + 24)
    }

    /// Adds (or replaces) the vector of `id` from its stored bytes.
    pub fn upsert(&mut self, id: i64, stored: &[u8]) {
        let kernels = Kernels::get();
        let width = self.rows.width(&self.spec);
        if let Some(&row) = self.position.get(&id) {
            let decoded = Rows::decode(&self.spec, stored);
            self.rows.overwrite(row, width, &decoded);
            self.sq_norms[row] = self.rows.sq_norm(row, width, kernels);
            return;
        }
        let row = self.ids.len();
        self.rows.push_stored(&self.spec, stored);
        self.ids.push(id);
        self.sq_norms.push(self.rows.sq_norm(row, width, kernels));
        self.position.insert(id, row);
    }

    /// Removes `id` (the last row moves into its place); whether it was held.
    pub fn remove(&mut self, id: i64) -> bool {
        let Some(row) = self.position.remove(&id) else {
            return false;
        };
        let width = self.rows.width(&self.spec);
        let last = self.ids.len() - 1;
        if row != last {
            self.rows.copy_within(last, row, width);
            self.ids[row] = self.ids[last];
            self.sq_norms[row] = self.sq_norms[last];
            self.position.insert(self.ids[row], row);
        }
        self.ids.pop();
        self.sq_norms.pop();
        self.rows.truncate_rows(last, width);
        true
    }

    /// The `k` nearest items to each of the queries (`queries` holds whole vectors in this
    /// collection's search form), by `metric`, among the ids `filter` accepts.
    #[must_use]
    pub fn search(
        &self,
        queries: &Rows,
        k: usize,
        metric: Metric,
        filter: Option<IdFilter<'_>>,
    ) -> Vec<Vec<Hit>> {
        let width = self.rows.width(&self.spec);
        let m = queries.len_elements() / width;
        if m == 0 {
            return Vec::new();
        }
        let n = self.ids.len();
        let threads = if n * width * m >= PARALLEL_MIN_WORK {
            crate::cores::cores().min(n.div_ceil(BLOCK_ROWS))
        } else {
            1
        };
        let per_thread = n.div_ceil(threads.max(1)).max(1);
        let partials: Vec<Vec<TopK>> = if threads <= 1 {
            vec![self.scan(queries, 0..n, k, metric, filter)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let range = (t * per_thread).min(n)..((t + 1) * per_thread).min(n);
                        scope.spawn(move || self.scan(queries, range, k, metric, filter))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("search thread panicked"))
                    .collect()
            })
        };
        let mut merged: Vec<TopK> = (0..m).map(|_| TopK::new(k)).collect();
        for partial in partials {
            for (into, from) in merged.iter_mut().zip(partial) {
                into.merge(from);
            }
        }
        merged
            .into_iter()
            .map(|top| {
                let mut hits = top.into_sorted();
                if metric == Metric::L2 {
                    for hit in &mut hits {
                        hit.distance = hit.distance.max(0.0).sqrt();
                    }
                }
                hits
            })
            .collect()
    }

    /// One thread's share: the rows in `range` against every query.
    fn scan(
        &self,
        queries: &Rows,
        range: std::ops::Range<usize>,
        k: usize,
        metric: Metric,
        filter: Option<IdFilter<'_>>,
    ) -> Vec<TopK> {
        let kernels = Kernels::get();
        let width = self.rows.width(&self.spec);
        let m = queries.len_elements() / width;
        let mut tops: Vec<TopK> = (0..m).map(|_| TopK::new(k)).collect();
        match (&self.rows, queries) {
            (Rows::F32(data), Rows::F32(q)) if m >= 4 => {
                self.scan_f32_blocked(data, q, range, &mut tops, metric, filter);
            }
            (Rows::F32(data), Rows::F32(q)) => {
                let q_sq: Vec<f32> = q
                    .chunks_exact(width)
                    .map(|x| (kernels.dot_f32)(x, x))
                    .collect();
                self.scan_rows(data, q, range, &mut tops, filter, |qi, query, row, x| {
                    f32_distance(kernels, metric, query, x, q_sq[qi], self.sq_norms[row])
                });
            }
            (Rows::I8(data), Rows::I8(q)) => {
                let q_sq: Vec<f32> = q
                    .chunks_exact(width)
                    .map(|x| (kernels.dot_i8)(x, x) as f32)
                    .collect();
                self.scan_rows(data, q, range, &mut tops, filter, |qi, query, row, x| {
                    let dot = || (kernels.dot_i8)(query, x) as f32;
                    match metric {
                        Metric::L2 => (kernels.l2sq_i8)(query, x) as f32,
                        Metric::Dot => 1.0 - dot(),
                        Metric::Cosine => cosine(dot(), q_sq[qi], self.sq_norms[row]),
                        Metric::Hamming => unreachable!("checked by the caller"),
                    }
                });
            }
            (Rows::Bits(data), Rows::Bits(q)) => {
                self.scan_rows(data, q, range, &mut tops, filter, |_, query, _, x| {
                    hamming(query, x) as f32
                });
            }
            _ => unreachable!("queries are converted to the collection's search form"),
        }
        tops
    }

    /// Offers every accepted row in `range` to each query's selection, at the distance
    /// `distance(query index, query, row, row's vector)`.
    fn scan_rows<T>(
        &self,
        data: &[T],
        queries: &[T],
        range: std::ops::Range<usize>,
        tops: &mut [TopK],
        filter: Option<IdFilter<'_>>,
        distance: impl Fn(usize, &[T], usize, &[T]) -> f32,
    ) {
        let width = self.rows.width(&self.spec);
        for (qi, (query, top)) in queries.chunks_exact(width).zip(tops.iter_mut()).enumerate() {
            for row in range.clone() {
                let id = self.ids[row];
                if filter.is_some_and(|f| !f(id)) {
                    continue;
                }
                top.offer(
                    id,
                    distance(qi, query, row, &data[row * width..(row + 1) * width]),
                );
            }
        }
    }

    /// Many f32 queries: blocks of rows against all queries with one matrix product each, so a
    /// block is read from memory once for every query. Distances are re-derived from the dot
    /// products (`|q|² + |x|² - 2 q·x` for L2); the nearest are then recomputed exactly.
    fn scan_f32_blocked(
        &self,
        data: &[f32],
        q: &[f32],
        range: std::ops::Range<usize>,
        tops: &mut [TopK],
        metric: Metric,
        filter: Option<IdFilter<'_>>,
    ) {
        let kernels = Kernels::get();
        let d = self.spec.dimensions;
        let m = q.len() / d;
        let q_sq: Vec<f32> = q.chunks_exact(d).map(|x| (kernels.dot_f32)(x, x)).collect();
        let mut products = vec![0.0f32; m * BLOCK_ROWS];
        let mut start = range.start;
        while start < range.end {
            let rows = (range.end - start).min(BLOCK_ROWS);
            let block = &data[start * d..(start + rows) * d];
            // SAFETY: the pointers and strides describe `q` (m x d, row-major), the block
            // transposed (d x rows: element (i, j) at j*d + i) and `products` (m x rows), all
            // in bounds; matrixmultiply reads and writes nothing else.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    d,
                    rows,
                    1.0,
                    q.as_ptr(),
                    d as isize,
                    1,
                    block.as_ptr(),
                    1,
                    d as isize,
                    0.0,
                    products.as_mut_ptr(),
                    rows as isize,
                    1,
                );
            }
            for j in 0..rows {
                let row = start + j;
                let id = self.ids[row];
                if filter.is_some_and(|f| !f(id)) {
                    continue;
                }
                let x_sq = self.sq_norms[row];
                for (qi, top) in tops.iter_mut().enumerate() {
                    let dot = products[qi * rows + j];
                    let dist = match metric {
                        Metric::L2 => (q_sq[qi] + x_sq - 2.0 * dot).max(0.0),
                        Metric::Dot => 1.0 - dot,
                        Metric::Cosine => cosine(dot, q_sq[qi], x_sq),
                        Metric::Hamming => unreachable!("checked by the caller"),
                    };
                    top.offer(id, dist);
                }
            }
            start += rows;
        }
        // Exact distances for the survivors (the expanded form loses precision near 0).
        for (qi, top) in tops.iter_mut().enumerate() {
            let query = &q[qi * d..(qi + 1) * d];
            let survivors = std::mem::replace(top, TopK::new(0)).into_sorted();
            let mut exact = TopK::new(survivors.len());
            for hit in survivors {
                let row = self.position[&hit.id];
                let x = &data[row * d..(row + 1) * d];
                let dist = f32_distance(kernels, metric, query, x, q_sq[qi], self.sq_norms[row]);
                exact.offer(hit.id, dist);
            }
            *top = exact;
        }
    }
}

/// The distance of f32 vectors by `metric` (L2 squared; `q_sq`, `x_sq`: their squared norms).
#[inline]
fn f32_distance(
    kernels: &Kernels,
    metric: Metric,
    q: &[f32],
    x: &[f32],
    q_sq: f32,
    x_sq: f32,
) -> f32 {
    match metric {
        Metric::L2 => (kernels.l2sq_f32)(q, x),
        Metric::Dot => 1.0 - (kernels.dot_f32)(q, x),
        Metric::Cosine => cosine((kernels.dot_f32)(q, x), q_sq, x_sq),
        Metric::Hamming => unreachable!("checked by the caller"),
    }
}

/// `1 - cos` from a dot product and the squared norms; 1 (orthogonal) when either is zero.
#[inline]
fn cosine(dot: f32, a_sq: f32, b_sq: f32) -> f32 {
    let denominator = (a_sq * b_sq).sqrt();
    if denominator > 0.0 {
        1.0 - dot / denominator
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::VectorType;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    /// The nearest ids by a plain f64 computation.
    fn reference(data: &[Vec<f32>], q: &[f32], k: usize, metric: Metric) -> Vec<i64> {
        let mut all: Vec<(f64, i64)> = data
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let dot: f64 = x.iter().zip(q).map(|(a, b)| f64::from(a * b)).sum();
                let l2: f64 = x
                    .iter()
                    .zip(q)
                    .map(|(a, b)| f64::from((a - b) * (a - b)))
                    .sum();
                let nx: f64 = x.iter().map(|a| f64::from(a * a)).sum::<f64>().sqrt();
                let nq: f64 = q.iter().map(|a| f64::from(a * a)).sum::<f64>().sqrt();
                let d = match metric {
                    Metric::L2 => l2,
                    Metric::Dot => 1.0 - dot,
                    Metric::Cosine => 1.0 - dot / (nx * nq),
                    Metric::Hamming => unreachable!(),
                };
                (d, i as i64 + 1)
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(_, id)| id).collect()
    }

    #[test]
    fn single_and_batched_searches_match_a_plain_computation() {
        let d = 37;
        let mut seed = 7;
        let data: Vec<Vec<f32>> = (0..1500)
            .map(|_| (0..d).map(|_| lcg(&mut seed)).collect())
            .collect();
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
            let spec = Spec::new(d, VectorType::F32, metric).unwrap();
            let mut flat = Flat::new(spec);
            for (i, x) in data.iter().enumerate() {
                flat.upsert(i as i64 + 1, &f32_bytes(x));
            }
            let queries: Vec<Vec<f32>> = (0..6)
                .map(|_| (0..d).map(|_| lcg(&mut seed)).collect())
                .collect();
            let flat_q: Vec<f32> = queries.iter().flatten().copied().collect();
            // Six queries take the blocked path; one at a time the kernel path.
            let batched = flat.search(&Rows::F32(flat_q), 10, metric, None);
            for (q, hits) in queries.iter().zip(&batched) {
                let single = flat.search(&Rows::F32(q.clone()), 10, metric, None);
                let ids: Vec<i64> = hits.iter().map(|h| h.id).collect();
                assert_eq!(ids, reference(&data, q, 10, metric), "{metric:?}");
                assert_eq!(single[0], *hits, "{metric:?}");
            }
        }
    }

    #[test]
    fn removal_moves_the_last_row_and_filters_apply() {
        let spec = Spec::new(2, VectorType::F32, Metric::L2).unwrap();
        let mut flat = Flat::new(spec);
        for id in 1..=5 {
            flat.upsert(id, &f32_bytes(&[id as f32, 0.0]));
        }
        assert!(flat.remove(2));
        assert!(!flat.remove(2));
        flat.upsert(5, &f32_bytes(&[2.1, 0.0]));
        let hits = flat.search(&Rows::F32(vec![2.0, 0.0]), 3, Metric::L2, None);
        let ids: Vec<i64> = hits[0].iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![5, 1, 3]);
        assert!((hits[0][0].distance - 0.1).abs() < 1e-5);
        let odd = |id: i64| id % 2 == 1;
        let hits = flat.search(&Rows::F32(vec![4.0, 0.0]), 10, Metric::L2, Some(&odd));
        let ids: Vec<i64> = hits[0].iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![3, 5, 1]);
    }

    #[test]
    fn i8_and_bit_vectors_search_exactly() {
        let spec = Spec::new(4, VectorType::I8, Metric::L2).unwrap();
        let mut flat = Flat::new(spec);
        flat.upsert(1, &[1, 2, 3, 4]);
        flat.upsert(2, &[255, 0, 0, 0]); // -1
        let hits = flat.search(&Rows::I8(vec![-1, 0, 0, 1]), 2, Metric::L2, None);
        assert_eq!(hits[0][0].id, 2);
        assert!((hits[0][0].distance - 1.0).abs() < 1e-6);
        let spec = Spec::new(16, VectorType::Bit, Metric::Hamming).unwrap();
        let mut flat = Flat::new(spec);
        flat.upsert(1, &[0b1111_0000, 0]);
        flat.upsert(2, &[0b0000_0001, 0]);
        let hits = flat.search(&Rows::Bits(vec![0b0000_0011, 0]), 2, Metric::Hamming, None);
        assert_eq!(
            hits[0]
                .iter()
                .map(|h| (h.id, h.distance))
                .collect::<Vec<_>>(),
            vec![(2, 1.0), (1, 6.0)]
        );
    }
}
