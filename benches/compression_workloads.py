"""Compression workloads (issue 22): what zstd and lz4 save on disk and cost in time.

``col_timeseries_f64_<append|scan>``: ``n`` f64 readings of a temperature sensor every 10 s
(a slow random-walk drift, a monthly and a daily sine, gaussian noise of 0.05 degrees, rounded to
0.01 as a real sensor reports them). ``col_log_lines_<append|scan>``: ``n`` log lines of 60-120
bytes (ISO timestamp, level, component, a message with request ids, users, durations). Every
run does both phases on fresh data: the timed append (open, extend by batches of 10,000, close,
so buffered writes reach the file), then, reopened (untimed), the timed full scan (the whole
column read back as one array: ``to_numpy()``, ``ds[:]``, ``z[:]``);
the workload's name says which phase is the row's rate, the extra columns give both and the
size of the files after everything is closed. Target: the compressed file no larger than zarr's,
the compressed scan at least 0.8x the uncompressed one (ratio at most 1.25).

Systems: ``ambervault`` (no compression, the baseline), ``ambervault-zstd`` and
``ambervault-lz4`` (``create_column(..., compression=)``), ``ambervault-pco`` (f64 only: pco
compresses numbers), ``h5py-gzip`` and ``h5py-lzf``
(a chunked, resizable dataset grown by ``resize`` and a slice write per batch), ``zarr-default`` (its
default compressor, grown by ``append`` per batch).

``kv_incompressible_put_file``: a stream of ``n`` MiB of random bytes through ``put_file``;
``kv_incompressible_put_many``: ``n`` random 100 KB values by ``put_many`` batches of 100. What
the compression trial costs data that does not compress (each chunk is compressed once, found not
to shrink, and stored as it is). ``kv_log_files``: ``n`` text log files of 1 MiB put one by one,
then (extra column) read back. Systems: ``ambervault``, ``ambervault-zstd``, ``ambervault-lz4``.

Every workload function returns ``(seconds, operations, extras)``.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

Result = Tuple[float, int, Dict[str, Any]]
BATCH = 10_000
AMBER = {"ambervault": None, "ambervault-zstd": "zstd", "ambervault-lz4": "lz4"}
# Codecs for numbers only (the f64 series).
AMBER_NUMERIC = {"ambervault-pco": "pco"}
PEERS = ["h5py-gzip", "h5py-lzf", "zarr-default"]
F64_CHUNK = 1 << 16  # elements per h5py/zarr chunk of the f64 series (512 KiB)
LOG_CHUNK = 1 << 13  # lines per h5py/zarr chunk of the log (about 0.7 MiB)
LOG_WIDTH = 120  # h5py's fixed-width byte strings


# -- data ---------------------------------------------------------------------------------------


def sensor_signal(n: int, seed: int = 3) -> Any:
    """Temperatures read every 10 s: drift + monthly and daily cycles + noise, to 0.01 degree."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype="f8") * 10.0
    drift = np.cumsum(rng.normal(0.0, 0.002, n))
    monthly = 3.0 * np.sin(2 * np.pi * t / (30 * 86400))
    daily = 4.0 * np.sin(2 * np.pi * (t / 86400 - 0.3))
    noise = rng.normal(0.0, 0.05, n)
    return np.round(18.0 + drift + monthly + daily + noise, 2)


LEVELS = ["INFO"] * 80 + ["DEBUG"] * 10 + ["WARN"] * 7 + ["ERROR"] * 3
COMPONENTS = ["api.gateway", "auth", "db.pool", "cache", "scheduler", "billing", "search", "upload", "mailer"]
PATHS = ["/v1/orders", "/v1/users/me", "/v1/search", "/v2/upload", "/health", "/v1/invoices"]


def _log_cache(n: int) -> str:
    return os.path.join(tempfile.gettempdir(), "ambench-compression", f"log_lines_v1_{n}.txt")


def prepare(workload: str, n: int) -> None:
    """Untimed, once per benchmark run: writes the log lines to a cache file the workers read
    (generating 1M lines in Python takes longer than most systems' whole run)."""
    if workload.startswith("col_log_lines"):
        path = _log_cache(n)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "w") as f:
                f.write("\n".join(_make_log_lines(n)))
            os.replace(path + ".tmp", path)


def log_lines(n: int) -> List[str]:
    """``n`` log lines (from the cache file ``prepare`` wrote, if any)."""
    path = _log_cache(n)
    if os.path.exists(path):
        with open(path) as f:
            lines = f.read().split("\n")
        if len(lines) == n:
            return lines
    return _make_log_lines(n)


def _make_log_lines(n: int, seed: int = 11) -> List[str]:
    """Realistic service log lines of 60 to 120 bytes, ordered by time."""
    import random

    rng = random.Random(seed)
    out = []
    ms = 0
    for _ in range(n):
        ms += rng.randrange(1, 90)
        s, frac = divmod(ms, 1000)
        m, s = divmod(s, 60)
        h, m = divmod(m, 60)
        d, h = divmod(h, 24)
        ts = f"2026-11-{1 + d % 28:02d}T{h:02d}:{m:02d}:{s:02d}.{frac:03d}Z"
        level = rng.choice(LEVELS)
        comp = rng.choice(COMPONENTS)
        kind = rng.randrange(5)
        rid = f"{rng.getrandbits(48):012x}"
        if kind == 0:
            msg = f"GET {rng.choice(PATHS)} 200 {rng.randrange(1, 900)}ms req={rid} user={rng.randrange(100000)}"
        elif kind == 1:
            msg = f"query took {rng.randrange(1, 5000)}ms rows={rng.randrange(0, 10000)} req={rid}"
        elif kind == 2:
            msg = f"cache miss key=sess:{rng.randrange(10**7)} ttl={rng.choice((60, 300, 3600))}s"
        elif kind == 3:
            msg = (
                f"job {rng.randrange(10**6)} done in {rng.random() * 30:.2f}s attempts={rng.randrange(1, 4)}"
            )
        else:
            msg = f"connection from 10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)} closed req={rid}"
        line = f"{ts} {level:<5} [{comp}] {msg}"
        if len(line) < 60:
            line += " " + "ok" * ((61 - len(line)) // 2 + 1)
        out.append(line[:LOG_WIDTH])
    return out


# -- helpers ------------------------------------------------------------------------------------


def _store_bytes(path: str) -> Tuple[int, int]:
    """Bytes of a store (file or directory) and of any -wal/-shm files left beside it."""
    if os.path.isdir(path):
        total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
    else:
        total = os.path.getsize(path)
    left = sum(os.path.getsize(path + s) for s in ("-wal", "-shm") if os.path.exists(path + s))
    return total + left, left


class _Phase:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> _Phase:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def _amber_column(system: str, path: str, dtype: str, data: Any, batch_of: Callable[[int, int], Any]):
    import ambervault

    n = len(data)
    with _Phase() as app:
        cv = ambervault.ColumnVault(path)
        col = cv.create_column("x", dtype, compression={**AMBER, **AMBER_NUMERIC}[system])
        for i in range(0, n, BATCH):
            col.extend(batch_of(i, min(n, i + BATCH)))
        cv.close()
    cv = ambervault.ColumnVault(path)
    col = cv["x"]
    with _Phase() as scan:
        out = col.to_numpy()
    cv.close()
    return app.seconds, scan.seconds, out


def _h5py_column(system: str, path: str, dtype: Any, chunk: int, data: Any, batch_of):
    import h5py

    n = len(data)
    codec = system.split("-")[1]
    with _Phase() as app:
        with h5py.File(path, "w") as f:
            ds = f.create_dataset(
                "x", shape=(0,), maxshape=(None,), dtype=dtype, chunks=(chunk,), compression=codec
            )
            for i in range(0, n, BATCH):
                j = min(n, i + BATCH)
                ds.resize((j,))
                ds[i:j] = batch_of(i, j)
    with h5py.File(path, "r") as f:
        ds = f["x"]
        with _Phase() as scan:
            out = ds[:]
    return app.seconds, scan.seconds, out


def _zarr_column(path: str, dtype: Any, chunk: int, data: Any, batch_of):
    import zarr

    n = len(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr 3 warns that its string dtype's spec is unstable
        with _Phase() as app:
            z = zarr.open_array(path, mode="w", shape=(0,), chunks=(chunk,), dtype=dtype)
            for i in range(0, n, BATCH):
                z.append(batch_of(i, min(n, i + BATCH)))
        z = zarr.open_array(path, mode="r")
        with _Phase() as scan:
            out = z[:]
    return app.seconds, scan.seconds, out


def _result(primary: str, app_s: float, scan_s: float, n: int, path: str, raw: int) -> Result:
    size, left = _store_bytes(path)
    extras = {
        "append_rate": n / app_s,
        "scan_rate": n / scan_s,
        "file_bytes": size,
        "wal_left": left,
        "shrink": raw / size,
    }
    return (app_s if primary == "append" else scan_s), n, extras


def col_timeseries(system: str, primary: str) -> Callable[[str, int], Result]:
    def run(d: str, n: int) -> Result:
        data = sensor_signal(n)

        def batch_of(i: int, j: int) -> Any:
            return data[i:j]

        if system in AMBER or system in AMBER_NUMERIC:
            path = os.path.join(d, "c.db")
            app_s, scan_s, out = _amber_column(system, path, "f64", data, batch_of)
        elif system == "zarr-default":
            path = os.path.join(d, "z.zarr")
            app_s, scan_s, out = _zarr_column(path, "f8", F64_CHUNK, data, batch_of)
        else:
            path = os.path.join(d, "h.h5")
            app_s, scan_s, out = _h5py_column(system, path, "f8", F64_CHUNK, data, batch_of)
        assert np.array_equal(out, data)
        return _result(primary, app_s, scan_s, n, path, data.nbytes)

    return run


def col_log_lines(system: str, primary: str) -> Callable[[str, int], Result]:
    def run(d: str, n: int) -> Result:
        lines = log_lines(n)
        raw = sum(len(x) for x in lines)  # ASCII: bytes == characters
        if system in AMBER:
            path = os.path.join(d, "c.db")
            app_s, scan_s, out = _amber_column(system, path, "str", lines, lambda i, j: lines[i:j])
            assert out[-1] == lines[-1] and len(out) == n
        elif system == "zarr-default":
            path = os.path.join(d, "z.zarr")
            app_s, scan_s, out = _zarr_column(
                path, str, LOG_CHUNK, lines, lambda i, j: np.array(lines[i:j], dtype=object)
            )
            assert out[-1] == lines[-1] and len(out) == n
        else:
            # Fixed-width byte strings: HDF5 filters do not reach variable-length strings (they
            # live in the global heap), so this is the compressed form h5py has. Reads give
            # bytes, not decoded str.
            encoded = np.array(lines, dtype=f"S{LOG_WIDTH}")
            path = os.path.join(d, "h.h5")
            app_s, scan_s, out = _h5py_column(
                system, path, f"S{LOG_WIDTH}", LOG_CHUNK, encoded, lambda i, j: encoded[i:j]
            )
            assert out[-1] == lines[-1].encode() and len(out) == n
        return _result(primary, app_s, scan_s, n, path, raw)

    return run


# -- key-value values ---------------------------------------------------------------------------


def _kv(system: str, d: str) -> Any:
    from ambervault import KVault

    return KVault(os.path.join(d, "a.db"), compression=AMBER[system])


def _kv_result(seconds: float, ops: int, d: str, raw: int, extras: Optional[Dict[str, Any]] = None) -> Result:
    size, left = _store_bytes(os.path.join(d, "a.db"))
    return seconds, ops, {"file_bytes": size, "wal_left": left, "shrink": raw / size, **(extras or {})}


def kv_incompressible_put_file(system: str) -> Callable[[str, int], Result]:
    def run(d: str, n: int) -> Result:
        data = np.random.default_rng(5).bytes(n << 20)
        v = _kv(system, d)
        with _Phase() as t:
            v.put_file(b"movie.mp4", io.BytesIO(data))
        v.close()
        return _kv_result(t.seconds, n << 20, d, len(data))

    return run


def kv_incompressible_put_many(system: str) -> Callable[[str, int], Result]:
    def run(d: str, n: int) -> Result:
        rng = np.random.default_rng(6)
        items = [(b"img:%06d.jpg" % i, rng.bytes(100_000)) for i in range(n)]
        v = _kv(system, d)
        with _Phase() as t:
            for i in range(0, n, 100):
                v.put_many(items[i : i + 100])
        v.close()
        return _kv_result(t.seconds, n, d, n * 100_000)

    return run


def kv_log_files(system: str) -> Callable[[str, int], Result]:
    def run(d: str, n: int) -> Result:
        text = "\n".join(_make_log_lines(40_000)).encode()
        assert len(text) > 1 << 20
        # Distinct files: each a different 1 MiB window of the log.
        step = (len(text) - (1 << 20)) // max(1, n)
        files = [text[i * step : i * step + (1 << 20)] for i in range(n)]
        v = _kv(system, d)
        with _Phase() as put:
            for i, f in enumerate(files):
                v.put(b"log:%04d" % i, f)
        v.close()
        v = _kv(system, d)
        with _Phase() as get:
            for i in range(n):
                got = v.get(b"log:%04d" % i)
        assert got == files[-1]
        v.close()
        return _kv_result(put.seconds, n, d, n << 20, {"get_rate": n / get.seconds})

    return run


COL_SYSTEMS = [*AMBER, *PEERS]
COMPRESSION_WORKLOADS: Dict[str, Tuple[List[str], Callable[[str], Any], Tuple[int, int], str]] = {}
for _phase in ("append", "scan"):
    COMPRESSION_WORKLOADS[f"col_timeseries_f64_{_phase}"] = (
        [*AMBER, *AMBER_NUMERIC, *PEERS],
        (lambda p: lambda s: col_timeseries(s, p))(_phase),
        (100_000, 1_000_000),
        "elements",
    )
    COMPRESSION_WORKLOADS[f"col_log_lines_{_phase}"] = (
        COL_SYSTEMS,
        (lambda p: lambda s: col_log_lines(s, p))(_phase),
        (100_000, 1_000_000),
        "lines",
    )
COMPRESSION_WORKLOADS.update(
    {
        "kv_incompressible_put_file": (list(AMBER), kv_incompressible_put_file, (64, 256), "bytes"),
        "kv_incompressible_put_many": (list(AMBER), kv_incompressible_put_many, (200, 1000), "puts"),
        "kv_log_files": (list(AMBER), kv_log_files, (20, 100), "puts"),
    }
)

COMPRESSION_SIZE_LABELS = {
    "col_timeseries_f64_append": "{n:,} f64 sensor readings, extend by 10,000, then close",
    "col_timeseries_f64_scan": "{n:,} f64 sensor readings read back as one array",
    "col_log_lines_append": "{n:,} log lines of 60-120 B, extend by 10,000, then close",
    "col_log_lines_scan": "{n:,} log lines of 60-120 B read back as one array",
    "kv_incompressible_put_file": "a {n:,} MiB stream of random bytes, put_file",
    "kv_incompressible_put_many": "{n:,} random 100 KB values, put_many by 100",
    "kv_log_files": "{n:,} text log files of 1 MiB, put one by one",
}
COMPRESSION_NOTES = {
    "ambervault-zstd": "ambervault with compression='zstd' (level 3, 64 KiB chunks; f64 compressed as they are "
    "and byte-shuffled, the smaller kept; the end offsets of lines as shuffled differences)",
    "ambervault-pco": "ambervault with compression='pco' (Pcodec level 8, 64 KiB chunks; numbers only)",
    "ambervault-lz4": "ambervault with compression='lz4'",
    "h5py-gzip": "h5py chunked resizable dataset, compression='gzip' (level 4, no shuffle); "
    "64 Ki f64 or 8 Ki 'S120' lines per chunk",
    "h5py-lzf": "h5py the same with compression='lzf'",
    "zarr-default": "zarr array grown by append, its default compressor (zarr 3: ZstdCodec level 0, i.e. zstd's "
    "default 3, no shuffle); 64 Ki f64 or 8 Ki lines per chunk, lines as VariableLengthUTF8",
}
_COL_EXTRAS = [
    ("append_rate", "append rate", "rate"),
    ("scan_rate", "scan rate", "rate"),
    ("file_bytes", "file after close", "bytes"),
    ("shrink", "raw/file", "f3"),
    ("wal_left", "WAL left", "bytes"),
]
_KV_EXTRAS = [
    ("file_bytes", "file after close", "bytes"),
    ("shrink", "raw/file", "f3"),
    ("wal_left", "WAL left", "bytes"),
]
COMPRESSION_EXTRA_COLUMNS: Dict[str, List[Tuple[str, str, str]]] = {
    **{name: _COL_EXTRAS for name in COMPRESSION_WORKLOADS if name.startswith("col_")},
    "kv_incompressible_put_file": _KV_EXTRAS,
    "kv_incompressible_put_many": _KV_EXTRAS,
    "kv_log_files": [("get_rate", "get rate", "rate"), *_KV_EXTRAS],
}
