"""Moving in from kohakuvault: copy a kohakuvault 1.1.0 file into a new ambervault file.

The old file is written here with the real kohakuvault 1.1.0 (``pip install kohakuvault==1.1.0``;
it is in requirements-dev.txt). The migration itself needs only ambervault: it reads the old
file with Python's sqlite3 module. The same from a shell: ``ambervault migrate old.db new.db``.

Run: python examples/migrate_from_kohakuvault.py
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

import ambervault


def write_old_file(path: str) -> None:
    """What an application written for kohakuvault 1.1.0 may have stored."""
    import kohakuvault

    # Typed as Any: kohakuvault's stubs say values are bytes, though it packs any value.
    kv: Any = kohakuvault.KVault(path)  # its default table "kv"
    kv["user:alice"] = {"name": "Alice", "tags": ["admin"]}
    kv["visits"] = 42
    kv["last_seen_ms"] = 1_700_000_000_123  # kohakuvault itself reads this back wrong
    kv["embedding"] = np.linspace(0, 1, 8, dtype=np.float32)
    kv["avatar.png"] = b"\x89PNG\r\n\x1a\n..."
    kv["nothing"] = None  # kohakuvault pickles None
    kv.close()
    cv = kohakuvault.ColumnVault(path)
    cv.create_column("loss", "f32").extend([0.9, 0.7, 0.4])
    cv.create_column("country", "str:2").extend(["de", "jp"])  # fixed-width text
    cv.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        old = os.path.join(tmp, "old.db")
        new = os.path.join(tmp, "new.db")
        write_old_file(old)

        summary = ambervault.migrate_kohakuvault(old, new)
        for line in summary.lines():
            print(line)
        assert summary.keys == 5 and summary.elements == 5
        assert summary.skipped_count == 1  # the pickled None, reported (rerun with allow_pickle=True)

        # kohakuvault's default table "kv" is ambervault's default table now.
        with ambervault.KVault(new) as vault:
            assert vault["user:alice"] == {"name": "Alice", "tags": ["admin"]}
            assert vault["visits"] == 42
            assert vault["last_seen_ms"] == 1_700_000_000_123
            assert vault["embedding"].dtype == np.float32
            assert vault["avatar.png"].startswith(b"\x89PNG")
            cv = ambervault.ColumnVault(vault)
            assert cv["loss"].dtype == "f32" and len(cv["loss"]) == 3
            assert list(cv["country"]) == ["de", "jp"]
    print("done")


if __name__ == "__main__":
    main()
