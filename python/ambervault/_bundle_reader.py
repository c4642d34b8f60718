"""BundleReader: a bundle file opened read-only in one read snapshot, its manifest and checksum
records, and the validation that recomputes every checksum and the root digest."""

from __future__ import annotations

import errno
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, cast

from ._ambervault import KVaultCore, raw_key_bytes
from ._bundle_format import (
    CHECKSUMS_TABLE,
    MANIFEST_KEY,
    MANIFEST_TABLE,
    VALUES_TABLE,
    Entry,
    RootDigest,
    check_manifest,
    key_kind,
)
from ._bundle_values import check_stored, hash_stored
from ._codec import MSGPACK, ValueCodec
from ._file import VaultFile, fspath
from .exceptions import BundleError, VaultError

#: Called once per key with the stage (``"export"``, ``"validate"``, ``"import"``) and the
#: bytes that key moved or checked.
Progress = Callable[[str, int], None]

_PAGE = 1000
_SQLITE_MAGIC = b"SQLite format 3\x00"
# A SQLite file is at least one page; its header alone is 100 bytes.
_SQLITE_HEADER = 100


def check_progress(progress: Any) -> Optional[Progress]:
    """``progress`` if it is None or callable, else ``TypeError``."""
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable (stage, nbytes) or None, not {type(progress).__name__}")
    return cast(Optional[Progress], progress)


def _check_header(path: str) -> None:
    """Refuse what is not a SQLite file before SQLite sees it."""
    with open(path, "rb") as f:
        header = f.read(_SQLITE_HEADER)
    if len(header) < _SQLITE_HEADER or not header.startswith(_SQLITE_MAGIC):
        raise BundleError(f"{path} is not an ambervault bundle (not a SQLite file)")


class BundleReader:
    """A bundle file, opened read-only. Every read happens in one read transaction, so the
    manifest, the records and the values all come from the same moment of the file.

    :raises FileNotFoundError: ``path`` does not exist.
    :raises BundleError: ``path`` is not an ambervault bundle file.
    """

    def __init__(self, path: Any) -> None:
        self.path = fspath(path, "a bundle path must be str or os.PathLike")
        if not os.path.exists(self.path):
            raise FileNotFoundError(errno.ENOENT, "bundle does not exist", self.path)
        if not os.path.isfile(self.path):
            raise BundleError(f"{self.path} is not an ambervault bundle (not a file)")
        _check_header(self.path)
        try:
            # No WAL: a read-only open of a rollback-journal file creates no side files.
            self._file = VaultFile(self.path, read_only=True, enable_wal=False, plain=True)
        except VaultError as e:
            raise BundleError(f"{self.path} is damaged or not an ambervault bundle ({e})") from e
        try:
            self._problems = self._file.native.check()
            self._file.native.begin_snapshot()
            self.values = self._table(VALUES_TABLE)
            self.checksums = self._table(CHECKSUMS_TABLE)
            self._manifest_table = self._table(MANIFEST_TABLE)
        except VaultError as e:
            self._file.close()
            if isinstance(e, BundleError):
                raise
            raise BundleError(f"{self.path} is damaged ({e})") from e
        except BaseException:
            self._file.close()
            raise
        self._manifest: Optional[Dict[str, Any]] = None

    def _table(self, name: str) -> KVaultCore:
        try:
            return KVaultCore(self._file.native, name, 1 << 20)
        except VaultError as e:
            raise BundleError(f"{self.path} is not an ambervault bundle (no table {name!r}: {e})") from e

    # -- reads -----------------------------------------------------------------------------------
    def manifest(self) -> Dict[str, Any]:
        """The manifest, checked for form and against its own digest (not yet against the
        keys: see :meth:`validate`)."""
        if self._manifest is None:
            stored = self._read(self._manifest_table.get, MANIFEST_KEY)
            if stored is None:
                raise BundleError(f"{self.path} has no manifest (an unfinished export, or not a bundle)")
            if not isinstance(stored, tuple) or stored[0] != MSGPACK:
                raise BundleError("the manifest is damaged (not a stored dict)")
            try:
                value = ValueCodec(auto_pack=True, allow_pickle=False).decode(*stored)
            except Exception as e:
                raise BundleError(f"the manifest is damaged ({e})") from e
            self._manifest = check_manifest(value)
        return self._manifest

    def _read(self, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)``, with a failure to read the file reported as a damaged bundle."""
        try:
            return call(*args)
        except BundleError:
            raise
        except VaultError as e:
            raise BundleError(f"{self.path} is damaged ({e})") from e

    def _pages(self, scan: Callable[[Optional[bytes]], Tuple[List[Any], Optional[bytes]]]) -> Iterator[Any]:
        after: Optional[bytes] = None
        while True:
            page, after = self._read(scan, after)
            if not page:
                return
            yield from page

    def value_keys(self) -> Iterator[Any]:
        """The keys of the values table, in key order."""
        return self._pages(lambda after: self.values.scan_keys(None, None, None, after, _PAGE))

    def entries(self) -> Iterator[Tuple[Any, bytes, Entry]]:
        """``(key, raw key, record)`` of every checksum record, in key order."""
        for key, stored in self._pages(
            lambda after: self.checksums.scan_items(None, None, None, after, _PAGE, 16 << 20)
        ):
            if isinstance(stored, tuple):
                raise BundleError(f"the checksum record of key {key!r} is damaged (encoding {stored[0]})")
            yield key, raw_key_bytes(key), Entry.unpack(stored, key)

    # -- validation ------------------------------------------------------------------------------
    def validate(self, progress: Optional[Progress] = None) -> Dict[str, Any]:
        """Recompute every value's checksum and the root digest and compare them, the keys and
        the totals with the records and the manifest. Returns the manifest; raises
        :class:`BundleError` naming the first thing that does not match."""
        if self._problems:
            raise BundleError(f"{self.path} is damaged: {'; '.join(self._problems[:3])}")
        manifest = self.manifest()
        root = RootDigest()
        values = self.value_keys()
        for key, raw, entry in self.entries():
            value_key = next(values, None)
            if value_key is None or raw_key_bytes(value_key) > raw:
                raise BundleError(f"key {key!r} has a checksum record but no value in the bundle")
            if raw_key_bytes(value_key) < raw:
                raise BundleError(f"key {value_key!r} has a value but no checksum record in the bundle")
            if key_kind(value_key) != key_kind(key):
                raise BundleError(f"key {value_key!r} is stored as {key!r} in the checksum records")
            self._check_value(key, entry)
            root.add(raw, key_kind(key), entry)
            if progress is not None:
                progress("validate", entry.size)
        extra = next(values, None)
        if extra is not None:
            raise BundleError(f"key {extra!r} has a value but no checksum record in the bundle")
        self._check_totals(manifest, root)
        return manifest

    def _check_value(self, key: Any, entry: Entry) -> None:
        info = self._read(self.values.info, key)
        if info is None:
            raise BundleError(f"key {key!r} has a checksum record but no value in the bundle")
        if info[5] is not None:
            raise BundleError(f"the value of key {key!r} was given an expiry after export")
        found = self._read(hash_stored, self.values, key)
        if found is None:
            raise BundleError(f"key {key!r} has a checksum record but no value in the bundle")
        check_stored(key, entry, (info[6], found[0], found[1]))

    def _check_totals(self, manifest: Dict[str, Any], root: RootDigest) -> None:
        if root.keys != manifest["keys"]:
            raise BundleError(f"the bundle holds {root.keys} keys, its manifest says {manifest['keys']}")
        if root.bytes != manifest["bytes"]:
            raise BundleError(
                f"the bundle's values hold {root.bytes} bytes, its manifest says {manifest['bytes']}"
            )
        if root.hexdigest() != manifest["digest"]:
            raise BundleError("the keys and checksum records do not match the manifest's root digest")
        prefix = manifest["prefix"]
        if prefix is not None:
            inside = self._read(self.values.count, prefix, None, None)
            if inside != root.keys:
                raise BundleError(
                    f"{root.keys - inside} keys of the bundle are outside its prefix {prefix!r}"
                )

    # -- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        """End the read transaction and close the file. Idempotent."""
        if self._file.closed:
            return
        try:
            self._file.native.commit()
        finally:
            self._file.close()

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
