"""Cache workloads (issue 18): a byte-limited cache under a Zipf key distribution for each
eviction policy, memoized calls, and what deduplicating every value costs small puts.

``cache_zipf_<policy>``: ``n`` timed operations on ``n // 5`` candidate keys drawn with a Zipf
law (exponent ``ZIPF_S``, seeded), after an untimed warm-up of ``n // 5`` operations from the
same stream (so the cache starts full and the hit ratio is a steady-state one). Each key has a
fixed value size, log-uniform between 1 KB and 100 KB (seeded; mean about 21.5 KB), and every
stored value is distinct (a per-write header on a slice of a seeded random buffer), so no store
can deduplicate them. Operations, cache-aside:

- 80% reads: ``get(key)``; a hit when the key is found; a miss is followed by ``put(key,
  value)`` (the caller computed it), counted in the same operation;
- 20% writes: ``put(key, value)`` (the value was refreshed).

The byte limit is 25% of the bytes of every key the stream draws (warm-up and timed). The
workload counts hits itself (``hit_ratio`` = gets that found their key / gets, timed part
only) and reports the bytes stored at the end as each system counts them against its limit.

``cache_memoize``: ``n`` calls of a cheap function (``x * x + 1``) over a Zipf stream of
``n // 20`` candidate integer arguments.

``kv_put_small_dedup_*``: 100-byte puts, one by one (each its own durable transaction) and in
``put_many`` batches of 10,000, as ``kv_put_single_100B`` / ``kv_put_batched_100B``, for
``dedup="large"`` (the default, the ``ambervault`` row), ``"all"`` and ``"none"``; with a
distinct value per key (``_distinct``: every put adds a content) and with one value for every
key (``_same``, as the kv_put workloads: every put adds a reference to one content).

Every workload function returns ``(seconds, operations, extras)``.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

SEED = 18
ZIPF_S = 1.0
MIN_VALUE = 1_000
MAX_VALUE = 100_000
GET_SHARE = 0.8
LIMIT_SHARE = 0.25
KEYS_PER_OP = 5  # cache_zipf: n ops over n // 5 candidate keys
ARGS_PER_CALL = 20  # cache_memoize: n calls over n // 20 candidate arguments
POLICIES = ("least-recently-stored", "least-recently-used", "least-frequently-used")

Extras = Dict[str, Any]
CacheResult = Tuple[float, int, Extras]


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def zipf_stream(candidates: int, count: int, seed: int) -> np.ndarray:
    """``count`` draws from ``range(candidates)`` with P(rank r) proportional to 1 / r**ZIPF_S;
    ranks are shuffled onto ids so a key's popularity says nothing about its id or size."""
    rng = np.random.default_rng([SEED, seed, candidates])
    weights = 1.0 / np.arange(1, candidates + 1) ** ZIPF_S
    ranks = rng.choice(candidates, size=count, p=weights / weights.sum())
    return rng.permutation(candidates)[ranks]


# -- cache_zipf ----------------------------------------------------------------------------------


class Values:
    """Value of key ``i`` written by operation ``j``: ``sizes[i]`` bytes, distinct for every
    (i, j), built on demand (the working set does not fit in memory at full size)."""

    def __init__(self, candidates: int) -> None:
        rng = np.random.default_rng([SEED, 1, candidates])
        logs = rng.uniform(np.log(MIN_VALUE), np.log(MAX_VALUE), size=candidates)
        self.sizes = np.exp(logs).astype(np.int64).tolist()
        self.base = random.Random(SEED).randbytes(2 * MAX_VALUE)

    def __call__(self, i: int, j: int) -> bytes:
        off = (i * 7919) % MAX_VALUE
        return i.to_bytes(4, "little") + j.to_bytes(4, "little") + self.base[off : off + self.sizes[i] - 8]


class AmberCache:
    def __init__(self, d: str, limit: int, policy: str) -> None:
        from ambervault import KVault

        self.c = KVault(os.path.join(d, "a.db"), max_bytes=limit, eviction=policy)
        self.get = self.c.get
        self.put = self.c.put

    def stored(self) -> Extras:
        stats = self.c.stats()
        return {"stored": stats["stored_bytes"], "evictions": stats["evictions"]}

    def close(self) -> None:
        self.c.close()


class DiskCacheCache:
    def __init__(self, d: str, limit: int, policy: str) -> None:
        import diskcache

        self.c = diskcache.Cache(os.path.join(d, "dc"), size_limit=limit, eviction_policy=policy)
        self.get = self.c.get
        self.put = self.c.set

    def stored(self) -> Extras:
        # What diskcache compares with its size_limit: the database's pages plus value files.
        return {"stored": self.c.volume()}

    def close(self) -> None:
        self.c.close()


class CachetoolsCache:
    KINDS = {
        "least-recently-stored": "FIFOCache",  # a re-stored key moves to the back
        "least-recently-used": "LRUCache",
        "least-frequently-used": "LFUCache",
    }

    def __init__(self, d: str, limit: int, policy: str) -> None:
        import cachetools

        self.c = getattr(cachetools, self.KINDS[policy])(maxsize=limit, getsizeof=len)
        self.get = self.c.get
        self.put = self.c.__setitem__

    def stored(self) -> Extras:
        return {"stored": self.c.currsize}

    def close(self) -> None:
        pass


CACHES = {"ambervault": AmberCache, "diskcache": DiskCacheCache, "cachetools": CachetoolsCache}


def cache_zipf(system: str, policy: str) -> Callable[[str, int], CacheResult]:
    def run(d: str, n: int) -> CacheResult:
        candidates = n // KEYS_PER_OP
        warm = candidates
        stream = zipf_stream(candidates, warm + n, 0)
        values = Values(candidates)
        limit = int(sum(values.sizes[i] for i in np.unique(stream)) * LIMIT_SHARE)
        rng = np.random.default_rng([SEED, 2, candidates])
        is_get = (rng.random(warm + n) < GET_SHARE).tolist()
        ids = stream.tolist()
        names = [b"cache:%08d" % i for i in range(candidates)]
        c = CACHES[system](d, limit, policy)
        get, put = c.get, c.put

        def play(start: int, stop: int) -> int:
            hits = 0
            for j in range(start, stop):
                i = ids[j]
                key = names[i]
                if is_get[j]:
                    if get(key) is not None:
                        hits += 1
                    else:
                        put(key, values(i, j))
                else:
                    put(key, values(i, j))
            return hits

        play(0, warm)
        with Timer() as t:
            hits = play(warm, warm + n)
        gets = sum(is_get[warm:])
        extras = {"hit_ratio": hits / gets, "limit": limit, **c.stored()}
        extras["fill"] = extras["stored"] / limit
        c.close()
        return t.seconds, n, extras

    return run


# -- cache_memoize -------------------------------------------------------------------------------


def cache_memoize(system: str) -> Callable[[str, int], CacheResult]:
    def run(d: str, n: int) -> CacheResult:
        args = zipf_stream(n // ARGS_PER_CALL, n, 3).tolist()
        computed = 0

        def square(x: int) -> int:
            nonlocal computed
            computed += 1
            return x * x + 1

        if system == "ambervault":
            from ambervault import KVault

            store: Any = KVault(os.path.join(d, "a.db"))
            f = store.memoize()(square)
        elif system == "diskcache":
            import diskcache

            store = diskcache.Cache(os.path.join(d, "dc"))
            f = store.memoize()(square)
        else:
            import functools

            store = None
            f = functools.lru_cache(maxsize=None)(square)
        with Timer() as t:
            for x in args:
                f(x)
        assert f(args[0]) == args[0] * args[0] + 1
        if store is not None:
            store.close()
        return t.seconds, n, {"computed": computed, "distinct": len(set(args))}

    return run


# -- kv_put_small_dedup --------------------------------------------------------------------------

DEDUP_SYSTEMS = {"ambervault": "large", "ambervault-dedup-all": "all", "ambervault-dedup-none": "none"}


def kv_put_small_dedup(system: str, batched: bool, distinct: bool) -> Callable[[str, int], CacheResult]:
    def run(d: str, n: int) -> CacheResult:
        from ambervault import KVault

        v = KVault(os.path.join(d, "a.db"), dedup=DEDUP_SYSTEMS[system])
        body = b"v" * 92
        items = [
            (b"key:%08d" % i, body + (i.to_bytes(8, "little") if distinct else b"v" * 8)) for i in range(n)
        ]
        with Timer() as t:
            if batched:
                for i in range(0, n, 10_000):
                    v.put_many(items[i : i + 10_000])
            else:
                put = v.put
                for k, value in items:
                    put(k, value)
        stats = v.stats()
        v.close()
        return t.seconds, n, {"stored": stats["stored_bytes"], "unique": stats["unique_values"]}

    return run


def _zipf_factory(policy: str) -> Callable[[str], Callable[[str, int], CacheResult]]:
    return lambda system: cache_zipf(system, policy)


ZIPF_SYSTEMS = list(CACHES)
CACHE_WORKLOADS: Dict[str, Tuple[List[str], Callable[[str], Any], Tuple[int, int], str]] = {
    **{f"cache_zipf_{p}": (ZIPF_SYSTEMS, _zipf_factory(p), (20_000, 100_000), "ops") for p in POLICIES},
    "cache_memoize": (
        ["ambervault", "diskcache", "functools"],
        cache_memoize,
        (50_000, 100_000),
        "calls",
    ),
}
for _mode in ("single", "batched"):
    for _values in ("distinct", "same"):
        CACHE_WORKLOADS[f"kv_put_small_dedup_{_mode}_{_values}"] = (
            list(DEDUP_SYSTEMS),
            (lambda b, dv: lambda s: kv_put_small_dedup(s, b, dv))(_mode == "batched", _values == "distinct"),
            (5_000, 100_000) if _mode == "single" else (20_000, 100_000),
            "puts",
        )

_ZIPF_LABEL = (
    f"{{n:,}} ops over n/{KEYS_PER_OP} Zipf(s={ZIPF_S}) keys, {GET_SHARE:.0%} get (miss: put), "
    f"{1 - GET_SHARE:.0%} put, 1-100 KB values, limit {LIMIT_SHARE:.0%} of the working set"
)
CACHE_SIZE_LABELS = {
    **{f"cache_zipf_{p}": _ZIPF_LABEL for p in POLICIES},
    "cache_memoize": f"{{n:,}} calls over n/{ARGS_PER_CALL} Zipf(s={ZIPF_S}) integer arguments",
    "kv_put_small_dedup_single_distinct": "{n:,} durable puts of distinct 100 B values, one by one",
    "kv_put_small_dedup_single_same": "{n:,} durable puts of one 100 B value, one by one",
    "kv_put_small_dedup_batched_distinct": "{n:,} puts of distinct 100 B values, put_many by 10,000",
    "kv_put_small_dedup_batched_same": "{n:,} puts of one 100 B value, put_many by 10,000",
}
# Extra columns per workload: (extras key, header, format), as in vector_workloads.
_ZIPF_COLUMNS = [
    ("hit_ratio", "hit ratio", "f3"),
    ("stored", "stored at end", "bytes"),
    ("limit", "limit", "bytes"),
    ("fill", "stored / limit", "f3"),
    ("evictions", "evictions", "int"),
]
CACHE_EXTRA_COLUMNS: Dict[str, List[Tuple[str, str, str]]] = {
    **{f"cache_zipf_{p}": _ZIPF_COLUMNS for p in POLICIES},
    "cache_memoize": [("computed", "calls computed", "int"), ("distinct", "distinct args", "int")],
    **{
        w: [("unique", "unique values", "int"), ("stored", "stored bytes", "bytes")]
        for w in CACHE_WORKLOADS
        if w.startswith("kv_put_small_dedup")
    },
}
CACHE_NOTES = {
    "ambervault (cache)": "KVault(max_bytes=limit, eviction=policy); `get` / `put`; memoize: "
    "`@vault.memoize()`; stored = `stats()['stored_bytes']` (value bytes after dedup)",
    "diskcache (cache)": "diskcache.Cache(size_limit=limit, eviction_policy=policy), defaults "
    "otherwise (values of 32 KB and more in files, culls at most 10 keys per set); `get` / `set`; "
    "memoize: `@cache.memoize()`; stored = `volume()` (database pages + value files: what it "
    "compares with size_limit)",
    "cachetools": "cachetools in memory, the limit: FIFOCache / LRUCache / LFUCache for "
    "least-recently-stored / -used / least-frequently-used, maxsize=limit, getsizeof=len",
    "functools": "functools.lru_cache(maxsize=None) in memory, the limit for memoize",
    "ambervault-dedup-all / -none": "KVault(dedup='all' / 'none'); the `ambervault` row of the "
    "kv_put_small_dedup workloads is dedup='large' (the default)",
}
