"""Benchmark workloads, one function per (workload, system), each using the system's fastest
documented path for the job (its batch API, its array API); the path is named in ``NOTES``.

A workload function receives a fresh temporary directory and a size, does untimed setup, and
returns ``(seconds, operations)`` for the timed part only, or ``(seconds, operations, extras)``
with more figures (recall, build time...) that the report shows in extra columns. ``worker.py``
runs one of them per fresh process and measures heap growth and file size around it.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import struct
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from branch_workloads import BRANCH_EXTRA_COLUMNS, BRANCH_NOTES, BRANCH_SIZE_LABELS, BRANCH_WORKLOADS
from cache_workloads import CACHE_EXTRA_COLUMNS, CACHE_NOTES, CACHE_SIZE_LABELS, CACHE_WORKLOADS
from compression_workloads import (
    COMPRESSION_EXTRA_COLUMNS,
    COMPRESSION_NOTES,
    COMPRESSION_SIZE_LABELS,
    COMPRESSION_WORKLOADS,
)
from compression_workloads import prepare as compression_prepare
from history_workloads import HISTORY_EXTRA_COLUMNS, HISTORY_NOTES, HISTORY_SIZE_LABELS, HISTORY_WORKLOADS
from media_workloads import MEDIA_EXTRA_COLUMNS, MEDIA_NOTES, MEDIA_SIZE_LABELS, MEDIA_WORKLOADS
from text_workloads import TEXT_NOTES, TEXT_SIZE_LABELS, TEXT_WORKLOADS
from vector_workloads import EXTRA_COLUMNS as VEC_EXTRA_COLUMNS
from vector_workloads import VEC_NOTES, VEC_SIZE_LABELS, VEC_WORKLOADS
from vector_workloads import prepare as vec_prepare

Result = Tuple[float, int]
Workload = Callable[[str, int], Result]

VALUE = b"v" * 100


def keys(n: int) -> List[bytes]:
    return [b"key:%08d" % i for i in range(n)]


def random_order(n: int, seed: int = 7) -> List[int]:
    rng = random.Random(seed)
    order = list(range(n))
    rng.shuffle(order)
    return order


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def blob_1mib(i: int) -> bytes:
    return hashlib.shake_256(b"%d" % i).digest(1 << 20)


# -- key-value systems ---------------------------------------------------------------------------
# Each KV adapter: open(dir) -> object with put(k, v), put_many(items), get(k), iterate(), close().


class Amber:
    note = "KVault; batches: put_many (one transaction each)"

    def __init__(self, d: str) -> None:
        import ambervault

        self.v = ambervault.KVault(os.path.join(d, "a.db"))

    def put(self, k: bytes, v: bytes) -> None:
        self.v.put(k, v)

    def put_many(self, items: List[Tuple[bytes, bytes]]) -> None:
        self.v.put_many(items)

    def get(self, k: bytes) -> bytes:
        return self.v.get(k)

    def get_many(self, ks: List[bytes]) -> List[bytes]:
        return self.v.get_many(ks)

    def iterate(self) -> int:
        return sum(1 for _ in self.v.keys())

    def stream_in(self, k: bytes, f) -> None:
        self.v.put_file(k, f)

    def stream_out(self, k: bytes, f) -> None:
        self.v.get_to_file(k, f)

    def close(self) -> None:
        self.v.close()


class Kohaku(Amber):
    """The seed system has the same API: only how it is opened differs."""

    note = "kohakuvault 1.1.0 KVault (raw bytes); batches: put_many"

    def __init__(self, d: str) -> None:
        import kohakuvault

        self.v = kohakuvault.KVault(os.path.join(d, "k.db"))


class DiskCache:
    note = "diskcache.Cache; batches: transact()"

    def __init__(self, d: str) -> None:
        import diskcache

        # As a store, not a cache: the default 1 GB size limit would evict a streamed 1 GiB file
        # right after writing it.
        self.c = diskcache.Cache(os.path.join(d, "dc"), size_limit=1 << 40, eviction_policy="none")

    def put(self, k: bytes, v: bytes) -> None:
        self.c.set(k, v)

    def put_many(self, items: List[Tuple[bytes, bytes]]) -> None:
        with self.c.transact():
            for k, v in items:
                self.c.set(k, v)

    def get(self, k: bytes) -> bytes:
        return self.c.get(k)

    def get_many(self, ks: List[bytes]) -> List[bytes]:
        return [self.c.get(k) for k in ks]  # no batched read in diskcache

    def iterate(self) -> int:
        return sum(1 for _ in self.c.iterkeys())

    def stream_in(self, k: bytes, f) -> None:
        self.c.set(k, f, read=True)

    def stream_out(self, k: bytes, out) -> None:
        handle = self.c.get(k, read=True)
        for block in iter(lambda: handle.read(1 << 20), b""):
            out.write(block)
        handle.close()

    def close(self) -> None:
        self.c.close()


class SqliteDict:
    note = "sqlitedict (autocommit per put; batches: one commit)"

    def __init__(self, d: str) -> None:
        from sqlitedict import SqliteDict as SD

        path = os.path.join(d, "sd.db")
        self.auto = SD(path, autocommit=True, encode=lambda x: x, decode=lambda x: x)
        self.path = path

    def put(self, k: bytes, v: bytes) -> None:
        self.auto[k.decode()] = v

    def put_many(self, items: List[Tuple[bytes, bytes]]) -> None:
        from sqlitedict import SqliteDict as SD

        self.auto.close()
        with SD(self.path, autocommit=False, encode=lambda x: x, decode=lambda x: x) as batch:
            for k, v in items:
                batch[k.decode()] = v
            batch.commit()
        self.auto = SD(self.path, autocommit=True, encode=lambda x: x, decode=lambda x: x)

    def get(self, k: bytes) -> bytes:
        return self.auto[k.decode()]

    def iterate(self) -> int:
        return sum(1 for _ in self.auto.keys())

    def close(self) -> None:
        self.auto.close()


class Lmdb:
    note = "lmdb (sync on commit); batches: one write transaction"

    def __init__(self, d: str) -> None:
        import lmdb

        self.env = lmdb.open(os.path.join(d, "lmdb"), map_size=64 << 30)

    def put(self, k: bytes, v: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(k, v)

    def put_many(self, items: List[Tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            for k, v in items:
                txn.put(k, v)

    def get(self, k: bytes) -> bytes:
        with self.env.begin() as txn:
            return txn.get(k)

    def get_many(self, ks: List[bytes]) -> List[bytes]:
        with self.env.begin() as txn:
            return [txn.get(k) for k in ks]

    def iterate(self) -> int:
        with self.env.begin() as txn:
            return sum(1 for _ in txn.cursor().iternext(keys=True, values=False))

    def close(self) -> None:
        self.env.close()


class RocksDict:
    note = "rocksdict.Rdict (raw mode); batches: WriteBatch"

    def __init__(self, d: str) -> None:
        from rocksdict import Options, Rdict

        self.db = Rdict(os.path.join(d, "rocks"), Options(raw_mode=True))

    def put(self, k: bytes, v: bytes) -> None:
        self.db[k] = v

    def put_many(self, items: List[Tuple[bytes, bytes]]) -> None:
        from rocksdict import WriteBatch

        wb = WriteBatch(raw_mode=True)
        for k, v in items:
            wb.put(k, v)
        self.db.write(wb)

    def get(self, k: bytes) -> bytes:
        return self.db[k]

    def get_many(self, ks: List[bytes]) -> List[bytes]:
        return self.db[ks]  # RocksDB's multi-get

    def iterate(self) -> int:
        return sum(1 for _ in self.db.keys())

    def close(self) -> None:
        self.db.close()


class DirectSqlite:
    note = "stdlib sqlite3, one table, WAL+NORMAL; batches: one transaction"

    def __init__(self, d: str) -> None:
        self.c = sqlite3.connect(os.path.join(d, "s.db"), isolation_level=None)
        self.c.execute("PRAGMA journal_mode=WAL")
        self.c.execute("PRAGMA synchronous=NORMAL")
        self.c.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")

    def put(self, k: bytes, v: bytes) -> None:
        self.c.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, v))

    def put_many(self, items: List[Tuple[bytes, bytes]]) -> None:
        self.c.execute("BEGIN")
        self.c.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", items)
        self.c.execute("COMMIT")

    def get(self, k: bytes) -> bytes:
        return self.c.execute("SELECT v FROM kv WHERE k = ?", (k,)).fetchone()[0]

    def iterate(self) -> int:
        return sum(1 for _ in self.c.execute("SELECT k FROM kv"))

    def close(self) -> None:
        self.c.close()


class AmberExternal(Amber):
    """ambervault with checkpoints left to a replicator (as under Litestream), here without
    one: what the mode costs the writer."""

    note = "KVault(checkpoints='external'): no ambervault or SQLite checkpoints"

    def __init__(self, d: str) -> None:
        import ambervault

        self.v = ambervault.KVault(os.path.join(d, "a.db"), checkpoints="external")


class Files:
    """One plain file per key in a folder: the floor for values of 100 KB and more."""

    note = "one plain file per key in a folder (open 'wb' + write + close, no fsync; get: open + read)"

    def __init__(self, d: str) -> None:
        self.d = os.path.join(d, "files")
        os.makedirs(self.d)

    def put(self, k: bytes, v: bytes) -> None:
        with open(os.path.join(self.d, k.decode()), "wb") as f:
            f.write(v)

    def put_many(self, items: List[Tuple[bytes, bytes]]) -> None:
        for k, v in items:
            self.put(k, v)

    def get(self, k: bytes) -> bytes:
        with open(os.path.join(self.d, k.decode()), "rb") as f:
            return f.read()

    def get_many(self, ks: List[bytes]) -> List[bytes]:
        return [self.get(k) for k in ks]

    def iterate(self) -> int:
        return len(os.listdir(self.d))

    def close(self) -> None:
        pass


KV_SYSTEMS = {
    "ambervault": Amber,
    "ambervault-external": AmberExternal,
    "kohakuvault": Kohaku,
    "diskcache": DiskCache,
    "sqlitedict": SqliteDict,
    "lmdb": Lmdb,
    "rocksdict": RocksDict,
    "sqlite3": DirectSqlite,
    "files": Files,  # only in the 100 KB rows (issue 21)
}


def kv_put_single(system: str, size: Optional[int] = None) -> Workload:
    """Puts one by one, each its own commit: the 100 B ``VALUE``, or distinct values of ``size``
    bytes."""

    def run(d: str, n: int) -> Result:
        s = KV_SYSTEMS[system](d)
        values = [VALUE] * n if size is None else distinct_values(n, size)
        items = list(zip(keys(n), values))
        with Timer() as t:
            for k, v in items:
                s.put(k, v)
        s.close()
        return t.seconds, n

    return run


def distinct_values(n: int, size: int) -> List[bytes]:
    """``n`` different values of ``size`` bytes (no store can deduplicate them)."""
    rng = random.Random(size)
    return [rng.randbytes(size) for _ in range(n)]


def kv_put_batch(system: str, size: Optional[int] = None) -> Workload:
    """Puts in batches of 10,000: the 100 B ``VALUE``, or distinct values of ``size`` bytes."""

    def run(d: str, n: int) -> Result:
        s = KV_SYSTEMS[system](d)
        values = [VALUE] * n if size is None else distinct_values(n, size)
        items = list(zip(keys(n), values))
        with Timer() as t:
            for i in range(0, n, 10_000):
                s.put_many(items[i : i + 10_000])
        s.close()
        return t.seconds, n

    return run


def kv_put_cached(system: str) -> Workload:
    """The documented bulk path of both vaults: ``enable_cache()``, ``vault[k] = v`` one by one,
    ``flush_cache()``, all timed; distinct 100 B values under str keys. ``ambervault-put_many``
    writes the same pairs in one ``put_many`` call, the reference the cache is held to."""

    def run(d: str, n: int) -> Result:
        items = list(zip((f"key:{i:08d}" for i in range(n)), distinct_values(n, 100)))
        if system == "ambervault-put_many":
            import ambervault

            v = ambervault.KVault(os.path.join(d, "a.db"))
            with Timer() as t:
                v.put_many(items)
        else:
            v = KV_SYSTEMS[system](d).v
            with Timer() as t:
                v.enable_cache()
                for k, value in items:
                    v[k] = value
                v.flush_cache()
        assert len(v) == n
        v.close()
        return t.seconds, n

    return run


def _settle(store: Any) -> None:
    """Untimed, after a fill: the SQLite-backed vaults copy their WAL back into the file, so
    reads are measured on a settled file whoever did that work during the fill (ambervault
    checkpoints bulk writes on a background thread; kohakuvault inside the commit)."""
    store.checkpoint()


def _populated(system: str, d: str, n: int, size: Optional[int] = None):
    s = KV_SYSTEMS[system](d)
    values = [VALUE] * n if size is None else distinct_values(n, size)
    items = list(zip(keys(n), values))
    for i in range(0, n, 10_000):
        s.put_many(items[i : i + 10_000])
    if system in ("ambervault", "kohakuvault"):
        _settle(s.v)
    return s


def kv_get_random(system: str, size: Optional[int] = None) -> Workload:
    def run(d: str, n: int) -> Result:
        s = _populated(system, d, n, size)
        ks = keys(n)
        order = random_order(n)
        with Timer() as t:
            for i in order:
                s.get(ks[i])
        s.close()
        return t.seconds, n

    return run


def kv_get_many(system: str, size: int, batch: int) -> Workload:
    """The values of `n` distinct keys in random order, `batch` keys per call: each system's
    batched read (one snapshot or transaction; diskcache and files have none and loop)."""

    def run(d: str, n: int) -> Result:
        s = _populated(system, d, n, size)
        ks = keys(n)
        order = [ks[i] for i in random_order(n)]
        with Timer() as t:
            for i in range(0, n, batch):
                values = s.get_many(order[i : i + batch])
        assert len(values[-1]) == size, (system, len(values[-1]))
        s.close()
        return t.seconds, n

    return run


def kv_iterate(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        s = _populated(system, d, n)
        with Timer() as t:
            count = s.iterate()
        assert count == n, (system, count)
        s.close()
        return t.seconds, n

    return run


def kv_mix(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        s = _populated(system, d, n)
        ks = keys(n)
        rng = random.Random(3)
        ops = [(rng.random() < 0.1, rng.randrange(n)) for _ in range(n)]
        # Every write stores a new value: kohakuvault skips a put whose value is unchanged
        # (measured: 3 us instead of 36 us), which would turn its writes into reads.
        new_values = [VALUE[:-8] + j.to_bytes(8, "little") for j in range(n)]
        with Timer() as t:
            for j, (write, i) in enumerate(ops):
                if write:
                    s.put(ks[i], new_values[j])
                else:
                    s.get(ks[i])
        s.close()
        return t.seconds, n

    return run


def kv_1mib_put(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        s = KV_SYSTEMS[system](d)
        blobs = [blob_1mib(i % 16) + b"%d" % i for i in range(n)]
        with Timer() as t:
            for i, b in enumerate(blobs):
                s.put(b"blob:%d" % i, b)
        s.close()
        return t.seconds, n

    return run


def kv_1mib_get(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        s = KV_SYSTEMS[system](d)
        for i in range(n):
            s.put(b"blob:%d" % i, blob_1mib(i % 16) + b"%d" % i)
        order = random_order(n)
        with Timer() as t:
            for i in order:
                s.get(b"blob:%d" % i)
        s.close()
        return t.seconds, n

    return run


def kv_large_get(system: str, size: int) -> Workload:
    """Random gets of `n` distinct values of `size` bytes (model files, large images), read whole."""

    def run(d: str, n: int) -> Result:
        s = KV_SYSTEMS[system](d)
        for i in range(n):
            s.put(b"large:%d" % i, os.urandom(size))
        if system in ("ambervault", "kohakuvault"):
            _settle(s.v)
        order = random_order(n)
        with Timer() as t:
            for i in order:
                value = s.get(b"large:%d" % i)
                assert len(value) == size, (system, len(value))
        s.close()
        return t.seconds, n

    return run


class Source:
    """An unknown-length stream of distinct 1 MiB blocks."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0
        self.n = 0
        self.block = hashlib.shake_256(b"stream").digest(1 << 20)

    def read(self, size: int = -1) -> bytes:
        if self.sent >= self.total:
            return b""
        self.n += 1
        data = (self.n.to_bytes(8, "little") + self.block[8:])[
            : min(size if size > 0 else 1 << 20, self.total - self.sent)
        ]
        self.sent += len(data)
        return data


class Sink:
    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)


def kv_stream_in(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        s = KV_SYSTEMS[system](d)
        with Timer() as t:
            s.stream_in(b"movie", Source(n << 20))
        s.close()
        return t.seconds, n << 20

    return run


def kv_stream_out(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        s = KV_SYSTEMS[system](d)
        s.stream_in(b"movie", Source(n << 20))
        sink = Sink()
        with Timer() as t:
            s.stream_out(b"movie", sink)
        assert sink.n == n << 20
        s.close()
        return t.seconds, n << 20

    return run


# -- many reader processes ---------------------------------------------------------------------
# A training job's data loader: worker processes read random 100 KB samples from one file. The
# pool is spawned before the timed part (for every system alike), each worker opens its own
# handle with the system's adapter above, and the timed part is the aggregate read.

READERS = 4
SAMPLE_BYTES = 100_000
_READER: Any = None


def _reader_open(system: str, d: str, ready: Any) -> None:
    global _READER
    _READER = KV_SYSTEMS[system](d)
    ready.wait(120)  # with the other workers and the parent: the clock starts once all are open


def _reader_get(ks: List[bytes]) -> int:
    get = _READER.get
    total = 0
    for k in ks:
        total += len(get(k))
    return total


def kv_parallel_read(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        import multiprocessing as mp

        samples = max(READERS, min(2_000, n // 4))  # 200 MB at most; each sample read 4+ times
        noise = os.urandom(SAMPLE_BYTES + 8 * samples)
        s = KV_SYSTEMS[system](d)
        ks = [b"sample:%08d" % i for i in range(samples)]
        for i in range(0, samples, 100):
            s.put_many(
                [(ks[j], noise[8 * j : 8 * j + SAMPLE_BYTES]) for j in range(i, min(i + 100, samples))]
            )
        if system in ("ambervault", "kohakuvault"):
            _settle(s.v)
        s.close()
        rng = random.Random(11)
        reads = [ks[rng.randrange(samples)] for _ in range(n)]
        parts = [reads[w::READERS] for w in range(READERS)]
        ctx = mp.get_context("spawn")
        ready = ctx.Barrier(READERS + 1)
        with ctx.Pool(READERS, initializer=_reader_open, initargs=(system, d, ready)) as pool:
            ready.wait(120)
            with Timer() as t:
                total = sum(pool.map(_reader_get, parts, chunksize=1))
        assert total == n * SAMPLE_BYTES, (system, total)
        return t.seconds, n

    return run


# -- column systems -----------------------------------------------------------------------------


_KEEP: list = []  # vaults must outlive the columns handed out (some stores close on collection)


def _amber_col(d: str, dtype: str = "f64"):
    import ambervault

    cv = ambervault.ColumnVault(os.path.join(d, "c.db"))
    _KEEP.append(cv)
    return cv, cv.create_column("x", dtype)


def _kohaku_col(d: str, dtype: str = "f64"):
    import kohakuvault

    cv = kohakuvault.ColumnVault(os.path.join(d, "k.db"))
    _KEEP.append(cv)
    return cv, cv.create_column("x", dtype)


def col_append(system: str, cached: bool) -> Workload:
    def run(d: str, n: int) -> Result:
        if system == "plainfile-flush":
            pack = struct.Struct("<d").pack
            with open(os.path.join(d, "x.f64"), "ab") as f, Timer() as t:
                for i in range(n):
                    f.write(pack(i * 0.5))
                    f.flush()
            assert os.path.getsize(os.path.join(d, "x.f64")) == 8 * n
            return t.seconds, n
        if system == "sqlite3":
            c = sqlite3.connect(os.path.join(d, "s.db"), isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("CREATE TABLE t (x REAL)")
            with Timer() as t:
                if cached:
                    c.execute("BEGIN")
                for i in range(n):
                    c.execute("INSERT INTO t VALUES (?)", (i * 0.5,))
                if cached:
                    c.execute("COMMIT")
            c.close()
            return t.seconds, n
        cv, col = (_amber_col if system == "ambervault" else _kohaku_col)(d)
        with Timer() as t:
            if cached:
                with cv.cache(cap_bytes=64 << 20, flush_threshold=16 << 20):
                    for i in range(n):
                        col.append(i * 0.5)
            else:
                for i in range(n):
                    col.append(i * 0.5)
        assert len(col) == n
        return t.seconds, n

    return run


def col_extend(system: str, source: str) -> Workload:
    def run(d: str, n: int) -> Result:
        data = np.arange(n, dtype="f8") * 0.5
        values = data if source == "numpy" else data.tolist()
        if system == "numpy":
            with Timer() as t:
                out = np.array(values, dtype="f8")
            return t.seconds, len(out)
        if system == "h5py":
            import h5py

            with h5py.File(os.path.join(d, "h.h5"), "w") as f, Timer() as t:
                f.create_dataset("x", data=np.asarray(values, dtype="f8"), maxshape=(None,), chunks=True)
            return t.seconds, n
        if system == "zarr":
            import zarr

            with Timer() as t:
                z = zarr.open_array(
                    os.path.join(d, "z.zarr"), mode="w", shape=(n,), chunks=(1 << 20,), dtype="f8"
                )
                z[:] = np.asarray(values, dtype="f8")
            return t.seconds, n
        if system == "pyarrow":
            import pyarrow as pa
            import pyarrow.feather as feather

            with Timer() as t:
                feather.write_feather(
                    pa.table({"x": np.asarray(values, dtype="f8")}), os.path.join(d, "x.arrow")
                )
            return t.seconds, n
        _cv, col = (_amber_col if system == "ambervault" else _kohaku_col)(d)
        with Timer() as t:
            col.extend(values)
        assert len(col) == n
        return t.seconds, n

    return run


def _filled_column(system: str, d: str, n: int):
    data = np.arange(n, dtype="f8") * 0.5
    if system == "numpy":
        return data
    if system == "h5py":
        import h5py

        f = h5py.File(os.path.join(d, "h.h5"), "w")
        f.create_dataset("x", data=data, chunks=(1 << 16,))
        return f["x"]
    if system == "zarr":
        import zarr

        z = zarr.open_array(os.path.join(d, "z.zarr"), mode="w", shape=(n,), chunks=(1 << 16,), dtype="f8")
        z[:] = data
        return z
    if system == "pyarrow":
        import pyarrow as pa
        import pyarrow.feather as feather

        path = os.path.join(d, "x.arrow")
        feather.write_feather(pa.table({"x": data}), path, compression="uncompressed")
        return feather.read_table(path, memory_map=True).column("x")
    cv, col = (_amber_col if system == "ambervault" else _kohaku_col)(d)
    col.extend(data)
    _settle(cv)
    return col


def col_point_reads(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        col = _filled_column(system, d, n)
        rng = random.Random(5)
        # zarr decodes a whole chunk per element read: fewer reads keep the run bounded
        # (rates, not times, are compared).
        count = min(n // 20, 100_000) // (20 if system == "zarr" else 1)
        idx = [rng.randrange(n) for _ in range(count)]
        with Timer() as t:
            if system == "pyarrow":
                for i in idx:
                    col[i].as_py()
            else:
                for i in idx:
                    col[i]
        return t.seconds, len(idx)

    return run


def col_scan(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        col = _filled_column(system, d, n)
        with Timer() as t:
            if system == "ambervault":
                out = col.to_numpy()
            elif system == "kohakuvault":
                out = col.read_array(0, len(col))
            elif system == "pyarrow":
                out = col.to_numpy()
            elif system == "numpy":
                out = col.copy()
            else:
                out = col[:]
        assert len(out) == n
        return t.seconds, n

    return run


def col_windows(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        col = _filled_column(system, d, n)
        rng = random.Random(9)
        starts = [rng.randrange(n - 1000) for _ in range(min(2000, n // 1000))]
        with Timer() as t:
            for s in starts:
                if system == "kohakuvault":
                    col.read_array(s, 1000)
                elif system == "pyarrow":
                    col.slice(s, 1000).to_numpy()
                elif system == "ambervault":
                    col.to_numpy(s, s + 1000)
                else:
                    col[s : s + 1000]
        return t.seconds, len(starts)

    return run


def col_scale(system: str, column_len: int, what: str) -> Workload:
    """Point reads or durable appends on a column that already holds ``column_len`` elements:
    the cost per operation must not grow with the column."""

    def run(d: str, n: int) -> Result:
        cv, col = (_amber_col if system == "ambervault" else _kohaku_col)(d)
        block = np.arange(10_000_000, dtype="f8")
        filled = 0
        while filled < column_len:
            take = min(len(block), column_len - filled)
            col.extend(block[:take])
            filled += take
        _settle(cv)
        rng = random.Random(13)
        if what == "reads":
            idx = [rng.randrange(column_len) for _ in range(n)]
            with Timer() as t:
                for i in idx:
                    col[i]
        else:
            with Timer() as t:
                for i in range(n):
                    col.append(i * 0.5)
            assert len(col) == column_len + n
        return t.seconds, n

    return run


def log_lines(n: int) -> List[bytes]:
    rng = random.Random(11)
    return [(b"%d request served " % i) + b"x" * rng.randrange(0, 180) for i in range(n)]


def log_append(system: str, mode: str) -> Workload:
    def run(d: str, n: int) -> Result:
        lines = log_lines(n)
        if system == "plainfile-flush":
            with open(os.path.join(d, "log.txt"), "ab") as f, Timer() as t:
                for line in lines:
                    f.write(line + b"\n")
                    f.flush()
            return t.seconds, n
        if system == "sqlite3":
            c = sqlite3.connect(os.path.join(d, "s.db"), isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("CREATE TABLE t (x BLOB)")
            with Timer() as t:
                if mode == "single":
                    for line in lines:
                        c.execute("INSERT INTO t VALUES (?)", (line,))
                else:
                    c.execute("BEGIN")
                    c.executemany("INSERT INTO t VALUES (?)", [(x,) for x in lines])
                    c.execute("COMMIT")
            return t.seconds, n
        cv, col = (_amber_col if system == "ambervault" else _kohaku_col)(d, "bytes")
        with Timer() as t:
            if mode == "single":
                for line in lines:
                    col.append(line)
            elif mode == "cached":
                with cv.cache(cap_bytes=64 << 20, flush_threshold=16 << 20):
                    for line in lines:
                        col.append(line)
            else:
                col.extend(lines)
        assert len(col) == n
        return t.seconds, n

    return run


# -- typed values ----------------------------------------------------------------------------------
# Small Python values (an int, a short str, a 5-field dict in turn) and 1 MiB numpy arrays, each
# system storing them its own way: ambervault and kohakuvault pack them (kohakuvault's auto-pack
# is on by default), diskcache and sqlitedict pickle them; numpy arrays also as .npy files.


def typed_value(i: int) -> Any:
    kind = i % 3
    if kind == 0:
        return i * 7919
    if kind == 1:
        return f"name-{i:08d}"
    return {"id": i, "name": f"user{i}", "score": i * 0.5, "active": i % 2 == 0, "tags": ["a", "b"]}


def typed_key(i: int) -> str:
    return f"key:{i:08d}"


class TypedStore:
    """A dict-like store of Python values: ``store[k] = v``, ``store[k]``, ``close()``."""

    def __init__(self, system: str, d: str) -> None:
        self.system = system
        if system == "ambervault":
            import ambervault

            self.s: Any = ambervault.KVault(os.path.join(d, "a.db"))
        elif system == "kohakuvault":
            import kohakuvault

            self.s = kohakuvault.KVault(os.path.join(d, "k.db"))
        elif system == "diskcache":
            import diskcache

            self.s = diskcache.Cache(os.path.join(d, "dc"), size_limit=1 << 40, eviction_policy="none")
        elif system == "sqlitedict":
            from sqlitedict import SqliteDict as SD

            self.s = SD(os.path.join(d, "sd.db"), autocommit=True)
        else:
            raise ValueError(system)

    def __setitem__(self, k: str, v: Any) -> None:
        self.s[k] = v

    def __getitem__(self, k: str) -> Any:
        return self.s[k]

    def close(self) -> None:
        self.s.close()


TYPED = ["ambervault", "kohakuvault", "diskcache", "sqlitedict"]


def kv_typed_put(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        s = TypedStore(system, d)
        values = [typed_value(i) for i in range(n)]
        with Timer() as t:
            for i, v in enumerate(values):
                s[typed_key(i)] = v
        s.close()
        return t.seconds, n

    return run


def kv_typed_get(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        s = TypedStore(system, d)
        for i in range(n):
            s[typed_key(i)] = typed_value(i)
        if system in ("ambervault", "kohakuvault"):
            _settle(s.s)
        ks = [typed_key(i) for i in random_order(n)]
        with Timer() as t:
            for k in ks:
                s[k]
        assert s[typed_key(2)] == typed_value(2)
        s.close()
        return t.seconds, n

    return run


def _array(i: int) -> Any:
    return np.full(1 << 17, float(i), dtype="f8")  # 1 MiB


class NpyFiles:
    """One .npy file per array in a folder (np.save / np.load): the simplest alternative."""

    def __init__(self, d: str) -> None:
        self.d = os.path.join(d, "npy")
        os.makedirs(self.d)

    def __setitem__(self, k: str, v: Any) -> None:
        np.save(os.path.join(self.d, k + ".npy"), v)

    def __getitem__(self, k: str) -> Any:
        return np.load(os.path.join(self.d, k + ".npy"))

    def close(self) -> None:
        pass


def _array_store(system: str, d: str) -> Any:
    return NpyFiles(d) if system == "npy_files" else TypedStore(system, d)


def np_array_put(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        s = _array_store(system, d)
        arrays = [_array(i) for i in range(n)]
        with Timer() as t:
            for i, a in enumerate(arrays):
                s[f"arr{i:05d}"] = a
        s.close()
        return t.seconds, n

    return run


def np_array_get(system: str) -> Workload:
    def run(d: str, n: int) -> Result:
        s = _array_store(system, d)
        for i in range(n):
            s[f"arr{i:05d}"] = _array(i)
        if system in ("ambervault", "kohakuvault"):
            _settle(s.s)
        order = random_order(n)
        with Timer() as t:
            for i in order:
                got = s[f"arr{i:05d}"]
        assert got.shape == (1 << 17,) and got[0] == float(order[-1])
        s.close()
        return t.seconds, n

    return run


KV = ["ambervault", "kohakuvault", "diskcache", "sqlitedict", "lmdb", "rocksdict", "sqlite3"]
STREAMERS = ["ambervault", "kohakuvault", "diskcache"]
KV_100KB = ["ambervault", "diskcache", "lmdb", "rocksdict", "files"]
CKPT = ["ambervault", "ambervault-external"]
COLS = ["ambervault", "kohakuvault", "h5py", "zarr", "pyarrow", "numpy"]

# name -> (systems, factory, (quick size, full size), unit)
WORKLOADS: Dict[str, Tuple[List[str], Callable[[str], Workload], Tuple[int, int], str]] = {
    "kv_put_single_100B": (KV, kv_put_single, (5_000, 100_000), "puts"),
    "kv_put_batched_100B": (KV, kv_put_batch, (20_000, 100_000), "puts"),
    "kv_put_cached_100B": (
        ["ambervault", "kohakuvault", "ambervault-put_many"],
        kv_put_cached,
        (20_000, 100_000),
        "puts",
    ),
    "kv_get_random_100B": (KV, kv_get_random, (20_000, 100_000), "gets"),
    # Values between a page row's local payload (~1 KB) and the 4 KiB page: the size at which
    # a row that keeps its value inline spills to an overflow page of its own.
    "kv_put_batched_2KB": (KV, lambda s: kv_put_batch(s, 2000), (20_000, 100_000), "puts"),
    "kv_get_random_2KB": (KV, lambda s: kv_get_random(s, 2000), (20_000, 100_000), "gets"),
    # Issue 21 (media and blobs): distinct 100 KB values, against one plain file per key. The rest
    # of that workloads are in media_workloads.py.
    "kv_put_single_100KB": (KV_100KB, lambda s: kv_put_single(s, 100_000), (1_000, 10_000), "puts"),
    "kv_put_batched_100KB": (KV_100KB, lambda s: kv_put_batch(s, 100_000), (1_000, 10_000), "puts"),
    "kv_get_random_100KB": (KV_100KB, lambda s: kv_get_random(s, 100_000), (1_000, 10_000), "gets"),
    "kv_get_many_100KB": (KV_100KB, lambda s: kv_get_many(s, 100_000, 100), (1_000, 10_000), "gets"),
    "kv_put_1MiB": (KV, kv_1mib_put, (50, 1000), "puts"),
    "kv_get_1MiB": (KV, kv_1mib_get, (50, 1000), "gets"),
    "kv_get_16MiB": ([*KV_100KB, "kohakuvault"], lambda s: kv_large_get(s, 16 << 20), (8, 64), "gets"),
    "kv_stream_in": (STREAMERS, kv_stream_in, (128, 1024), "bytes"),
    "kv_stream_out": (STREAMERS, kv_stream_out, (128, 1024), "bytes"),
    "kv_parallel_read_100KB": (
        ["ambervault", "lmdb", "diskcache"],
        kv_parallel_read,
        (4_000, 40_000),
        "gets",
    ),
    "kv_iterate_keys": (KV, kv_iterate, (20_000, 100_000), "keys"),
    "kv_mix_90r_10w": (KV, kv_mix, (20_000, 100_000), "ops"),
    "kv_typed_put": (TYPED, kv_typed_put, (10_000, 100_000), "puts"),
    # What checkpoints="external" (for Litestream) costs the writer, measured without a replicator.
    "ckpt_external_put_single_100B": (CKPT, kv_put_single, (5_000, 100_000), "puts"),
    "ckpt_external_put_batched_100B": (CKPT, kv_put_batch, (20_000, 100_000), "puts"),
    "ckpt_external_put_1MiB": (CKPT, kv_1mib_put, (50, 1000), "puts"),
    "ckpt_external_stream_in": (CKPT, kv_stream_in, (128, 1024), "bytes"),
    "kv_typed_get_random": (TYPED, kv_typed_get, (10_000, 100_000), "gets"),
    "np_array_put_1MiB": (["ambervault", "kohakuvault", "npy_files"], np_array_put, (50, 1000), "puts"),
    "np_array_get_1MiB": (["ambervault", "kohakuvault", "npy_files"], np_array_get, (50, 1000), "gets"),
    "col_append_f64_durable": (
        ["ambervault", "kohakuvault", "sqlite3", "plainfile-flush"],
        lambda s: col_append(s, False),
        (5_000, 1_000_000),
        "appends",
    ),
    "col_append_f64_cached": (
        ["ambervault", "kohakuvault", "sqlite3"],
        lambda s: col_append(s, True),
        (100_000, 1_000_000),
        "appends",
    ),
    "col_extend_f64_list": (COLS, lambda s: col_extend(s, "list"), (1_000_000, 10_000_000), "elements"),
    "col_extend_f64_numpy": (COLS, lambda s: col_extend(s, "numpy"), (1_000_000, 10_000_000), "elements"),
    "col_point_reads": (COLS, col_point_reads, (1_000_000, 10_000_000), "reads"),
    "col_scan_to_numpy": (COLS, col_scan, (1_000_000, 10_000_000), "elements"),
    "col_windows_1000": (COLS, col_windows, (1_000_000, 10_000_000), "windows"),
    "log_append_durable": (
        ["ambervault", "kohakuvault", "sqlite3", "plainfile-flush"],
        lambda s: log_append(s, "single"),
        (5_000, 1_000_000),
        "lines",
    ),
    "log_append_cached": (
        ["ambervault", "kohakuvault"],
        lambda s: log_append(s, "cached"),
        (50_000, 1_000_000),
        "lines",
    ),
    "log_extend": (
        ["ambervault", "kohakuvault", "sqlite3"],
        lambda s: log_append(s, "extend"),
        (50_000, 1_000_000),
        "lines",
    ),
}

# Flat cost as data grows: the same operations on columns of 1M, 10M and 100M elements (quick
# runs only the 1M ones). Sizes here are operation counts; the column length is in the name.
for _label, _length in (("1M", 1_000_000), ("10M", 10_000_000), ("100M", 100_000_000)):
    for _what, _count in (("reads", 10_000), ("appends", 5_000)):
        WORKLOADS[f"scale_{_what}_at_{_label}"] = (
            ["ambervault", "kohakuvault"],
            (lambda length, what: lambda s: col_scale(s, length, what))(_length, _what),
            (None if _length > 1_000_000 else _count // 4, _count),
            "reads" if _what == "reads" else "appends",
        )

WORKLOADS.update(VEC_WORKLOADS)
WORKLOADS.update(CACHE_WORKLOADS)
WORKLOADS.update(HISTORY_WORKLOADS)
WORKLOADS.update(BRANCH_WORKLOADS)
WORKLOADS.update(TEXT_WORKLOADS)
WORKLOADS.update(COMPRESSION_WORKLOADS)
WORKLOADS.update(MEDIA_WORKLOADS)

# How each workload's size reads in the report ("{n}" is the size), where "n <unit>" misleads.
SIZE_LABELS = {
    "kv_stream_in": "a {n:,} MiB stream",
    "ckpt_external_stream_in": "a {n:,} MiB stream",
    "kv_stream_out": "a {n:,} MiB stream",
    "col_point_reads": "random reads on a {n:,}-element column",
    "col_windows_1000": "1,000-element windows of a {n:,}-element column",
    "kv_typed_put": "{n:,} puts of an int, a str or a 5-field dict, one by one",
    "kv_typed_get_random": "{n:,} random gets of an int, a str or a 5-field dict",
    "np_array_put_1MiB": "{n:,} numpy arrays of 1 MiB",
    "np_array_get_1MiB": "{n:,} numpy arrays of 1 MiB, random order",
    "kv_put_cached_100B": "{n:,} puts of 100 B values through enable_cache() and flush_cache()",
    "kv_parallel_read_100KB": "{n:,} random gets of 100 KB values by 4 worker processes, aggregate",
    "kv_get_16MiB": "{n:,} random gets of distinct 16 MiB values",
    "kv_put_single_100KB": "{n:,} distinct 100 KB values put one by one, each its own commit",
    "kv_put_batched_100KB": "{n:,} distinct 100 KB values put in one batch",
    "kv_get_random_100KB": "{n:,} random gets of distinct 100 KB values",
    "kv_get_many_100KB": "{n:,} distinct 100 KB values read in random order, 100 keys per batched read",
    **VEC_SIZE_LABELS,
    **CACHE_SIZE_LABELS,
    **HISTORY_SIZE_LABELS,
    **BRANCH_SIZE_LABELS,
    **TEXT_SIZE_LABELS,
    **COMPRESSION_SIZE_LABELS,
    **MEDIA_SIZE_LABELS,
}

NOTES = {
    **{k: v.note for k, v in KV_SYSTEMS.items()},
    "ambervault-put_many": "KVault.put_many, one call (the reference row of kv_put_cached_100B)",
    "npy_files": "one .npy file per array (np.save / np.load)",
    "h5py": "h5py dataset, chunked; reads by index/slice",
    "zarr": "zarr array on disk, 64 Ki-element chunks",
    "pyarrow": "Arrow IPC (feather) file, memory-mapped reads",
    "numpy": "numpy in memory (the limit, not a store)",
    "plainfile-flush": "durable appends' floor: each f64 (struct '<d') or line + newline written to a "
    "file opened 'ab', `flush()` after each (the OS has it; no fsync, like the others' WAL commits)",
    **VEC_NOTES,
    **CACHE_NOTES,
    **HISTORY_NOTES,
    **BRANCH_NOTES,
    **TEXT_NOTES,
    **COMPRESSION_NOTES,
    **MEDIA_NOTES,
}

# Extra columns per workload in the report: (extras key, header, format).
EXTRA_COLUMNS = {
    **VEC_EXTRA_COLUMNS,
    **CACHE_EXTRA_COLUMNS,
    **HISTORY_EXTRA_COLUMNS,
    **BRANCH_EXTRA_COLUMNS,
    **COMPRESSION_EXTRA_COLUMNS,
    **MEDIA_EXTRA_COLUMNS,
}

# Untimed preparation run once by the runner before a workload's workers (e.g. data generation).
PREPARE: Dict[str, Callable[[str, int], None]] = {w: vec_prepare for w in VEC_WORKLOADS}
PREPARE.update({w: compression_prepare for w in COMPRESSION_WORKLOADS})
