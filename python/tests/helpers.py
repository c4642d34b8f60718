"""Helpers shared by test modules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Set when a suite runs against encrypted files (``make test-encryption``): every vault opened
#: without a key is encrypted with it (see ``ambervault._file.test_key``).
TEST_KEY = os.environ.get("AMBERVAULT_TEST_KEY")


def run_python(code: str, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (the test's environment) and return the result."""
    env = dict(os.environ)
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def same_value(a, b) -> bool:
    """Equal and of the same type, recursively: 1, 1.0 and True do not pass for each other, nan
    equals nan and -0.0 differs from 0.0 (what a typed value must round-trip exactly)."""
    import math

    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def on_disk(path, key):
    """Read a key through a second handle: what a crash right now would leave."""
    from ambervault import KVault

    with KVault(path) as other:
        return other.get(key)


def eventually(predicate, timeout: float = 30.0) -> bool:
    """Whether ``predicate()`` becomes true within ``timeout`` seconds (polled)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class WriteLock:
    """Another process holding the vault file's write lock (a transaction left open; rolled
    back on release), released on demand or on a timer. A process of its own: in one process,
    SQLite's POSIX locks would not exclude each other. It opens the file as the tests do, so it
    works on encrypted suites too."""

    _HOLD = (
        "import sys, ambervault\n"
        "v = ambervault.KVault(sys.argv[1])\n"
        "with v.transaction():\n"
        "    v['held by another process'] = b'x'\n"
        "    print('locked', flush=True)\n"
        "    sys.stdin.readline()\n"
        "    raise SystemExit(0)  # leaves the block by an exception: rolled back\n"
    )

    def __init__(self, path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self._HOLD, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        self.proc.communicate("go\n", timeout=30)

    def release_after(self, seconds: float):
        import threading

        timer = threading.Timer(seconds, self.release)
        timer.start()
        return timer


def patterned(size: int, seed: int) -> bytes:
    """``size`` reproducible bytes (a 4 KiB block of the seed, repeated); a negative seed gives
    a random block."""
    block = os.urandom(4096) if seed < 0 else bytes((seed * 31 + i * 7) % 251 for i in range(4096))
    return block * (size // 4096) + block[: size % 4096]


def damage_rows(path, sql: str) -> None:
    """Run ``sql`` on the closed vault file at ``path`` with its guarding triggers dropped for
    the statement (as a damaged or hostile file would be)."""
    import sqlite3

    sys.path.insert(0, str(REPO / "scripts"))
    from hostile_files import row_mutations

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    with row_mutations._triggers_dropped(conn):
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.close()
