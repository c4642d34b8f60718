"""Columns as Arrow: query a training run with DuckDB and Polars, write Parquet, load Arrow back.

Logs 200,000 steps of metrics into typed columns, then:
- runs SQL over the ColumnVault with DuckDB (it reads the Arrow C stream, batch by batch),
- builds a Polars DataFrame from the same stream,
- writes a Parquet file in row groups (constant memory) and reads it back with pyarrow,
- loads an Arrow table into another vault with ``from_arrow``,
- exports key-value pairs as an Arrow table.
DuckDB and Polars parts are skipped (with a note) when those packages are not installed.
Run: ``python examples/arrow_duckdb.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

import ambervault


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ambervault-arrow-") as tmp:
        path = Path(tmp) / "run.db"
        n = 200_000
        rng = np.random.default_rng(0)
        loss_values = np.exp(-np.arange(n) / 50_000) + rng.random(n) * 0.05
        with ambervault.ColumnVault(path) as cv:
            cv.ensure("step", "i64").extend(np.arange(n))
            cv.ensure("loss", "f64").extend(loss_values)
            cv.ensure("phase", "str").extend(["warmup" if i < 10_000 else "train" for i in range(n)])

            table = cv.to_arrow()  # fixed-width columns are wrapped without a copy
            print(table.schema.names, table.num_rows, "rows")

            try:
                import duckdb  # type: ignore[import-untyped,unused-ignore]
            except ImportError:
                print("duckdb is not installed: skipping SQL")
            else:
                tbl = cv  # noqa: F841 - DuckDB finds it by name and reads its Arrow C stream
                by_phase = duckdb.sql(
                    "select phase, count(*) as n, avg(loss) as mean_loss from tbl"
                    " group by phase order by phase"
                )
                assert by_phase is not None
                for phase, count, mean_loss in by_phase.fetchall():
                    print(f"duckdb: {phase:<7} {count:>7,} steps, mean loss {mean_loss:.4f}")
                overall = duckdb.sql("select avg(loss) from tbl")
                assert overall is not None
                assert abs(overall.fetchall()[0][0] - loss_values.mean()) < 1e-9

            try:
                import polars as pl
            except ImportError:
                print("polars is not installed: skipping Polars")
            else:
                frame = pl.DataFrame(cv)
                last = float(frame.filter(pl.col("step") >= n - 1000)["loss"].to_numpy().mean())
                print(f"polars: {frame.shape}, mean loss of the last 1,000 steps {last:.4f}")

            out = Path(tmp) / "run.parquet"
            cv.to_parquet(out, row_group_rows=50_000)
            print("parquet row groups:", pq.ParquetFile(out).metadata.num_row_groups)
            back = pq.read_table(out)
            assert back.equals(table)

        with ambervault.ColumnVault(Path(tmp) / "copy.db") as copy:
            copy.from_arrow(back)  # dtypes from the Arrow schema (and its ambervault metadata)
            copy.from_arrow(pa.table({"lr": pa.array(np.full(n, 3e-4), pa.float32())}))
            print("copy:", copy.list_columns())

        with ambervault.KVault(Path(tmp) / "kv.db") as kv:
            kv["config:lr"] = 3e-4
            kv["config:model"] = "tiny"
            kv["blob:1"] = b"\x00\x01"
            pairs = kv.to_arrow(prefix="config:")
            print("kv:", pairs.column("key").to_pylist(), pairs.column("encoding").to_pylist())
            print("kv decoded:", kv.to_arrow(prefix="config:model", decode=True).to_pylist())
    print("done")


if __name__ == "__main__":
    main()
