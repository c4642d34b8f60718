"""ambervault benchmark suite: every workload for every system, each run in a fresh process and
a fresh temporary directory, systems interleaved, repeated, medians and ratios reported.

    make bench            # quick mode (< 3 minutes; the vec_* workloads add about 10), writes docs/benchmarks.md
    make bench-full       # full sizes (< 25 minutes; the vec_* workloads add about 40: five 1M HNSW builds)
    .venv-bench/bin/python benches/run.py --quick --workloads kv_get_random_100B

Results go to ``benches/results.json`` and ``docs/benchmarks.md`` (a markdown table per
workload with medians, rates, ratios to ambervault, heap growth and file size, plus machine
facts) and ``docs/benchmarks.png`` (ratios chart).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workloads import EXTRA_COLUMNS, NOTES, PREPARE, SIZE_LABELS, WORKLOADS  # noqa: E402

PACKAGES = [
    "ambervault",
    "kohakuvault",
    "diskcache",
    "sqlitedict",
    "lmdb",
    "rocksdict",
    "h5py",
    "zarr",
    "pyarrow",
    "numpy",
    "sqlite-vec",
    "hnswlib",
    "usearch",
    "faiss-cpu",
    "lancedb",
    "cachetools",
]


def machine() -> dict:
    import ambervault

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ambervault_sqlite": ambervault.SQLITE_VERSION,
        "stdlib_sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def run_one(workload: str, system: str, size: int, timeout: float) -> dict:
    # numpy's BLAS threads spin after use and would steal a core from whichever system runs.
    # Vector workloads use no BLAS outside the timed part (their data are prepared beforehand),
    # and numpy brute force is the limit there, so it gets every core.
    threads = str(os.cpu_count() or 1) if workload.startswith("vec_") else "1"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
    proc = subprocess.run(
        [sys.executable, str(HERE / "worker.py"), workload, system, str(size)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=HERE,
        env=env,
    )
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def extra_cell(value: object, kind: str) -> str:
    if value is None:
        return ""
    if kind == "s":
        return f"{value:.3f} s"
    if kind == "f3":
        return f"{value:.3f}"
    if kind == "int":
        return f"{value:.0f}"
    if kind == "us":
        return f"{value:,.1f} µs"
    if kind == "bytes":
        return human(value)
    return f"{value:,.0f}/s"  # "rate"


def summarize(results: dict) -> dict:
    table = {}
    for workload, per_system in results.items():
        rows = {}
        for system, runs in per_system.items():
            ok = [r for r in runs if "error" not in r]
            if not ok:
                rows[system] = {"error": runs[0]["error"] if runs else "not run"}
                continue
            seconds = statistics.median(r["seconds"] for r in ok)
            ops = ok[0]["ops"]
            rows[system] = {
                "median_s": seconds,
                "rate": ops / seconds if seconds else float("inf"),
                "heap_growth": statistics.median(r["heap_growth"] for r in ok),
                "file_bytes": statistics.median(r["file_bytes"] for r in ok),
                "runs": len(ok),
            }
            extras: dict = {}
            for r in ok:
                for key, value in r.get("extras", {}).items():
                    extras.setdefault(key, []).append(value)
            if extras:
                rows[system]["extras"] = {key: statistics.median(v) for key, v in extras.items()}
        base = rows.get("ambervault", {}).get("rate")
        for row in rows.values():
            if base and row.get("rate"):
                row["ratio"] = base / row["rate"]  # > 1: ambervault is faster
        table[workload] = rows
    return table


def markdown(summary: dict, facts: dict, mode: str, sizes: dict) -> str:
    out = [
        "# Benchmarks",
        "",
        f"Mode: **{mode}**. Generated by `benches/run.py` on {facts['date']}; every number is the",
        "median of the repetitions, each in a fresh process and a fresh temporary directory, with",
        "systems interleaved. **ratio** = ambervault's rate / that system's rate: above 1 means",
        "ambervault is faster. Heap growth is the peak growth of anonymous memory during the run.",
        "",
        f"Machine: {facts['cores']} cores, {facts['cpu']}, Python {facts['python']}, {facts['platform']};",
        f"SQLite {facts['ambervault_sqlite']} (ambervault, bundled), {facts['stdlib_sqlite']} (stdlib).",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in facts["packages"].items() if v) + ".",
        "",
        "Defaults everywhere: ambervault and kohakuvault in WAL with `synchronous=NORMAL`; "
        "lmdb and rocksdict with their own defaults. Each system's path is in the notes at the end.",
        "Read workloads start on a settled file: after the (untimed) fill, ambervault and "
        "kohakuvault run `checkpoint()`.",
        "",
    ]
    for workload, rows in summary.items():
        unit = WORKLOADS[workload][3]
        label = SIZE_LABELS.get(workload, "{n:,} " + unit).format(n=sizes[workload])
        extra = EXTRA_COLUMNS.get(workload, [])
        out += [
            f"## {workload} ({label})",
            "",
            "| system | median | rate | ratio | heap growth | files |" + "".join(f" {c[1]} |" for c in extra),
            "|---|---:|---:|---:|---:|---:|" + "---:|" * len(extra),
        ]
        ordered = sorted(rows.items(), key=lambda kv: kv[1].get("median_s", float("inf")))
        for system, row in ordered:
            if "error" in row:
                out.append(f"| {system} | error: {row['error'][:80]} | | | | |" + " |" * len(extra))
                continue
            rate = f"{row['rate']:,.0f} {unit}/s" if unit != "bytes" else f"{human(row['rate'])}/s"
            ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
            cells = "".join(
                f" {extra_cell(row.get('extras', {}).get(key), kind)} |" for key, _, kind in extra
            )
            out.append(
                f"| {system} | {row['median_s']:.3f} s | {rate} | {ratio} | {human(row['heap_growth'])} | {human(row['file_bytes'])} |"
                + cells
            )
        out.append("")
    out += ["## What each system does", ""] + [f"- **{k}**: {v}" for k, v in NOTES.items()] + [""]
    return "\n".join(out)


def chart(summary: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    workloads = list(summary)
    systems = sorted({s for rows in summary.values() for s in rows if s != "ambervault"})
    fig, ax = plt.subplots(figsize=(12, 0.45 * len(workloads) + 1.5))
    height = 0.8 / max(1, len(systems))
    for j, system in enumerate(systems):
        ys, xs = [], []
        for i, w in enumerate(workloads):
            ratio = summary[w].get(system, {}).get("ratio")
            if ratio:
                ys.append(i + j * height)
                xs.append(ratio)
        ax.barh(ys, xs, height=height, label=system)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(workloads))])
    ax.set_yticklabels(workloads)
    ax.invert_yaxis()
    ax.set_xlabel("ambervault rate / system rate (log scale; > 1 = ambervault faster)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 3 minutes)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--systems", nargs="*")
    parser.add_argument("--markdown", default=str(HERE.parent / "docs" / "benchmarks.md"))
    parser.add_argument("--json", default=str(HERE / "results.json"))
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds per run (HNSW builds at 1M: at least 2400)"
    )
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    sizes = {w: WORKLOADS[w][2][0 if args.quick else 1] for w in args.workloads}
    # Workloads without a size in this mode (e.g. 100M-element columns in quick runs) are skipped.
    args.workloads = [w for w in args.workloads if sizes[w] is not None]
    sizes = {w: sizes[w] for w in args.workloads}
    results: dict = {w: {} for w in args.workloads}
    started = time.monotonic()
    for workload in args.workloads:
        if workload in PREPARE:
            PREPARE[workload](workload, sizes[workload])
    for rep in range(args.reps):
        for workload in args.workloads:
            for system in WORKLOADS[workload][0]:
                if args.systems and system not in args.systems:
                    continue
                timeout = max(args.timeout, 2400) if workload.startswith("vec_hnsw") else args.timeout
                r = run_one(workload, system, sizes[workload], timeout)
                results[workload].setdefault(system, []).append(r)
                status = r.get("error") or f"{r['seconds']:.3f}s"
                print(f"[rep {rep + 1}/{args.reps}] {workload:<26} {system:<12} {status}", flush=True)
    summary = summarize(results)
    facts = machine()
    Path(args.json).write_text(
        json.dumps(
            {"mode": mode, "machine": facts, "sizes": sizes, "runs": results, "summary": summary}, indent=1
        )
    )
    Path(args.markdown).write_text(markdown(summary, facts, mode, sizes))
    chart(summary, Path(args.markdown).with_suffix(".png"))
    print(f"done in {time.monotonic() - started:.0f}s: {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
