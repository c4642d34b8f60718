"""Runs one (workload, system, size) in this fresh process and prints a JSON result with the
timed seconds, operation count, anonymous-memory growth, the size of the files written and the
workload's extra figures, if any."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading

from workloads import WORKLOADS


def rss_anon() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(path) for f in files)


def main() -> None:
    workload, system, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _, factory, _, _ = WORKLOADS[workload]
    peak = base = rss_anon()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.01):
            peak = max(peak, rss_anon())

    sampler = threading.Thread(target=sample, daemon=True)
    with tempfile.TemporaryDirectory(prefix="ambench-") as d:
        sampler.start()
        result = factory(system)(d, size)
        stop.set()
        sampler.join()
        seconds, ops = result[0], result[1]
        extras = result[2] if len(result) > 2 else {}
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "ops": ops,
                    "heap_growth": max(0, peak - base),
                    "file_bytes": dir_bytes(d),
                    **({"extras": extras} if extras else {}),
                }
            )
        )


if __name__ == "__main__":
    main()
