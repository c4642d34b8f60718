"""Writing a bundle: every live key of a KVault (under a prefix), its value as stored, its
checksum record, then the manifest, into a temporary file that is renamed into place when it
is complete and on disk.

A crash at any point leaves at most a temporary file (``.NAME.bundle-*.tmp``, which never
validates: its manifest is written last) and never a half-written file under the bundle's name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional

from ._ambervault import KVaultCore, __version__, raw_key_bytes
from ._bundle_format import (
    CHECKSUMS_TABLE,
    MANIFEST_KEY,
    MANIFEST_TABLE,
    VALUES_TABLE,
    Entry,
    RootDigest,
    build_manifest,
    key_kind,
)
from ._bundle_reader import Progress, check_progress
from ._bundle_values import copy_stored
from ._codec import RAW, ValueCodec
from ._file import VaultFile, fspath
from .exceptions import ClosedError, InvalidArgument

if TYPE_CHECKING:
    from .kvault import KVault

_PAGE = 1000
_SIDE_FILES = ("-journal", "-wal", "-shm")


@contextlib.contextmanager
def _frozen(source: KVault) -> Iterator[KVaultCore]:
    """The source table as of one moment while other writers go on: a snapshot on a connection
    of its own; in memory (no second connection can see the data) a transaction instead."""
    if source.path == ":memory:":
        with source.transaction():
            yield source._native
    else:
        with source.snapshot() as snap:
            yield snap.kv._native


def _check_destination(source: KVault, dest: str, overwrite: bool) -> str:
    """The directory of ``dest``, after refusing a destination that must not be written."""
    directory = os.path.dirname(dest)
    if not os.path.isdir(directory):
        raise FileNotFoundError(errno.ENOENT, "the bundle's directory does not exist", directory)
    if os.path.isdir(dest):
        raise IsADirectoryError(errno.EISDIR, "the bundle path is a directory", dest)
    if os.path.lexists(dest):
        if not overwrite:
            raise FileExistsError(errno.EEXIST, "file exists (pass overwrite=True to replace it)", dest)
        if source.path != ":memory:" and os.path.samefile(source.path, dest):
            raise InvalidArgument(f"{dest} is the vault being exported; a bundle cannot replace it")
    return directory


def export_to(
    source: KVault,
    path: Any,
    prefix: Any = None,
    *,
    overwrite: bool = False,
    progress: Optional[Progress] = None,
) -> Dict[str, Any]:
    """Write a bundle of ``source``'s live keys (under ``prefix``) to ``path``; returns its
    manifest plus ``path`` (see :meth:`KVault.export_bundle`)."""
    given = fspath(path, "a bundle path must be str or os.PathLike")
    dest = os.path.abspath(given)
    if prefix is not None:
        raw_key_bytes(prefix)  # TypeError / InvalidArgument for a prefix no key can have
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, not {type(overwrite).__name__}")
    check_progress(progress)
    if source.closed:
        raise ClosedError("vault is closed")
    directory = _check_destination(source, dest, overwrite)
    partial = os.path.join(
        directory, f".{os.path.basename(dest)}.bundle-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    )
    try:
        with _frozen(source) as frozen:
            manifest = _write(partial, frozen, source, prefix, progress)
        _fsync(partial)
        _publish(partial, dest, overwrite)
        with contextlib.suppress(OSError):  # not every platform opens directories
            _fsync(directory)
    except BaseException:
        for name in (partial, *(partial + suffix for suffix in _SIDE_FILES)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)
        raise
    return {"path": given, **manifest}


def _write(
    partial: str, frozen: KVaultCore, source: KVault, prefix: Any, progress: Optional[Progress]
) -> Dict[str, Any]:
    now_ms = source._now_ms()
    # No WAL: the finished file is one file, and reading it read-only creates no side files.
    file = VaultFile(partial, enable_wal=False, plain=True)
    try:
        values = KVaultCore(file.native, VALUES_TABLE, source.chunk_size)
        checksums = KVaultCore(file.native, CHECKSUMS_TABLE, source.chunk_size)
        manifest_table = KVaultCore(file.native, MANIFEST_TABLE, source.chunk_size)
        root = RootDigest()
        # One transaction for the keys: one sync instead of one per key.
        with file.transaction():
            for key in _keys(frozen, prefix):
                entry = _copy_one(frozen, key, values, now_ms)
                if entry is None:
                    continue  # expired while the export ran
                checksums.put(key, entry.pack(), None, None, False, RAW)
                root.add(raw_key_bytes(key), key_kind(key), entry)
                if progress is not None:
                    progress("export", entry.size)
        manifest = build_manifest(source.table, prefix, now_ms, root, f"ambervault {__version__}")
        data, encoding = ValueCodec().encode(manifest)
        # Last, in a transaction of its own: a file without it is an unfinished export.
        manifest_table.put(MANIFEST_KEY, data, None, None, False, encoding)
    finally:
        file.close()
    for suffix in _SIDE_FILES:
        if os.path.exists(partial + suffix):
            raise OSError(f"{partial + suffix} was left behind; the bundle was not finished")
    return manifest


def _keys(core: KVaultCore, prefix: Any) -> Iterator[Any]:
    after: Optional[bytes] = None
    while True:
        keys, after = core.scan_keys(prefix, None, None, after, _PAGE)
        if not keys:
            return
        yield from keys


def _copy_one(frozen: KVaultCore, key: Any, values: KVaultCore, now_ms: int) -> Optional[Entry]:
    """Copy one value into the bundle (without an expiry: the bundle keeps it) and return its
    record, with the time the key had left to live; None for a key that is gone."""
    info = frozen.info(key)
    if info is None:
        return None
    expires = info[5]
    ttl_ms = None if expires is None else expires - now_ms
    if ttl_ms is not None and ttl_ms <= 0:
        return None
    copied = copy_stored(frozen, key, values, None)
    if copied is None:
        return None
    encoding, size, digest = copied
    return Entry(encoding, size, ttl_ms, digest)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(partial: str, dest: str, overwrite: bool) -> None:
    """Give the finished file its name: replacing ``dest`` only with ``overwrite``, and never a
    file that appeared at ``dest`` while the export ran otherwise."""
    if overwrite:
        os.replace(partial, dest)
        return
    try:
        os.link(partial, dest)  # fails, rather than replaces, if dest exists
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "file appeared while the bundle was written", dest) from None
    except OSError:  # a file system without hard links
        if os.path.lexists(dest):
            raise FileExistsError(errno.EEXIST, "file appeared while the bundle was written", dest) from None
        os.replace(partial, dest)
        return
    os.remove(partial)
