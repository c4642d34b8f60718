"""Concurrent appenders in several processes never interleave inside one extend."""

from __future__ import annotations

import subprocess
import sys

from ambervault import ColumnVault

APPENDER = r"""
import sys, ambervault
cv = ambervault.ColumnVault(sys.argv[1])
col = cv["log"]
tag = int(sys.argv[2])
for _ in range(30):
    col.extend([tag] * 100)
print("ok")
"""


def test_concurrent_extends_never_interleave(tmp_path):
    path = tmp_path / "shared.db"
    with ColumnVault(path) as cv:
        cv.create_column("log", "i64")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(path), str(tag)], stdout=subprocess.PIPE, text=True
        )
        for tag in range(1, 5)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "ok"
    with ColumnVault(path) as cv:
        values = cv["log"].to_numpy()
    assert len(values) == 4 * 30 * 100
    runs = values.reshape(-1, 100)
    assert (runs == runs[:, :1]).all(), "an extend was interleaved with another process's"
    assert sorted(set(values.tolist())) == [1, 2, 3, 4]
