"""What a get of a chunked value costs in ambervault and in lmdb: the copy, and the rest.

``kv_get_random_100KB`` times one pass over 10,000 values of 100 KB right after the fill. This
script separates what every get pays from what the value's size adds: it fills each store with
values of 20 KB and of 100 KB, few enough to stay in the CPU's cache (100 values) and many
enough not to (10,000 values, 1 GiB), and times random gets over several passes, the stores
alternated. From the two sizes in the cache it prints the cost per KB (the copy into the new
``bytes`` object) and the fixed cost per get (finding the value). The first pass out of the
cache is printed apart: it also pays the first touch of each page.

Run: .venv-bench/bin/python benches/get_cost.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads

SYSTEMS = ["ambervault", "lmdb"]
GETS_PER_PASS = 20_000
PASSES = 5


def passes(system: str, n: int, size: int) -> List[float]:
    """µs per get in each pass over `n` values of `size` bytes (the first pass first)."""
    d = tempfile.mkdtemp()
    try:
        store = workloads._populated(system, d, n, size)
        keys = workloads.keys(n)
        order = workloads.random_order(n) * max(1, GETS_PER_PASS // n)
        times = []
        for _ in range(PASSES):
            start = time.perf_counter()
            for i in order:
                store.get(keys[i])
            times.append((time.perf_counter() - start) / len(order) * 1e6)
        store.close()
        return times
    finally:
        shutil.rmtree(d)


def main() -> None:
    results: Dict[Tuple[str, int, int], List[float]] = {}
    for n, size in [(100, 20_000), (100, 100_000), (10_000, 100_000)]:
        for system in SYSTEMS:
            results[(system, n, size)] = passes(system, n, size)
    print(f"µs per get, median of passes 2-{PASSES} (first pass apart)")
    for system in SYSTEMS:
        small = statistics.median(results[(system, 100, 20_000)][1:])
        large = statistics.median(results[(system, 100, 100_000)][1:])
        per_kb = (large - small) / 80
        fixed = small - 20 * per_kb
        many = results[(system, 10_000, 100_000)]
        print(
            f"{system:>10}: in cache 20 KB {small:5.2f}, 100 KB {large:5.2f}"
            f" -> {per_kb:.3f} per KB + {fixed:.2f} per get;"
            f" 10,000 x 100 KB warm {statistics.median(many[1:]):5.2f}, first pass {many[0]:5.2f}"
        )


if __name__ == "__main__":
    main()
