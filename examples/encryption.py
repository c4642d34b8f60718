"""Encryption at rest: a vault whose file and write-ahead log are encrypted (SQLCipher).

Creates an encrypted vault with a passphrase, shows that its bytes on disk hold no plaintext,
that a wrong key (or none) is refused without touching the file, that columns and backups use
the same key, and changes the key with ``rekey``.

Encryption is a build option (see docs/encryption.md). In a build without it, ``key=`` raises
``EncryptionUnavailableError`` and creates nothing; this example shows that and stops.

Run: python examples/encryption.py
"""

from __future__ import annotations

import os
import tempfile

import ambervault

SECRET = b"card 4111-1111-1111-1111"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "secrets.db")
        if not ambervault.encryption_available():
            try:
                ambervault.KVault(path, key="my passphrase")
            except ambervault.EncryptionUnavailableError as error:
                print("this build has no encryption:", error)
                assert not os.path.exists(path)  # nothing was created, nothing stored in clear
            else:
                raise AssertionError("a build without encryption accepted a key")
            print("done")
            return

        with ambervault.KVault(path, key="my passphrase") as vault:
            vault["card"] = SECRET
            vault["profile"] = {"name": "Ada", "plan": "pro"}  # typed values as usual
            columns = ambervault.ColumnVault(vault)  # columns share the file, and its key
            columns.ensure("logins", "i64").extend([1_700_000_000, 1_700_000_600])
            vault.backup(os.path.join(tmp, "backup.db"))  # encrypted with the same key
        with open(path, "rb") as f:
            on_disk = f.read()
        assert SECRET not in on_disk and not on_disk.startswith(b"SQLite format 3")
        print(f"{len(on_disk):,} bytes on disk, no plaintext")

        before = on_disk
        try:
            ambervault.KVault(path, key="not my passphrase")
        except ambervault.WrongKeyError as error:
            print("wrong key refused:", error)
        with open(path, "rb") as f:
            assert f.read() == before  # nothing was written
        try:
            ambervault.KVault(path)  # no key: indistinguishable from random bytes
        except ambervault.CorruptionError as error:
            print("no key refused:", error)

        with ambervault.KVault(path, key="my passphrase") as vault:
            assert vault["card"] == SECRET
            vault.rekey(os.urandom(32))  # 32 bytes: a raw key, used without derivation
            print("rekeyed; check:", vault.check() or "ok")
        with ambervault.KVault(os.path.join(tmp, "backup.db"), key="my passphrase", read_only=True) as copy:
            assert copy["profile"] == {"name": "Ada", "plan": "pro"}
            print("backup opens with the old passphrase")
    print("done")


if __name__ == "__main__":
    main()
