"""KeyDataset: a map-style dataset over a KVault table, for data-loader worker processes.

A dataset is handed to worker processes by ``fork`` (the object is inherited) or by ``spawn``
(the object is pickled). Either way a worker must not use the vault handle of the process that
built the dataset: a forked child inherits that handle's lock in whatever state another thread
of the parent left it, and a spawned child cannot receive it at all. So the dataset keeps the
vault's path and open arguments, uses the handle it was given only in the process that built
it, and opens its own handle on first use in any other process (once per process).
"""

from __future__ import annotations

import operator
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from .exceptions import InvalidArgument, NotFound
from .kvault import Key, KVault

_MISSING: Any = object()


class KeyDataset:
    """The values of a list of keys of a KVault table, by position: ``dataset[i]`` is the value
    of the ``i``-th key. It has the interface of a map-style PyTorch dataset (``__len__``,
    ``__getitem__``, and ``__getitems__`` for batches, which reads a batch in one round trip),
    without depending on PyTorch.

    Worker processes can share it however they were started. It pickles as the vault's path,
    its open arguments and the keys (never a connection), and a process other than the one
    that built it opens its own handle on the file at its first read.

    :param vault_or_path: an open :class:`~ambervault.KVault` (used as it is in this process),
        or the path of a vault file (opened on first use, with ``open_args``). An in-memory
        vault is refused: worker processes could not open it.
    :param keys: the keys, in dataset order; by default every key of the table, in key order,
        listed once here (later writes do not change the dataset's length or order).
    :param table: the table, when ``vault_or_path`` is a path (default ``"kvault"``); for a
        vault, its own table (another name is refused).
    :param transform: applied to each value before it is returned (it must pickle for
        ``spawn`` workers: a module-level function, not a lambda).
    :param decode: return values as ``vault[key]`` does (typed values decoded); with ``False``,
        return the bytes stored for each key, whatever its encoding.
    :param open_args: other :class:`~ambervault.KVault` arguments (e.g. ``read_only=True``),
        only with a path.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "media.db")
    >>> with KVault(path) as vault:
    ...     vault.update({"img:1": b"one", "img:2": b"two", "label": 3})
    ...     ds = KeyDataset(vault, vault.keys(prefix="img:"), transform=len)
    ...     len(ds), ds[0], ds[-1], ds.__getitems__([1, 0])
    (2, 3, 3, [3, 3])
    """

    def __init__(
        self,
        vault_or_path: Union[KVault, str, os.PathLike[str]],
        keys: Optional[Iterable[Key]] = None,
        *,
        table: Optional[str] = None,
        transform: Optional[Callable[[Any], Any]] = None,
        decode: bool = True,
        **open_args: Any,
    ) -> None:
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, not {type(transform).__name__}")
        vault: Optional[KVault] = None
        if isinstance(vault_or_path, KVault):
            vault = vault_or_path
            if open_args:
                raise TypeError("open arguments are only accepted with a path (the vault is already open)")
            if table is not None and table != vault.table:
                raise InvalidArgument(f"table={table!r} differs from the vault's table {vault.table!r}")
            args = dict(vault._open_args)
        else:
            from ._file import fspath

            args = {**open_args, "path": fspath(vault_or_path), "table": "kvault" if table is None else table}
        if args["path"] == ":memory:":
            raise InvalidArgument(
                "an in-memory vault cannot back a KeyDataset (worker processes could not open it)"
            )
        self._open_args: Dict[str, Any] = args
        self.transform = transform
        self.decode = bool(decode)
        # The handle of the process that opened or was given it; other processes open their own.
        self._vault: Optional[KVault] = vault
        self._owned = vault is None
        self._pid = os.getpid()
        if keys is None:
            keys = self._handle().keys()
        elif isinstance(keys, (str, bytes)):
            raise TypeError("keys must be an iterable of keys, not a single key")
        self._keys: Tuple[Key, ...] = tuple(keys)

    # -- the handle ------------------------------------------------------------------------------
    def _handle(self) -> KVault:
        """This process's vault handle, opened here first if this process has none yet."""
        vault = self._vault
        if vault is None or self._pid != os.getpid():
            vault = KVault(**self._open_args)
            self._vault, self._owned, self._pid = vault, True, os.getpid()
        return vault

    def close(self) -> None:
        """Close the handle this dataset opened in this process (a vault passed in stays
        open). The dataset stays usable: the next read opens a handle again."""
        vault, self._vault = self._vault, None
        if vault is not None and self._owned and self._pid == os.getpid():
            vault.close()

    @property
    def path(self) -> str:
        """The vault file."""
        return str(self._open_args["path"])

    @property
    def table(self) -> str:
        """The table the values are read from."""
        return str(self._open_args["table"])

    @property
    def keys(self) -> Tuple[Key, ...]:
        """The keys, in dataset order."""
        return self._keys

    # -- items -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._keys)

    def _key(self, index: Any) -> Key:
        try:
            return self._keys[operator.index(index)]
        except IndexError:
            raise IndexError(f"KeyDataset index {index} out of range for {len(self._keys)} keys") from None
        except TypeError:
            raise TypeError(f"KeyDataset indices must be integers, not {type(index).__name__}") from None

    def __getitem__(self, index: int) -> Any:
        key = self._key(index)
        vault = self._handle()
        if self.decode:
            value = vault.get(key, _MISSING)
        else:
            vault._backend.sync_key(key)
            value = _stored_bytes(vault._native.get(key))
        if value is _MISSING:
            raise NotFound(key)
        return value if self.transform is None else self.transform(value)

    def __getitems__(self, indices: Sequence[int]) -> List[Any]:
        """The items at ``indices``, read in one round trip (PyTorch's ``DataLoader`` calls
        this for a batch when the dataset has it)."""
        keys = [self._key(i) for i in indices]
        vault = self._handle()
        if self.decode:
            values = vault.get_many(keys, _MISSING)
        else:
            vault._backend.sync()
            values = [_stored_bytes(stored) for stored in vault._native.get_many(keys)]
        for key, value in zip(keys, values):
            if value is _MISSING:
                raise NotFound(key)
        transform = self.transform
        return values if transform is None else [transform(v) for v in values]

    # -- pickling --------------------------------------------------------------------------------
    def __getstate__(self) -> Dict[str, Any]:
        # The path, open arguments and keys: never the handle, which cannot cross processes.
        return {
            "open_args": self._open_args,
            "keys": self._keys,
            "transform": self.transform,
            "decode": self.decode,
        }

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._open_args = state["open_args"]
        self._keys = state["keys"]
        self.transform = state["transform"]
        self.decode = state["decode"]
        self._vault = None
        self._owned = True
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"<ambervault.KeyDataset {self.path!r} table={self.table!r} keys={len(self._keys)}>"


def _stored_bytes(stored: Any) -> Any:
    """The bytes of a native read's result (raw bytes, or ``(encoding, bytes)``)."""
    if stored is None:
        return _MISSING
    return stored[1] if type(stored) is tuple else stored
