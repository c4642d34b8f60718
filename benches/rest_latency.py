"""What the slowest durable appends and puts are made of, with no bulk write anywhere near.

``tail_latency`` compares the p99 of durable f64 appends and 100 B puts after a bulk write with
their median at rest. This script runs the resting phase alone (the same operations,
interleaved) and sorts its slowest 2% by cause:

- seals: an f64 append that found the column's tail full (every 128 elements) and moved it
  into the chunks;
- WAL cycle: the operation whose commit finished a checkpoint inline (the WAL is rewound by the
  next one: the checkpoint sequence in the WAL's header changes) and the one that rewound it;
- other: with checkpoint passes, these bunch up in the few hundred operations before the WAL's
  cycle, while the pass a small commit asked for runs.

Each repetition runs once with the default checkpoints and once with ``checkpoints="external"``
(no pass ever runs, the WAL only grows), alternated, so the difference is what the passes
cost the operations beside them.

Run: .venv-bench/bin/python benches/rest_latency.py [operations per kind] [repetitions]
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import sys
import tempfile
import time
from typing import List, Tuple

TAIL_ELEMENTS = 128  # f64 elements in a column's 1 KiB tail
WARM = 10


def wal_sequence(path: str) -> int:
    """The WAL header's checkpoint sequence number (changes when the WAL is rewound)."""
    with open(path, "rb") as f:
        return int(struct.unpack(">I", f.read(16)[12:16])[0])


def one_run(n: int, checkpoints: str) -> Tuple[List[Tuple[int, str]], int]:
    """(ns, cause) of each timed operation, and how many times the WAL was rewound."""
    import ambervault

    d = tempfile.mkdtemp()
    try:
        v = ambervault.KVault(os.path.join(d, "a.db"), checkpoints=checkpoints)
        col = ambervault.ColumnVault(v).create_column("x", "f64")
        rng = random.Random(100)
        values = [rng.randbytes(100) for _ in range(n)]
        for i in range(WARM):
            col.append(i * 0.5)
            v.put(b"warm:%d" % i, values[i])
        v.checkpoint()
        wal = os.path.join(d, "a.db-wal")
        clock = time.perf_counter_ns
        ops: List[Tuple[int, str]] = []
        sequences: List[int] = []
        for i in range(n):
            t0 = clock()
            col.append(i * 0.5)
            t1 = clock()
            sequences.append(wal_sequence(wal))
            v.put(b"small:%06d" % i, values[i])
            t2 = clock()
            sequences.append(wal_sequence(wal))
            seal = (WARM + i) % TAIL_ELEMENTS == 0
            ops += [(t1 - t0, "seal" if seal else "other"), (t2 - t1, "other")]
        v.close()
        rewinds = 0
        for j in range(1, len(ops)):
            if sequences[j] != sequences[j - 1]:
                rewinds += 1
                for k in (j - 1, j):
                    if ops[k][1] == "other":
                        ops[k] = (ops[k][0], "WAL cycle")
        return ops, rewinds
    finally:
        shutil.rmtree(d)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for rep in range(reps):
        for checkpoints in ("auto", "external"):
            ops, rewinds = one_run(n, checkpoints)
            times = sorted(t for t, _ in ops)
            p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
            slowest = sorted(ops, reverse=True)[: len(ops) // 50]
            causes = {c: [t for t, k in slowest if k == c] for c in ("seal", "WAL cycle", "other")}
            print(
                f"run {rep + 1}, checkpoints={checkpoints}: {len(ops):,} ops, {rewinds} WAL rewinds;"
                f" p50 {p50 / 1e3:.1f} µs, p99 {p99 / 1e3:.1f} µs ({p99 / p50:.1f}x),"
                f" max {times[-1] / 1e3:.1f} µs"
            )
            for cause, ts in causes.items():
                span = f"{min(ts) / 1e3:.0f}-{max(ts) / 1e3:.0f} µs" if ts else "-"
                print(f"  slowest 2% from {cause:<9}: {len(ts):3d} ops, {span}")


if __name__ == "__main__":
    main()
