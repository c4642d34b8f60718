"""Training-metrics logger: typed columns, a write-back cache, numpy, and a plot.

Logs 20,000 steps of loss/accuracy through the write-back cache (columns flushed together),
appends log lines, reads windows and whole columns back through numpy, draws the loss curve to
``loss.png`` (if matplotlib is installed), and reopens the file to show everything persisted.
Run: ``python examples/metrics_logger.py``.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np

import ambervault


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ambervault-columns-") as tmp:
        path = Path(tmp) / "run.db"
        with ambervault.ColumnVault(path) as cv:
            step = cv.ensure("step", "i64")
            loss = cv.ensure("loss", "f32")
            acc = cv.ensure("accuracy", "f64")
            logs = cv.ensure("log", "str")

            t0 = time.perf_counter()
            with cv.cache(cap_bytes=8 << 20, flush_threshold=1 << 20):
                for i in range(20_000):
                    step.append(i)
                    loss.append(2.5 * math.exp(-i / 5000) + 0.05 * math.sin(i))
                    acc.append(1 - math.exp(-i / 4000))
                    if i % 1000 == 0:
                        logs.append(f"step {i}: checkpoint saved")
            dt = time.perf_counter() - t0
            print(f"logged 20,000 steps x 3 metrics in {dt:.2f}s ({60_000 / dt:,.0f} values/s)")

            # Bulk paths: numpy in, numpy out.
            grads = cv.ensure("grad_norm", "f64")
            grads.extend(np.abs(np.random.default_rng(0).standard_normal(1_000_000)))
            norms = grads.to_numpy()
            print(f"grad_norm: {len(grads):,} values, mean {norms.mean():.3f}")

            window = loss[10_000:10_005]
            print("loss[10000:10005] =", [round(v, 4) for v in window])
            print("every 5000th step:", step[::5000])
            print("last log line:", logs[-1])

            try:
                import matplotlib

                matplotlib.use("Agg")
                import matplotlib.pyplot as plt
            except ImportError:
                print("matplotlib is not installed: skipping the plot")
            else:
                curve = loss.to_numpy()
                fig, ax = plt.subplots(figsize=(8, 3))
                ax.plot(step.to_numpy(), curve, linewidth=0.7)
                ax.set_xlabel("step")
                ax.set_ylabel("loss")
                fig.tight_layout()
                fig.savefig("loss.png")
                print(f"plotted {len(curve):,} points to loss.png")

        with ambervault.ColumnVault(path) as cv:
            for name, dtype, length in cv.list_columns():
                print(f"  {name:<10} {dtype:<5} {length:>9,}")
            assert np.array_equal(cv["step"].to_numpy(), np.arange(20_000))
    print("done")


if __name__ == "__main__":
    main()
