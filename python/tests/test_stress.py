"""Concurrency stress: N processes x M threads writing, reading, scanning and appending on one
file for a bounded time. No error but DatabaseBusy (after the configured retries) is allowed;
every acknowledged write is present at the end; readers never see a torn value, or a column
shorter than a length that was already acknowledged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ambervault import ColumnVault, KVault

PROCESSES = int(os.environ.get("AMBERVAULT_STRESS_PROCESSES", "4"))
SECONDS = float(os.environ.get("AMBERVAULT_STRESS_SECONDS", "3"))

WORKER = r"""
import hashlib, json, sys, threading, time, ambervault
path, me, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
kv = ambervault.KVault(path, chunk_size=2048, retries=50, backoff_base=0.002)
cv = ambervault.ColumnVault(kv)
col = cv[f"p{me}"]
stop = time.monotonic() + seconds
report = {"puts": 0, "appends": 0, "reads": 0, "scans": 0, "busy": 0, "errors": []}
lock = threading.Lock()

def value(key, n):
    body = hashlib.shake_256(f"{key}:{n}".encode()).digest(100 + (n * 37) % 6000)
    return f"{key}|{n}|".encode() + body  # self-describing: a torn value would not verify

def verify(key, data):
    k, n, _ = data.split(b"|", 2)
    return k.decode() == key and data == value(key, int(n))

def guarded(name, fn):
    try:
        while time.monotonic() < stop:
            try:
                fn()
            except ambervault.DatabaseBusy:
                with lock:
                    report["busy"] += 1
    except Exception as e:
        with lock:
            report["errors"].append(f"{name}: {type(e).__name__}: {e}")

n = 0
def writer():
    global n
    key = f"w{me}:{n % 50}"
    kv[key] = value(key, n)
    kv[f"acked:{key}"] = str(n).encode()
    n += 1
    with lock:
        report["puts"] += 1

a = 0
def appender():
    global a
    col.extend([a * 10 + k for k in range(3)])
    a += 1
    kv[f"acked:col{me}"] = str(a * 3).encode()
    with lock:
        report["appends"] += 1

def reader():
    for other in range(int(sys.argv[4])):
        acked = kv.get(f"acked:col{other}")
        length = len(cv[f"p{other}"])
        if acked is not None and length < int(acked):
            raise AssertionError(f"column p{other} has {length} < acknowledged {int(acked)}")
        key = f"w{other}:{(me + length) % 50}"
        data = kv.get(key)
        if data is not None and not verify(key, data):
            raise AssertionError(f"torn value under {key}")
    with lock:
        report["reads"] += 1

def scanner():
    for key, data in kv.items(prefix=f"w{me}:"):
        if not verify(key, data):
            raise AssertionError(f"torn value under {key} during a scan")
    with lock:
        report["scans"] += 1

workers = (writer, appender, reader, scanner)
threads = [threading.Thread(target=guarded, args=(f.__name__, f)) for f in workers]
for t in threads:
    t.start()
for t in threads:
    t.join()
kv.close()
print(json.dumps(report))
"""


def test_processes_and_threads_hammering_one_file(tmp_path):
    path = tmp_path / "stress.db"
    with KVault(path) as kv:
        cv = ColumnVault(kv)
        for p in range(PROCESSES):
            cv.create_column(f"p{p}", "i64")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), str(p), str(SECONDS), str(PROCESSES)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(PROCESSES)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=SECONDS * 20 + 60)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    for report in reports:
        assert report["errors"] == [], report["errors"]
        assert report["puts"] > 0 and report["appends"] > 0 and report["reads"] > 0
    with KVault(path) as kv:
        assert kv.check() == []
        cv = ColumnVault(kv)
        for p in range(PROCESSES):
            values = list(cv[f"p{p}"])
            acked = int(kv[f"acked:col{p}"])
            assert len(values) >= acked
            assert values == [a * 10 + k for a in range(len(values) // 3) for k in range(3)]
        for key in kv.keys(prefix="acked:w"):
            n = int(kv[key])
            data_key = key[len("acked:") :]
            stored_key, stored_n, _ = kv[data_key].split(b"|", 2)
            assert stored_key.decode() == data_key and int(stored_n) >= n
    print({k: sum(r[k] for r in reports) for k in ("puts", "appends", "reads", "scans", "busy")})
