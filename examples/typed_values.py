"""Typed values: store Python values (not only bytes) and get back the same types.

Run: python examples/typed_values.py
"""

from __future__ import annotations

import datetime
import os
import tempfile

import numpy as np

import ambervault


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "typed.db")
        with ambervault.KVault(path) as vault:
            vault["count"] = 42
            vault["user:alice"] = {
                "name": "Alice",
                "roles": ("admin", "ops"),
                "joined": datetime.date(2024, 1, 2),
                "quota_bytes": 2**40,
            }
            vault["embedding"] = np.linspace(0, 1, 384, dtype=np.float32)
            vault["settings"] = ambervault.Json({"theme": "dark"})  # readable by any JSON tool
            vault["thumbnail"] = b"\x89PNG\r\n\x1a\n..."  # bytes stay raw bytes

        # A new handle on the file: every value comes back as its own type.
        with ambervault.KVault(path) as vault:
            user = vault["user:alice"]
            assert user["roles"] == ("admin", "ops")
            assert isinstance(user["joined"], datetime.date)
            embedding = vault["embedding"]
            assert embedding.dtype == np.float32 and embedding.shape == (384,)
            for key in vault:
                info = vault.info(key)
                assert info is not None
                print(f"{key!r:14} {info['encoding']:8} {type(vault[key]).__name__}")
            try:
                vault["nope"] = {1, 2}  # sets are not stored without an explicit choice
            except TypeError as error:
                print("refused:", str(error).split(":")[0])
            assert "nope" not in vault
    print("done")


if __name__ == "__main__":
    main()
