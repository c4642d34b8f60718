"""Making a KVault's keys under a bundle's prefix exactly the bundle's: keys the bundle lacks are
deleted, keys it holds are added or replaced, and keys whose stored value is already identical
(same encoding, size and checksum) are left as they are, all in one transaction.

:func:`apply_bundle` takes any target KVault, so the same logic can fill another handle (a
branch, say) from a bundle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Tuple

from ._ambervault import KVaultCore, raw_key_bytes
from ._bundle_format import Entry, key_kind
from ._bundle_reader import BundleReader, Progress, check_progress
from ._bundle_values import copy_stored, hash_stored
from .exceptions import BundleError, ReadOnlyError

if TYPE_CHECKING:
    from .kvault import KVault

_PAGE = 1000


def _target_keys(core: KVaultCore, prefix: Any) -> Iterator[Tuple[Any, bytes]]:
    """``(key, raw key)`` of the target's live keys under ``prefix``, in key order, a page at a
    time. Keys written or deleted behind the cursor do not disturb it: each page starts after
    the last key of the one before."""
    after: Optional[bytes] = None
    while True:
        keys, after = core.scan_keys(prefix, None, None, after, _PAGE)
        if not keys:
            return
        for key in keys:
            yield key, raw_key_bytes(key)


def _identical(core: KVaultCore, ours: Any, theirs: Any, entry: Entry, info: Tuple[Any, ...]) -> bool:
    """Whether the target already stores the bundle's value under the same kind of key: size
    and encoding first (``info``, free), then the checksum of the stored bytes (one streamed
    read)."""
    if key_kind(ours) != key_kind(theirs) or info[0] != entry.size or info[6] != entry.encoding:
        return False
    found = hash_stored(core, ours)
    return found is not None and found[1] == entry.sha256


class _Apply:
    """One application of a bundle to a target table, inside the caller's transaction."""

    def __init__(self, core: KVaultCore, bundle: BundleReader, now_ms: int, progress: Optional[Progress]):
        self.core = core
        self.bundle = bundle
        self.now_ms = now_ms
        self.progress = progress
        self.tally = {"added": 0, "changed": 0, "deleted": 0, "unchanged": 0, "bytes_written": 0}

    def _expiry(self, entry: Entry) -> Optional[int]:
        return None if entry.ttl_ms is None else self.now_ms + entry.ttl_ms

    def _report(self, nbytes: int) -> None:
        if self.progress is not None:
            self.progress("import", nbytes)

    def delete(self, key: Any) -> None:
        self.core.delete(key)
        self.tally["deleted"] += 1
        self._report(0)

    def write(self, key: Any, entry: Entry, what: str) -> None:
        copied = copy_stored(self.bundle.values, key, self.core, self._expiry(entry), entry)
        if copied is None:
            raise BundleError(f"key {key!r} has a checksum record but no value in the bundle")
        self.tally[what] += 1
        self.tally["bytes_written"] += entry.size
        self._report(entry.size)

    def keep_or_replace(self, ours: Any, theirs: Any, entry: Entry) -> None:
        info = self.core.info(ours)
        if info is None or not _identical(self.core, ours, theirs, entry, info):
            self.write(theirs, entry, "changed")
            return
        expires = self._expiry(entry)
        if info[5] != expires:
            self.core.touch(ours, expires)  # the lifetime moves; the value stays
        self.tally["unchanged"] += 1
        self._report(0)

    def run(self, prefix: Any) -> None:
        """Walk the target's keys and the bundle's records side by side, in key order."""
        ours = _target_keys(self.core, prefix)
        theirs = self.bundle.entries()
        mine = next(ours, None)
        other = next(theirs, None)
        while mine is not None or other is not None:
            if mine is not None and (other is None or mine[1] < other[1]):
                self.delete(mine[0])
                mine = next(ours, None)
            elif other is not None and (mine is None or other[1] < mine[1]):
                self.write(other[0], other[2], "added")
                other = next(theirs, None)
            else:
                assert mine is not None and other is not None
                self.keep_or_replace(mine[0], other[0], other[2])
                mine = next(ours, None)
                other = next(theirs, None)


def apply_bundle(
    target: KVault, bundle: BundleReader, *, progress: Optional[Progress] = None
) -> Dict[str, Any]:
    """Make ``target``'s keys under the bundle's prefix (every key without one) exactly the
    bundle's keys, values (encoding and bytes) and remaining lifetimes, in one transaction of
    ``target``'s file: it commits whole or, on any error or crash, leaves ``target`` as it was.
    ``bundle`` should have been validated (:meth:`BundleReader.validate`); values are checked
    against their records again as they are copied.

    :return: the bundle's manifest with ``path`` and the counts ``added``, ``changed``,
        ``deleted``, ``unchanged`` and ``bytes_written``.
    :raises ReadOnlyError: ``target`` was opened read-only (nothing is read).
    :raises BundleError: a value does not match its record (nothing is changed).
    """
    check_progress(progress)
    if target.read_only:
        raise ReadOnlyError("the vault is read-only: a bundle cannot be imported into it")
    manifest = bundle.manifest()
    with target.transaction():
        step = _Apply(target._native, bundle, target._now_ms(), progress)
        step.run(manifest["prefix"])
    return {"path": bundle.path, **manifest, **step.tally}
