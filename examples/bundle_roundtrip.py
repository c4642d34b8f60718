"""Bundles: ship part of a vault to a colleague as one checked file.

Exports the ``img/`` keys of a vault (raw images, typed metadata, an expiring preview) to a
bundle, validates it, imports it into another vault that already holds an older copy, and shows
that a bundle changed after export is refused.

Run: python examples/bundle_roundtrip.py
"""

from __future__ import annotations

import os
import sqlite3
import tempfile

import ambervault


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mine = os.path.join(tmp, "mine.db")
        bundle = os.path.join(tmp, "images.bundle")
        with ambervault.KVault(mine, chunk_size=64 << 10) as vault:
            vault["img/cat.png"] = b"\x89PNG" + os.urandom(300_000)  # chunked: streamed
            vault["img/cat.json"] = {"size": (640, 480), "tags": ["cat"]}  # typed: copied as stored
            vault.put("img/cat.preview", b"\x89PNG small", ttl=3600)  # keeps the time it has left
            vault["notes/todo"] = "not part of the bundle"
            summary = vault.export_bundle(bundle, prefix="img/")
        print(
            f"exported {summary['keys']} keys, {summary['bytes']:,} bytes, sha256 {summary['digest'][:16]}..."
        )
        assert summary["keys"] == 3

        # The colleague checks the file before trusting it ...
        checked = ambervault.validate_bundle(bundle)
        assert checked["digest"] == summary["digest"]
        print(f"valid: prefix {checked['prefix']!r} from table {checked['source_table']!r}")

        # ... and imports it over an older copy: only what differs is written.
        theirs = os.path.join(tmp, "theirs.db")
        with ambervault.KVault(theirs) as vault:
            vault["img/cat.json"] = {"size": (640, 480), "tags": ["cat"]}  # already the same
            vault["img/dog.png"] = b"removed from the source since"
            vault["music/song"] = b"outside the prefix: left alone"
            result = vault.import_bundle(bundle)
            print(
                f"imported: {result['added']} added, {result['changed']} changed, "
                f"{result['deleted']} deleted, {result['unchanged']} unchanged"
            )
            assert (result["added"], result["deleted"], result["unchanged"]) == (2, 1, 1)
            assert sorted(vault.keys()) == ["img/cat.json", "img/cat.png", "img/cat.preview", "music/song"]
            assert vault["img/cat.json"] == {"size": (640, 480), "tags": ["cat"]}
            expires = vault.expires_at("img/cat.preview")
            assert expires is not None

        # A byte changed after export is caught, and nothing is imported.
        conn = sqlite3.connect(bundle)
        key = b"img/cat.preview"
        (data,) = conn.execute("SELECT inline_data FROM kvault WHERE key = ?", (key,)).fetchone()
        conn.execute("UPDATE kvault SET inline_data = ? WHERE key = ?", (b"\x88" + data[1:], key))
        conn.commit()
        conn.close()
        try:
            ambervault.validate_bundle(bundle)
        except ambervault.BundleError as error:
            print("refused:", error)
            assert "img/cat.preview" in str(error)
        else:
            raise AssertionError("a tampered bundle validated")
    print("done")


if __name__ == "__main__":
    main()
