"""Bundles: a KVault's keys (or those under a prefix) as one self-contained file to hand to
someone else, checked on arrival and imported in one transaction. See ``docs/bundles.md``.

- :meth:`KVault.export_bundle` writes the bundle (``_bundle_export.py``);
- :func:`validate_bundle` recomputes every checksum and the root digest (``_bundle_reader.py``);
- :meth:`KVault.import_bundle` validates, then makes the vault's keys under the bundle's prefix
  equal to the bundle's (``_bundle_apply.py``, whose :func:`apply_bundle` takes any target).

The file's layout is in ``_bundle_format.py``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, Optional

from ._bundle_apply import apply_bundle
from ._bundle_export import export_to
from ._bundle_reader import BundleReader, Progress, check_progress
from .exceptions import ClosedError, InvalidArgument, ReadOnlyError

if TYPE_CHECKING:
    from .kvault import KVault

__all__ = ["BundleReader", "BundlesMixin", "apply_bundle", "import_into", "validate_bundle"]


def validate_bundle(path: Any, *, progress: Optional[Progress] = None) -> Dict[str, Any]:
    """Check the bundle at ``path`` without importing anything: open it read-only, recompute
    the checksum of every value and the root digest over every key and record, and compare
    them, the keys and the totals with the manifest.

    :param progress: called as ``progress("validate", nbytes)`` once per key checked.
    :return: the manifest, with ``path``: ``keys``, ``bytes``, ``digest`` (the root digest),
        ``source_table``, ``prefix``, ``created_at_ms``, ``format_version``, ...
    :raises BundleError: the file is not a bundle, is damaged, or was changed after export
        (a value, a checksum record, a key added or removed, the manifest); the message names
        what is wrong.
    :raises FileNotFoundError: ``path`` does not exist.

    >>> import os, tempfile, ambervault
    >>> out = os.path.join(tempfile.mkdtemp(), "k.bundle")
    >>> v = ambervault.KVault(":memory:"); v["k"] = {"n": 1}
    >>> v.export_bundle(out)["keys"], ambervault.validate_bundle(out)["keys"]
    (1, 1)
    """
    check_progress(progress)
    with BundleReader(path) as bundle:
        return {"path": bundle.path, **bundle.validate(progress)}


def import_into(target: KVault, path: Any, *, progress: Optional[Progress] = None) -> Dict[str, Any]:
    """Validate the bundle at ``path``, then apply it to ``target`` (see
    :meth:`KVault.import_bundle`). The bundle stays open in one read snapshot from validation
    to the end of the import, so what is imported is what was validated."""
    check_progress(progress)
    if target.closed:
        raise ClosedError("vault is closed")
    if target.read_only:
        raise ReadOnlyError("the vault is read-only: a bundle cannot be imported into it")
    with BundleReader(path) as bundle:
        own = target.path != ":memory:" and os.path.exists(target.path)
        if own and os.path.samefile(target.path, bundle.path):
            raise InvalidArgument(f"{bundle.path} is the vault itself; a file cannot import itself")
        bundle.validate(progress)
        return apply_bundle(target, bundle, progress=progress)


class BundlesMixin:
    """:meth:`export_bundle` and :meth:`import_bundle` of a :class:`~ambervault.KVault`."""

    def export_bundle(
        self,
        path: Any,
        branch: Optional[str] = None,
        prefix: Any = None,
        *,
        overwrite: bool = False,
        progress: Optional[Progress] = None,
    ) -> Dict[str, Any]:
        """Write every live key of this table (only those under ``prefix`` if given) to a new
        bundle file at ``path``: an ambervault file holding each value exactly as stored (same
        encoding, same bytes, large values streamed), the time each expiring key has left, a
        SHA-256 checksum per key, and a manifest with a root digest over all keys and checksums.
        The keys are read from one snapshot while other writers go on. The file is written
        under a temporary name in the same directory and renamed when complete, so ``path``
        never holds a partial bundle.

        :param branch: export this branch of the table (see :meth:`create_branch`) instead of
            this handle's.
        :param prefix: only keys starting with this (``str``, ``bytes`` or a tuple, as in
            :meth:`keys`).
        :param overwrite: replace an existing file at ``path`` (otherwise ``FileExistsError``).
        :param progress: called as ``progress("export", nbytes)`` once per key written.
        :return: the manifest, with ``path``: ``keys``, ``bytes``, ``digest`` (the root digest,
            hex), ``source_table``, ``prefix``, ``created_at_ms``, ``format_version``, ...

        >>> import os, tempfile
        >>> from ambervault import KVault
        >>> out = os.path.join(tempfile.mkdtemp(), "img.bundle")
        >>> v = KVault(":memory:"); v["img:1"] = b"\\x89PNG"; v["txt:1"] = "hi"
        >>> summary = v.export_bundle(out, prefix="img:")
        >>> summary["keys"], summary["bytes"], len(summary["digest"])
        (1, 4, 64)
        """
        kv: KVault = self  # type: ignore[assignment]
        if branch is not None:
            kv = kv.branch(branch)
        return export_to(kv, path, prefix, overwrite=overwrite, progress=progress)

    def import_bundle(
        self, path: Any, *, as_branch: Optional[str] = None, progress: Optional[Progress] = None
    ) -> Dict[str, Any]:
        """Validate the bundle at ``path`` (as :func:`~ambervault.validate_bundle`), then make
        this table's keys under the bundle's prefix (every key if it had none) exactly the
        bundle's: missing keys are added, different values replaced, keys the bundle lacks
        deleted, and identical values (same encoding, size and checksum) left unwritten. An
        expiring key gets the time it had left at export, counted from now. Keys outside the
        prefix are never touched. Everything happens in one transaction: after an error, or a
        crash, the table is as it was.

        :param as_branch: import into a new branch of that name, forked from this handle's
            branch, instead of into this branch: ``diff`` then shows what the bundle changes
            and ``merge`` applies it. The fork and the import are one transaction.
        :param progress: called as ``progress("validate", nbytes)`` once per key checked, then
            ``progress("import", nbytes)`` once per key handled (bytes written, 0 for a key
            deleted or left as it was).
        :return: the manifest, with ``path`` and the counts ``added``, ``changed``,
            ``deleted``, ``unchanged`` and ``bytes_written``.
        :raises BundleError: the bundle did not validate; nothing was changed.

        >>> import os, tempfile
        >>> from ambervault import KVault
        >>> out = os.path.join(tempfile.mkdtemp(), "a.bundle")
        >>> a = KVault(":memory:"); a["k1"] = b"new"; a["k2"] = [1, 2]
        >>> _ = a.export_bundle(out)
        >>> b = KVault(":memory:"); b["k1"] = b"old"; b["k3"] = b"gone"
        >>> done = b.import_bundle(out)
        >>> done["added"], done["changed"], done["deleted"], dict(b.items())
        (1, 1, 1, {'k1': b'new', 'k2': [1, 2]})
        """
        kv: KVault = self  # type: ignore[assignment]
        if as_branch is None:
            return import_into(kv, path, progress=progress)
        if not isinstance(as_branch, str):
            raise TypeError(f"as_branch must be a str, not {type(as_branch).__name__}")
        with kv.transaction():
            return import_into(kv.create_branch(as_branch), path, progress=progress)
