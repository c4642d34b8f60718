"""SIGKILL during column appends and extends: every acknowledged append survives, an extend is
never torn, columns flushed together stay equal in length."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

from harness import KILLS

from ambervault import ColumnVault

CHILD = r"""
import sys, ambervault
path, mode = sys.argv[1], sys.argv[2]
cv = ambervault.ColumnVault(path, min_chunk_bytes=256, max_chunk_bytes=4096)
n = cv.ensure("n", "i64")
s = cv.ensure("s", "str")
i = 0
while True:
    if mode == "append":
        n.append(i)
        s.append(f"line {i}")
        print(i, flush=True)
        i += 1
    else:  # a cached pair of columns flushed together, then acknowledged
        with cv.cache():
            n.extend(range(i, i + 100))
            s.extend(f"line {k}" for k in range(i, i + 100))
        print(i + 99, flush=True)
        i += 100
"""


def run_and_kill(path, mode, rng):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = []
    for _ in range(rng.randint(1, 30)):
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        seen.append(int(line))
    time.sleep(rng.uniform(0, 0.02))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Read the rest through proc.stdout: readline() may already hold later lines in its buffer,
    # which communicate() (reading the pipe directly) would miss.
    rest = proc.stdout.read()
    proc.stdout.close()
    proc.stderr.close()
    return seen + [int(x) for x in rest.split()]


def check(path, acked_last, mode):
    with ColumnVault(path) as cv:
        n, s = list(cv["n"]), list(cv["s"])
    assert n == list(range(len(n))), "values out of order or torn"
    assert len(n) >= acked_last + 1, "an acknowledged append was lost"
    if mode == "batch":
        assert len(n) % 100 == 0, "a cached batch was torn"
        assert len(s) == len(n), "columns flushed together ended at different lengths"
    else:
        assert len(n) - 1 <= len(s) <= len(n)  # the kill may fall between the two appends
    assert s == [f"line {k}" for k in range(len(s))]


def test_killed_appenders_lose_nothing_acknowledged(tmp_path):
    rng = random.Random(5)
    for mode in ("append", "batch"):
        for round_ in range(KILLS):
            path = tmp_path / f"{mode}{round_}.db"
            lines = run_and_kill(path, mode, rng)
            # The last line printed before the kill is the last acknowledgement we know of.
            check(path, max(lines, default=0), mode)
