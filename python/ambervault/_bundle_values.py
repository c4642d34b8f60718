"""Moving and hashing one value as stored (its encoding code and bytes, never decoded) between
two native tables, for bundles.

Raw chunked values are streamed through the native reader and writer, one piece at a time, so a
value of any size costs about one piece of memory. A typed value (encoding other than raw) is
copied whole: the native writer's ``finish`` stores raw bytes only, and ``put`` is the one call
that keeps an encoding code.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional, Tuple

from ._ambervault import KVaultCore
from ._bundle_format import Entry
from ._codec import RAW
from .exceptions import BundleError

#: What a copy found: ``(encoding, size, sha256)`` of the value's stored bytes.
Copied = Tuple[int, int, bytes]


def _piece(core: KVaultCore) -> int:
    # Whole chunks per read: a read never straddles more chunks than it must.
    return max(core.chunk_size, 64 << 10)


def hash_stored(core: KVaultCore, key: Any) -> Optional[Tuple[int, bytes]]:
    """``(size, sha256)`` of the stored bytes of ``key``'s value (streamed), or None if absent."""
    reader = core.open_reader(key)
    if reader is None:
        return None
    digest = hashlib.sha256()
    size = 0
    piece = _piece(core)
    try:
        while True:
            data = reader.read(piece)
            if not data:
                return size, digest.digest()
            digest.update(data)
            size += len(data)
    finally:
        reader.close()


def check_stored(key: Any, expected: Entry, found: Copied) -> None:
    """:class:`BundleError` unless ``found`` (a value's encoding, size and checksum) is what the
    record ``expected`` says."""
    encoding, size, digest = found
    if encoding != expected.encoding:
        raise BundleError(
            f"the value of key {key!r} has encoding {encoding}; its record says {expected.encoding}"
        )
    if size != expected.size:
        raise BundleError(f"the value of key {key!r} has {size} bytes; its record says {expected.size}")
    if digest != expected.sha256:
        raise BundleError(f"the value of key {key!r} does not match its checksum (changed after export)")


def copy_stored(
    source: KVaultCore,
    key: Any,
    target: KVaultCore,
    expires_at_ms: Optional[int],
    expected: Optional[Entry] = None,
) -> Optional[Copied]:
    """Store ``key``'s value from ``source`` into ``target`` exactly as stored (same encoding
    code, same bytes), expiring at ``expires_at_ms``; returns what was copied, or None if the
    key is absent in ``source``. With ``expected``, a value that differs from that record is
    refused with :class:`BundleError` before it becomes visible in ``target``."""
    info = source.info(key)
    if info is None:
        return None
    chunked, encoding = info[4], info[6]
    if encoding == RAW and chunked:
        return _stream(source, key, target, expires_at_ms, expected)
    stored = source.get(key)
    if stored is None:
        return None
    if isinstance(stored, tuple):
        encoding, data = stored
    else:
        encoding, data = RAW, stored
    found = (encoding, len(data), hashlib.sha256(data).digest())
    if expected is not None:
        check_stored(key, expected, found)
    target.put(key, data, expires_at_ms, None, False, encoding)
    return found


def _stream(
    source: KVaultCore,
    key: Any,
    target: KVaultCore,
    expires_at_ms: Optional[int],
    expected: Optional[Entry],
) -> Optional[Copied]:
    reader = source.open_reader(key)
    if reader is None:
        return None
    writer = target.open_writer(None)
    digest = hashlib.sha256()
    size = 0
    piece = _piece(source)
    try:
        while True:
            data = reader.read(piece)
            if not data:
                break
            digest.update(data)
            writer.write(data)
            size += len(data)
        found = (RAW, size, digest.digest())
        if expected is not None:
            check_stored(key, expected, found)
        writer.finish(key, expires_at_ms)
        return found
    except BaseException:
        writer.abort()
        raise
    finally:
        reader.close()
