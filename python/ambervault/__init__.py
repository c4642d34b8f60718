"""ambervault: blobs, typed columns, vectors and text search in one SQLite file.

>>> import ambervault
>>> with ambervault.KVault(":memory:") as vault:
...     vault["greeting"] = b"hello"
...     vault["greeting"]
b'hello'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import exceptions
from ._ambervault import FORMAT_VERSION, SQLITE_VERSION, __version__
from ._file import encryption_available
from .branches import BranchDiff, BranchInfo, MergeResult
from .bundles import validate_bundle
from .columns import Column, ColumnVault
from .events import Event, EventLog
from .exceptions import (
    BundleError,
    ClosedError,
    Conflict,
    CorruptionError,
    DatabaseBusy,
    EncryptionUnavailableError,
    IncompatibleFormatError,
    InvalidArgument,
    IoError,
    KohakuVaultError,
    NotFound,
    ReadOnlyError,
    ValueChangedError,
    VaultError,
    WrongKeyError,
)
from .history import DELETED, AsOfView, Snapshot
from .hybrid import HybridHit, hybrid_search
from .kvault import KVault
from .loaders import KeyDataset
from .migrate import MigrationSummary, migrate_kohakuvault
from .streams import VaultReader, VaultWriter
from .text import TextVault, drop_text_table
from .transaction import Transaction
from .vectors import VectorKVault, drop_vector_table
from .wrappers import Cbor, Json, MsgPack, Pickle

if TYPE_CHECKING:
    from .aio import AsyncColumnVault, AsyncKVault

# The async front (ambervault.aio) is loaded on first use of these names: it imports asyncio,
# which would add tens of milliseconds to every `import ambervault`, async or not.
_LAZY = ("AsyncColumnVault", "AsyncKVault")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'ambervault' has no attribute {name!r}")


__all__ = [
    "DELETED",
    "FORMAT_VERSION",
    "SQLITE_VERSION",
    "AsOfView",
    "AsyncColumnVault",
    "AsyncKVault",
    "BranchDiff",
    "BranchInfo",
    "BundleError",
    "Cbor",
    "ClosedError",
    "Column",
    "ColumnVault",
    "Conflict",
    "CorruptionError",
    "DatabaseBusy",
    "EncryptionUnavailableError",
    "Event",
    "EventLog",
    "HybridHit",
    "IncompatibleFormatError",
    "InvalidArgument",
    "IoError",
    "Json",
    "KVault",
    "KeyDataset",
    "KohakuVaultError",
    "MergeResult",
    "MigrationSummary",
    "MsgPack",
    "NotFound",
    "Pickle",
    "ReadOnlyError",
    "Snapshot",
    "TextVault",
    "Transaction",
    "ValueChangedError",
    "VaultError",
    "VaultReader",
    "VaultWriter",
    "VectorKVault",
    "WrongKeyError",
    "__version__",
    "drop_text_table",
    "drop_vector_table",
    "encryption_available",
    "exceptions",
    "hybrid_search",
    "migrate_kohakuvault",
    "validate_bundle",
]
