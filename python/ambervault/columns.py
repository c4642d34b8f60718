"""ColumnVault: named, typed, growable columns that behave like Python lists."""

from __future__ import annotations

import contextlib
import operator
import os
import threading
import time
from collections.abc import MutableSequence
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from . import _arrow, _codec
from ._ambervault import ColumnCore, ColumnVaultCore, PendingAppends, canonical_dtype
from ._file import KeyArg, VaultFile, fspath
from .cache import BatchingCache, CacheControls
from .exceptions import ClosedError, InvalidArgument, NotFound
from .kvault import KVault
from .transaction import Transaction

_PAGE = 8192  # elements per round trip when iterating

# numpy dtype of each fixed-width column dtype (little-endian, as stored).
_NUMPY = {
    "i8": "<i1",
    "i16": "<i2",
    "i32": "<i4",
    "i64": "<i8",
    "u8": "<u1",
    "u16": "<u2",
    "u32": "<u4",
    "u64": "<u8",
    "f16": "<f2",
    "f32": "<f4",
    "f64": "<f8",
    "bool": "?",
}


def _numpy_dtype(dtype: str) -> Optional[str]:
    if dtype.startswith("bytes:"):
        return "S" + dtype[6:]
    return _NUMPY.get(dtype)


_numpy: Any = None


def _np() -> Any:
    global _numpy
    if _numpy is None:
        try:
            import numpy
        except ImportError as e:  # pragma: no cover - numpy is installed in every test environment
            raise ImportError("this operation needs numpy: pip install numpy") from e
        _numpy = numpy
    return _numpy


def _is_array(values: Any) -> bool:
    """Whether ``values`` should take the bulk path (a numpy array, array.array or memoryview)."""
    if type(values).__module__ == "numpy" and hasattr(values, "__array_interface__"):
        return True
    if isinstance(values, memoryview):
        return values.format not in ("B", "b", "c") or values.ndim != 1
    return type(values).__name__ == "array" and type(values).__module__ == "array"


def _index(idx: Any) -> int:
    try:
        return operator.index(idx)
    except TypeError:
        raise TypeError(f"column indices must be integers or slices, not {type(idx).__name__}") from None


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _as_array(raw: Any, npdtype: Any) -> Any:
    """A numpy array over the bytes of a raw read, without copying them."""
    np = _numpy or _np()
    if type(raw) is bytearray:
        return np.frombuffer(raw, npdtype)
    # A large read arrives in a native buffer numpy wraps through __array_interface__.
    return np.asarray(raw).view(npdtype)


def _cast_exact(array: Any, target: Any, dtype: str) -> Any:
    """``array`` as a C-contiguous array of numpy dtype ``target`` (same shape), or an error
    when the cast could lose anything: integers out of range raise ``OverflowError`` (never
    wrapped around), floats that overflow to inf too, and casts between kinds that are not
    value-preserving (float to int, str to number, ...) raise ``TypeError``."""
    np = _numpy or _np()
    if array.dtype == target:
        return np.ascontiguousarray(array)
    if target.kind in "iu" and array.dtype.kind in "iub":
        if array.size and (array.min() < np.iinfo(target).min or array.max() > np.iinfo(target).max):
            raise OverflowError(f"array values are out of range for dtype {dtype}")
        return np.ascontiguousarray(array.astype(target))
    if target.kind == "f" and array.dtype.kind in "iubf":
        with np.errstate(over="ignore"):  # overflow is detected below and raised as an error
            converted = array.astype(target)
        if np.isinf(converted).sum() != np.isinf(array).sum():
            raise OverflowError(f"array values are out of range for dtype {dtype}")
        return np.ascontiguousarray(converted)
    if target.kind == "b" and array.dtype.kind == "b":
        return np.ascontiguousarray(array.astype(target))
    if target.kind == "S" and array.dtype.kind == "S":
        if array.dtype.itemsize > target.itemsize:
            raise ValueError(f"array items are longer than the column's {target.itemsize} bytes")
        return np.ascontiguousarray(array.astype(target))
    raise TypeError(f"cannot store an array of {array.dtype} in a column of dtype {dtype}")


def _bound(value: Any) -> Optional[int]:
    """A slice bound for the native reads: ``None`` or an int clamped to the i64 range (bounds
    are clamped to the length anyway, so clamping first changes nothing)."""
    if value is None or (type(value) is int and _I64_MIN <= value <= _I64_MAX):
        return value
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError("slice indices must be integers or None or have an __index__ method") from None
    return min(max(value, _I64_MIN), _I64_MAX)


class ColumnCache(BatchingCache):
    """Appends held per column and written in one transaction spanning every column that has
    pending appends, so columns logged side by side stay the same length on disk.

    The appends themselves are checked, encoded and held natively (:class:`PendingAppends`):
    appending takes no Python lock. Flushes take the cache's lock, so :meth:`acquire` (and the
    transactions that use it) hold them off.
    """

    def __init__(
        self,
        vault: ColumnVault,
        cap_bytes: int,
        flush_threshold: int,
        flush_interval: Optional[float],
        auto_flush: bool = True,
    ) -> None:
        self._vault = vault
        self._buffer = PendingAppends(vault._native)
        super().__init__(cap_bytes, flush_threshold, flush_interval, auto_flush)

    def _forget(self) -> None:
        # A new buffer rather than clearing the old one: after a fork the old one's mutex may
        # have been held by a parent thread.
        self._buffer = PendingAppends(self._vault._native)

    def _pending(self) -> bool:
        return self._buffer.nbytes > 0

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return self._buffer.nbytes

    def holds(self, column: Column) -> bool:
        """Whether appends to ``column`` are pending here."""
        return self._buffer.holds(column._core)

    def add_one(self, column: Column, value: Any) -> None:
        """Hold one element for ``column`` (checked now: a bad element raises, nothing held)."""
        held = self._buffer.add(column._core, value, self.cap_bytes)
        if held is None:
            self._add_slow(column, [value])
        else:
            self._after_add(held)

    def add(self, column: Column, values: List[Any]) -> None:
        """Hold ``values`` for ``column`` (all checked first: a bad one raises, none held)."""
        held = self._buffer.add_many(column._core, values, self.cap_bytes)
        if held is None:
            self._add_slow(column, values)
        else:
            self._after_add(held)

    def _add_slow(self, column: Column, values: List[Any]) -> None:
        """The values do not fit: flush, then hold them, or write them directly (after the
        flush, so order is kept) when they are larger than the whole cache."""
        with self.lock:
            self._last_write = time.monotonic()
            self.flush()
            held = self._buffer.add_many(column._core, values, self.cap_bytes)
            if held is None:
                column._core.extend(values)
            else:
                self._after_add(held)

    def _after_add(self, held: int) -> None:
        """Flush once ``held`` bytes reach the threshold (unless flushes are held off)."""
        if held >= self.flush_threshold and self.auto_flush and self._locks == 0:
            self.flush()

    def discard_column(self, column: Column) -> None:
        """Drop the pending appends of a column that is being deleted."""
        self._buffer.discard(column._core)

    def flush(self) -> int:
        """Write every pending append (all columns, one transaction); returns how many."""
        with self.lock:
            self._last_write = time.monotonic()
            return self._buffer.flush()


class ColumnVault(CacheControls):
    """Named, typed columns in a vault file.

    :param kv_or_path: a :class:`KVault` (the columns then live in its file and share its
        connection) or a path (``str``/``os.PathLike``, or ``":memory:"``).
    :param min_chunk_bytes: size of a new column's first chunk; chunks double from here...
    :param max_chunk_bytes: ...up to this size.
    :param read_only: open a path without write access (every write raises ``ReadOnlyError``).
    :param checkpoints: ``"auto"`` or ``"external"`` for a path (see :class:`KVault`).
    :param key: the key of an encrypted file, for a path (see :class:`KVault`).

    >>> cv = ColumnVault(":memory:")
    >>> temps = cv.create_column("temps", "f64")
    >>> temps.extend([23.5, 24.1, 25.0])
    >>> temps[0], temps[-1], len(temps)
    (23.5, 25.0, 3)
    """

    def __init__(
        self,
        kv_or_path: Union[KVault, str, os.PathLike[str]],
        min_chunk_bytes: int = 128 << 10,
        max_chunk_bytes: int = 16 << 20,
        read_only: bool = False,
        checkpoints: str = "auto",
        key: KeyArg = None,
    ) -> None:
        self._core: Optional[ColumnVaultCore] = None
        self._cache = None
        for name, value in (("min_chunk_bytes", min_chunk_bytes), ("max_chunk_bytes", max_chunk_bytes)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        # Refused before the file is opened, so a bad argument creates nothing.
        ColumnVaultCore.validate(min_chunk_bytes, max_chunk_bytes)
        if isinstance(kv_or_path, KVault):
            self._file = kv_or_path._file
            self._owns_file = False
        else:
            path = fspath(kv_or_path, "ColumnVault takes a KVault or a path")
            self._file = VaultFile(path, read_only=read_only, checkpoints=checkpoints, key=key)
            self._owns_file = True
        self.path = self._file.path
        try:
            self._core = ColumnVaultCore(self._file.native, min_chunk_bytes, max_chunk_bytes)
        except BaseException:
            if self._owns_file:
                self._file.close()
            raise
        self._chunk_bytes = (min_chunk_bytes, max_chunk_bytes)
        self._columns: Dict[str, Column] = {}
        self._lock = threading.RLock()
        self._file.attach(self)

    def __reduce__(self) -> Tuple[Any, ...]:
        if self.path == ":memory:":
            raise TypeError("an in-memory ColumnVault cannot be pickled (it has no file to reopen)")
        read_only = self._file.open_args["read_only"]
        checkpoints = self._file.open_args["checkpoints"]
        key = self._file.open_args["key"]
        return (ColumnVault, (self.path, *self._chunk_bytes, read_only, checkpoints, key))

    @property
    def _native(self) -> ColumnVaultCore:
        core = self._core
        if core is None:
            raise ClosedError("column vault is closed")
        return core

    def _new_cache(
        self, cap_bytes: int, flush_threshold: int, flush_interval: Optional[float], auto_flush: bool
    ) -> ColumnCache:
        self._native  # noqa: B018 - raises ClosedError when closed
        return ColumnCache(self, cap_bytes, flush_threshold, flush_interval, auto_flush)

    def __repr__(self) -> str:
        return f"<ambervault.ColumnVault {self.path!r}>"

    def __enter__(self) -> ColumnVault:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _wrap(self, core: ColumnCore, name: str) -> Column:
        with self._lock:
            col = self._columns.get(name)
            if col is None or col._core is not core:
                col = _new_column(self, core, name)
                self._columns[name] = col
            return col

    def create_column(self, name: str, dtype: str, compression: Optional[str] = None) -> Column:
        """Create a column of ``dtype`` (see ``docs/columns.md`` for the dtype table). An existing
        name is an :class:`InvalidArgument` error; an unknown dtype too, listing the accepted
        ones.

        ``compression`` (``"zstd"``, ``"zstd:<level>"``, ``"lz4"``, ``"pco"``,
        ``"pco:<level>"``, optionally followed by ``":<min_saving>"``; see
        ``docs/compression.md``) compresses the column's full chunks. zstd and lz4 try numbers
        byte-shuffled too; pco (numeric and ``vec:`` dtypes only) models the numbers themselves
        and stores measurements in about half of zstd's space. Point reads still touch one
        chunk."""
        if not isinstance(name, str):
            raise TypeError(f"column names must be str, not {type(name).__name__}")
        if not isinstance(dtype, str):
            raise TypeError(f"dtype must be a str, not {type(dtype).__name__}")
        if compression is not None and not isinstance(compression, str):
            raise TypeError(f"compression must be a str or None, not {type(compression).__name__}")
        if dtype.startswith("vec:"):
            _np()  # tensors need numpy: a clear ImportError before anything is created
        core = self._native.create(name, dtype, compression)
        with self._lock:
            col = _new_column(self, core, name)
            self._columns[name] = col
            return col

    def ensure(self, name: str, dtype: str) -> Column:
        """The column ``name``, created with ``dtype`` if missing. If it exists with another dtype,
        :class:`InvalidArgument`. Returns the same object as ``cv[name]``."""
        wanted = canonical_dtype(dtype) if isinstance(dtype, str) else dtype
        if not isinstance(wanted, str):
            raise TypeError(f"dtype must be a str, not {type(dtype).__name__}")
        if name in self:
            col = self[name]
            if col.dtype != wanted:
                raise InvalidArgument(f"column {name!r} exists with dtype {col.dtype}, not {wanted}")
            return col
        return self.create_column(name, dtype)

    def __getitem__(self, name: str) -> Column:
        if not isinstance(name, str):
            raise TypeError(f"column names must be str, not {type(name).__name__}")
        self._native  # noqa: B018 - raises ClosedError when closed
        core = self._native.find(name)
        with self._lock:
            col = self._columns.get(name)
            # A cached handle is this column only if the ids agree: a column created in a
            # transaction that rolled back is gone, and its id may now name another column.
            if col is not None and (core is None or col._core.column_id != core.column_id):
                self._columns.pop(name, None)
                col = None
            if col is not None:
                return col
        if core is None:
            raise NotFound(name)
        return self._wrap(core, name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._native.find(name) is not None

    def list_columns(self) -> List[Tuple[str, str, int]]:
        """``[(name, dtype, length), ...]`` ordered by name."""
        self._flush_all()
        return self._native.list()

    def delete_column(self, name: str) -> bool:
        """Delete a column and its data; returns whether it existed. Column objects for it raise
        :class:`NotFound` afterwards."""
        with self._lock:
            col = self._columns.pop(name, None)
        if col is not None:
            for cache in (self._cache, col._cache):
                if cache is not None:
                    cache.discard_column(col)
        return self._native.delete(name)

    def rename_column(self, old: str, new: str) -> None:
        """Rename a column; column objects follow the new name."""
        if not isinstance(new, str):
            raise TypeError(f"column names must be str, not {type(new).__name__}")
        self._native.rename(old, new)
        with self._lock:
            col = self._columns.pop(old, None)
            if col is not None:
                col.name = new
                col._core.set_name(new)
                self._columns[new] = col

    def _all_caches(self) -> List[BatchingCache]:
        caches: List[BatchingCache] = [] if self._cache is None else [self._cache]
        caches.extend(col._cache for col in list(self._columns.values()) if col._cache is not None)
        return caches

    def transaction(self) -> Transaction:
        """Start a transaction (see :meth:`KVault.transaction`). It covers every table of the
        file, so for a ``ColumnVault`` made from a ``KVault`` it spans both."""
        self._native  # noqa: B018 - raises ClosedError when closed
        return self._file.transaction()

    def _caches(self) -> List[BatchingCache]:
        return self._all_caches()

    def _stop_caches(self) -> None:
        if self._cache is not None:
            self.disable_cache()
        for col in list(self._columns.values()):
            if col._cache is not None:
                col.disable_cache()

    def _flush_all(self) -> None:
        for cache in self._all_caches():
            cache.flush()

    # -- Arrow -------------------------------------------------------------------------------------
    def to_arrow(self, names: Optional[Sequence[str]] = None) -> Any:
        """The columns ``names`` (all, ordered by name, when None) as one ``pyarrow.Table``; they
        must have equal lengths (else :class:`InvalidArgument` listing them). Fixed-width columns
        are wrapped without a copy; see ``docs/arrow.md`` for every dtype's Arrow type. Needs
        pyarrow.

        >>> cv = ColumnVault(":memory:"); cv.create_column("x", "i32").extend([1, 2])
        >>> cv.to_arrow().column("x").to_pylist()
        [1, 2]
        """
        return _arrow.vault_table(self, names)

    def to_reader(self, names: Optional[Sequence[str]] = None, batch_rows: Optional[int] = None) -> Any:
        """A ``pyarrow.RecordBatchReader`` over the columns ``names`` (as :meth:`to_arrow`) that
        reads ``batch_rows`` rows of each per batch (by default about 16 MiB per batch), so a
        consumer holds one batch at a time. It covers the rows present when it is made."""
        return _arrow.reader(self, names, batch_rows)

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """The Arrow C stream of every column (see :meth:`to_reader`): DuckDB, Polars and
        pyarrow read a ``ColumnVault`` directly, batch by batch."""
        return self.to_reader().__arrow_c_stream__(requested_schema)

    def from_arrow(self, table: Any, dtypes: Optional[Dict[str, str]] = None) -> None:
        """Append every column of ``table`` (a ``pyarrow.Table``, ``RecordBatch`` or anything
        pyarrow reads as a table) to the column of the same name, creating missing ones with the
        dtype the Arrow type maps to (or ``dtypes[name]``). All in one transaction: an
        unsupported type, a null or a value a column refuses writes nothing.

        >>> import pyarrow as pa
        >>> cv = ColumnVault(":memory:"); cv.from_arrow(pa.table({"x": pa.array([1, 2], pa.int16())}))
        >>> cv["x"].dtype, cv["x"][:]
        ('i16', [1, 2])
        """
        _arrow.from_table(self, table, dtypes)

    def to_parquet(
        self,
        path: Union[str, os.PathLike[str], Any],
        names: Optional[Sequence[str]] = None,
        row_group_rows: Optional[int] = None,
        **writer_options: Any,
    ) -> int:
        """Write the columns ``names`` (as :meth:`to_arrow`) to a Parquet file, one row group of
        ``row_group_rows`` rows at a time (by default about 64 MiB per group), in constant
        memory. A path is written as ``<path>.part`` and renamed when complete.
        ``writer_options`` go to ``pyarrow.parquet.ParquetWriter`` (e.g. ``compression``).
        Returns the number of rows written."""
        return _arrow.write_parquet(self, path, names, row_group_rows, writer_options)

    def check(self) -> List[str]:
        """SQLite's integrity check plus the invariants of every table and column in the file;
        empty when healthy."""
        self._native  # noqa: B018 - raises ClosedError when closed
        return self._file.check()

    def backup(self, dest: Union[str, os.PathLike[str]]) -> None:
        """Write a consistent copy of the whole file to ``dest`` (which must not exist)."""
        self._native  # noqa: B018 - raises ClosedError when closed
        self._file.backup(dest)

    def checkpoint(self) -> None:
        """Flush pending appends and copy the WAL into the main file."""
        self._native  # noqa: B018 - raises ClosedError when closed
        self._file.checkpoint()

    def rekey(self, new_key: Union[str, bytes]) -> None:
        """Re-encrypt the whole file with ``new_key`` (see :meth:`KVault.rekey`)."""
        self._native  # noqa: B018 - raises ClosedError when closed
        self._file.rekey(new_key)

    def close(self) -> None:
        """Flush pending appends and close (a KVault's shared file stays open). Idempotent."""
        if self._core is None:
            return
        self._stop_caches()
        if self._owns_file:
            self._file.close()
        self._core = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._cache is not None:
                self._cache.stop_daemon()
                self._cache.flush()


class Column(MutableSequence, CacheControls):  # type: ignore[type-arg]
    """One typed column: a ``MutableSequence`` stored in the vault file.

    Appending and popping at the end are O(1) amortized; inserting or deleting in the middle
    moves every later element (O(n)). Slices return lists; steps work, negative ones too.
    """

    def __init__(self, vault: ColumnVault, core: ColumnCore, name: str) -> None:
        self._vault = vault
        self._core = core
        self._cache = None
        self.name = name
        self.dtype: str = core.dtype
        self._width: Optional[int] = core.width
        self._npdtype = _numpy_dtype(self.dtype)
        # Whether numpy arrays may be written as raw element bytes: fixed-width dtypes except
        # fixed-width text (`str:N`), whose elements are encoded and checked one by one.
        self._bulk = self._width is not None and not self.dtype.startswith("str:")

    def __reduce__(self) -> Tuple[Any, ...]:
        # Reopened by name in the unpickling process (its ColumnVault reopens the file by path).
        return (operator.getitem, (self._vault, self.name))

    @property
    def compression(self) -> Optional[str]:
        """The column's compression setting in full (``"zstd:3:0.05"``: codec, level, minimum
        saving), or None."""
        return self._core.compression()

    def set_compression(self, compression: Optional[str]) -> None:
        """Compress the column's chunks as ``compression`` says (None: store them as they are).
        The chunks already written are repacked in the same transaction, so this costs a pass
        over the column."""
        if compression is not None and not isinstance(compression, str):
            raise TypeError(f"compression must be a str or None, not {type(compression).__name__}")
        self._sync()
        self._core.set_compression("none" if compression is None else compression)

    def _new_cache(
        self, cap_bytes: int, flush_threshold: int, flush_interval: Optional[float], auto_flush: bool
    ) -> ColumnCache:
        vault_cache = self._vault._cache
        if vault_cache is not None and vault_cache.holds(self):
            vault_cache.flush()
        return ColumnCache(self._vault, cap_bytes, flush_threshold, flush_interval, auto_flush)

    def __repr__(self) -> str:
        return f"<ambervault.Column {self.name!r} dtype={self.dtype}>"

    def _sync(self) -> None:
        """Write this column's pending appends before any other operation."""
        cache = self._cache
        if cache is not None and cache.holds(self):
            cache.flush()
        cache = self._vault._cache
        if cache is not None and cache.holds(self):
            cache.flush()

    # -- size and reads ------------------------------------------------------------------------
    def __len__(self) -> int:
        self._sync()
        return self._core.len()

    def __getitem__(self, idx: Any) -> Any:
        # Hot path of point reads: a plain int index and no cache that could hold appends.
        if type(idx) is int and self._cache is None and self._vault._cache is None:
            if _I64_MIN <= idx <= _I64_MAX:
                return self._core.get(idx)
            raise IndexError(f"column index out of range (index {idx})")
        self._sync()
        if isinstance(idx, slice):
            if idx.step is None or idx.step == 1:
                # One native call resolves the bounds and reads in the same snapshot.
                return self._core.get_range(_bound(idx.start), _bound(idx.stop))
            start, stop, step = idx.indices(self._core.len())
            picked = range(start, stop, step)
            if not picked:
                return []
            lo, hi = min(picked[0], picked[-1]), max(picked[0], picked[-1]) + 1
            return self._core.get_range(lo, hi)[picked[0] - lo :: step]
        i = _index(idx)
        if not -(2**63) <= i < 2**63:
            raise IndexError(f"column index out of range (index {i})")
        return self._core.get(i)

    def __iter__(self) -> Iterator[Any]:
        self._sync()
        start = 0
        while True:
            page = self._core.get_range(start, start + _PAGE)
            yield from page
            if len(page) < _PAGE:
                return
            start += _PAGE

    def _resolve(self, idx: Any) -> int:
        """A Python-style index (negative counts from the end) as a position in the column."""
        i = _index(idx)
        n = self._core.len()
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"column index out of range (index {idx}, length {n})")
        return i

    def __reversed__(self) -> Iterator[Any]:
        self._sync()
        stop = self._core.len()
        while stop > 0:
            start = max(0, stop - _PAGE)
            yield from reversed(self._core.get_range(start, stop))
            stop = start

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, Column)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def index(self, value: Any, start: int = 0, stop: Optional[int] = None) -> int:
        """First index of ``value`` (in ``[start, stop)``); ``ValueError`` if absent."""
        begin, end, _ = slice(start, stop).indices(len(self))
        for offset, item in enumerate(self[begin:end]):
            if item == value:
                return begin + offset
        raise ValueError(f"{value!r} is not in column {self.name!r}")

    def count(self, value: Any) -> int:
        """Number of elements equal to ``value``."""
        return sum(1 for item in self if item == value)

    def to_numpy(self, start: int = 0, stop: Optional[int] = None) -> Any:
        """Elements ``start:stop`` as a numpy array of the column's dtype, filled straight from
        the chunks (variable-width columns give an object array).

        >>> cv = ColumnVault(":memory:"); col = cv.create_column("x", "i32"); col.extend([1, 2, 3])
        >>> col.to_numpy(1)
        array([2, 3], dtype=int32)
        """
        npdtype = self._npdtype
        # Hot path of windows: int bounds, a fixed-width dtype and no cache holding appends skip
        # the sync and the bound helpers (bounds beyond 64 bits take the general path, which
        # clamps them).
        if (
            npdtype is not None
            and type(start) is int
            and type(stop) is int
            and self._cache is None
            and self._vault._cache is None
        ):
            try:
                raw = self._core.get_raw(start, stop)
            except OverflowError:
                pass
            else:
                return _as_array(raw, npdtype)
        np = _numpy or _np()
        self._sync()
        lo, hi = _bound(start), _bound(stop)
        if npdtype is None:
            return np.array(self._core.get_range(lo, hi), dtype=object)
        return _as_array(self._core.get_raw(lo, hi), npdtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        array = self.to_numpy()
        return array if dtype is None else array.astype(dtype)

    # -- Arrow ---------------------------------------------------------------------------------
    def to_arrow(self, start: int = 0, stop: Optional[int] = None) -> Any:
        """Elements ``start:stop`` as a ``pyarrow.Array`` (see ``docs/arrow.md`` for the type of
        each dtype). Fixed-width dtypes wrap the bytes :meth:`to_numpy` read, without a second
        copy (``bool`` is packed into bits). Needs pyarrow.

        >>> cv = ColumnVault(":memory:"); col = cv.create_column("x", "f64"); col.extend([1.5, 2.5])
        >>> col.to_arrow().to_pylist()
        [1.5, 2.5]
        """
        ((_, dtype, length, data_bytes),) = _arrow._summary(self._vault, [self.name])
        return _arrow.column_slice(
            self, _bound(start), _bound(stop), _arrow.arrow_type(dtype, length, data_bytes)
        )

    def to_reader(self, batch_rows: Optional[int] = None) -> Any:
        """A ``pyarrow.RecordBatchReader`` of one field, this column, read ``batch_rows``
        elements at a time (see :meth:`ColumnVault.to_reader`)."""
        return self._vault.to_reader([self.name], batch_rows)

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """The Arrow C stream of a one-column table, read in batches (see :meth:`to_reader`)."""
        return self.to_reader().__arrow_c_stream__(requested_schema)

    def to_parquet(
        self,
        path: Union[str, os.PathLike[str], Any],
        row_group_rows: Optional[int] = None,
        **writer_options: Any,
    ) -> int:
        """Write this column to a Parquet file (see :meth:`ColumnVault.to_parquet`)."""
        return self._vault.to_parquet(path, [self.name], row_group_rows, **writer_options)

    # -- writes --------------------------------------------------------------------------------
    def _active_cache(self) -> Optional[ColumnCache]:
        return self._cache if self._cache is not None else self._vault._cache

    def append(self, value: Any) -> None:
        """Append one element (durable when it returns, unless a cache is active)."""
        cache = self._cache if self._cache is not None else self._vault._cache
        if cache is None:
            self._core.append(value)
        else:
            cache.add_one(self, value)

    def extend(self, values: Iterable[Any]) -> None:
        """Append every element of ``values`` in one transaction. A numpy array (or other typed
        buffer) of a fixed-width column goes through a bulk path with no per-element Python
        work, and so does a pyarrow Array or ChunkedArray of fixed-width values. If any element
        is refused, nothing is written."""
        if _arrow.is_arrow(values):
            _arrow.extend(self, values)
            return
        if _is_array(values) and self._bulk:
            self._sync()
            self._core.extend_raw(self._as_raw(values))
            return
        # The extension reads a list as it stands (holding the GIL), so a list needs no copy.
        items = values if type(values) is list else list(values)
        cache = self._active_cache()
        if cache is None:
            self._core.extend(items)
        else:
            cache.add(self, items)

    def _as_raw(self, values: Any) -> Any:
        """A C-contiguous little-endian buffer of the column's dtype, or an error: integer
        arrays are range-checked, never wrapped around."""
        np = _np()
        return _cast_exact(np.asarray(values), np.dtype(_numpy_dtype(self.dtype)), self.dtype).reshape(-1)

    def __setitem__(self, idx: Any, value: Any) -> None:
        self._sync()
        if isinstance(idx, slice):
            start, stop, step = idx.indices(self._core.len())
            picked = range(start, stop, step)
            if step == 1 and _is_array(value) and self._bulk:
                raw = self._as_raw(value)
                if len(raw) != len(picked):
                    raise ValueError(f"length mismatch: slice has {len(picked)} elements, got {len(raw)}")
                if not len(raw):
                    # Nothing to write, as on the list path below. (The native set_raw given
                    # zero bytes leaves the column so that the next delete fails with a
                    # UNIQUE constraint error; skipping it avoids that.)
                    return
                self._core.set_raw(start, raw)
                return
            values = list(value)
            if len(values) != len(picked):
                raise ValueError(f"length mismatch: slice has {len(picked)} elements, got {len(values)}")
            if not values:
                return
            if step == 1:
                self._core.set_range(start, values)
            else:
                self._core.set_at(list(picked), values)
            return
        self._core.set_range(self._resolve(idx), [value])

    def __delitem__(self, idx: Any) -> None:
        self._sync()
        if isinstance(idx, slice):
            start, stop, step = idx.indices(self._core.len())
            if step == 1:
                if stop > start:
                    self._core.delete_range(start, stop)
                return
            picked = list(range(start, stop, step))
            if picked:
                self._core.delete_at(picked)
            return
        i = self._resolve(idx)
        self._core.delete_range(i, i + 1)

    def insert(self, index: int, value: Any) -> None:
        """Insert before ``index`` (clamped like ``list.insert``); O(n) except at the end."""
        self._sync()
        i = _index(index)
        n = self._core.len()
        if i < 0:
            i = max(0, i + n)
        self._core.insert(min(i, n), value)

    def pop(self, index: int = -1) -> Any:
        """Remove and return the element at ``index`` (the last by default)."""
        self._sync()
        i = _index(index)
        n = self._core.len()
        if n == 0:
            raise IndexError("pop from empty column")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"column index out of range (index {index}, length {n})")
        return self._core.pop(i)

    def clear(self) -> None:
        """Remove every element."""
        self._sync()
        self._core.delete_range(0, self._core.len())


# Packers of the packed dtypes: (pack, unpack, what a value may hold, for error messages). They
# are KVault's own encoders (``_codec``), so a value round-trips the same way in both stores.
_PACKERS: Dict[str, Tuple[Callable[[Any], bytes], Callable[[bytes], Any], str]] = {
    "msgpack": (
        _codec._packb,
        _codec._unpackb,
        "str, int, float, bool, None, list, tuple, dict, date, datetime or bytes",
    ),
    "json": (_codec._json_dumps, _codec._json_loads, "str, int, float, bool, None, list or dict (str keys)"),
    "cbor": (_codec._cbor_dumps, _codec._cbor_loads, "values cbor2 can encode"),
}


def _new_column(vault: ColumnVault, core: ColumnCore, name: str) -> Column:
    """The Python column for ``core``: a :class:`PackedColumn` for the packed dtypes and a
    :class:`VecColumn` for tensors, so plain columns keep their paths free of any conversion."""
    if core.dtype in _PACKERS:
        return PackedColumn(vault, core, name)
    if core.dtype.startswith("vec:"):
        return VecColumn(vault, core, name)
    return Column(vault, core, name)


class _ConvertingColumn(Column):
    """A column whose elements are converted to bytes here, in Python, before the native core
    stores them (which treats them as ``bytes``/``bytes:N``), and converted back on reads.
    Subclasses give ``_encode`` and set ``_unpack`` (an attribute, so the packers' own
    functions are called with no wrapper)."""

    _unpack: Callable[[bytes], Any]

    def _encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def _encode_all(self, values: Iterable[Any]) -> List[bytes]:
        # Every value is converted before anything is handed to the core: one bad value writes
        # nothing.
        encode = self._encode
        return [encode(v) for v in values]

    def _decode_all(self, items: List[bytes]) -> List[Any]:
        unpack = self._unpack
        return [unpack(item) for item in items]

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):
            return self._decode_all(super().__getitem__(idx))
        return self._unpack(super().__getitem__(idx))

    def __iter__(self) -> Iterator[Any]:
        unpack = self._unpack
        for item in super().__iter__():
            yield unpack(item)

    def __reversed__(self) -> Iterator[Any]:
        unpack = self._unpack
        for item in super().__reversed__():
            yield unpack(item)

    def append(self, value: Any) -> None:
        """Append one element (converted first; durable when it returns, unless a cache is
        active)."""
        super().append(self._encode(value))

    def extend(self, values: Iterable[Any]) -> None:
        """Append every element of ``values`` in one transaction; if any cannot be converted,
        nothing is written."""
        if _arrow.is_arrow(values):
            _arrow.extend(self, values)
            return
        super().extend(self._encode_all(values))

    def __setitem__(self, idx: Any, value: Any) -> None:
        if isinstance(idx, slice):
            super().__setitem__(idx, self._encode_all(value))
        else:
            super().__setitem__(idx, self._encode(value))

    def insert(self, index: int, value: Any) -> None:
        """Insert before ``index`` (clamped like ``list.insert``); O(n) except at the end."""
        super().insert(index, self._encode(value))

    def pop(self, index: int = -1) -> Any:
        """Remove and return the element at ``index`` (the last by default), converted back."""
        return self._unpack(super().pop(index))


class VecColumn(_ConvertingColumn):
    """A column of dtype ``vec:<elem>:<d1>[:<d2>...]``: every element is a numpy array of that
    shape, stored as its little-endian elements (a fixed width, so reads and appends of many
    rows go through the raw bulk paths). Needs numpy.

    Appended arrays may be of any dtype that converts without loss (range-checked integers,
    floats that do not overflow); a wrong shape is a ``ValueError`` and writes nothing.

    >>> cv = ColumnVault(":memory:"); emb = cv.create_column("emb", "vec:f32:2:2")
    >>> emb.append([[1, 2], [3, 4]])
    >>> emb[0]
    array([[1., 2.],
           [3., 4.]], dtype=float32)
    >>> emb.to_numpy().shape
    (1, 2, 2)
    """

    def __init__(self, vault: ColumnVault, core: ColumnCore, name: str) -> None:
        super().__init__(vault, core, name)
        np = _np()
        _, elem, *dims = self.dtype.split(":")
        self.shape: Tuple[int, ...] = tuple(int(d) for d in dims)
        self._elem = np.dtype(_NUMPY[elem])
        self._unpack = self._unpack_vec

    def _check_shape(self, array: Any, rows: bool) -> None:
        shape = array.shape[1:] if rows else array.shape
        if shape != self.shape or (rows and array.ndim != len(self.shape) + 1):
            want = f"(n, {', '.join(map(str, self.shape))})" if rows else str(self.shape)
            raise ValueError(
                f"column {self.name!r} of dtype {self.dtype} takes arrays of shape {want}, not {array.shape}"
            )

    def _encode(self, value: Any) -> bytes:
        """One tensor's little-endian bytes, or ``ValueError``/``TypeError``/``OverflowError``."""
        np = _numpy or _np()
        array = np.asarray(value)
        self._check_shape(array, rows=False)
        return _cast_exact(array, self._elem, self.dtype).tobytes()

    def _unpack_vec(self, item: bytes) -> Any:
        # A copy, so the array is writable and independent of the read buffer.
        return (_numpy or _np()).frombuffer(item, self._elem).reshape(self.shape).copy()

    def _as_raw(self, values: Any) -> Any:
        """Rows of a ``(n, d1, ...)`` array as one C-contiguous ``(n, width)`` buffer: the bulk
        path of ``extend`` and slice assignment, with no per-row Python work."""
        np = _numpy or _np()
        array = np.asarray(values)
        self._check_shape(array, rows=True)
        # The row width is given, not -1: numpy cannot infer it for zero rows.
        return _cast_exact(array, self._elem, self.dtype).reshape(
            len(array), self._width // self._elem.itemsize
        )

    def extend(self, values: Iterable[Any]) -> None:
        """Append every element of ``values`` in one transaction: a ``(n, d1, ...)`` array goes
        through the raw bulk path, any other iterable (a list of arrays) is converted row by
        row; a pyarrow fixed-size list array goes through the bulk path too. A wrong shape or a
        lossy value writes nothing."""
        if _arrow.is_arrow(values):
            _arrow.extend(self, values)
        elif _is_array(values):
            Column.extend(self, values)
        else:
            super().extend(values)

    def __setitem__(self, idx: Any, value: Any) -> None:
        if isinstance(idx, slice) and _is_array(value):
            Column.__setitem__(self, idx, value)
        else:
            super().__setitem__(idx, value)

    def to_numpy(self, start: int = 0, stop: Optional[int] = None) -> Any:
        """Elements ``start:stop`` as one array of shape ``(n, d1, ...)``, filled straight from
        the chunks."""
        np = _numpy or _np()
        self._sync()
        raw = self._core.get_raw(_bound(start), _bound(stop))
        return _as_array(raw, np.uint8).view(self._elem).reshape((-1, *self.shape))

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        array = self.to_numpy()
        return array if dtype is None else array.astype(dtype)

    def _matches(self, item: Any, value: Any) -> bool:
        np = _numpy or _np()
        return bool(np.shape(value) == self.shape and np.array_equal(item, value))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, Column)):
            return len(self) == len(other) and all(self._matches(a, b) for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def index(self, value: Any, start: int = 0, stop: Optional[int] = None) -> int:
        """First index of an array equal to ``value`` (in ``[start, stop)``); ``ValueError`` if
        absent."""
        begin, end, _ = slice(start, stop).indices(len(self))
        for offset, item in enumerate(self[begin:end]):
            if self._matches(item, value):
                return begin + offset
        raise ValueError(f"array is not in column {self.name!r}")

    def count(self, value: Any) -> int:
        """Number of elements equal to the array ``value``."""
        return sum(1 for item in self if self._matches(item, value))


class PackedColumn(_ConvertingColumn):
    """A column of dtype ``msgpack``, ``json`` or ``cbor``: each element is any value that
    encoding holds (nested lists and dicts too), stored packed as one variable-width item.

    Packing happens here, in Python, with the encoders KVault uses for its typed values; the
    native core stores and returns the packed bytes exactly as a ``bytes`` column does (so the
    cache, transactions and every list operation work unchanged). Reads unpack what they return.

    >>> cv = ColumnVault(":memory:"); events = cv.create_column("events", "msgpack")
    >>> events.extend([{"step": 1, "tags": ("a", "b")}, [1, None, 2.5]])
    >>> events[0], events[-1]
    ({'step': 1, 'tags': ('a', 'b')}, [1, None, 2.5])
    """

    def __init__(self, vault: ColumnVault, core: ColumnCore, name: str) -> None:
        super().__init__(vault, core, name)
        self._pack, self._unpack, self._holds = _PACKERS[self.dtype]

    def _encode(self, value: Any) -> bytes:
        """``value`` packed, or ``TypeError``/``ValueError`` (then nothing is written)."""
        try:
            return self._pack(value)
        except TypeError as e:
            raise TypeError(f"column of dtype {self.dtype} takes {self._holds}: {e}") from None
        except (ValueError, RecursionError) as e:
            # Includes the packers' recursion limits: a cyclic or absurdly deep value.
            raise ValueError(f"cannot pack this value for a {self.dtype} column: {e}") from None

    def to_arrow(self, start: int = 0, stop: Optional[int] = None, decode: bool = False) -> Any:
        """Elements ``start:stop`` as a ``pyarrow.Array`` of the packed values: ``json`` as
        ``string`` (the JSON text), ``msgpack`` and ``cbor`` as ``binary``. With ``decode=True``
        the values are unpacked and pyarrow infers one type for them (an
        :class:`InvalidArgument` when it cannot, e.g. for values of mixed types).

        >>> cv = ColumnVault(":memory:"); col = cv.create_column("e", "json"); col.append({"a": 1})
        >>> col.to_arrow().to_pylist(), col.to_arrow(decode=True).to_pylist()
        (['{"a": 1}'], [{'a': 1}])
        """
        if not decode:
            return super().to_arrow(start, stop)
        self._sync()
        return _arrow.column_slice(self, _bound(start), _bound(stop), None, decode=True)

    def to_numpy(self, start: int = 0, stop: Optional[int] = None) -> Any:
        """Elements ``start:stop`` unpacked, as a 1-d object array (one Python value per
        element, even when the values are themselves lists)."""
        np = _numpy or _np()
        self._sync()
        values = self._decode_all(self._core.get_range(_bound(start), _bound(stop)))
        # Filled item by item: np.array(values) would turn equal-length lists into a 2-d array.
        array = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            array[i] = value
        return array
