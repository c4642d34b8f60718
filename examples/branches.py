"""Curating a dataset on a branch: fork the labels and images, relabel on the branch, review
the diff, merge it back, and settle a conflict with a function.

Writes 2,000 labels and 20 images of 256 KiB, forks them (the images are shared, not copied),
relabels 1% on the branch while main gets one edit of its own, lists the diff, merges with a
resolver that keeps both opinions of the one key edited on both sides, and shows the fork
copied no image bytes. Run: ``python examples/branches.py``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ambervault


def keep_both(key: Any, theirs: Any, ours: Any) -> Any:
    """Settles a label edited on both branches: both opinions, as a list."""
    if theirs is ambervault.DELETED or ours is ambervault.DELETED:
        return theirs
    return sorted({theirs, ours})


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ambervault-branches-") as tmp:
        path = Path(tmp) / "dataset.db"
        with ambervault.KVault(path) as vault:
            vault.put_many({f"label/{i:05d}": "cat" if i % 2 else "dog" for i in range(2000)})
            for i in range(20):
                vault[f"image/{i:05d}"] = os.urandom(256 << 10)
            stored_before = vault.stats()["chunk_bytes"]

            t0 = time.perf_counter()
            review = vault.create_branch("review")
            fork_ms = (time.perf_counter() - t0) * 1000
            assert vault.stats()["chunk_bytes"] == stored_before, "the fork copied no image bytes"

            for i in range(0, 2000, 100):
                review[f"label/{i:05d}"] = "fox"
            del review["image/00003"]
            vault["label/00100"] = "wolf"  # main edits a key the branch edits too

            diff = vault.diff("main", "review")
            summary = diff.summary()
            print(f"fork of {len(vault):,} keys: {fork_ms:.1f} ms; diff: {summary}")
            assert summary == {"added": 0, "removed": 1, "changed": 20}
            assert ("image/00003", "removed") in list(diff)

            result = vault.merge("review", into="main", strategy=keep_both)
            print(result)
            assert (result.changed, result.deleted, result.conflicts) == (19, 1, 1)
            assert vault["label/00100"] == ["fox", "wolf"]
            assert vault["label/00200"] == "fox" and "image/00003" not in vault
            assert list(vault.diff("main", "review")) == [("label/00100", "changed")]

            vault.delete_branch("review")
            assert vault.branches() == ["main"]
            assert vault.check() == []
    print("done")


if __name__ == "__main__":
    main()
