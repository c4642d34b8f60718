"""Vector search workloads: bulk inserts, exact k-NN (one query at a time and batched) and HNSW
(build, queries/s at recall@10 >= 0.95, memory, reopening a stored index), with each system's
own fastest documented path (named in ``VEC_NOTES``).

The data are clustered and seeded: points lie near one of ``n / 1000`` gaussian centres, spread
in a 24-dimensional subspace plus a little isotropic noise (real embeddings have a low intrinsic
dimension too); the 1,000 queries come from the same distribution. Data, queries and the exact
ground truth (numpy, float32) are computed once, untimed, and cached as ``.npy`` files under
``$AMBENCH_CACHE`` (default ``$TMPDIR/ambench-vec-cache``); workers memory-map them, so the data
do not count as the systems' heap growth.

Every workload function returns ``(seconds, operations, extras)``; ``extras`` (recall, build
time, chosen ef, memory...) are reported in extra columns (``EXTRA_COLUMNS``).
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

K = 10
QUERIES = 1_000  # batched searches and HNSW calibration
SINGLE = 200  # one-by-one searches (and the batch of systems without a batch API)
LATENT = 24
SEED = 16
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128
EF_LADDER = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
TARGET_RECALL = 0.95
CORES = os.cpu_count() or 1

Extras = Dict[str, Any]
VecResult = Tuple[float, int, Extras]


def cache_dir() -> str:
    path = os.environ.get("AMBENCH_CACHE") or os.path.join(tempfile.gettempdir(), "ambench-vec-cache")
    os.makedirs(path, exist_ok=True)
    return path


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def _save(path: str, make: Callable[[str], None]) -> None:
    tmp = path + f".{os.getpid()}.tmp.npy"
    make(tmp)
    os.replace(tmp, path)


def _generate(path: str, n: int, d: int, which: int) -> None:
    structure = np.random.default_rng([SEED, n, d])
    clusters = max(10, n // 1000)
    centres = structure.standard_normal((clusters, d), dtype=np.float32)
    basis = structure.standard_normal((LATENT, d), dtype=np.float32) / np.float32(np.sqrt(LATENT))
    rng = np.random.default_rng([SEED, n, d, which])
    rows = n if which == 0 else QUERIES
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, d))
    for start in range(0, rows, 1 << 16):
        c = min(1 << 16, rows - start)
        labels = rng.integers(clusters, size=c)
        spread = rng.standard_normal((c, LATENT), dtype=np.float32) @ basis
        noise = rng.standard_normal((c, d), dtype=np.float32)
        out[start : start + c] = centres[labels] + np.float32(0.5) * spread + np.float32(0.1) * noise
    out.flush()
    del out


def _truth(path: str, data: np.ndarray, queries: np.ndarray) -> None:
    """The exact k nearest (squared L2) of each query, by blocks of the data."""
    best_d = np.full((len(queries), K), np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), K), dtype=np.int64)
    rows = np.arange(len(queries))[:, None]
    for start in range(0, len(data), 1 << 16):
        block = np.asarray(data[start : start + (1 << 16)])
        dist = np.einsum("ij,ij->i", block, block)[None, :] - 2 * (queries @ block.T)
        dist += np.einsum("ij,ij->i", queries, queries)[:, None]
        top = np.argpartition(dist, K, axis=1)[:, :K]
        cand_d = np.concatenate([best_d, dist[rows, top]], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(cand_d, axis=1, kind="stable")[:, :K]
        best_d, best_i = cand_d[rows, keep], cand_i[rows, keep]
    np.save(path, best_i)


def dataset(n: int, d: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data (n, d) memory-mapped, queries (QUERIES, d), ground truth (QUERIES, K) row numbers),
    generated on first use and cached."""
    base = os.path.join(cache_dir(), f"clusters-{SEED}-{n}x{d}")
    for which, suffix in ((0, "data"), (1, "queries")):
        path = f"{base}-{suffix}.npy"
        if not os.path.exists(path):
            _save(path, lambda tmp, which=which: _generate(tmp, n, d, which))
    data = np.load(f"{base}-data.npy", mmap_mode="r")
    queries = np.load(f"{base}-queries.npy")
    truth_path = f"{base}-truth{K}.npy"
    if not os.path.exists(truth_path):
        _save(truth_path, lambda tmp: _truth(tmp, data, queries))
    return data, queries, np.load(truth_path)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    m = min(len(found), len(truth))
    hits = sum(len(np.intersect1d(found[i], truth[i])) for i in range(m))
    return hits / (m * truth.shape[1])


def values(n: int) -> List[bytes]:
    return [b"item-%d" % i for i in range(n)]


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


# -- stores and libraries with exact search ----------------------------------------------------
# Each adapter: insert(data) (the bulk fill), search(q) -> row numbers of the K nearest,
# search_batch(queries) -> (m, K) row numbers (None: no batch API, queried one by one), close().


class AmberVec:
    def __init__(self, d: str, dim: int) -> None:
        from ambervault import VectorKVault

        self.path = os.path.join(d, "a.db")
        self.vk = VectorKVault(self.path, table="t", dimensions=dim, metric="l2")

    def insert(self, data: np.ndarray) -> None:
        ids = self.vk.insert_many(data, self.vals)
        self.base = ids[0]
        assert ids[-1] - ids[0] == len(ids) - 1

    def prepare(self, data: np.ndarray) -> None:
        self.vals = values(len(data))

    def search(self, q: np.ndarray) -> List[int]:
        return [i - self.base for i, _, _ in self.vk.search(q, k=K, exact=True)]

    def search_batch(self, queries: np.ndarray) -> Optional[np.ndarray]:
        ids, _ = self.vk.search_many(queries, k=K, exact=True)
        return ids - self.base

    def close(self) -> None:
        self.vk.close()


class KohakuVec(AmberVec):
    def __init__(self, d: str, dim: int) -> None:
        import kohakuvault

        self.vk = kohakuvault.VectorKVault(os.path.join(d, "k.db"), table="t", dimensions=dim, metric="l2")

    def prepare(self, data: np.ndarray) -> None:
        # Its fastest path takes each vector as bytes (skipping the numpy conversion): untimed.
        self.rows = [(row.tobytes(), v) for row, v in zip(np.asarray(data), values(len(data)))]

    def insert(self, data: np.ndarray) -> None:
        insert = self.vk.insert
        self.base = insert(*self.rows[0])
        for row, v in self.rows[1:]:
            insert(row, v)

    def search(self, q: np.ndarray) -> List[int]:
        return [i - self.base for i, _, _ in self.vk.search(q.tobytes(), k=K)]

    def search_batch(self, queries: np.ndarray) -> Optional[np.ndarray]:
        return None


class SqliteVec:
    def __init__(self, d: str, dim: int) -> None:
        import pysqlite3 as sqlite3  # the stdlib module here cannot load extensions
        import sqlite_vec

        self.db = sqlite3.connect(os.path.join(d, "s.db"), isolation_level=None)
        self.db.enable_load_extension(True)
        sqlite_vec.load(self.db)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(f"CREATE VIRTUAL TABLE t USING vec0(embedding float[{dim}], +value blob)")

    def prepare(self, data: np.ndarray) -> None:
        self.rows = [
            (i + 1, row.tobytes(), v) for i, (row, v) in enumerate(zip(np.asarray(data), values(len(data))))
        ]

    def insert(self, data: np.ndarray) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO t(rowid, embedding, value) VALUES (?, ?, ?)", self.rows)
        self.db.execute("COMMIT")

    def search(self, q: np.ndarray) -> List[int]:
        rows = self.db.execute(
            "SELECT rowid, distance, value FROM t WHERE embedding MATCH ? AND k = ?", (q.tobytes(), K)
        ).fetchall()
        return [r[0] - 1 for r in rows]

    def search_batch(self, queries: np.ndarray) -> Optional[np.ndarray]:
        return None

    def close(self) -> None:
        self.db.close()


class LanceVec:
    def __init__(self, d: str, dim: int) -> None:
        import lancedb

        self.db = lancedb.connect(os.path.join(d, "lance"))
        self.dim = dim

    def prepare(self, data: np.ndarray) -> None:
        self.vals = values(len(data))

    def insert(self, data: np.ndarray) -> None:
        import pyarrow as pa

        flat = pa.array(np.ascontiguousarray(data).reshape(-1))
        table = pa.table(
            {
                "id": pa.array(np.arange(len(data))),
                "vector": pa.FixedSizeListArray.from_arrays(flat, self.dim),
                "value": pa.array(self.vals, pa.binary()),
            }
        )
        self.table = self.db.create_table("t", data=table)

    def _query(self, q: Any) -> Any:
        return self.table.search(q).distance_type("l2").limit(K).select(["id", "_distance"])

    def search(self, q: np.ndarray) -> List[int]:
        return self._query(q).to_arrow()["id"].to_pylist()

    def search_batch(self, queries: np.ndarray) -> Optional[np.ndarray]:
        out = self._query(list(queries)).to_arrow()
        qi = out["query_index"].to_numpy()
        ids = out["id"].to_numpy()
        dist = out["_distance"].to_numpy()
        order = np.lexsort((dist, qi))
        return ids[order].reshape(len(queries), K)

    def close(self) -> None:
        pass


class FaissFlat:
    def __init__(self, d: str, dim: int) -> None:
        import faiss

        self.faiss = faiss
        self.index = faiss.IndexFlatL2(dim)

    def prepare(self, data: np.ndarray) -> None:
        pass

    def insert(self, data: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(data))

    def search(self, q: np.ndarray) -> List[int]:
        self.faiss.omp_set_num_threads(1)
        return list(self.index.search(q[None, :], K)[1][0])

    def search_batch(self, queries: np.ndarray) -> Optional[np.ndarray]:
        self.faiss.omp_set_num_threads(CORES)
        return self.index.search(queries, K)[1]

    def close(self) -> None:
        pass


class HnswlibBF(FaissFlat):
    def __init__(self, d: str, dim: int) -> None:
        import hnswlib

        self.index = hnswlib.BFIndex(space="l2", dim=dim)

    def insert(self, data: np.ndarray) -> None:
        self.index.init_index(max_elements=len(data))
        self.index.add_items(np.ascontiguousarray(data), np.arange(len(data)))

    def search(self, q: np.ndarray) -> List[int]:
        return list(self.index.knn_query(q, k=K, num_threads=1)[0][0])

    def search_batch(self, queries: np.ndarray) -> Optional[np.ndarray]:
        return self.index.knn_query(queries, k=K, num_threads=CORES)[0]


class UsearchExact(FaissFlat):
    def __init__(self, d: str, dim: int) -> None:
        pass

    def insert(self, data: np.ndarray) -> None:
        self.data = np.ascontiguousarray(data)  # usearch.index.search works on the array itself

    def search(self, q: np.ndarray) -> List[int]:
        from usearch.index import MetricKind, search

        return list(search(self.data, q, K, MetricKind.L2sq, exact=True, threads=1).keys)

    def search_batch(self, queries: np.ndarray) -> Optional[np.ndarray]:
        from usearch.index import MetricKind, search

        return search(self.data, queries, K, MetricKind.L2sq, exact=True, threads=CORES).keys


class NumpyBrute(FaissFlat):
    """The limit for exact search: ||x||² - 2 q·x by BLAS, then argpartition."""

    def __init__(self, d: str, dim: int) -> None:
        pass

    def insert(self, data: np.ndarray) -> None:
        self.data = np.array(data)
        self.norms = np.einsum("ij,ij->i", self.data, self.data)

    def search(self, q: np.ndarray) -> List[int]:
        dist = self.norms - 2 * (self.data @ q)
        top = np.argpartition(dist, K)[:K]
        return list(top[np.argsort(dist[top])])

    def search_batch(self, queries: np.ndarray) -> Optional[np.ndarray]:
        out = np.empty((len(queries), K), dtype=np.int64)
        for s in range(0, len(queries), 250):
            dist = self.norms[None, :] - 2 * (queries[s : s + 250] @ self.data.T)
            top = np.argpartition(dist, K, axis=1)[:, :K]
            rows = np.arange(len(top))[:, None]
            out[s : s + 250] = top[rows, np.argsort(dist[rows, top], axis=1)]
        return out


EXACT_SYSTEMS = {
    "ambervault": AmberVec,
    "numpy": NumpyBrute,
    "faiss": FaissFlat,
    "usearch": UsearchExact,
    "hnswlib": HnswlibBF,
    "lancedb": LanceVec,
    "sqlite_vec": SqliteVec,
    "kohakuvault": KohakuVec,
}
INSERT_SYSTEMS = ["ambervault", "kohakuvault", "sqlite_vec", "lancedb"]


def vec_insert(system: str, dim: int) -> Callable[[str, int], VecResult]:
    def run(d: str, n: int) -> VecResult:
        data = np.array(dataset(n, dim)[0])  # in memory, like an embedding model's output
        s = EXACT_SYSTEMS[system](d, dim)
        s.prepare(data)
        with Timer() as t:
            s.insert(data)
        s.close()
        return t.seconds, n, {}

    return run


def vec_exact(system: str, dim: int, batched: bool) -> Callable[[str, int], VecResult]:
    def run(d: str, n: int) -> VecResult:
        data, queries, truth = dataset(n, dim)
        s = EXACT_SYSTEMS[system](d, dim)
        s.prepare(data)
        s.insert(data)
        s.search(queries[-1])  # untimed warm-up: loads what the first search loads
        if batched and s.search_batch(queries[:2]) is not None:
            with Timer() as t:
                found = s.search_batch(queries)
            ops = len(queries)
        else:
            with Timer() as t:
                found = np.array([s.search(q) for q in queries[:SINGLE]])
            ops = SINGLE
        s.close()
        return t.seconds, ops, {"recall": recall(np.asarray(found), truth)}

    return run


# -- HNSW ----------------------------------------------------------------------------------------
# Each adapter: build(data), search_batch(queries, ef) -> (m, K) rows, search(q, ef) -> rows.


class AmberHnsw:
    def __init__(self, d: str, dim: int) -> None:
        from ambervault import VectorKVault

        self.path = os.path.join(d, "a.db")
        self.dim = dim
        self.vk = VectorKVault(
            self.path,
            table="t",
            dimensions=dim,
            metric="l2",
            index="hnsw",
            M=HNSW_M,
            ef_construction=HNSW_EF_CONSTRUCTION,
        )
        self.extras: Extras = {}

    def load(self, data: np.ndarray) -> None:
        vals = values(len(data))
        with Timer() as t:
            self.base = self.vk.insert_many(np.asarray(data), vals)[0]
        self.extras["insert_s"] = t.seconds

    def build(self, data: np.ndarray) -> None:
        self.vk.build_index()  # builds the graph and stores it in the file

    def search_batch(self, queries: np.ndarray, ef: int) -> np.ndarray:
        return self.vk.search_many(queries, k=K, ef_search=ef)[0] - self.base

    def search(self, q: np.ndarray, ef: int) -> List[int]:
        return [i - self.base for i, _, _ in self.vk.search(q, k=K, ef_search=ef)]

    def after(self, queries: np.ndarray, ef: int) -> None:
        from ambervault import VectorKVault

        info = self.vk.info()
        self.extras["lib_memory"] = info["memory_bytes"]
        self.extras["index_bytes"] = info["index_bytes"]
        self.vk.close()
        with Timer() as t:
            vk = VectorKVault(self.path, table="t", ef_search=ef)
            first = vk.search(queries[0], k=K)
        self.extras["open_s"] = t.seconds
        assert len(first) == K
        vk.close()


class HnswlibHnsw:
    def __init__(self, d: str, dim: int) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="l2", dim=dim)
        self.extras: Extras = {}

    def load(self, data: np.ndarray) -> None:
        self.data = np.ascontiguousarray(data)  # in memory, like an embedding model's output

    def build(self, data: np.ndarray) -> None:
        self.index.init_index(max_elements=len(data), M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION)
        self.index.add_items(self.data, np.arange(len(data)), num_threads=CORES)

    def search_batch(self, queries: np.ndarray, ef: int) -> np.ndarray:
        self.index.set_ef(ef)
        return self.index.knn_query(queries, k=K, num_threads=CORES)[0]

    def search(self, q: np.ndarray, ef: int) -> List[int]:
        self.index.set_ef(ef)
        return list(self.index.knn_query(q, k=K, num_threads=1)[0][0])

    def after(self, queries: np.ndarray, ef: int) -> None:
        pass


class UsearchHnsw(HnswlibHnsw):
    def __init__(self, d: str, dim: int) -> None:
        from usearch.index import Index

        self.index = Index(
            ndim=dim, metric="l2sq", dtype="f32", connectivity=HNSW_M, expansion_add=HNSW_EF_CONSTRUCTION
        )
        self.extras = {}

    def build(self, data: np.ndarray) -> None:
        self.index.add(np.arange(len(data)), self.data, threads=CORES)

    def search_batch(self, queries: np.ndarray, ef: int) -> np.ndarray:
        self.index.expansion_search = ef
        return self.index.search(queries, K, threads=CORES).keys

    def search(self, q: np.ndarray, ef: int) -> List[int]:
        self.index.expansion_search = ef
        return list(self.index.search(q, K, threads=1).keys)

    def after(self, queries: np.ndarray, ef: int) -> None:
        self.extras["lib_memory"] = self.index.memory_usage


class FaissHnsw(HnswlibHnsw):
    def __init__(self, d: str, dim: int) -> None:
        import faiss

        faiss.omp_set_num_threads(CORES)
        self.faiss = faiss
        self.index = faiss.IndexHNSWFlat(dim, HNSW_M)
        self.index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        self.extras = {}

    def build(self, data: np.ndarray) -> None:
        self.index.add(self.data)

    def search_batch(self, queries: np.ndarray, ef: int) -> np.ndarray:
        self.faiss.omp_set_num_threads(CORES)
        self.index.hnsw.efSearch = ef
        return self.index.search(queries, K)[1]

    def search(self, q: np.ndarray, ef: int) -> List[int]:
        self.faiss.omp_set_num_threads(1)
        self.index.hnsw.efSearch = ef
        return list(self.index.search(q[None, :], K)[1][0])


class LanceHnsw(HnswlibHnsw):
    """lancedb's IVF_HNSW_FLAT index with one partition: a single HNSW graph over full vectors."""

    def __init__(self, d: str, dim: int) -> None:
        self.lance = LanceVec(d, dim)
        self.extras = {}

    def load(self, data: np.ndarray) -> None:
        self.lance.prepare(data)
        self.lance.insert(np.asarray(data))

    def build(self, data: np.ndarray) -> None:
        self.lance.table.create_index(
            metric="l2",
            index_type="IVF_HNSW_FLAT",
            num_partitions=1,
            m=HNSW_M,
            ef_construction=HNSW_EF_CONSTRUCTION,
        )

    def _query(self, q: Any, ef: int) -> Any:
        return (
            self.lance.table.search(q)
            .distance_type("l2")
            .limit(K)
            .ef(ef)
            .nprobes(1)
            .select(["id", "_distance"])
        )

    def search_batch(self, queries: np.ndarray, ef: int) -> np.ndarray:
        out = self._query(list(queries), ef).to_arrow()
        qi, ids, dist = (out[c].to_numpy() for c in ("query_index", "id", "_distance"))
        found = np.full((len(queries), K), -1, dtype=np.int64)
        order = np.lexsort((dist, qi))
        qi, ids = qi[order], ids[order]
        starts = np.searchsorted(qi, np.arange(len(queries)))
        ends = np.searchsorted(qi, np.arange(len(queries)), side="right")
        for i, (a, b) in enumerate(zip(starts, ends)):
            found[i, : b - a] = ids[a:b][:K]
        return found

    def search(self, q: np.ndarray, ef: int) -> List[int]:
        return self._query(q, ef).to_arrow()["id"].to_pylist()


HNSW_SYSTEMS = {
    "ambervault": AmberHnsw,
    "hnswlib": HnswlibHnsw,
    "usearch": UsearchHnsw,
    "faiss": FaissHnsw,
    "lancedb": LanceHnsw,
}


def vec_hnsw(system: str, dim: int) -> Callable[[str, int], VecResult]:
    """Build (timed, reported as ``build_s``), then the smallest ef of ``EF_LADDER`` reaching
    recall@10 >= 0.95 on the 1,000 queries; the timed figure is those queries as one batch at
    that ef (all cores), repeated for a second; ``single_qps`` is 200 of them one by one."""

    def run(d: str, n: int) -> VecResult:
        data, queries, truth = dataset(n, dim)
        s = HNSW_SYSTEMS[system](d, dim)
        s.load(data)
        before = rss_anon()
        with Timer() as build:
            s.build(data)
        extras = s.extras
        extras["build_s"] = build.seconds
        extras["memory"] = max(0, rss_anon() - before)
        for ef in EF_LADDER:
            got = recall(np.asarray(s.search_batch(queries, ef)), truth)
            if got >= TARGET_RECALL:
                break
        extras["ef"] = ef
        extras["recall"] = got
        # A batch takes tens of milliseconds: repeated for at least a second.
        rounds = 0
        with Timer() as t:
            while rounds == 0 or time.perf_counter() - t.start < 1.0:
                s.search_batch(queries, ef)
                rounds += 1
        with Timer() as single:
            for q in queries[:SINGLE]:
                s.search(q, ef)
        extras["single_qps"] = SINGLE / single.seconds
        s.after(queries, ef)
        return t.seconds, rounds * len(queries), extras

    return run


def prepare(workload: str, n: int) -> None:
    """Untimed, in the runner before any worker: generates and caches the workload's data."""
    dataset(n, VEC_DIMS[workload])


VEC_DIMS = {
    "vec_insert_384": 384,
    "vec_exact_single_384": 384,
    "vec_exact_batch_384": 384,
    "vec_hnsw_128": 128,
}
EXACT = list(EXACT_SYSTEMS)
VEC_WORKLOADS: Dict[str, Tuple[List[str], Callable[[str], Any], Tuple[int, int], str]] = {
    "vec_insert_384": (INSERT_SYSTEMS, lambda s: vec_insert(s, 384), (20_000, 100_000), "vectors"),
    "vec_exact_single_384": (EXACT, lambda s: vec_exact(s, 384, False), (20_000, 100_000), "queries"),
    "vec_exact_batch_384": (EXACT, lambda s: vec_exact(s, 384, True), (20_000, 100_000), "queries"),
    "vec_hnsw_128": (list(HNSW_SYSTEMS), lambda s: vec_hnsw(s, 128), (100_000, 1_000_000), "queries"),
}
VEC_SIZE_LABELS = {
    "vec_insert_384": "insert {n:,} x 384 f32 vectors with small values, in bulk",
    "vec_exact_single_384": f"exact k={K}, {SINGLE} queries one by one, on {{n:,}} x 384 f32",
    "vec_exact_batch_384": f"exact k={K}, {QUERIES:,} queries in one batch, on {{n:,}} x 384 f32",
    "vec_hnsw_128": f"HNSW on {{n:,}} x 128 f32: batches of {QUERIES:,} queries at recall@{K} ≥ {TARGET_RECALL}",
}
# Extra columns per workload: (extras key, header, format: "s", "f3", "int", "bytes", "rate").
EXTRA_COLUMNS: Dict[str, List[Tuple[str, str, str]]] = {
    "vec_exact_single_384": [("recall", f"recall@{K}", "f3")],
    "vec_exact_batch_384": [("recall", f"recall@{K}", "f3")],
    "vec_hnsw_128": [
        ("build_s", "build", "s"),
        ("ef", "ef", "int"),
        ("recall", f"recall@{K}", "f3"),
        ("single_qps", "1-by-1 queries/s", "rate"),
        ("memory", "memory (RSS growth in build)", "bytes"),
        ("lib_memory", "memory (library's figure)", "bytes"),
        ("insert_s", "insert (before build)", "s"),
        ("open_s", "open + first search", "s"),
    ],
}
VEC_NOTES = {
    "ambervault (vectors)": "VectorKVault, metric l2: `insert_many` (one transaction); exact: "
    "`search(exact=True)` / `search_many(exact=True)` (all cores); HNSW: `index='hnsw'`, "
    f"M={HNSW_M}, ef_construction={HNSW_EF_CONSTRUCTION}, `build_index()` (builds the graph and "
    "stores it in the file), `search_many(ef_search=ef)`; open = a new VectorKVault on the file "
    "plus its first search",
    "kohakuvault (vectors)": "kohakuvault 1.1.0 VectorKVault (sqlite-vec), metric l2: `insert(bytes, value)` "
    "one by one (its only insert; vectors converted to bytes untimed); `search` one by one "
    f"(no batch API: {SINGLE} queries in the batch workload too)",
    "sqlite_vec": "sqlite-vec 0.1.9 vec0 table (`embedding float[d]`, `+value blob`) through "
    "pysqlite3 (this Python's stdlib sqlite3 cannot load extensions), WAL+NORMAL; inserts: "
    "`executemany` in one transaction; KNN: `WHERE embedding MATCH ? AND k = 10`, one by one",
    "lancedb": "lancedb table from an Arrow table (`create_table`); exact: a search without an "
    "index; batches: a list of queries in one `search`; HNSW: `IVF_HNSW_FLAT` with one partition "
    f"(one graph), m={HNSW_M}, ef_construction={HNSW_EF_CONSTRUCTION}, `.ef(ef)`",
    "faiss": f"faiss-cpu `IndexFlatL2` / `IndexHNSWFlat(d, {HNSW_M})` with efConstruction="
    f"{HNSW_EF_CONSTRUCTION}; OpenMP threads = cores (1 for one-by-one queries)",
    "hnswlib": f"hnswlib `BFIndex` (exact) / `Index` with M={HNSW_M}, "
    f"ef_construction={HNSW_EF_CONSTRUCTION}; `add_items` and batched `knn_query` on all cores "
    "(built from source by pip: `-march=native`)",
    "usearch": f"usearch `Index` (connectivity={HNSW_M}, expansion_add={HNSW_EF_CONSTRUCTION}, f32; "
    "its SIMD kernels from NumKong); exact: `usearch.index.search(exact=True)`",
    "numpy (vectors)": "numpy brute force, the limit for exact search: |x|^2 - 2 X.q by BLAS "
    "(OpenBLAS, all cores) and `argpartition`, on an in-memory array",
}
