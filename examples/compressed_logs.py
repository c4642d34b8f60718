"""Compressed logs and sensor data: a zstd key-value table for daily log files, a timeseries
in a zstd column and again in a pco column (a codec for numbers), and log lines in an lz4
column, in one file. Prints the space each takes and reads back
with a seek into the middle of a compressed value.

Run: python examples/compressed_logs.py
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from ambervault import ColumnVault, KVault


def log_day(day: int, lines: int) -> bytes:
    return "".join(
        f"2026-12-{day:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d} INFO ingest "
        f"batch={i} rows={(i * 37) % 1000} ok\n"
        for i in range(lines)
    ).encode()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "logs.db")
        with KVault(path, compression="zstd") as kv:
            days = {f"app/2026-12-{d:02d}.log": log_day(d, 20_000) for d in range(1, 4)}
            kv.put_many(list(days.items()))
            stats = kv.stats()
            logical, stored = stats["logical_bytes"], stats["stored_bytes"]
            print(f"log files: {logical:,} bytes stored in {stored:,} ({kv.compression})")
            with kv.open("app/2026-12-02.log") as f:
                f.seek(500_000)  # decompresses only the chunk the seek lands in
                line = f.read(200).split(b"\n")[1]
            assert line.startswith(b"2026-12-02T")
            print("a line from the middle:", line.decode())

            cv = ColumnVault(kv)
            rng = np.random.default_rng(0)
            temperature = np.round(21 + np.cumsum(rng.normal(0, 0.02, 500_000)), 2)
            col = cv.create_column("temperature", "f64", compression="zstd")
            col.extend(temperature)
            assert col[123_456] == temperature[123_456]  # a point read touches one chunk
            assert np.array_equal(col.to_numpy(), temperature)
            # pco models the numbers (their 0.01 resolution, their deltas), not their bytes.
            by_pco = cv.create_column("temperature_pco", "f64", compression="pco")
            by_pco.extend(temperature)
            assert np.array_equal(by_pco[1000:2000], temperature[1000:2000])
            print(f"timeseries columns: {col.compression} and {by_pco.compression}")
            events = cv.create_column("events", "str", compression="lz4")
            events.extend([f"sensor {i % 16} reading ok" for i in range(100_000)])
            assert events[99_999] == "sensor 15 reading ok"
            assert kv.check() == []
        size = os.path.getsize(path)
        print(f"file size: {size:,} bytes for {temperature.nbytes:,} bytes of floats and the logs")
    print("done")


if __name__ == "__main__":
    main()
