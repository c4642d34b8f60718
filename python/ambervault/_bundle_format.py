"""The layout of a bundle file: which tables hold what, the per-key checksum record, the root
digest over every key and record, and the manifest with its own digest.

A bundle is an ordinary ambervault file (rollback journal, no WAL, so it is one file at rest):

- table ``kvault``: every exported key with its value exactly as the source stored it (same
  encoding code, same bytes), without an expiry, so ``KVault(bundle, read_only=True)`` reads the
  values;
- table ``bundle_checksums``: the same keys, each with a :class:`Entry` record (raw bytes);
- table ``bundle_manifest``: one key, ``"manifest"``, a typed dict (see :func:`build_manifest`),
  written last: a file without it is an unfinished export.

``docs/bundles.md`` restates this layout for readers of the files.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any, Dict, Optional

from .exceptions import BundleError

#: What the manifest's ``format`` field holds.
FORMAT = "ambervault-bundle"
#: The newest bundle layout this version writes and reads.
FORMAT_VERSION = 1
#: The checksum of values, keys and the manifest.
ALGORITHM = "sha256"

VALUES_TABLE = "kvault"
CHECKSUMS_TABLE = "bundle_checksums"
MANIFEST_TABLE = "bundle_manifest"
MANIFEST_KEY = "manifest"

#: ``key_kind`` codes as the file format has them (docs/format.md).
KIND_BYTES, KIND_STR, KIND_TUPLE = 0, 1, 2

# record version (u8), encoding code (u8), size (i64), remaining TTL in ms (i64, -1: none),
# SHA-256 of the value's stored bytes (32 bytes); little-endian.
_RECORD = struct.Struct("<BBqq32s")
_RECORD_VERSION = 1
_NO_TTL = -1
# Before each record in the root digest: the key's length (u64) and kind (u8).
_KEY_HEADER = struct.Struct("<QB")

MANIFEST_FIELDS = (
    "format",
    "format_version",
    "source_table",
    "prefix",
    "created_at_ms",
    "keys",
    "bytes",
    "algorithm",
    "digest",
    "writer",
    "manifest_digest",
)


@dataclass(frozen=True)
class Entry:
    """One key's checksum record: how its value is stored and what it hashes to."""

    encoding: int
    size: int
    #: Milliseconds the key had left to live at export; None: it never expires.
    ttl_ms: Optional[int]
    sha256: bytes

    def pack(self) -> bytes:
        """The record's bytes, as the checksums table stores them."""
        ttl = _NO_TTL if self.ttl_ms is None else self.ttl_ms
        return _RECORD.pack(_RECORD_VERSION, self.encoding, self.size, ttl, self.sha256)

    @classmethod
    def unpack(cls, data: bytes, key: Any) -> Entry:
        """The record stored for ``key``; :class:`BundleError` when it is not a valid one."""
        if len(data) != _RECORD.size:
            raise BundleError(f"the checksum record of key {key!r} is damaged ({len(data)} bytes)")
        version, encoding, size, ttl, digest = _RECORD.unpack(data)
        if version != _RECORD_VERSION or size < 0 or (ttl < 0 and ttl != _NO_TTL) or ttl == 0:
            raise BundleError(f"the checksum record of key {key!r} is damaged")
        return cls(encoding, size, None if ttl == _NO_TTL else ttl, digest)


def key_kind(key: Any) -> int:
    """The ``key_kind`` code of a key as a scan returns it."""
    if isinstance(key, tuple):
        return KIND_TUPLE
    return KIND_STR if isinstance(key, str) else KIND_BYTES


class RootDigest:
    """SHA-256 over every key and its record, in key order, with the running totals."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.keys = 0
        self.bytes = 0

    def add(self, raw_key: bytes, kind: int, entry: Entry) -> None:
        """Count the next key (``raw_key`` as the file stores it) and its record."""
        self._hash.update(_KEY_HEADER.pack(len(raw_key), kind))
        self._hash.update(raw_key)
        self._hash.update(entry.pack())
        self.keys += 1
        self.bytes += entry.size

    def hexdigest(self) -> str:
        """The digest so far, as hex."""
        return self._hash.hexdigest()


def _tagged(value: Any) -> Any:
    """A key (str, bytes, int or tuple of them) as JSON that keeps its types apart."""
    if isinstance(value, str):
        return {"str": value}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, bool):  # bool is an int; keys never hold one, but say so if they did
        raise BundleError(f"the manifest prefix holds a bool ({value!r})")
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, tuple):
        return {"tuple": [_tagged(item) for item in value]}
    raise BundleError(f"the manifest prefix holds a {type(value).__name__}")


def manifest_digest(manifest: Dict[str, Any]) -> str:
    """SHA-256 of the manifest's fields (all but ``manifest_digest``) as canonical JSON: sorted
    names, no spaces, the prefix written with its types."""
    fields = {name: manifest[name] for name in MANIFEST_FIELDS if name != "manifest_digest"}
    fields["prefix"] = None if fields["prefix"] is None else _tagged(fields["prefix"])
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def build_manifest(
    source_table: str, prefix: Any, created_at_ms: int, root: RootDigest, writer: str
) -> Dict[str, Any]:
    """The manifest of a finished export."""
    manifest: Dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source_table": source_table,
        "prefix": prefix,
        "created_at_ms": created_at_ms,
        "keys": root.keys,
        "bytes": root.bytes,
        "algorithm": ALGORITHM,
        "digest": root.hexdigest(),
        "writer": writer,
    }
    manifest["manifest_digest"] = manifest_digest({**manifest, "manifest_digest": ""})
    return manifest


def _field(manifest: Dict[str, Any], name: str, kind: Any) -> Any:
    value = manifest[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BundleError(f"the manifest field {name!r} is damaged ({value!r})")
    return value


def check_manifest(manifest: Any) -> Dict[str, Any]:
    """``manifest`` if it is a well-formed manifest of a layout this version reads and its own
    digest matches; :class:`BundleError` naming what is wrong otherwise."""
    if not isinstance(manifest, dict):
        raise BundleError(f"the manifest is damaged (a {type(manifest).__name__}, not a dict)")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"the manifest does not describe an ambervault bundle ({manifest.get('format')!r})")
    version = manifest.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise BundleError(
            f"the bundle has format version {version}; this version of ambervault reads up to "
            f"{FORMAT_VERSION} (written by a newer ambervault?)"
        )
    if set(manifest) != set(MANIFEST_FIELDS):
        missing = sorted(set(MANIFEST_FIELDS) - set(manifest))
        extra = sorted(set(manifest) - set(MANIFEST_FIELDS))
        raise BundleError(f"the manifest's fields were changed (missing {missing}, unexpected {extra})")
    if version != FORMAT_VERSION:
        raise BundleError(f"the manifest field 'format_version' is damaged ({version!r})")
    for name, kind in (
        ("source_table", str),
        ("created_at_ms", int),
        ("keys", int),
        ("bytes", int),
        ("algorithm", str),
        ("digest", str),
        ("writer", str),
        ("manifest_digest", str),
    ):
        _field(manifest, name, kind)
    if manifest["prefix"] is not None and not isinstance(manifest["prefix"], (str, bytes, tuple)):
        raise BundleError(f"the manifest field 'prefix' is damaged ({manifest['prefix']!r})")
    if manifest["algorithm"] != ALGORITHM:
        raise BundleError(f"the bundle's checksums use {manifest['algorithm']!r}; only {ALGORITHM} is known")
    if manifest_digest(manifest) != manifest["manifest_digest"]:
        raise BundleError("the manifest was changed after export (its digest does not match its fields)")
    return manifest
