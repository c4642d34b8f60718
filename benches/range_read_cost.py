"""What a range read inside a large value costs: the walk to the offset, and the copy.

``range_read_64KiB`` times 64 KiB reads at random offsets of a 1 GiB value through ``open()``
and ``seek``, against ``pread`` on a plain file. A value is stored in chunks of 1 MiB, each a
row whose bytes SQLite keeps in a chain of overflow pages; a read at an offset inside a chunk
first walks that chain from the chunk's start. This script stores one value (and the same
bytes as a plain file), maps and reads everything once, then times four kinds of warm reads,
the kinds alternated: 64 KiB and 16 B, each at random offsets and at chunk starts (no walk).
The difference between the two 16 B kinds is the walk; between the two kinds at chunk starts,
the copy of 64 KiB. Then the same with values stored in 128 KiB chunks (walks 8x shorter).

Run: .venv-bench/bin/python benches/range_read_cost.py [MiB]
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import media_workloads

MIB = 1 << 20
READS = 5_000
ROUNDS = 5
KINDS = [("64 KiB", 65536, False), ("64 KiB", 65536, True), ("16 B", 16, False), ("16 B", 16, True)]


def offsets(total: int, size: int, at_start: bool, chunk: int, seed: int) -> List[int]:
    """`READS` offsets for reads of `size` bytes: random, or each at a chunk's start."""
    rng = random.Random(seed)
    if at_start:
        return [rng.randrange(total // chunk) * chunk for _ in range(READS)]
    return [rng.randrange(total - size + 1) for _ in range(READS)]


def timed(read: Callable[[int, int], bytes], offs: List[int], size: int) -> float:
    """µs per read over `offs`."""
    start = time.perf_counter()
    for off in offs:
        read(off, size)
    return (time.perf_counter() - start) / len(offs) * 1e6


def measure(d: str, src: str, chunk: int) -> Dict[str, List[float]]:
    """µs per read of each kind in each round, for a value stored in `chunk`-byte chunks."""
    import ambervault

    total = os.path.getsize(src)
    v = ambervault.KVault(os.path.join(d, f"c{chunk}.db"), chunk_size=chunk)
    with open(src, "rb") as f:
        v.put_file(b"value", f)
    reader = v.open(b"value")
    fd = os.open(src, os.O_RDONLY)

    def vault_read(off: int, size: int) -> bytes:
        reader.seek(off)
        return reader.read(size)

    def plain_read(off: int, size: int) -> bytes:
        return os.pread(fd, size, off)

    # Map and read everything once, and check that both give the same bytes.
    for off in range(0, total, MIB):
        assert vault_read(off, MIB) == plain_read(off, MIB), off
    times: Dict[str, List[float]] = {}
    for r in range(ROUNDS):
        for label, size, at_start in KINDS:
            offs = offsets(total, size, at_start, chunk, seed=r)
            where = "chunk start" if at_start else "random"
            times.setdefault(f"vault {label}, {where}", []).append(timed(vault_read, offs, size))
            if not at_start:
                times.setdefault(f"pread {label}, random", []).append(timed(plain_read, offs, size))
    os.close(fd)
    reader.close()
    v.close()
    return times


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    d = tempfile.mkdtemp()
    try:
        src = media_workloads.write_source(d, mib)
        for chunk in (MIB, 128 << 10):
            times = measure(d, src, chunk)
            print(
                f"{mib} MiB value in {chunk >> 10} KiB chunks: µs per warm read,"
                f" median (min-max) of {ROUNDS} rounds of {READS:,}"
            )
            for name, ts in times.items():
                print(f"  {name:<28} {statistics.median(ts):6.2f} ({min(ts):.2f}-{max(ts):.2f})")
            med = {k: statistics.median(t) for k, t in times.items()}
            walk = med["vault 16 B, random"] - med["vault 16 B, chunk start"]
            copy = med["vault 64 KiB, chunk start"] - med["vault 16 B, chunk start"]
            ratio = med["pread 64 KiB, random"] / med["vault 64 KiB, random"]
            print(
                f"  walk to a random offset {walk:.2f} µs; copy of 64 KiB {copy:.2f} µs;"
                f" 64 KiB random reads at {ratio:.2f}x pread"
            )
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    main()
