"""What the deleted-file check costs a durable append, by what happens beside the vault.

Before every write a vault checks that its path still leads to the file it has open (a write
to a deleted or replaced file would be acknowledged and then lost). This script times durable
f64 appends, each its own commit, in three directories: a quiet one (the vault made three
seconds before the appends start), a busy one (another file created and removed every 0.2 s,
as in a temporary directory or a folder being filled), and a new one (the appends start right
after the vault is made). The stdlib ``sqlite3`` one-row insert per commit runs beside them in
the same directories, as the reference; it makes no such check. Rounds alternate the cases.
Run it under two builds (``PYTHONPATH``) to compare them.

Run: .venv-bench/bin/python benches/write_check_cost.py [appends] [rounds]
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from typing import Dict, List

CASES = ("quiet", "busy", "new")


def churn(d: str, stop: threading.Event) -> None:
    """Creates and removes a file in `d` every 0.2 s until `stop` is set."""
    i = 0
    while not stop.wait(0.2):
        side = os.path.join(d, f"side{i}")
        with open(side, "wb"):
            pass
        os.remove(side)
        i += 1


def vault_appends(d: str, n: int, case: str) -> float:
    """µs per durable append of `n` f64 values to a new column of a new vault in `d`."""
    import ambervault

    cv = ambervault.ColumnVault(os.path.join(d, "v.db"))
    col = cv.create_column("x", "f64")
    if case == "quiet":
        time.sleep(3)  # older than any filesystem's timestamp granularity
    start = time.perf_counter()
    for i in range(n):
        col.append(i * 0.5)
    seconds = time.perf_counter() - start
    assert len(col) == n
    cv.close()
    return seconds / n * 1e6


def stdlib_inserts(d: str, n: int, case: str) -> float:
    """µs per one-row insert, each its own commit, in WAL mode with ``synchronous=NORMAL``."""
    c = sqlite3.connect(os.path.join(d, "s.db"), isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute("CREATE TABLE t (x REAL)")
    if case == "quiet":
        time.sleep(3)
    start = time.perf_counter()
    for i in range(n):
        c.execute("INSERT INTO t VALUES (?)", (i * 0.5,))
    seconds = time.perf_counter() - start
    c.close()
    return seconds / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    times: Dict[str, List[float]] = {}
    for _ in range(rounds):
        for case in CASES:
            for name, run in (("vault", vault_appends), ("stdlib", stdlib_inserts)):
                d = tempfile.mkdtemp(dir=os.environ.get("BENCH_DIR"))
                stop = threading.Event()
                side = threading.Thread(target=churn, args=(d, stop), daemon=True)
                if case == "busy":
                    side.start()
                try:
                    times.setdefault(f"{name} {case}", []).append(run(d, n, case))
                finally:
                    stop.set()
                    if case == "busy":
                        side.join()
                    shutil.rmtree(d)
    print(f"µs per durable f64 append or stdlib insert, median (min-max) of {rounds} rounds of {n:,}")
    for case in CASES:
        v, s = statistics.median(times[f"vault {case}"]), statistics.median(times[f"stdlib {case}"])
        spread = f"{min(times[f'vault {case}']):.2f}-{max(times[f'vault {case}']):.2f}"
        print(f"  {case:<6} vault {v:5.2f} ({spread})  stdlib {s:5.2f}  stdlib/vault {s / v:.2f}x")


if __name__ == "__main__":
    main()
