"""What reading a large value whole through ``open()`` costs the first time and after.

``stream_out_read_1MiB`` times one read of a stored 1 GiB value, 1 MiB at a time, by the vault
that stored it, against a plain ``read`` of the same bytes. SQLite reads the value's pages
through the connection's memory map of the file, and a page mapped for the first time in a
process costs a page fault; a plain ``read`` copies out of the page cache without mapping it.
This script stores one value (and the same bytes as a plain file, both in the page cache) and
then, in rounds, times three reads of the whole value, each with the page faults it took
(``getrusage``): through a vault just opened (every page mapped for the first time), again
through that same vault (every page mapped already), and the plain file.

Run: .venv-bench/bin/python benches/open_read_cost.py [MiB] [rounds]
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import media_workloads

MIB = 1 << 20


def read_vault(vault: Any, _: str) -> int:
    """Reads the stored value whole through `vault`."""
    with vault.open(b"value") as f:
        return media_workloads.drain(f)


def read_plain(_: Any, src: str) -> int:
    """Reads the plain file whole."""
    with open(src, "rb") as f:
        return media_workloads.drain(f)


def timed(read: Callable[[Any, str], int], vault: Any, src: str, expected: int) -> Tuple[float, int]:
    """GiB/s of `read` and the minor page faults it took."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    got = read(vault, src)
    seconds = time.perf_counter() - start
    assert got == expected, (got, expected)
    return expected / seconds / (1 << 30), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def main() -> None:
    import ambervault

    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    d = tempfile.mkdtemp()
    try:
        src = media_workloads.write_source(d, mib)
        path = os.path.join(d, "v.db")
        with ambervault.KVault(path) as v, open(src, "rb") as f:
            v.put_file(b"value", f)
            v.checkpoint()
        total = mib * MIB
        results: Dict[str, List[Tuple[float, int]]] = {}
        for _ in range(rounds):
            vault = ambervault.KVault(path)
            results.setdefault("vault, just opened", []).append(timed(read_vault, vault, src, total))
            results.setdefault("vault, read again", []).append(timed(read_vault, vault, src, total))
            results.setdefault("plain read", []).append(timed(read_plain, vault, src, total))
            vault.close()
        print(f"a {mib} MiB value read whole, 1 MiB at a time: GiB/s and page faults, {rounds} rounds")
        for name, runs in results.items():
            rates = [r for r, _ in runs]
            faults = [n for _, n in runs]
            print(
                f"  {name:<20} {statistics.median(rates):5.2f} GiB/s ({min(rates):.2f}-{max(rates):.2f}),"
                f" {statistics.median(faults):>8,.0f} faults per read"
            )
        plain = statistics.median(r for r, _ in results["plain read"])
        for name in ("vault, just opened", "vault, read again"):
            rate = statistics.median(r for r, _ in results[name])
            print(f"  {name}: {rate / plain:.2f}x a plain read")
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    main()
