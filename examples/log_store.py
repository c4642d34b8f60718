"""Log-line store: variable-length text in columns, side by side with timestamps and levels.

Appends 50,000 log lines (timestamp, level, message) through a cache, then answers the usual
questions: the last lines, the errors in a time window (numpy on the timestamp column, then
reading only the matching messages), and the size on disk. Run: ``python examples/log_store.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

import ambervault

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ambervault-logs-") as tmp:
        path = Path(tmp) / "logs.db"
        with ambervault.ColumnVault(path) as cv:
            ts = cv.ensure("ts_ms", "i64")
            level = cv.ensure("level", "u8")
            message = cv.ensure("message", "str")
            start = 1_763_700_000_000
            t0 = time.perf_counter()
            with cv.cache(cap_bytes=16 << 20, flush_threshold=4 << 20):
                for i in range(50_000):
                    lvl = 3 if i % 997 == 0 else (2 if i % 97 == 0 else 1)
                    ts.append(start + i * 20)
                    level.append(lvl)
                    message.append(f"request {i} served in {i % 37} ms" + (" (timeout)" if lvl == 3 else ""))
            dt = time.perf_counter() - t0
            print(f"appended 50,000 log lines (3 columns) in {dt:.2f}s")

            print("last lines:")
            for t, lvl, msg in zip(ts[-3:], level[-3:], message[-3:]):
                print(f"  {t} {LEVELS[lvl]:<7} {msg}")

            # Errors between 5 and 15 minutes in: filter with numpy, then fetch only those rows.
            stamps = ts.to_numpy()
            levels = level.to_numpy()
            window = (stamps >= start + 5 * 60_000) & (stamps < start + 15 * 60_000) & (levels == 3)
            rows = np.flatnonzero(window)
            print(f"{len(rows)} errors in the 10-minute window:")
            for row in rows[:3]:
                print(f"  #{row}: {message[int(row)]}")

        size = path.stat().st_size + (
            path.with_name(path.name + "-wal").stat().st_size
            if path.with_name(path.name + "-wal").exists()
            else 0
        )
        print(f"file size {size / 2**20:.1f} MiB")
    print("done")


if __name__ == "__main__":
    main()
