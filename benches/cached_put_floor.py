"""What a write-back cache behind ``vault[k] = v`` can reach against ``put_many``.

``kv_put_cached_100B`` holds ambervault's cached path (``enable_cache()``, 100,000
``vault[k] = v``, ``flush_cache()``) to 0.9x of one ``put_many`` of the same pairs. This script
splits the cached path into its calls and its flush and sets them beside what any Python-level
``__setitem__`` costs on the same pairs: a loop alone, a ``__setitem__`` doing nothing, storing
the pairs in a ``dict``, and a ``__setitem__`` handing them to ``dict.__setitem__``. The cached
path is measured with the cache's background writer (the default) and without it
(``auto_flush=False``), where every pair is written by ``flush_cache()`` after the loop: that
variant is bounded by the calls plus a flush at ``put_many``'s cost, the ceilings printed last.
Best of 5, vaults on tmpfs when ``/dev/shm`` exists (no disk in the figures).

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
    """Best of 5 of: the cached sets and the flush, with the cache's background writer
    (the default) and without it (``auto_flush=False``: nothing is written before
    ``flush_cache()``), and one put_many; each in a new vault, the three alternated."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    out: Dict[str, float] = {}

    def note(name: str, ms: float) -> None:
        out[name] = min(out.get(name, float("inf")), ms)

    for _ in range(5):
        for mode in ("cached", "cached, auto_flush=False", "put_many"):
            d = tempfile.mkdtemp(dir=base)
            v = ambervault.KVault(os.path.join(d, "a.db"))
            start = time.perf_counter()
            if mode == "put_many":
                v.put_many(ITEMS)
                note("put_many", (time.perf_counter() - start) * 1e3)
            else:
                v.enable_cache(auto_flush=mode == "cached")
                for key, value in ITEMS:
                    v[key] = value
                mid = time.perf_counter()
                v.flush_cache()
                end = time.perf_counter()
                note(f"{mode}: sets", (mid - start) * 1e3)
                note(f"{mode}: flush_cache()", (end - mid) * 1e3)
                note(f"{mode}: whole path", (end - start) * 1e3)
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
        print(f"{name:42s} {ms:7.1f} ms")
    put_many = phases["put_many"]
    for mode in ("cached", "cached, auto_flush=False"):
        print(f"{mode}: {put_many / phases[f'{mode}: whole path']:.2f}x put_many")
    for name in ("__setitem__ doing nothing", "dict set"):
        print(
            f"ceiling of a flush after the loop, with '{name}' calls and put_many's flush: "
            f"{put_many / (put_many + floors[name]):.2f}x"
        )


if __name__ == "__main__":
    main()
