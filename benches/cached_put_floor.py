"""What a write-back cache behind ``vault[k] = v`` can reach against ``put_many``.

``kv_put_cached_100B`` holds ambervault's cached path (``enable_cache()``, 100,000
``vault[k] = v``, ``flush_cache()``) to 0.9x of one ``put_many`` of the same pairs. This script
splits the cached path into its calls and its flush and sets them beside what any Python-level
``__setitem__`` costs on the same pairs: a loop alone, a ``__setitem__`` doing nothing, storing
the pairs in a ``dict``, and a ``__setitem__`` handing them to ``dict.__setitem__``. Best of 5,
vaults on tmpfs when ``/dev/shm`` exists (no disk in the figures).

Run: .venv-bench/bin/python benches/cached_put_floor.py
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

import ambervault

N = 100_000
ITEMS: List[Tuple[str, bytes]] = []


class DoesNothing:
    def __setitem__(self, key: str, value: bytes) -> None:
        pass


class HandsToDict:
    def __init__(self) -> None:
        self._set = {}.__setitem__

    def __setitem__(self, key: str, value: bytes) -> None:
        self._set(key, value)


def loop_alone() -> None:
    for _key, _value in ITEMS:
        pass


def into(make: Callable[[], Any]) -> Callable[[], None]:
    """The loop of ``make()[key] = value`` over the pairs."""

    def run() -> None:
        target = make()
        for key, value in ITEMS:
            target[key] = value

    return run


def best_ms(f: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def vault_phases() -> Dict[str, float]:
    """Best of 5 of: the cached sets, the flush, and one put_many, each in a new vault."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    out = {"cached sets": float("inf"), "flush_cache()": float("inf"), "put_many": float("inf")}
    for _ in range(5):
        for cached in (True, False):
            d = tempfile.mkdtemp(dir=base)
            v = ambervault.KVault(os.path.join(d, "a.db"))
            if cached:
                v.enable_cache()
                start = time.perf_counter()
                for key, value in ITEMS:
                    v[key] = value
                mid = time.perf_counter()
                v.flush_cache()
                end = time.perf_counter()
                out["cached sets"] = min(out["cached sets"], (mid - start) * 1e3)
                out["flush_cache()"] = min(out["flush_cache()"], (end - mid) * 1e3)
            else:
                start = time.perf_counter()
                v.put_many(ITEMS)
                out["put_many"] = min(out["put_many"], (time.perf_counter() - start) * 1e3)
            assert len(v) == N
            v.close()
            shutil.rmtree(d)
    return out


def main() -> None:
    rng = random.Random(100)  # the benchmark's pairs: str keys, distinct 100 B values
    ITEMS.extend(zip((f"key:{i:08d}" for i in range(N)), (rng.randbytes(100) for _ in range(N))))
    floors = {
        "loop alone": best_ms(loop_alone),
        "__setitem__ doing nothing": best_ms(into(DoesNothing)),
        "dict set": best_ms(into(dict)),
        "__setitem__ -> dict.__setitem__": best_ms(into(HandsToDict)),
    }
    phases = vault_phases()
    for name, ms in {**floors, **phases}.items():
        print(f"{name:34s} {ms:7.1f} ms")
    put_many = phases["put_many"]
    print(f"cached path now: {put_many / (phases['cached sets'] + phases['flush_cache()']):.2f}x put_many")
    for name in ("__setitem__ doing nothing", "dict set"):
        print(
            f"ceiling with '{name}' calls and put_many's flush: {put_many / (put_many + floors[name]):.2f}x"
        )


if __name__ == "__main__":
    main()
