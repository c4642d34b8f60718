"""A value far larger than a chunk (1 GiB by default; set AMBERVAULT_STREAM_GIB=5 for the 5 GiB
run) streams in and out with its content intact (sha256) while the process's anonymous memory
grows by less than 64 MiB. Runs in a fresh interpreter so the memory figures are its own."""

from __future__ import annotations

import json
import os

from helpers import run_python

GIB = float(os.environ.get("AMBERVAULT_STREAM_GIB", "1"))

CODE = r"""
import hashlib, json, sys, time, ambervault

def rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0

total = int(float(sys.argv[2]) * (1 << 30))
block = hashlib.shake_256(b"seed").digest(1 << 20)
peak = 0

class Source:
    # Unknown-length stream: 1 GiB of distinct 1 MiB blocks, generated on the fly.
    def __init__(self):
        self.sent = 0
        self.n = 0
    def read(self, n):
        global peak
        peak = max(peak, rss_anon())
        if self.sent >= total:
            return b""
        self.n += 1
        data = self.n.to_bytes(8, "little") + block[8:]
        data = data[: min(n, total - self.sent)]
        self.sent += len(data)
        hasher_in.update(data)
        return data

class Sink:
    def write(self, data):
        global peak
        peak = max(peak, rss_anon())
        hasher_out.update(data)
        return len(data)

hasher_in, hasher_out = hashlib.sha256(), hashlib.sha256()
v = ambervault.KVault(sys.argv[1])
v["warmup"] = b"x"
base = rss_anon()
t0 = time.perf_counter()
stored = v.put_file("movie", Source())
t1 = time.perf_counter()
written = v.get_to_file("movie", Sink())
t2 = time.perf_counter()
with v.open("movie") as f:
    f.seek(total - 100)
    tail = f.read()
v.close()
print(json.dumps({
    "stored": stored, "written": written, "same": hasher_in.hexdigest() == hasher_out.hexdigest(),
    "growth": peak - base, "in_s": t1 - t0, "out_s": t2 - t1, "tail": len(tail),
}))
"""


def test_large_value_streams_in_constant_memory(tmp_path):
    result = run_python(CODE, str(tmp_path / "big.db"), str(GIB), timeout=1800)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    total = int(GIB * (1 << 30))
    assert report["stored"] == total
    assert report["written"] == total
    assert report["same"], "content changed in the round trip"
    assert report["tail"] == 100
    assert report["growth"] < 64 << 20, report
    print(report)
